// kube_client.h - a small Kubernetes API client over libcurl: GET, writes
// (merge patch, POST, PUT), and watch streams delivered line by line. TLS is verified against the
// cluster CA; the bearer token is re-read from its file on every request (projected service-account
// tokens rotate).
#pragma once

#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

namespace kvlb::k8s {

struct KubeConfig {
  std::string server;      // https://host:port
  std::string ca_file;     // PEM bundle that signs the API server's certificate
  std::string token_file;  // re-read on every request; or:
  std::string token;       // a fixed token (kubeconfig users[].user.token)
};

// In-cluster: KUBERNETES_SERVICE_HOST / KUBERNETES_SERVICE_PORT and the
// service-account directory (token, ca.crt). Throws std::runtime_error naming
// what is missing.
KubeConfig in_cluster_config(
    const std::filesystem::path& sa_dir = "/var/run/secrets/kubernetes.io/serviceaccount");

// A kubeconfig file's current context: cluster server and certificate-authority
// (a file path; certificate-authority-data is written next to the cache dir),
// user token or tokenFile. Throws std::runtime_error naming the field.
// A server that is not https:// is refused (the bearer token would go out in
// clear) unless `allow_insecure_http` is set, for http:// only.
KubeConfig kubeconfig_file(const std::filesystem::path& file, bool allow_insecure_http = false);

// A DNS-1123 label (namespaces, Service names): lower-case alphanumerics and
// '-', starting and ending alphanumeric, at most 63 characters. What the API
// server itself accepts; checked before a name goes into a request path.
bool is_dns1123_label(std::string_view s);

// A DNS-1123 subdomain (Deployment, Pod, Lease, Event names): dot-separated
// DNS-1123 labels, at most 253 characters in all.
bool is_dns1123_subdomain(std::string_view s);

// Percent-encodes everything but RFC 3986 unreserved characters, for a value
// going into a query string (a label selector carries '=' and ',').
std::string url_encode(std::string_view s);

struct KubeResponse {
  long status = 0;    // HTTP status (0: no response)
  std::string body;   // response body (for watch: what was not a full line)
  std::string error;  // transport error, empty when the request completed
  bool ok() const { return error.empty() && status == 200; }
  // Any 2xx: a create answers 201 Created.
  bool success() const { return error.empty() && status >= 200 && status < 300; }
};

// Content types of the writes.
inline constexpr std::string_view kJson = "application/json";
inline constexpr std::string_view kMergePatch = "application/merge-patch+json";

class KubeClient {
 public:
  explicit KubeClient(KubeConfig cfg);
  const KubeConfig& config() const { return cfg_; }

  KubeResponse get(const std::string& path_and_query) const;

  // Any method with a body (empty body: none sent), under the same bounds as
  // get(): connect and total timeouts, response size.
  KubeResponse request(std::string_view method, const std::string& path_and_query,
                       const std::string& body, std::string_view content_type) const;
  // RFC 7386 JSON merge patch (application/merge-patch+json).
  KubeResponse patch_merge(const std::string& path, const std::string& json_body) const {
    return request("PATCH", path, json_body, kMergePatch);
  }
  KubeResponse post(const std::string& path, const std::string& body) const {
    return request("POST", path, body, kJson);
  }
  KubeResponse put(const std::string& path, const std::string& body) const {
    return request("PUT", path, body, kJson);
  }

  // Streams a watch request: on_line gets each complete line (one JSON event);
  // returning false from it, or `stop` becoming true, ends the stream early.
  KubeResponse watch(const std::string& path_and_query,
                     const std::function<bool(std::string_view)>& on_line,
                     const std::function<bool()>& stop) const;

 private:
  std::string bearer() const;
  // Runs `run` with the bearer token, or answers the token file's error.
  KubeResponse authorized(const std::function<KubeResponse(const std::string& token)>& run) const;
  KubeConfig cfg_;
};

}  // namespace kvlb::k8s
