// openai_api.h - the OpenAI-compatible request/response shapes the emulator
// speaks, as vLLM serves them: /v1/completions and /v1/chat/completions,
// streamed (SSE) or not. Pure functions, no I/O.
#pragma once

#include <cstdint>
#include <string>
#include <variant>

#include <nlohmann/json.hpp>

namespace kvlb::replica {

struct ApiRequest {
  bool chat = false;
  bool stream = false;
  bool include_usage = false;  // stream_options.include_usage
  std::string model;
  uint32_t prompt_tokens = 0;
  uint32_t max_tokens = 0;  // the emulated model generates exactly this many
};

struct ApiError {
  int status = 400;
  std::string message;
};

// Parses a request body. Prompt tokens are counted from the text (about four
// characters a token, plus a few template tokens per chat message), or taken
// from a token-id array prompt. `served_model` is what /v1/models lists: a
// request naming another model is a 404, as in vLLM.
std::variant<ApiRequest, ApiError> parse_request(const std::string& body, bool chat,
                                                 const std::string& served_model,
                                                 uint32_t max_model_len);

// The text of the n-th generated token.
std::string token_text(uint32_t n);

// One SSE chunk carrying token n ("data: {...}\n\n"). finish_reason is set on the last.
std::string stream_chunk(const ApiRequest& r, const std::string& id, int64_t created, uint32_t n,
                         bool last);
// The usage chunk ("choices": []) and the terminator.
std::string stream_usage_chunk(const ApiRequest& r, const std::string& id, int64_t created,
                               uint32_t completion_tokens);
inline constexpr const char* kStreamDone = "data: [DONE]\n\n";
// The whole non-streamed response body.
std::string full_response(const ApiRequest& r, const std::string& id, int64_t created,
                          uint32_t completion_tokens);
std::string error_body(const ApiError& e);

}  // namespace kvlb::replica
