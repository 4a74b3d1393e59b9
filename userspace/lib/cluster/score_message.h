// score_message.h - what agents tell each other over the score bus (docs/cluster.md):
// a batch of replica scores for one service, a heartbeat, or a goodbye. A small
// versioned binary encoding, decoded strictly: every message is untrusted input
// (another node, or anyone who can publish on the subject), so a decode either
// returns a message whose every field is in range or an error that says why.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "cluster/wire.h"
#include "common/endpoint.h"

namespace kvlb::cluster {

inline constexpr uint8_t kWireVersion = 1;
// Bounds on what a decoder accepts (and an encoder may send).
inline constexpr size_t kMaxNameBytes = 253;  // agent ids, node and service names (DNS names)
inline constexpr size_t kMaxReportsPerBatch = 1024;
inline constexpr uint32_t kMaxRequests = 1'000'000;  // waiting, running
inline constexpr uint32_t kMaxAgeMs = 600'000;       // a score older than 10 min is not news
inline constexpr uint16_t kNoKv = 0xffff;            // the engine reports no KV gauge
inline constexpr size_t kReportBytes = 34;
inline constexpr uint32_t kMaxIntervalMs = 60'000;

enum class MessageKind : uint8_t { Scores = 1, Heartbeat = 2, Leaving = 3 };

// One replica's numbers as its owner scraped them.
struct ReplicaReport {
  Endpoint replica;
  uint32_t waiting = 0;
  uint32_t running = 0;
  uint16_t kv_permille = kNoKv;  // 0..1000, or kNoKv
  bool down = false;             // the owner's scrapes failed down_after_failures times in a row
  bool suspect = false;          // the owner bounds it: its reports contradict the kernel's counts
  // How old the scrape was when the batch was sent (the publisher's clock, as a
  // duration: receivers never compare another node's clock with theirs).
  uint32_t age_ms = 0;
  bool operator==(const ReplicaReport&) const = default;
};

struct Message {
  MessageKind kind = MessageKind::Scores;
  std::string publisher;  // agent id
  // The publisher's CLOCK_REALTIME at send, for the transit-time metric only
  // (never used to age a score).
  uint64_t sent_realtime_ns = 0;
  // Scores: the service and its reports.
  std::string service;
  std::vector<ReplicaReport> reports;
  // The publisher's node (scores and heartbeats).
  std::string node;
  // Heartbeat: the publisher's scrape interval.
  uint32_t interval_ms = 0;
  bool operator==(const Message&) const = default;
};

// Throws std::invalid_argument when the message breaks a bound above.
std::string encode(const Message& m);

struct Decoded {
  bool ok = false;
  Message message;
  std::string error;  // when !ok: which field and why
};
Decoded decode(std::string_view bytes);

}  // namespace kvlb::cluster
