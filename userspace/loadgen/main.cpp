// kvlb-loadgen: an LLM load generator (like llm-load-test and vLLM's
// benchmark_serving): open- or closed-loop arrivals, streamed completions,
// per-request TTFT/ITL/TPOT/latency, summary and JSON report.
#include <unistd.h>

#include <cmath>
#include <fstream>
#include <sstream>

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "arrivals.h"
#include "client.h"
#include "common/duration.h"
#include "common/strings.h"
#include "dataset.h"
#include "models.h"
#include "monitor.h"
#include "oracle.h"
#include "report.h"

using namespace kvlb;
using namespace kvlb::loadgen;

int main(int argc, char** argv) {
  CLI::App app{"kvlb-loadgen: load generator for OpenAI-compatible LLM servers"};
  std::string url, api = "completions", arrival = "constant", dataset = "synthetic",
                   connections = "new", output, monitor, oracle, label, monitor_interval = "250ms",
                   targets, model, base_path = "/v1";
  std::string api_key = getenv("OPENAI_API_KEY") ? getenv("OPENAI_API_KEY") : "";
  double rps = 1, burstiness = 1, duration = 0, warmup = 0, timeout = 900, drain = -1;
  uint32_t concurrency = 0, pool = 100, clients = 1;
  size_t requests = 0;
  uint64_t seed = 1;
  bool no_stream = false, quiet = false, series = false;
  app.add_option("--url", url, "server base URL (http://host:port)");
  app.add_option("--api", api, "completions or chat")
      ->check(CLI::IsMember({"completions", "chat"}));
  app.add_option("--model", model,
                 "the model to ask for (default: the one the server lists at <base path>/models)");
  app.add_option("--api-key", api_key,
                 "bearer token for the server (default: $OPENAI_API_KEY, as the OpenAI SDKs)");
  app.add_option("--base-path", base_path,
                 "the API's path on the server (default /v1; a gateway's prefix, e.g. /openai/v1)");
  app.add_flag("--no-stream", no_stream, "ask for whole responses instead of SSE streams");
  app.add_option("--arrival", arrival, "constant, poisson, gamma")
      ->check(CLI::IsMember({"constant", "poisson", "gamma"}));
  app.add_option("--rps", rps, "requests per second (open loop)")->check(CLI::PositiveNumber);
  app.add_option("--burstiness", burstiness, "gamma shape (1 = Poisson, < 1 burstier)")
      ->check(CLI::PositiveNumber);
  app.add_option("--concurrency", concurrency, "closed loop: requests kept in flight");
  app.add_option("--requests", requests, "requests to send");
  app.add_option("--duration", duration, "seconds of arrivals (requests = duration x rps)");
  app.add_option("--warmup", warmup, "seconds at the start left out of the summary");
  app.add_option("--dataset", dataset,
                 "synthetic (OpenOrca-shaped) or an llm-load-test JSONL file");
  app.add_option("--seed", seed, "seed for the dataset and the arrivals");
  app.add_option("--connections", connections, "new (a connection per request) or keepalive")
      ->check(CLI::IsMember({"new", "keepalive"}));
  app.add_option("--pool-size", pool, "keep-alive connections at most (per client)");
  app.add_option("--clients", clients,
                 "keepalive, open loop: independent clients, each with its own pool, "
                 "sending requests in turn (as several SDK users do)")
      ->check(CLI::Range(1u, 1024u));
  app.add_option("--timeout", timeout, "seconds before a request is abandoned");
  app.add_option("--drain", drain,
                 "open loop: after the last arrival wait at most this long, then cut the rest");
  app.add_option("--monitor", monitor,
                 "comma-separated replica /metrics URLs to record during the run");
  app.add_option("--monitor-interval", monitor_interval, "how often to record them");
  app.add_flag("--monitor-series", series, "include the recorded time series in the JSON");
  app.add_option("--oracle", oracle,
                 "oracle balancing over these replicas: base[=metrics],... (instead of --url)");
  app.add_option("--targets", targets,
                 "round-robin over these base URLs (instead of --url): a client-side spread");
  app.add_option("--label", label, "a name for this run in the report");
  app.add_option("-o,--output", output, "write the JSON report here");
  app.add_flag("-q,--quiet", quiet, "no progress lines");
  CLI11_PARSE(app, argc, argv);

  auto fail = [](const std::string& msg) {
    fmt::print(stderr, "kvlb-loadgen: {}\n", msg);
    return 2;
  };
  if ((!url.empty()) + (!oracle.empty()) + (!targets.empty()) != 1)
    return fail("give exactly one of --url, --targets and --oracle");
  if (requests == 0 && duration <= 0) return fail("give --requests or --duration");
  if (clients > 1 &&
      (connections != "keepalive" || concurrency || !oracle.empty() || !targets.empty()))
    return fail("--clients needs --connections keepalive, open-loop arrivals and --url");
  if (requests == 0) {
    if (concurrency)
      return fail("--duration needs --rps arrivals; use --requests with --concurrency");
    requests = static_cast<size_t>(std::ceil(duration * rps));
  }

  std::vector<RequestSpec> specs;
  try {
    if (dataset == "synthetic") {
      specs = synthetic_openorca(requests, seed);
    } else {
      auto all = load_jsonl(dataset);
      for (size_t i = 0; i < requests; ++i) specs.push_back(all[i % all.size()]);
    }
  } catch (const std::exception& e) {
    return fail(e.what());
  }

  base_path = normalize_base_path(base_path);
  if (model.empty()) {
    // As the OpenAI SDK users and benchmark_serving do: ask the server. With the
    // oracle or a target list, the first target answers for all.
    ApiEndpoint api{url, base_path, api_key};
    if (api.base_url.empty()) {
      auto first = split_list(!oracle.empty() ? oracle : targets).front();
      api.base_url = first.substr(0, first.find('='));
    }
    try {
      model = discover_model(api);
    } catch (const std::exception& e) {
      return fail(std::string("no --model given and ") + e.what());
    }
    if (!quiet) fmt::print(stderr, "[loadgen] model {} (from the server's model list)\n", model);
  }

  ClientConfig cc;
  cc.base_url = url;
  cc.base_path = base_path;
  cc.api_key = api_key;
  cc.model = model;
  cc.chat = api == "chat";
  cc.stream = !no_stream;
  cc.mode = connections == "new" ? ConnectionMode::NewPerRequest : ConnectionMode::KeepAlivePool;
  cc.pool_size = pool;
  cc.timeout_s = timeout;
  cc.drain_s = drain;
  LoadClient client(cc);
  std::unique_ptr<OraclePicker> picker;
  if (!oracle.empty()) {
    try {
      picker = std::make_unique<OraclePicker>(parse_oracle_targets(oracle));
    } catch (const std::exception& e) {
      return fail(std::string("--oracle: ") + e.what());
    }
    client.set_picker([&] { return picker->pick(); });
  }
  std::vector<std::string> rotation;
  size_t next_target = 0;
  if (!targets.empty()) {
    rotation = split_list(targets);
    client.set_picker([&] { return rotation[next_target++ % rotation.size()]; });
  }
  if (!quiet) {
    client.set_progress(
        [](const Progress& p) {
          fmt::print(stderr, "[loadgen] t={:.0f}s sent={} done={} in-flight={} errors={}\n", p.t,
                     p.sent, p.done, p.inflight, p.errors);
        },
        5.0);
  }

  std::vector<std::string> monitor_urls = split_list(monitor);
  auto interval = parse_duration(monitor_interval);
  if (!interval) return fail("--monitor-interval: not a duration");
  ReplicaMonitor mon(monitor_urls,
                     std::chrono::duration_cast<std::chrono::milliseconds>(*interval));
  mon.start();

  ArrivalConfig ac;
  ac.kind = *parse_arrival_kind(arrival);  // CLI11 checked the name
  ac.rps = rps;
  ac.burstiness = burstiness;
  ac.seed = seed;
  std::vector<RequestResult> results;
  if (concurrency)
    results = client.run_closed(specs, concurrency);
  else if (clients > 1)
    results = run_clients(cc, clients, specs, schedule(ac, specs.size()));
  else
    results = client.run(specs, schedule(ac, specs.size()));
  mon.stop();

  auto summary = summarize_run(results, warmup);
  if (!concurrency && !specs.empty()) {
    // Over the window of arrivals after the warm-up: goodput, and whether the
    // replicas' queues stayed bounded (above capacity p99 only measures the run).
    double end = schedule(ac, specs.size()).back();
    summary["window"] = window_rates(results, warmup, end);
    if (!monitor_urls.empty()) summary["trend"] = queue_trend(mon.series(), warmup, end);
  }
  nlohmann::json config = {{"label", label},
                           {"url", url},
                           {"oracle", oracle},
                           {"api", api},
                           {"model", model},
                           {"base_path", base_path},
                           {"stream", !no_stream},
                           {"arrival", concurrency ? "concurrency" : arrival},
                           {"rps", rps},
                           {"burstiness", burstiness},
                           {"concurrency", concurrency},
                           {"requests", requests},
                           {"warmup_s", warmup},
                           {"dataset", dataset},
                           {"seed", seed},
                           {"connections", connections},
                           {"pool_size", pool},
                           {"clients", clients},
                           {"drain_s", drain}};
  fmt::print("{}{}", label.empty() ? "" : "== " + label + "\n", summary_table(summary));
  if (!monitor_urls.empty()) {
    for (const auto& r : mon.to_json(false, warmup))
      fmt::print("replica {}: waiting max {} p99 {:.1f}, kv max {:.3f} mean {:.3f}\n",
                 r["url"].get<std::string>(), r["waiting_max"].get<double>(),
                 r["waiting_p99"].get<double>(), r["kv_max"].get<double>(),
                 r["kv_mean"].get<double>());
  }
  if (!output.empty()) {
    nlohmann::json report = {{"config", config},
                             {"summary", summary},
                             {"replicas", mon.to_json(series, warmup)},
                             {"results", results_json(results)}};
    std::ofstream out(output);
    if (!out) return fail("cannot write " + output);
    out << report.dump() << "\n";
  }
  return 0;
}
