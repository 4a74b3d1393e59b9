#include "dataplane/pinned_maps.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include <cerrno>
#include <stdexcept>
#include <system_error>
#include <vector>

#include <fmt/format.h>

#include "common/unique_fd.h"

namespace kvlb {
namespace fs = std::filesystem;

namespace {

// A pin that is not there is an empty map (an older layout, or a data plane
// being set up); any other failure to open it is an error.
UniqueFd open_pin(const fs::path& dir, const char* name, std::vector<std::string>* missing) {
  const fs::path pin = dir / name;
  LIBBPF_OPTS(bpf_obj_get_opts, opts, .file_flags = BPF_F_RDONLY);
  UniqueFd fd(bpf_obj_get_opts(pin.c_str(), &opts));
  if (!fd && errno == ENOENT) {
    missing->push_back(name);
  } else if (!fd) {
    throw std::runtime_error(
        fmt::format("cannot open {}: {}", pin.string(), std::system_category().message(errno)));
  }
  return fd;
}

template <typename V>
V read_array(int fd, uint32_t id, const char* what) {
  V v{};
  if (fd < 0) return v;
  if (bpf_map_lookup_elem(fd, &id, &v) != 0)
    throw std::system_error(errno, std::generic_category(), fmt::format("read {} {}", what, id));
  return v;
}

[[noreturn]] void read_only() {
  throw std::logic_error("the pinned maps are opened read-only");
}

}  // namespace

struct PinnedMaps::Impl {
  UniqueFd services, backends, scores, counters, sockets, events;
  std::vector<std::string> missing;
};

PinnedMaps::PinnedMaps(const fs::path& pin_dir) : impl_(std::make_unique<Impl>()) {
  std::error_code ec;
  if (!fs::is_directory(pin_dir, ec))
    throw std::runtime_error(fmt::format("no pin directory {}", pin_dir.string()));
  auto* m = &impl_->missing;
  impl_->services = open_pin(pin_dir, KVLB_MAP_SERVICES, m);
  impl_->backends = open_pin(pin_dir, KVLB_MAP_BACKENDS, m);
  impl_->scores = open_pin(pin_dir, KVLB_MAP_SCORES, m);
  impl_->counters = open_pin(pin_dir, KVLB_MAP_COUNTERS, m);
  impl_->sockets = open_pin(pin_dir, KVLB_MAP_SOCKETS, m);
  impl_->events = open_pin(pin_dir, KVLB_MAP_EVENTS, m);
}

const std::vector<std::string>& PinnedMaps::missing() const {
  return impl_->missing;
}

PinnedMaps::~PinnedMaps() = default;

std::optional<kvlb_service> PinnedMaps::service(const kvlb_service_key& key) const {
  if (!impl_->services) return std::nullopt;
  kvlb_service v{};
  if (bpf_map_lookup_elem(impl_->services.get(), &key, &v) == 0) return v;
  if (errno == ENOENT) return std::nullopt;
  throw std::system_error(errno, std::generic_category(), "read service");
}

std::vector<std::pair<kvlb_service_key, kvlb_service>> PinnedMaps::services() const {
  std::vector<std::pair<kvlb_service_key, kvlb_service>> out;
  if (!impl_->services) return out;
  kvlb_service_key key{}, next{};
  const void* prev = nullptr;
  while (bpf_map_get_next_key(impl_->services.get(), prev, &next) == 0) {
    key = next;
    prev = &key;
    if (auto v = service(key)) out.emplace_back(key, *v);
  }
  return out;
}

kvlb_backend PinnedMaps::backend(uint32_t id) const {
  return read_array<kvlb_backend>(impl_->backends.get(), id, "backend");
}
kvlb_score PinnedMaps::score(uint32_t id) const {
  return read_array<kvlb_score>(impl_->scores.get(), id, "score");
}
kvlb_counters PinnedMaps::counters(uint32_t id) const {
  return read_array<kvlb_counters>(impl_->counters.get(), id, "counters");
}

std::array<uint64_t, KVLB_EVENT_COUNT> PinnedMaps::events() const {
  std::array<uint64_t, KVLB_EVENT_COUNT> out{};
  if (!impl_->events) return out;
  const int cpus = libbpf_num_possible_cpus();
  if (cpus <= 0) throw std::system_error(-cpus, std::generic_category(), "count CPUs");
  std::vector<uint64_t> per_cpu(static_cast<size_t>(cpus));
  for (uint32_t e = 0; e < KVLB_EVENT_COUNT; ++e) {
    if (bpf_map_lookup_elem(impl_->events.get(), &e, per_cpu.data()) != 0)
      throw std::system_error(errno, std::generic_category(), "read events");
    for (uint64_t v : per_cpu) out[e] += v;
  }
  return out;
}

size_t PinnedMaps::sockets() const {
  size_t n = 0;
  if (!impl_->sockets) return n;
  uint64_t key = 0, next = 0;
  const void* prev = nullptr;
  while (bpf_map_get_next_key(impl_->sockets.get(), prev, &next) == 0) {
    key = next;
    prev = &key;
    ++n;
  }
  return n;
}

void PinnedMaps::put_service(const kvlb_service_key&, const kvlb_service&) {
  read_only();
}
void PinnedMaps::delete_service(const kvlb_service_key&) {
  read_only();
}
void PinnedMaps::put_backend(uint32_t, const kvlb_backend&) {
  read_only();
}
void PinnedMaps::put_score(uint32_t, const kvlb_score&) {
  read_only();
}
void PinnedMaps::reset_counters(uint32_t) {
  read_only();
}

}  // namespace kvlb
