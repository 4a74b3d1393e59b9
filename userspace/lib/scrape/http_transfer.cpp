#include "scrape/http_transfer.h"

#include <arpa/inet.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>

#include <fmt/format.h>

#include "common/endpoint.h"
#include "common/strings.h"

namespace kvlb {
namespace {

constexpr size_t kReadChunk = 16 * 1024;

}  // namespace

std::optional<HttpTransfer> HttpTransfer::for_url(std::string_view url, size_t max_body_bytes,
                                                  uint32_t socket_mark) {
  constexpr std::string_view kScheme = "http://";
  if (url.size() <= kScheme.size() || !iequals(url.substr(0, kScheme.size()), kScheme))
    return std::nullopt;
  auto rest = url.substr(kScheme.size());
  size_t slash = rest.find('/');
  auto authority = rest.substr(0, slash);
  std::string path = slash == std::string_view::npos ? "/" : std::string(rest.substr(slash));
  if (path.find('#') != std::string::npos) path.erase(path.find('#'));
  if (authority.find('@') != std::string_view::npos) return std::nullopt;  // userinfo: curl
  // Only literal addresses: host names need a resolver, which libcurl has.
  auto ep = Endpoint::parse(authority);  // "a.b.c.d:port", "[v6]:port"
  if (!ep) {
    auto host = authority;
    if (host.size() > 2 && host.front() == '[' && host.back() == ']')
      host = host.substr(1, host.size() - 2);
    ep = Endpoint::parse_address(host, 80);
  }
  if (!ep) return std::nullopt;

  HttpTransfer t;
  if (ep->family == KVLB_AF_INET) {
    auto* sa = reinterpret_cast<sockaddr_in*>(&t.addr_);
    sa->sin_family = AF_INET;
    sa->sin_port = htons(ep->port);
    sa->sin_addr.s_addr = ep->addr.words[0];
    t.addr_len_ = sizeof(sockaddr_in);
  } else {
    auto* sa = reinterpret_cast<sockaddr_in6*>(&t.addr_);
    sa->sin6_family = AF_INET6;
    sa->sin6_port = htons(ep->port);
    std::memcpy(&sa->sin6_addr, ep->addr.words, sizeof(sa->sin6_addr));
    t.addr_len_ = sizeof(sockaddr_in6);
  }
  t.request_ = fmt::format(
      "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: kvlb-agent/0.1\r\n"
      "Accept: text/plain;version=0.0.4\r\n\r\n",
      path, authority);
  t.max_body_ = max_body_bytes;
  t.mark_ = socket_mark;
  return t;
}

bool HttpTransfer::start(int epoll_fd, void* tag, ScrapeResult* out, Clock::time_point round_start,
                         Clock::time_point deadline) {
  epoll_fd_ = epoll_fd;
  tag_ = tag;
  out_ = out;
  start_ = round_start;
  deadline_ = deadline;
  response_.reset(max_body_, &out->body);
  sent_ = 0;
  if (state_ == State::Idle && fd_) {
    fresh_ = false;
    state_ = State::Sending;
    return send_request();
  }
  return open_connection();
}

bool HttpTransfer::open_connection() {
  close_connection();
  fresh_ = true;
  const int family = reinterpret_cast<const sockaddr*>(&addr_)->sa_family;
  fd_ = UniqueFd(::socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!fd_) return fail(ScrapeError::Other, fmt::format("socket: {}", std::strerror(errno)));
  // The socket LB must never rebalance the agent's own scrapes (SO_MARK needs
  // CAP_NET_ADMIN; without it the scrape still goes out, unmarked).
  if (mark_) setsockopt(fd_.get(), SOL_SOCKET, SO_MARK, &mark_, sizeof(mark_));
  int one = 1;
  setsockopt(fd_.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  setsockopt(fd_.get(), SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
  const int rc = ::connect(fd_.get(), reinterpret_cast<const sockaddr*>(&addr_), addr_len_);
  if (rc != 0 && errno != EINPROGRESS) {
    int err = errno;
    return fail(ScrapeError::Connect, fmt::format("connect: {}", std::strerror(err)));
  }
  // Registered once, after connect() (an unconnected socket polls as hung up),
  // edge-triggered, for everything: a kept-alive connection costs no epoll_ctl
  // per scrape. Adding polls the socket, so a connect that completed in between
  // still produces its event.
  epoll_event ev{};
  ev.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
  ev.data.ptr = tag_;
  if (epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, fd_.get(), &ev) != 0)
    return fail(ScrapeError::Other, fmt::format("epoll_ctl: {}", std::strerror(errno)));
  if (rc == 0) {
    state_ = State::Sending;
    return send_request();
  }
  state_ = State::Connecting;
  return false;
}

bool HttpTransfer::send_request() {
  while (sent_ < request_.size()) {
    ssize_t n = ::send(fd_.get(), request_.data() + sent_, request_.size() - sent_, MSG_NOSIGNAL);
    if (n > 0) {
      sent_ += static_cast<size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return false;  // wait for EPOLLOUT
    return retry_or_fail(ScrapeError::Other, fmt::format("send: {}", std::strerror(errno)));
  }
  state_ = State::Receiving;
  // The answer may already be there (an edge that came before this state).
  return receive();
}

bool HttpTransfer::on_event(uint32_t events) {
  switch (state_) {
    case State::Connecting: {
      if (!(events & (EPOLLOUT | EPOLLERR | EPOLLHUP))) return false;
      int err = 0;
      socklen_t len = sizeof(err);
      getsockopt(fd_.get(), SOL_SOCKET, SO_ERROR, &err, &len);
      if (err != 0)
        return fail(ScrapeError::Connect, fmt::format("connect: {}", std::strerror(err)));
      state_ = State::Sending;
      return send_request();
    }
    case State::Sending:
      if (events & (EPOLLOUT | EPOLLERR | EPOLLHUP)) return send_request();
      return false;
    case State::Receiving:
      return receive();
    case State::Idle:
      // Between answers the server has nothing to say: readable now means it
      // closed the connection (or broke protocol). Either way, start fresh next time.
      if (events & (EPOLLIN | EPOLLRDHUP | EPOLLERR | EPOLLHUP)) {
        char c;
        ssize_t n = ::recv(fd_.get(), &c, 1, MSG_PEEK | MSG_DONTWAIT);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) || n > 0)
          close_connection();
      }
      return true;
    case State::Closed:
      return true;
  }
  return true;
}

bool HttpTransfer::receive() {
  for (;;) {
    // A server that keeps sending never returns EAGAIN: the round's deadline is
    // checked here too, not only between wake-ups.
    if (Clock::now() >= deadline_)
      return fail(
          ScrapeError::Timeout,
          fmt::format(
              "no complete answer within {} ms",
              std::chrono::duration_cast<std::chrono::milliseconds>(deadline_ - start_).count()));
    ssize_t n = ::recv(fd_.get(), response_.prepare(kReadChunk), kReadChunk, 0);
    if (n > 0) {
      switch (response_.commit(static_cast<size_t>(n))) {
        case HttpResponseParser::Status::Done:
          return complete(response_.keep_alive());
        case HttpResponseParser::Status::Failed:
          return fail(response_.error(), response_.detail());
        case HttpResponseParser::Status::More:
          continue;
      }
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return false;
    if (n == 0) {
      if (!response_.started())
        return retry_or_fail(ScrapeError::Other, "connection closed before any answer");
      if (response_.on_eof() == HttpResponseParser::Status::Done) return complete(false);
      return fail(response_.error(), response_.detail());
    }
    int err = errno;
    if (!response_.started())
      return retry_or_fail(ScrapeError::Other, fmt::format("recv: {}", std::strerror(err)));
    return fail(ScrapeError::Other, fmt::format("recv: {}", std::strerror(err)));
  }
}

bool HttpTransfer::complete(bool keep_alive) {
  out_->http_status = response_.http_status();
  out_->latency = Clock::now() - start_;
  if (keep_alive) {
    state_ = State::Idle;
  } else {
    close_connection();
  }
  return true;
}

bool HttpTransfer::fail(ScrapeError e, std::string detail) {
  out_->http_status = response_.http_status();
  out_->error = e;
  out_->detail = std::move(detail);
  out_->body.clear();
  out_->latency = Clock::now() - start_;
  close_connection();  // never reuse a connection in an unknown state
  return true;
}

bool HttpTransfer::retry_or_fail(ScrapeError e, std::string detail) {
  if (!fresh_) {
    response_.reset(max_body_, &out_->body);
    sent_ = 0;
    return open_connection();
  }
  return fail(e, std::move(detail));
}

void HttpTransfer::expire(std::chrono::milliseconds timeout) {
  if (finished()) return;
  fail(ScrapeError::Timeout, fmt::format("no complete answer within {} ms", timeout.count()));
}

void HttpTransfer::close_connection() {
  fd_.reset();  // closing removes it from the epoll set
  state_ = State::Closed;
}

}  // namespace kvlb
