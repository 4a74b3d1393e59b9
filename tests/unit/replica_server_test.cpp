// The emulated replica's HTTP server against hostile requests: every one gets
// an answer with an OpenAI-style JSON error, and the server keeps serving.
#include <utility>  // Boost 1.74 asio uses std::exchange without including it

#include <boost/asio.hpp>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <string>
#include <thread>

#include "http_server.h"
#include "replica_model/vllm_v0_model.h"

using namespace kvlb::replica;
namespace net = boost::asio;
using tcp = net::ip::tcp;

namespace {

class Running {
 public:
  explicit Running(ServerOptions o = {}) {
    o.port = 0;
    server_ =
        std::make_unique<ReplicaServer>(io_, o, std::make_unique<VllmV0Model>(EngineProfile{}));
    server_->start();
    port_ = server_->bound_port();
    thread_ = std::thread([this] { io_.run(); });
  }
  ~Running() {
    io_.stop();
    thread_.join();
  }
  // Sends `raw` on a new connection; returns everything read until the server
  // closes (requests here carry Connection: close, or are malformed).
  std::string exchange(const std::string& raw) const {
    net::io_context io;
    tcp::socket s(io);
    s.connect(tcp::endpoint(net::ip::make_address("127.0.0.1"), port_));
    net::write(s, net::buffer(raw));
    std::string out;
    char buf[4096];
    boost::system::error_code ec;
    for (;;) {
      size_t n = s.read_some(net::buffer(buf), ec);
      if (ec) break;
      out.append(buf, n);
    }
    return out;
  }
  int status(const std::string& raw, nlohmann::json* body = nullptr) const {
    auto r = exchange(raw);
    if (r.size() < 12) return 0;
    if (body) *body = nlohmann::json::parse(r.substr(r.find("\r\n\r\n") + 4), nullptr, false);
    return std::stoi(r.substr(9, 3));
  }

 private:
  net::io_context io_{1};
  std::unique_ptr<ReplicaServer> server_;
  uint16_t port_ = 0;
  std::thread thread_;
};

std::string post(const std::string& body) {
  return "POST /v1/completions HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: "
         "application/json\r\nContent-Length: " +
         std::to_string(body.size()) + "\r\n\r\n" + body;
}

}  // namespace

TEST(ReplicaServer, ListensOnLoopbackByDefault) {
  EXPECT_EQ(ServerOptions{}.listen_address, "127.0.0.1");
}

TEST(ReplicaServer, HostileRequestsGetA4xxAndTheServerKeepsServing) {
  Running srv;
  nlohmann::json j;
  EXPECT_EQ(srv.status("GET /\xff\xfe HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", &j), 404);
  EXPECT_EQ(j["object"], "error");
  EXPECT_EQ(srv.status(post(R"({"model":7,"prompt":"x"})"), &j), 400);
  EXPECT_EQ(j["code"], 400);
  EXPECT_EQ(srv.status(post(R"({"model":"meta-llama/Llama-3.1-8B-Instruct","prompt":"x",)"
                            R"("stream":true,"stream_options":{"include_usage":"yes"}})"),
                       &j),
            400);
  EXPECT_EQ(srv.status("NOT HTTP AT ALL\r\n\r\n", &j), 400);
  EXPECT_EQ(j["object"], "error");
  // Still serving after all of it.
  EXPECT_EQ(srv.status("GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"), 200);
}

TEST(ReplicaServer, FailRequestsFaultAnswers500AtOnceAndStaysIdle) {
  ServerOptions o;
  o.fail_requests = true;
  Running srv(o);
  nlohmann::json j;
  EXPECT_EQ(srv.status(post(R"({"model":"meta-llama/Llama-3.1-8B-Instruct","prompt":"x"})"), &j),
            500);
  EXPECT_EQ(j["type"], "InternalServerError");
  // The request never reached the engine: the replica reports itself idle
  // (the "lying replica" the agent must learn to distrust).
  auto metrics = srv.exchange("GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
  const std::string labels = R"({engine="0",model_name="meta-llama/Llama-3.1-8B-Instruct"})";
  EXPECT_NE(metrics.find("vllm:num_requests_running" + labels + " 0\n"), std::string::npos);
  EXPECT_NE(metrics.find("vllm:num_requests_waiting" + labels + " 0\n"), std::string::npos);
}
