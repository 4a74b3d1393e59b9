#include "gateway/maglev.h"

#include <algorithm>
#include <cstring>
#include <stdexcept>
#include <string>

extern "C" {
#include "flow_hash.h"
}

namespace kvlb::gateway {
namespace {

// The order the backends take their turns in: by identity, byte by byte (the
// address and port are in network order, so this is their numeric order).
int compare_identity(const MaglevBackend& a, const MaglevBackend& b) {
  if (a.family != b.family) return a.family < b.family ? -1 : 1;
  if (int c = std::memcmp(&a.addr, &b.addr, sizeof(a.addr)); c != 0) return c;
  return std::memcmp(&a.port, &b.port, sizeof(a.port));
}

}  // namespace

bool is_prime(uint32_t n) {
  if (n < 2) return false;
  if (n % 2 == 0) return n == 2;
  for (uint64_t d = 3; d * d <= n; d += 2)
    if (n % d == 0) return false;
  return true;
}

std::vector<uint32_t> build_maglev(std::vector<MaglevBackend> backends, uint32_t size) {
  if (backends.size() > KVLB_MAX_SLOTS)
    throw std::invalid_argument("Maglev table: " + std::to_string(backends.size()) +
                                " backends, at most " + std::to_string(KVLB_MAX_SLOTS));
  if (!is_prime(size))
    throw std::invalid_argument("Maglev table size " + std::to_string(size) + " is not prime");
  for (const MaglevBackend& b : backends)
    if (b.id == KVLB_BACKEND_NONE)
      throw std::invalid_argument("Maglev table: backend id 0 marks an empty entry");

  // Sort by identity, then id, and keep the first of each identity: the smallest
  // id, whatever the input order.
  std::sort(backends.begin(), backends.end(), [](const MaglevBackend& a, const MaglevBackend& b) {
    int c = compare_identity(a, b);
    return c != 0 ? c < 0 : a.id < b.id;
  });
  backends.erase(std::unique(backends.begin(), backends.end(),
                             [](const MaglevBackend& a, const MaglevBackend& b) {
                               return compare_identity(a, b) == 0;
                             }),
                 backends.end());
  if (backends.size() > size)
    throw std::invalid_argument("Maglev table size " + std::to_string(size) + " is below the " +
                                std::to_string(backends.size()) + " backends");

  std::vector<uint32_t> table(size, KVLB_BACKEND_NONE);
  if (backends.empty()) return table;

  // Each backend's position in its permutation: the next slot it prefers is
  // next[i], and the one after is next[i] + skip[i] (mod size).
  const size_t n = backends.size();
  std::vector<uint64_t> next(n), skip(n);
  for (size_t i = 0; i < n; ++i) {
    const MaglevBackend& b = backends[i];
    next[i] = kvlb_backend_hash(&b.addr, b.port, b.family, KVLB_HASH_SEED_OFFSET) % size;
    // size == 2 leaves one possible skip: 1.
    skip[i] = kvlb_backend_hash(&b.addr, b.port, b.family, KVLB_HASH_SEED_SKIP) % (size - 1) + 1;
  }
  // Populate: backends take turns, each claiming the first free slot of its
  // permutation. A permutation visits every slot, so a turn always claims one;
  // the table fills after `size` turns, and a backend's scan over its whole
  // permutation costs `size` steps at most: size * n steps in all, at worst.
  std::vector<bool> taken(size, false);
  uint32_t filled = 0;
  while (true) {
    for (size_t i = 0; i < n; ++i) {
      uint64_t c = next[i];
      while (taken[c]) {
        c += skip[i];
        if (c >= size) c -= size;
      }
      taken[c] = true;
      table[c] = backends[i].id;
      c += skip[i];
      if (c >= size) c -= size;
      next[i] = c;
      if (++filled == size) return table;
    }
  }
}

}  // namespace kvlb::gateway
