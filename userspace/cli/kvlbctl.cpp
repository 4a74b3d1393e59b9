// kvlbctl: the operator's view of a running kvlb-agent, over its admin socket.
//
//   kvlbctl services | backends | top | drain ADDR | undrain ADDR | metrics
//   [--socket /run/kvlb/agent.sock] [-o table|json]
#include <arpa/inet.h>
#include <curl/curl.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <set>
#include <thread>

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "common/endpoint.h"
#include "common/names.h"
#include "admin/admin_client.h"
#include "common/printable.h"
#include "dataplane/pinned_maps.h"

namespace {

using kvlb::admin::call;
using kvlb::admin::Reply;

// A string field for a terminal: replica-supplied text (errors, names) can hold
// escape sequences or bytes that are not UTF-8; printed, they are escaped.
std::string text(const nlohmann::json& j, const char* key) {
  auto it = j.find(key);
  return it != j.end() && it->is_string() ? kvlb::printable(it->get<std::string>()) : std::string();
}

std::string services_table(const nlohmann::json& j) {
  std::string out = fmt::format("{:<20} {:<24} {:<16} {:>7}  {}\n", "NAME", "VIP", "POLICY",
                                "CHOICES", "BACKENDS");
  for (const auto& s : j)
    out += fmt::format("{:<20} {:<24} {:<16} {:>7}  {}\n", text(s, "name"), text(s, "vip"),
                       text(s, "policy"), s["choices"].get<int>(), s["backends"].size());
  return out;
}

// The gateway: where it runs, flows per backend, and its packet counters.
std::string gateway_table(const nlohmann::json& j) {
  std::string out;
  for (const auto& a : j["attachments"])
    out += fmt::format("interface {} ({} XDP)\n", text(a, "interface"), text(a, "mode"));
  out += fmt::format("\n{:<26} {:>8} {:>9}\n", "BACKEND", "FLOWS", "INFLIGHT");
  for (const auto& f : j["flows"])
    out += fmt::format("{:<26} {:>8} {:>9}\n", text(f, "backend"), f["flows"].get<uint64_t>(),
                       f["inflight"].get<int64_t>());
  out += fmt::format("\n{:<18} {:>14}\n", "COUNTER", "VALUE");
  for (const auto& [name, v] : j["stats"].items())
    if (v.get<uint64_t>() > 0 || name == "packets")
      out += fmt::format("{:<18} {:>14}\n", name, v.get<uint64_t>());
  out += fmt::format("(flows removed by the sweep since the agent started: {})\n",
                     j["swept"].get<uint64_t>());
  return out;
}

// Score sharing: this agent on the bus, and where each replica's score comes from.
std::string cluster_table(const nlohmann::json& j) {
  std::string out = fmt::format(
      "agent {}: {} to NATS, {} live agents, owns {} replicas, {} falling back\n\n",
      text(j, "agent"), j["connected"].get<bool>() ? "connected" : "NOT connected",
      j["agents"].get<uint64_t>(), j["owned"].get<uint64_t>(), j["falling_back"].get<uint64_t>());
  out += fmt::format("{:<26} {:<20} {:<8} {:<20} {:>8}\n", "BACKEND", "NODE", "SCRAPED", "SOURCE",
                     "AGE_MS");
  for (const auto& r : j["replicas"])
    out += fmt::format("{:<26} {:<20} {:<8} {:<20} {:>8}\n", text(r, "backend"), text(r, "node"),
                       r["scraped_here"].get<bool>() ? "here" : "shared", text(r, "source"),
                       r["age_ms"].get<int64_t>());
  return out;
}

// kvlb-autoscaler's status, one line per service: signal against target,
// replicas, and why the last decision was what it was.
std::string autoscale_table(const nlohmann::json& j) {
  std::string out =
      fmt::format("{:<16} {:<11} {:>7} {:>7} {:>5} {:>7} {:>6} {:>6} {:>5}  {}\n", "SERVICE",
                  "SIGNAL", "VALUE", "TARGET", "SPEC", "DESIRED", "READY", "START", "DRAIN", "WHY");
  for (const auto& s : j) {
    std::string why = text(s, "why");
    if (auto l = text(s, "limited_by"); !l.empty()) why += " (limited by " + l + ")";
    if (s.value("panic", false)) why += " [panic]";
    if (!s.value("leader", true)) why += " [not leader]";
    if (s.value("dry_run", false)) why += " [dry run]";
    if (auto e = text(s, "last_error"); !e.empty()) why += "; error: " + e;
    out += fmt::format("{:<16} {:<11} {:>7.3f} {:>7.3f} {:>5} {:>7} {:>6} {:>6} {:>5}  {}\n",
                       text(s, "service"), text(s, "signal"), s["value"].get<double>(),
                       s["target"].get<double>(), s["spec"].get<int64_t>(),
                       s["desired"].get<int64_t>(), s["ready"].get<int64_t>(),
                       s["starting"].get<int64_t>(), s["draining"].size(), why);
  }
  return out;
}

std::string backends_table(const nlohmann::json& j) {
  std::string out = fmt::format("{:<26} {:<9} {:>7} {:>7} {:>6} {:>8} {:>9} {:>6} {:>8}  {}\n",
                                "BACKEND", "STATE", "WAITING", "RUNNING", "KV%", "INFLIGHT",
                                "PICKS", "FAILS", "AGE", "NOTE");
  for (const auto& b : j) {
    double age = b["score_age_s"].get<double>();
    std::string note = b["stale"].get<bool>() ? "stale" : "";
    if (b.value("suspect", false))
      note += (note.empty() ? "" : "; ") + ("suspect: " + text(b, "suspect_reason"));
    if (auto err = text(b, "last_error"); !err.empty()) note += (note.empty() ? "" : "; ") + err;
    out += fmt::format("{:<26} {:<9} {:>7} {:>7} {:>6.1f} {:>8} {:>9} {:>6} {:>8}  {}\n",
                       text(b, "address"), text(b, "state"), b["waiting"].get<uint64_t>(),
                       b["running"].get<uint64_t>(), b["kv_usage"].get<double>() * 100,
                       b["inflight"].get<int64_t>(), b["picks"].get<uint64_t>(),
                       b["connect_failures"].get<uint64_t>(),
                       age < 0 ? std::string("-") : fmt::format("{:.0f}ms", age * 1000), note);
  }
  return out;
}

using kvlb::Endpoint;
using kvlb::kEventNames;
using kvlb::PinnedMaps;

// The pinned maps as JSON: what scripts read instead of spelling map layouts.
nlohmann::json maps_json(const PinnedMaps& maps) {
  auto endpoint = [](const kvlb_addr& a, uint16_t port_be, uint8_t family) {
    Endpoint e;
    e.family = family;
    e.addr = a;
    e.port = ntohs(port_be);
    return e.to_string();
  };
  nlohmann::json services = nlohmann::json::array();
  std::set<uint32_t> ids;
  for (const auto& [k, v] : maps.services()) {
    std::vector<uint32_t> slots(v.slots,
                                v.slots + std::min<uint32_t>(v.backend_count, KVLB_MAX_SLOTS));
    ids.insert(slots.begin(), slots.end());
    services.push_back({{"vip", endpoint(k.vip, k.port, k.family)},
                        {"id", v.id},
                        {"policy", kvlb::policy_name(static_cast<kvlb_policy>(v.policy))},
                        {"choices", v.choices},
                        {"backends", slots}});
  }
  nlohmann::json backends = nlohmann::json::array();
  for (uint32_t id = 1; id < KVLB_MAX_BACKENDS; ++id) {
    auto be = maps.backend(id);
    auto c = maps.counters(id);
    // Listed: every backend in the maps or a service, and a removed one whose
    // connections are still counted.
    if (be.family == 0 && !ids.count(id) && c.picks == 0 && c.inflight == 0) continue;
    auto sc = maps.score(id);
    backends.push_back({{"id", id},
                        {"address", be.family ? endpoint(be.addr, be.port, be.family) : ""},
                        {"state", kvlb::state_name(sc.state)},
                        {"waiting", sc.waiting},
                        {"running", sc.running},
                        {"kv_permille", sc.kv_permille},
                        {"weight", sc.weight},
                        {"inflight_bias", sc.inflight_bias},
                        {"updated_ns", sc.updated_ns},
                        {"picks_at_score", sc.picks_at_score},
                        {"picks", c.picks},
                        {"inflight", c.inflight},
                        {"connect_failures", c.connect_failures},
                        {"consecutive_failures", c.consecutive_failures}});
  }
  nlohmann::json events = nlohmann::json::object();
  auto ev = maps.events();
  for (size_t e = 0; e < kEventNames.size(); ++e)
    if (!kEventNames[e].empty()) events[std::string(kEventNames[e])] = ev[e];
  return {{"services", services},
          {"backends", backends},
          {"sockets", maps.sockets()},
          {"events", events},
          {"missing_maps", maps.missing()}};
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"kvlbctl: inspect and steer a running kvlb-agent"};
  std::string socket = "/run/kvlb/agent.sock", output = "table", address;
  double interval = 1.0;
  int iterations = 0;
  app.add_option("--socket", socket, "the agent's admin socket");
  app.add_option("-o,--output", output, "table or json")->check(CLI::IsMember({"table", "json"}));
  app.fallthrough();  // --socket and -o also after the subcommand
  app.require_subcommand(1);
  auto* services = app.add_subcommand("services", "services: VIP, policy, choices, backends");
  auto* backends = app.add_subcommand("backends", "backends: state, scores, in-flight, picks, age");
  auto* top = app.add_subcommand("top", "backends, refreshed live");
  auto* gateway = app.add_subcommand(
      "gateway", "the XDP gateway: interfaces and mode, flows per backend, packet counters");
  top->add_option("--interval", interval, "seconds between refreshes");
  top->add_option("--iterations", iterations, "stop after this many refreshes (0: until Ctrl-C)");
  auto* cluster = app.add_subcommand(
      "cluster", "score sharing: agents on the bus, which replicas this agent scrapes, ages");
  auto* drain = app.add_subcommand("drain", "no new connections to a backend (ip:port)");
  drain->add_option("address", address, "backend ip:port")->required();
  auto* undrain = app.add_subcommand("undrain", "accept new connections again");
  undrain->add_option("address", address, "backend ip:port")->required();
  auto* metrics = app.add_subcommand("metrics", "the agent's Prometheus metrics");
  std::string autoscaler_socket = "/run/kvlb/autoscaler.sock";
  auto* autoscale = app.add_subcommand(
      "autoscale", "kvlb-autoscaler's status per service: signal, target, replicas, why");
  autoscale->add_option("--autoscaler-socket", autoscaler_socket, "the autoscaler's admin socket");
  std::string pin_dir = "/sys/fs/bpf/kvlb";
  auto* maps = app.add_subcommand(
      "maps",
      "the pinned maps, read directly (JSON): services, backends with scores and kernel "
      "counters, tracked sockets, events; works without a running agent");
  maps->add_option("--pin-dir", pin_dir, "the agent's pin directory");
  double timeout = 20;
  auto* ready = app.add_subcommand(
      "wait-ready", "wait until the agent's admin API answers /healthz (exit 1 on timeout)");
  ready->add_option("--timeout", timeout, "seconds");
  CLI11_PARSE(app, argc, argv);
  curl_global_init(CURL_GLOBAL_DEFAULT);

