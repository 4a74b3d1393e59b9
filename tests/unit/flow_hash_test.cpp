// bpf/lib/flow_hash.h, the hashes the XDP gateway and userspace share: that they
// are murmur3 (checked against a byte-wise transcription of MurmurHash3_x86_32),
// that a flow's Maglev slot spreads clients evenly, and that the source-NAT port
// probes stay in their range and differ. Fixed seeds: the figures in the comments
// are what these inputs measure.
#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <random>
#include <set>
#include <vector>

extern "C" {
#include "flow_hash.h"
}

namespace {

// MurmurHash3_x86_32 (Austin Appleby, public domain) over bytes, as published.
uint32_t murmur3_32(const uint8_t* data, size_t len, uint32_t seed) {
  const uint32_t c1 = 0xcc9e2d51, c2 = 0x1b873593;
  uint32_t h = seed;
  const size_t blocks = len / 4;
  for (size_t i = 0; i < blocks; ++i) {
    uint32_t k = static_cast<uint32_t>(data[4 * i]) | static_cast<uint32_t>(data[4 * i + 1]) << 8 |
                 static_cast<uint32_t>(data[4 * i + 2]) << 16 |
                 static_cast<uint32_t>(data[4 * i + 3]) << 24;
    k *= c1;
    k = std::rotl(k, 15);
    k *= c2;
    h ^= k;
    h = std::rotl(h, 13);
    h = h * 5 + 0xe6546b64;
  }
  uint32_t k = 0;
  const uint8_t* tail = data + blocks * 4;
  switch (len & 3) {
    case 3:
      k ^= static_cast<uint32_t>(tail[2]) << 16;
      [[fallthrough]];
    case 2:
      k ^= static_cast<uint32_t>(tail[1]) << 8;
      [[fallthrough]];
    case 1:
      k ^= tail[0];
      k *= c1;
      k = std::rotl(k, 15);
      k *= c2;
      h ^= k;
  }
  h ^= static_cast<uint32_t>(len);
  h ^= h >> 16;
  h *= 0x85ebca6b;
  h ^= h >> 13;
  h *= 0xc2b2ae35;
  h ^= h >> 16;
  return h;
}

// murmur3 over 32-bit words as little-endian bytes (what the header's word
// steps amount to).
uint32_t murmur3_words(const std::vector<uint32_t>& w, uint32_t seed) {
  std::vector<uint8_t> bytes;
  for (uint32_t x : w)
    for (int i = 0; i < 4; ++i) bytes.push_back(static_cast<uint8_t>(x >> (8 * i)));
  return murmur3_32(bytes.data(), bytes.size(), seed);
}

kvlb_flow_key client_v4(uint32_t src, uint16_t sport, uint32_t vip = 0xc0000201u /* 192.0.2.1 */,
                        uint16_t vport = 443) {
  kvlb_flow_key k{};
  k.src.words[0] = htonl(src);
  k.dst.words[0] = htonl(vip);
  k.sport = htons(sport);
  k.dport = htons(vport);
  k.family = KVLB_AF_INET;
  k.proto = IPPROTO_TCP;
  return k;
}

kvlb_flow_key random_key(std::mt19937& rng, bool v6) {
  kvlb_flow_key k = client_v4(rng(), static_cast<uint16_t>(rng()));
  if (v6) {
    for (int i = 0; i < 4; ++i) k.src.words[i] = rng();
    k.dst.words[0] = htonl(0x20010db8u);
    k.dst.words[3] = htonl(1);
    k.family = KVLB_AF_INET6;
  }
  return k;
}

// Pearson's chi-square of bucket counts against a uniform expectation.
double chi_square(const std::vector<uint32_t>& counts, double total) {
  const double expected = total / counts.size();
  double chi = 0;
  for (uint32_t c : counts) chi += (c - expected) * (c - expected) / expected;
  return chi;
}

constexpr uint32_t kBuckets = 64;
constexpr uint32_t kKeys = 100000;

struct Spread {
  double chi64;     // chi-square over 64 coarse buckets (63 degrees of freedom)
  double chi_full;  // over all KVLB_MAGLEV_SIZE slots (M - 1 degrees of freedom)
  double max_over_min;
};

template <typename KeyFn>
Spread spread(KeyFn key) {
  std::vector<uint32_t> coarse(kBuckets), fine(KVLB_MAGLEV_SIZE);
  for (uint32_t i = 0; i < kKeys; ++i) {
    kvlb_flow_key k = key(i);
    uint32_t slot = kvlb_maglev_slot(&k);
    EXPECT_LT(slot, KVLB_MAGLEV_SIZE);
    if (slot >= KVLB_MAGLEV_SIZE) return {};
    ++fine[slot];
    ++coarse[static_cast<uint64_t>(slot) * kBuckets / KVLB_MAGLEV_SIZE];
  }
  auto [mn, mx] = std::minmax_element(coarse.begin(), coarse.end());
  return {chi_square(coarse, kKeys), chi_square(fine, kKeys), static_cast<double>(*mx) / *mn};
}

}  // namespace

