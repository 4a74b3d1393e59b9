// The scraper against a misbehaving server on loopback: every fault ends in a
// clear error of the right kind, within the time limit, and a healthy target
// scraped in the same round is not held up by a slow one. Every case runs with
// both HTTP clients: kvlb's own transfer (the default for http:// to an IP
// address) and libcurl (https and host names).
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

#include <fmt/format.h>

using namespace kvlb;
namespace net = boost::asio;
using tcp = net::ip::tcp;

namespace {

// Reads one request head (up to the blank line); empty on a read error.
std::string read_request_head(tcp::socket& s, boost::system::error_code& ec) {
  std::string req;
  char buf[2048];
  while (req.find("\r\n\r\n") == std::string::npos) {
    size_t n = s.read_some(net::buffer(buf), ec);
    if (ec) return {};
    req.append(buf, n);
  }
  return req;
}

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
  // Bytes the /extension-flood answer managed to write before the client hung up.
  size_t flood_written() const { return flood_written_; }
  std::string url(const std::string& fault) const {
    return "http://127.0.0.1:" + std::to_string(acceptor_.local_endpoint().port()) + "/" + fault;
  }

 private:
  void accept() {
    acceptor_.async_accept([this](boost::system::error_code ec, tcp::socket s) {
      if (ec) return;
      workers_.emplace_back(
          [this, sock = std::make_shared<tcp::socket>(std::move(s))] { serve(*sock); });
      accept();
    });
  }
  void serve(tcp::socket& s) {
    boost::system::error_code ec;
    std::string req = read_request_head(s, ec);
    if (ec) return;
    auto path = req.substr(4, req.find(' ', 4) - 4);
    auto reply = [&](int status, const std::string& body) {
      std::string r = "HTTP/1.1 " + std::to_string(status) +
                      " X\r\nContent-Length: " + std::to_string(body.size()) +
                      "\r\nConnection: close\r\n\r\n" + body;
      net::write(s, net::buffer(r), ec);
    };
    auto raw = [&](const std::string& r) { net::write(s, net::buffer(r), ec); };
    if (path == "/ok")
      reply(200, "vllm:num_requests_waiting 3\nvllm:num_requests_running 1\n");
    else if (path == "/chunked") {
      // Chunked, with an extension and a trailer, written in pieces that split
      // the chunk headers across reads.
      for (std::string piece :
           {std::string(
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n1"),
            std::string("c;ext=1\r\nvllm:num_req"), std::string("uests_waiting 7\n\r\n"),
            std::string("0\r\nX-Trailer: y\r\n\r\n")}) {
        raw(piece);
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
      }
    } else if (path == "/close-delimited") {
      raw("HTTP/1.0 200 OK\r\n\r\nvllm:num_requests_waiting 5\n");
    } else if (path == "/split") {
      // Content-Length body arriving in two writes.
      raw("HTTP/1.1 200 OK\r\nContent-Length: 28\r\nConnection: close\r\n\r\nvllm:num_requests");
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
      raw("_waiting 4\n");
    } else if (path == "/truncated") {
      raw("HTTP/1.1 200 OK\r\nContent-Length: 100\r\nConnection: close\r\n\r\nvllm:num_req");
    } else if (path == "/garbage") {
      raw("SSH-2.0-OpenSSH_9.2\r\n\r\n");
    } else if (path == "/gzip") {
      raw("HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: 3\r\nConnection: "
          "close\r\n\r\nabc");
    } else if (path == "/huge-chunked") {
      raw("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n");
      std::string chunk(64 * 1024, '#');
      for (int i = 0; i < 48 && !ec; ++i) raw(fmt::format("{:x}\r\n{}\r\n", chunk.size(), chunk));
      raw("0\r\n\r\n");
    } else if (path == "/forged-encoding") {
      // A bare LF and an escape sequence in a header value: a log line forged.
      raw("HTTP/1.1 200 OK\r\nContent-Encoding: x\n2026-01-01 00:00:00.000 error \x1b[31mforged"
          "\xff\r\nContent-Length: 0\r\n\r\n");
    } else if (path == "/endless-trailer") {
      // A valid body, the last chunk, then trailer lines for as long as the
      // client reads them.
      raw("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
          "1c\r\nvllm:num_requests_waiting 7\n\r\n0\r\n");
      std::string lines;
      for (int i = 0; i < 512; ++i) lines += "X-T: y\r\n";
      while (!ec) raw(lines);
    } else if (path == "/chunk-overflow") {
      // A chunk size that wraps a size_t sum: 2^64 - 1.
      raw("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
          "1c\r\nvllm:num_requests_waiting 7\n\r\nffffffffffffffff\r\nabc");
    } else if (path == "/extension-flood") {
      // 1-byte chunks with 1000-byte extensions: a thousand times the body on
      // the wire, for up to 200 MB or until the client hangs up.
      raw("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n");
      std::string chunk = "1;" + std::string(1000, 'e') + "\r\n#\r\n", batch;
      for (int i = 0; i < 64; ++i) batch += chunk;
      for (size_t sent = 0; !ec && sent < (200u << 20); sent += batch.size()) {
        raw(batch);
        if (!ec) flood_written_ += batch.size();
      }
    } else if (path == "/slow") {
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
  std::atomic<size_t> flood_written_{0};
};

}  // namespace

class ScraperFaults : public ::testing::TestWithParam<ScrapeClient> {
 protected:
  ScrapeOptions options(std::chrono::milliseconds timeout) const {
    ScrapeOptions o{timeout, 1 << 20};
    o.client = GetParam();
    return o;
  }
};

INSTANTIATE_TEST_SUITE_P(BothClients, ScraperFaults,
                         ::testing::Values(ScrapeClient::Auto, ScrapeClient::Curl),
                         [](const auto& info) {
                           return info.param == ScrapeClient::Auto ? "kvlb" : "curl";
                         });

TEST_P(ScraperFaults, EachFaultGivesAClearErrorAndNoneHoldsUpTheOthers) {
  FaultServer srv;
  // A port nothing listens on: bind, remember, close.
  uint16_t closed_port;
  {
    net::io_context io;
    tcp::acceptor a(io, tcp::endpoint(net::ip::make_address("127.0.0.1"), 0));
    closed_port = a.local_endpoint().port();
  }
  Scraper scraper(options(std::chrono::milliseconds(300)));
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

TEST_P(ScraperFaults, ResponseFramingChunkedSplitAndCloseDelimited) {
  FaultServer srv;
  Scraper scraper(options(std::chrono::milliseconds(2000)));
  scraper.set_targets({srv.url("chunked"), srv.url("close-delimited"), srv.url("split")});
  auto r = scraper.scrape_all();
  ASSERT_EQ(r.size(), 3u);
  const double want[] = {7, 5, 4};
  for (size_t i = 0; i < r.size(); ++i) {
    ASSERT_TRUE(r[i].ok()) << i << ": " << r[i].detail;
    auto st = engines::extract_stats(r[i].body, engines::Engine::Vllm);
    ASSERT_TRUE(st.stats) << i << ": " << st.error << " body: " << r[i].body;
    EXPECT_EQ(st.stats->waiting, want[i]) << i;
  }
}

TEST_P(ScraperFaults, BrokenAnswersFailWithAReason) {
  FaultServer srv;
  Scraper scraper(options(std::chrono::milliseconds(2000)));
  scraper.set_targets({srv.url("truncated"), srv.url("garbage"), srv.url("huge-chunked")});
  auto r = scraper.scrape_all();
  ASSERT_EQ(r.size(), 3u);
  for (const auto& x : r) {
    EXPECT_FALSE(x.ok());
    EXPECT_FALSE(x.detail.empty());
    EXPECT_TRUE(x.body.empty());
  }
  EXPECT_EQ(r[2].error, ScrapeError::TooLarge) << r[2].detail;
}

TEST_P(ScraperFaults, AnEndlessTrailerEndsTheScrapeWithinTheRound) {
  // Before: the native client re-searched the trailer from its start on every
  // read and checked the deadline only between wake-ups: 25 s and more with a 1 s
  // timeout. Now: the trailer is bounded (16 KiB), and past the deadline any
  // transfer fails, whichever client runs it.
  FaultServer srv;
  Scraper scraper(options(std::chrono::milliseconds(1000)));
  scraper.set_targets({srv.url("endless-trailer"), srv.url("ok")});
  const auto t0 = std::chrono::steady_clock::now();
  auto r = scraper.scrape_all();
  const auto took = std::chrono::steady_clock::now() - t0;
  EXPECT_FALSE(r[0].ok());
  EXPECT_TRUE(r[0].body.empty());
  EXPECT_TRUE(r[1].ok()) << r[1].detail;
  // Generous (5x the timeout): the property is "bounded by the round", and the
  // fault made it unbounded.
  EXPECT_LT(took, std::chrono::seconds(5));
  if (GetParam() == ScrapeClient::Auto) {
    EXPECT_NE(r[0].detail.find("trailer longer than"), std::string::npos) << r[0].detail;
  }
}

TEST_P(ScraperFaults, AChunkSizeThatWrapsASumIsTooLarge) {
  // 16 f's: body.size() + size wrapped to a small number and passed the limit.
  FaultServer srv;
  Scraper scraper(options(std::chrono::milliseconds(2000)));
  scraper.set_targets({srv.url("chunk-overflow")});
  auto r = scraper.scrape_all();
  EXPECT_FALSE(r[0].ok());
  EXPECT_TRUE(r[0].body.empty());
  if (GetParam() == ScrapeClient::Auto) {
    EXPECT_EQ(r[0].error, ScrapeError::TooLarge) << r[0].detail;
  }
}

TEST(ScraperNative, ReplicaBytesInAnErrorAreEscaped) {
  FaultServer srv;
  Scraper scraper(ScrapeOptions{std::chrono::milliseconds(2000), 1 << 20});
  scraper.set_targets({srv.url("forged-encoding")});
  auto r = scraper.scrape_all();
  ASSERT_FALSE(r[0].ok());
  EXPECT_NE(r[0].detail.find("Content-Encoding"), std::string::npos) << r[0].detail;
  for (char bad : {'\n', '\r', '\x1b', '\xff'})
    EXPECT_EQ(r[0].detail.find(bad), std::string::npos) << r[0].detail;
}

TEST(ScraperNative, FramingOverheadIsBoundedOnTheWire) {
  // 1-byte chunks with 1 KiB extensions: the whole answer used to be buffered
  // (273 MB for one scrape). Now at most twice the body limit (plus a head) is
  // read before the scrape fails, and parsed chunks leave the buffer at once.
  FaultServer srv;
  const size_t limit = 64 * 1024;
  Scraper scraper(ScrapeOptions{std::chrono::milliseconds(5000), limit});
  scraper.set_targets({srv.url("extension-flood")});
  auto r = scraper.scrape_all();
  EXPECT_EQ(r[0].error, ScrapeError::TooLarge) << r[0].detail;
  EXPECT_NE(r[0].detail.find("on the wire"), std::string::npos) << r[0].detail;
  EXPECT_TRUE(r[0].body.empty());
  // What the server got into the socket before the client hung up: the limit
  // read plus what the kernel's socket buffers held (a few MB on loopback),
  // far from the 200 MB it had to send.
  for (int i = 0; i < 100 && srv.flood_written() == 0; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  EXPECT_LT(srv.flood_written(), size_t{32} << 20);
}

TEST(ScraperNative, UnsupportedContentEncodingIsAnError) {
  // Only kvlb's transfer: it never asks for compression, so a compressed answer
  // is a server error (libcurl asks for gzip and would decode it).
  FaultServer srv;
  Scraper scraper(ScrapeOptions{std::chrono::milliseconds(2000), 1 << 20});
  scraper.set_targets({srv.url("gzip")});
  auto r = scraper.scrape_all();
  EXPECT_FALSE(r[0].ok());
  EXPECT_NE(r[0].detail.find("Content-Encoding"), std::string::npos) << r[0].detail;
}

TEST_P(ScraperFaults, KeepAliveReusesTheConnectionAcrossRounds) {
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
    Scraper scraper(options(std::chrono::milliseconds(1000)));
    scraper.set_targets(
        {"http://127.0.0.1:" + std::to_string(a.local_endpoint().port()) + "/metrics"});
    for (int i = 0; i < 5; ++i) ASSERT_TRUE(scraper.scrape_all()[0].ok());
  }
  a.close();
  t.join();
  EXPECT_EQ(accepted.load(), 1);  // five rounds, one connection
}

TEST_P(ScraperFaults, AServerClosingAnIdleConnectionCostsNoScrape) {
  // The server answers one request per connection, then closes it while idle
  // (as servers with short keep-alive timeouts do). Every round still succeeds:
  // the client notices the closed connection and opens a fresh one.
  net::io_context io;
  tcp::acceptor a(io, tcp::endpoint(net::ip::make_address("127.0.0.1"), 0));
  std::atomic<int> accepted{0};
  std::atomic<bool> stop{false};
  std::thread t([&] {
    while (!stop) {
      boost::system::error_code ec;
      tcp::socket s(io);
      a.accept(s, ec);
      if (ec || stop) return;
      ++accepted;
      read_request_head(s, ec);
      if (ec) continue;
      std::string body = "vllm:num_requests_waiting 2\n";
      net::write(s,
                 net::buffer("HTTP/1.1 200 OK\r\nContent-Length: " + std::to_string(body.size()) +
                             "\r\n\r\n" + body),
                 ec);
      s.close();  // no "Connection: close": the client learns from the socket
    }
  });
  {
    Scraper scraper(options(std::chrono::milliseconds(2000)));
    scraper.set_targets(
        {"http://127.0.0.1:" + std::to_string(a.local_endpoint().port()) + "/metrics"});
    for (int i = 0; i < 4; ++i) {
      const auto& r = scraper.scrape_all();
      ASSERT_TRUE(r[0].ok()) << "round " << i << ": " << r[0].detail;
    }
  }
  stop = true;
  {  // unblock accept()
    net::io_context io2;
    tcp::socket poke(io2);
    boost::system::error_code ec;
    poke.connect(a.local_endpoint(), ec);
  }
  t.join();
  EXPECT_EQ(accepted.load(), 4);  // one connection per round (the poke is not counted)
}
