// Packet fixtures for the XDP gateway (bpf/gateway.bpf.c), run in this kernel
// through BPF_PROG_TEST_RUN: an input frame, the verdict and the output frame
// expected, byte for byte, for every path of bpf/lib/gateway.bpf.h, with the
// flow table, the backends' picks and in-flight counts and the gateway's packet
// counters (kvlb_gwstat_v1) checked after each.
//
// The test runs in a network namespace of its own (unshare at start: it goes
// with the process) holding two dummy interfaces (veth pairs where the kernel
// has no dummy driver): cli0 (clients, 192.0.2.0/24, 2001:db8:1::/64) and be0
// (backends, 198.51.100.0/24, 2001:db8:2::/64), with forwarding on and
// permanent neighbour entries, so the program's route lookup (bpf_fib_lookup)
// finds known routes and MAC addresses. The skeleton is loaded with no map
// pinned. Expected frames are built from scratch (every checksum computed over
// the whole header and pseudo-header, not updated), and every output frame that
// was translated is checked for valid checksums on its own.
//
// Needs root (BPF, a network namespace): exits 77 (ctest: skipped) otherwise.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sched.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <linux/bpf.h>

#include <array>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <functional>
#include <memory>
#include <optional>
#include <random>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "gateway.skel.h"
#include "gateway/maglev.h"

extern "C" {
#include "flow_hash.h"
}

namespace {

using Bytes = std::vector<uint8_t>;
using Mac = std::array<uint8_t, 6>;

// ---- addresses of the fixture network -------------------------------------

kvlb_addr A4(const char* s) {
  kvlb_addr a{};
  if (inet_pton(AF_INET, s, &a.words[0]) != 1) throw std::invalid_argument(s);
  return a;
}

kvlb_addr A6(const char* s) {
  kvlb_addr a{};
  if (inet_pton(AF_INET6, s, a.words) != 1) throw std::invalid_argument(s);
  return a;
}

constexpr Mac kCli0Mac = {0x02, 0, 0, 0, 0x01, 0x01};
constexpr Mac kBe0Mac = {0x02, 0, 0, 0, 0x02, 0x01};
constexpr Mac kClient4Mac = {0x02, 0, 0, 0, 0, 0x64};
constexpr Mac kClient6Mac = {0x02, 0, 0, 0, 0, 0x65};
constexpr Mac kNearClientMac = {0x02, 0, 0, 0, 0, 0x66};  // a client on be0's subnet

const kvlb_addr kClient4 = A4("192.0.2.100");
const kvlb_addr kNearClient4 = A4("198.51.100.100");
const kvlb_addr kClient6 = A6("2001:db8:1::100");
const kvlb_addr kSnat4 = A4("198.51.100.1");
const kvlb_addr kSnat6 = A6("2001:db8:2::1");
const kvlb_addr kVip4 = A4("203.0.113.10");        // backends 1, 2, 3; Maglev row 1
const kvlb_addr kVip6 = A6("2001:db8:ff::10");     // backends 4, 5; Maglev row 2
const kvlb_addr kVipDown = A4("203.0.113.20");     // backend 6 only, DOWN
const kvlb_addr kVipEmpty = A4("203.0.113.21");    // no backends, no Maglev row
const kvlb_addr kVipNoNeigh = A4("203.0.113.30");  // backend 7: no neighbour entry
const kvlb_addr kVipNoRoute = A4("203.0.113.31");  // backend 8: no route
const kvlb_addr kOther4 = A4("203.0.113.99");      // not a VIP
const kvlb_addr kOther6 = A6("2001:db8:ff::99");

constexpr uint16_t kVipPort = 80;
constexpr uint16_t kBackendPort = 8000;
constexpr uint16_t kSnatLo = 10000, kSnatHi = 29999;

struct BackendDef {
  uint32_t id;
  uint8_t family;
  kvlb_addr addr;
  Mac mac;  // its permanent neighbour entry (none: no entry)
  bool neighbour;
  uint32_t waiting;
  uint8_t state;
};

const BackendDef kBackends[] = {
    {1, KVLB_AF_INET, A4("198.51.100.10"), {2, 0, 0, 0, 0, 0x10}, true, 50, KVLB_STATE_ACTIVE},
    {2, KVLB_AF_INET, A4("198.51.100.11"), {2, 0, 0, 0, 0, 0x11}, true, 0, KVLB_STATE_ACTIVE},
    {3, KVLB_AF_INET, A4("198.51.100.12"), {2, 0, 0, 0, 0, 0x12}, true, 10, KVLB_STATE_ACTIVE},
    {4, KVLB_AF_INET6, A6("2001:db8:2::10"), {2, 0, 0, 0, 0, 0x20}, true, 50, KVLB_STATE_ACTIVE},
    {5, KVLB_AF_INET6, A6("2001:db8:2::11"), {2, 0, 0, 0, 0, 0x21}, true, 0, KVLB_STATE_ACTIVE},
    {6, KVLB_AF_INET, A4("198.51.100.13"), {2, 0, 0, 0, 0, 0x13}, true, 0, KVLB_STATE_DOWN},
    {7, KVLB_AF_INET, A4("198.51.100.20"), {}, false, 0, KVLB_STATE_ACTIVE},
    {8, KVLB_AF_INET, A4("10.99.0.1"), {}, false, 0, KVLB_STATE_ACTIVE},
};
constexpr uint32_t kMaxId = 8;

const BackendDef& backend(uint32_t id) {
  for (const auto& b : kBackends)
    if (b.id == id) return b;
  throw std::out_of_range("backend id");
}

struct ServiceDef {
  kvlb_addr vip;
  uint8_t family;
  std::vector<uint32_t> ids;
  uint32_t maglev_row;
};

const ServiceDef kServices[] = {
    {kVip4, KVLB_AF_INET, {1, 2, 3}, 1}, {kVip6, KVLB_AF_INET6, {4, 5}, 2},
    {kVipDown, KVLB_AF_INET, {6}, 0},    {kVipEmpty, KVLB_AF_INET, {}, 0},
    {kVipNoNeigh, KVLB_AF_INET, {7}, 0}, {kVipNoRoute, KVLB_AF_INET, {8}, 0},
};

const char* const kStatNames[KVLB_GW_STAT_COUNT] = {"packets",
                                                    "not_vip",
                                                    "new_flow",
                                                    "forward",
                                                    "reverse",
                                                    "maglev",
                                                    "no_backend",
                                                    "truncated",
                                                    "malformed",
                                                    "fragment",
                                                    "ipv6_ext",
                                                    "not_tcp",
                                                    "icmp",
                                                    "ttl",
                                                    "fib_pass",
                                                    "fib_fail",
                                                    "reverse_miss",
                                                    "snat_busy",
                                                    "flow_table_full",
                                                    "closed",
                                                    "expired",
                                                    "",
                                                    "",
                                                    ""};

constexpr uint8_t kFin = 0x01, kSyn = 0x02, kRst = 0x04, kPsh = 0x08, kAck = 0x10;

// ---- packets ----------------------------------------------------------------

void put16(Bytes& b, uint16_t v) {
  b.push_back(v >> 8);
  b.push_back(v & 0xff);
}
void put32(Bytes& b, uint32_t v) {
  put16(b, v >> 16);
  put16(b, v & 0xffff);
}
uint16_t get16(const Bytes& b, size_t off) {
  return static_cast<uint16_t>(b[off] << 8 | b[off + 1]);
}

// RFC 1071 from scratch: the one's complement sum of big-endian 16-bit words.
uint64_t sum_bytes(const uint8_t* p, size_t n, uint64_t sum = 0) {
  for (size_t i = 0; i + 1 < n; i += 2) sum += static_cast<uint32_t>(p[i]) << 8 | p[i + 1];
  if (n % 2) sum += static_cast<uint32_t>(p[n - 1]) << 8;
  return sum;
}
uint16_t fold(uint64_t sum) {
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return static_cast<uint16_t>(sum);
}

// The IPv4 / IPv6 pseudo-header's sum for an upper-layer segment.
uint64_t pseudo_sum(uint8_t family, const uint8_t* src, const uint8_t* dst, uint8_t proto,
                    uint32_t len) {
  size_t alen = family == KVLB_AF_INET ? 4 : 16;
  uint64_t s = sum_bytes(src, alen);
  s = sum_bytes(dst, alen, s);
  return s + proto + (len >> 16) + (len & 0xffff);
}

// One frame: Ethernet, IPv4 (with options) or IPv6, then TCP (or UDP, ICMP,
// ICMPv6, or raw bytes). Fields after the checksums are computed can be made
// inconsistent on purpose (ihl, doff, lengths, version, truncation).
struct Pkt {
  Mac dmac{}, smac{};
  uint16_t ethertype = 0;  // 0: IPv4 / IPv6 by family
  uint8_t family = KVLB_AF_INET;
  kvlb_addr src{}, dst{};
  uint8_t ttl = 64;  // hop limit for IPv6
  uint8_t tos = 0;
  uint16_t ip_id = 0x1234;
  uint16_t frag = 0x4000;  // DF, as Linux sends TCP
  Bytes ip_opts;           // a multiple of 4 bytes
  uint8_t proto = IPPROTO_TCP;
  uint16_t sport = 0, dport = 0;  // host order
  uint32_t seq = 1000, ack = 0;
  uint8_t flags = 0;
  uint16_t window = 64240;
  Bytes tcp_opts;  // a multiple of 4 bytes
  Bytes payload;
  std::optional<Bytes> raw_l4;  // everything after the IP header, as is
  int version = -1, ihl = -1, doff = -1;
  int ip_len = -1;  // IPv4 total length / IPv6 payload length as written
  size_t pad = 0;   // Ethernet padding after the IP packet (0xaa bytes)
  size_t cut = 0;   // the frame cut to this many bytes (0: whole)

  const uint8_t* sbytes() const { return reinterpret_cast<const uint8_t*>(src.words); }
  const uint8_t* dbytes() const { return reinterpret_cast<const uint8_t*>(dst.words); }

  Bytes l4() const {
    if (raw_l4) return *raw_l4;
    Bytes b;
    size_t csum_at = 0;
    bool pseudo = true;
    if (proto == IPPROTO_TCP) {
      put16(b, sport);
      put16(b, dport);
      put32(b, seq);
      put32(b, ack);
      int d = doff >= 0 ? doff : static_cast<int>(5 + tcp_opts.size() / 4);
      b.push_back(static_cast<uint8_t>(d << 4));
      b.push_back(flags);
      put16(b, window);
      put16(b, 0);
      put16(b, 0);
      b.insert(b.end(), tcp_opts.begin(), tcp_opts.end());
      csum_at = 16;
    } else if (proto == IPPROTO_UDP) {
      put16(b, sport);
      put16(b, dport);
      put16(b, static_cast<uint16_t>(8 + payload.size()));
      put16(b, 0);
      csum_at = 6;
    } else if (proto == IPPROTO_ICMP || proto == IPPROTO_ICMPV6) {
      b.push_back(proto == IPPROTO_ICMP ? 8 : 128);  // echo request
      b.push_back(0);
      put16(b, 0);
      put16(b, 0x4242);  // identifier
      put16(b, 1);       // sequence
      csum_at = 2;
      pseudo = proto == IPPROTO_ICMPV6;
    }
    b.insert(b.end(), payload.begin(), payload.end());
    uint64_t s = pseudo ? pseudo_sum(family, sbytes(), dbytes(), proto, b.size()) : 0;
    uint16_t c = static_cast<uint16_t>(~fold(sum_bytes(b.data(), b.size(), s)));
    if (proto == IPPROTO_UDP && c == 0) c = 0xffff;
    b[csum_at] = c >> 8;
    b[csum_at + 1] = c & 0xff;
    return b;
  }

