// kvlb-bpf-check: does kvlb's data plane load on this kernel, and with what margin?
//
//   1. Probes the kernel features the programs need (kernel_features.h).
//   2. Loads every BPF program through the agent's own load path
//      (DataPlane::verify: private maps, nothing pinned or attached), once with
//      the default settings and once with every optional branch switched on, and
//      reports the instructions the verifier processed per program (the larger
//      of the two), against the kernel's 1,000,000 limit and, with --budget,
//      against the budget file: a program over its budget fails the check.
//   3. With --smoke: in a network namespace and a cgroup of its own, attaches the
//      socket-LB programs (DataPlane::open, as the agent does, with a private
//      pin directory) and balances one real IPv4 and one IPv6 connection to a
//      VIP: it must reach the backend, report the VIP as its peer, and leave the
//      backend's in-flight count at 1 while open and 0 once closed. Everything it
//      created is removed on success, on failure and on SIGINT/SIGTERM.
//   4. With --bench N (and --smoke): N more IPv4 connections to the VIP with the
//      kernel's BPF statistics on, and each program's mean run time: a
//      same-kernel comparison of two builds (the kernel matrix runs old and new
//      objects in the same VM).
//
// The kernel matrix (scripts/kernel-matrix) runs this inside each kernel it boots.
#include <arpa/inet.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sched.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <bpf/bpf.h>

#include <algorithm>
#include <cstring>
#include <fstream>
#include <map>
#include <random>
#include <sstream>

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "common/endpoint.h"
#include "common/fs_mounts.h"
#include "common/logging.h"
#include "common/unique_fd.h"
#include "dataplane/dataplane.h"
#include "dataplane/kernel_features.h"
#include "dataplane/kernel_socket_closer.h"

using namespace kvlb;
namespace fs = std::filesystem;

