#include "scraper.h"

#include <curl/curl.h>
#include <sys/socket.h>

#include <map>
#include <mutex>
#include <stdexcept>

#include <fmt/format.h>

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
    EasyPtr easy;
    ScrapeResult result;
    bool too_large = false;
    bool done = false;
    size_t limit = 0;
  };
  ScrapeOptions opts;
  MultiPtr multi;
  std::vector<std::unique_ptr<Target>> targets;

  static size_t on_data(char* data, size_t size, size_t n, void* user) {
    auto* t = static_cast<Target*>(user);
    size_t len = size * n;
    if (t->result.body.size() + len > t->limit) {
      t->too_large = true;
      return 0;  // aborts the transfer with CURLE_WRITE_ERROR
    }
    t->result.body.append(data, len);
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
};

Scraper::Scraper(ScrapeOptions opts) : impl_(std::make_unique<Impl>()) {
  global_init_once();
  impl_->opts = opts;
  impl_->multi.reset(curl_multi_init());
  if (!impl_->multi) throw std::runtime_error("curl_multi_init failed");
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
    t->easy = impl_->make_easy(t.get());
    impl_->targets.push_back(std::move(t));
  }
}

std::vector<ScrapeResult> Scraper::scrape_all() {
  CURLM* m = impl_->multi.get();
  auto start = std::chrono::steady_clock::now();
  for (auto& t : impl_->targets) {
    t->result = ScrapeResult{};
    t->too_large = false;
    t->done = false;
    curl_multi_add_handle(m, t->easy.get());
  }
  int running = 0;
  do {
    CURLMcode mc = curl_multi_perform(m, &running);
    if (mc != CURLM_OK) break;
    while (true) {
      int left = 0;
      CURLMsg* msg = curl_multi_info_read(m, &left);
      if (!msg) break;
      if (msg->msg != CURLMSG_DONE) continue;
      Impl::Target* t = nullptr;
      curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, reinterpret_cast<char**>(&t));
      t->done = true;
      auto& r = t->result;
      r.latency = std::chrono::steady_clock::now() - start;
      CURLcode rc = msg->data.result;
      curl_easy_getinfo(msg->easy_handle, CURLINFO_RESPONSE_CODE, &r.http_status);
      if (t->too_large) {
        r.error = ScrapeError::TooLarge;
        r.detail = fmt::format("body larger than {} bytes", t->limit);
      } else if (rc == CURLE_OPERATION_TIMEDOUT) {
        r.error = ScrapeError::Timeout;
        r.detail = fmt::format("no complete answer within {} ms", impl_->opts.timeout.count());
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
      curl_multi_remove_handle(m, msg->easy_handle);
    }
    if (running) curl_multi_poll(m, nullptr, 0, 100, nullptr);
  } while (running);
  // Anything still attached (multi error) is failed, never left dangling.
  std::vector<ScrapeResult> out;
  out.reserve(impl_->targets.size());
  for (auto& t : impl_->targets) {
    curl_multi_remove_handle(m, t->easy.get());
    if (!t->done) {
      t->result.error = ScrapeError::Other;
      t->result.detail = "transfer did not complete (curl multi error)";
      t->result.body.clear();
    }
    out.push_back(std::move(t->result));
  }
  return out;
}

}  // namespace kvlb
