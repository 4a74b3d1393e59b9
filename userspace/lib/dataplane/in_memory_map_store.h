// in_memory_map_store.h - MapStore over plain containers, for unit tests: the
// kernel's limits (ids below KVLB_MAX_BACKENDS, at most KVLB_MAX_SERVICES
// services), and what only the kernel does in production (counting picks and
// in-flight connections) done by hand.
#pragma once

#include <map>
#include <string>

#include "dataplane/map_store.h"

namespace kvlb {

class InMemoryMapStore : public MapStore {
 public:
  std::optional<kvlb_service> service(const kvlb_service_key& key) const override;
  void put_service(const kvlb_service_key& key, const kvlb_service& svc) override;
  void delete_service(const kvlb_service_key& key) override;
  std::vector<std::pair<kvlb_service_key, kvlb_service>> services() const override;
  kvlb_backend backend(uint32_t id) const override;
  void put_backend(uint32_t id, const kvlb_backend& be) override;
  kvlb_score score(uint32_t id) const override;
  void put_score(uint32_t id, const kvlb_score& s) override;
  kvlb_counters counters(uint32_t id) const override;
  void reset_counters(uint32_t id) override;
  std::array<uint64_t, KVLB_EVENT_COUNT> events() const override { return events_; }

  // ---- what the kernel does, for tests ----
  void set_counters(uint32_t id, const kvlb_counters& c);
  // After `n` more writes succeed, every write (put_*, delete_*, reset_*) fails
  // with EIO, as a map update can (out of memory, say); -1: none fails.
  void fail_after_writes(int n) { ok_writes_left_ = n; }
  size_t writes() const { return writes_; }

 private:
  struct KeyLess {
    bool operator()(const kvlb_service_key& a, const kvlb_service_key& b) const;
  };
  void write(const char* what);
  static void check_id(uint32_t id);
  std::map<kvlb_service_key, kvlb_service, KeyLess> services_;
  std::map<uint32_t, kvlb_backend> backends_;
  std::map<uint32_t, kvlb_score> scores_;
  std::map<uint32_t, kvlb_counters> counters_;
  std::array<uint64_t, KVLB_EVENT_COUNT> events_{};
  int ok_writes_left_ = -1;
  size_t writes_ = 0;
};

}  // namespace kvlb