  auto get = [&](const std::string& method, const std::string& path) -> std::optional<std::string> {
    auto r = call(socket, method, path);
    if (!r.error.empty()) {
      fmt::print(stderr, "kvlbctl: {}\n", r.error);
      return std::nullopt;
    }
    if (r.status != 200) {
      auto j = nlohmann::json::parse(r.body, nullptr, false);
      fmt::print(stderr, "kvlbctl: {}\n",
                 !j.is_discarded() && j.is_object() ? text(j, "error") : kvlb::printable(r.body));
      return std::nullopt;
    }
    return r.body;
  };
  auto show = [&](const std::string& path, std::string (*table)(const nlohmann::json&)) {
    auto body = get("GET", path);
    if (!body) return 1;
    auto j = nlohmann::json::parse(*body);
    fmt::print("{}", output == "json" ? j.dump(2) + "\n" : table(j));
    return 0;
  };

  if (*maps) {
    try {
      fmt::print("{}\n", maps_json(PinnedMaps(pin_dir)).dump(output == "json" ? -1 : 2));
    } catch (const std::exception& e) {
      fmt::print(stderr, "kvlbctl: {}\n", kvlb::printable(e.what()));
      return 1;
    }
    return 0;
  }
  if (*ready) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout);
    for (;;) {
      auto r = call(socket, "GET", "/healthz");
      if (r.error.empty() && r.status == 200) return 0;
      if (std::chrono::steady_clock::now() >= deadline) {
        fmt::print(stderr, "kvlbctl: the agent at {} is not ready after {} s: {}\n", socket,
                   timeout, r.error.empty() ? fmt::format("HTTP {}", r.status) : r.error);
        return 1;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
  }
  if (*autoscale) {
    socket = autoscaler_socket;
    return show("/v1/autoscale", autoscale_table);
  }
  if (*services) return show("/v1/services", services_table);
  if (*backends) return show("/v1/backends", backends_table);
  if (*gateway) return show("/v1/gateway", gateway_table);
  if (*cluster) return show("/v1/cluster", cluster_table);
  if (*metrics) {
    auto body = get("GET", "/metrics");
    if (!body) return 1;
    fmt::print("{}", *body);
    return 0;
  }
  if (*drain || *undrain) {
    auto body = get("POST", "/v1/backends/" + address + (*drain ? "/drain" : "/undrain"));
    if (!body) return 1;
    fmt::print("{}", output == "json"
                         ? *body + "\n"
                         : fmt::format("{} {}\n", address, *drain ? "drained" : "undrained"));
    return 0;
  }
  // top
  const bool tty = isatty(STDOUT_FILENO);
  for (int i = 0; iterations == 0 || i < iterations; ++i) {
    auto body = get("GET", "/v1/backends");
    if (!body) return 1;
    auto j = nlohmann::json::parse(*body);
    if (tty) fmt::print("\033[H\033[2J");
    fmt::print("{}", output == "json" ? j.dump() + "\n" : backends_table(j));
    std::fflush(stdout);
    if (iterations == 0 || i + 1 < iterations)
      std::this_thread::sleep_for(std::chrono::duration<double>(interval));
  }
  return 0;
}