namespace {

constexpr uint32_t kVerifierLimit = 1'000'000;

// Program name -> budget, from "name budget" lines ('#' starts a comment).
std::map<std::string, uint32_t> read_budget(const fs::path& file) {
  std::ifstream in(file);
  if (!in) throw std::runtime_error("cannot read " + file.string());
  std::map<std::string, uint32_t> out;
  std::string line;
  for (int n = 1; std::getline(in, line); ++n) {
    if (auto hash = line.find('#'); hash != std::string::npos) line.resize(hash);
    std::istringstream fields(line);
    std::string name;
    long long budget = -1;
    if (!(fields >> name)) continue;
    if (!(fields >> budget) || budget <= 0 || budget > kVerifierLimit)
      throw std::runtime_error(
          fmt::format("{}:{}: want '<program> <budget, 1..{}>'", file.string(), n, kVerifierLimit));
    out[name] = static_cast<uint32_t>(budget);
  }
  return out;
}

// Every optional branch of the programs on: bypass mark, host-namespace only,
// passive health (the defaults already have it).
ProgramSettings all_options_on() {
  ProgramSettings s;
  s.bypass_mark = 1;
  s.host_netns_cookie = 1;
  s.select.fail_threshold = 3;
  s.response_ends = true;  // keep-alive rebalancing's response-end hook
  // The gateway translates both families: every path of its program is live.
  s.gateway.snat4 = htonl(0xc6336401);  // 198.51.100.1
  s.gateway.snat6 = {htonl(0x20010db8), 0, 0, htonl(1)};
  return s;
}

// Per program, the most instructions any of the settings needed.
std::map<std::string, ProgramStats> verify_all() {
  std::map<std::string, ProgramStats> worst;
  for (const auto& settings : {ProgramSettings{}, all_options_on()})
    for (bool gateway : {false, true})
      for (auto& p : DataPlane::verify(settings, gateway)) {
        auto& w = worst[p.name];
        if (p.verified_insns >= w.verified_insns) w = p;
      }
  // Keep-alive rebalancing's iterator: its own object, on kernels that have
  // bpf_sock_destroy() (the caller reports the others as unsupported).
  if (socket_closer_unsupported().empty()) worst["kvlb_rebalance"] = KernelSocketCloser::verify();
  return worst;
}

// ---- smoke: one real connection per family through the attached programs ----

void lo_up() {
  UniqueFd s(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  ifreq ifr{};
  std::strncpy(ifr.ifr_name, "lo", IFNAMSIZ - 1);
  if (!s || ::ioctl(s.get(), SIOCGIFFLAGS, &ifr) != 0)
    throw std::runtime_error(fmt::format("read lo flags: {}", std::strerror(errno)));
  ifr.ifr_flags = static_cast<short>(ifr.ifr_flags | IFF_UP);
  if (::ioctl(s.get(), SIOCSIFFLAGS, &ifr) != 0)
    throw std::runtime_error(fmt::format("bring lo up: {}", std::strerror(errno)));
}

sockaddr_storage sockaddr_of(const Endpoint& ep, socklen_t* len) {
  sockaddr_storage ss{};
  if (ep.family == KVLB_AF_INET) {
    auto* a = reinterpret_cast<sockaddr_in*>(&ss);
    a->sin_family = AF_INET;
    a->sin_port = htons(ep.port);
    a->sin_addr.s_addr = ep.addr.words[0];
    *len = sizeof(sockaddr_in);
  } else {
    auto* a = reinterpret_cast<sockaddr_in6*>(&ss);
    a->sin6_family = AF_INET6;
    a->sin6_port = htons(ep.port);
    std::memcpy(&a->sin6_addr, ep.addr.words, 16);
    *len = sizeof(sockaddr_in6);
  }
  return ss;
}

Endpoint endpoint_of(const sockaddr_storage& ss) {
  Endpoint e;
  if (ss.ss_family == AF_INET) {
    const auto* a = reinterpret_cast<const sockaddr_in*>(&ss);
    e.family = KVLB_AF_INET;
    e.addr.words[0] = a->sin_addr.s_addr;
    e.port = ntohs(a->sin_port);
  } else {
    const auto* a = reinterpret_cast<const sockaddr_in6*>(&ss);
    e.family = KVLB_AF_INET6;
    std::memcpy(e.addr.words, &a->sin6_addr, 16);
    e.port = ntohs(a->sin6_port);
  }
  return e;
}

// A listening socket on the loopback address of `family`, port chosen by the kernel.
UniqueFd listen_on(const Endpoint& lo, Endpoint* bound) {
  UniqueFd s(
      ::socket(lo.family == KVLB_AF_INET ? AF_INET : AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0));
  socklen_t len = 0;
  auto sa = sockaddr_of(lo, &len);
  if (!s || ::bind(s.get(), reinterpret_cast<sockaddr*>(&sa), len) != 0 ||
      ::listen(s.get(), 4) != 0)
    throw std::runtime_error(fmt::format("listen on {}: {}", lo.to_string(), std::strerror(errno)));
  sockaddr_storage got{};
  len = sizeof(got);
  ::getsockname(s.get(), reinterpret_cast<sockaddr*>(&got), &len);
  *bound = endpoint_of(got);
  return s;
}

std::string own_cgroup() {
  std::ifstream in("/proc/self/cgroup");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("0::", 0) == 0) return line.substr(3);
  throw std::runtime_error("no cgroup v2 entry in /proc/self/cgroup");
}

void move_self_to(const fs::path& cgroup) {
  std::ofstream procs(cgroup / "cgroup.procs");
  procs << ::getpid() << std::flush;
  if (!procs) throw std::runtime_error("cannot move into cgroup " + cgroup.string());
}

// Everything the smoke test creates, removed in reverse order by the destructor.
struct SmokeScope {
  fs::path cgroup, home_cgroup, pin_dir;
  std::unique_ptr<DataPlane> dp;
  ~SmokeScope() {
    std::error_code ec;
    if (!home_cgroup.empty()) {
      try {
        move_self_to(home_cgroup);
      } catch (const std::exception& e) {
        spdlog::error("{}", e.what());
      }
    }
    if (dp) dp->detach_and_unpin();
    if (!cgroup.empty()) fs::remove(cgroup, ec);
    if (!pin_dir.empty()) fs::remove_all(pin_dir, ec);
  }
};

// One connection to `vip` from inside the cgroup, balanced to `backend` (id 1).
// Returns the backend's listening socket (the service stays in the maps).
UniqueFd balance_one(DataPlane& dp, const Endpoint& vip, const Endpoint& loopback, uint32_t id) {
  Endpoint backend;
  UniqueFd ls = listen_on(loopback, &backend);

  kvlb_backend be{};
  be.addr = backend.addr;
  be.port = htons(backend.port);
  be.family = static_cast<uint8_t>(backend.family);
  dp.put_backend(id, be);
  dp.reset_counters(id);
  kvlb_score sc{};
  sc.state = KVLB_STATE_ACTIVE;
  sc.weight = 100;
  sc.updated_ns = monotonic_ns();
  dp.put_score(id, sc);
  kvlb_service_key key{};
  key.vip = vip.addr;
  key.port = htons(vip.port);
  key.proto = IPPROTO_TCP;
  key.family = static_cast<uint8_t>(vip.family);
  kvlb_service svc{};
  svc.id = id;
  svc.backend_count = 1;
  svc.policy = KVLB_POLICY_P2C_QUEUE_KV;
  svc.choices = 2;
  svc.slots[0] = id;
  dp.put_service(key, svc);

  UniqueFd c(
      ::socket(vip.family == KVLB_AF_INET ? AF_INET : AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0));
  timeval tv{5, 0};
  ::setsockopt(c.get(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
  socklen_t len = 0;
  auto sa = sockaddr_of(vip, &len);
  if (::connect(c.get(), reinterpret_cast<sockaddr*>(&sa), len) != 0)
    throw std::runtime_error(
        fmt::format("connect to VIP {}: {}", vip.to_string(), std::strerror(errno)));
  UniqueFd accepted(::accept4(ls.get(), nullptr, nullptr, SOCK_CLOEXEC));
  if (!accepted) throw std::runtime_error(fmt::format("accept: {}", std::strerror(errno)));
  sockaddr_storage peer{};
  len = sizeof(peer);
  ::getpeername(c.get(), reinterpret_cast<sockaddr*>(&peer), &len);
  if (!(endpoint_of(peer) == vip))
    throw std::runtime_error(fmt::format("getpeername reports {}, want the VIP {}",
                                         endpoint_of(peer).to_string(), vip.to_string()));
  auto open = dp.counters(id);
  if (open.picks != 1 || open.inflight != 1)
    throw std::runtime_error(
        fmt::format("while open: picks {} in flight {}, want 1 and 1", open.picks, open.inflight));
  c.reset();  // close: sock_release runs now
  auto closed = dp.counters(id);
  if (closed.inflight != 0)
    throw std::runtime_error(fmt::format("after close: in flight {}, want 0", closed.inflight));
  fmt::print("smoke: connect to {} reached {}, peer reported as the VIP, in flight 1 -> 0: ok\n",
             vip.to_string(), backend.to_string());
  return ls;
}

// N connect()+close() to `vip` (balanced to a listener on loopback), with BPF
// run-time statistics on; prints ns per run of every program that ran.
void bench(DataPlane& dp, const Endpoint& vip, int listener, int n) {
  UniqueFd stats(bpf_enable_stats(BPF_STATS_RUN_TIME));
  if (!stats) throw std::runtime_error(fmt::format("bpf_enable_stats: {}", std::strerror(errno)));
  auto before = dp.programs();
  socklen_t len = 0;
  auto sa = sockaddr_of(vip, &len);
  for (int i = 0; i < n; ++i) {
    UniqueFd c(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    linger lg{1, 0};  // RST on close: no TIME_WAIT piling up
    ::setsockopt(c.get(), SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
    if (::connect(c.get(), reinterpret_cast<sockaddr*>(&sa), len) != 0)
      throw std::runtime_error(fmt::format("bench connect: {}", std::strerror(errno)));
    UniqueFd accepted(::accept4(listener, nullptr, nullptr, SOCK_CLOEXEC));
  }
  auto after = dp.programs();
  for (size_t i = 0; i < after.size() && i < before.size(); ++i) {
    uint64_t runs = after[i].run_cnt - before[i].run_cnt;
    if (!runs) continue;
    fmt::print("bench {:<18} {:>8.0f} ns/run over {} runs\n", after[i].name,
               static_cast<double>(after[i].run_time_ns - before[i].run_time_ns) / runs, runs);
  }
}

void smoke(int bench_connections) {
  if (::unshare(CLONE_NEWNET) != 0)
    throw std::runtime_error(fmt::format("unshare(CLONE_NEWNET): {}", std::strerror(errno)));
  lo_up();
  auto mount = find_cgroup2_mount();
  if (!mount) throw std::runtime_error("no cgroup v2 hierarchy is mounted");
  std::random_device rd;
  const std::string id = fmt::format("kvlb-check-{}-{:08x}", ::getpid(), rd());
  SmokeScope scope;
  scope.cgroup = *mount / id;
  if (!fs::create_directory(scope.cgroup))
    throw std::runtime_error("cannot create cgroup " + scope.cgroup.string());
  DataPlaneOptions opts;
  opts.cgroup = scope.cgroup;
  opts.pin_dir = opts.bpffs_root / id;
  scope.pin_dir = opts.pin_dir;
  scope.dp = DataPlane::open(opts);
  scope.home_cgroup = *mount / fs::path(own_cgroup()).relative_path();
  move_self_to(scope.cgroup);
  const Endpoint vip4 = *Endpoint::parse("10.255.0.1:80");
  UniqueFd ls4 = balance_one(*scope.dp, vip4, *Endpoint::parse_address("127.0.0.1", 0), 1);
  if (UniqueFd probe6(::socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0)); probe6)
    balance_one(*scope.dp, *Endpoint::parse("[fd00:6b76:6c62::1]:80"),
                *Endpoint::parse_address("::1", 0), 2);
  else
    fmt::print("smoke: no IPv6 in this kernel, connect6 not exercised\n");
  if (bench_connections > 0) bench(*scope.dp, vip4, ls4.get(), bench_connections);
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"kvlb-bpf-check: load kvlb's BPF programs and report the verifier's work"};
  std::string budget_file, log_level = "warn";
  bool run_smoke = false, probe_closer = false;
  int bench_connections = 0;
  app.add_option("--budget", budget_file, "fail when a program needs more than its budget");
  app.add_flag("--smoke", run_smoke, "attach in a private cgroup and balance one connection");
  app.add_option("--bench", bench_connections,
                 "with --smoke: N more connections with BPF statistics on; ns per program run");
  app.add_option("--log-level", log_level, "trace, debug, info, warn, error");
  app.add_flag("--probe-socket-closer", probe_closer,
               "only say whether this kernel can run keep-alive rebalancing (exit 0) or why "
               "not (exit 1)");
  CLI11_PARSE(app, argc, argv);
  setup_logging(log_level, "text");
  if (probe_closer) {
    const std::string why = socket_closer_unsupported();
    fmt::print("{}\n", why.empty() ? "keep-alive rebalancing: supported" : why);
    return why.empty() ? 0 : 1;
  }

  // Signals wait until cleanup is done (nothing here blocks for long).
  sigset_t sigs;
  sigemptyset(&sigs);
  for (int s : {SIGINT, SIGTERM, SIGHUP}) sigaddset(&sigs, s);
  sigprocmask(SIG_BLOCK, &sigs, nullptr);

  bool ok = true;
  try {
    fmt::print("kernel {}\n", kernel_release());
    require_kernel_features();
    fmt::print("features: all {} present (kvlb needs Linux {} or newer)\n",
               socket_lb_features().size(), minimum_kernel());
    std::map<std::string, uint32_t> budget;
    if (!budget_file.empty()) budget = read_budget(budget_file);
    auto stats = verify_all();
    fmt::print("{:<20} {:>9} {:>8} {:>7} {:>8}\n", "program", "verified", "budget", "limit%",
               "insns");
    for (const auto& [name, p] : stats) {
      std::string verdict;
      std::string b = "-";
      if (!budget.empty()) {
        auto it = budget.find(name);
        if (it == budget.end()) {
          verdict = "NO BUDGET";
        } else {
          b = std::to_string(it->second);
          verdict = p.verified_insns <= it->second ? "ok" : "OVER BUDGET";
        }
        ok = ok && verdict == "ok";
      }
      fmt::print("{:<20} {:>9} {:>8} {:>7.2f} {:>8}  {}\n", name, p.verified_insns, b,
                 100.0 * p.verified_insns / kVerifierLimit, p.insns, verdict);
    }
    const std::string closer_unsupported = socket_closer_unsupported();
    for (const auto& [name, b] : budget)
      if (name == "kvlb_rebalance" && !closer_unsupported.empty()) {
        fmt::print("{:<20} {:>9} {:>8}  not loaded: {}\n", name, "-", b, closer_unsupported);
      } else if (!stats.count(name)) {
        fmt::print("{:<20} {:>9} {:>8}  NOT LOADED (budgeted, but no such program)\n", name, "-",
                   b);
        ok = false;
      }
    if (run_smoke) smoke(bench_connections);
  } catch (const std::exception& e) {
    fmt::print("error: {}\n", e.what());
    ok = false;
  }
  fmt::print("result: {}\n", ok ? "PASS" : "FAIL");
  std::fflush(stdout);
  sigprocmask(SIG_UNBLOCK, &sigs, nullptr);
  return ok ? 0 : 1;
}
