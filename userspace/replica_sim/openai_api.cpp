#include "openai_api.h"

#include <algorithm>

#include <fmt/format.h>

namespace kvlb::replica {
using nlohmann::json;

namespace {

uint32_t text_tokens(const std::string& s) {
  return std::max<uint32_t>(1, static_cast<uint32_t>((s.size() + 3) / 4));
}

nlohmann::json usage(const ApiRequest& r, uint32_t completion) {
  return {{"prompt_tokens", r.prompt_tokens},
          {"completion_tokens", completion},
          {"total_tokens", r.prompt_tokens + completion}};
}

const char* object_name(const ApiRequest& r, bool chunk) {
  if (r.chat) return chunk ? "chat.completion.chunk" : "chat.completion";
  return "text_completion";
}

}  // namespace

std::variant<ApiRequest, ApiError> parse_request(const std::string& body, bool chat,
                                                 const std::string& served_model,
                                                 uint32_t max_model_len) {
  json j = json::parse(body, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return ApiError{400, "request body is not a JSON object"};
  ApiRequest r;
  r.chat = chat;
  // Every field's type is checked before it is read: a request is untrusted
  // input, and a wrong type must be a 400, never an exception.
  if (!j.contains("model") || !j["model"].is_string())
    return ApiError{400, "field 'model' is required and must be a string"};
  r.model = j["model"].get<std::string>();
  if (r.model != served_model)
    return ApiError{404, fmt::format("The model `{}` does not exist.", r.model)};

  if (chat) {
    if (!j.contains("messages") || !j["messages"].is_array() || j["messages"].empty())
      return ApiError{400, "field 'messages' must be a non-empty array"};
    uint32_t t = 0;
    for (const auto& m : j["messages"]) {
      if (!m.is_object() || !m.contains("role") || !m["role"].is_string())
        return ApiError{400, "each message needs a string 'role'"};
      if (m.contains("content") && m["content"].is_string()) t += text_tokens(m["content"]);
      t += 4;  // chat template tokens around each message
    }
    r.prompt_tokens = t + 3;  // assistant header
  } else {
    if (!j.contains("prompt")) return ApiError{400, "field 'prompt' is required"};
    const auto& p = j["prompt"];
    if (p.is_string()) {
      r.prompt_tokens = text_tokens(p.get<std::string>());
    } else if (p.is_array() && !p.empty() && std::all_of(p.begin(), p.end(), [](const json& x) {
                 return x.is_number_integer();
               })) {
      r.prompt_tokens = static_cast<uint32_t>(p.size());  // token ids
    } else {
      return ApiError{400, "field 'prompt' must be a string or an array of token ids"};
    }
  }

  if (j.contains("max_tokens") && !j["max_tokens"].is_null()) {
    if (!j["max_tokens"].is_number_integer() || j["max_tokens"].get<int64_t>() < 1)
      return ApiError{400, "max_tokens must be a positive integer"};
    r.max_tokens =
        static_cast<uint32_t>(std::min<int64_t>(j["max_tokens"].get<int64_t>(), 1 << 30));
  } else {
    // vLLM's defaults: 16 for completions; the rest of the context for chat.
    r.max_tokens =
        chat ? (max_model_len > r.prompt_tokens ? max_model_len - r.prompt_tokens : 1) : 16;
  }
  if (j.contains("min_tokens")) {
    if (!j["min_tokens"].is_number_integer() || j["min_tokens"].get<int64_t>() < 0)
      return ApiError{400, "min_tokens must be a non-negative integer"};
    if (j["min_tokens"].get<int64_t>() > r.max_tokens)
      return ApiError{400, "min_tokens must be less than or equal to max_tokens"};
  }
  if (j.contains("stream")) {
    if (!j["stream"].is_boolean()) return ApiError{400, "stream must be a boolean"};
    r.stream = j["stream"].get<bool>();
  }
  if (j.contains("stream_options") && !j["stream_options"].is_null()) {
    const auto& so = j["stream_options"];
    if (!so.is_object()) return ApiError{400, "stream_options must be an object"};
    if (!r.stream) return ApiError{400, "stream_options is only allowed when stream is true"};
    if (so.contains("include_usage")) {
      if (!so["include_usage"].is_boolean())
        return ApiError{400, "stream_options.include_usage must be a boolean"};
      r.include_usage = so["include_usage"].get<bool>();
    }
  }
  return r;
}

std::string token_text(uint32_t n) {
  static constexpr const char* kWords[] = {" the",  " kv", " cache",  " is",
                                           " full", " of", " tokens", " and"};
  return kWords[n % 8];
}

std::string stream_chunk(const ApiRequest& r, const std::string& id, int64_t created, uint32_t n,
                         bool last) {
  json choice;
  if (r.chat) {
    json delta = {{"content", token_text(n)}};
    if (n == 0) delta["role"] = "assistant";
    choice = {{"index", 0},
              {"delta", delta},
              {"logprobs", nullptr},
              {"finish_reason", last ? json("length") : json(nullptr)}};
  } else {
    choice = {{"index", 0},
              {"text", token_text(n)},
              {"logprobs", nullptr},
              {"finish_reason", last ? json("length") : json(nullptr)}};
  }
  json j = {{"id", id},
            {"object", object_name(r, true)},
            {"created", created},
            {"model", r.model},
            {"choices", json::array({choice})}};
  return "data: " + j.dump() + "\n\n";
}

std::string stream_usage_chunk(const ApiRequest& r, const std::string& id, int64_t created,
                               uint32_t completion_tokens) {
  json j = {
      {"id", id},         {"object", object_name(r, true)}, {"created", created},
      {"model", r.model}, {"choices", json::array()},       {"usage", usage(r, completion_tokens)}};
  return "data: " + j.dump() + "\n\n";
}

std::string full_response(const ApiRequest& r, const std::string& id, int64_t created,
                          uint32_t completion_tokens) {
  std::string text;
  for (uint32_t i = 0; i < completion_tokens; ++i) text += token_text(i);
  json choice;
  if (r.chat)
    choice = {{"index", 0},
              {"message", {{"role", "assistant"}, {"content", text}}},
              {"logprobs", nullptr},
              {"finish_reason", "length"}};
  else
    choice = {{"index", 0}, {"text", text}, {"logprobs", nullptr}, {"finish_reason", "length"}};
  json j = {{"id", id},
            {"object", object_name(r, false)},
            {"created", created},
            {"model", r.model},
            {"choices", json::array({choice})},
            {"usage", usage(r, completion_tokens)}};
  return j.dump();
}

std::string error_body(const ApiError& e) {
  const char* type = e.status == 404   ? "NotFoundError"
                     : e.status >= 500 ? "InternalServerError"
                                       : "BadRequestError";
  // The message may quote the request (a target, a model name): bytes that are
  // not valid UTF-8 are replaced, never a reason to throw.
  return json{{"object", "error"}, {"message", e.message}, {"type", type}, {"code", e.status}}.dump(
      -1, ' ', false, json::error_handler_t::replace);
}

}  // namespace kvlb::replica
