#include "cluster/flow_message.h"

#include <netinet/in.h>

#include <cstring>
#include <stdexcept>

#include <fmt/format.h>

#include "cluster/wire.h"

namespace kvlb::cluster {
namespace {

constexpr char kMagic0 = 'K', kMagic1 = 'F';

bool ipv4_clean(const kvlb_addr& a) {
  return a.words[1] == 0 && a.words[2] == 0 && a.words[3] == 0;
}

// Ports travel as the maps hold them (network byte order): two raw bytes.
void write_port(wire::Writer& w, uint16_t p) {
  w.bytes(&p, 2);
}
uint16_t read_port(wire::Reader& rd, const char* field) {
  uint16_t p = 0;
  auto b = rd.raw(2, field);
  if (b.size() == 2) std::memcpy(&p, b.data(), 2);
  return p;
}
kvlb_addr read_addr(wire::Reader& rd, const char* field) {
  kvlb_addr a{};
  auto b = rd.raw(sizeof(a), field);
  if (b.size() == sizeof(a)) std::memcpy(&a, b.data(), sizeof(a));
  return a;
}

}  // namespace

std::string flow_event_problem(const kvlb_flow_event& e) {
  if (e.kind < KVLB_FLOW_EV_OPEN || e.kind > KVLB_FLOW_EV_REFRESH)
    return fmt::format("kind: unknown ({})", e.kind);
  const auto& k = e.key;
  if (k.family != KVLB_AF_INET && k.family != KVLB_AF_INET6)
    return fmt::format("family: not IPv4 or IPv6 ({})", k.family);
  if (k.proto != IPPROTO_TCP) return "proto: not TCP";
  if (k.family == KVLB_AF_INET &&
      !(ipv4_clean(k.src) && ipv4_clean(k.dst) && ipv4_clean(e.snat) && ipv4_clean(e.backend)))
    return "address: IPv4 with stray bytes";
  if (k.sport == 0 || k.dport == 0 || e.snat_port == 0 || e.backend_port == 0) return "port: 0";
  return "";
}

std::string encode_flows(const FlowBatch& b) {
  if (b.events.size() > kMaxFlowEventsPerBatch)
    throw std::invalid_argument(
        fmt::format("events: {} > {}", b.events.size(), kMaxFlowEventsPerBatch));
  wire::Writer w;
  w.u8(kMagic0);
  w.u8(kMagic1);
  w.u8(kFlowWireVersion);
  w.name(b.publisher, "publisher");
  w.u64(b.sent_realtime_ns);
  w.u16(static_cast<uint16_t>(b.events.size()));
  for (const auto& e : b.events) {
    if (auto why = flow_event_problem(e); !why.empty())
      throw std::invalid_argument("event: " + why);
    w.u8(e.kind);
    w.u8(e.key.family);
    w.bytes(&e.key.src, 16);
    w.bytes(&e.key.dst, 16);
    w.bytes(&e.snat, 16);
    w.bytes(&e.backend, 16);
    write_port(w, e.key.sport);
    write_port(w, e.key.dport);
    write_port(w, e.snat_port);
    write_port(w, e.backend_port);
  }
  return w.take();
}

DecodedFlows decode_flows(std::string_view bytes) {
  DecodedFlows d;
  wire::Reader rd(bytes);
  auto magic = rd.raw(2, "magic");
  if (rd.error().empty() && (magic[0] != kMagic0 || magic[1] != kMagic1))
    rd.fail("magic: not a kvlb flow message");
  const auto version = rd.le(1, "version");
  if (rd.error().empty() && version != kFlowWireVersion)
    rd.fail(fmt::format("version: {} (this agent speaks {})", version, kFlowWireVersion));
  d.batch.publisher = rd.name("publisher");
  d.batch.sent_realtime_ns = rd.le(8, "sent_realtime_ns");
  const size_t n = rd.le(2, "count");
  if (rd.error().empty() && n > kMaxFlowEventsPerBatch)
    rd.fail(fmt::format("count: {} > {}", n, kMaxFlowEventsPerBatch));
  // The count must match the bytes that follow before anything is allocated.
  if (rd.error().empty() && bytes.size() - rd.pos() != n * kFlowEventBytes)
    rd.fail(fmt::format("count: {} events need {} bytes, {} follow", n, n * kFlowEventBytes,
                        bytes.size() - rd.pos()));
  if (rd.error().empty()) d.batch.events.reserve(n);
  for (size_t i = 0; i < n && rd.error().empty(); ++i) {
    kvlb_flow_event e{};
    e.kind = static_cast<uint8_t>(rd.le(1, "events"));
    e.key.family = static_cast<uint8_t>(rd.le(1, "events"));
    e.key.proto = IPPROTO_TCP;
    e.key.src = read_addr(rd, "events");
    e.key.dst = read_addr(rd, "events");
    e.snat = read_addr(rd, "events");
    e.backend = read_addr(rd, "events");
    e.key.sport = read_port(rd, "events");
    e.key.dport = read_port(rd, "events");
    e.snat_port = read_port(rd, "events");
    e.backend_port = read_port(rd, "events");
    if (!rd.error().empty()) break;
    if (auto why = flow_event_problem(e); !why.empty()) {
      rd.fail(fmt::format("events[{}].{}", i, why));
      break;
    }
    d.batch.events.push_back(e);
  }
  if (!rd.error().empty()) {
    d.error = rd.error();
    d.batch = {};
    return d;
  }
  d.ok = true;
  return d;
}

}  // namespace kvlb::cluster
