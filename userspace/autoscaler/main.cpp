// kvlb-autoscaler: scales LLM replicas (Deployments, StatefulSets) from the
// scores the kvlb data plane balances on. docs/autoscaler.md.
//
//   kvlb-autoscaler --config /etc/kvlb/autoscaler.yaml [--dry-run] [--check]
#include <csignal>
#include <CLI/CLI.hpp>
#include <curl/curl.h>
#include <spdlog/spdlog.h>

#include <atomic>
#include <thread>

#include "agent/admin_server.h"
#include "autoscaler/config.h"
#include "autoscaler/runtime.h"
#include "common/clock.h"
#include "k8s/kube_client.h"
#include "k8s/leader_election.h"

namespace {
std::atomic<bool> g_stop{false};
void on_signal(int) {
  g_stop = true;
}
}  // namespace

int main(int argc, char** argv) {
  using namespace kvlb;
  CLI::App app{"kvlb-autoscaler: scales inference replicas from the balancer's scores"};
  std::string config_file;
  bool dry_run = false, check = false;
  app.add_option("--config", config_file, "the configuration file")->required();
  app.add_flag("--dry-run", dry_run,
               "decide and log, change nothing (no scale, drain, annotation or Event)");
  app.add_flag("--check", check, "validate the configuration and exit");
  CLI11_PARSE(app, argc, argv);

  autoscaler::AutoscalerConfig cfg;
  try {
    cfg = autoscaler::load_config(config_file);
  } catch (const std::exception& e) {
    spdlog::error("invalid configuration: {}", e.what());
    return 2;
  }
  if (check) {
    spdlog::info("configuration ok: {} service(s)", cfg.services.size());
    return 0;
  }
  curl_global_init(CURL_GLOBAL_DEFAULT);
  std::signal(SIGINT, on_signal);
  std::signal(SIGTERM, on_signal);

  std::optional<k8s::KubeClient> client;
  try {
    client.emplace(cfg.kubeconfig.empty()
                       ? k8s::in_cluster_config()
                       : k8s::kubeconfig_file(cfg.kubeconfig, cfg.allow_insecure_http));
  } catch (const std::exception& e) {
    spdlog::error("kubernetes: {}", e.what());
    return 2;
  }

  std::unique_ptr<k8s::LeaderElector> elector;
  if (cfg.leader_election) {
    k8s::ElectionConfig ec;
    ec.ns = cfg.lease_namespace;
    ec.name = cfg.lease_name;
    ec.identity = cfg.identity;
    elector = std::make_unique<k8s::LeaderElector>(*client, ec);
  }
  auto is_leader = [&] { return !elector || elector->is_leader(); };
  autoscaler::Runtime rt(cfg, *client, dry_run, is_leader);

  std::unique_ptr<agent::AdminServer> admin;
  try {
    admin = std::make_unique<agent::AdminServer>(
        cfg.admin_socket, cfg.admin_listen,
        [&](const agent::AdminRequest& r) -> agent::AdminResponse {
          if (r.method == "GET" && r.target == "/v1/autoscale")
            return {200, "application/json", rt.status().dump(2) + "\n"};
          if (r.method == "GET" && r.target == "/metrics")
            return {200, "text/plain; version=0.0.4; charset=utf-8", rt.metrics()};
          if (r.method == "GET" && r.target == "/healthz") return {200, "text/plain", "ok\n"};
          return {404, "application/json", "{\"error\":\"no such route\"}\n"};
        });
  } catch (const std::exception& e) {
    spdlog::error("admin API: {}", e.what());
    return 2;
  }
  std::thread election;
  if (elector)
    election = std::thread([&] {
      elector->run(g_stop,
                   [](const k8s::ApiError& e) { spdlog::warn("leader election: {}", e.text()); });
    });
  spdlog::info(
      "kvlb-autoscaler: {} service(s), every {} ms{}{}", cfg.services.size(), cfg.interval.count(),
      dry_run ? ", dry run" : "",
      elector ? ", waiting for the lease " + cfg.lease_namespace + "/" + cfg.lease_name : "");
  bool was_leader = false;
  while (!g_stop) {
    auto start = std::chrono::steady_clock::now();
    bool leader = is_leader();
    if (leader != was_leader)
      spdlog::info("{}", leader ? "leading: acting on decisions" : "not leading: observing only");
    if (was_leader && !leader) rt.lost_leadership();
    was_leader = leader;
    rt.round(autoscale::Millis{static_cast<int64_t>(monotonic_ns() / 1'000'000)});
    auto next = start + cfg.interval;
    while (!g_stop && std::chrono::steady_clock::now() < next)
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  if (election.joinable()) election.join();
  if (elector) elector->release();
  spdlog::info("kvlb-autoscaler: stopped");
  return 0;
}
