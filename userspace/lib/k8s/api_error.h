// api_error.h - a failed Kubernetes API call as a value: what was attempted,
// the HTTP status, and the API server's own reason and message (from its Status
// object). The write helpers (workload_scale, pods, leader_election, events)
// return these instead of throwing, so a caller can tell "forbidden" (fix RBAC)
// from "not found" (fix the config) from "conflict" (retry).
#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <variant>

#include "k8s/kube_client.h"

namespace kvlb::k8s {

enum class ApiErrc {
  Transport,     // no HTTP response (connect, TLS, timeout, token file)
  BadRequest,    // 400
  Unauthorized,  // 401
  Forbidden,     // 403: RBAC
  NotFound,      // 404
  Conflict,      // 409: a resourceVersion precondition failed, or the object already exists
  Invalid,       // 422: the server rejected the object's contents
  Server,        // 5xx
  Other,         // any other status
  BadInput,      // refused before sending (a name that is not a valid DNS-1123 name, ...)
  BadResponse,   // a 2xx whose body is not what the API defines
};

std::string_view errc_name(ApiErrc c);

struct ApiError {
  ApiErrc code = ApiErrc::Other;
  long status = 0;      // HTTP status, 0 when there was none
  std::string reason;   // the Status object's reason (Forbidden, NotFound, AlreadyExists, ...)
  std::string message;  // what was attempted, then the server's message
  // "patch deployments/scale default/llm: HTTP 403 Forbidden: <server message>"
  std::string text() const;
};

// The error of a response that is not success(): `what` names the attempt.
ApiError api_error(const KubeResponse& r, std::string_view what);
ApiError bad_input(std::string message);
ApiError bad_response(std::string_view what, std::string_view why);

// A value or an ApiError (std::expected is C++23).
template <class T>
class ApiResult {
 public:
  ApiResult(T v) : v_(std::move(v)) {}         // NOLINT: implicit by design
  ApiResult(ApiError e) : v_(std::move(e)) {}  // NOLINT
  bool ok() const { return v_.index() == 0; }
  explicit operator bool() const { return ok(); }
  const T& value() const { return std::get<0>(v_); }
  T& value() { return std::get<0>(v_); }
  const T& operator*() const { return value(); }
  const T* operator->() const { return &value(); }
  const ApiError& error() const { return std::get<1>(v_); }

 private:
  std::variant<T, ApiError> v_;
};

}  // namespace kvlb::k8s
