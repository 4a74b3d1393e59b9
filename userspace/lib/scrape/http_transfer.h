// http_transfer.h - kvlb's own HTTP/1.1 GET for plain-http scrape targets.
//
// A scrape is the smallest possible HTTP exchange: one GET on a kept-alive
// connection, one response. libcurl does it correctly but at ~15 us of CPU per
// transfer (URL handling, connection-cache matching, timers, header buffers),
// which at 1,000 targets x 20 Hz is a third of a core by itself. This transfer
// keeps one non-blocking socket per target registered once (edge-triggered) in
// the scraper's epoll set, writes a prebuilt request, and feeds what it reads to
// an HttpResponseParser (http_response.h: framing, bounds). Everything else (https,
// host names, proxies) stays with libcurl; see scraper.h for which is used when.
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/unique_fd.h"
#include "scrape/http_response.h"
#include "scrape/scrape_result.h"

namespace kvlb {

class HttpTransfer {
 public:
  using Clock = std::chrono::steady_clock;

  // For http://<IPv4 or [IPv6]>[:port][/path]; nullopt for anything else.
  static std::optional<HttpTransfer> for_url(std::string_view url, size_t max_body_bytes,
                                             uint32_t socket_mark);

  HttpTransfer(HttpTransfer&&) = default;
  HttpTransfer& operator=(HttpTransfer&&) = default;

  // Starts this round's GET into *out (reusing the open connection when there is
  // one); the socket is added to `epoll_fd` with `tag` as its event data when it
  // is new. Returns true when the transfer already finished (an error). Past
  // `deadline` the transfer fails as a timeout, even in the middle of a read loop
  // (a server that never stops sending never gets more than the round).
  bool start(int epoll_fd, void* tag, ScrapeResult* out, Clock::time_point round_start,
             Clock::time_point deadline);
  // Handles readiness of the socket. Returns true when this round's transfer
  // finished (now or before).
  bool on_event(uint32_t events);
  // The round's deadline passed: a transfer still running fails as a timeout.
  void expire(std::chrono::milliseconds timeout);
  bool finished() const { return state_ == State::Idle || state_ == State::Closed; }

 private:
  enum class State { Closed, Idle, Connecting, Sending, Receiving };
  HttpTransfer() = default;

  bool open_connection();
  bool send_request();
  bool receive();
  bool complete(bool keep_alive);
  bool fail(ScrapeError e, std::string detail);
  // Reused connection dropped by the server before any answer: one fresh try.
  bool retry_or_fail(ScrapeError e, std::string detail);
  void close_connection();

  sockaddr_storage addr_{};
  socklen_t addr_len_ = 0;
  std::string request_;
  size_t max_body_ = 0;
  uint32_t mark_ = 0;

  UniqueFd fd_;
  int epoll_fd_ = -1;
  void* tag_ = nullptr;
  State state_ = State::Closed;
  bool fresh_ = false;  // this round's connection was opened this round
  ScrapeResult* out_ = nullptr;
  Clock::time_point start_{};
  Clock::time_point deadline_{};
  size_t sent_ = 0;

  HttpResponseParser response_;  // this round's answer, framed and bounded
};

}  // namespace kvlb