  Bytes bytes() const {
    Bytes f(dmac.begin(), dmac.end());
    f.insert(f.end(), smac.begin(), smac.end());
    put16(f, ethertype ? ethertype : family == KVLB_AF_INET ? 0x0800 : 0x86dd);
    Bytes seg = l4();
    if (family == KVLB_AF_INET) {
      size_t hl = 20 + ip_opts.size();
      size_t at = f.size();
      f.push_back(static_cast<uint8_t>((version >= 0 ? version : 4) << 4 |
                                       (ihl >= 0 ? ihl : static_cast<int>(hl / 4))));
      f.push_back(tos);
      put16(f, static_cast<uint16_t>(ip_len >= 0 ? ip_len : hl + seg.size()));
      put16(f, ip_id);
      put16(f, frag);
      f.push_back(ttl);
      f.push_back(proto);
      put16(f, 0);
      f.insert(f.end(), sbytes(), sbytes() + 4);
      f.insert(f.end(), dbytes(), dbytes() + 4);
      f.insert(f.end(), ip_opts.begin(), ip_opts.end());
      uint16_t c = static_cast<uint16_t>(~fold(sum_bytes(&f[at], hl)));
      f[at + 10] = c >> 8;
      f[at + 11] = c & 0xff;
    } else {
      put32(f, static_cast<uint32_t>(version >= 0 ? version : 6) << 28);
      put16(f, static_cast<uint16_t>(ip_len >= 0 ? ip_len : seg.size()));
      f.push_back(proto);
      f.push_back(ttl);
      f.insert(f.end(), sbytes(), sbytes() + 16);
      f.insert(f.end(), dbytes(), dbytes() + 16);
    }
    f.insert(f.end(), seg.begin(), seg.end());
    f.insert(f.end(), pad, 0xaa);
    if (cut) f.resize(cut);
    return f;
  }
};

// A client's TCP segment to a service (IPv4 from 192.0.2.100 on cli0, IPv6 from
// 2001:db8:1::100).
Pkt client4(uint16_t cport, uint8_t flags, kvlb_addr dst = kVip4, uint16_t dport = kVipPort) {
  Pkt p;
  p.dmac = kCli0Mac;
  p.smac = kClient4Mac;
  p.src = kClient4;
  p.dst = dst;
  p.sport = cport;
  p.dport = dport;
  p.flags = flags;
  if (flags & kSyn) p.tcp_opts = {2, 4, 0x05, 0xb4};  // MSS 1460
  if (flags & kAck) p.ack = 777000;
  return p;
}

Pkt client6(uint16_t cport, uint8_t flags, kvlb_addr dst = kVip6, uint16_t dport = kVipPort) {
  Pkt p = client4(cport, flags, dst, dport);
  p.family = KVLB_AF_INET6;
  p.smac = kClient6Mac;
  p.src = kClient6;
  return p;
}

// `p` as the gateway sends it on: new addresses, ports and MACs, one hop less.
Pkt translated(Pkt p, Mac smac, Mac dmac, kvlb_addr src, uint16_t sport, kvlb_addr dst,
               uint16_t dport) {
  p.smac = smac;
  p.dmac = dmac;
  p.src = src;
  p.sport = sport;
  p.dst = dst;
  p.dport = dport;
  p.ttl -= 1;
  return p;
}

// A backend's segment back to the gateway's SNAT address and port, on be0.
Pkt from_backend(const BackendDef& b, uint16_t snat_port, uint8_t flags) {
  Pkt p;
  p.family = b.family;
  p.dmac = kBe0Mac;
  p.smac = b.mac;
  p.src = b.addr;
  p.dst = b.family == KVLB_AF_INET ? kSnat4 : kSnat6;
  p.sport = kBackendPort;
  p.dport = snat_port;
  p.flags = flags;
  p.seq = 555000;
  p.ack = 1001;
  return p;
}

kvlb_flow_key flow_key(uint8_t family, kvlb_addr src, uint16_t sport, kvlb_addr dst,
                       uint16_t dport) {
  kvlb_flow_key k{};
  k.src = src;
  k.dst = dst;
  k.sport = htons(sport);
  k.dport = htons(dport);
  k.family = family;
  k.proto = IPPROTO_TCP;
  return k;
}

kvlb_flow_key key_of(const Pkt& p) {
  return flow_key(p.family, p.src, p.sport, p.dst, p.dport);
}

uint16_t snat_port(const kvlb_flow_key& client, uint32_t probe = 0) {
  return kvlb_snat_port(&client, probe, kSnatLo, kSnatHi);
}

std::string hex(const Bytes& b) {
  std::string s;
  char buf[4];
  for (size_t i = 0; i < b.size(); ++i) {
    snprintf(buf, sizeof(buf), "%02x", b[i]);
    s += buf;
    s += (i % 16 == 15) ? "\n" : (i % 2 ? " " : "");
  }
  return s;
}

// The output frame's checksums, verified from scratch: the IPv4 header's, and
// the TCP checksum over the pseudo-header and the whole segment.
testing::AssertionResult valid_checksums(const Bytes& f) {
  if (f.size() < 14) return testing::AssertionFailure() << "frame of " << f.size() << " bytes";
  uint16_t type = get16(f, 12);
  size_t l4 = 0, len = 0;
  uint8_t proto = 0, family = 0;
  const uint8_t *src = nullptr, *dst = nullptr;
  if (type == 0x0800) {
    size_t hl = (f[14] & 0x0f) * 4u;
    if (f.size() < 14 + hl) return testing::AssertionFailure() << "IPv4 header cut short";
    if (fold(sum_bytes(&f[14], hl)) != 0xffff)
      return testing::AssertionFailure() << "IPv4 header checksum invalid";
    size_t tot = get16(f, 16);
    if (f.size() < 14 + tot) return testing::AssertionFailure() << "IPv4 packet cut short";
    family = KVLB_AF_INET;
    proto = f[23];
    src = &f[26];
    dst = &f[30];
    l4 = 14 + hl;
    len = tot - hl;
  } else if (type == 0x86dd) {
    size_t plen = get16(f, 18);
    if (f.size() < 54 + plen) return testing::AssertionFailure() << "IPv6 packet cut short";
    family = KVLB_AF_INET6;
    proto = f[20];
    src = &f[22];
    dst = &f[38];
    l4 = 54;
    len = plen;
  } else {
    return testing::AssertionFailure() << "not IP";
  }
  if (proto != IPPROTO_TCP) return testing::AssertionFailure() << "not TCP";
  uint64_t s = pseudo_sum(family, src, dst, proto, static_cast<uint32_t>(len));
  if (fold(sum_bytes(&f[l4], len, s)) != 0xffff)
    return testing::AssertionFailure() << "TCP checksum invalid";
  return testing::AssertionSuccess();
}

uint64_t mono_ns(clockid_t clock = CLOCK_MONOTONIC) {
  timespec ts{};
  clock_gettime(clock, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + ts.tv_nsec;
}

int ifindex(const char* name) {
  int i = static_cast<int>(if_nametoindex(name));
  if (!i) throw std::runtime_error(std::string("no interface ") + name);
  return i;
}

// ---- the network namespace ------------------------------------------------

// Runs a command; throws when it fails, unless `may_fail` (then says whether it
// worked, its stderr discarded).
bool run_cmd(const std::vector<std::string>& args, bool may_fail = false) {
  std::vector<char*> argv;
  std::string line;
  for (const auto& a : args) {
    argv.push_back(const_cast<char*>(a.c_str()));
    line += (line.empty() ? "" : " ") + a;
  }
  argv.push_back(nullptr);
  pid_t pid = fork();
  if (pid < 0) throw std::runtime_error("fork: " + std::string(strerror(errno)));
  if (pid == 0) {
    int null = may_fail ? open("/dev/null", O_WRONLY) : -1;
    if (null >= 0) dup2(null, STDERR_FILENO);
    execvp(argv[0], argv.data());
    _exit(127);
  }
  int st = 0;
  bool ok = waitpid(pid, &st, 0) == pid && WIFEXITED(st) && WEXITSTATUS(st) == 0;
  if (!ok && !may_fail) throw std::runtime_error("failed: " + line);
  return ok;
}

bool ip(const std::string& args, bool may_fail = false) {
  std::vector<std::string> v{"ip"};
  size_t at = 0;
  while (at < args.size()) {
    size_t sp = args.find(' ', at);
    if (sp == std::string::npos) sp = args.size();
    if (sp > at) v.push_back(args.substr(at, sp - at));
    at = sp + 1;
  }
  return run_cmd(v, may_fail);
}

void write_sysctl(const std::string& path, const std::string& value) {
  std::ofstream f(path);
  f << value;
  f.close();
  if (!f) throw std::runtime_error("cannot write " + path);
}

std::string mac_str(const Mac& m) {
  char buf[18];
  snprintf(buf, sizeof(buf), "%02x:%02x:%02x:%02x:%02x:%02x", m[0], m[1], m[2], m[3], m[4], m[5]);
  return buf;
}

std::string addr_str(uint8_t family, const kvlb_addr& a) {
  char buf[INET6_ADDRSTRLEN];
  inet_ntop(family == KVLB_AF_INET ? AF_INET : AF_INET6, a.words, buf, sizeof(buf));
  return buf;
}

// The fixture network, in the namespace this process just entered.
void setup_netns() {
  if (unshare(CLONE_NEWNET) != 0)
    throw std::runtime_error("unshare(CLONE_NEWNET): " + std::string(strerror(errno)));
  ip("link set lo up");
  // Dummy interfaces; a veth pair each (the peer up, for the carrier) where the
  // kernel has no dummy driver.
  for (const auto& [dev, mac] : {std::pair{"cli0", kCli0Mac}, std::pair{"be0", kBe0Mac}}) {
    std::string add = std::string("link add ") + dev + " address " + mac_str(mac);
    if (ip(add + " type dummy", true)) continue;
    ip(add + " type veth peer name " + dev + "p");
    ip(std::string("link set ") + dev + "p up");
  }
  ip("addr add 192.0.2.1/24 dev cli0");
  ip("addr add 198.51.100.1/24 dev be0");
  ip("-6 addr add 2001:db8:1::1/64 dev cli0 nodad");
  ip("-6 addr add 2001:db8:2::1/64 dev be0 nodad");
  ip("link set cli0 up");
  ip("link set be0 up");
  // Per namespace: these files are the namespace's of the process opening them.
  write_sysctl("/proc/sys/net/ipv4/conf/all/forwarding", "1");
  write_sysctl("/proc/sys/net/ipv6/conf/all/forwarding", "1");
  auto neigh = [](uint8_t family, const kvlb_addr& a, const Mac& m, const char* dev) {
    ip(std::string(family == KVLB_AF_INET ? "" : "-6 ") + "neigh add " + addr_str(family, a) +
       " lladdr " + mac_str(m) + " dev " + dev + " nud permanent");
  };
  neigh(KVLB_AF_INET, kClient4, kClient4Mac, "cli0");
  neigh(KVLB_AF_INET6, kClient6, kClient6Mac, "cli0");
  neigh(KVLB_AF_INET, kNearClient4, kNearClientMac, "be0");
  for (const auto& b : kBackends)
    if (b.neighbour) neigh(b.family, b.addr, b.mac, "be0");
}

// ---- the gateway ------------------------------------------------------------

using Stats = std::array<uint64_t, KVLB_GW_STAT_COUNT>;

struct Out {
  int err = 0;
  uint32_t verdict = ~0u;
  Bytes frame;
};

class Gateway {
 public:
  Gateway(uint64_t idle_ns, uint64_t closing_ns, uint32_t flow_entries = 4096,
          uint32_t sync_refresh_sweeps = 0) {
    skel_.reset(kvlb_gateway__open());
    if (!skel_)
      throw std::runtime_error("open the gateway skeleton: " + std::string(strerror(errno)));
    bpf_map* m;
    bpf_object__for_each_map(m, skel_->obj) bpf_map__set_pin_path(m, nullptr);
    bpf_map__set_max_entries(skel_->maps.kvlb_flow_v1, flow_entries);
    auto* ro = skel_->rodata;
    ro->cfg_snat4 = kSnat4.words[0];
    for (int i = 0; i < 4; ++i) ro->cfg_snat6[i] = kSnat6.words[i];
    ro->cfg_snat_port_lo = kSnatLo;
    ro->cfg_snat_port_hi = kSnatHi;
    ro->cfg_flow_idle_ns = idle_ns;
    ro->cfg_flow_closing_ns = closing_ns;
    ro->cfg_sync_refresh_sweeps = sync_refresh_sweeps;
    if (int err = kvlb_gateway__load(skel_.get()))
      throw std::runtime_error("load the gateway: " + std::string(strerror(-err)));
    ncpu_ = libbpf_num_possible_cpus();
    populate();
  }

  int fd(bpf_map* m) const { return bpf_map__fd(m); }
  kvlb_gateway* skel() const { return skel_.get(); }
  const std::vector<uint32_t>& maglev(uint32_t row) const { return row == 1 ? maglev4_ : maglev6_; }

  // Back to the state every test starts from: no flows, zero counters and
  // stats, fresh scores (backend 1 and 4 busy, 2 and 5 idle, 3 in between).
  void reset() {
    for (const auto& [k, f] : flows()) bpf_map_delete_elem(fd(skel_->maps.kvlb_flow_v1), &k);
    for (uint32_t id = 0; id <= kMaxId; ++id) {
      kvlb_counters c{};
      check(bpf_map_update_elem(fd(skel_->maps.kvlb_ctr_v1), &id, &c, BPF_ANY), "reset counters");
    }
    std::vector<uint64_t> zeros(static_cast<size_t>(ncpu_) * KVLB_GW_STAT_COUNT, 0);
    uint32_t zero = 0;
    check(bpf_map_update_elem(fd(skel_->maps.kvlb_gwstat_v1), &zero, zeros.data(), BPF_ANY),
          "reset stats");
    for (uint32_t e = 0; e < KVLB_EVENT_COUNT; ++e)
      check(bpf_map_update_elem(fd(skel_->maps.kvlb_events_v1), &e, zeros.data(), BPF_ANY),
            "reset events");
    uint64_t now = mono_ns();
    for (const auto& b : kBackends) {
      kvlb_score s{};
      s.waiting = b.waiting;
      s.kv_permille = 100;
      s.weight = 100;
      s.state = b.state;
      s.updated_ns = now;
      check(bpf_map_update_elem(fd(skel_->maps.kvlb_score_v1), &b.id, &s, BPF_ANY), "score");
    }
  }

  Out run(const Bytes& frame, const char* ifname, size_t meta = 0) const {
    Out o;
    Bytes in(meta, 0);
    in.insert(in.end(), frame.begin(), frame.end());
    Bytes out(4096);
    xdp_md ctx{};
    ctx.data = static_cast<uint32_t>(meta);
    ctx.data_end = static_cast<uint32_t>(in.size());
    ctx.ingress_ifindex = static_cast<uint32_t>(ifindex(ifname));
    bpf_test_run_opts opts{};
    opts.sz = sizeof(opts);
    opts.data_in = in.data();
    opts.data_size_in = static_cast<uint32_t>(in.size());
    opts.data_out = out.data();
    opts.data_size_out = static_cast<uint32_t>(out.size());
    opts.ctx_in = &ctx;
    opts.ctx_size_in = sizeof(ctx);
    opts.repeat = 1;
    o.err = bpf_prog_test_run_opts(bpf_program__fd(skel_->progs.kvlb_gateway), &opts);
    if (o.err) o.err = -errno;
    o.verdict = opts.retval;
    if (!o.err && opts.data_size_out >= meta)
      o.frame.assign(out.begin() + static_cast<long>(meta),
                     out.begin() + static_cast<long>(opts.data_size_out));
    return o;
  }

  // The kernel's time for one run of `frame` (BPF_PROG_TEST_RUN's duration:
  // its total over `repeat` runs of the same buffer, divided by `repeat`).
  uint32_t timed(const Bytes& frame, int ifidx, uint32_t repeat = 1) const {
    Bytes in(frame), out(4096);
    xdp_md ctx{};
    ctx.data_end = static_cast<uint32_t>(in.size());
    ctx.ingress_ifindex = static_cast<uint32_t>(ifidx);
    bpf_test_run_opts opts{};
    opts.sz = sizeof(opts);
    opts.data_in = in.data();
    opts.data_size_in = static_cast<uint32_t>(in.size());
    opts.data_out = out.data();
    opts.data_size_out = static_cast<uint32_t>(out.size());
    opts.ctx_in = &ctx;
    opts.ctx_size_in = sizeof(ctx);
    opts.repeat = repeat;
    check(bpf_prog_test_run_opts(bpf_program__fd(skel_->progs.kvlb_gateway), &opts), "timed run");
    return opts.duration;
  }

  // The flow events written since the last call (flow sync), oldest first.
  std::vector<kvlb_flow_event> events() const {
    std::vector<kvlb_flow_event> out;
    auto take = [](void* ctx, void* data, size_t size) -> int {
      kvlb_flow_event e{};
      if (size != sizeof(e)) return -EINVAL;
      std::memcpy(&e, data, sizeof(e));
      static_cast<std::vector<kvlb_flow_event>*>(ctx)->push_back(e);
      return 0;
    };
    ring_buffer* rb = ring_buffer__new(fd(skel_->maps.kvlb_flowev_v1), take, &out, nullptr);
    if (!rb) throw std::runtime_error("open the flow-event ring");
    const int n = ring_buffer__consume(rb);
    ring_buffer__free(rb);
    if (n < 0) throw std::runtime_error("read the flow-event ring");
    return out;
  }

  // A peer's event through the sync program, as the agent runs it: its verdict.
  uint32_t sync(const kvlb_flow_sync& s, size_t size = sizeof(kvlb_flow_sync)) const {
    Bytes in(std::max<size_t>(size, 14), 0), out(256);
    std::memcpy(in.data(), &s, std::min(size, sizeof(s)));
    in.resize(std::max<size_t>(size, 14));
    bpf_test_run_opts opts{};
    opts.sz = sizeof(opts);
    opts.data_in = in.data();
    opts.data_size_in = static_cast<uint32_t>(in.size());
    opts.data_out = out.data();
    opts.data_size_out = static_cast<uint32_t>(out.size());
    opts.repeat = 1;
    check(bpf_prog_test_run_opts(bpf_program__fd(skel_->progs.kvlb_gw_sync), &opts), "sync");
    return opts.retval;
  }

  // One pass of the sweep program, as the agent runs it.
  uint32_t sweep() const {
    Bytes in(64, 0), out(128);
    bpf_test_run_opts opts{};
    opts.sz = sizeof(opts);
    opts.data_in = in.data();
    opts.data_size_in = static_cast<uint32_t>(in.size());
    opts.data_out = out.data();
    opts.data_size_out = static_cast<uint32_t>(out.size());
    opts.repeat = 1;
    check(bpf_prog_test_run_opts(bpf_program__fd(skel_->progs.kvlb_gw_sweep), &opts), "sweep");
    return opts.retval;
  }

  Stats stats() const {
    std::vector<uint64_t> v(static_cast<size_t>(ncpu_) * KVLB_GW_STAT_COUNT);
    uint32_t zero = 0;
    check(bpf_map_lookup_elem(fd(skel_->maps.kvlb_gwstat_v1), &zero, v.data()), "stats");
    Stats s{};
    for (int c = 0; c < ncpu_; ++c)
      for (int i = 0; i < KVLB_GW_STAT_COUNT; ++i) s[i] += v[c * KVLB_GW_STAT_COUNT + i];
    return s;
  }

  uint64_t event(uint32_t e) const {
    std::vector<uint64_t> v(static_cast<size_t>(ncpu_));
    check(bpf_map_lookup_elem(fd(skel_->maps.kvlb_events_v1), &e, v.data()), "events");
    uint64_t n = 0;
    for (auto x : v) n += x;
    return n;
  }

  kvlb_counters counters(uint32_t id) const {
    kvlb_counters c{};
    check(bpf_map_lookup_elem(fd(skel_->maps.kvlb_ctr_v1), &id, &c), "counters");
    return c;
  }

  std::vector<std::pair<kvlb_flow_key, kvlb_flow>> flows() const {
    std::vector<std::pair<kvlb_flow_key, kvlb_flow>> out;
    kvlb_flow_key k{}, next{};
    const void* prev = nullptr;
    while (bpf_map_get_next_key(fd(skel_->maps.kvlb_flow_v1), prev, &next) == 0) {
      kvlb_flow f{};
      if (bpf_map_lookup_elem(fd(skel_->maps.kvlb_flow_v1), &next, &f) == 0)
        out.emplace_back(next, f);
      k = next;
      prev = &k;
    }
    return out;
  }

  std::optional<kvlb_flow> flow(const kvlb_flow_key& k) const {
    kvlb_flow f{};
    if (bpf_map_lookup_elem(fd(skel_->maps.kvlb_flow_v1), &k, &f) != 0) return std::nullopt;
    return f;
  }

  void put_flow(const kvlb_flow_key& k, const kvlb_flow& f) const {
    check(bpf_map_update_elem(fd(skel_->maps.kvlb_flow_v1), &k, &f, BPF_ANY), "put flow");
  }

  void delete_flow(const kvlb_flow_key& k) const {
    check(bpf_map_delete_elem(fd(skel_->maps.kvlb_flow_v1), &k), "delete flow");
  }

 private:
  static void check(int rc, const char* what) {
    if (rc != 0) throw std::runtime_error(std::string(what) + ": " + strerror(errno));
  }

  void populate() {
    for (const auto& b : kBackends) {
      kvlb_backend v{};
      v.addr = b.addr;
      v.port = htons(kBackendPort);
      v.family = b.family;
      check(bpf_map_update_elem(fd(skel_->maps.kvlb_be_v1), &b.id, &v, BPF_ANY), "backend");
    }
    for (const auto& s : kServices) {
      kvlb_service_key k{};
      k.vip = s.vip;
      k.port = htons(kVipPort);
      k.proto = IPPROTO_TCP;
      k.family = s.family;
      kvlb_service v{};
      v.id = s.maglev_row + 100;
      v.backend_count = static_cast<uint16_t>(s.ids.size());
      v.policy = KVLB_POLICY_P2C_QUEUE_KV;
      v.choices = 3;
      v.maglev_row = s.maglev_row;
      for (size_t i = 0; i < s.ids.size(); ++i) v.slots[i] = s.ids[i];
      check(bpf_map_update_elem(fd(skel_->maps.kvlb_svc_v2), &k, &v, BPF_ANY), "service");
      kvlb_service_key vk{};
      vk.vip = s.vip;
      vk.family = s.family;
      uint32_t one = 1;
      check(bpf_map_update_elem(fd(skel_->maps.kvlb_vip_v1), &vk, &one, BPF_ANY), "vip");
      if (!s.maglev_row) continue;
      std::vector<kvlb::gateway::MaglevBackend> bes;
      for (uint32_t id : s.ids)
        bes.push_back({id, backend(id).addr, htons(kBackendPort), backend(id).family});
      auto table = kvlb::gateway::build_maglev(bes);
      for (uint32_t i = 0; i < table.size(); ++i) {
        uint32_t slot = (s.maglev_row - 1) * KVLB_MAGLEV_SIZE + i;
        check(bpf_map_update_elem(fd(skel_->maps.kvlb_maglev_v1), &slot, &table[i], BPF_ANY),
              "maglev");
      }
      (s.maglev_row == 1 ? maglev4_ : maglev6_) = std::move(table);
    }
  }

  std::unique_ptr<kvlb_gateway, decltype(&kvlb_gateway__destroy)> skel_{nullptr,
                                                                        kvlb_gateway__destroy};
  int ncpu_ = 1;
  std::vector<uint32_t> maglev4_, maglev6_;
};

// Every stat is the one listed (0 when not listed).
void expect_stats(const Stats& got, std::initializer_list<std::pair<kvlb_gw_stat, uint64_t>> want) {
  Stats w{};
  for (const auto& [i, n] : want) w[i] = n;
  for (int i = 0; i < KVLB_GW_STAT_COUNT; ++i)
    EXPECT_EQ(got[i], w[i]) << "stat " << kStatNames[i] << " (" << i << ")";
}

// An entry of the flow table with the translation given (the time aside).
void expect_flow(const Gateway& gw, const kvlb_flow_key& k, kvlb_addr src, uint16_t sport,
                 kvlb_addr dst, uint16_t dport, uint32_t id, uint64_t flags) {
  auto f = gw.flow(k);
  ASSERT_TRUE(f.has_value()) << "no flow entry for " << addr_str(k.family, k.src) << ":"
                             << ntohs(k.sport) << " > " << addr_str(k.family, k.dst) << ":"
                             << ntohs(k.dport);
  EXPECT_EQ(addr_str(k.family, f->src), addr_str(k.family, src));
  EXPECT_EQ(ntohs(f->sport), sport);
  EXPECT_EQ(addr_str(k.family, f->dst), addr_str(k.family, dst));
  EXPECT_EQ(ntohs(f->dport), dport);
  EXPECT_EQ(f->backend_id, id);
  EXPECT_EQ(f->flags, flags);
  // bpf_ktime_get_coarse_ns() is CLOCK_MONOTONIC_COARSE: written during this test
  // (give or take a tick or two between the kernel's and the vDSO's reading).
  uint64_t now = mono_ns(CLOCK_MONOTONIC_COARSE);
  EXPECT_LE(f->last_seen_ns, now + 100'000'000ull);
  EXPECT_GT(f->last_seen_ns + 5'000'000'000ull, now);
}

void expect_counters(const Gateway& gw, uint32_t id, uint64_t picks, int64_t inflight) {
  auto c = gw.counters(id);
  EXPECT_EQ(c.picks, picks) << "backend " << id << " picks";
  EXPECT_EQ(c.inflight, inflight) << "backend " << id << " in-flight";
}

// ---- fixtures ---------------------------------------------------------------

class GatewayTest : public testing::Test {
 protected:
  static Gateway& gw() {
    // Default timeouts (the agent's): nothing here waits for them.
    static Gateway g(600'000'000'000ull, 30'000'000'000ull);
    return g;
  }
  void SetUp() override { gw().reset(); }

  // Runs `in` and checks the verdict and the output frame against `want`,
  // whose checksums are valid (verified from scratch in the output).
  void expect_translated(const Pkt& in, const char* ifname, uint32_t verdict, const Pkt& want) {
    Out o = gw().run(in.bytes(), ifname);
    ASSERT_EQ(o.err, 0) << strerror(-o.err);
    EXPECT_EQ(o.verdict, verdict);
    EXPECT_EQ(hex(o.frame), hex(want.bytes()));
    EXPECT_TRUE(valid_checksums(o.frame));
  }

  void expect_unchanged(const Bytes& in, const char* ifname, uint32_t verdict, size_t meta = 0) {
    Out o = gw().run(in, ifname, meta);
    ASSERT_EQ(o.err, 0) << strerror(-o.err);
    EXPECT_EQ(o.verdict, verdict);
    EXPECT_EQ(hex(o.frame), hex(in));
  }

  // A SYN from the IPv4 client's port `cport` to the IPv4 VIP, which goes to
  // backend 2 (the idle one); returns its SNAT port.
  uint16_t open4(uint16_t cport) {
    Pkt syn = client4(cport, kSyn);
    uint16_t sp = snat_port(key_of(syn));
    const auto& b = backend(2);
    expect_translated(syn, "cli0", XDP_REDIRECT,
                      translated(syn, kBe0Mac, b.mac, kSnat4, sp, b.addr, kBackendPort));
    return sp;
  }
};

// 1. A SYN to the VIP: the least busy backend (2: 1 has 50 requests waiting, 3
// has 10), source NAT to the gateway's address and the flow's hashed port,
// routed out of be0 to the backend's MAC; both flow entries; one pick.
TEST_F(GatewayTest, SynToVipIsTranslatedToTheLeastBusyBackend) {
  Pkt syn = client4(40000, kSyn);
  kvlb_flow_key ck = key_of(syn);
  uint16_t sp = snat_port(ck);
  const auto& b = backend(2);
  expect_translated(syn, "cli0", XDP_REDIRECT,
                    translated(syn, kBe0Mac, b.mac, kSnat4, sp, b.addr, kBackendPort));

  EXPECT_EQ(gw().flows().size(), 2u);
  expect_flow(gw(), ck, kSnat4, sp, b.addr, kBackendPort, 2, 0);
  expect_flow(gw(), flow_key(KVLB_AF_INET, b.addr, kBackendPort, kSnat4, sp), kVip4, kVipPort,
              kClient4, 40000, 2, KVLB_FLOW_F_REVERSE);
  expect_counters(gw(), 1, 0, 0);
  expect_counters(gw(), 2, 1, 1);
  expect_counters(gw(), 3, 0, 0);
  expect_stats(gw().stats(), {{KVLB_GW_PACKETS, 1}, {KVLB_GW_NEW_FLOW, 1}});
}

// 2. The flow's next packets take the entry: the same translation, no pick.
TEST_F(GatewayTest, EstablishedPacketTakesTheFlowsTranslationWithoutAPick) {
  uint16_t sp = open4(40001);
  Pkt ack = client4(40001, kAck | kPsh);
  ack.payload = {'G', 'E', 'T', ' ', '/', '\r', '\n'};
  ack.seq = 1001;
  const auto& b = backend(2);
  expect_translated(ack, "cli0", XDP_REDIRECT,
                    translated(ack, kBe0Mac, b.mac, kSnat4, sp, b.addr, kBackendPort));
  expect_counters(gw(), 2, 1, 1);
  EXPECT_EQ(gw().flows().size(), 2u);
  expect_stats(gw().stats(), {{KVLB_GW_PACKETS, 2}, {KVLB_GW_NEW_FLOW, 1}, {KVLB_GW_FORWARD, 1}});
}

// A retransmitted SYN of a live flow is one of its packets, not a new pick.
TEST_F(GatewayTest, RetransmittedSynDoesNotPickAgain) {
  uint16_t sp = open4(40002);
  Pkt syn = client4(40002, kSyn);
  const auto& b = backend(2);
  expect_translated(syn, "cli0", XDP_REDIRECT,
                    translated(syn, kBe0Mac, b.mac, kSnat4, sp, b.addr, kBackendPort));
  expect_counters(gw(), 2, 1, 1);
  expect_stats(gw().stats(), {{KVLB_GW_PACKETS, 2}, {KVLB_GW_NEW_FLOW, 1}, {KVLB_GW_FORWARD, 1}});
}

// 3. The backend's answer, arriving on be0 for the SNAT address and port, goes
// back to the client from the VIP, out of cli0.
TEST_F(GatewayTest, ReturnPacketIsTranslatedBackToTheClient) {
  uint16_t sp = open4(40003);
  const auto& b = backend(2);
  Pkt synack = from_backend(b, sp, kSyn | kAck);
  synack.tcp_opts = {2, 4, 0x05, 0xb4};
  synack.payload = {};
  expect_translated(synack, "be0", XDP_REDIRECT,
                    translated(synack, kCli0Mac, kClient4Mac, kVip4, kVipPort, kClient4, 40003));
  Pkt data = from_backend(b, sp, kAck | kPsh);
  data.payload = Bytes(333, 'x');
  expect_translated(data, "be0", XDP_REDIRECT,
                    translated(data, kCli0Mac, kClient4Mac, kVip4, kVipPort, kClient4, 40003));
  expect_counters(gw(), 2, 1, 1);
  expect_stats(gw().stats(), {{KVLB_GW_PACKETS, 3}, {KVLB_GW_NEW_FLOW, 1}, {KVLB_GW_REVERSE, 2}});
}

// 4. A FIN is forwarded and closes the flow: in-flight released once, however
// many FINs follow (a second flow to the same backend keeps the count above
// zero, so a second release would show).
TEST_F(GatewayTest, FinReleasesInflightOnce) {
  uint16_t spa = open4(40004);
  uint16_t spb = open4(40005);
  expect_counters(gw(), 2, 2, 2);
  const auto& b = backend(2);
  Pkt fin = client4(40004, kFin | kAck);
  fin.seq = 2000;
  for (int i = 0; i < 2; ++i) {
    expect_translated(fin, "cli0", XDP_REDIRECT,
                      translated(fin, kBe0Mac, b.mac, kSnat4, spa, b.addr, kBackendPort));
    expect_counters(gw(), 2, 2, 1);
  }
  expect_flow(gw(), key_of(fin), kSnat4, spa, b.addr, kBackendPort, 2, KVLB_FLOW_F_CLOSING);
  Pkt fin_b = client4(40005, kFin | kAck);
  for (int i = 0; i < 2; ++i) {
    expect_translated(fin_b, "cli0", XDP_REDIRECT,
                      translated(fin_b, kBe0Mac, b.mac, kSnat4, spb, b.addr, kBackendPort));
    expect_counters(gw(), 2, 2, 0);
  }
  expect_stats(
      gw().stats(),
      {{KVLB_GW_PACKETS, 6}, {KVLB_GW_NEW_FLOW, 2}, {KVLB_GW_FORWARD, 4}, {KVLB_GW_CLOSED, 2}});
}

// The backend closing first releases the flow's in-flight once too: its FIN,
// an RST after it and the client's FIN do not release it again.
TEST_F(GatewayTest, BackendFinReleasesInflightOnce) {
  uint16_t spa = open4(40006);
  open4(40007);
  const auto& b = backend(2);
  Pkt fin = from_backend(b, spa, kFin | kAck);
  expect_translated(fin, "be0", XDP_REDIRECT,
                    translated(fin, kCli0Mac, kClient4Mac, kVip4, kVipPort, kClient4, 40006));
  expect_counters(gw(), 2, 2, 1);
  Pkt rst = from_backend(b, spa, kRst);
  expect_translated(rst, "be0", XDP_REDIRECT,
                    translated(rst, kCli0Mac, kClient4Mac, kVip4, kVipPort, kClient4, 40006));
  Pkt cfin = client4(40006, kFin | kAck);
  expect_translated(cfin, "cli0", XDP_REDIRECT,
                    translated(cfin, kBe0Mac, b.mac, kSnat4, spa, b.addr, kBackendPort));
  expect_counters(gw(), 2, 2, 1);
  expect_flow(gw(), key_of(cfin), kSnat4, spa, b.addr, kBackendPort, 2, KVLB_FLOW_F_CLOSING);
  expect_flow(gw(), flow_key(KVLB_AF_INET, b.addr, kBackendPort, kSnat4, spa), kVip4, kVipPort,
              kClient4, 40006, 2, KVLB_FLOW_F_REVERSE | KVLB_FLOW_F_CLOSING);
  expect_stats(gw().stats(), {{KVLB_GW_PACKETS, 5},
                              {KVLB_GW_NEW_FLOW, 2},
                              {KVLB_GW_FORWARD, 1},
                              {KVLB_GW_REVERSE, 2},
                              {KVLB_GW_CLOSED, 1}});
}

// A SYN on the tuple of a closed flow is a new connection: a new pick, a new
// SNAT port (the backend may hold the old one in TIME_WAIT, where it refuses a
// SYN: PAWS), the old backend-side entry kept as retired; a late segment of the
// old connection is not delivered into the new one.
TEST_F(GatewayTest, SynReusingAClosedFlowsTupleStartsANewFlowOnAnotherPort) {
  uint16_t sp = open4(40008);
  Pkt fin = client4(40008, kFin | kAck);
  gw().run(fin.bytes(), "cli0");
  expect_counters(gw(), 2, 1, 0);
  Pkt syn = client4(40008, kSyn);
  syn.seq = 99999;
  const auto& b = backend(2);
  uint16_t sp1 = snat_port(key_of(syn), 1);
  ASSERT_EQ(sp, snat_port(key_of(syn), 0));
  ASSERT_NE(sp1, sp);
  expect_translated(syn, "cli0", XDP_REDIRECT,
                    translated(syn, kBe0Mac, b.mac, kSnat4, sp1, b.addr, kBackendPort));
  expect_counters(gw(), 2, 2, 1);
  EXPECT_EQ(gw().flows().size(), 3u);
  expect_flow(gw(), key_of(syn), kSnat4, sp1, b.addr, kBackendPort, 2, 0);
  expect_flow(gw(), flow_key(KVLB_AF_INET, b.addr, kBackendPort, kSnat4, sp1), kVip4, kVipPort,
              kClient4, 40008, 2, KVLB_FLOW_F_REVERSE);
  expect_flow(gw(), flow_key(KVLB_AF_INET, b.addr, kBackendPort, kSnat4, sp), kVip4, kVipPort,
              kClient4, 40008, 2, KVLB_FLOW_F_REVERSE | KVLB_FLOW_F_CLOSING | KVLB_FLOW_F_RETIRED);
  // The old connection's last ACK from the backend: not translated.
  expect_unchanged(from_backend(b, sp, kAck).bytes(), "be0", XDP_PASS);
  // The new connection's SYN-ACK: translated back to the client.
  Pkt synack = from_backend(b, sp1, kSyn | kAck);
  expect_translated(synack, "be0", XDP_REDIRECT,
                    translated(synack, kCli0Mac, kClient4Mac, kVip4, kVipPort, kClient4, 40008));
  // The client reuses the tuple once more: probe 0 is still retired, probe 1
  // is the live flow's (closed first): probe 2.
  gw().run(client4(40008, kRst).bytes(), "cli0");
  Pkt syn2 = client4(40008, kSyn);
  uint16_t sp2 = snat_port(key_of(syn2), 2);
  expect_translated(syn2, "cli0", XDP_REDIRECT,
                    translated(syn2, kBe0Mac, b.mac, kSnat4, sp2, b.addr, kBackendPort));
  expect_counters(gw(), 2, 3, 1);
  expect_stats(gw().stats(), {{KVLB_GW_PACKETS, 7},
                              {KVLB_GW_NEW_FLOW, 3},
                              {KVLB_GW_FORWARD, 2},
                              {KVLB_GW_REVERSE, 1},
                              {KVLB_GW_REVERSE_MISS, 1},
                              {KVLB_GW_CLOSED, 2}});
}

// A client port whose Maglev slot (in `row`'s table) holds backend `id`.
uint16_t port_placed_on(const Gateway& gw, uint8_t family, uint32_t row, uint32_t id) {
  for (uint16_t cport = 50000; cport < 60000; ++cport) {
    kvlb_addr c = family == KVLB_AF_INET ? kClient4 : kClient6;
    kvlb_addr v = family == KVLB_AF_INET ? kVip4 : kVip6;
    kvlb_flow_key k = flow_key(family, c, cport, v, kVipPort);
    if (gw.maglev(row)[kvlb_maglev_slot(&k)] == id) return cport;
  }
  throw std::runtime_error("no client port placed on the backend");
}

// 5. A non-SYN with no entry (the table lost the flow) goes where the service's
// Maglev table says, with the first SNAT probe's port. Backend 1 is the busy
// one: a pick would never choose it, Maglev does for this client port.
TEST_F(GatewayTest, TableMissIsPlacedByMaglev) {
  uint16_t cport = port_placed_on(gw(), KVLB_AF_INET, 1, 1);
  Pkt ack = client4(cport, kAck);
  ack.payload = {'x'};
  kvlb_flow_key ck = key_of(ack);
  ASSERT_EQ(gw().maglev(1)[kvlb_maglev_slot(&ck)], 1u);
  uint16_t sp = snat_port(ck);
  const auto& b = backend(1);
  expect_translated(ack, "cli0", XDP_REDIRECT,
                    translated(ack, kBe0Mac, b.mac, kSnat4, sp, b.addr, kBackendPort));
  expect_flow(gw(), ck, kSnat4, sp, b.addr, kBackendPort, 1, KVLB_FLOW_F_MAGLEV);
  expect_flow(gw(), flow_key(KVLB_AF_INET, b.addr, kBackendPort, kSnat4, sp), kVip4, kVipPort,
              kClient4, cport, 1, KVLB_FLOW_F_MAGLEV | KVLB_FLOW_F_REVERSE);
  expect_counters(gw(), 1, 1, 1);
  expect_counters(gw(), 2, 0, 0);
  expect_stats(gw().stats(), {{KVLB_GW_PACKETS, 1}, {KVLB_GW_MAGLEV, 1}});
}

TEST_F(GatewayTest, Ipv6TableMissIsPlacedByMaglev) {
  uint16_t cport = port_placed_on(gw(), KVLB_AF_INET6, 2, 4);
  Pkt ack = client6(cport, kAck);
  kvlb_flow_key ck = key_of(ack);
  uint16_t sp = snat_port(ck);
  const auto& b = backend(4);
  expect_translated(ack, "cli0", XDP_REDIRECT,
                    translated(ack, kBe0Mac, b.mac, kSnat6, sp, b.addr, kBackendPort));
  expect_flow(gw(), ck, kSnat6, sp, b.addr, kBackendPort, 4, KVLB_FLOW_F_MAGLEV);
  expect_stats(gw().stats(), {{KVLB_GW_PACKETS, 1}, {KVLB_GW_MAGLEV, 1}});
}

// A FIN or RST with no entry is placed by Maglev too, but statelessly: no
// entry, no pick (a flow's last packets must not open it again).
TEST_F(GatewayTest, FinWithoutFlowIsPlacedStatelessly) {
  uint16_t cport = port_placed_on(gw(), KVLB_AF_INET, 1, 3);
  Pkt fin = client4(cport, kFin | kAck);
  uint16_t sp = snat_port(key_of(fin));
  const auto& b = backend(3);
  expect_translated(fin, "cli0", XDP_REDIRECT,
                    translated(fin, kBe0Mac, b.mac, kSnat4, sp, b.addr, kBackendPort));
  EXPECT_TRUE(gw().flows().empty());
  expect_counters(gw(), 3, 0, 0);
  expect_stats(gw().stats(), {{KVLB_GW_PACKETS, 1}, {KVLB_GW_MAGLEV, 1}});
}

// The client-side entry lost, the backend-side one still there: Maglev places
// the flow on the same backend (this client port's slot holds backend 2, the
// one the SYN picked) and the flow keeps its SNAT port (the backend-side entry
// is recognised as the flow's own, not a collision).
TEST_F(GatewayTest, LostClientEntryKeepsItsSnatPort) {
  uint16_t cport = port_placed_on(gw(), KVLB_AF_INET, 1, 2);
  uint16_t sp = open4(cport);
  gw().delete_flow(key_of(client4(cport, kAck)));
  Pkt ack = client4(cport, kAck);
  const auto& b = backend(2);
  expect_translated(ack, "cli0", XDP_REDIRECT,
                    translated(ack, kBe0Mac, b.mac, kSnat4, sp, b.addr, kBackendPort));
  EXPECT_EQ(gw().flows().size(), 2u);
  expect_flow(gw(), flow_key(KVLB_AF_INET, b.addr, kBackendPort, kSnat4, sp), kVip4, kVipPort,
              kClient4, cport, 2, KVLB_FLOW_F_MAGLEV | KVLB_FLOW_F_REVERSE);
  expect_stats(gw().stats(), {{KVLB_GW_PACKETS, 2}, {KVLB_GW_NEW_FLOW, 1}, {KVLB_GW_MAGLEV, 1}});
}

// The SNAT port of the first probe held by another flow: the next probe's.
TEST_F(GatewayTest, SnatPortTakenByAnotherFlowTakesTheNextProbe) {
  Pkt syn = client4(40010, kSyn);
  kvlb_flow_key ck = key_of(syn);
  const auto& b = backend(2);
  kvlb_flow other{};
  other.src = kVip4;
  other.dst = A4("192.0.2.200");
  other.sport = htons(kVipPort);
  other.dport = htons(5555);
  other.backend_id = 2;
  other.last_seen_ns = mono_ns(CLOCK_MONOTONIC_COARSE);
  other.flags = KVLB_FLOW_F_REVERSE;
  gw().put_flow(flow_key(KVLB_AF_INET, b.addr, kBackendPort, kSnat4, snat_port(ck, 0)), other);
  uint16_t sp = snat_port(ck, 1);
  ASSERT_NE(sp, snat_port(ck, 0));
  expect_translated(syn, "cli0", XDP_REDIRECT,
                    translated(syn, kBe0Mac, b.mac, kSnat4, sp, b.addr, kBackendPort));
  expect_flow(gw(), flow_key(KVLB_AF_INET, b.addr, kBackendPort, kSnat4, snat_port(ck, 0)), kVip4,
              kVipPort, A4("192.0.2.200"), 5555, 2, KVLB_FLOW_F_REVERSE);
  expect_flow(gw(), ck, kSnat4, sp, b.addr, kBackendPort, 2, 0);
  EXPECT_EQ(gw().flows().size(), 3u);
  expect_stats(gw().stats(), {{KVLB_GW_PACKETS, 1}, {KVLB_GW_NEW_FLOW, 1}});
}

// Holds the port of SNAT probe `probe` of client key `ck` at backend `b` for
// another client's flow.
void take_snat_port(const Gateway& g, const kvlb_flow_key& ck, const BackendDef& b,
                    uint32_t probe) {
  kvlb_flow other{};
  other.src = kVip4;
  other.dst = A4("192.0.2.200");
  other.sport = htons(kVipPort);
  other.dport = htons(static_cast<uint16_t>(5000 + probe));
  other.backend_id = 2;
  other.flags = KVLB_FLOW_F_REVERSE;
  g.put_flow(flow_key(KVLB_AF_INET, b.addr, kBackendPort, kSnat4, snat_port(ck, probe)), other);
}

constexpr uint32_t kSnatProbes = KVLB_SNAT_PROBES;  // bpf/lib/flow_hash.h

// Every probe but the last held by other flows: the SYN gets the last one.
TEST_F(GatewayTest, SnatLastProbeIsTried) {
  Pkt syn = client4(40013, kSyn);
  kvlb_flow_key ck = key_of(syn);
  const auto& b = backend(2);
  for (uint32_t probe = 0; probe + 1 < kSnatProbes; ++probe) take_snat_port(gw(), ck, b, probe);
  expect_translated(syn, "cli0", XDP_REDIRECT,
                    translated(syn, kBe0Mac, b.mac, kSnat4, snat_port(ck, kSnatProbes - 1), b.addr,
                               kBackendPort));
  EXPECT_EQ(gw().flows().size(), kSnatProbes + 1);
  expect_counters(gw(), 2, 1, 1);
}

// Every probe's port held by other flows: the SYN is dropped, nothing counted.
TEST_F(GatewayTest, SnatPortsAllTakenDropsTheSyn) {
  Pkt syn = client4(40011, kSyn);
  kvlb_flow_key ck = key_of(syn);
  const auto& b = backend(2);
  for (uint32_t probe = 0; probe < kSnatProbes; ++probe) take_snat_port(gw(), ck, b, probe);
  expect_unchanged(syn.bytes(), "cli0", XDP_DROP);
  EXPECT_EQ(gw().flows().size(), kSnatProbes);
  EXPECT_FALSE(gw().flow(ck).has_value());
  expect_counters(gw(), 2, 0, 0);
  expect_stats(gw().stats(), {{KVLB_GW_PACKETS, 1}, {KVLB_GW_SNAT_BUSY, 1}});
}

// 7. IPv4 options are carried through: the ports read past them, the header
// checksum (which covers them) still valid after the rewrite.
TEST_F(GatewayTest, Ipv4OptionsArePreserved) {
  Pkt syn = client4(40012, kSyn);
  syn.ip_opts = {0x01, 0x01, 0x01, 0x00};  // NOP, NOP, NOP, end of options
  uint16_t sp = snat_port(key_of(syn));
  const auto& b = backend(2);
  Pkt want = translated(syn, kBe0Mac, b.mac, kSnat4, sp, b.addr, kBackendPort);
  expect_translated(syn, "cli0", XDP_REDIRECT, want);
  Out o = gw().run(client4(40012, kAck).bytes(), "cli0");  // and its flow's next packet
  EXPECT_EQ(o.verdict, static_cast<uint32_t>(XDP_REDIRECT));
  expect_stats(gw().stats(), {{KVLB_GW_PACKETS, 2}, {KVLB_GW_NEW_FLOW, 1}, {KVLB_GW_FORWARD, 1}});
}

// A minimum-size frame carries Ethernet padding after the IP packet: it is not
// part of the packet (the checksums do not cover it) and stays as it is.
TEST_F(GatewayTest, EthernetPaddingIsLeftAlone) {
  Pkt syn = client4(40013, kSyn);
  syn.tcp_opts = {};
  syn.pad = 6;  // 54 bytes of headers to the 60-byte minimum
  uint16_t sp = snat_port(key_of(syn));
  const auto& b = backend(2);
  expect_translated(syn, "cli0", XDP_REDIRECT,
                    translated(syn, kBe0Mac, b.mac, kSnat4, sp, b.addr, kBackendPort));
}

// A packet of a known flow whose TTL would expire here goes to the stack (which
// answers with ICMP time exceeded), untouched.
TEST_F(GatewayTest, TtlExpiringOnAKnownFlowIsPassed) {
  open4(40014);
  Pkt ack = client4(40014, kAck);
  ack.ttl = 1;
  expect_unchanged(ack.bytes(), "cli0", XDP_PASS);
  expect_counters(gw(), 2, 1, 1);
  expect_stats(gw().stats(), {{KVLB_GW_PACKETS, 2}, {KVLB_GW_NEW_FLOW, 1}, {KVLB_GW_TTL, 1}});
}

// 8. IPv6: the SYN to the IPv6 VIP (hop limit one less; no header checksum, the
// TCP checksum's pseudo-header changed) and the answer back.
TEST_F(GatewayTest, Ipv6SynAndReturnAreTranslated) {
  Pkt syn = client6(40020, kSyn);
  kvlb_flow_key ck = key_of(syn);
  uint16_t sp = snat_port(ck);
  const auto& b = backend(5);
  expect_translated(syn, "cli0", XDP_REDIRECT,
                    translated(syn, kBe0Mac, b.mac, kSnat6, sp, b.addr, kBackendPort));
  expect_flow(gw(), ck, kSnat6, sp, b.addr, kBackendPort, 5, 0);
  expect_flow(gw(), flow_key(KVLB_AF_INET6, b.addr, kBackendPort, kSnat6, sp), kVip6, kVipPort,
              kClient6, 40020, 5, KVLB_FLOW_F_REVERSE);
  expect_counters(gw(), 4, 0, 0);
  expect_counters(gw(), 5, 1, 1);

  Pkt synack = from_backend(b, sp, kSyn | kAck);
  expect_translated(synack, "be0", XDP_REDIRECT,
                    translated(synack, kCli0Mac, kClient6Mac, kVip6, kVipPort, kClient6, 40020));
  Pkt ack = client6(40020, kAck | kPsh);
  ack.payload = Bytes(100, 'q');
  expect_translated(ack, "cli0", XDP_REDIRECT,
                    translated(ack, kBe0Mac, b.mac, kSnat6, sp, b.addr, kBackendPort));
  Pkt fin = client6(40020, kFin | kAck);
  expect_translated(fin, "cli0", XDP_REDIRECT,
                    translated(fin, kBe0Mac, b.mac, kSnat6, sp, b.addr, kBackendPort));
  expect_counters(gw(), 5, 1, 0);
  expect_stats(gw().stats(), {{KVLB_GW_PACKETS, 4},
                              {KVLB_GW_NEW_FLOW, 1},
                              {KVLB_GW_REVERSE, 1},
                              {KVLB_GW_FORWARD, 2},
                              {KVLB_GW_CLOSED, 1}});
}

// 9. No eligible backend: the service's only backend is down, or it has none.
TEST_F(GatewayTest, NoEligibleBackendDropsTheSyn) {
  expect_unchanged(client4(40030, kSyn, kVipDown).bytes(), "cli0", XDP_DROP);
  expect_unchanged(client4(40031, kSyn, kVipEmpty).bytes(), "cli0", XDP_DROP);
  EXPECT_TRUE(gw().flows().empty());
  expect_counters(gw(), 6, 0, 0);
  EXPECT_EQ(gw().event(KVLB_EVENT_NO_BACKEND), 2u);
  expect_stats(gw().stats(), {{KVLB_GW_PACKETS, 2}, {KVLB_GW_NO_BACKEND, 2}});
}

// A table miss for a service without a Maglev row has nowhere to go.
TEST_F(GatewayTest, TableMissWithoutMaglevRowIsDropped) {
  expect_unchanged(client4(40032, kAck, kVipEmpty).bytes(), "cli0", XDP_DROP);
  EXPECT_TRUE(gw().flows().empty());
  expect_stats(gw().stats(), {{KVLB_GW_PACKETS, 1}, {KVLB_GW_NO_BACKEND, 1}});
}

// The backend reached through the interface the SYN came in on: sent back out
// of it (XDP_TX), with the backend's MAC.
TEST_F(GatewayTest, BackendOnTheIngressInterfaceIsReachedByTx) {
  Pkt syn = client4(40040, kSyn);
  syn.dmac = kBe0Mac;
  syn.smac = kNearClientMac;
  syn.src = kNearClient4;
  uint16_t sp = snat_port(key_of(syn));
  const auto& b = backend(2);
  expect_translated(syn, "be0", XDP_TX,
                    translated(syn, kBe0Mac, b.mac, kSnat4, sp, b.addr, kBackendPort));
  // and the answer goes back out of be0 too
  Pkt synack = from_backend(b, sp, kSyn | kAck);
  expect_translated(
      synack, "be0", XDP_TX,
      translated(synack, kBe0Mac, kNearClientMac, kVip4, kVipPort, kNearClient4, 40040));
  expect_stats(gw().stats(), {{KVLB_GW_PACKETS, 2}, {KVLB_GW_NEW_FLOW, 1}, {KVLB_GW_REVERSE, 1}});
}

// The backend's MAC unknown (no neighbour entry): the packet, translated, goes
// to the stack, which resolves the neighbour; the MACs are left as they came.
TEST_F(GatewayTest, UnresolvedNextHopIsPassedTranslated) {
  Pkt syn = client4(40041, kSyn, kVipNoNeigh);
  uint16_t sp = snat_port(key_of(syn));
  const auto& b = backend(7);
  Pkt want = translated(syn, syn.smac, syn.dmac, kSnat4, sp, b.addr, kBackendPort);
  want.ttl += 1;  // the stack forwards it: its TTL is the stack's to decrement
  expect_translated(syn, "cli0", XDP_PASS, want);
  expect_counters(gw(), 7, 1, 1);
  expect_stats(gw().stats(), {{KVLB_GW_PACKETS, 1}, {KVLB_GW_FIB_PASS, 1}});
}

// No route to the backend: dropped.
TEST_F(GatewayTest, NoRouteToTheBackendIsDropped) {
  Pkt syn = client4(40042, kSyn, kVipNoRoute);
  Out o = gw().run(syn.bytes(), "cli0");
  ASSERT_EQ(o.err, 0);
  EXPECT_EQ(o.verdict, static_cast<uint32_t>(XDP_DROP));
  expect_stats(gw().stats(), {{KVLB_GW_PACKETS, 1}, {KVLB_GW_FIB_FAIL, 1}});
  // The flow never starts: no entry stays, nothing stays counted in flight.
  EXPECT_FALSE(gw().flow(key_of(syn)).has_value());
  expect_counters(gw(), 8, 1, 0);
}

// A backend's packet to a SNAT port with no flow: not the gateway's to
// translate; the host answers it (a reset).
TEST_F(GatewayTest, PacketToASnatPortWithoutFlowIsPassed) {
  expect_unchanged(from_backend(backend(2), 12345, kAck).bytes(), "be0", XDP_PASS);
  // outside the SNAT range: an ordinary packet for the host
  expect_unchanged(from_backend(backend(2), 40000, kAck).bytes(), "be0", XDP_PASS);
  expect_stats(gw().stats(),
               {{KVLB_GW_PACKETS, 2}, {KVLB_GW_REVERSE_MISS, 1}, {KVLB_GW_NOT_VIP, 1}});
}

// ---- 6, 7, 8: packets the gateway does not translate --------------------------

struct Untouched {
  const char* name;
  std::function<Bytes()> frame;
  uint32_t verdict;
  kvlb_gw_stat stat;
  size_t meta = 0;  // bytes of XDP metadata before the frame
  const char* ifname = "cli0";
};

Bytes arp_request() {
  Bytes f = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
  f.insert(f.end(), kClient4Mac.begin(), kClient4Mac.end());
  put16(f, 0x0806);
  put16(f, 1);       // Ethernet
  put16(f, 0x0800);  // IPv4
  f.push_back(6);
  f.push_back(4);
  put16(f, 1);  // request
  f.insert(f.end(), kClient4Mac.begin(), kClient4Mac.end());
  const auto* c = reinterpret_cast<const uint8_t*>(kClient4.words);
  f.insert(f.end(), c, c + 4);
  f.insert(f.end(), 6, 0);
  const auto* v = reinterpret_cast<const uint8_t*>(kVip4.words);
  f.insert(f.end(), v, v + 4);
  return f;
}

Bytes vlan_tagged_syn() {
  Bytes f = client4(40050, kSyn).bytes();
  Bytes tag = {0x81, 0x00, 0x00, 0x64};  // 802.1Q, VLAN 100
  f.insert(f.begin() + 12, tag.begin(), tag.end());
  return f;
}

// A TCP segment behind an IPv6 extension header of type `nh` (8 bytes).
Bytes ipv6_ext(uint8_t nh, Bytes ext) {
  Pkt p = client6(40051, kSyn);
  Bytes seg = p.l4();
  ext.insert(ext.end(), seg.begin(), seg.end());
  p.proto = nh;
  p.raw_l4 = ext;
  return p.bytes();
}

Pkt with(Pkt p, const std::function<void(Pkt&)>& f) {
  f(p);
  return p;
}

const Untouched kUntouched[] = {
    // 6. not for a VIP
    {"tcp_to_another_address", [] { return client4(40060, kSyn, kOther4).bytes(); }, XDP_PASS,
     KVLB_GW_NOT_VIP},
    {"tcp_to_a_vip_port_without_service", [] { return client4(40061, kSyn, kVip4, 443).bytes(); },
     XDP_PASS, KVLB_GW_NOT_VIP},
    {"arp", arp_request, XDP_PASS, KVLB_GW_NOT_VIP},
    {"vlan_tagged", vlan_tagged_syn, XDP_PASS, KVLB_GW_NOT_VIP},
    {"udp_to_another_address",
     [] { return with(client4(40062, 0, kOther4), [](Pkt& p) { p.proto = IPPROTO_UDP; }).bytes(); },
     XDP_PASS, KVLB_GW_NOT_VIP},
    {"icmp_to_another_address",
     [] { return with(client4(0, 0, kOther4), [](Pkt& p) { p.proto = IPPROTO_ICMP; }).bytes(); },
     XDP_PASS, KVLB_GW_NOT_VIP},
    {"malformed_to_another_address",
     [] { return with(client4(40063, kSyn, kOther4), [](Pkt& p) { p.ihl = 4; }).bytes(); },
     XDP_PASS, KVLB_GW_NOT_VIP},
    {"ipv6_tcp_to_another_address", [] { return client6(40064, kSyn, kOther6).bytes(); }, XDP_PASS,
     KVLB_GW_NOT_VIP},
    // 7. malformed, and classes the gateway does not balance, to the VIP
    {"ipv4_cut_before_dst",
     [] { return with(client4(40071, kSyn), [](Pkt& p) { p.cut = 14 + 12; }).bytes(); }, XDP_PASS,
     KVLB_GW_TRUNCATED},
    {"ipv4_ihl_below_5",
     [] { return with(client4(40072, kSyn), [](Pkt& p) { p.ihl = 4; }).bytes(); }, XDP_DROP,
     KVLB_GW_MALFORMED},
    {"ipv4_version_not_4",
     [] { return with(client4(40073, kSyn), [](Pkt& p) { p.version = 5; }).bytes(); }, XDP_DROP,
     KVLB_GW_MALFORMED},
    {"ipv4_tot_len_beyond_frame",
     [] { return with(client4(40074, kSyn), [](Pkt& p) { p.ip_len = 20 + 24 + 1; }).bytes(); },
     XDP_DROP, KVLB_GW_MALFORMED},
    {"ipv4_tot_len_below_ihl",
     [] { return with(client4(40075, kSyn), [](Pkt& p) { p.ip_len = 16; }).bytes(); }, XDP_DROP,
     KVLB_GW_MALFORMED},
    {"tcp_doff_below_5",
     [] { return with(client4(40076, kAck), [](Pkt& p) { p.doff = 4; }).bytes(); }, XDP_DROP,
     KVLB_GW_MALFORMED},
    {"tcp_doff_beyond_segment",
     [] { return with(client4(40077, kAck), [](Pkt& p) { p.doff = 15; }).bytes(); }, XDP_DROP,
     KVLB_GW_MALFORMED},
    {"tcp_header_cut_short",
     [] {
       return with(client4(40078, kAck),
                   [](Pkt& p) {
                     p.ip_len = 20 + 10;
                     p.cut = 14 + 20 + 10;
                   })
           .bytes();
     },
     XDP_DROP, KVLB_GW_MALFORMED},
    {"tcp_segment_shorter_than_its_header_in_a_padded_frame",
     [] {
       return with(client4(40079, kAck),
                   [](Pkt& p) {
                     p.ip_len = 20 + 10;  // the frame goes on, the IP packet does not
                   })
           .bytes();
     },
     XDP_DROP, KVLB_GW_MALFORMED},
    {"ipv4_more_fragments",
     [] { return with(client4(40080, kSyn), [](Pkt& p) { p.frag = 0x2000; }).bytes(); }, XDP_DROP,
     KVLB_GW_FRAGMENT},
    {"ipv4_fragment_offset",
     [] { return with(client4(40081, kAck), [](Pkt& p) { p.frag = 0x0010; }).bytes(); }, XDP_DROP,
     KVLB_GW_FRAGMENT},
    {"udp_to_vip",
     [] {
       return with(client4(40082, 0, kVip4, 80),
                   [](Pkt& p) {
                     p.proto = IPPROTO_UDP;
                     p.payload = {1, 2, 3};
                   })
           .bytes();
     },
     XDP_DROP, KVLB_GW_NOT_TCP},
    {"icmp_echo_to_vip",
     [] { return with(client4(0, 0), [](Pkt& p) { p.proto = IPPROTO_ICMP; }).bytes(); }, XDP_PASS,
     KVLB_GW_ICMP},
    {"ttl_1_syn_to_vip",
     [] { return with(client4(40083, kSyn), [](Pkt& p) { p.ttl = 1; }).bytes(); }, XDP_PASS,
     KVLB_GW_TTL},
    {"ttl_0_syn_to_vip",
     [] { return with(client4(40084, kSyn), [](Pkt& p) { p.ttl = 0; }).bytes(); }, XDP_PASS,
     KVLB_GW_TTL},
    // 8. IPv6
    {"ipv6_fragment_header",
     [] {
       return ipv6_ext(44, {6, 0, 0x00, 0x01, 0, 0, 0, 7});
     },
     XDP_DROP, KVLB_GW_FRAGMENT},
    {"ipv6_hop_by_hop",
     [] {
       return ipv6_ext(0, {6, 0, 1, 4, 0, 0, 0, 0});
     },
     XDP_DROP, KVLB_GW_IPV6_EXT},
    {"ipv6_routing_header",
     [] {
       return ipv6_ext(43, {6, 0, 4, 0, 0, 0, 0, 0});
     },
     XDP_DROP, KVLB_GW_IPV6_EXT},
    {"ipv6_destination_options",
     [] {
       return ipv6_ext(60, {6, 0, 1, 4, 0, 0, 0, 0});
     },
     XDP_DROP, KVLB_GW_IPV6_EXT},
    {"icmpv6_echo_to_vip",
     [] { return with(client6(0, 0), [](Pkt& p) { p.proto = IPPROTO_ICMPV6; }).bytes(); }, XDP_PASS,
     KVLB_GW_ICMP},
    {"udp6_to_vip",
     [] { return with(client6(40085, 0), [](Pkt& p) { p.proto = IPPROTO_UDP; }).bytes(); },
     XDP_DROP, KVLB_GW_NOT_TCP},
    {"ipv6_cut_before_dst",
     [] { return with(client6(40086, kSyn), [](Pkt& p) { p.cut = 14 + 30; }).bytes(); }, XDP_PASS,
     KVLB_GW_TRUNCATED},
    {"ipv6_payload_len_beyond_frame",
     [] { return with(client6(40087, kSyn), [](Pkt& p) { p.ip_len = 25; }).bytes(); }, XDP_DROP,
     KVLB_GW_MALFORMED},
    {"ipv6_version_not_6",
     [] { return with(client6(40088, kSyn), [](Pkt& p) { p.version = 4; }).bytes(); }, XDP_DROP,
     KVLB_GW_MALFORMED},
    {"ipv6_tcp_doff_below_5",
     [] { return with(client6(40089, kAck), [](Pkt& p) { p.doff = 3; }).bytes(); }, XDP_DROP,
     KVLB_GW_MALFORMED},
    {"ipv6_hop_limit_1_syn_to_vip",
     [] { return with(client6(40090, kSyn), [](Pkt& p) { p.ttl = 1; }).bytes(); }, XDP_PASS,
     KVLB_GW_TTL},
};

class UntouchedTest : public GatewayTest, public testing::WithParamInterface<Untouched> {};

// The verdict of the packet's class, the packet as it came, nothing created or
// counted but the class's stat.
TEST_P(UntouchedTest, VerdictAndPacketUnchanged) {
  const Untouched& c = GetParam();
  Bytes in = c.frame();
  expect_unchanged(in, c.ifname, c.verdict, c.meta);
  EXPECT_TRUE(gw().flows().empty());
  for (uint32_t id = 1; id <= kMaxId; ++id) expect_counters(gw(), id, 0, 0);
  expect_stats(gw().stats(), {{KVLB_GW_PACKETS, 1}, {c.stat, 1}});
}

INSTANTIATE_TEST_SUITE_P(Classes, UntouchedTest, testing::ValuesIn(kUntouched),
                         [](const testing::TestParamInfo<Untouched>& i) { return i.param.name; });

// A frame shorter than an Ethernet header: passed (not the gateway's to judge).
// Made of 4 bytes of XDP metadata and 10 of packet, since BPF_PROG_TEST_RUN
// takes no shorter input; recent kernels also refuse less than 14 bytes of
// packet after the metadata, and there the case cannot be run (skipped).
TEST_F(GatewayTest, EthernetTruncatedIsPassed) {
  Bytes f = client4(40091, kSyn).bytes();
  f.resize(10);
  Out o = gw().run(f, "cli0", 4);
  if (o.err == -EINVAL)
    GTEST_SKIP() << "this kernel's BPF_PROG_TEST_RUN takes no packet shorter than 14 bytes";
  expect_unchanged(f, "cli0", XDP_PASS, 4);
  expect_stats(gw().stats(), {{KVLB_GW_PACKETS, 2}, {KVLB_GW_TRUNCATED, 2}});
}

// ---- 10. the sweep ----------------------------------------------------------

constexpr uint64_t kIdleNs = 10'000'000'000ull;    // 10 s
constexpr uint64_t kClosingNs = 2'000'000'000ull;  // 2 s

// A second instance, loaded with short timeouts (they are load-time constants).
class SweepTest : public GatewayTest {
 protected:
  static Gateway& sgw() {
    static Gateway g(kIdleNs, kClosingNs);
    return g;
  }
  void SetUp() override {
    if (mono_ns(CLOCK_MONOTONIC_COARSE) < 3 * kIdleNs) GTEST_SKIP() << "the host booted just now";
    sgw().reset();
  }

  // A flow of the IPv4 client's port `cport` on this instance: its two keys.
  std::pair<kvlb_flow_key, kvlb_flow_key> open(uint16_t cport) {
    Pkt syn = client4(cport, kSyn);
    Out o = sgw().run(syn.bytes(), "cli0");
    EXPECT_EQ(o.verdict, static_cast<uint32_t>(XDP_REDIRECT));
    kvlb_flow_key ck = key_of(syn);
    return {ck, flow_key(KVLB_AF_INET, backend(2).addr, kBackendPort, kSnat4, snat_port(ck))};
  }

  void set_last_seen(const kvlb_flow_key& k, uint64_t ns) {
    auto f = sgw().flow(k);
    ASSERT_TRUE(f.has_value());
    f->last_seen_ns = ns;
    sgw().put_flow(k, *f);
  }
};

// A flow idle in both directions for longer than the idle timeout goes, both
// entries, its in-flight released once; a fresh one stays.
TEST_F(SweepTest, IdleFlowIsRemovedAndReleased) {
  auto [fwd, rev] = open(41000);
  expect_counters(sgw(), 2, 1, 1);
  EXPECT_EQ(sgw().sweep(), static_cast<uint32_t>(XDP_PASS));
  EXPECT_EQ(sgw().flows().size(), 2u) << "a fresh flow was swept";
  set_last_seen(fwd, 0);
  set_last_seen(rev, 0);
  EXPECT_EQ(sgw().sweep(), static_cast<uint32_t>(XDP_PASS));
  EXPECT_TRUE(sgw().flows().empty());
  expect_counters(sgw(), 2, 1, 0);
  sgw().sweep();
  expect_counters(sgw(), 2, 1, 0);
  expect_stats(
      sgw().stats(),
      {{KVLB_GW_PACKETS, 1}, {KVLB_GW_NEW_FLOW, 1}, {KVLB_GW_CLOSED, 1}, {KVLB_GW_EXPIRED, 1}});
}

// A flow the backend still talks on is not idle, however long the client has
// been silent.
TEST_F(SweepTest, FlowActiveInOneDirectionStays) {
  auto [fwd, rev] = open(41001);
  set_last_seen(fwd, 0);
  sgw().sweep();
  EXPECT_EQ(sgw().flows().size(), 2u);
  expect_counters(sgw(), 2, 1, 1);
  EXPECT_EQ(sgw().stats()[KVLB_GW_EXPIRED], 0u);
}

// A closed flow goes after the closing timeout (shorter than the idle one),
// without releasing its in-flight again (another flow keeps the count above
// zero, so a second release would show); an open flow as old stays.
TEST_F(SweepTest, ClosedFlowGoesAfterTheClosingTimeoutReleasedOnce) {
  auto [afwd, arev] = open(41002);
  auto [bfwd, brev] = open(41003);
  expect_counters(sgw(), 2, 2, 2);
  sgw().run(client4(41002, kFin | kAck).bytes(), "cli0");
  expect_counters(sgw(), 2, 2, 1);
  uint64_t old = mono_ns(CLOCK_MONOTONIC_COARSE) - 5'000'000'000ull;  // closing < 5 s < idle
  for (const auto& k : {afwd, arev, bfwd, brev}) set_last_seen(k, old);
  sgw().sweep();
  EXPECT_FALSE(sgw().flow(afwd).has_value());
  EXPECT_FALSE(sgw().flow(arev).has_value());
  EXPECT_TRUE(sgw().flow(bfwd).has_value());
  EXPECT_TRUE(sgw().flow(brev).has_value());
  expect_counters(sgw(), 2, 2, 1);
  expect_stats(sgw().stats(), {{KVLB_GW_PACKETS, 3},
                               {KVLB_GW_NEW_FLOW, 2},
                               {KVLB_GW_FORWARD, 1},
                               {KVLB_GW_CLOSED, 1},
                               {KVLB_GW_EXPIRED, 1}});
}

// A backend-side entry whose client-side entry is gone goes after the closing
// timeout.
TEST_F(SweepTest, OrphanBackendSideEntryGoes) {
  auto [fwd, rev] = open(41004);
  sgw().delete_flow(fwd);
  sgw().sweep();
  EXPECT_TRUE(sgw().flow(rev).has_value()) << "an orphan went before the closing timeout";
  set_last_seen(rev, mono_ns(CLOCK_MONOTONIC_COARSE) - 5'000'000'000ull);
  sgw().sweep();
  EXPECT_TRUE(sgw().flows().empty());
  EXPECT_EQ(sgw().stats()[KVLB_GW_EXPIRED], 1u);
}

// A retired backend-side entry (its client reused the tuple) goes after the
// closing timeout although the tuple's client side lives on (a newer flow),
// and the newer flow stays.
TEST_F(SweepTest, RetiredBackendSideEntryGoesAndTheNewFlowStays) {
  auto [fwd, rev] = open(41006);
  sgw().run(client4(41006, kFin | kAck).bytes(), "cli0");
  sgw().run(client4(41006, kSyn).bytes(), "cli0");
  ASSERT_EQ(sgw().flows().size(), 3u);
  ASSERT_TRUE(sgw().flow(rev).has_value());
  EXPECT_TRUE(sgw().flow(rev)->flags & KVLB_FLOW_F_RETIRED);
  sgw().sweep();
  EXPECT_TRUE(sgw().flow(rev).has_value()) << "a retired entry went before the closing timeout";
  set_last_seen(rev, mono_ns(CLOCK_MONOTONIC_COARSE) - 5'000'000'000ull);
  sgw().sweep();
  EXPECT_FALSE(sgw().flow(rev).has_value());
  EXPECT_EQ(sgw().flows().size(), 2u);
  EXPECT_TRUE(sgw().flow(fwd).has_value());
  EXPECT_EQ(sgw().stats()[KVLB_GW_EXPIRED], 1u);
}

// A packet on another CPU can refresh an entry after the sweep read the clock:
// its last_seen_ns is then a little ahead of the sweep's `now`. Such a flow is
// as fresh as can be and must stay. (bpf/lib/gateway.bpf.h's gw_sweep_one
// computes `c->now - last` unsigned: it wraps, and the flow is removed.)
TEST_F(SweepTest, FlowRefreshedAfterTheSweepReadTheClockStays) {
  auto [fwd, rev] = open(41005);
  uint64_t ahead = mono_ns(CLOCK_MONOTONIC_COARSE) + 1'000'000'000ull;
  set_last_seen(fwd, ahead);
  set_last_seen(rev, ahead);
  sgw().sweep();
  EXPECT_EQ(sgw().flows().size(), 2u);
  expect_counters(sgw(), 2, 1, 1);
}

// The sweep counts the open flows of each backend as it walks the table (what
// the agent shows as flows per backend): closed flows and backend-side entries
// do not count, and a count is the last sweep's, not a running total.
TEST_F(SweepTest, SweepCountsOpenFlowsPerBackend) {
  auto open_of = [&](uint32_t id) -> uint32_t {
    kvlb_gw_open o{};
    if (bpf_map_lookup_elem(sgw().fd(sgw().skel()->maps.kvlb_gw_open), &id, &o) != 0) return 99;
    return o.sweep == sgw().skel()->bss->gw_sweeps ? o.open : 0;
  };
  open(41010);
  open(41011);
  open(41012);
  sgw().run(client4(41012, kFin | kAck).bytes(), "cli0");
  sgw().sweep();
  EXPECT_EQ(open_of(2), 2u) << "three flows, one closed";
  EXPECT_EQ(open_of(1), 0u);
  sgw().run(client4(41011, kRst).bytes(), "cli0");
  sgw().sweep();
  EXPECT_EQ(open_of(2), 1u) << "the count is the last sweep's";
  sgw().run(client4(41010, kFin | kAck).bytes(), "cli0");
  sgw().sweep();
  EXPECT_EQ(open_of(2), 0u) << "no open flow left";
}

// ---- 11. flow sync between gateways -----------------------------------------

const kvlb_addr kPeerSnat4 = A4("198.51.100.2");  // another gateway of the group
constexpr uint16_t kPeerPort = 12345;

// A third instance, with flow sync on (every third sweep announces a flow again).
class SyncTest : public GatewayTest {
 protected:
  static constexpr uint32_t kRefreshSweeps = 3;
  static Gateway& ggw() {
    static Gateway g(600'000'000'000ull, 30'000'000'000ull, 4096, kRefreshSweeps);
    return g;
  }
  void SetUp() override {
    ggw().reset();
    ggw().events();  // what earlier tests left in the ring
  }

  // A peer's OPEN for the IPv4 client's port `cport`, to backend `id` through
  // the peer's SNAT address and port.
  static kvlb_flow_sync peer_event(uint8_t kind, uint16_t cport, uint32_t id) {
    kvlb_flow_sync s{};
    s.ev.key = key_of(client4(cport, kSyn));
    s.ev.snat = kPeerSnat4;
    s.ev.snat_port = htons(kPeerPort);
    s.ev.backend = backend(id).addr;
    s.ev.backend_port = htons(kBackendPort);
    s.ev.kind = kind;
    s.backend_id = id;
    return s;
  }
};

// The sync program is dead code unless flow sync is on: a gateway without it
// writes no event.
TEST_F(GatewayTest, NoFlowEventsWithoutFlowSync) {
  open4(44000);
  gw().run(client4(44000, kFin | kAck).bytes(), "cli0");
  EXPECT_TRUE(gw().events().empty());
}

// A SYN placed here is announced (once: not its retransmission), with the
// translation it got; its close is announced too.
TEST_F(SyncTest, NewFlowAndItsCloseAreAnnounced) {
  Pkt syn = client4(44001, kSyn);
  ASSERT_EQ(ggw().run(syn.bytes(), "cli0").verdict, static_cast<uint32_t>(XDP_REDIRECT));
  ggw().run(syn.bytes(), "cli0");  // retransmitted
  auto ev = ggw().events();
  ASSERT_EQ(ev.size(), 1u);
  EXPECT_EQ(ev[0].kind, KVLB_FLOW_EV_OPEN);
  const kvlb_flow_key ck = key_of(syn);
  EXPECT_EQ(std::memcmp(&ev[0].key, &ck, sizeof(ck)), 0);
  EXPECT_EQ(addr_str(KVLB_AF_INET, ev[0].snat), addr_str(KVLB_AF_INET, kSnat4));
  EXPECT_EQ(ntohs(ev[0].snat_port), snat_port(key_of(syn)));
  EXPECT_EQ(addr_str(KVLB_AF_INET, ev[0].backend), addr_str(KVLB_AF_INET, backend(2).addr));
  EXPECT_EQ(ntohs(ev[0].backend_port), kBackendPort);
  ggw().run(client4(44001, kFin | kAck).bytes(), "cli0");
  ggw().run(client4(44001, kFin | kAck).bytes(), "cli0");  // a second FIN closes nothing more
  ev = ggw().events();
  ASSERT_EQ(ev.size(), 1u);
  EXPECT_EQ(ev[0].kind, KVLB_FLOW_EV_CLOSE);
  EXPECT_EQ(ntohs(ev[0].snat_port), snat_port(key_of(syn)));
}

// A peer's flow is translated here exactly as there (its SNAT address and
// port, its backend, not this gateway's pick), both directions; it counts in
// flight here from its first packet on, once, and is never announced again.
TEST_F(SyncTest, PeersFlowIsTranslatedAsThePeerDidAndTakenOverOnce) {
  ASSERT_EQ(ggw().sync(peer_event(KVLB_FLOW_EV_OPEN, 44002, 3)),
            static_cast<uint32_t>(KVLB_SYNC_INSTALLED));
  const kvlb_flow_key ck = key_of(client4(44002, kSyn));
  const kvlb_flow_key bk =
      flow_key(KVLB_AF_INET, backend(3).addr, kBackendPort, kPeerSnat4, kPeerPort);
  ASSERT_TRUE(ggw().flow(ck).has_value());
  EXPECT_EQ(ggw().flow(ck)->flags, KVLB_FLOW_F_SYNCED);
  ASSERT_TRUE(ggw().flow(bk).has_value());
  EXPECT_EQ(ggw().flow(bk)->flags, KVLB_FLOW_F_SYNCED | KVLB_FLOW_F_REVERSE);
  expect_counters(ggw(), 3, 0, 0);
  for (int i = 0; i < 2; ++i) {
    Pkt ack = client4(44002, kAck | kPsh);
    ack.payload.assign(20, 'q');
    Out o = ggw().run(ack.bytes(), "cli0");
    EXPECT_EQ(o.verdict, static_cast<uint32_t>(XDP_REDIRECT));
    EXPECT_EQ(hex(o.frame), hex(translated(ack, kBe0Mac, backend(3).mac, kPeerSnat4, kPeerPort,
                                           backend(3).addr, kBackendPort)
                                    .bytes()));
    EXPECT_TRUE(valid_checksums(o.frame));
  }
  EXPECT_EQ(ggw().flow(ck)->flags, 0u);
  expect_counters(ggw(), 3, 0, 1);
  Pkt back = from_backend(backend(3), kPeerPort, kAck | kPsh);
  back.dst = kPeerSnat4;
  back.payload.assign(30, 'r');
  Out o = ggw().run(back.bytes(), "be0");
  EXPECT_EQ(o.verdict, static_cast<uint32_t>(XDP_REDIRECT));
  EXPECT_EQ(hex(o.frame),
            hex(translated(back, kCli0Mac, kClient4Mac, kVip4, kVipPort, kClient4, 44002).bytes()));
  expect_stats(
      ggw().stats(),
      {{KVLB_GW_PACKETS, 3}, {KVLB_GW_FORWARD, 2}, {KVLB_GW_REVERSE, 1}, {KVLB_GW_TAKEN_OVER, 2}});
  EXPECT_TRUE(ggw().events().empty()) << "a peer's flow was announced again";
  // Its end, here: released once and announced (this gateway carries it now).
  ggw().run(client4(44002, kFin | kAck).bytes(), "cli0");
  expect_counters(ggw(), 3, 0, 0);
  auto ev = ggw().events();
  ASSERT_EQ(ev.size(), 1u);
  EXPECT_EQ(ev[0].kind, KVLB_FLOW_EV_CLOSE);
}

// The peer says its flow ended: closing here too. Never carried here, it was
// never counted, so nothing is released (another flow keeps backend 3's count
// above zero, so a wrong release would show); a taken-over one is released.
TEST_F(SyncTest, PeersCloseReleasesOnlyWhatThisGatewayCounted) {
  ASSERT_EQ(ggw().sync(peer_event(KVLB_FLOW_EV_OPEN, 44003, 3)),
            static_cast<uint32_t>(KVLB_SYNC_INSTALLED));
  ASSERT_EQ(ggw().sync(peer_event(KVLB_FLOW_EV_OPEN, 44004, 3)),
            static_cast<uint32_t>(KVLB_SYNC_INSTALLED));
  ggw().run(client4(44004, kAck).bytes(), "cli0");  // taken over: counted
  expect_counters(ggw(), 3, 0, 1);
  EXPECT_EQ(ggw().sync(peer_event(KVLB_FLOW_EV_CLOSE, 44003, 3)),
            static_cast<uint32_t>(KVLB_SYNC_CLOSED));
  expect_counters(ggw(), 3, 0, 1);
  EXPECT_TRUE(ggw().flow(key_of(client4(44003, kSyn)))->flags & KVLB_FLOW_F_CLOSING);
  EXPECT_EQ(ggw().sync(peer_event(KVLB_FLOW_EV_CLOSE, 44004, 3)),
            static_cast<uint32_t>(KVLB_SYNC_CLOSED));
  expect_counters(ggw(), 3, 0, 0);
  EXPECT_EQ(ggw().sync(peer_event(KVLB_FLOW_EV_CLOSE, 44004, 3)),
            static_cast<uint32_t>(KVLB_SYNC_CLOSED));
  expect_counters(ggw(), 3, 0, 0);
  // A close for another placement of the tuple, or for no flow: left alone.
  EXPECT_EQ(ggw().sync(peer_event(KVLB_FLOW_EV_CLOSE, 44005, 3)),
            static_cast<uint32_t>(KVLB_SYNC_UNKNOWN));
  EXPECT_TRUE(ggw().events().empty()) << "a peer's event was announced again";
}

// A live flow of this gateway's wins over a peer's placement of its tuple;
// a peer's refresh of its own flow keeps it; a closed local flow gives way.
TEST_F(SyncTest, LiveLocalFlowWinsOverAPeersPlacement) {
  Pkt syn = client4(44006, kSyn);
  ggw().run(syn.bytes(), "cli0");
  const auto before = ggw().flow(key_of(syn));
  ASSERT_TRUE(before.has_value());
  EXPECT_EQ(ggw().sync(peer_event(KVLB_FLOW_EV_OPEN, 44006, 3)),
            static_cast<uint32_t>(KVLB_SYNC_CONFLICT));
  EXPECT_EQ(ggw().flow(key_of(syn))->dst.words[0], before->dst.words[0]);
  EXPECT_EQ(ggw().flow(key_of(syn))->sport, before->sport);
  ggw().run(client4(44006, kRst).bytes(), "cli0");
  EXPECT_EQ(ggw().sync(peer_event(KVLB_FLOW_EV_OPEN, 44006, 3)),
            static_cast<uint32_t>(KVLB_SYNC_INSTALLED));
  EXPECT_EQ(ggw().flow(key_of(syn))->sport, htons(kPeerPort));
  EXPECT_EQ(ggw().sync(peer_event(KVLB_FLOW_EV_REFRESH, 44006, 3)),
            static_cast<uint32_t>(KVLB_SYNC_REFRESHED));
  expect_counters(ggw(), 2, 1, 0);
  expect_counters(ggw(), 3, 0, 0);
}

// The sweep announces each open flow of this gateway's again once every
// kRefreshSweeps sweeps, and neither peers' flows nor closed ones.
TEST_F(SyncTest, SweepAnnouncesOpenFlowsAgainNowAndThen) {
  ggw().run(client4(44007, kSyn).bytes(), "cli0");
  ggw().run(client4(44008, kSyn).bytes(), "cli0");
  ggw().run(client4(44008, kFin | kAck).bytes(), "cli0");
  ASSERT_EQ(ggw().sync(peer_event(KVLB_FLOW_EV_OPEN, 44009, 3)),
            static_cast<uint32_t>(KVLB_SYNC_INSTALLED));
  ggw().events();
  std::vector<kvlb_flow_event> all;
  for (uint32_t i = 0; i < kRefreshSweeps; ++i) {
    ggw().sweep();
    for (const auto& e : ggw().events()) all.push_back(e);
  }
  ASSERT_EQ(all.size(), 1u);
  EXPECT_EQ(all[0].kind, KVLB_FLOW_EV_REFRESH);
  EXPECT_EQ(ntohs(all[0].key.sport), 44007);
}

// What the agent did not make well-formed is refused, and changes nothing.
TEST_F(SyncTest, MalformedSyncDataIsRefused) {
  auto s = peer_event(KVLB_FLOW_EV_OPEN, 44010, 3);
  EXPECT_EQ(ggw().sync(s, sizeof(s) - 1), static_cast<uint32_t>(KVLB_SYNC_INVALID));
  auto bad = s;
  bad.ev.kind = 9;
  EXPECT_EQ(ggw().sync(bad), static_cast<uint32_t>(KVLB_SYNC_INVALID));
  bad = s;
  bad.backend_id = 0;
  EXPECT_EQ(ggw().sync(bad), static_cast<uint32_t>(KVLB_SYNC_INVALID));
  bad = s;
  bad.ev.key.family = 5;
  EXPECT_EQ(ggw().sync(bad), static_cast<uint32_t>(KVLB_SYNC_INVALID));
  EXPECT_TRUE(ggw().flows().empty());
}

// ---- hostile packets --------------------------------------------------------

// The one's complement residue of a frame's IPv4 header and TCP segment (the
// folded sum including the stored checksum: 0xffff when valid). An
// incremental update keeps a residue as it was, valid or not.
std::pair<int, int> residues(const Bytes& f) {
  auto norm = [](uint16_t v) { return v == 0 ? 0xffff : v; };  // +0 and -0
  if (f.size() < 14) return {-1, -1};
  const uint16_t type = get16(f, 12);
  size_t l4 = 0, len = 0;
  int ip = -1;
  uint64_t ps = 0;
  if (type == 0x0800 && f.size() >= 34) {
    const size_t hl = (f[14] & 0x0f) * 4u;
    const size_t tot = get16(f, 16);
    if (hl < 20 || f.size() < 14 + hl || tot < hl || f.size() < 14 + tot) return {-1, -1};
    ip = norm(fold(sum_bytes(&f[14], hl)));
    l4 = 14 + hl;
    len = tot - hl;
    ps = pseudo_sum(KVLB_AF_INET, &f[26], &f[30], f[23], static_cast<uint32_t>(len));
  } else if (type == 0x86dd && f.size() >= 54) {
    len = get16(f, 18);
    if (f.size() < 54 + len) return {-1, -1};
    l4 = 54;
    ps = pseudo_sum(KVLB_AF_INET6, &f[22], &f[38], f[20], static_cast<uint32_t>(len));
  } else {
    return {-1, -1};
  }
  return {ip, norm(fold(sum_bytes(&f[l4], len, ps)))};
}

// Random mutations of well-formed packets of every kind (client SYN, ACK, FIN
// and RST to both VIPs, backends' answers, other destinations), bytes flipped
// in the headers, frames cut short or grown: every verdict is one of the four;
// a packet passed or dropped on its own account is unchanged; a translated one
// has the checksum residues it came with (a valid packet stays valid, a broken
// one is not made to look valid); the counters add up; no in-flight count goes
// below zero. Seeded: a failure names the case to replay.
TEST_F(GatewayTest, HostilePacketsGetADefinedVerdictAndNoCorruptedChecksum) {
  std::mt19937 rng(20261202);
  const uint16_t sp = open4(41900);  // a known flow, so mutations also hit its entries
  std::vector<Bytes> bases;
  for (uint8_t flags : {kSyn, kAck, uint8_t(kAck | kPsh), uint8_t(kFin | kAck), kRst}) {
    Pkt p4 = client4(static_cast<uint16_t>(41900 + (flags == kSyn ? 1 : 0)), flags);
    p4.payload.assign(flags & kPsh ? 40 : 0, 'p');
    bases.push_back(p4.bytes());
    bases.push_back(client6(41950, flags).bytes());
    bases.push_back(from_backend(backend(2), sp, flags).bytes());
    Pkt other = client4(41960, flags, kOther4);
    bases.push_back(other.bytes());
  }
  Pkt opt = client4(41970, kSyn);
  opt.ip_opts = {1, 1, 1, 0};
  bases.push_back(opt.bytes());
  constexpr int kCases = 20000;
  const Stats before = gw().stats();
  int translated = 0, unchanged = 0;
  for (int i = 0; i < kCases; ++i) {
    Bytes in = bases[rng() % bases.size()];
    const int flips = 1 + static_cast<int>(rng() % 4);
    for (int k = 0; k < flips; ++k)
      in[rng() % std::min<size_t>(in.size(), 80)] ^= 1u << (rng() % 8);
    if (rng() % 5 == 0) in.resize(14 + rng() % (in.size() - 13));
    if (rng() % 10 == 0) in.insert(in.end(), rng() % 64, static_cast<uint8_t>(rng()));
    const Stats s0 = gw().stats();
    Out o = gw().run(in, rng() % 2 ? "cli0" : "be0");
    const Stats s1 = gw().stats();
    ASSERT_EQ(o.err, 0) << "case " << i;
    ASSERT_TRUE(o.verdict == XDP_PASS || o.verdict == XDP_DROP || o.verdict == XDP_TX ||
                o.verdict == XDP_REDIRECT)
        << "case " << i << ": verdict " << o.verdict;
    ASSERT_EQ(s1[KVLB_GW_PACKETS] - s0[KVLB_GW_PACKETS], 1u) << "case " << i;
    const bool rewritten = o.verdict == XDP_TX || o.verdict == XDP_REDIRECT ||
                           s1[KVLB_GW_FIB_PASS] != s0[KVLB_GW_FIB_PASS] ||
                           s1[KVLB_GW_FIB_FAIL] != s0[KVLB_GW_FIB_FAIL];
    if (!rewritten) {
      ASSERT_EQ(hex(o.frame), hex(in)) << "case " << i << ": passed or dropped, but changed";
      ++unchanged;
    } else if (o.verdict != XDP_DROP) {
      ASSERT_EQ(residues(o.frame), residues(in)) << "case " << i << ": " << hex(in);
      ++translated;
    }
  }
  const Stats after = gw().stats();
  EXPECT_EQ(after[KVLB_GW_PACKETS] - before[KVLB_GW_PACKETS], static_cast<uint64_t>(kCases));
  uint64_t reasons = 0;
  for (int k = 1; k < KVLB_GW_STAT_COUNT; ++k)
    if (k != KVLB_GW_CLOSED && k != KVLB_GW_EXPIRED) reasons += after[k] - before[k];
  EXPECT_EQ(reasons, static_cast<uint64_t>(kCases)) << "each packet counted under one reason";
  for (uint32_t id = 1; id <= kMaxId; ++id) EXPECT_GE(gw().counters(id).inflight, 0) << id;
  // Both outcomes were exercised, not only the easy one.
  EXPECT_GT(translated, kCases / 20);
  EXPECT_GT(unchanged, kCases / 4);
}

// ---- --bench: ns per packet ------------------------------------------------
//
// BPF_PROG_TEST_RUN runs the same buffer `repeat` times and reports the mean
// time per run. A translated packet is the backend's after the first run, so a
// plain repeat would time the pass-through path after one real run. Instead
// the bench sets up tables in which every run is the path measured:
//
//  - SYN, a ring of services: 8 VIPs (V, port 80) balance 8 backends (B, port
//    8000) and each B:8000 is itself a service balancing the 8 VIPs. A SYN to
//    V becomes a SYN from the gateway's SNAT address to some B, which is a new
//    flow of another service, and so on: each run is a whole new flow (pick
//    among 8 with the default policy, SNAT probe, two entries, rewrite, route
//    lookup, redirect) with its own tuple (the SNAT port changes every time).
//    The TTL (255) bounds a buffer to 250 runs; each call starts from a new
//    client. The `new_flow` counter checks that every run was one.
//  - established, ping-pong: a real SYN opens a flow (client -> V, rewritten to
//    S:sp -> B); the bench adds the entry S:sp -> B rewritten back to client ->
//    V. An ACK then alternates between the two entries: each run one flow
//    lookup, rewrite, route lookup, redirect. Checked by the `forward` counter.
//
// Both are hot-cache figures (the program's own cost). The cold-cache cost
// (a different flow per packet, 40,000 flows) is timed per run, which adds the
// test runner's clock reads: that floor is measured on an ARP frame per run and
// in one 1M-run loop, and both are reported.
double median(std::vector<uint32_t> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}

int run_bench(uint32_t n) {
  constexpr uint32_t kRing = 8, kRuns = 250, kTableFlows = 1u << 17;
  constexpr uint32_t kFirstId = 100;  // ids of the ring's backends (the fixtures use 1..8)
  Gateway g(600'000'000'000ull, 30'000'000'000ull, 2 * kTableFlows);
  g.reset();
  auto put = [&](bpf_map* m, const void* k, const void* v) {
    if (bpf_map_update_elem(g.fd(m), k, v, BPF_ANY) != 0)
      throw std::runtime_error(std::string("bench map write: ") + strerror(errno));
  };
  auto& maps = g.skel()->maps;
  const uint64_t now = mono_ns();
  struct Ring {
    uint8_t family;
    std::vector<kvlb_addr> vips, backends;
  };
  std::vector<Ring> rings;
  for (uint8_t family : {uint8_t{KVLB_AF_INET}, uint8_t{KVLB_AF_INET6}}) {
    Ring r{family, {}, {}};
    for (uint32_t i = 0; i < kRing; ++i) {
      if (family == KVLB_AF_INET) {
        r.vips.push_back(A4(("203.0.113." + std::to_string(64 + i)).c_str()));
        r.backends.push_back(A4(("198.51.100." + std::to_string(64 + i)).c_str()));
      } else {
        r.vips.push_back(A6(("2001:db8:ff::" + std::to_string(64 + i)).c_str()));
        r.backends.push_back(A6(("2001:db8:2::" + std::to_string(64 + i)).c_str()));
      }
      const std::string f = family == KVLB_AF_INET ? "" : "-6 ";
      Mac mac{2, 0, 0, 0, static_cast<uint8_t>(family), static_cast<uint8_t>(64 + i)};
      ip(f + "neigh add " + addr_str(family, r.backends.back()) + " lladdr " + mac_str(mac) +
         " dev be0 nud permanent");
    }
    ip(family == KVLB_AF_INET ? "route add 203.0.113.64/28 via 192.0.2.100 dev cli0"
                              : "-6 route add 2001:db8:ff::/64 via 2001:db8:1::100 dev cli0");
    rings.push_back(std::move(r));
  }
  uint32_t next_id = kFirstId;
  auto service = [&](uint8_t family, const kvlb_addr& vip, uint16_t port,
                     const std::vector<kvlb_addr>& to, uint16_t to_port) {
    kvlb_service v{};
    v.backend_count = static_cast<uint16_t>(to.size());
    v.policy = KVLB_POLICY_P2C_QUEUE_KV;
    v.choices = KVLB_DEFAULT_CHOICES;
    for (size_t i = 0; i < to.size(); ++i) {
      const uint32_t id = next_id++;
      kvlb_backend be{};
      be.addr = to[i];
      be.port = htons(to_port);
      be.family = family;
      put(maps.kvlb_be_v1, &id, &be);
      kvlb_score sc{};
      sc.waiting = id % 5;
      sc.kv_permille = static_cast<uint16_t>(100 + id % 7 * 50);
      sc.weight = 100;
      sc.updated_ns = now;
      put(maps.kvlb_score_v1, &id, &sc);
      v.slots[i] = id;
    }
    kvlb_service_key k{};
    k.vip = vip;
    k.port = htons(port);
    k.proto = IPPROTO_TCP;
    k.family = family;
    put(maps.kvlb_svc_v2, &k, &v);
  };
  for (const auto& r : rings) {
    for (const auto& v : r.vips) service(r.family, v, 80, r.backends, 8000);
    for (const auto& b : r.backends) service(r.family, b, 8000, r.vips, 80);
  }
  auto empty_table = [&] {
    for (const auto& [k, f] : g.flows()) bpf_map_delete_elem(g.fd(maps.kvlb_flow_v1), &k);
  };
  const int cli = ifindex("cli0");
  auto client = [&](const Ring& r, uint32_t i, uint8_t flags) {
    Pkt p = r.family == KVLB_AF_INET
                ? client4(static_cast<uint16_t>(1024 + i % 60000), flags, r.vips[i % kRing], 80)
                : client6(static_cast<uint16_t>(1024 + i % 60000), flags, r.vips[i % kRing], 80);
    p.ttl = 255;
    if (r.family == KVLB_AF_INET)
      p.src.words[0] = htonl(ntohl(p.src.words[0]) + i / 60000);
    else
      p.src.words[3] = htonl(ntohl(p.src.words[3]) + i / 60000);
    if (flags & kAck) p.payload.assign(64, 'x');
    return p;
  };
  std::string rows;
  auto row = [&](const std::string& name, double ns, uint64_t runs, double checked) {
    rows += fmt::format(
        "{}{{\"case\": \"{}\", \"ns_per_packet\": {:.1f}, \"packets\": {}, "
        "\"fraction_on_path\": {:.4f}}}",
        rows.empty() ? "" : ", ", name, ns, runs, checked);
  };
  const uint32_t calls = std::max<uint32_t>(1, n / kRuns);
  uint32_t cid = 0;
  for (const auto& r : rings) {
    const std::string fam = r.family == KVLB_AF_INET ? "IPv4" : "IPv6";
    // SYN ring.
    empty_table();
    auto before = g.stats();
    double sum = 0;
    for (uint32_t c = 0; c < calls; ++c, ++cid) {
      if (c % 200 == 199) empty_table();  // 50,000 flows at most: the table never evicts
      sum += g.timed(client(r, cid, kSyn).bytes(), cli, kRuns);
    }
    auto after = g.stats();
    row("SYN, new flow (" + fam + ")", sum / calls, uint64_t{calls} * kRuns,
        static_cast<double>(after[KVLB_GW_NEW_FLOW] - before[KVLB_GW_NEW_FLOW]) /
            (uint64_t{calls} * kRuns));
    // Established ping-pong.
    empty_table();
    before = g.stats();
    sum = 0;
    uint64_t opened = 0;
    for (uint32_t c = 0; c < calls; ++c, ++cid) {
      if (c % 200 == 199) empty_table();
      Pkt syn = client(r, cid, kSyn);
      syn.ttl = 64;
      Out o = g.run(syn.bytes(), "cli0");
      auto fwd = g.flow(key_of(syn));
      if (o.err || !fwd) throw std::runtime_error("bench: the SYN opened no flow");
      ++opened;
      kvlb_flow_key back =
          flow_key(r.family, fwd->src, ntohs(fwd->sport), fwd->dst, ntohs(fwd->dport));
      kvlb_flow to_client = *fwd;
      to_client.src = syn.src;
      to_client.dst = syn.dst;
      to_client.sport = htons(syn.sport);
      to_client.dport = htons(syn.dport);
      to_client.flags = 0;
      put(maps.kvlb_flow_v1, &back, &to_client);
      sum += g.timed(client(r, cid, kAck).bytes(), cli, kRuns);
    }
    after = g.stats();
    row("established (" + fam + ")", sum / calls, uint64_t{calls} * kRuns,
        static_cast<double>(after[KVLB_GW_FORWARD] - before[KVLB_GW_FORWARD]) /
            (uint64_t{calls} * kRuns));
    // Cold cache: an established packet of a different flow each run (40,000
    // flows open), timed per run.
    empty_table();
    constexpr uint32_t kCold = 40000;
    const uint32_t base = cid;
    for (uint32_t i = 0; i < kCold; ++i) g.run(client(r, base + i, kSyn).bytes(), "cli0");
    std::vector<uint32_t> cold;
    for (uint32_t i = 0; i < std::min(n, 200000u); ++i) {
      Pkt p = client(r, base + i % kCold, kAck);
      p.ttl = 64;
      cold.push_back(g.timed(p.bytes(), cli));
    }
    cid += kCold;
    row("established, 40,000 flows, per run (" + fam + ")", median(cold), cold.size(), 1.0);
  }
  Bytes arp(60, 0);
  arp[12] = 0x08;
  arp[13] = 0x06;
  std::vector<uint32_t> floor;
  for (uint32_t i = 0; i < std::min(n, 200000u); ++i) floor.push_back(g.timed(arp, cli));
  row("floor: ARP frame, per run", median(floor), floor.size(), 1.0);
  row("floor: ARP frame, 1M runs in one call", g.timed(arp, cli, 1'000'000), 1'000'000, 1.0);
  printf("{\"rows\": [%s]}\n", rows.c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  uint32_t bench = 0;  // --bench N: ns per packet over N packets per case (see run_bench)
  for (int i = 1; i + 1 < argc; ++i)
    if (std::string(argv[i]) == "--bench") bench = static_cast<uint32_t>(std::stoul(argv[i + 1]));
  testing::InitGoogleTest(&argc, argv);
  if (GTEST_FLAG_GET(list_tests)) return RUN_ALL_TESTS();
  if (geteuid() != 0) {
    fprintf(stderr,
            "skipped: the gateway fixtures load BPF programs and make a network "
            "namespace (root needed)\n");
    return 77;
  }
  try {
    setup_netns();
  } catch (const std::exception& e) {
    fprintf(stderr, "fixture network: %s\n", e.what());
    return 1;
  }
  if (bench) return run_bench(bench);
  return RUN_ALL_TESTS();
}
