#include "admin/admin_client.h"

#include <curl/curl.h>
#include <fmt/format.h>

#include <memory>

namespace kvlb::admin {

namespace {

constexpr size_t kMaxBody = 16u << 20;

struct Sink {
  std::string* body;
  bool too_big = false;
};

size_t write_cb(char* p, size_t s, size_t n, void* u) {
  auto* sink = static_cast<Sink*>(u);
  if (sink->body->size() + s * n > kMaxBody) {
    sink->too_big = true;
    return 0;  // curl aborts the transfer
  }
  sink->body->append(p, s * n);
  return s * n;
}

}  // namespace

Reply call(const std::string& socket, const std::string& method, const std::string& path) {
  Reply r;
  std::unique_ptr<CURL, void (*)(CURL*)> c(curl_easy_init(), curl_easy_cleanup);
  if (!c) return {0, "", "curl_easy_init failed"};
  std::string url = "http://kvlb" + path;
  Sink sink{&r.body};
  curl_easy_setopt(c.get(), CURLOPT_UNIX_SOCKET_PATH, socket.c_str());
  curl_easy_setopt(c.get(), CURLOPT_URL, url.c_str());
  curl_easy_setopt(c.get(), CURLOPT_CUSTOMREQUEST, method.c_str());
  curl_easy_setopt(c.get(), CURLOPT_TIMEOUT_MS, 5000L);
  curl_easy_setopt(c.get(), CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(c.get(), CURLOPT_WRITEFUNCTION, write_cb);
  curl_easy_setopt(c.get(), CURLOPT_WRITEDATA, &sink);
  CURLcode rc = curl_easy_perform(c.get());
  if (sink.too_big)
    r.error = fmt::format("the answer from {} is larger than {} bytes", socket, kMaxBody);
  else if (rc != CURLE_OK)
    r.error = fmt::format("cannot reach {}: {}", socket, curl_easy_strerror(rc));
  curl_easy_getinfo(c.get(), CURLINFO_RESPONSE_CODE, &r.status);
  return r;
}

}  // namespace kvlb::admin
