// bpf/lib/csum.h, the gateway's incremental checksum updates (RFC 1624): real
// IPv4 and IPv6 TCP packets with random options and payloads, rewritten the way
// the gateway rewrites them (addresses, ports, TTL: bpf/lib/gateway.bpf.h's
// gw_rewrite reads the old values from the packet as stored), and each updated
// checksum compared with the one computed from scratch over the rewritten
// packet, bit for bit. Edge values (0x0000 and 0xffff words, checksums that come
// out 0x0000 before or after) are forced in a share of the cases.
#include <gtest/gtest.h>

#include <netinet/in.h>

#include <cstring>
#include <random>
#include <vector>

extern "C" {
#include "csum.h"
}

namespace {

// RFC 1071, from scratch: the one's complement sum of big-endian 16-bit words
// (an odd last byte padded with zero), folded; not inverted.
uint32_t sum_bytes(const uint8_t* p, size_t n, uint32_t sum = 0) {
  for (size_t i = 0; i + 1 < n; i += 2) sum += static_cast<uint32_t>(p[i]) << 8 | p[i + 1];
  if (n % 2) sum += static_cast<uint32_t>(p[n - 1]) << 8;
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return sum;
}

uint16_t get16(const uint8_t* p) {
  return static_cast<uint16_t>(p[0] << 8 | p[1]);
}
void put16(uint8_t* p, uint16_t v) {
  p[0] = static_cast<uint8_t>(v >> 8);
  p[1] = static_cast<uint8_t>(v);
}

// A stored field as the gateway reads it (a plain load: network order bytes).
template <typename T>
T load(const uint8_t* p) {
  T v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
template <typename T>
void store(uint8_t* p, T v) {
  std::memcpy(p, &v, sizeof v);
}

// An IPv4 or IPv6 packet carrying one TCP segment, with both checksums right.
struct Packet {
  std::vector<uint8_t> b;
  size_t l4 = 0;  // offset of the TCP header
  bool v6 = false;

  uint8_t* ip() { return b.data(); }
  uint8_t* tcp() { return b.data() + l4; }
  size_t tcp_len() const { return b.size() - l4; }
  size_t addr_len() const { return v6 ? 16 : 4; }
  uint8_t* saddr() { return ip() + (v6 ? 8 : 12); }
  uint8_t* daddr() { return ip() + (v6 ? 24 : 16); }

  // From scratch, as they should be (the checksum field counted as zero).
  uint16_t ip_checksum() {
    std::vector<uint8_t> h(ip(), ip() + l4);
    put16(h.data() + 10, 0);
    return static_cast<uint16_t>(~sum_bytes(h.data(), h.size()));
  }
  uint32_t pseudo_sum() {
    uint8_t ph[40] = {};
    size_t n = 0;
    std::memcpy(ph, saddr(), addr_len());
    std::memcpy(ph + addr_len(), daddr(), addr_len());
    n = 2 * addr_len();
    if (v6) {
      ph[n + 2] = static_cast<uint8_t>(tcp_len() >> 8);
      ph[n + 3] = static_cast<uint8_t>(tcp_len());
      ph[n + 7] = IPPROTO_TCP;
      n += 8;
    } else {
      ph[n + 1] = IPPROTO_TCP;
      put16(ph + n + 2, static_cast<uint16_t>(tcp_len()));
      n += 4;
    }
    return sum_bytes(ph, n);
  }
  uint16_t tcp_checksum() {
    std::vector<uint8_t> t(tcp(), tcp() + tcp_len());
    put16(t.data() + 16, 0);
    return static_cast<uint16_t>(~sum_bytes(t.data(), t.size(), pseudo_sum()));
  }
  void fix_checksums() {
    if (!v6) put16(ip() + 10, ip_checksum());
    put16(tcp() + 16, tcp_checksum());
  }
  // What a receiver checks: the sum over everything, checksum included, is
  // 0xffff (one's complement zero).
  bool ip_verifies() { return v6 || sum_bytes(ip(), l4) == 0xffff; }
  bool tcp_verifies() { return sum_bytes(tcp(), tcp_len(), pseudo_sum()) == 0xffff; }
};

// A word that is 0x0000 or 0xffff a fair share of the time.
uint16_t word(std::mt19937& rng) {
  switch (rng() % 8) {
    case 0:
      return 0x0000;
    case 1:
      return 0xffff;
    default:
      return static_cast<uint16_t>(rng());
  }
}
uint32_t dword(std::mt19937& rng) {
  return static_cast<uint32_t>(word(rng)) << 16 | word(rng);
}

Packet random_packet(std::mt19937& rng, bool v6) {
  Packet p;
  p.v6 = v6;
  const size_t tcp_hdr = 20 + 4 * (rng() % 11);                 // data offset 5..15
  const size_t payload = rng() % 4 ? rng() % 1461 : rng() % 3;  // odd lengths too
  if (v6) {
    p.l4 = 40;
    p.b.assign(40 + tcp_hdr + payload, 0);
    for (auto& x : p.b) x = static_cast<uint8_t>(rng());
    p.ip()[0] = 0x60 | (p.ip()[0] & 0x0f);
    put16(p.ip() + 4, static_cast<uint16_t>(tcp_hdr + payload));
    p.ip()[6] = IPPROTO_TCP;
  } else {
    const size_t ihl = 5 + rng() % 11;  // options 0..40 bytes
    p.l4 = 4 * ihl;
    p.b.assign(p.l4 + tcp_hdr + payload, 0);
    for (auto& x : p.b) x = static_cast<uint8_t>(rng());
    p.ip()[0] = static_cast<uint8_t>(0x40 | ihl);
    put16(p.ip() + 2, static_cast<uint16_t>(p.b.size()));
    put16(p.ip() + 6, 0x4000);  // DF, no fragment
    p.ip()[8] = static_cast<uint8_t>(1 + rng() % 255);
    p.ip()[9] = IPPROTO_TCP;
  }
  for (size_t i = 0; i < p.addr_len(); i += 2) {
    put16(p.saddr() + i, word(rng));
    put16(p.daddr() + i, word(rng));
  }
  put16(p.tcp(), word(rng));
  put16(p.tcp() + 2, word(rng));
  p.tcp()[12] = static_cast<uint8_t>(tcp_hdr / 4 << 4);
  p.fix_checksums();
  return p;
}

// Forces the checksum at `check` to come out 0x0000 by choosing the 16-bit word
// at `w` (covered by that checksum): the sum must be 0xffff.
void force_zero_checksum(Packet& p, bool ip, size_t w) {
  uint8_t* field = (ip ? p.ip() : p.tcp()) + w;
  put16(field, 0);
  uint32_t rest = ip ? (0xffff & ~p.ip_checksum()) : (0xffff & ~p.tcp_checksum());
  put16(field, static_cast<uint16_t>(0xffff - rest));
}

// The rewrite of gw_rewrite: new addresses and ports, the TTL decremented (or
// set), both checksums updated from the stored old and new values.
struct Rewrite {
  uint32_t src[4], dst[4];  // as stored
  uint16_t sport, dport;    // as stored
  int ttl;                  // the new TTL / hop limit (0..255)
};

void apply(Packet& p, const Rewrite& r) {
  uint16_t check = load<uint16_t>(p.tcp() + 16);
  const size_t words = p.addr_len() / 4;
  if (!p.v6) {
    uint16_t ipc = load<uint16_t>(p.ip() + 10);
    const uint16_t old_ttl = load<uint16_t>(p.ip() + 8);  // TTL and protocol, as stored
    ipc = kvlb_csum_replace32(ipc, load<uint32_t>(p.saddr()), r.src[0]);
    ipc = kvlb_csum_replace32(ipc, load<uint32_t>(p.daddr()), r.dst[0]);
    p.ip()[8] = static_cast<uint8_t>(r.ttl);
    ipc = kvlb_csum_replace16(ipc, old_ttl, load<uint16_t>(p.ip() + 8));
    store(p.ip() + 10, ipc);
  } else {
    p.ip()[7] = static_cast<uint8_t>(r.ttl);  // hop limit: no checksum covers it
  }
  for (size_t i = 0; i < words; ++i) {
    check = kvlb_csum_replace32(check, load<uint32_t>(p.saddr() + 4 * i), r.src[i]);
    check = kvlb_csum_replace32(check, load<uint32_t>(p.daddr() + 4 * i), r.dst[i]);
    store(p.saddr() + 4 * i, r.src[i]);
    store(p.daddr() + 4 * i, r.dst[i]);
  }
  check = kvlb_csum_replace16(check, load<uint16_t>(p.tcp()), r.sport);
  check = kvlb_csum_replace16(check, load<uint16_t>(p.tcp() + 2), r.dport);
  store(p.tcp(), r.sport);
  store(p.tcp() + 2, r.dport);
  store(p.tcp() + 16, check);
}

Rewrite random_rewrite(std::mt19937& rng, const Packet& p) {
  Rewrite r{};
  for (int i = 0; i < 4; ++i) {
    r.src[i] = dword(rng);
    r.dst[i] = dword(rng);
  }
  if (!p.v6)
    for (int i = 1; i < 4; ++i) r.src[i] = r.dst[i] = 0;
  r.sport = word(rng);
  r.dport = word(rng);
  const int old_ttl = p.b[p.v6 ? 7 : 8];
  switch (rng() % 4) {
    case 0:
      r.ttl = static_cast<int>(rng() % 256);
      break;
    case 1:
      r.ttl = rng() % 2 ? 0 : 255;
      break;
    default:
      r.ttl = old_ttl > 0 ? old_ttl - 1 : 0;
      break;  // what the gateway does
  }
  return r;
}

struct Tally {
  int cases = 0, zero_before = 0, zero_after = 0;
};

void check_case(std::mt19937& rng, bool v6, Tally& t) {
  Packet p = random_packet(rng, v6);
  // One case in four starts from checksums of 0x0000 (IP identification and
  // TCP urgent pointer chosen for it).
  if (rng() % 4 == 0) {
    if (!v6) force_zero_checksum(p, true, 4);
    p.fix_checksums();
    force_zero_checksum(p, false, 18);
    p.fix_checksums();
  }
  ASSERT_TRUE(p.ip_verifies() && p.tcp_verifies());
  t.zero_before += (!v6 && get16(p.ip() + 10) == 0) + (get16(p.tcp() + 16) == 0);

  Rewrite r = random_rewrite(rng, p);
  // One case in four ends on checksums of 0x0000: the new destination port (and
  // the last 16 bits of the new destination address, for the IP header) chosen
  // for it on a scratch copy.
  if (rng() % 4 == 0) {
    Packet q = p;
    apply(q, r);
    if (!v6) {
      force_zero_checksum(q, true, 18);  // low half of daddr
      std::memcpy(reinterpret_cast<uint8_t*>(&r.dst[0]) + 2, q.ip() + 18, 2);
      q.fix_checksums();
    }
    force_zero_checksum(q, false, 2);  // dport
    r.dport = load<uint16_t>(q.tcp() + 2);
  }

  Packet expected = p;
  apply(p, r);
  expected.b = p.b;  // the rewritten bytes, checksums recomputed from scratch
  expected.fix_checksums();
  t.zero_after += (!v6 && get16(expected.ip() + 10) == 0) + (get16(expected.tcp() + 16) == 0);
  ++t.cases;
  if (!v6) {
    ASSERT_EQ(get16(p.ip() + 10), get16(expected.ip() + 10))
        << "IPv4 header checksum, case " << t.cases;
  }
  ASSERT_EQ(get16(p.tcp() + 16), get16(expected.tcp() + 16)) << "TCP checksum, case " << t.cases;
  ASSERT_TRUE(p.ip_verifies() && p.tcp_verifies());
}

}  // namespace

TEST(Csum, FoldAndReplaceBasics) {
  EXPECT_EQ(kvlb_csum_fold(0), 0);
  EXPECT_EQ(kvlb_csum_fold(0xffff), 0xffff);
  EXPECT_EQ(kvlb_csum_fold(0x10000), 1);
  EXPECT_EQ(kvlb_csum_fold(0x1fffe), 0xffff);
  EXPECT_EQ(kvlb_csum_fold(0xffffffffu), 0xffff);
  // Nothing changed: the checksum is unchanged, whatever it is (but 0xffff, the
  // negative zero no sum of non-zero data produces, which comes out 0x0000).
  for (uint32_t c : {0x0000u, 0x0001u, 0x1234u, 0xfffeu})
    for (uint32_t w : {0x0000u, 0x00ffu, 0xffffu, 0xabcdu})
      EXPECT_EQ(kvlb_csum_replace16(static_cast<uint16_t>(c), static_cast<uint16_t>(w),
                                    static_cast<uint16_t>(w)),
                c)
          << std::hex << c << " " << w;
  // RFC 1624 section 4's example: the rest of the header sums to 0xcd7a, a word
  // changes from 0x5555 to 0x3285, so the checksum goes from ~(0xcd7a + 0x5555)
  // = 0xdd2f to ~(0xcd7a + 0x3285) = ~0xffff = 0x0000 (equation 2 gives 0xffff).
  EXPECT_EQ(kvlb_csum_replace16(0xdd2f, 0x5555, 0x3285), 0x0000);
}

TEST(Csum, Ipv4RewritesMatchChecksumsFromScratch) {
  std::mt19937 rng(11);
  Tally t;
  for (int i = 0; i < 20000; ++i) {
    check_case(rng, false, t);
    if (HasFatalFailure()) return;
  }
  // The edge cases happened (each of the two checksums, in about a quarter of
  // the cases each way).
  EXPECT_GT(t.zero_before, 2000);
  EXPECT_GT(t.zero_after, 2000);
}

TEST(Csum, Ipv6RewritesMatchChecksumsFromScratch) {
  std::mt19937 rng(12);
  Tally t;
  for (int i = 0; i < 20000; ++i) {
    check_case(rng, true, t);
    if (HasFatalFailure()) return;
  }
  EXPECT_GT(t.zero_before, 1000);
  EXPECT_GT(t.zero_after, 1000);
}

// Every 16-bit old and new value against a few checksums (2^32 pairs are too
// many: every old value with a spread of new ones, and every new value with a
// spread of old ones), each compared with the from-scratch rule: the result is
// the checksum of the data with the word replaced.
TEST(Csum, Replace16ExhaustiveOverOneSide) {
  // Data: one variable word plus a fixed rest whose sum is `rest`.
  for (uint32_t rest : {0x0000u, 0x0001u, 0x8000u, 0xfffeu, 0xffffu, 0x1234u}) {
    auto checksum = [&](uint32_t w) {
      uint32_t s = rest + w;
      s = (s & 0xffff) + (s >> 16);
      // From scratch: all-zero data (rest 0, word 0) sums to 0x0000 and checks
      // 0xffff; a real header never is all zero, so skip that one case below.
      return static_cast<uint16_t>(~s);
    };
    for (uint32_t a = 0; a <= 0xffff; ++a) {
      for (uint32_t b : {0x0000u, 0x0001u, 0x7fffu, 0x8000u, 0xfffeu, 0xffffu, a ^ 0x5a5au}) {
        if (rest == 0 && (a == 0 || b == 0)) continue;
        ASSERT_EQ(
            kvlb_csum_replace16(checksum(a), static_cast<uint16_t>(a), static_cast<uint16_t>(b)),
            checksum(b))
            << std::hex << "rest " << rest << " " << a << " -> " << b;
        ASSERT_EQ(
            kvlb_csum_replace16(checksum(b), static_cast<uint16_t>(b), static_cast<uint16_t>(a)),
            checksum(a))
            << std::hex << "rest " << rest << " " << b << " -> " << a;
      }
    }
  }
}
