#include "dataplane/kernel_features.h"

#include <bpf/bpf.h>
#include <linux/bpf.h>
#include <sys/utsname.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>

#include <fmt/format.h>

#include "common/unique_fd.h"

namespace kvlb {

const std::vector<KernelFeature>& socket_lb_features() {
  // clang-format off
  static const std::vector<KernelFeature> kFeatures = {
    {"cgroup connect4/connect6 hooks", "4.17", "the socket load balancer",
     BPF_PROG_TYPE_CGROUP_SOCK_ADDR, BPF_CGROUP_INET4_CONNECT, -1},
    {"sockops programs", "4.13", "passive health (connects that reach ESTABLISHED)",
     BPF_PROG_TYPE_SOCK_OPS, 0, -1},
    {"bpf_get_netns_cookie() in cgroup sock_addr programs", "5.7", "host_network_only",
     BPF_PROG_TYPE_CGROUP_SOCK_ADDR, BPF_CGROUP_INET4_CONNECT, BPF_FUNC_get_netns_cookie},
    {"cgroup getpeername4/getpeername6 hooks", "5.8",
     "reporting the VIP, not the backend, as a balanced socket's peer",
     BPF_PROG_TYPE_CGROUP_SOCK_ADDR, BPF_CGROUP_INET4_GETPEERNAME, -1},
    {"cgroup sock_release hook", "5.9", "in-flight counts (a balanced socket closes)",
     BPF_PROG_TYPE_CGROUP_SOCK, BPF_CGROUP_INET_SOCK_RELEASE, -1},
    {"bpf_get_socket_cookie() in cgroup sock programs", "5.9", "the socket table",
     BPF_PROG_TYPE_CGROUP_SOCK, BPF_CGROUP_INET_SOCK_RELEASE, BPF_FUNC_get_socket_cookie},
    {"bpf_ktime_get_coarse_ns() helper", "5.11", "score ages and passive-health cool-downs",
     BPF_PROG_TYPE_CGROUP_SOCK_ADDR, BPF_CGROUP_INET4_CONNECT, BPF_FUNC_ktime_get_coarse_ns},
    {"bpf_loop() helper", "5.17", "comparing a service's candidates",
     BPF_PROG_TYPE_CGROUP_SOCK_ADDR, BPF_CGROUP_INET4_CONNECT, BPF_FUNC_loop},
    {"bpf_set_retval() in cgroup sock_addr programs", "5.18",
     "refusing connect() to a VIP with no eligible backend with an errno",
     BPF_PROG_TYPE_CGROUP_SOCK_ADDR, BPF_CGROUP_INET4_CONNECT, BPF_FUNC_set_retval},
  };
  // clang-format on
  return kFeatures;
}

std::string minimum_kernel() {
  std::string newest = "0.0";
  auto key = [](const std::string& v) {
    unsigned major = 0, minor = 0;
    std::sscanf(v.c_str(), "%u.%u", &major, &minor);
    return major * 1000 + minor;
  };
  for (const auto& f : socket_lb_features())
    if (key(f.since) > key(newest)) newest = f.since;
  return newest;
}

bool probe_kernel_feature(const KernelFeature& f) {
  // r0 = 1; exit. With a helper: call it first (its arguments may be wrong: the
  // verifier then refuses the program for a reason other than an unknown helper,
  // which still proves the helper exists).
  std::vector<bpf_insn> insns;
  if (f.helper >= 0) {
    insns.push_back({BPF_JMP | BPF_CALL, 0, 0, 0, f.helper});
  }
  insns.push_back({BPF_ALU64 | BPF_MOV | BPF_K, BPF_REG_0, 0, 0, 1});
  insns.push_back({BPF_JMP | BPF_EXIT, 0, 0, 0, 0});
  char log[4096] = {};
  LIBBPF_OPTS(bpf_prog_load_opts, opts,
              .expected_attach_type = static_cast<bpf_attach_type>(f.attach_type), .log_level = 1,
              .log_size = sizeof(log), .log_buf = log);
  UniqueFd fd(bpf_prog_load(static_cast<bpf_prog_type>(f.prog_type), nullptr, "GPL", insns.data(),
                            insns.size(), &opts));
  if (fd) return true;
  if (errno == EPERM)
    throw std::runtime_error(
        "probing the kernel's BPF features: permission denied (the agent needs CAP_BPF, "
        "CAP_NET_ADMIN and CAP_PERFMON, or root)");
  if (f.helper < 0) return false;  // the type or attach type is unknown
  // Refused: because of the helper itself, or only because of its arguments?
  return std::strstr(log, "unknown func") == nullptr &&
         std::strstr(log, "invalid func") == nullptr && std::strlen(log) > 0;
}

std::vector<KernelFeature> missing_kernel_features(const FeatureProbe& probe) {
  std::vector<KernelFeature> out;
  for (const auto& f : socket_lb_features())
    if (!probe(f)) out.push_back(f);
  return out;
}

std::string kernel_release() {
  utsname u{};
  if (::uname(&u) != 0) return "unknown";
  return u.release;
}

void require_kernel_features(const FeatureProbe& probe) {
  auto missing = missing_kernel_features(probe);
  if (missing.empty()) return;
  const auto& f = missing.front();
  std::string more =
      missing.size() > 1 ? fmt::format(" (and {} more newer features)", missing.size() - 1) : "";
  throw std::runtime_error(fmt::format(
      "this kernel ({}) lacks {} (Linux {}, used for {}){}: kvlb needs Linux {} or newer",
      kernel_release(), f.name, f.since, f.used_for, more, minimum_kernel()));
}

}  // namespace kvlb
