#include "dataplane.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <fcntl.h>
#include <linux/ethtool.h>
#include <linux/if_link.h>
#include <linux/sockios.h>
#include <net/if.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>

#include <cerrno>
#include <algorithm>
#include <cstring>
#include <map>
#include <set>
#include <stdexcept>
#include <system_error>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "common/failpoint.h"
#include "common/fs_mounts.h"
#include "common/unique_fd.h"
#include "dataplane/bpf_handles.h"
#include "dataplane/kernel_features.h"
#include "dataplane/libbpf_log.h"

#include "gateway.skel.h"
#include "gateway/maglev.h"
#include "sock.skel.h"

namespace kvlb {
namespace fs = std::filesystem;
using bpf::LinkPtr;
using bpf::SkelPtr;

namespace {

[[noreturn]] void throw_errno(int err, const std::string& what) {
  throw std::system_error(err < 0 ? -err : err, std::generic_category(), what);
}

// The cgroup id of a cgroup v2 directory is its inode number.
uint64_t cgroup_id(const fs::path& cg) {
  struct stat st {};
  if (::stat(cg.c_str(), &st) != 0) throw_errno(errno, "stat " + cg.string());
  return st.st_ino;
}

// One attach point: its program, and its link (pinned under <pin_dir>/links).
struct Hook {
  std::string name;
  bpf_program* prog = nullptr;
  LinkPtr link;
  int ifindex = 0;  // an XDP hook's interface (0: a cgroup hook)
  std::string interface;
};

// The driver of a network interface (ethtool), "" when it has none to tell.
std::string interface_driver(const std::string& name) {
  UniqueFd fd(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  if (!fd) return "";
  ethtool_drvinfo info{};
  info.cmd = ETHTOOL_GDRVINFO;
  ifreq ifr{};
  std::strncpy(ifr.ifr_name, name.c_str(), IFNAMSIZ - 1);
  ifr.ifr_data = reinterpret_cast<char*>(&info);
  if (::ioctl(fd.get(), SIOCETHTOOL, &ifr) != 0) return "";
  return info.driver;
}

// What attach() did to one hook, so a failure can undo exactly that.
struct AttachStep {
  Hook* hook;
  bool created;       // a new link (else: a pinned link with our program swapped in)
  UniqueFd previous;  // the program the pinned link ran before the swap
};

}  // namespace

uint64_t current_netns_cookie() {
  UniqueFd fd(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  if (!fd) throw_errno(errno, "socket");
  uint64_t cookie = 0;
  socklen_t len = sizeof(cookie);
#ifndef SO_NETNS_COOKIE
#define SO_NETNS_COOKIE 71
#endif
  if (::getsockopt(fd.get(), SOL_SOCKET, SO_NETNS_COOKIE, &cookie, &len) != 0)
    throw_errno(errno, "getsockopt(SO_NETNS_COOKIE)");
  return cookie;
}

struct DataPlane::Impl {
  DataPlaneOptions opts;
  bool pinned = true;  // false: verify() — private maps, nothing pinned or attached
  SkelPtr<kvlb_sock, kvlb_sock__destroy> skel;      // every socket hook, one object
  SkelPtr<kvlb_gateway, kvlb_gateway__destroy> gw;  // the XDP gateway (gateway mode)
  // Flow sync: the consumer of the gateway's flow-event ring (made on first
  // use) and where its callback puts what it reads.
  bpf::RingBufferPtr flow_events;
  std::vector<kvlb_flow_event> flow_event_sink;
  std::vector<Hook> hooks;
  std::vector<GatewayAttachment> attachments;
  int fd_flows = -1, fd_maglev = -1, fd_vips = -1, fd_gw_stats = -1;
  // Gateway: each service's Maglev row and the backends it was built from, so
  // a table is rebuilt only when its backends change; VIP addresses in use.
  std::map<std::vector<uint8_t>, uint32_t> rows;  // service key bytes -> row (1-based)
  std::map<uint32_t, std::vector<gateway::MaglevBackend>> row_backends;
  std::map<std::vector<uint8_t>, uint32_t> vip_refs;  // VIP key bytes -> services

  bpf_object* obj() const { return gw ? gw->obj : skel->obj; }

  // The maps both objects share (services, backends, scores, counters, events),
  // from either skeleton's map set.
  template <typename Maps>
  void take_shared_maps(const Maps& m) {
    fd_services = bpf_map__fd(m.kvlb_svc_v2);
    fd_backends = bpf_map__fd(m.kvlb_be_v1);
    fd_scores = bpf_map__fd(m.kvlb_score_v1);
    fd_counters = bpf_map__fd(m.kvlb_ctr_v1);
    fd_events = bpf_map__fd(m.kvlb_events_v1);
  }
  bool adopted = false;
  bool attached = false;
  int fd_services = -1, fd_backends = -1, fd_scores = -1, fd_counters = -1, fd_events = -1;
  UniqueFd legacy_sockets;  // the v1 agent's socket storage, when its pin exists

  fs::path link_dir() const { return opts.pin_dir / KVLB_LINK_DIR; }
  const ProgramSettings& settings() const { return opts.program; }

  // The programs' load-time constants (.rodata, see bpf/lib/config.bpf.h).
  void set_rodata() {
    auto* r = skel->rodata;
#define KVLB_RODATA_(type, field, def) r->cfg_##field = settings().select.field;
    KVLB_SELECT_TUNABLES(KVLB_RODATA_)
#undef KVLB_RODATA_
    r->cfg_bypass_mark = settings().bypass_mark;
    r->cfg_host_netns_cookie = settings().host_netns_cookie;
  }

  void set_gateway_rodata() {
    auto* r = gw->rodata;
#define KVLB_RODATA_(type, field, def) r->cfg_##field = settings().select.field;
    KVLB_SELECT_TUNABLES(KVLB_RODATA_)
#undef KVLB_RODATA_
    const auto& g = settings().gateway;
    r->cfg_snat4 = g.snat4;
    for (size_t i = 0; i < 4; ++i) r->cfg_snat6[i] = g.snat6[i];
    r->cfg_snat_port_lo = g.snat_port_lo;
    r->cfg_snat_port_hi = g.snat_port_hi;
    r->cfg_flow_idle_ns = g.idle_ns;
    r->cfg_flow_closing_ns = g.closing_ns;
    r->cfg_sync_refresh_sweeps = g.sync_refresh_sweeps;
  }

  // The gateway: its object, with the shared maps reused or created by pin name.
  void load_gateway(const char* pin_root) {
    if (pinned)
      check_table_size(KVLB_MAP_FLOWS, 2 * settings().gateway.max_flows, "gateway.flow_table",
                       "the translation of every open flow (two entries a flow)");
    LIBBPF_OPTS(bpf_object_open_opts, oo, .pin_root_path = pin_root);
    gw.reset(kvlb_gateway__open_opts(&oo));
    if (!gw) throw_libbpf(errno, "open the gateway's BPF object");
    if (!pinned) {
      bpf_map* m;
      bpf_object__for_each_map(m, gw->obj) bpf_map__set_pin_path(m, nullptr);
    }
    if (int err = bpf_map__set_max_entries(gw->maps.kvlb_flow_v1, 2 * settings().gateway.max_flows))
      throw_errno(err, "size the flow table");
    set_gateway_rodata();
    if (int err = kvlb_gateway__load(gw.get())) throw_libbpf(err, "load the gateway's programs");
    auto& m = gw->maps;
    take_shared_maps(m);
    fd_flows = bpf_map__fd(m.kvlb_flow_v1);
    fd_maglev = bpf_map__fd(m.kvlb_maglev_v1);
    fd_vips = bpf_map__fd(m.kvlb_vip_v1);
    fd_gw_stats = bpf_map__fd(m.kvlb_gwstat_v1);
    for (const auto& ifname : opts.gateway_interfaces) {
      unsigned idx = if_nametoindex(ifname.c_str());
      if (idx == 0 && pinned)
        throw std::runtime_error(fmt::format("gateway.interfaces: no interface named {}", ifname));
      hooks.push_back({KVLB_LINK_XDP_PREFIX + ifname, gw->progs.kvlb_gateway, nullptr,
                       static_cast<int>(idx), ifname});
    }
    if (pinned) adopt_gateway_rows();
  }

  // A restarted agent finds the services it (or its predecessor) wrote: their
  // Maglev rows and VIPs stay as they are until the services change.
  void adopt_gateway_rows() {
    kvlb_service_key key{}, next{};
    const void* prev = nullptr;
    while (bpf_map_get_next_key(fd_services, prev, &next) == 0) {
      key = next;
      prev = &key;
      kvlb_service v{};
      if (bpf_map_lookup_elem(fd_services, &key, &v) != 0) continue;
      if (v.maglev_row) rows[key_bytes(key)] = v.maglev_row;
      vip_refs[key_bytes(vip_key(key))] += 1;
    }
  }

  template <typename T>
  static std::vector<uint8_t> key_bytes(const T& k) {
    const auto* b = reinterpret_cast<const uint8_t*>(&k);
    return {b, b + sizeof(T)};
  }
  static kvlb_service_key vip_key(const kvlb_service_key& k) {
    kvlb_service_key v{};
    v.vip = k.vip;
    v.family = k.family;
    return v;
  }

  // Gateway: a service written. Its Maglev row is allocated (or kept) and
  // rebuilt when its backends changed; its VIP is marked. Returns the value to
  // write (with the row).
  kvlb_service gateway_service(const kvlb_service_key& key, kvlb_service svc) {
    const auto kb = key_bytes(key);
    uint32_t row = 0;
    if (auto it = rows.find(kb); it != rows.end()) {
      row = it->second;
    } else {
      std::set<uint32_t> used;
      for (const auto& [k, r] : rows) used.insert(r);
      for (uint32_t r = 1; r <= KVLB_GW_MAX_SERVICES && !row; ++r)
        if (!used.count(r)) row = r;
      if (!row)
        throw std::runtime_error(
            fmt::format("the gateway balances at most {} services", KVLB_GW_MAX_SERVICES));
      rows[kb] = row;
      vip_refs[key_bytes(vip_key(key))] += 1;
      uint32_t one = 1;
      kvlb_service_key vk = vip_key(key);
      if (bpf_map_update_elem(fd_vips, &vk, &one, BPF_ANY) != 0) throw_errno(errno, "write VIP");
    }
    svc.maglev_row = row;
    std::vector<gateway::MaglevBackend> bes;
    for (uint32_t i = 0; i < svc.backend_count && i < KVLB_MAX_SLOTS; ++i) {
      const uint32_t id = svc.slots[i];
      kvlb_backend b = lookup_array<kvlb_backend>(fd_backends, id, "backend");
      bes.push_back({id, b.addr, b.port, b.family});
    }
    auto same = [](const std::vector<gateway::MaglevBackend>& a,
                   const std::vector<gateway::MaglevBackend>& b) {
      return a.size() == b.size() &&
             std::equal(a.begin(), a.end(), b.begin(), [](const auto& x, const auto& y) {
               return x.id == y.id && x.port == y.port && x.family == y.family &&
                      std::memcmp(&x.addr, &y.addr, sizeof(x.addr)) == 0;
             });
    };
    auto prev_it = row_backends.find(row);
    if (prev_it == row_backends.end() || !same(prev_it->second, bes)) {
      write_maglev_row(row, gateway::build_maglev(bes));
      row_backends[row] = std::move(bes);
    }
    return svc;
  }

  void write_maglev_row(uint32_t row, const std::vector<uint32_t>& table) {
    std::vector<uint32_t> keys(table.size());
    for (uint32_t i = 0; i < keys.size(); ++i) keys[i] = (row - 1) * KVLB_MAGLEV_SIZE + i;
    uint32_t count = static_cast<uint32_t>(keys.size());
    LIBBPF_OPTS(bpf_map_batch_opts, bo);
    if (bpf_map_update_batch(fd_maglev, keys.data(), table.data(), &count, &bo) == 0) return;
    for (uint32_t i = 0; i < keys.size(); ++i)  // no batch ops (older kernel): one by one
      if (bpf_map_update_elem(fd_maglev, &keys[i], &table[i], BPF_ANY) != 0)
        throw_errno(errno, "write Maglev table");
  }

  void gateway_forget(const kvlb_service_key& key) {
    auto it = rows.find(key_bytes(key));
    if (it == rows.end()) return;
    write_maglev_row(it->second, std::vector<uint32_t>(KVLB_MAGLEV_SIZE, KVLB_BACKEND_NONE));
    row_backends.erase(it->second);
    rows.erase(it);
    auto vk = vip_key(key);
    auto v = vip_refs.find(key_bytes(vk));
    if (v != vip_refs.end() && --v->second == 0) {
      vip_refs.erase(v);
      if (bpf_map_delete_elem(fd_vips, &vk) != 0 && errno != ENOENT)
        throw_errno(errno, "delete VIP");
    }
  }

  // A pinned table keeps its size: say so plainly instead of libbpf's
  // "parameter mismatch" (resizing would drop the state of every open socket
  // or flow).
  void check_socket_table_size() {
    check_table_size(KVLB_MAP_SOCKETS, settings().max_sockets, "max_sockets",
                     "the state of every open balanced socket");
    check_table_size(KVLB_MAP_RESPONSE_ENDS, settings().max_sockets, "max_sockets",
                     "where the last response of every balanced socket ended");
  }
  void check_table_size(const char* name, uint32_t want, const char* setting, const char* holds) {
    const fs::path pin = opts.pin_dir / name;
    std::error_code ec;
    if (!fs::exists(pin, ec)) return;
    UniqueFd fd(bpf_obj_get(pin.c_str()));
    if (!fd) throw_errno(errno, "open " + pin.string());
    bpf_map_info info{};
    uint32_t len = sizeof(info);
    if (int err = bpf_obj_get_info_by_fd(fd.get(), &info, &len))
      throw_errno(err, "inspect " + pin.string());
    if (info.max_entries != want)
      throw std::runtime_error(fmt::format(
          "{}: the pinned table {} has {} entries, the configuration asks for {}; it keeps "
          "{}, so its size changes only with a fresh data plane (stop the agent with "
          "SIGTERM, which detaches and unpins, then start it again)",
          setting, pin.string(), info.max_entries, want, holds));
  }

  void open_legacy_pin() {
    const fs::path legacy_pin = opts.pin_dir / KVLB_MAP_LEGACY_SOCKETS;
    std::error_code ec;
    if (!fs::exists(legacy_pin, ec)) return;
    legacy_sockets = UniqueFd(bpf_obj_get(legacy_pin.c_str()));
    if (!legacy_sockets) throw_errno(errno, "open " + legacy_pin.string());
    spdlog::info("found {}: sockets balanced by a v1 agent are released through it",
                 legacy_pin.string());
  }

  void load() {
    route_libbpf_logs();
    // On an older kernel: one line naming the missing feature, not a verifier dump.
    static const bool kernel_checked = (require_kernel_features(), true);
    (void)kernel_checked;
    take_libbpf_error();  // nothing from an earlier failure leaks into this one
    std::string pin_root = opts.pin_dir.string();
    LIBBPF_OPTS(bpf_object_open_opts, oo, .pin_root_path = pinned ? pin_root.c_str() : nullptr);
    if (opts.gateway()) {
      load_gateway(pinned ? pin_root.c_str() : nullptr);
      return;
    }
    if (pinned) {
      open_legacy_pin();
      check_socket_table_size();
    }
    skel.reset(kvlb_sock__open_opts(&oo));
    if (!skel) throw_libbpf(errno, "open the socket LB's BPF object");
    if (!pinned) {
      // Private maps: without a pin path libbpf neither reuses nor creates pins.
      bpf_map* m;
      bpf_object__for_each_map(m, skel->obj) bpf_map__set_pin_path(m, nullptr);
    }
    if (int err = bpf_map__set_max_entries(skel->maps.kvlb_sock_v2, settings().max_sockets))
      throw_errno(err, "size the socket table");
    if (int err = bpf_map__set_max_entries(skel->maps.kvlb_resp_v1, settings().max_sockets))
      throw_errno(err, "size the response-end table");
    if (legacy_sockets)
      if (int err = bpf_map__reuse_fd(skel->maps.kvlb_sock_v1, legacy_sockets.get()))
        throw_errno(err, fmt::format("reuse {}", KVLB_MAP_LEGACY_SOCKETS));
    set_rodata();
    // sockops only feeds passive health: with it off, it is not even loaded,
    // and TCP sockets of the cgroup skip five program runs per connection.
    bpf_program__set_autoload(skel->progs.kvlb_sockops, passive_health());
    // The response-end hook reads every packet the cgroup receives: only for
    // keep-alive rebalancing.
    bpf_program__set_autoload(skel->progs.kvlb_response_end, settings().response_ends);
    if (int err = kvlb_sock__load(skel.get())) throw_libbpf(err, "load the socket LB's programs");

    auto& m = skel->maps;
    take_shared_maps(m);

    auto& p = skel->progs;
    hooks.push_back({KVLB_LINK_CONNECT4, p.kvlb_connect4, nullptr, 0, {}});
    hooks.push_back({KVLB_LINK_CONNECT6, p.kvlb_connect6, nullptr, 0, {}});
    hooks.push_back({KVLB_LINK_GETPEERNAME4, p.kvlb_getpeername4, nullptr, 0, {}});
    hooks.push_back({KVLB_LINK_GETPEERNAME6, p.kvlb_getpeername6, nullptr, 0, {}});
    hooks.push_back({KVLB_LINK_SOCK_RELEASE, p.kvlb_sock_release, nullptr, 0, {}});
    if (passive_health()) hooks.push_back({KVLB_LINK_SOCKOPS, p.kvlb_sockops, nullptr, 0, {}});
    if (settings().response_ends)
      hooks.push_back({KVLB_LINK_RESPONSE_END, p.kvlb_response_end, nullptr, 0, {}});
  }

  std::vector<ProgramStats> program_stats() const {
    std::vector<ProgramStats> out;
    {
      bpf_program* p;
      bpf_object__for_each_program(p, obj()) {
        if (bpf_program__fd(p) < 0) continue;  // not loaded (autoload off)
        bpf_prog_info info{};
        uint32_t len = sizeof(info);
        if (int err = bpf_obj_get_info_by_fd(bpf_program__fd(p), &info, &len))
          throw_errno(err, fmt::format("inspect program {}", bpf_program__name(p)));
        out.push_back({bpf_program__name(p), info.verified_insns,
                       info.xlated_prog_len / static_cast<uint32_t>(sizeof(bpf_insn)),
                       info.run_time_ns, info.run_cnt});
      }
    }
    return out;
  }

  // The pinned link of a hook, checked to be attached to our cgroup.
  LinkPtr open_pinned_link(const fs::path& pin, uint64_t want_cg, uint32_t* prog_id,
                           const Hook& h) {
    LinkPtr link(bpf_link__open(pin.c_str()));
    if (!link) throw_errno(errno, "open pinned link " + pin.string());
    bpf_link_info info{};
    uint32_t len = sizeof(info);
    if (int err = bpf_obj_get_info_by_fd(bpf_link__fd(link.get()), &info, &len))
      throw_errno(err, "inspect pinned link " + pin.string());
    if (h.ifindex) {
      if (info.type != BPF_LINK_TYPE_XDP || static_cast<int>(info.xdp.ifindex) != h.ifindex)
        throw std::runtime_error(fmt::format(
            "pinned link {} is not an XDP link on {} (ifindex {}); remove the pin directory "
            "or use a different one",
            pin.string(), h.interface, h.ifindex));
      *prog_id = info.prog_id;
      return link;
    }
    if (info.type != BPF_LINK_TYPE_CGROUP || info.cgroup.cgroup_id != want_cg)
      throw std::runtime_error(
          fmt::format("pinned link {} is attached to another cgroup (id {}, want {} = {}); "
                      "remove the pin directory or use a different one",
                      pin.string(), info.cgroup.cgroup_id, want_cg, opts.cgroup.string()));
    *prog_id = info.prog_id;
    return link;
  }

  // One hook: swap our program into its pinned link, or attach and pin a new one.
  // A descriptor of the program with id `id`, to give a link its program back
  // if the attach fails: taken from `previous` (the data plane this one
  // replaces in this process: a reload) when it has it, else by id, which
  // needs CAP_SYS_ADMIN (a start-up adopting another agent's links; without it
  // that swap cannot be undone, and the log says so).
  static UniqueFd program_fd(uint32_t id, const Impl* previous) {
    if (previous)
      for (const auto& h : previous->hooks) {
        bpf_prog_info info{};
        uint32_t len = sizeof(info);
        int fd = bpf_program__fd(h.prog);
        if (bpf_obj_get_info_by_fd(fd, &info, &len) == 0 && info.id == id)
          return UniqueFd(::fcntl(fd, F_DUPFD_CLOEXEC, 0));
      }
    return UniqueFd(bpf_prog_get_fd_by_id(id));
  }

  AttachStep attach_hook(Hook& h, int cg, uint64_t want_cg, const Impl* previous_dp) {
    const fs::path pin = link_dir() / h.name;
    std::error_code ec;
    if (fs::exists(pin, ec)) {
      uint32_t prog_id = 0;
      LinkPtr link = open_pinned_link(pin, want_cg, &prog_id, h);
      UniqueFd previous = program_fd(prog_id, previous_dp);
      if (!previous)
        spdlog::warn(
            "{}: cannot open its current program (id {}: {}); if this attach fails, "
            "the swap cannot be undone",
            pin.string(), prog_id, std::strerror(errno));
      if (int err = bpf_link__update_program(link.get(), h.prog))
        throw_errno(err, "swap program into " + pin.string());
      h.link = std::move(link);
      spdlog::info("adopted pinned link {} (program swapped in place)", pin.string());
      if (h.ifindex) {
        LIBBPF_OPTS(bpf_xdp_query_opts, q);
        const char* mode = "unknown";
        if (bpf_xdp_query(h.ifindex, 0, &q) == 0)
          mode = q.attach_mode == XDP_ATTACHED_DRV   ? "native"
                 : q.attach_mode == XDP_ATTACHED_SKB ? "generic"
                                                     : "unknown";
        spdlog::info("the gateway stays on {} in {} XDP mode", h.interface, mode);
        attachments.push_back({h.interface, mode});
      }
      return {&h, false, std::move(previous)};
    }
    if (h.ifindex) {
      h.link = attach_xdp(h, pin);
      return {&h, true, {}};
    }
    LinkPtr link(bpf_program__attach_cgroup(h.prog, cg));
    if (!link) throw_errno(errno, fmt::format("attach {} to {}", h.name, opts.cgroup.string()));
    if (int err = bpf_link__pin(link.get(), pin.c_str())) {
      bpf_link__detach(link.get());
      throw_errno(err, "pin link " + pin.string());
    }
    h.link = std::move(link);
    spdlog::info("attached {} to {}", h.name, opts.cgroup.string());
    return {&h, true, {}};
  }

  // The gateway's program on one interface, through a link: native XDP where
  // the driver runs it, generic otherwise (auto); veth gets generic under
  // auto, because a native program on veth can only redirect to a veth whose
  // peer runs XDP too, which a backend's namespace does not.
  // Created with bpf_link_create() (libbpf's attach has no mode flags) and
  // pinned at once; the pin is then opened as a libbpf link.
  LinkPtr attach_xdp(Hook& h, const fs::path& pin) {
    const std::string driver = interface_driver(h.interface);
    std::vector<std::pair<uint32_t, const char*>> tries;
    if (opts.xdp_mode == XdpMode::Native)
      tries = {{XDP_FLAGS_DRV_MODE, "native"}};
    else if (opts.xdp_mode == XdpMode::Generic || driver == "veth")
      tries = {{XDP_FLAGS_SKB_MODE, "generic"}};
    else
      tries = {{XDP_FLAGS_DRV_MODE, "native"}, {XDP_FLAGS_SKB_MODE, "generic"}};
    int err = 0;
    for (auto [flags, mode] : tries) {
      LIBBPF_OPTS(bpf_link_create_opts, lo, .flags = flags);
      UniqueFd fd(bpf_link_create(bpf_program__fd(h.prog), h.ifindex, BPF_XDP, &lo));
      if (!fd) {
        err = errno;
        spdlog::info("XDP {} mode on {} (driver {}): not available: {}", mode, h.interface,
                     driver.empty() ? "unknown" : driver, std::strerror(err));
        continue;
      }
      if (bpf_obj_pin(fd.get(), pin.c_str()) != 0) throw_errno(errno, "pin link " + pin.string());
      LinkPtr link(bpf_link__open(pin.c_str()));
      if (!link) {
        int e = errno;
        ::unlink(pin.c_str());
        throw_errno(e, "open pinned link " + pin.string());
      }
      spdlog::info("attached the gateway to {} in {} XDP mode (driver {})", h.interface, mode,
                   driver.empty() ? "unknown" : driver);
      attachments.push_back({h.interface, mode});
      return link;
    }
    throw_errno(err, fmt::format("attach the gateway to {}", h.interface));
  }

  // Undoes one step of a failed attach: a created link is unpinned and
  // detached; a swapped link runs its previous program again.
  static void undo(AttachStep& s) {
    Hook& h = *s.hook;
    if (!h.link) return;
    if (s.created) {
      bpf_link__unpin(h.link.get());
      bpf_link__detach(h.link.get());
      spdlog::info("rollback: detached {}", h.name);
    } else if (!s.previous) {
      spdlog::error("rollback: {} keeps the new program (its previous one could not be opened)",
                    h.name);
    } else if (bpf_link_update(bpf_link__fd(h.link.get()), s.previous.get(), nullptr) != 0) {
      spdlog::error("rollback: could not give {} its previous program back: {}", h.name,
                    std::strerror(errno));
    } else {
      spdlog::info("rollback: {} runs its previous program again", h.name);
    }
    h.link.reset();
  }

  // Attaches each hook, or swaps the program into the link a previous agent
  // (or this one, before a reload) pinned. All or nothing.
  void attach(const Impl* previous) {
    std::error_code ec;
    fs::create_directories(link_dir(), ec);
    if (ec)
      throw std::runtime_error(
          fmt::format("cannot create {}: {}", link_dir().string(), ec.message()));
    UniqueFd cg;
    uint64_t want_cg = 0;
    if (!opts.gateway()) {
      cg = UniqueFd(::open(opts.cgroup.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
      if (!cg) throw_errno(errno, "open cgroup " + opts.cgroup.string());
      want_cg = cgroup_id(opts.cgroup);
    }

    std::vector<AttachStep> done;
    try {
      for (auto& h : hooks) {
        failpoint("attach:" + h.name);
        done.push_back(attach_hook(h, cg.get(), want_cg, previous));
      }
      failpoint("attach:done");
    } catch (...) {
      for (auto it = done.rbegin(); it != done.rend(); ++it) undo(*it);
      throw;
    }
    attached = true;
    // Past the point of no return: what follows only tidies up.
    if (opts.gateway()) return;
    if (!passive_health()) drop_link(KVLB_LINK_SOCKOPS);
    if (!settings().response_ends) drop_link(KVLB_LINK_RESPONSE_END);
    retire_old_pins();
  }

  bool passive_health() const {
    return settings().select.fail_threshold > 0;
  }

  // Detaches and unpins a link a previous configuration attached and this one
  // does not use. A failure only leaves a harmless program attached: logged.
  void drop_link(const char* name) {
    const fs::path pin = link_dir() / name;
    std::error_code ec;
    if (!fs::exists(pin, ec)) return;
    LinkPtr link(bpf_link__open(pin.c_str()));
    if (!link || bpf_link__detach(link.get()) != 0) {
      spdlog::warn("could not detach {} (not used by this configuration): {}", pin.string(),
                   std::strerror(errno));
      return;
    }
    bpf_link__unpin(link.get());
    spdlog::info("detached {} (not used by this configuration)", name);
  }

  // Maps of an older layout that nothing reads once the programs are swapped:
  // their pins go (the kernel frees them with the last program using them).
  void retire_old_pins() {
    for (const char* name : KVLB_RETIRED_MAPS) {
      std::error_code ec;
      if (fs::remove(opts.pin_dir / name, ec))
        spdlog::info("retired the pin of {} (older map layout)", name);
    }
  }

  void detach_and_unpin() {
    for (auto& h : hooks) {
      if (!h.link) continue;
      bpf_link__unpin(h.link.get());
      bpf_link__detach(h.link.get());
      h.link.reset();
    }
    std::error_code ec;
    fs::remove(link_dir(), ec);
    if (skel || gw) bpf_object__unpin_maps(obj(), nullptr);
    // The v1 socket storage goes too: with the programs detached nothing reads it.
    fs::remove(opts.pin_dir / KVLB_MAP_LEGACY_SOCKETS, ec);
    fs::remove(opts.pin_dir, ec);
    spdlog::info("detached and removed pins under {}", opts.pin_dir.string());
  }

  template <typename V>
  V lookup_array(int fd, uint32_t id, const char* what) const {
    V v{};
    if (bpf_map_lookup_elem(fd, &id, &v) != 0)
      throw_errno(errno, fmt::format("read {} {}", what, id));
    return v;
  }
  template <typename V>
  void update_array(int fd, uint32_t id, const V& v, const char* what) {
    if (bpf_map_update_elem(fd, &id, &v, BPF_ANY) != 0)
      throw_errno(errno, fmt::format("write {} {}", what, id));
  }
};

DataPlane::DataPlane(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
DataPlane::~DataPlane() = default;

std::unique_ptr<DataPlane> DataPlane::open(const DataPlaneOptions& opts) {
  auto dp = load(opts);
  dp->attach(nullptr);
  return dp;
}

std::unique_ptr<DataPlane> DataPlane::load(const DataPlaneOptions& opts) {
  auto impl = std::make_unique<Impl>();
  impl->opts = opts;
  ensure_bpffs_dir(opts.bpffs_root, opts.pin_dir);
  impl->load();
  std::error_code ec;
  impl->adopted = fs::exists(impl->link_dir() / KVLB_LINK_CONNECT4, ec);
  for (const auto& h : impl->hooks)
    if (h.ifindex && fs::exists(impl->link_dir() / h.name, ec)) impl->adopted = true;
  return std::unique_ptr<DataPlane>(new DataPlane(std::move(impl)));
}

std::vector<ProgramStats> DataPlane::verify(const ProgramSettings& settings, bool gateway) {
  Impl impl;
  impl.opts.program = settings;
  if (gateway) impl.opts.gateway_interfaces = {"lo"};  // named, never attached
  impl.pinned = false;
  impl.load();
  return impl.program_stats();
}

void DataPlane::attach(const DataPlane* previous) {
  if (!impl_->attached) impl_->attach(previous ? previous->impl_.get() : nullptr);
}

bool DataPlane::adopted() const {
  return impl_->adopted;
}
const DataPlaneOptions& DataPlane::options() const {
  return impl_->opts;
}
std::vector<ProgramStats> DataPlane::programs() const {
  return impl_->program_stats();
}
void DataPlane::detach_and_unpin() {
  impl_->detach_and_unpin();
}

std::optional<kvlb_service> DataPlane::service(const kvlb_service_key& key) const {
  kvlb_service v{};
  if (bpf_map_lookup_elem(impl_->fd_services, &key, &v) == 0) return v;
  if (errno == ENOENT) return std::nullopt;
  throw_errno(errno, "read service");
}

void DataPlane::put_service(const kvlb_service_key& key, const kvlb_service& svc) {
  const kvlb_service v = impl_->gw ? impl_->gateway_service(key, svc) : svc;
  if (bpf_map_update_elem(impl_->fd_services, &key, &v, BPF_ANY) != 0)
    throw_errno(errno, "write service");
}

void DataPlane::delete_service(const kvlb_service_key& key) {
  if (bpf_map_delete_elem(impl_->fd_services, &key) != 0 && errno != ENOENT)
    throw_errno(errno, "delete service");
  if (impl_->gw) impl_->gateway_forget(key);
}

std::vector<std::pair<kvlb_service_key, kvlb_service>> DataPlane::services() const {
  std::vector<std::pair<kvlb_service_key, kvlb_service>> out;
  kvlb_service_key key{}, next{};
  const void* prev = nullptr;
  while (bpf_map_get_next_key(impl_->fd_services, prev, &next) == 0) {
    key = next;
    prev = &key;
    if (auto v = service(key)) out.emplace_back(key, *v);
  }
  return out;
}

kvlb_backend DataPlane::backend(uint32_t id) const {
  return impl_->lookup_array<kvlb_backend>(impl_->fd_backends, id, "backend");
}
void DataPlane::put_backend(uint32_t id, const kvlb_backend& be) {
  impl_->update_array(impl_->fd_backends, id, be, "backend");
}
kvlb_score DataPlane::score(uint32_t id) const {
  return impl_->lookup_array<kvlb_score>(impl_->fd_scores, id, "score");
}
void DataPlane::put_score(uint32_t id, const kvlb_score& s) {
  impl_->update_array(impl_->fd_scores, id, s, "score");
}
kvlb_counters DataPlane::counters(uint32_t id) const {
  return impl_->lookup_array<kvlb_counters>(impl_->fd_counters, id, "counters");
}
std::array<uint64_t, KVLB_EVENT_COUNT> DataPlane::events() const {
  std::array<uint64_t, KVLB_EVENT_COUNT> out{};
  const int cpus = libbpf_num_possible_cpus();
  if (cpus <= 0) throw_errno(-cpus, "count possible CPUs");
  std::vector<uint64_t> per_cpu(static_cast<size_t>(cpus));
  for (uint32_t e = 0; e < KVLB_EVENT_COUNT; ++e) {
    if (bpf_map_lookup_elem(impl_->fd_events, &e, per_cpu.data()) != 0)
      throw_errno(errno, fmt::format("read event counter {}", e));
    for (uint64_t v : per_cpu) out[e] += v;
  }
  return out;
}

namespace {
void require_gateway(const void* gw) {
  if (!gw) throw std::logic_error("not a gateway data plane");
}
}  // namespace

GatewayStats DataPlane::gateway_stats() const {
  require_gateway(impl_->gw.get());
  GatewayStats out{};
  const int cpus = libbpf_num_possible_cpus();
  if (cpus <= 0) throw_errno(-cpus, "count possible CPUs");
  std::vector<std::array<uint64_t, KVLB_GW_STAT_COUNT>> per_cpu(static_cast<size_t>(cpus));
  uint32_t zero = 0;
  if (bpf_map_lookup_elem(impl_->fd_gw_stats, &zero, per_cpu.data()) != 0)
    throw_errno(errno, "read gateway counters");
  for (const auto& c : per_cpu)
    for (size_t i = 0; i < out.size(); ++i) out[i] += c[i];
  return out;
}

std::vector<std::pair<uint32_t, uint64_t>> DataPlane::gateway_flows() const {
  require_gateway(impl_->gw.get());
  // The last sweep's counts (bpf/lib/gw_maps.bpf.h, kvlb_gw_open): one read of
  // the array, whatever the number of flows.
  const uint32_t sweep = impl_->gw->bss->gw_sweeps;
  std::vector<kvlb_gw_open> counts(KVLB_MAX_BACKENDS);
  std::vector<uint32_t> ids(KVLB_MAX_BACKENDS);
  uint32_t out_batch = 0, n = KVLB_MAX_BACKENDS;
  LIBBPF_OPTS(bpf_map_batch_opts, bo);
  int err = bpf_map_lookup_batch(bpf_map__fd(impl_->gw->maps.kvlb_gw_open), nullptr, &out_batch,
                                 ids.data(), counts.data(), &n, &bo);
  if (err != 0 && errno != ENOENT) throw_errno(errno, "read the open flows per backend");
  std::vector<std::pair<uint32_t, uint64_t>> out;
  for (uint32_t i = 0; i < n; ++i)
    if (sweep != 0 && counts[i].sweep == sweep && counts[i].open > 0)
      out.emplace_back(ids[i], counts[i].open);
  return out;
}

uint64_t DataPlane::gateway_sweep() {
  require_gateway(impl_->gw.get());
  const auto before = gateway_stats()[KVLB_GW_EXPIRED];
  uint8_t pkt[64] = {};
  LIBBPF_OPTS(bpf_test_run_opts, ro, .data_in = pkt, .data_size_in = sizeof(pkt));
  if (int err = bpf_prog_test_run_opts(bpf_program__fd(impl_->gw->progs.kvlb_gw_sweep), &ro))
    throw_errno(err, "run the flow sweep");
  return gateway_stats()[KVLB_GW_EXPIRED] - before;
}

std::vector<kvlb_flow_event> DataPlane::take_flow_events() {
  require_gateway(impl_->gw.get());
  std::vector<kvlb_flow_event> out;
  if (!impl_->flow_events) {
    auto take = [](void* ctx, void* data, size_t size) -> int {
      if (size == sizeof(kvlb_flow_event)) {
        kvlb_flow_event e;
        std::memcpy(&e, data, sizeof(e));
        static_cast<std::vector<kvlb_flow_event>*>(ctx)->push_back(e);
      }
      return 0;
    };
    impl_->flow_events.reset(ring_buffer__new(bpf_map__fd(impl_->gw->maps.kvlb_flowev_v1), take,
                                              &impl_->flow_event_sink, nullptr));
    if (!impl_->flow_events) throw_errno(errno, "open the flow-event ring");
  }
  impl_->flow_event_sink.clear();
  if (int n = ring_buffer__consume(impl_->flow_events.get()); n < 0)
    throw_errno(-n, "read the flow-event ring");
  out.swap(impl_->flow_event_sink);
  return out;
}

int DataPlane::apply_flow_sync(const kvlb_flow_sync& s) {
  require_gateway(impl_->gw.get());
  kvlb_flow_sync in = s;
  LIBBPF_OPTS(bpf_test_run_opts, ro, .data_in = &in, .data_size_in = sizeof(in));
  if (int err = bpf_prog_test_run_opts(bpf_program__fd(impl_->gw->progs.kvlb_gw_sync), &ro))
    throw_errno(err, "run the flow-sync program");
  return static_cast<int>(ro.retval);
}

const std::vector<GatewayAttachment>& DataPlane::gateway_attachments() const {
  return impl_->attachments;
}

void DataPlane::reset_counters(uint32_t id) {
  impl_->update_array(impl_->fd_counters, id, kvlb_counters{}, "counters");
}

}  // namespace kvlb
