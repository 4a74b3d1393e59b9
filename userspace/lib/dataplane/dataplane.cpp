#include "dataplane.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>

#include <cerrno>
#include <cstring>
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

#include "sock.skel.h"

namespace kvlb {
namespace fs = std::filesystem;
using bpf::LinkPtr;
using bpf::SkelPtr;

namespace {

[[noreturn]] void throw_errno(int err, const std::string& what) {
  throw std::system_error(err < 0 ? -err : err, std::generic_category(), what);
}

// A libbpf call failed: the error, with what libbpf itself reported (the
// verifier's summary when the kernel refused a program), on one line.
[[noreturn]] void throw_libbpf(int err, const std::string& what) {
  std::string detail = take_libbpf_error();
  throw_errno(err, detail.empty() ? what : fmt::format("{} ({})", what, detail));
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
};

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
  SkelPtr<kvlb_sock, kvlb_sock__destroy> skel;  // every socket hook, one object
  std::vector<Hook> hooks;
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

  // A pinned socket table keeps its size: say so plainly instead of libbpf's
  // "parameter mismatch" (resizing would drop the state of every open socket).
  void check_socket_table_size() {
    const fs::path pin = opts.pin_dir / KVLB_MAP_SOCKETS;
    std::error_code ec;
    if (!fs::exists(pin, ec)) return;
    UniqueFd fd(bpf_obj_get(pin.c_str()));
    if (!fd) throw_errno(errno, "open " + pin.string());
    bpf_map_info info{};
    uint32_t len = sizeof(info);
    if (int err = bpf_obj_get_info_by_fd(fd.get(), &info, &len))
      throw_errno(err, "inspect " + pin.string());
    if (info.max_entries != settings().max_sockets)
      throw std::runtime_error(fmt::format(
          "max_sockets: the pinned socket table {} has {} entries, the configuration asks "
          "for {}; it keeps the state of every open balanced socket, so its size changes "
          "only with a fresh data plane (stop the agent with SIGTERM, which detaches and "
          "unpins, then start it again)",
          pin.string(), info.max_entries, settings().max_sockets));
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
    if (legacy_sockets)
      if (int err = bpf_map__reuse_fd(skel->maps.kvlb_sock_v1, legacy_sockets.get()))
        throw_errno(err, fmt::format("reuse {}", KVLB_MAP_LEGACY_SOCKETS));
    set_rodata();
    // sockops only feeds passive health: with it off, it is not even loaded,
    // and TCP sockets of the cgroup skip five program runs per connection.
    bpf_program__set_autoload(skel->progs.kvlb_sockops, passive_health());
    if (int err = kvlb_sock__load(skel.get())) throw_libbpf(err, "load the socket LB's programs");

    auto& m = skel->maps;
    fd_services = bpf_map__fd(m.kvlb_svc_v2);
    fd_backends = bpf_map__fd(m.kvlb_be_v1);
    fd_scores = bpf_map__fd(m.kvlb_score_v1);
    fd_counters = bpf_map__fd(m.kvlb_ctr_v1);
    fd_events = bpf_map__fd(m.kvlb_events_v1);

    auto& p = skel->progs;
    hooks.push_back({KVLB_LINK_CONNECT4, p.kvlb_connect4, nullptr});
    hooks.push_back({KVLB_LINK_CONNECT6, p.kvlb_connect6, nullptr});
    hooks.push_back({KVLB_LINK_GETPEERNAME4, p.kvlb_getpeername4, nullptr});
    hooks.push_back({KVLB_LINK_GETPEERNAME6, p.kvlb_getpeername6, nullptr});
    hooks.push_back({KVLB_LINK_SOCK_RELEASE, p.kvlb_sock_release, nullptr});
    if (passive_health()) hooks.push_back({KVLB_LINK_SOCKOPS, p.kvlb_sockops, nullptr});
  }

  std::vector<ProgramStats> program_stats() const {
    std::vector<ProgramStats> out;
    {
      bpf_program* p;
      bpf_object__for_each_program(p, skel->obj) {
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
  LinkPtr open_pinned_link(const fs::path& pin, uint64_t want_cg, uint32_t* prog_id) {
    LinkPtr link(bpf_link__open(pin.c_str()));
    if (!link) throw_errno(errno, "open pinned link " + pin.string());
    bpf_link_info info{};
    uint32_t len = sizeof(info);
    if (int err = bpf_obj_get_info_by_fd(bpf_link__fd(link.get()), &info, &len))
      throw_errno(err, "inspect pinned link " + pin.string());
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
      LinkPtr link = open_pinned_link(pin, want_cg, &prog_id);
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
      return {&h, false, std::move(previous)};
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
    UniqueFd cg(::open(opts.cgroup.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!cg) throw_errno(errno, "open cgroup " + opts.cgroup.string());
    const uint64_t want_cg = cgroup_id(opts.cgroup);

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
    if (!passive_health()) drop_link(KVLB_LINK_SOCKOPS);
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
    if (skel) bpf_object__unpin_maps(skel->obj, nullptr);
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
  return std::unique_ptr<DataPlane>(new DataPlane(std::move(impl)));
}

std::vector<ProgramStats> DataPlane::verify(const ProgramSettings& settings) {
  Impl impl;
  impl.opts.program = settings;
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
  if (bpf_map_update_elem(impl_->fd_services, &key, &svc, BPF_ANY) != 0)
    throw_errno(errno, "write service");
}

void DataPlane::delete_service(const kvlb_service_key& key) {
  if (bpf_map_delete_elem(impl_->fd_services, &key) != 0 && errno != ENOENT)
    throw_errno(errno, "delete service");
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

void DataPlane::reset_counters(uint32_t id) {
  impl_->update_array(impl_->fd_counters, id, kvlb_counters{}, "counters");
}

}  // namespace kvlb
