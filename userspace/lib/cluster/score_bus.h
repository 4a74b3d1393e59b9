// score_bus.h - the seam between the agent's cluster logic and the messaging
// system that carries scores between agents (NATS: nats_score_bus.h; in memory
// for unit tests: in_memory_score_bus.h).
//
// Delivery is at most once and unordered across publishers, as NATS core is:
// every message carries everything its receiver needs (no deltas), so a lost
// one costs one interval of freshness and nothing else.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace kvlb::cluster {

struct BusMessage {
  std::string subject;
  std::string data;
};

struct BusStats {
  uint64_t published = 0, publish_bytes = 0, publish_errors = 0;
  uint64_t received = 0, received_bytes = 0;
  uint64_t dropped = 0;  // refused at the inbox's bound (the agent fell behind)
  uint64_t disconnects = 0, reconnects = 0;
};

class ScoreBus {
 public:
  virtual ~ScoreBus() = default;
  // True while messages can flow (connected to a server).
  virtual bool connected() const = 0;
  // Fire and forget; false when the message could not be handed to the bus.
  virtual bool publish(const std::string& subject, const std::string& data) = 0;
  // Subscriptions are exact subjects; setting the list replaces the previous one.
  virtual void subscribe(const std::vector<std::string>& subjects) = 0;
  // Messages received since the last call, oldest first (bounded by the inbox).
  virtual std::vector<BusMessage> drain() = 0;
  virtual BusStats stats() const = 0;
  // Sends what is buffered, waiting at most `timeout_ms` (a goodbye on exit).
  virtual void flush(int timeout_ms) = 0;
};

}  // namespace kvlb::cluster
