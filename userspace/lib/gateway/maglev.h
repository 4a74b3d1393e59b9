// maglev.h - the gateway's Maglev lookup table (Eisenbud et al., "Maglev: A Fast
// and Reliable Software Network Load Balancer", NSDI 2016, section 3.4).
//
// The XDP gateway places a packet that has no flow entry (a non-SYN after the
// gateway lost its table, or one that reached another gateway) by the Maglev
// slot of its client key (bpf/lib/flow_hash.h: kvlb_maglev_slot), so every
// gateway with the same backends sends it to the same backend. This file builds
// the table those slots index.
//
// Each backend's preference list is a permutation of the table's slots, a
// function of its identity (family, address, port) alone:
//   offset = kvlb_backend_hash(identity, KVLB_HASH_SEED_OFFSET) % M
//   skip   = kvlb_backend_hash(identity, KVLB_HASH_SEED_SKIP) % (M - 1) + 1
//   slot j of the list = (offset + j * skip) % M    (a permutation: M is prime)
// and the backends take turns claiming their next free preferred slot until the
// table is full ("populate"). Consequences the tests pin:
//   - every backend gets floor(M/N) or ceil(M/N) entries (the turns are round
//     robin, the last round is partial);
//   - the table depends on the backends' identities, not on the order they are
//     given in nor on their ids (which only label the entries): the backends are
//     sorted by (family, address, port) first, so two gateways, or one after a
//     restart that handed out other ids, build the same table up to the labels;
//   - removing a backend moves all of its entries and a few percent at most of
//     the others (Maglev trades that little disruption for its even shares).
#pragma once

#include <cstdint>
#include <vector>

#include "kvlb_maps.h"

namespace kvlb::gateway {

struct MaglevBackend {
  uint32_t id;     // what the table's entries hold; never KVLB_BACKEND_NONE
  kvlb_addr addr;  // network byte order; IPv4 in words[0], the rest zero
  uint16_t port;   // network byte order
  uint8_t family;  // enum kvlb_family
};

// The Maglev table of `size` entries (a prime, at least the number of distinct
// backends) for `backends` (at most KVLB_MAX_SLOTS entries, in any order): entry
// i is the id of the backend a flow in Maglev slot i goes to. Backends with the
// same identity (family, address, port) count once, under the smallest of their
// ids. No backends: every entry is KVLB_BACKEND_NONE.
//
// Throws std::invalid_argument when `size` is not prime or is smaller than the
// number of distinct backends, when there are more than KVLB_MAX_SLOTS backends,
// or when a backend's id is KVLB_BACKEND_NONE (its entries would read as empty).
// Work: O(size * distinct backends) at worst, O(size * log size) expected.
std::vector<uint32_t> build_maglev(std::vector<MaglevBackend> backends,
                                   uint32_t size = KVLB_MAGLEV_SIZE);

// True when n is prime (trial division: at most ~33k divisions for 32-bit n).
bool is_prime(uint32_t n);

}  // namespace kvlb::gateway
