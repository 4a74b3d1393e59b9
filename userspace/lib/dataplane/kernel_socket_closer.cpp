#include "dataplane/kernel_socket_closer.h"

#include <bpf/bpf.h>
#include <bpf/btf.h>
#include <bpf/libbpf.h>
#include <fcntl.h>
#include <sched.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <exception>
#include <fstream>
#include <set>
#include <stdexcept>
#include <string_view>
#include <system_error>
#include <thread>
#include <utility>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "common/unique_fd.h"
#include "dataplane/bpf_handles.h"
#include "dataplane/libbpf_log.h"

#include "rebalance.skel.h"

namespace kvlb {
namespace fs = std::filesystem;
using bpf::LinkPtr;
using bpf::SkelPtr;

namespace {

// The maps the iterator reads or writes; the object's other maps (maps.bpf.h
// defines every shared map) are never created by it.
constexpr std::string_view kUsedMaps[] = {KVLB_MAP_SOCKETS, KVLB_MAP_RESPONSE_ENDS, KVLB_MAP_SHED};

bool used(const bpf_map* m) {
  if (bpf_map__is_internal(m)) return true;  // the object's own globals (.bss)
  for (auto name : kUsedMaps)
    if (name == bpf_map__name(m)) return true;
  return false;
}

}  // namespace

std::string socket_closer_unsupported() {
  std::unique_ptr<btf, void (*)(btf*)> vmlinux(btf__load_vmlinux_btf(), btf__free);
  if (!vmlinux) return "the kernel's BTF (/sys/kernel/btf/vmlinux) cannot be read";
  if (btf__find_by_name_kind(vmlinux.get(), "bpf_sock_destroy", BTF_KIND_FUNC) < 0)
    return "this kernel has no bpf_sock_destroy() (Linux 6.5 and later)";
  return "";
}

std::vector<std::string> cgroup_network_namespaces(const fs::path& cgroup,
                                                   std::vector<std::string>* errors, size_t max) {
  std::vector<std::string> out;
  std::set<std::pair<dev_t, ino_t>> seen;
  bool hidden = false, denied = false;
  std::error_code ec;
  auto visit = [&](const fs::path& dir) {
    std::ifstream procs(dir / "cgroup.procs");
    std::string pid;
    // Bounded: at most 65,536 processes read per cgroup directory.
    for (int n = 0; n < 65536 && out.size() < max && std::getline(procs, pid); ++n) {
      if (pid == "0") {  // a process outside our pid namespace
        if (!hidden && errors)
          errors->push_back(
              fmt::format("{}: processes outside the agent's pid namespace (run it with hostPID)",
                          dir.string()));
        hidden = true;
        continue;
      }
      std::string path = "/proc/" + pid + "/ns/net";
      struct stat st {};
      if (::stat(path.c_str(), &st) != 0) {
        if ((errno == EACCES || errno == EPERM) && !denied && errors)
          errors->push_back(fmt::format("{}: {} (CAP_SYS_PTRACE)", path, std::strerror(errno)));
        denied = denied || errno == EACCES || errno == EPERM;
        continue;  // else: exited meanwhile
      }
      if (seen.insert({st.st_dev, st.st_ino}).second) out.push_back(path);
    }
  };
  visit(cgroup);
  for (fs::recursive_directory_iterator
           it(cgroup, fs::directory_options::skip_permission_denied, ec),
       end;
       !ec && it != end && out.size() < max; it.increment(ec))
    if (it->is_directory(ec)) visit(it->path());
  return out;
}

struct KernelSocketCloser::Impl {
  SkelPtr<kvlb_rebalance, kvlb_rebalance__destroy> skel;
  LinkPtr iter;
  fs::path cgroup;
  int fd_shed = -1;
  std::vector<uint32_t> shed_ids;  // ids marked last time, to clear

  // Opens the object; with a pin directory, the shared maps are the pinned ones
  // (their definitions, sizes included, taken from the pins) and the shed map
  // is created and pinned there on first use.
  void load(const fs::path* pin_dir) {
    route_libbpf_logs();
    take_libbpf_error();
    skel.reset(kvlb_rebalance__open());
    if (!skel) throw_libbpf(errno, "open the rebalancing iterator's BPF object");
    bpf_map* m;
    bpf_object__for_each_map(m, skel->obj) {
      if (!used(m)) {
        bpf_map__set_autocreate(m, false);
        continue;
      }
      if (bpf_map__is_internal(m)) continue;
      bpf_map__set_pin_path(m, nullptr);
      if (!pin_dir) continue;
      const fs::path pin = *pin_dir / bpf_map__name(m);
      std::error_code ec;
      if (fs::exists(pin, ec)) {
        UniqueFd fd(bpf_obj_get(pin.c_str()));
        if (!fd) throw_libbpf(errno, "open " + pin.string());
        if (int err = bpf_map__reuse_fd(m, fd.get())) throw_libbpf(err, "reuse " + pin.string());
      } else if (int err = bpf_map__set_pin_path(m, pin.c_str())) {
        throw_libbpf(err, "pin path " + pin.string());
      }
    }
    if (int err = kvlb_rebalance__load(skel.get()))
      throw_libbpf(err, "load the rebalancing iterator (bpf/rebalance.bpf.c)");
    fd_shed = bpf_map__fd(skel->maps.kvlb_shed_v1);
  }

