// models.h - which model to ask for: the server's own list (GET <base>/models,
// as the OpenAI SDKs and vLLM's benchmark_serving do when no model is given).
#pragma once

#include <string>
#include <vector>

namespace kvlb::loadgen {

// Where and how to reach an OpenAI-compatible API: the server's base URL
// (http://host:port), the API's path on it ("/v1", or a gateway's prefix) and
// the bearer token (empty: none).
struct ApiEndpoint {
  std::string base_url;
  std::string base_path = "/v1";
  std::string api_key;
  std::string url(const std::string& route) const { return base_url + base_path + route; }
};

// The ids of a /models response body ({"object":"list","data":[{"id":...}]}).
// Throws std::runtime_error saying what is wrong with the body.
std::vector<std::string> parse_model_list(const std::string& body);

// The model to use when none is given: the only model the server lists. Throws
// std::runtime_error naming the URL and the reason (unreachable, HTTP status,
// not a model list, none, or several: then --model must choose). The response is
// read up to 1 MiB and for at most timeout_s.
std::string discover_model(const ApiEndpoint& api, double timeout_s = 10);

// "/v1" from "v1", "/v1/", "" from "/": a base path as the URLs need it.
std::string normalize_base_path(std::string p);

}  // namespace kvlb::loadgen
