// dataplane.h - the userspace facade over kvlb's kernel programs and pinned maps.
//
// Loading a DataPlane loads the socket-LB programs (one BPF object per attach
// point) and reuses or creates the pinned maps under the pin directory; nothing
// runs in the kernel yet. attach() then either attaches the programs to the
// cgroup through bpf_links pinned in <pin_dir>/links, or, when such pinned links
// already exist (a previous agent, or this agent before a reload, left the data
// plane in place), atomically swaps the new programs into them: connections keep
// being balanced throughout a restart, an upgrade or a reload. An attach that
// fails part-way undoes exactly what it did: links it created are removed, links
// it swapped get their previous program back.
#pragma once

#include <array>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/clock.h"
#include "dataplane/gateway_flows.h"
#include "dataplane/map_store.h"
#include "dataplane/program_settings.h"
#include "kvlb_maps.h"

namespace kvlb {

// How the gateway's XDP program is attached: native (in the driver) where it
// can be, generic (after the driver, on the kernel's packet buffer) otherwise.
enum class XdpMode { Auto, Native, Generic };

struct DataPlaneOptions {
  std::filesystem::path bpffs_root = "/sys/fs/bpf";
  std::filesystem::path pin_dir = "/sys/fs/bpf/kvlb";
  std::filesystem::path cgroup;  // absolute path of a cgroup v2 directory (socket LB)
  // Non-empty: the XDP gateway on these interfaces instead of the socket LB.
  std::vector<std::string> gateway_interfaces;
  XdpMode xdp_mode = XdpMode::Auto;
  ProgramSettings program;
  bool gateway() const { return !gateway_interfaces.empty(); }
};

// A loaded program, as the kernel's verifier accepted it.
struct ProgramStats {
  std::string name;             // kvlb_connect4, ...
  uint32_t verified_insns = 0;  // instructions the verifier processed (limit: 1,000,000)
  uint32_t insns = 0;           // instructions in the program after the verifier's rewrites
  uint64_t run_time_ns = 0;     // with kernel BPF statistics on: time in the program, and
  uint64_t run_cnt = 0;         // runs (bpf_enable_stats, kernel.bpf_stats_enabled)
};

// The gateway's counters (enum kvlb_gw_stat), summed over CPUs.
using GatewayStats = std::array<uint64_t, KVLB_GW_STAT_COUNT>;

// One interface the gateway is attached to, and how.
struct GatewayAttachment {
  std::string interface;
  std::string mode;  // "native" or "generic"
};

// The cookie of the calling thread's network namespace (SO_NETNS_COOKIE).
uint64_t current_netns_cookie();

class DataPlane : public MapStore, public GatewayFlows {
 public:
  // Loads, pins and attaches (or adopts). Throws std::runtime_error with the
  // reason on failure; nothing is left attached then.
  static std::unique_ptr<DataPlane> open(const DataPlaneOptions& opts);
  // Loads the programs and opens or creates the pinned maps, without attaching:
  // the agent fills the maps first, then attach() swaps the programs in, so an
  // upgrade or a reload has no moment without service.
  static std::unique_ptr<DataPlane> load(const DataPlaneOptions& opts);
  // Loads every program with `settings` into the kernel and reports what the
  // verifier accepted; nothing is pinned or attached, and everything is
  // released on return. Throws like load().
  // `gateway`: the XDP gateway's programs instead of the socket LB's.
  static std::vector<ProgramStats> verify(const ProgramSettings& settings, bool gateway = false);

  // Attaches, or swaps the programs into the pinned links; then removes the pins
  // of retired map layouts. On failure, undoes what this call attached or
  // swapped, and throws. `previous`: the data plane this one replaces in this
  // process (a reload), whose programs a failed swap puts back. No-op when
  // attached.
  void attach(const DataPlane* previous = nullptr);
  ~DataPlane() override;
  DataPlane(const DataPlane&) = delete;
  DataPlane& operator=(const DataPlane&) = delete;

  // True when the programs replace (or will replace) links a previous agent left pinned.
  bool adopted() const;
  const DataPlaneOptions& options() const;
  // The loaded programs, as the verifier accepted them.
  std::vector<ProgramStats> programs() const;

  // Detaches every program and removes the pins (links and maps): the clean
  // shutdown. Without this call the data plane stays in place after exit.
  void detach_and_unpin();

  // ---- the gateway (options().gateway()); throw std::logic_error otherwise ----
  GatewayStats gateway_stats() const;
  // Open flows per backend id (client-side entries not closing), from the flow table.
  std::vector<std::pair<uint32_t, uint64_t>> gateway_flows() const;
  // Runs the sweep program once: closed and idle flows go. Returns how many.
  uint64_t gateway_sweep();
  const std::vector<GatewayAttachment>& gateway_attachments() const;
  // Flow sync (GatewayFlows): the flow-event ring, and the sync program run
  // once per event. The ring is pinned: events written while no agent ran
  // come with the first call.
  std::vector<kvlb_flow_event> take_flow_events() override;
  int apply_flow_sync(const kvlb_flow_sync& s) override;

  // ---- MapStore: the pinned maps (throw std::system_error on failure) ----
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

  // Data-plane events (enum kvlb_event), summed over CPUs.
  std::array<uint64_t, KVLB_EVENT_COUNT> events() const override;

 private:
  struct Impl;
  explicit DataPlane(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace kvlb