  // A pinned shed map outlives the agent: marks a previous agent left must not
  // keep closing connections to backends nobody sheds any more.
  void clear_shed() {
    const uint32_t keep = KVLB_SHED_NONE;
    for (uint32_t id = 0; id < KVLB_MAX_BACKENDS; ++id)
      if (bpf_map_update_elem(fd_shed, &id, &keep, BPF_ANY) != 0)
        throw_libbpf(errno, "clear the shed map");
  }
};

KernelSocketCloser::KernelSocketCloser(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
KernelSocketCloser::~KernelSocketCloser() = default;

std::unique_ptr<KernelSocketCloser> KernelSocketCloser::open(const fs::path& pin_dir,
                                                             const fs::path& cgroup) {
  if (auto why = socket_closer_unsupported(); !why.empty()) throw std::runtime_error(why);
  auto impl = std::make_unique<Impl>();
  impl->cgroup = cgroup;
  impl->load(&pin_dir);
  impl->clear_shed();
  impl->iter.reset(bpf_program__attach_iter(impl->skel->progs.kvlb_rebalance, nullptr));
  if (!impl->iter) throw_libbpf(errno, "create the TCP socket iterator");
  return std::unique_ptr<KernelSocketCloser>(new KernelSocketCloser(std::move(impl)));
}

ProgramStats KernelSocketCloser::verify() {
  if (auto why = socket_closer_unsupported(); !why.empty()) throw std::runtime_error(why);
  Impl impl;
  impl.load(nullptr);
  bpf_prog_info info{};
  uint32_t len = sizeof(info);
  if (int err =
          bpf_obj_get_info_by_fd(bpf_program__fd(impl.skel->progs.kvlb_rebalance), &info, &len))
    throw_libbpf(err, "inspect kvlb_rebalance");
  return {"kvlb_rebalance", info.verified_insns,
          info.xlated_prog_len / static_cast<uint32_t>(sizeof(bpf_insn)), info.run_time_ns,
          info.run_cnt};
}

void KernelSocketCloser::set_shed(const std::vector<std::pair<uint32_t, uint32_t>>& shed) {
  std::set<uint32_t> now;
  for (auto [id, reason] : shed) {
    if (id == KVLB_BACKEND_NONE || id >= KVLB_MAX_BACKENDS) continue;
    now.insert(id);  // before the write: a failure part-way still clears it next time
    impl_->shed_ids.push_back(id);
    if (bpf_map_update_elem(impl_->fd_shed, &id, &reason, BPF_ANY) != 0)
      throw_libbpf(errno, fmt::format("mark backend {} shed", id));
  }
  const uint32_t keep = KVLB_SHED_NONE;
  for (uint32_t id : impl_->shed_ids)
    if (!now.count(id) && bpf_map_update_elem(impl_->fd_shed, &id, &keep, BPF_ANY) != 0)
      throw_libbpf(errno, fmt::format("unmark backend {}", id));
  impl_->shed_ids.assign(now.begin(), now.end());
}

CloseRound KernelSocketCloser::close_idle(uint64_t idle_ns, uint32_t budget) {
  CloseRound r;
  auto* bss = impl_->skel->bss;
  bss->idle_ns = idle_ns;
  bss->budget = budget;
  std::memset(bss->verdicts, 0, sizeof(bss->verdicts));
  std::memset(bss->closed_by_reason, 0, sizeof(bss->closed_by_reason));
  const auto namespaces = cgroup_network_namespaces(impl_->cgroup, &r.errors);
  const int link_fd = bpf_link__fd(impl_->iter.get());
  // setns() changes the calling thread's namespace only: a thread of its own,
  // which ends with the round, so no other thread ever runs in a client's.
  std::exception_ptr failed;
  std::thread worker([&] {
    try {
      walk_namespaces(namespaces, link_fd, r);
    } catch (...) {
      failed = std::current_exception();
    }
  });
  worker.join();
  if (failed) std::rethrow_exception(failed);
  for (size_t i = 0; i < r.verdicts.size(); ++i) r.verdicts[i] = bss->verdicts[i];
  for (size_t i = 0; i < r.closed.size(); ++i) r.closed[i] = bss->closed_by_reason[i];
  return r;
}

void KernelSocketCloser::walk_namespaces(const std::vector<std::string>& namespaces, int link_fd,
                                         CloseRound& r) {
  {
    for (const auto& path : namespaces) {
      UniqueFd ns(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
      if (!ns) {
        if (errno != ENOENT && errno != ESRCH)
          r.errors.push_back(fmt::format("open {}: {}", path, std::strerror(errno)));
        continue;
      }
      // The thread's own namespace (clients on the host, as under the systemd
      // unit) needs no setns(), and so no CAP_SYS_ADMIN.
      struct stat want {
      }, here{};
      const bool same = ::fstat(ns.get(), &want) == 0 &&
                        ::stat("/proc/thread-self/ns/net", &here) == 0 &&
                        want.st_dev == here.st_dev && want.st_ino == here.st_ino;
      if (!same && ::setns(ns.get(), CLONE_NEWNET) != 0) {
        r.errors.push_back(fmt::format("enter {}: {}", path, std::strerror(errno)));
        continue;
      }
      UniqueFd it(bpf_iter_create(link_fd));
      if (!it) {
        r.errors.push_back(fmt::format("iterate in {}: {}", path, std::strerror(errno)));
        continue;
      }
      // The program prints nothing: a read returns 0 at the end, or EAGAIN
      // when the kernel pauses a long walk (every million objects) to resume.
      char buf[64];
      ssize_t n;
      while ((n = ::read(it.get(), buf, sizeof(buf))) > 0 || (n < 0 && errno == EAGAIN)) {
      }
      if (n < 0) r.errors.push_back(fmt::format("read in {}: {}", path, std::strerror(errno)));
      ++r.namespaces;
    }
  }
}

}  // namespace kvlb
