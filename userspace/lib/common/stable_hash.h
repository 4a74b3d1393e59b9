// stable_hash.h - a hash that is the same on every node, every run and every
// build (unlike std::hash): rendezvous ranking in discovery's subsetting and in
// the cluster's scrape ownership, which every agent must compute alike.
#pragma once

#include <cstdint>
#include <string_view>

namespace kvlb {

// 64-bit FNV-1a over a, a 0 byte, b; then a finaliser (murmur3's) so that
// names differing in one character rank independently.
inline uint64_t stable_hash(std::string_view a, std::string_view b) {
  uint64_t h = 1469598103934665603ull;
  for (std::string_view part : {a, std::string_view("\0", 1), b})
    for (unsigned char c : part) h = (h ^ c) * 1099511628211ull;
  h ^= h >> 33;
  h *= 0xff51afd7ed558ccdull;
  h ^= h >> 33;
  return h;
}

}  // namespace kvlb
