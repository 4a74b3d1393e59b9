// kvlb-replica-sim: an emulated LLM inference replica (vLLM-compatible HTTP API,
// engine metrics, a calibrated vLLM V0 scheduler model).
#include <utility>  // Boost 1.74 asio uses std::exchange without including it

#include <boost/asio.hpp>

#include <CLI/CLI.hpp>
#include <spdlog/spdlog.h>

#include "common/duration.h"
#include "common/logging.h"
#include "http_server.h"
#include "replica_model/profile_flags.h"
#include "replica_model/vllm_v0_model.h"

using namespace kvlb;
using namespace kvlb::replica;

int main(int argc, char** argv) {
  CLI::App app{"kvlb-replica-sim: emulated LLM inference replica"};
  ServerOptions o;
  EngineProfile p;
  std::string flavor = "vllm", load_delay = "0s", log_level = "info", metrics_delay = "0s";
  app.add_option("--listen", o.listen_address, "address to listen on");
  app.add_option("--port", o.port, "TCP port");
  app.add_option("--name", o.name, "replica name (X-Kvlb-Replica header)");
  app.add_option("--model", o.model, "served model name");
  app.add_option("--api-key", o.api_key,
                 "require this bearer token on /v1 routes, as vLLM's --api-key "
                 "(default: $VLLM_API_KEY)")
      ->envname("VLLM_API_KEY");
  app.add_option("--metrics-flavor", flavor, "vllm, vllm-legacy, tgi, sglang");
  app.add_option("--load-delay", load_delay, "time before /health succeeds (model load)");
  app.add_option("--log-level", log_level, "log level");
  app.add_option("--fault-metrics-delay", metrics_delay,
                 "fault: answer /metrics only after this delay");
  app.add_flag("--fault-fail-requests", o.fail_requests,
               "fault: answer every completion with 500 at once (metrics stay idle)");
  add_profile_flags(app, p);
  app.add_option("--seed", p.seed, "jitter random seed");
  CLI11_PARSE(app, argc, argv);

  try {
    setup_logging(log_level, "text");
  } catch (const std::exception& e) {
    fmt::print(stderr, "{}\n", e.what());
    return 2;
  }
  auto f = parse_flavor(flavor);
  if (!f) {
    spdlog::error("--metrics-flavor: unknown flavor '{}' (vllm, vllm-legacy, tgi, sglang)", flavor);
    return 2;
  }
  o.flavor = *f;
  auto delay = parse_duration(load_delay);
  if (!delay) {
    spdlog::error("--load-delay: '{}' is not a duration", load_delay);
    return 2;
  }
  o.load_delay = std::chrono::duration_cast<std::chrono::milliseconds>(*delay);
  auto mdelay = parse_duration(metrics_delay);
  if (!mdelay) {
    spdlog::error("--fault-metrics-delay: '{}' is not a duration", metrics_delay);
    return 2;
  }
  o.metrics_delay = std::chrono::duration_cast<std::chrono::milliseconds>(*mdelay);
  o.max_model_len = p.max_model_len;

  std::unique_ptr<EngineModel> engine;
  try {
    engine = std::make_unique<VllmV0Model>(p);
  } catch (const std::exception& e) {
    spdlog::error("invalid engine profile: --{}", e.what());
    return 2;
  }

  boost::asio::io_context io(1);
  ReplicaServer server(io, o, std::move(engine));
  try {
    server.start();
  } catch (const std::exception& e) {
    spdlog::error("cannot listen on {}:{}: {}", o.listen_address, o.port, e.what());
    return 1;
  }
  boost::asio::signal_set signals(io, SIGINT, SIGTERM);
  signals.async_wait([&](auto, int) { io.stop(); });
  spdlog::info("replica {} serving {} on {}:{} ({} metrics, {} KV blocks)", o.name, o.model,
               o.listen_address, server.bound_port(), flavor, p.kv_blocks);
  io.run();
  return 0;
}
