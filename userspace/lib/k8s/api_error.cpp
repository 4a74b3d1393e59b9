#include "k8s/api_error.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

namespace kvlb::k8s {

std::string_view errc_name(ApiErrc c) {
  switch (c) {
    case ApiErrc::Transport:
      return "transport";
    case ApiErrc::BadRequest:
      return "bad request";
    case ApiErrc::Unauthorized:
      return "unauthorized";
    case ApiErrc::Forbidden:
      return "forbidden";
    case ApiErrc::NotFound:
      return "not found";
    case ApiErrc::Conflict:
      return "conflict";
    case ApiErrc::Invalid:
      return "invalid";
    case ApiErrc::Server:
      return "server error";
    case ApiErrc::Other:
      return "error";
    case ApiErrc::BadInput:
      return "bad input";
    case ApiErrc::BadResponse:
      return "bad response";
  }
  return "error";
}

std::string ApiError::text() const {
  if (status == 0) return fmt::format("{}: {}", errc_name(code), message);
  return fmt::format("HTTP {} {}: {}", status, reason.empty() ? errc_name(code) : reason, message);
}

ApiError api_error(const KubeResponse& r, std::string_view what) {
  ApiError e;
  e.status = r.status;
  if (!r.error.empty()) {
    e.code = ApiErrc::Transport;
    e.status = 0;
    e.message = fmt::format("{}: {}", what, r.error);
    return e;
  }
  switch (r.status) {
    case 400:
      e.code = ApiErrc::BadRequest;
      break;
    case 401:
      e.code = ApiErrc::Unauthorized;
      break;
    case 403:
      e.code = ApiErrc::Forbidden;
      break;
    case 404:
      e.code = ApiErrc::NotFound;
      break;
    case 409:
      e.code = ApiErrc::Conflict;
      break;
    case 422:
      e.code = ApiErrc::Invalid;
      break;
    default:
      e.code = r.status >= 500 ? ApiErrc::Server : ApiErrc::Other;
  }
  // The API server answers errors with a Status object; anything else (a proxy's
  // page) is quoted, shortened.
  auto st = nlohmann::json::parse(r.body, nullptr, false);
  if (st.is_object() && st.value("kind", "") == "Status") {
    if (st.contains("reason") && st["reason"].is_string()) e.reason = st["reason"];
    std::string msg =
        st.contains("message") && st["message"].is_string() ? st["message"].get<std::string>() : "";
    e.message = fmt::format("{}: {}", what, msg);
  } else {
    e.message = fmt::format("{}: {}", what, r.body.substr(0, 200));
  }
  return e;
}

ApiError bad_input(std::string message) {
  return ApiError{ApiErrc::BadInput, 0, "", std::move(message)};
}

ApiError bad_response(std::string_view what, std::string_view why) {
  return ApiError{ApiErrc::BadResponse, 0, "", fmt::format("{}: {}", what, why)};
}

}  // namespace kvlb::k8s
