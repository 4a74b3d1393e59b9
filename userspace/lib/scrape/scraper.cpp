#include "scraper.h"

#include <curl/curl.h>
#include <sys/epoll.h>
#include <sys/socket.h>

#include <algorithm>
#include <array>
#include <map>
#include <optional>
#include <system_error>
#include <mutex>
#include <stdexcept>

#include <fmt/format.h>

#include "common/unique_fd.h"
#include "scrape/http_transfer.h"

namespace kvlb {
namespace {

struct EasyDeleter {
  void operator()(CURL* c) const { curl_easy_cleanup(c); }
};
struct MultiDeleter {
  void operator()(CURLM* m) const { curl_multi_cleanup(m); }
};
using EasyPtr = std::unique_ptr<CURL, EasyDeleter>;
using MultiPtr = std::unique_ptr<CURLM, MultiDeleter>;

void global_init_once() {
  static std::once_flag once;
  std::call_once(once, [] {
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
      throw std::runtime_error("curl_global_init failed");
  });
}

}  // namespace

std::string_view scrape_error_name(ScrapeError e) {
  switch (e) {
    case ScrapeError::None:
      return "none";
    case ScrapeError::Timeout:
      return "timeout";
    case ScrapeError::TooLarge:
      return "too_large";
    case ScrapeError::Connect:
      return "connect";
    case ScrapeError::HttpStatus:
      return "http_status";
    case ScrapeError::Other:
      return "other";
  }
  return "other";
}

struct Scraper::Impl {
  struct Target {
    std::string url;
    EasyPtr easy;                        // libcurl, or
    std::optional<HttpTransfer> native;  // kvlb's own transfer
    ScrapeResult* result = nullptr;      // this round's slot in `results`
    bool too_large = false;
    bool done = false;
    size_t limit = 0;
  };
  ScrapeOptions opts;
  MultiPtr multi;
  UniqueFd epoll;
  // curl's single timer: when to call socket_action(CURL_SOCKET_TIMEOUT).
  std::optional<std::chrono::steady_clock::time_point> deadline;
  std::vector<std::unique_ptr<Target>> targets;
  std::vector<ScrapeResult> results;

  static size_t on_data(char* data, size_t size, size_t n, void* user) {
    auto* t = static_cast<Target*>(user);
    size_t len = size * n;
    if (t->result->body.size() + len > t->limit) {
      t->too_large = true;
      return 0;  // aborts the transfer with CURLE_WRITE_ERROR
    }
    t->result->body.append(data, len);
    return len;
  }

  // Marks scrape sockets so the socket LB never rebalances them (SO_MARK needs
  // CAP_NET_ADMIN; without it the scrape still goes out, unmarked).
  static int on_socket(void* user, curl_socket_t fd, curlsocktype purpose) {
    auto mark = *static_cast<uint32_t*>(user);
    if (purpose == CURLSOCKTYPE_IPCXN && mark)
      setsockopt(fd, SOL_SOCKET, SO_MARK, &mark, sizeof(mark));
    return CURL_SOCKOPT_OK;
  }

  // curl tells which sockets to watch for what; they go into the epoll set.
  static int on_watch(CURL*, curl_socket_t fd, int what, void* user, void* known) {
    auto* self = static_cast<Impl*>(user);
    if (what == CURL_POLL_REMOVE) {
      epoll_ctl(self->epoll.get(), EPOLL_CTL_DEL, fd, nullptr);
      return 0;
    }
    epoll_event ev{};
    ev.events = ((what & CURL_POLL_IN) ? EPOLLIN : 0u) | ((what & CURL_POLL_OUT) ? EPOLLOUT : 0u);
    ev.data.u64 = curl_tag(fd);
    // ADD for a socket curl has not told us about, MOD after; either falls back
    // to the other (a reused keep-alive socket may or may not still be in the set).
    const int e = self->epoll.get();
    if (known) {
      if (epoll_ctl(e, EPOLL_CTL_MOD, fd, &ev) != 0 && errno == ENOENT)
        epoll_ctl(e, EPOLL_CTL_ADD, fd, &ev);
    } else {
      if (epoll_ctl(e, EPOLL_CTL_ADD, fd, &ev) != 0 && errno == EEXIST)
        epoll_ctl(e, EPOLL_CTL_MOD, fd, &ev);
      curl_multi_assign(self->multi.get(), fd, self);  // any non-null: "known"
    }
    return 0;
  }

  // Epoll event data: curl's sockets are tagged (fd << 1) | 1; kvlb's own
  // transfers carry their Target pointer (aligned: low bit 0).
  static uint64_t curl_tag(int fd) { return (static_cast<uint64_t>(fd) << 1) | 1u; }

  static int on_timer(CURLM*, long timeout_ms, void* user) {
    auto* self = static_cast<Impl*>(user);
    if (timeout_ms < 0)
      self->deadline.reset();
    else
      self->deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
    return 0;
  }