TEST(FlowHash, IsMurmur3OverTheKeysWords) {
  std::mt19937 rng(1);
  for (int i = 0; i < 2000; ++i) {
    kvlb_flow_key k = random_key(rng, i % 2);
    uint32_t seed = i % 3 == 0 ? KVLB_HASH_SEED_MAGLEV : rng();
    std::vector<uint32_t> w(k.src.words, k.src.words + 4);
    w.insert(w.end(), k.dst.words, k.dst.words + 4);
    w.push_back(static_cast<uint32_t>(k.sport) << 16 | k.dport);
    w.push_back(static_cast<uint32_t>(k.family) << 8 | k.proto);
    ASSERT_EQ(kvlb_flow_hash(&k, seed), murmur3_words(w, seed)) << i;

    kvlb_addr a = k.src;
    uint16_t port = static_cast<uint16_t>(rng());
    std::vector<uint32_t> b(a.words, a.words + 4);
    b.push_back(static_cast<uint32_t>(port) << 8 | k.family);
    ASSERT_EQ(kvlb_backend_hash(&a, port, k.family, seed), murmur3_words(b, seed)) << i;
  }
  // murmur3's published test vectors, through the transcription.
  EXPECT_EQ(murmur3_32(nullptr, 0, 0), 0u);
  EXPECT_EQ(murmur3_32(nullptr, 0, 1), 0x514e28b7u);
  const uint8_t hello[] = {'H', 'e', 'l', 'l', 'o', ',', ' ', 'w', 'o', 'r', 'l', 'd', '!'};
  EXPECT_EQ(murmur3_32(hello, sizeof hello, 0x9747b28c), 0x24884cbau);
}

