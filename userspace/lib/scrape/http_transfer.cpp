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
#include "common/printable.h"
#include "common/strings.h"

namespace kvlb {
namespace {

constexpr size_t kReadChunk = 16 * 1024;
constexpr size_t kMaxHeaderBytes = 64 * 1024;
constexpr size_t kMaxChunkHeaderBytes = 1024;  // "<hex size>[;extensions]"
constexpr size_t kMaxTrailerBytes = 16 * 1024;

// Case-insensitive search for a token in a comma-separated header value.
bool has_token(std::string_view value, std::string_view token) {
  size_t pos = 0;
  while (pos <= value.size()) {
    size_t end = value.find(',', pos);
    if (end == std::string_view::npos) end = value.size();
    if (iequals(trim_blanks(value.substr(pos, end - pos)), token)) return true;
    pos = end + 1;
  }
  return false;
}

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

size_t HttpTransfer::max_wire_bytes() const {
  return 2 * max_body_ + kMaxHeaderBytes;
}

bool HttpTransfer::start(int epoll_fd, void* tag, ScrapeResult* out, Clock::time_point round_start,
                         Clock::time_point deadline) {
  epoll_fd_ = epoll_fd;
  tag_ = tag;
  out_ = out;
  start_ = round_start;
  deadline_ = deadline;
  len_ = received_ = head_scan_ = 0;
  header_end_ = 0;
  chunked_ = close_delimited_ = chunk_crlf_ = in_trailer_ = false;
  keep_alive_ = true;
  content_length_ = scan_ = chunk_left_ = trailer_bytes_ = 0;
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
    if (buf_.size() < len_ + kReadChunk) buf_.resize(std::max(len_ + kReadChunk, buf_.size() * 2));
    ssize_t n = ::recv(fd_.get(), buf_.data() + len_, kReadChunk, 0);
    if (n > 0) {
      len_ += static_cast<size_t>(n);
      received_ += static_cast<size_t>(n);
      if (received_ > max_wire_bytes())
        return fail(ScrapeError::TooLarge,
                    fmt::format("answer larger than {} bytes on the wire", max_wire_bytes()));
      int r = parse();
      if (r != 0) return true;
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return false;
    if (n == 0) {
      if (close_delimited_ && header_end_) return complete(false);
      if (received_ == 0)
        return retry_or_fail(ScrapeError::Other, "connection closed before any answer");
      return fail(ScrapeError::Other, "connection closed in the middle of the answer");
    }
    int err = errno;
    if (received_ == 0)
      return retry_or_fail(ScrapeError::Other, fmt::format("recv: {}", std::strerror(err)));
    return fail(ScrapeError::Other, fmt::format("recv: {}", std::strerror(err)));
  }
}

int HttpTransfer::parse() {
  if (!header_end_) {
    int r = parse_head();
    if (r != 1) return r;
  }
  const std::string_view raw = this->raw();
  const size_t body_bytes = raw.size() - header_end_;
  if (chunked_) return parse_chunked();
  if (close_delimited_) {
    if (body_bytes > max_body_) {
      fail(ScrapeError::TooLarge, fmt::format("body larger than {} bytes", max_body_));
      return -1;
    }
    return 0;  // complete at EOF
  }
  if (body_bytes < content_length_) return 0;
  if (body_bytes > content_length_) {
    fail(ScrapeError::Other, "more bytes than Content-Length");
    return -1;
  }
  out_->body.assign(raw.substr(header_end_, content_length_));
  complete(keep_alive_);
  return 1;
}

// The status line and headers: 1 once complete (header_end_ set), 0 for more, -1 failed.
int HttpTransfer::parse_head() {
  const std::string_view raw = this->raw();
  // Resume where the last search stopped (a head dripped byte by byte must not
  // be searched from its start on every read).
  size_t end = raw.find("\r\n\r\n", head_scan_);
  if (end == std::string_view::npos) {
    if (raw.size() > kMaxHeaderBytes) {
      fail(ScrapeError::Other, "response headers larger than 64 KiB");
      return -1;
    }
    head_scan_ = raw.size() > 3 ? raw.size() - 3 : 0;
    return 0;
  }
  header_end_ = end + 4;
  std::string_view head = raw.substr(0, end);
  size_t eol = head.find("\r\n");
  std::string_view status_line = head.substr(0, eol);
  // "HTTP/1.1 200 OK"
  if (status_line.size() < 12 || status_line.substr(0, 5) != "HTTP/" || status_line[8] != ' ') {
    fail(ScrapeError::Other, "not an HTTP/1.x response");
    return -1;
  }
  const bool http10 = status_line.substr(5, 3) == "1.0";
  long status = 0;
  auto [p, ec] = std::from_chars(status_line.data() + 9, status_line.data() + 12, status);
  if (ec != std::errc() || p != status_line.data() + 12) {
    fail(ScrapeError::Other, "malformed HTTP status line");
    return -1;
  }
  out_->http_status = status;
  keep_alive_ = !http10;
  bool have_length = false;
  size_t pos = eol == std::string_view::npos ? head.size() : eol + 2;
  while (pos < head.size()) {
    size_t next = head.find("\r\n", pos);
    if (next == std::string_view::npos) next = head.size();
    auto line = head.substr(pos, next - pos);
    pos = next + 2;
    size_t colon = line.find(':');
    if (colon == std::string_view::npos) continue;
    auto name = line.substr(0, colon);
    auto value = trim_blanks(line.substr(colon + 1));
    if (iequals(name, "content-length")) {
      size_t v = 0;
      auto [q, e2] = std::from_chars(value.data(), value.data() + value.size(), v);
      if (e2 != std::errc() || q != value.data() + value.size()) {
        fail(ScrapeError::Other, "malformed Content-Length");
        return -1;
      }
      content_length_ = v;
      have_length = true;
    } else if (iequals(name, "transfer-encoding")) {
      chunked_ = has_token(value, "chunked");
    } else if (iequals(name, "connection")) {
      if (has_token(value, "close")) keep_alive_ = false;
      if (has_token(value, "keep-alive")) keep_alive_ = true;
    } else if (iequals(name, "content-encoding") && !iequals(value, "identity")) {
      // The value comes from the replica: quoted and escaped, never raw into a log.
      fail(ScrapeError::Other, fmt::format("unsupported Content-Encoding {}", quoted(value)));
      return -1;
    }
  }
  if (status != 200) {
    fail(ScrapeError::HttpStatus, fmt::format("HTTP status {}", status));
    return -1;
  }
  if (!chunked_ && have_length && content_length_ > max_body_) {
    fail(ScrapeError::TooLarge, fmt::format("body larger than {} bytes", max_body_));
    return -1;
  }
  close_delimited_ = !chunked_ && !have_length;
  if (close_delimited_) keep_alive_ = false;
  scan_ = header_end_;
  return 1;
}

int HttpTransfer::parse_chunked() {
  int r = 0;
  for (;;) {
    const std::string_view raw = this->raw();
    if (in_trailer_) {
      r = parse_trailer();
      break;
    }
    if (chunk_left_ > 0) {
      size_t take = std::min(chunk_left_, raw.size() - scan_);
      out_->body.append(raw.substr(scan_, take));
      scan_ += take;
      chunk_left_ -= take;
      if (chunk_left_ > 0) break;
      chunk_crlf_ = true;
    }
    if (chunk_crlf_) {
      if (raw.size() - scan_ < 2) break;
      if (raw.substr(scan_, 2) != "\r\n") {
        fail(ScrapeError::Other, "malformed chunked encoding");
        return -1;
      }
      scan_ += 2;
      chunk_crlf_ = false;
    }
    size_t eol = raw.find("\r\n", scan_);
    if (eol == std::string_view::npos) {
      if (raw.size() - scan_ > kMaxChunkHeaderBytes) {
        fail(ScrapeError::Other,
             fmt::format("chunk header longer than {} bytes", kMaxChunkHeaderBytes));
        return -1;
      }
      break;
    }
    std::string_view size_text = raw.substr(scan_, eol - scan_);
    size_text = size_text.substr(0, size_text.find(';'));  // chunk extensions
    size_t size = 0;
    auto [p, ec] = std::from_chars(size_text.data(), size_text.data() + size_text.size(), size, 16);
    if (ec == std::errc::result_out_of_range) {
      fail(ScrapeError::TooLarge, fmt::format("body larger than {} bytes", max_body_));
      return -1;
    }
    if (ec != std::errc() || p == size_text.data()) {
      fail(ScrapeError::Other, "malformed chunk size");
      return -1;
    }
    scan_ = eol + 2;
    if (size == 0) {
      in_trailer_ = true;  // then optional trailer lines and an empty line
      continue;
    }
    // body.size() <= max_body_ holds, so this cannot wrap (a sum could).
    if (size > max_body_ - out_->body.size()) {
      fail(ScrapeError::TooLarge, fmt::format("body larger than {} bytes", max_body_));
      return -1;
    }
    chunk_left_ = size;
  }
  if (r != 0) return r;
  // Drop what was parsed: the buffer keeps only an unfinished line or chunk.
  if (scan_ > header_end_) {
    std::memmove(buf_.data() + header_end_, buf_.data() + scan_, len_ - scan_);
    len_ -= scan_ - header_end_;
    scan_ = header_end_;
  }
  return 0;
}

// Trailer lines after the last chunk, up to the empty line: 1 complete, 0 more,
// -1 failed. Each line is looked at once; their total is bounded.
int HttpTransfer::parse_trailer() {
  const std::string_view raw = this->raw();
  for (;;) {
    size_t eol = raw.find("\r\n", scan_);
    if (eol == std::string_view::npos) {
      if (trailer_bytes_ + (raw.size() - scan_) > kMaxTrailerBytes) break;
      return 0;
    }
    const size_t line = eol - scan_;
    scan_ = eol + 2;
    trailer_bytes_ += line + 2;
    if (trailer_bytes_ > kMaxTrailerBytes) break;
    if (line > 0) continue;
    if (scan_ != raw.size()) {
      fail(ScrapeError::Other, "bytes after the last chunk");
      return -1;
    }
    complete(keep_alive_);
    return 1;
  }
  fail(ScrapeError::Other, fmt::format("chunked trailer longer than {} bytes", kMaxTrailerBytes));
  return -1;
}

bool HttpTransfer::complete(bool keep_alive) {
  if (close_delimited_) {
    if (len_ - header_end_ > max_body_)
      return fail(ScrapeError::TooLarge, fmt::format("body larger than {} bytes", max_body_));
    out_->body.assign(raw().substr(header_end_));
  }
  out_->latency = Clock::now() - start_;
  if (keep_alive) {
    state_ = State::Idle;
  } else {
    close_connection();
  }
  return true;
}

bool HttpTransfer::fail(ScrapeError e, std::string detail) {
  out_->error = e;
  out_->detail = std::move(detail);
  out_->body.clear();
  out_->latency = Clock::now() - start_;
  close_connection();  // never reuse a connection in an unknown state
  return true;
}

bool HttpTransfer::retry_or_fail(ScrapeError e, std::string detail) {
  if (!fresh_) {
    len_ = 0;
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