  EasyPtr make_easy(Target* t) {
    EasyPtr e(curl_easy_init());
    if (!e) throw std::runtime_error("curl_easy_init failed");
    curl_easy_setopt(e.get(), CURLOPT_URL, t->url.c_str());
    curl_easy_setopt(e.get(), CURLOPT_WRITEFUNCTION, &Impl::on_data);
    curl_easy_setopt(e.get(), CURLOPT_WRITEDATA, t);
    curl_easy_setopt(e.get(), CURLOPT_PRIVATE, t);
    curl_easy_setopt(e.get(), CURLOPT_TIMEOUT_MS, static_cast<long>(opts.timeout.count()));
    curl_easy_setopt(e.get(), CURLOPT_CONNECTTIMEOUT_MS, static_cast<long>(opts.timeout.count()));
    curl_easy_setopt(e.get(), CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e.get(), CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(e.get(), CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e.get(), CURLOPT_ACCEPT_ENCODING, "");  // gzip if offered
    curl_easy_setopt(e.get(), CURLOPT_USERAGENT, "kvlb-agent/0.1");
    if (opts.socket_mark) {
      curl_easy_setopt(e.get(), CURLOPT_SOCKOPTFUNCTION, &Impl::on_socket);
      curl_easy_setopt(e.get(), CURLOPT_SOCKOPTDATA, &opts.socket_mark);
    }
    static const char* kAccept = "Accept: text/plain;version=0.0.4";
    static curl_slist accept_header{const_cast<char*>(kAccept), nullptr};
    curl_easy_setopt(e.get(), CURLOPT_HTTPHEADER, &accept_header);
    return e;
  }

  // Records the outcome of a finished transfer and detaches its handle.
  void finish(CURLMsg* msg, std::chrono::steady_clock::time_point start) {
    Target* t = nullptr;
    curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, reinterpret_cast<char**>(&t));
    t->done = true;
    auto& r = *t->result;
    r.latency = std::chrono::steady_clock::now() - start;
    CURLcode rc = msg->data.result;
    curl_easy_getinfo(msg->easy_handle, CURLINFO_RESPONSE_CODE, &r.http_status);
    if (t->too_large) {
      r.error = ScrapeError::TooLarge;
      r.detail = fmt::format("body larger than {} bytes", t->limit);
    } else if (rc == CURLE_OPERATION_TIMEDOUT) {
      r.error = ScrapeError::Timeout;
      r.detail = fmt::format("no complete answer within {} ms", opts.timeout.count());
    } else if (rc == CURLE_COULDNT_CONNECT || rc == CURLE_COULDNT_RESOLVE_HOST) {
      r.error = ScrapeError::Connect;
      r.detail = curl_easy_strerror(rc);
    } else if (rc != CURLE_OK) {
      r.error = ScrapeError::Other;
      r.detail = curl_easy_strerror(rc);
    } else if (r.http_status != 200) {
      r.error = ScrapeError::HttpStatus;
      r.detail = fmt::format("HTTP status {}", r.http_status);
    }
    if (!r.ok()) r.body.clear();
    curl_multi_remove_handle(multi.get(), msg->easy_handle);
  }

