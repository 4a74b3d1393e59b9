#include "kube_client.h"

#include <curl/curl.h>
#include <yaml-cpp/yaml.h>

#include <cstdlib>
#include <fstream>
#include <memory>
#include <sstream>
#include <stdexcept>

#include <fmt/format.h>

namespace kvlb::k8s {
namespace fs = std::filesystem;

namespace {

std::string read_file(const fs::path& p) {
  std::ifstream in(p);
  if (!in) throw std::runtime_error("cannot read " + p.string());
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string trim(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == '\r' || s.back() == ' ')) s.pop_back();
  return s;
}

struct EasyDeleter {
  void operator()(CURL* c) const { curl_easy_cleanup(c); }
};
struct SlistDeleter {
  void operator()(curl_slist* l) const { curl_slist_free_all(l); }
};

}  // namespace

KubeConfig in_cluster_config(const fs::path& sa_dir) {
  const char* host = std::getenv("KUBERNETES_SERVICE_HOST");
  const char* port = std::getenv("KUBERNETES_SERVICE_PORT");
  if (!host || !port)
    throw std::runtime_error("not in a cluster: KUBERNETES_SERVICE_HOST/PORT are not set");
  KubeConfig c;
  std::string h = host;
  c.server =
      fmt::format("https://{}:{}", h.find(':') != std::string::npos ? "[" + h + "]" : h, port);
  c.ca_file = (sa_dir / "ca.crt").string();
  c.token_file = (sa_dir / "token").string();
  for (const auto& f : {c.ca_file, c.token_file})
    if (!fs::exists(f)) throw std::runtime_error("in-cluster config: " + f + " is missing");
  return c;
}

bool is_dns1123_label(std::string_view s) {
  if (s.empty() || s.size() > 63) return false;
  auto alnum = [](char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); };
  if (!alnum(s.front()) || !alnum(s.back())) return false;
  for (char c : s)
    if (!alnum(c) && c != '-') return false;
  return true;
}

bool is_dns1123_subdomain(std::string_view s) {
  if (s.empty() || s.size() > 253) return false;
  size_t start = 0;
  while (true) {
    size_t dot = s.find('.', start);
    auto label = s.substr(start, dot == std::string_view::npos ? s.npos : dot - start);
    if (!is_dns1123_label(label)) return false;
    if (dot == std::string_view::npos) return true;
    start = dot + 1;
  }
}

std::string url_encode(std::string_view s) {
  std::string out;
  for (unsigned char c : s) {
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
        c == '.' || c == '_' || c == '~')
      out.push_back(static_cast<char>(c));
    else
      out += fmt::format("%{:02X}", c);
  }
  return out;
}

KubeConfig kubeconfig_file(const fs::path& file, bool allow_insecure_http) {
  YAML::Node root;
  try {
    root = YAML::LoadFile(file.string());
  } catch (const YAML::Exception& e) {
    throw std::runtime_error(fmt::format("kubeconfig {}: {}", file.string(), e.what()));
  }
  auto fail = [&](const std::string& field) {
    return std::runtime_error(fmt::format("kubeconfig {}: {}", file.string(), field));
  };
  if (!root["current-context"]) throw fail("current-context is missing");
  auto current = root["current-context"].as<std::string>();
  auto find = [&](const char* list, const std::string& name) -> YAML::Node {
    for (const auto& item : root[list])
      if (item["name"] && item["name"].as<std::string>() == name) return item;
    throw fail(fmt::format("{} has no entry named '{}'", list, name));
  };
  auto ctx = find("contexts", current)["context"];
  if (!ctx || !ctx["cluster"] || !ctx["user"])
    throw fail("context '" + current + "' needs cluster and user");
  auto cluster = find("clusters", ctx["cluster"].as<std::string>())["cluster"];
  auto user = find("users", ctx["user"].as<std::string>())["user"];
  KubeConfig c;
  if (!cluster["server"]) throw fail("cluster server is missing");
  c.server = cluster["server"].as<std::string>();
  if (c.server.rfind("http://", 0) == 0) {
    if (!allow_insecure_http)
      throw fail("server " + c.server +
                 " is plain http: the bearer token would be sent in clear (use https, or set "
                 "kubernetes.allow_insecure_http: true in the agent's configuration)");
  } else if (c.server.rfind("https://", 0) != 0) {
    throw fail("server " + c.server + " is not an https:// URL");
  }
  auto rel = [&](const std::string& p) {
    fs::path x(p);
    return (x.is_relative() ? file.parent_path() / x : x).string();
  };
  if (cluster["certificate-authority"]) {
    c.ca_file = rel(cluster["certificate-authority"].as<std::string>());
  } else if (cluster["certificate-authority-data"]) {
    throw fail("certificate-authority-data is not supported; use certificate-authority (a file)");
  } else if (c.server.rfind("https://", 0) == 0) {
    throw fail("the cluster has no certificate-authority: the API server cannot be verified");
  }
  if (user["tokenFile"])
    c.token_file = rel(user["tokenFile"].as<std::string>());
  else if (user["token"])
    c.token = user["token"].as<std::string>();
  else
    throw fail("user needs token or tokenFile (client certificates are not supported)");
  return c;
}

KubeClient::KubeClient(KubeConfig cfg) : cfg_(std::move(cfg)) {
  static const CURLcode init = curl_global_init(CURL_GLOBAL_DEFAULT);
  if (init != CURLE_OK) throw std::runtime_error("curl_global_init failed");
}

std::string KubeClient::bearer() const {
  return cfg_.token_file.empty() ? cfg_.token : trim(read_file(cfg_.token_file));
}

