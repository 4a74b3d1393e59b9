// pinned_maps.h - the maps a running agent pinned, opened read-only: for
// kvlbctl (inspection, scripts) and anything else that must read the data
// plane without being its writer. Needs no program and no BPF toolchain, only
// the pins (and the privileges to open them: root, by their mode).
#pragma once

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "dataplane/map_store.h"

namespace kvlb {

class PinnedMaps : public MapStore {
 public:
  // Opens the pins under `pin_dir` read-only. A map that is not pinned there
  // reads as empty (missing() names it: an older layout, or a data plane being
  // set up). Throws std::runtime_error when the directory is not there or a pin
  // cannot be opened.
  explicit PinnedMaps(const std::filesystem::path& pin_dir);
  ~PinnedMaps() override;

  std::optional<kvlb_service> service(const kvlb_service_key& key) const override;
  std::vector<std::pair<kvlb_service_key, kvlb_service>> services() const override;
  kvlb_backend backend(uint32_t id) const override;
  kvlb_score score(uint32_t id) const override;
  kvlb_counters counters(uint32_t id) const override;
  std::array<uint64_t, KVLB_EVENT_COUNT> events() const override;
  // Sockets the kernel tracks (entries of the socket table).
  size_t sockets() const;
  const std::vector<std::string>& missing() const;

  // Read-only: every write throws std::logic_error.
  void put_service(const kvlb_service_key&, const kvlb_service&) override;
  void delete_service(const kvlb_service_key&) override;
  void put_backend(uint32_t, const kvlb_backend&) override;
  void put_score(uint32_t, const kvlb_score&) override;
  void reset_counters(uint32_t) override;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace kvlb