  void drain_done(std::chrono::steady_clock::time_point start) {
    int left = 0;
    while (CURLMsg* msg = curl_multi_info_read(multi.get(), &left))
      if (msg->msg == CURLMSG_DONE) finish(msg, start);
  }
};

Scraper::Scraper(ScrapeOptions opts) : impl_(std::make_unique<Impl>()) {
  global_init_once();
  impl_->opts = opts;
  impl_->multi.reset(curl_multi_init());
  if (!impl_->multi) throw std::runtime_error("curl_multi_init failed");
  impl_->epoll = UniqueFd(::epoll_create1(EPOLL_CLOEXEC));
  if (!impl_->epoll) throw std::system_error(errno, std::generic_category(), "epoll_create1");
  CURLM* m = impl_->multi.get();
  curl_multi_setopt(m, CURLMOPT_SOCKETFUNCTION, &Impl::on_watch);
  curl_multi_setopt(m, CURLMOPT_SOCKETDATA, impl_.get());
  curl_multi_setopt(m, CURLMOPT_TIMERFUNCTION, &Impl::on_timer);
  curl_multi_setopt(m, CURLMOPT_TIMERDATA, impl_.get());
}

Scraper::~Scraper() = default;

void Scraper::set_targets(const std::vector<std::string>& urls) {
  std::map<std::string, std::unique_ptr<Impl::Target>> old;
  for (auto& t : impl_->targets) old.emplace(t->url, std::move(t));
  impl_->targets.clear();
  for (const auto& url : urls) {
    auto it = old.find(url);
    if (it != old.end()) {
      impl_->targets.push_back(std::move(it->second));
      old.erase(it);
      continue;
    }
    auto t = std::make_unique<Impl::Target>();
    t->url = url;
    t->limit = impl_->opts.max_body_bytes;
    if (impl_->opts.client == ScrapeClient::Auto)
      t->native = HttpTransfer::for_url(url, impl_->opts.max_body_bytes, impl_->opts.socket_mark);
    if (!t->native) t->easy = impl_->make_easy(t.get());
    impl_->targets.push_back(std::move(t));
  }
  impl_->results.resize(impl_->targets.size());
  // One idle connection per target must survive between rounds. curl's default
  // cache limit is four per easy handle *attached*: as finished transfers are
  // detached during a round the limit shrinks and curl closes idle connections,
  // so most targets would reconnect every round (measured: a connect() per
  // scrape at 1,000 targets).
  curl_multi_setopt(impl_->multi.get(), CURLMOPT_MAXCONNECTS,
                    static_cast<long>(impl_->targets.size() + 16));
}

const std::vector<ScrapeResult>& Scraper::scrape_all() {
  CURLM* m = impl_->multi.get();
  auto& results = impl_->results;
  const auto start = std::chrono::steady_clock::now();
  const auto round_deadline = start + impl_->opts.timeout;
  size_t native_running = 0, curl_added = 0;
  for (size_t i = 0; i < impl_->targets.size(); ++i) {
    auto& t = *impl_->targets[i];
    auto& r = results[i];
    r.error = ScrapeError::None;
    r.detail.clear();
    r.http_status = 0;
    r.body.clear();  // keeps its capacity: no allocation once warmed up
    r.latency = {};
    t.result = &r;
    t.too_large = false;
    t.done = false;
    if (t.native) {
      if (!t.native->start(impl_->epoll.get(), &t, &r, start, round_deadline))
        ++native_running;
      else
        t.done = true;
    } else {
      curl_multi_add_handle(m, t.easy.get());
      ++curl_added;
    }
  }
  int running = 0;
  CURLMcode mc = CURLM_OK;
  if (curl_added) {
    mc = curl_multi_socket_action(m, CURL_SOCKET_TIMEOUT, 0, &running);
    impl_->drain_done(start);
  }
  std::array<epoll_event, 64> events;
  while ((mc == CURLM_OK && running > 0) || native_running > 0) {
    // Sleep until a socket is ready, curl's timer is due or the round's
    // deadline passes (at most 100 ms: a safety net, not a schedule).
    auto now = std::chrono::steady_clock::now();
    auto wake = std::min(now + std::chrono::milliseconds(100), round_deadline);
    if (running > 0 && impl_->deadline) wake = std::min(wake, *impl_->deadline);
    int wait_ms = static_cast<int>(
        std::max<int64_t>(0, std::chrono::ceil<std::chrono::milliseconds>(wake - now).count()));
    int n = epoll_wait(impl_->epoll.get(), events.data(), static_cast<int>(events.size()), wait_ms);
    if (n < 0 && errno != EINTR) break;
    for (int i = 0; i < n; ++i) {
      const uint64_t tag = events[i].data.u64;
      if (tag & 1u) {
        if (mc != CURLM_OK) continue;
        int flags = ((events[i].events & EPOLLIN) ? CURL_CSELECT_IN : 0) |
                    ((events[i].events & EPOLLOUT) ? CURL_CSELECT_OUT : 0) |
                    ((events[i].events & (EPOLLERR | EPOLLHUP)) ? CURL_CSELECT_ERR : 0);
        mc = curl_multi_socket_action(m, static_cast<int>(tag >> 1), flags, &running);
        continue;
      }
      auto* t = static_cast<Impl::Target*>(events[i].data.ptr);
      const bool was_done = t->done;
      if (t->native->on_event(events[i].events) && !was_done) {
        t->done = true;
        --native_running;
      }
    }
    now = std::chrono::steady_clock::now();
    // curl's timer drives its connects, timeouts and newly added transfers.
    if (running > 0 && mc == CURLM_OK && (n <= 0 || (impl_->deadline && *impl_->deadline <= now)))
      mc = curl_multi_socket_action(m, CURL_SOCKET_TIMEOUT, 0, &running);
    if (running > 0 || curl_added) impl_->drain_done(start);
    if (now >= round_deadline) {
      // The round's deadline holds for every target, whatever either client is
      // in the middle of: what is still running fails as a timeout.
      for (auto& t : impl_->targets) {
        if (t->done) continue;
        if (t->native) {
          t->native->expire(impl_->opts.timeout);
        } else {
          curl_multi_remove_handle(m, t->easy.get());
          t->result->error = ScrapeError::Timeout;
          t->result->detail =
              fmt::format("no complete answer within {} ms", impl_->opts.timeout.count());
          t->result->body.clear();
          t->result->latency = now - start;
        }
        t->done = true;
      }
      native_running = 0;
      break;
    }
  }
  // Anything still attached (multi error) is failed, never left dangling.
  for (size_t i = 0; i < impl_->targets.size(); ++i) {
    auto& t = *impl_->targets[i];
    if (t.done) continue;
    if (t.easy) curl_multi_remove_handle(m, t.easy.get());
    results[i].error = ScrapeError::Other;
    results[i].detail =
        fmt::format("transfer did not complete (curl multi error: {})", curl_multi_strerror(mc));
    results[i].body.clear();
  }
  return results;
}

}  // namespace kvlb