// Every input bit moves every output bit about half the time (avalanche), over
// 2000 random keys per input bit. Measured: the mean fraction of output bits
// flipped per input bit is 0.4942..0.5057, and no single output bit's flip rate
// is more than 0.0445 off 0.5 (printed). Bounds: 0.47..0.53 and 0.40..0.60.
TEST(FlowHash, EveryInputBitReachesEveryOutputBit) {
  std::mt19937 rng(2);
  constexpr int kSamples = 2000;
  constexpr int kInputBits = 10 * 32;
  double lo = 1, hi = 0, worst_bit = 0;
  for (int bit = 0; bit < kInputBits; ++bit) {
    if (bit >= 288 && bit % 32 >= 16) continue;  // family and proto are 16 bits of 32
    std::vector<uint32_t> flips(32);
    uint64_t total = 0;
    for (int s = 0; s < kSamples; ++s) {
      kvlb_flow_key k = random_key(rng, s % 2);
      uint32_t w[10];
      std::memcpy(w, &k.src, 16);
      std::memcpy(w + 4, &k.dst, 16);
      w[8] = static_cast<uint32_t>(k.sport) << 16 | k.dport;
      w[9] = static_cast<uint32_t>(k.family) << 8 | k.proto;
      kvlb_flow_key f = k;
      // The same bit of the hashed words, flipped in the key's fields.
      if (bit < 256) {
        uint32_t* dst = bit < 128 ? f.src.words : f.dst.words;
        dst[(bit % 128) / 32] ^= 1u << (bit % 32);
      } else if (bit < 288) {
        uint32_t x = w[8] ^ (1u << (bit % 32));
        f.sport = static_cast<uint16_t>(x >> 16);
        f.dport = static_cast<uint16_t>(x);
      } else {
        uint32_t x = w[9] ^ (1u << (bit % 32));
        f.family = static_cast<uint8_t>(x >> 8);
        f.proto = static_cast<uint8_t>(x);
      }
      uint32_t d =
          kvlb_flow_hash(&k, KVLB_HASH_SEED_MAGLEV) ^ kvlb_flow_hash(&f, KVLB_HASH_SEED_MAGLEV);
      total += std::popcount(d);
      for (int o = 0; o < 32; ++o) flips[o] += d >> o & 1;
    }
    double mean = static_cast<double>(total) / (32.0 * kSamples);
    lo = std::min(lo, mean);
    hi = std::max(hi, mean);
    for (uint32_t c : flips) {
      double p = static_cast<double>(c) / kSamples;
      worst_bit = std::max(worst_bit, std::abs(p - 0.5));
      EXPECT_GT(p, 0.40) << "input bit " << bit;
      EXPECT_LT(p, 0.60) << "input bit " << bit;
    }
    EXPECT_GT(mean, 0.47) << "input bit " << bit;
    EXPECT_LT(mean, 0.53) << "input bit " << bit;
  }
  std::printf(
      "avalanche: mean output bits flipped per input bit %.4f..%.4f, worst single output "
      "bit off 0.5 by %.4f\n",
      lo, hi, worst_bit);
}

// 100k clients over the Maglev slots, grouped in 64 buckets of ~256 slots
// (~1562 flows each). For a uniform spread, chi-square with 63 degrees of
// freedom has mean 63 and its 99.9th percentile is 103.4; over all M = 16411
// slots (6.1 flows a slot) chi-square(M - 1) has mean M - 1 and sd
// sqrt(2 (M - 1)) = 181. Measured (printed by the test):
//                                        chi64   chi(full)  coarse max/min
//   random IPv4 clients                   58.9     16353        1.110
//   random IPv6 clients                   54.7     16605        1.121
//   100 clients x 1000 sequential ports   63.9     16554        1.127
//   1 client, 25k ports x 4 VIPs          63.3     16488        1.120
// Bounds: chi64 < 103.4 (p = 0.001 for a uniform hash), the full-table figure
// within 4 sd of its mean, coarse max/min < 1.2.
TEST(FlowHash, MaglevSlotSpreadsClients) {
  std::mt19937 rng(3);
  struct Case {
    const char* name;
    std::function<kvlb_flow_key(uint32_t)> key;
  };
  std::vector<Case> cases = {
      {"random IPv4 clients", [&](uint32_t) { return random_key(rng, false); }},
      {"random IPv6 clients", [&](uint32_t) { return random_key(rng, true); }},
      // A NATed office: 100 addresses in one /24 ... (sequential), each with
      // 1000 sequential ephemeral ports.
      {"100 clients x 1000 sequential ports",
       [](uint32_t i) {
         return client_v4(0xcb007100u + i / 1000, static_cast<uint16_t>(32768 + i % 1000));
       }},
      // One client behind a big NAT, every port, to 4 VIPs on 2 ports.
      {"1 client, 25k ports x 4 VIPs",
       [](uint32_t i) {
         return client_v4(0xc6336401u, static_cast<uint16_t>(40000 + i / 4),
                          0xc0000201u + (i % 4) / 2, i % 2 ? 443 : 8443);
       }},
  };
  for (auto& c : cases) {
    Spread s = spread(c.key);
    std::printf("%-36s chi64 %7.1f  chi(full) %8.0f  coarse max/min %.3f\n", c.name, s.chi64,
                s.chi_full, s.max_over_min);
    EXPECT_LT(s.chi64, 103.4) << c.name;
    const double dof = KVLB_MAGLEV_SIZE - 1;
    EXPECT_LT(std::abs(s.chi_full - dof), 4 * std::sqrt(2 * dof)) << c.name;
    EXPECT_LT(s.max_over_min, 1.2) << c.name;
  }
}

