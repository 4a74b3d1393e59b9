// map_store.h - kvlb's maps as the agent sees them: what it reads and writes,
// and nothing of how they are held.
//
// DataPlane implements it over the pinned BPF maps; InMemoryMapStore over
// plain containers, with the kernel's limits, so the agent's logic (reconcile,
// id adoption and reuse, scores, drain, suspects) runs in unit tests without
// root or a kernel.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <utility>
#include <vector>

#include "kvlb_maps.h"

namespace kvlb {

class MapStore {
 public:
  virtual ~MapStore() = default;
  // Every call throws std::system_error on failure (as a map syscall fails).
  virtual std::optional<kvlb_service> service(const kvlb_service_key& key) const = 0;
  virtual void put_service(const kvlb_service_key& key, const kvlb_service& svc) = 0;
  virtual void delete_service(const kvlb_service_key& key) = 0;
  virtual std::vector<std::pair<kvlb_service_key, kvlb_service>> services() const = 0;

  // Arrays indexed by backend id, 0..KVLB_MAX_BACKENDS-1: every id has an entry.
  virtual kvlb_backend backend(uint32_t id) const = 0;
  virtual void put_backend(uint32_t id, const kvlb_backend& be) = 0;
  virtual kvlb_score score(uint32_t id) const = 0;
  virtual void put_score(uint32_t id, const kvlb_score& s) = 0;
  // Written by the kernel; the agent only resets a freshly allocated id's.
  virtual kvlb_counters counters(uint32_t id) const = 0;
  virtual void reset_counters(uint32_t id) = 0;

  // Data-plane events (enum kvlb_event), summed over CPUs.
  virtual std::array<uint64_t, KVLB_EVENT_COUNT> events() const = 0;
};

}  // namespace kvlb
