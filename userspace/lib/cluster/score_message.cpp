#include "cluster/score_message.h"

#include "cluster/wire.h"

#include <cstring>
#include <stdexcept>

#include <fmt/format.h>

namespace kvlb::cluster {
namespace {

using wire::Reader;
using wire::Writer;

constexpr char kMagic0 = 'K', kMagic1 = 'S';

void write_report(Writer& w, const ReplicaReport& r) {
  const auto& ep = r.replica;
  if ((ep.family != KVLB_AF_INET && ep.family != KVLB_AF_INET6) || ep.port == 0)
    throw std::invalid_argument("report: replica address not set");
  if (r.waiting > kMaxRequests || r.running > kMaxRequests)
    throw std::invalid_argument("report: request counts out of range");
  if (r.kv_permille > 1000 && r.kv_permille != kNoKv)
    throw std::invalid_argument("report: kv_permille out of range");
  if (r.age_ms > kMaxAgeMs) throw std::invalid_argument("report: age out of range");
  w.u8(static_cast<uint8_t>(ep.family));
  w.bytes(&ep.addr, sizeof(ep.addr));
  w.u16(ep.port);
  w.u32(r.waiting);
  w.u32(r.running);
  w.u16(r.kv_permille);
  w.u8(static_cast<uint8_t>((r.down ? 1 : 0) | (r.suspect ? 2 : 0)));
  w.u32(r.age_ms);
}

ReplicaReport read_report(Reader& rd, size_t i) {
  ReplicaReport r;
  auto field = [&](const char* what) { return fmt::format("reports[{}].{}", i, what); };
  const auto family = rd.le(1, "reports");
  auto addr = rd.raw(sizeof(kvlb_addr), "reports");
  r.replica.port = static_cast<uint16_t>(rd.le(2, "reports"));
  r.waiting = static_cast<uint32_t>(rd.le(4, "reports"));
  r.running = static_cast<uint32_t>(rd.le(4, "reports"));
  r.kv_permille = static_cast<uint16_t>(rd.le(2, "reports"));
  const auto flags = rd.le(1, "reports");
  r.age_ms = static_cast<uint32_t>(rd.le(4, "reports"));
  if (!rd.error().empty()) return r;
  if (family != KVLB_AF_INET && family != KVLB_AF_INET6)
    return rd.fail(field("family") + ": not IPv4 or IPv6"), r;
  r.replica.family = static_cast<int>(family);
  std::memcpy(&r.replica.addr, addr.data(), sizeof(kvlb_addr));
  if (family == KVLB_AF_INET) {
    // An IPv4 address occupies the first 4 bytes; the rest must be zero, so one
    // replica has one encoding (the agents match replicas by address).
    for (size_t b = 4; b < sizeof(kvlb_addr); ++b)
      if (addr[b] != 0) return rd.fail(field("address") + ": IPv4 with stray bytes"), r;
  }
  if (r.replica.port == 0) rd.fail(field("port") + ": 0");
  if (r.waiting > kMaxRequests)
    rd.fail(field("waiting") + fmt::format(": {} > {}", r.waiting, kMaxRequests));
  if (r.running > kMaxRequests)
    rd.fail(field("running") + fmt::format(": {} > {}", r.running, kMaxRequests));
  if (r.kv_permille > 1000 && r.kv_permille != kNoKv)
    rd.fail(field("kv_permille") + fmt::format(": {} > 1000", r.kv_permille));
  if (flags & ~uint64_t{3}) rd.fail(field("flags") + ": unknown bits");
  if (r.age_ms > kMaxAgeMs)
    rd.fail(field("age_ms") + fmt::format(": {} > {}", r.age_ms, kMaxAgeMs));
  r.down = flags & 1;
  r.suspect = flags & 2;
  return r;
}

}  // namespace

bool valid_name(std::string_view s) {
  if (s.empty() || s.size() > kMaxNameBytes) return false;
  for (char c : s)
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
          c == '_' || c == '-'))
      return false;
  return true;
}

std::string encode(const Message& m) {
  Writer w;
  w.u8(kMagic0);
  w.u8(kMagic1);
  w.u8(kWireVersion);
  w.u8(static_cast<uint8_t>(m.kind));
  w.name(m.publisher, "publisher");
  w.u64(m.sent_realtime_ns);
  switch (m.kind) {
    case MessageKind::Scores:
      w.name(m.node, "node");
      w.name(m.service, "service");
      if (m.reports.size() > kMaxReportsPerBatch)
        throw std::invalid_argument(
            fmt::format("reports: {} > {}", m.reports.size(), kMaxReportsPerBatch));
      w.u16(static_cast<uint16_t>(m.reports.size()));
      for (const auto& r : m.reports) write_report(w, r);
      break;
    case MessageKind::Heartbeat:
      w.name(m.node, "node");
      if (m.interval_ms == 0 || m.interval_ms > kMaxIntervalMs)
        throw std::invalid_argument("interval_ms out of range");
      w.u32(m.interval_ms);
      break;
    case MessageKind::Leaving:
      break;
    default:
      throw std::invalid_argument("unknown message kind");
  }
  return w.take();
}

Decoded decode(std::string_view bytes) {
  Decoded d;
  Reader rd(bytes);
  auto magic = rd.raw(2, "magic");
  if (rd.error().empty() && (magic[0] != kMagic0 || magic[1] != kMagic1))
    rd.fail("magic: not a kvlb score-bus message");
  const auto version = rd.le(1, "version");
  if (rd.error().empty() && version != kWireVersion)
    rd.fail(fmt::format("version: {} (this agent speaks {})", version, kWireVersion));
  const auto kind = rd.le(1, "kind");
  Message& m = d.message;
  if (rd.error().empty()) {
    if (kind < 1 || kind > 3) rd.fail(fmt::format("kind: unknown ({})", kind));
    m.kind = static_cast<MessageKind>(kind);
  }
  m.publisher = rd.name("publisher");
  m.sent_realtime_ns = rd.le(8, "sent_realtime_ns");
  if (rd.error().empty()) {
    switch (m.kind) {
      case MessageKind::Scores: {
        m.node = rd.name("node");
        m.service = rd.name("service");
        const size_t n = rd.le(2, "count");
        if (rd.error().empty() && n > kMaxReportsPerBatch)
          rd.fail(fmt::format("count: {} > {}", n, kMaxReportsPerBatch));
        // The count must match the bytes that follow before anything is allocated.
        if (rd.error().empty() && bytes.size() - rd.pos() != n * kReportBytes)
          rd.fail(fmt::format("count: {} reports need {} bytes, {} follow", n, n * kReportBytes,
                              bytes.size() - rd.pos()));
        if (rd.error().empty()) m.reports.reserve(n);
        for (size_t i = 0; i < n && rd.error().empty(); ++i)
          m.reports.push_back(read_report(rd, i));
        break;
      }
      case MessageKind::Heartbeat:
        m.node = rd.name("node");
        m.interval_ms = static_cast<uint32_t>(rd.le(4, "interval_ms"));
        if (rd.error().empty() && (m.interval_ms == 0 || m.interval_ms > kMaxIntervalMs))
          rd.fail(fmt::format("interval_ms: {} out of 1..{}", m.interval_ms, kMaxIntervalMs));
        break;
      case MessageKind::Leaving:
        break;
    }
  }
  if (rd.error().empty() && !rd.at_end())
    rd.fail(fmt::format("{} trailing bytes", bytes.size() - rd.pos()));
  if (!rd.error().empty()) {
    d.error = rd.error();
    d.message = {};
    return d;
  }
  d.ok = true;
  return d;
}

}  // namespace kvlb::cluster