TEST(FlowHash, MaglevSlotDependsOnTheWholeKey) {
  kvlb_flow_key k = client_v4(0x0a000001u, 50000);
  const uint32_t slot = kvlb_maglev_slot(&k);
  // Pinned: the XDP program computes the same (a change here moves every flow
  // that has no table entry, so it must be deliberate).
  // (Little-endian hosts: the hash reads the key's words as stored.)
  EXPECT_EQ(kvlb_flow_hash(&k, KVLB_HASH_SEED_MAGLEV), 4198254169u);
  EXPECT_EQ(slot, 4198254169u % KVLB_MAGLEV_SIZE);
  EXPECT_EQ(slot, 8560u);
  // Each field matters (not a proof, but a missing field would show).
  int differs = 0;
  for (int field = 0; field < 6; ++field) {
    kvlb_flow_key f = k;
    switch (field) {
      case 0:
        f.src.words[0] ^= htonl(1);
        break;
      case 1:
        f.dst.words[0] ^= htonl(1);
        break;
      case 2:
        f.sport ^= htons(1);
        break;
      case 3:
        f.dport ^= htons(1);
        break;
      case 4:
        f.family = KVLB_AF_INET6;
        break;
      case 5:
        f.proto = IPPROTO_UDP;
        break;
    }
    differs +=
        kvlb_flow_hash(&f, KVLB_HASH_SEED_MAGLEV) != kvlb_flow_hash(&k, KVLB_HASH_SEED_MAGLEV);
  }
  EXPECT_EQ(differs, 6);
  // The pad is not hashed: two keys that differ only there are the same flow.
  kvlb_flow_key padded = k;
  padded.pad = 0xffff;
  EXPECT_EQ(kvlb_maglev_slot(&padded), slot);
}

// The gateway's source port: probe i of a flow, in [lo, hi] (host order).
TEST(FlowHash, SnatPortStaysInRangeAndProbesDiffer) {
  struct Range {
    uint16_t lo, hi;
  };
  // The gateway's default (10000..29999, bpf/lib/gw_config.bpf.h), Linux's
  // default ephemeral range, the unprivileged ports, all of them, and tiny ones.
  const Range ranges[] = {{10000, 29999}, {32768, 60999}, {1024, 65535}, {0, 65535},
                          {5000, 5000},   {5000, 5001},   {60000, 60009}};
  constexpr uint32_t kProbes = KVLB_SNAT_PROBES;  // every probe the gateway tries
  std::mt19937 rng(4);
  for (const Range& r : ranges) {
    const uint32_t range = static_cast<uint32_t>(r.hi) - r.lo + 1;
    std::vector<uint32_t> first_probe(std::min<uint32_t>(range, 16));
    for (int i = 0; i < 20000; ++i) {
      kvlb_flow_key k = random_key(rng, i % 2);
      std::set<uint16_t> seen;
      for (uint32_t p = 0; p < kProbes; ++p) {
        uint16_t port = kvlb_snat_port(&k, p, r.lo, r.hi);
        ASSERT_GE(port, r.lo);
        ASSERT_LE(port, r.hi);
        seen.insert(port);
        if (p == 0) ++first_probe[static_cast<uint64_t>(port - r.lo) * first_probe.size() / range];
      }
      // Probes walk the range from the hashed start: distinct while there are
      // ports enough, whatever the range's size.
      EXPECT_EQ(seen.size(), std::min(kProbes, range)) << "range " << r.lo << ".." << r.hi;
    }
    // The first probe spreads over the range like the slots do.
    if (first_probe.size() >= 8) {
      auto [mn, mx] = std::minmax_element(first_probe.begin(), first_probe.end());
      EXPECT_LT(static_cast<double>(*mx) / *mn, 1.35) << r.lo << ".." << r.hi;
    }
  }
  // The first probe is a function of the client's key alone: a second gateway
  // picks the same port.
  kvlb_flow_key k = client_v4(0x0a000001u, 50000);
  EXPECT_EQ(kvlb_snat_port(&k, 0, 10000, 29999), kvlb_snat_port(&k, 0, 10000, 29999));
}
