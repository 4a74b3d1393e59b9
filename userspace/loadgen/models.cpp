#include "models.h"

#include <memory>
#include <stdexcept>

#include <curl/curl.h>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "common/printable.h"

namespace kvlb::loadgen {
namespace {

constexpr size_t kMaxBody = 1 << 20;

struct EasyDeleter {
  void operator()(CURL* e) const { curl_easy_cleanup(e); }
};
struct SlistDeleter {
  void operator()(curl_slist* l) const { curl_slist_free_all(l); }
};

size_t on_data(char* p, size_t size, size_t n, void* user) {
  auto* body = static_cast<std::string*>(user);
  if (body->size() + size * n > kMaxBody) return 0;  // curl fails the transfer: too large
  body->append(p, size * n);
  return size * n;
}

}  // namespace

std::string normalize_base_path(std::string p) {
  while (!p.empty() && p.back() == '/') p.pop_back();
  if (!p.empty() && p.front() != '/') p.insert(p.begin(), '/');
  return p;
}

std::vector<std::string> parse_model_list(const std::string& body) {
  auto j = nlohmann::json::parse(body, nullptr, false);
  if (j.is_discarded() || !j.is_object()) throw std::runtime_error("not a JSON object");
  auto data = j.find("data");
  if (data == j.end() || !data->is_array()) throw std::runtime_error("no \"data\" array");
  std::vector<std::string> ids;
  for (const auto& m : *data) {
    if (!m.is_object() || !m.contains("id") || !m["id"].is_string() ||
        m["id"].get<std::string>().empty())
      throw std::runtime_error("a model without a string \"id\"");
    ids.push_back(m["id"].get<std::string>());
  }
  return ids;
}

std::string discover_model(const ApiEndpoint& api, double timeout_s) {
  const std::string url = api.url("/models");
  std::unique_ptr<CURL, EasyDeleter> e(curl_easy_init());
  if (!e) throw std::runtime_error("curl_easy_init failed");
  std::string body;
  std::unique_ptr<curl_slist, SlistDeleter> headers;
  std::string auth = "Authorization: Bearer " + api.api_key;
  if (!api.api_key.empty()) headers.reset(curl_slist_append(nullptr, auth.c_str()));
  curl_easy_setopt(e.get(), CURLOPT_URL, url.c_str());
  curl_easy_setopt(e.get(), CURLOPT_HTTPHEADER, headers.get());
  curl_easy_setopt(e.get(), CURLOPT_WRITEFUNCTION, &on_data);
  curl_easy_setopt(e.get(), CURLOPT_WRITEDATA, &body);
  curl_easy_setopt(e.get(), CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(e.get(), CURLOPT_TIMEOUT_MS, static_cast<long>(timeout_s * 1000));
  curl_easy_setopt(e.get(), CURLOPT_PROTOCOLS_STR, "http,https");
  CURLcode rc = curl_easy_perform(e.get());
  if (rc != CURLE_OK)
    throw std::runtime_error(fmt::format("GET {}: {}", url, curl_easy_strerror(rc)));
  long code = 0;
  curl_easy_getinfo(e.get(), CURLINFO_RESPONSE_CODE, &code);
  if (code != 200)
    throw std::runtime_error(
        fmt::format("GET {}: HTTP {}{}", url, code, code == 401 ? " (give --api-key)" : ""));
  std::vector<std::string> ids;
  try {
    ids = parse_model_list(body);
  } catch (const std::exception& ex) {
    throw std::runtime_error(fmt::format("GET {}: {}", url, ex.what()));
  }
  if (ids.empty()) throw std::runtime_error(fmt::format("GET {}: the server lists no model", url));
  if (ids.size() > 1) {
    std::string names;
    for (const auto& id : ids) names += (names.empty() ? "" : ", ") + kvlb::quoted(id);
    throw std::runtime_error(
        fmt::format("GET {}: the server lists {} models ({}): choose one with --model", url,
                    ids.size(), names));
  }
  return ids.front();
}

}  // namespace kvlb::loadgen
