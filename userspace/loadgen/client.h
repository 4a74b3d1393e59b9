// client.h - runs a request schedule against an OpenAI-compatible server with
// libcurl multi on one thread: hundreds of concurrent streams, each timestamped
// as its bytes arrive.
//
// Timing, per request (seconds on one steady clock, 0 = run start):
//   scheduled  when the schedule said it should start
//   sent       when its bytes started to go out (after any wait for a connection)
//   first      when the first token chunk arrived
//   end        when the stream finished
// client_wait = sent - scheduled; ttft = first - sent; e2e = end - sent;
// itl = (end - first) / (output - 1) (llm-load-test's definition);
// tpot = e2e / output.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "arrivals.h"
#include "dataset.h"

namespace kvlb::loadgen {

enum class ConnectionMode { NewPerRequest, KeepAlivePool };

struct ClientConfig {
  std::string base_url;           // http://host:port
  std::string base_path = "/v1";  // the API's path on the server
  std::string api_key;            // sent as a bearer token when set
  bool chat = false;
  bool stream = true;
  std::string model;  // as the server names it (kvlb-loadgen asks /models when not given)
  ConnectionMode mode = ConnectionMode::NewPerRequest;
  uint32_t pool_size = 100;  // keep-alive connections at most (httpx's default)
  double timeout_s = 900;
  // Open loop: after the last arrival, wait at most this long, then cut what is
  // still running (< 0: wait for everything).
  double drain_s = -1;
  // Time 0 of the run (default: when run() starts). Clients that share one
  // schedule (kvlb-loadgen --clients) share their start.
  std::optional<std::chrono::steady_clock::time_point> start;
};

struct RequestResult {
  size_t index = 0;
  uint32_t input_tokens = 0;
  uint32_t expected_output = 0;
  uint32_t output_tokens = 0;  // token chunks received
  double scheduled = 0, sent = 0, first = -1, end = -1;
  std::string replica;  // X-Kvlb-Replica of the response, if any
  std::string target;   // base URL used (differs per request with the oracle)
  std::string error;    // empty when ok; else a kind: connect, timeout, http_NNN, truncated, ...
  std::string error_detail;
  bool cut = false;  // still running when the drain limit ended the run
  bool ok() const { return error.empty() && !cut; }
  double ttft() const { return first - sent; }
  double e2e() const { return end - sent; }
  double client_wait() const { return sent - scheduled; }
  double itl() const { return output_tokens > 1 ? (end - first) / (output_tokens - 1) : 0; }
  double tpot() const { return output_tokens ? e2e() / output_tokens : 0; }
};

// Picks the base URL for the next request (the oracle); empty: use base_url.
using TargetPicker = std::function<std::string()>;

struct Progress {
  double t = 0;
  size_t sent = 0, done = 0, inflight = 0, errors = 0;
};

class LoadClient {
 public:
  explicit LoadClient(ClientConfig c);
  ~LoadClient();
  LoadClient(const LoadClient&) = delete;
  LoadClient& operator=(const LoadClient&) = delete;

  void set_picker(TargetPicker p) { picker_ = std::move(p); }
  void set_progress(std::function<void(const Progress&)> cb, double every_s);

  // Open loop: request i starts at offsets[i]. Closed loop: `concurrency` requests
  // in flight until all are done. Returns one result per spec, in order.
  std::vector<RequestResult> run(const std::vector<RequestSpec>& specs,
                                 const std::vector<double>& offsets);
  std::vector<RequestResult> run_closed(const std::vector<RequestSpec>& specs,
                                        uint32_t concurrency);

 private:
  struct Impl;
  std::vector<RequestResult> run_impl(const std::vector<RequestSpec>& specs,
                                      const std::vector<double>* offsets, uint32_t concurrency);
  ClientConfig cfg_;
  TargetPicker picker_;
  std::function<void(const Progress&)> progress_;
  double progress_every_ = 2.0;
};

// Request i of n goes to client i % k: each client's requests, in order.
std::vector<std::vector<size_t>> split_round_robin(size_t n, uint32_t k);

// Open loop over k independent clients, each with its own connection pool of
// c.pool_size (as k SDK users, or k processes of one, run): request i is sent by
// client i % k at offsets[i] on one shared clock. Results in request order.
std::vector<RequestResult> run_clients(ClientConfig c, uint32_t k,
                                       const std::vector<RequestSpec>& specs,
                                       const std::vector<double>& offsets);

// The request body for one spec.
std::string request_body(const ClientConfig& c, const RequestSpec& s);

}  // namespace kvlb::loadgen
