// kvlb-replica-sim: an emulated LLM inference replica (vLLM-compatible HTTP API,
// engine metrics, a calibrated vLLM V0 scheduler model).
#include <utility>  // Boost 1.74 asio uses std::exchange without including it

#include <boost/asio.hpp>

#include <CLI/CLI.hpp>
#include <spdlog/spdlog.h>

#include "common/duration.h"
#include "common/logging.h"
#include "http_server.h"
#include "replica_model/vllm_v0_model.h"

using namespace kvlb;
using namespace kvlb::replica;

int main(int argc, char** argv) {
  CLI::App app{"kvlb-replica-sim: emulated LLM inference replica"};
  ServerOptions o;
  EngineProfile p;
  std::string flavor = "vllm", load_delay = "0s", log_level = "info";
  app.add_option("--listen", o.listen_address, "address to listen on");
  app.add_option("--port", o.port, "TCP port");
  app.add_option("--name", o.name, "replica name (X-Kvlb-Replica header)");
  app.add_option("--model", o.model, "served model name");
  app.add_option("--metrics-flavor", flavor, "vllm, vllm-legacy, tgi, sglang");
  app.add_option("--load-delay", load_delay, "time before /health succeeds (model load)");
  app.add_option("--log-level", log_level, "log level");
  auto* g = app.add_option_group("engine profile", "defaults: Llama-3.1-8B on one A10G (24 GB)");
  g->add_option("--kv-blocks", p.kv_blocks, "KV-cache blocks");
  g->add_option("--block-size", p.block_size, "tokens per KV block");
  g->add_option("--watermark", p.watermark, "fraction of blocks kept free at admission");
  g->add_option("--max-num-seqs", p.max_num_seqs, "running sequences at most");
  g->add_option("--max-model-len", p.max_model_len, "context window in tokens");
  g->add_option("--max-num-batched-tokens", p.max_num_batched_tokens,
                "prefill token budget (0: max(max_model_len, 2048))");
  g->add_option("--decode-t0-ms", p.decode_t0_ms, "fixed decode step time");
  g->add_option("--decode-per-seq-ms", p.decode_per_seq_ms, "decode time per running sequence");
  g->add_option("--decode-per-ctx-token-us", p.decode_per_ctx_token_us,
                "decode time per context token");
  g->add_option("--prefill-tokens-per-s", p.prefill_tokens_per_s, "prefill throughput");
  g->add_option("--prefill-overhead-ms", p.prefill_overhead_ms, "fixed prefill step time");
  g->add_option("--jitter", p.jitter, "uniform +- fraction on every step time");
  g->add_option("--seed", p.seed, "jitter random seed");
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
