// The scraper against a misbehaving server on loopback: every fault ends in a
// clear error of the right kind, within the time limit, and a healthy target
// scraped in the same round is not held up by a slow one.
#include <utility>  // Boost 1.74 asio uses std::exchange without including it

#include <boost/asio.hpp>
#include <gtest/gtest.h>

#include <chrono>
#include <string>
#include <thread>
#include <vector>
#include <atomic>

#include "engines/engine_stats.h"
#include "scrape/scraper.h"

using namespace kvlb;
namespace net = boost::asio;
using tcp = net::ip::tcp;

namespace {

// Answers GET /<fault> on 127.0.0.1:<ephemeral>, one connection at a time per thread.
class FaultServer {
 public:
  FaultServer() : acceptor_(io_, tcp::endpoint(net::ip::make_address("127.0.0.1"), 0)) {
    accept();
    thread_ = std::thread([this] { io_.run(); });
  }
  ~FaultServer() {
    io_.stop();
    thread_.join();
    for (auto& w : workers_) w.join();  // sockets must not outlive io_
  }
  std::string url(const std::string& fault) const {
    return "http://127.0.0.1:" + std::to_string(acceptor_.local_endpoint().port()) + "/" + fault;
  }

 private:
  void accept() {
    acceptor_.async_accept([this](boost::system::error_code ec, tcp::socket s) {
      if (ec) return;
      workers_.emplace_back([sock = std::make_shared<tcp::socket>(std::move(s))] { serve(*sock); });
      accept();
    });
  }
  static void serve(tcp::socket& s) {
    boost::system::error_code ec;
    std::string req;
    char buf[1024];
    while (req.find("\r\n\r\n") == std::string::npos) {
      size_t n = s.read_some(net::buffer(buf), ec);
      if (ec) return;
      req.append(buf, n);
    }
    auto path = req.substr(4, req.find(' ', 4) - 4);
    auto reply = [&](int status, const std::string& body) {
      std::string r = "HTTP/1.1 " + std::to_string(status) +
                      " X\r\nContent-Length: " + std::to_string(body.size()) +
                      "\r\nConnection: close\r\n\r\n" + body;
      net::write(s, net::buffer(r), ec);
    };
    if (path == "/ok")
      reply(200, "vllm:num_requests_waiting 3\nvllm:num_requests_running 1\n");
    else if (path == "/slow") {
      std::this_thread::sleep_for(std::chrono::seconds(1));
      reply(200, "vllm:num_requests_waiting 0\n");
    } else if (path == "/huge")
      reply(200, std::string(3 << 20, '#'));
    else if (path == "/malformed")
      reply(200, "vllm:num_requests_waiting{engine=\"0\" 3\n");
    else if (path == "/nan")
      reply(200, "vllm:num_requests_waiting NaN\n");
    else
      reply(500, "internal error\n");
  }
  net::io_context io_;
  tcp::acceptor acceptor_;
  std::thread thread_;
  std::vector<std::thread> workers_;  // touched by the io thread only, joined after it
};

}  // namespace

TEST(ScraperFaults, EachFaultGivesAClearErrorAndNoneHoldsUpTheOthers) {
  FaultServer srv;
  // A port nothing listens on: bind, remember, close.
  uint16_t closed_port;
  {
    net::io_context io;
    tcp::acceptor a(io, tcp::endpoint(net::ip::make_address("127.0.0.1"), 0));
    closed_port = a.local_endpoint().port();
  }
  Scraper scraper(ScrapeOptions{std::chrono::milliseconds(300), 1 << 20});
  scraper.set_targets({srv.url("ok"), srv.url("slow"), srv.url("huge"),
                       "http://127.0.0.1:" + std::to_string(closed_port) + "/metrics",
                       srv.url("status500"), srv.url("malformed"), srv.url("nan")});
  auto r = scraper.scrape_all();
  ASSERT_EQ(r.size(), 7u);

  EXPECT_TRUE(r[0].ok()) << r[0].detail;
  // The slow target ends as a timeout (the round is bounded by it, not by the
  // server's 1 s), and the healthy one completed before it: not held up.
  EXPECT_EQ(r[1].error, ScrapeError::Timeout);
  EXPECT_LT(r[0].latency, r[1].latency);
  EXPECT_EQ(r[2].error, ScrapeError::TooLarge);
  EXPECT_NE(r[2].detail.find("larger than"), std::string::npos);
  EXPECT_EQ(r[3].error, ScrapeError::Connect);
  EXPECT_EQ(r[4].error, ScrapeError::HttpStatus);
  EXPECT_EQ(r[4].http_status, 500);

  // Transport fine, content not: the adapters say why, naming the line.
  ASSERT_TRUE(r[5].ok());
  auto bad = engines::extract_stats(r[5].body, engines::Engine::Vllm);
  EXPECT_FALSE(bad.stats);
  EXPECT_NE(bad.error.find("line 1"), std::string::npos) << bad.error;
  ASSERT_TRUE(r[6].ok());
  auto nan = engines::extract_stats(r[6].body, engines::Engine::Vllm);
  EXPECT_FALSE(nan.stats);
  EXPECT_NE(nan.error.find("invalid value"), std::string::npos) << nan.error;
  auto good = engines::extract_stats(r[0].body, engines::Engine::Vllm);
  ASSERT_TRUE(good.stats);
  EXPECT_EQ(good.stats->waiting, 3);
}

TEST(ScraperFaults, KeepAliveReusesTheConnectionAcrossRounds) {
  // A real keep-alive server: the emulator's /metrics would do, but a tiny
  // asio one keeps this test self-contained: count accepted connections.
  net::io_context io;
  tcp::acceptor a(io, tcp::endpoint(net::ip::make_address("127.0.0.1"), 0));
  std::atomic<int> accepted{0};
  std::thread t([&] {
    boost::system::error_code ec;
    tcp::socket s(io);
    a.accept(s, ec);
    if (ec) return;
    ++accepted;
    std::string pending;
    char buf[2048];
    for (;;) {
      size_t n = s.read_some(net::buffer(buf), ec);
      if (ec) return;
      pending.append(buf, n);
      size_t pos;
      while ((pos = pending.find("\r\n\r\n")) != std::string::npos) {
        pending.erase(0, pos + 4);
        std::string body = "vllm:num_requests_waiting 1\n";
        std::string r =
            "HTTP/1.1 200 OK\r\nContent-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
        net::write(s, net::buffer(r), ec);
      }
    }
  });
  {
    Scraper scraper(ScrapeOptions{std::chrono::milliseconds(1000), 1 << 20});
    scraper.set_targets(
        {"http://127.0.0.1:" + std::to_string(a.local_endpoint().port()) + "/metrics"});
    for (int i = 0; i < 5; ++i) ASSERT_TRUE(scraper.scrape_all()[0].ok());
  }
  a.close();
  t.join();
  EXPECT_EQ(accepted.load(), 1);  // five rounds, one connection
}