namespace {

struct Transfer {
  CURL* easy = nullptr;
  std::string buf;
  const std::function<bool(std::string_view)>* on_line = nullptr;
  const std::function<bool()>* stop = nullptr;
  bool stopped = false;

  static size_t on_data(char* p, size_t s, size_t n, void* u) {
    auto* t = static_cast<Transfer*>(u);
    t->buf.append(p, s * n);
    long code = 0;
    curl_easy_getinfo(t->easy, CURLINFO_RESPONSE_CODE, &code);
    if (t->on_line && code == 200) {  // an error status carries a Status object, not events
      size_t pos;
      while ((pos = t->buf.find('\n')) != std::string::npos) {
        bool more = (*t->on_line)(std::string_view(t->buf.data(), pos));
        t->buf.erase(0, pos + 1);
        if (!more) {
          t->stopped = true;
          return 0;  // abort the transfer
        }
      }
    } else if (t->buf.size() > (64u << 20)) {
      return 0;
    }
    return s * n;
  }
  static int on_progress(void* u, curl_off_t, curl_off_t, curl_off_t, curl_off_t) {
    auto* t = static_cast<Transfer*>(u);
    if (t->stop && (*t->stop)()) {
      t->stopped = true;
      return 1;
    }
    return 0;
  }
};

// A request's method and body; GET with no body when method is empty.
struct Write {
  std::string_view method;
  const std::string* body = nullptr;
  std::string_view content_type;
};

KubeResponse perform(const KubeConfig& cfg, const std::string& token, const std::string& path,
                     Transfer& t, bool streaming, const Write& w = {}) {
  KubeResponse r;
  std::unique_ptr<CURL, EasyDeleter> c(curl_easy_init());
  if (!c) return {0, "", "curl_easy_init failed"};
  std::string url = cfg.server + path;
  std::unique_ptr<curl_slist, SlistDeleter> h(
      curl_slist_append(nullptr, "Accept: application/json"));
  std::string auth = "Authorization: Bearer " + token;
  h.reset(curl_slist_append(h.release(), auth.c_str()));
  std::string ctype = fmt::format("Content-Type: {}", w.content_type);
  if (!w.method.empty() && w.method != "GET") {
    std::string method(w.method);
    curl_easy_setopt(c.get(), CURLOPT_CUSTOMREQUEST, method.c_str());  // libcurl copies it
    static const std::string none;
    const std::string& body = w.body ? *w.body : none;
    // Always a Content-Type: libcurl would otherwise label the body a form.
    h.reset(curl_slist_append(h.release(), ctype.c_str()));
    // No "Expect: 100-continue": it would stall each larger write for a second
    // on a server that does not answer it.
    h.reset(curl_slist_append(h.release(), "Expect:"));
    // Always set, so an empty body goes out as Content-Length: 0.
    curl_easy_setopt(c.get(), CURLOPT_POSTFIELDS, body.data());
    curl_easy_setopt(c.get(), CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(body.size()));
  }
  t.easy = c.get();
  curl_easy_setopt(c.get(), CURLOPT_URL, url.c_str());
  curl_easy_setopt(c.get(), CURLOPT_HTTPHEADER, h.get());
  curl_easy_setopt(c.get(), CURLOPT_WRITEFUNCTION, &Transfer::on_data);
  curl_easy_setopt(c.get(), CURLOPT_WRITEDATA, &t);
  curl_easy_setopt(c.get(), CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(c.get(), CURLOPT_CONNECTTIMEOUT_MS, 5000L);
  curl_easy_setopt(c.get(), CURLOPT_SSL_VERIFYPEER, 1L);
  curl_easy_setopt(c.get(), CURLOPT_SSL_VERIFYHOST, 2L);
  if (!cfg.ca_file.empty()) curl_easy_setopt(c.get(), CURLOPT_CAINFO, cfg.ca_file.c_str());
  if (streaming) {
    curl_easy_setopt(c.get(), CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(c.get(), CURLOPT_XFERINFOFUNCTION, &Transfer::on_progress);
    curl_easy_setopt(c.get(), CURLOPT_XFERINFODATA, &t);
    // A watch that delivers nothing for this long is dead (bookmarks come every minute).
    curl_easy_setopt(c.get(), CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt(c.get(), CURLOPT_LOW_SPEED_TIME, 300L);
  } else {
    curl_easy_setopt(c.get(), CURLOPT_TIMEOUT_MS, 30000L);
  }
  CURLcode rc = curl_easy_perform(c.get());
  curl_easy_getinfo(c.get(), CURLINFO_RESPONSE_CODE, &r.status);
  if (rc != CURLE_OK && !t.stopped) r.error = curl_easy_strerror(rc);
  r.body = std::move(t.buf);
  return r;
}

}  // namespace

KubeResponse KubeClient::authorized(
    const std::function<KubeResponse(const std::string& token)>& run) const {
  std::string token;
  try {
    token = bearer();
  } catch (const std::exception& e) {
    return {0, "", e.what()};
  }
  return run(token);
}

KubeResponse KubeClient::get(const std::string& path) const {
  Transfer t;
  return authorized([&](const std::string& token) { return perform(cfg_, token, path, t, false); });
}

KubeResponse KubeClient::request(std::string_view method, const std::string& path,
                                 const std::string& body, std::string_view content_type) const {
  Transfer t;
  return authorized([&](const std::string& token) {
    return perform(cfg_, token, path, t, false, Write{method, &body, content_type});
  });
}

KubeResponse KubeClient::watch(const std::string& path,
                               const std::function<bool(std::string_view)>& on_line,
                               const std::function<bool()>& stop) const {
  Transfer t;
  t.on_line = &on_line;
  t.stop = &stop;
  return authorized([&](const std::string& token) { return perform(cfg_, token, path, t, true); });
}

}  // namespace kvlb::k8s
