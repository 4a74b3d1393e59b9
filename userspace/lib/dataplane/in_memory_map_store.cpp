#include "dataplane/in_memory_map_store.h"

#include <cerrno>
#include <cstring>
#include <system_error>

namespace kvlb {

bool InMemoryMapStore::KeyLess::operator()(const kvlb_service_key& a,
                                           const kvlb_service_key& b) const {
  return std::memcmp(&a, &b, sizeof(a)) < 0;
}

void InMemoryMapStore::check_id(uint32_t id) {
  // An array map refuses an index past its end (E2BIG), as the kernel does.
  if (id >= KVLB_MAX_BACKENDS)
    throw std::system_error(E2BIG, std::generic_category(), "backend id out of range");
}

void InMemoryMapStore::write(const char* what) {
  if (ok_writes_left_ == 0) throw std::system_error(EIO, std::generic_category(), what);
  if (ok_writes_left_ > 0) --ok_writes_left_;
  ++writes_;
}

std::optional<kvlb_service> InMemoryMapStore::service(const kvlb_service_key& key) const {
  auto it = services_.find(key);
  if (it == services_.end()) return std::nullopt;
  return it->second;
}

void InMemoryMapStore::put_service(const kvlb_service_key& key, const kvlb_service& svc) {
  write("write service");
  if (!services_.count(key) && services_.size() >= KVLB_MAX_SERVICES)
    throw std::system_error(E2BIG, std::generic_category(), "write service");
  services_[key] = svc;
}

void InMemoryMapStore::delete_service(const kvlb_service_key& key) {
  write("delete service");
  services_.erase(key);
}

std::vector<std::pair<kvlb_service_key, kvlb_service>> InMemoryMapStore::services() const {
  return {services_.begin(), services_.end()};
}

kvlb_backend InMemoryMapStore::backend(uint32_t id) const {
  check_id(id);
  auto it = backends_.find(id);
  return it == backends_.end() ? kvlb_backend{} : it->second;
}

void InMemoryMapStore::put_backend(uint32_t id, const kvlb_backend& be) {
  check_id(id);
  write("write backend");
  backends_[id] = be;
}

kvlb_score InMemoryMapStore::score(uint32_t id) const {
  check_id(id);
  auto it = scores_.find(id);
  return it == scores_.end() ? kvlb_score{} : it->second;
}

void InMemoryMapStore::put_score(uint32_t id, const kvlb_score& s) {
  check_id(id);
  write("write score");
  scores_[id] = s;
}

kvlb_counters InMemoryMapStore::counters(uint32_t id) const {
  check_id(id);
  auto it = counters_.find(id);
  return it == counters_.end() ? kvlb_counters{} : it->second;
}

void InMemoryMapStore::reset_counters(uint32_t id) {
  check_id(id);
  write("write counters");
  counters_[id] = kvlb_counters{};
}

void InMemoryMapStore::set_counters(uint32_t id, const kvlb_counters& c) {
  check_id(id);
  counters_[id] = c;
}

}  // namespace kvlb
