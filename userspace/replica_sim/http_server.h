// http_server.h - the emulator's HTTP/1.1 server (Boost.Beast, one thread).
//
// The engine model runs on the same io_context: an asio timer waits out each
// step's duration, so no locks are needed and the model sees the real clock.
#pragma once

#include <utility>  // Boost 1.74 asio uses std::exchange without including it

#include <boost/asio.hpp>

#include <chrono>
#include <memory>
#include <string>
#include <unordered_map>

#include "metrics_view.h"
#include "openai_api.h"
#include "replica_model/engine_model.h"

namespace kvlb::replica {

struct ServerOptions {
  std::string listen_address = "127.0.0.1";  // loopback unless told otherwise
  uint16_t port = 8000;
  std::string name = "replica";  // sent as X-Kvlb-Replica on every response
  std::string model = "meta-llama/Llama-3.1-8B-Instruct";
  MetricFlavor flavor = MetricFlavor::Vllm;
  std::chrono::milliseconds load_delay{0};  // /health fails until this has passed
  uint32_t max_model_len = 4096;
  size_t max_body_bytes = 1 << 20;
  // As vLLM's --api-key: every /v1 route wants "Authorization: Bearer <key>"
  // (401 otherwise); /health and /metrics stay open. Empty: no key.
  std::string api_key;
  // Faults, for tests: /metrics answers only after this delay; completions
  // fail at once with 500 (and never load the engine, so its metrics say idle).
  std::chrono::milliseconds metrics_delay{0};
  bool fail_requests = false;
};

class Session;

class ReplicaServer {
 public:
  ReplicaServer(boost::asio::io_context& io, ServerOptions opts,
                std::unique_ptr<EngineModel> engine);
  ~ReplicaServer();
  // Binds and starts accepting. Throws boost::system::system_error.
  void start();
  uint16_t bound_port() const;

  // ---- used by sessions ----
  const ServerOptions& options() const { return opts_; }
  bool ready() const;
  // The engine's metrics page, plus kvlb_sim_metrics_requests_total (the GETs of
  // /metrics so far, this one included): how tests count scrapes per replica.
  std::string metrics_text();
  // Submits a generation for `session`; returns the engine's rejection, if any.
  std::optional<std::string> submit(uint64_t id, const ApiRequest& r,
                                    const std::shared_ptr<Session>& session);
  void cancel(uint64_t id);
  uint64_t next_request_id() { return ++last_id_; }

 private:
  void accept();
  void kick();
  void dispatch(const std::vector<TokenEvent>& events);
  double now_s() const;

  struct Pending {
    std::weak_ptr<Session> session;
    double arrival_s = 0;
    bool first_token_seen = false;
  };

  ServerOptions opts_;
  std::unique_ptr<EngineModel> engine_;
  boost::asio::ip::tcp::acceptor acceptor_;
  boost::asio::steady_timer step_timer_;
  bool stepping_ = false;
  std::chrono::steady_clock::time_point start_;
  double start_unix_;
  uint64_t metrics_requests_ = 0;  // the io_context's thread only
  std::unordered_map<uint64_t, Pending> pending_;
  LatencyHistograms hist_;
  uint64_t last_id_ = 0;
};

}  // namespace kvlb::replica
