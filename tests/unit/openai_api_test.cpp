#include "openai_api.h"

#include <gtest/gtest.h>

using namespace kvlb::replica;
using nlohmann::json;

namespace {
const std::string kModel = "m";

ApiRequest ok(const std::string& body, bool chat = false) {
  auto r = parse_request(body, chat, kModel, 4096);
  if (auto* e = std::get_if<ApiError>(&r)) ADD_FAILURE() << e->message;
  return std::get<ApiRequest>(r);
}

ApiError err(const std::string& body, bool chat = false) {
  auto r = parse_request(body, chat, kModel, 4096);
  EXPECT_TRUE(std::holds_alternative<ApiError>(r)) << body;
  return std::holds_alternative<ApiError>(r) ? std::get<ApiError>(r) : ApiError{};
}

// Splits an SSE stream fragment into its data payloads.
std::vector<std::string> events(const std::string& sse) {
  std::vector<std::string> out;
  size_t pos = 0;
  while ((pos = sse.find("data: ", pos)) != std::string::npos) {
    auto end = sse.find("\n\n", pos);
    out.push_back(sse.substr(pos + 6, end - pos - 6));
    pos = end + 2;
  }
  return out;
}
}  // namespace

TEST(OpenAiApi, CountsPromptTokensFromTextOrIds) {
  EXPECT_EQ(ok(R"({"model":"m","prompt":"abcdefgh"})").prompt_tokens, 2u);
  EXPECT_EQ(ok(R"({"model":"m","prompt":"abcdefghi"})").prompt_tokens, 3u);
  EXPECT_EQ(ok(R"({"model":"m","prompt":[1,2,3,4,5]})").prompt_tokens, 5u);
  auto chat = ok(R"({"model":"m","messages":[{"role":"user","content":"abcdefgh"}]})", true);
  EXPECT_EQ(chat.prompt_tokens, 2u + 4 + 3);
}

TEST(OpenAiApi, MaxTokensDefaultsAsVllm) {
  EXPECT_EQ(ok(R"({"model":"m","prompt":"x"})").max_tokens, 16u);
  EXPECT_EQ(ok(R"({"model":"m","prompt":"x","max_tokens":300,"min_tokens":300})").max_tokens, 300u);
  auto chat = ok(R"({"model":"m","messages":[{"role":"user","content":"abcd"}]})", true);
  EXPECT_EQ(chat.max_tokens, 4096u - chat.prompt_tokens);
}

TEST(OpenAiApi, StreamOptions) {
  auto r =
      ok(R"({"model":"m","prompt":"x","stream":true,"stream_options":{"include_usage":true}})");
  EXPECT_TRUE(r.stream);
  EXPECT_TRUE(r.include_usage);
  EXPECT_EQ(err(R"({"model":"m","prompt":"x","stream_options":{"include_usage":true}})").status,
            400);
}

TEST(OpenAiApi, Errors) {
  EXPECT_EQ(err("not json").status, 400);
  EXPECT_EQ(err(R"({"prompt":"x"})").status, 400);
  EXPECT_EQ(err(R"({"model":"other","prompt":"x"})").status, 404);
  EXPECT_EQ(err(R"({"model":"m"})").status, 400);
  EXPECT_EQ(err(R"({"model":"m","prompt":{}})").status, 400);
  EXPECT_EQ(err(R"({"model":"m","prompt":"x","max_tokens":0})").status, 400);
  EXPECT_EQ(err(R"({"model":"m","prompt":"x","max_tokens":5,"min_tokens":6})").status, 400);
  EXPECT_EQ(err(R"({"model":"m","messages":[]})", true).status, 400);
  EXPECT_EQ(err(R"({"model":"m","messages":[{"content":"x"}]})", true).status, 400);
}

TEST(OpenAiApi, CompletionStreamChunks) {
  auto r = ok(
      R"({"model":"m","prompt":"abcd","max_tokens":2,"stream":true,"stream_options":{"include_usage":true}})");
  std::string sse = stream_chunk(r, "cmpl-1", 7, 0, false) + stream_chunk(r, "cmpl-1", 7, 1, true) +
                    stream_usage_chunk(r, "cmpl-1", 7, 2) + kStreamDone;
  auto ev = events(sse);
  ASSERT_EQ(ev.size(), 4u);
  auto c0 = json::parse(ev[0]);
  EXPECT_EQ(c0["object"], "text_completion");
  EXPECT_EQ(c0["choices"][0]["text"], token_text(0));
  EXPECT_TRUE(c0["choices"][0]["finish_reason"].is_null());
  EXPECT_EQ(json::parse(ev[1])["choices"][0]["finish_reason"], "length");
  auto usage = json::parse(ev[2]);
  EXPECT_TRUE(usage["choices"].empty());
  EXPECT_EQ(usage["usage"]["completion_tokens"], 2);
  EXPECT_EQ(usage["usage"]["prompt_tokens"], 1);
  EXPECT_EQ(usage["usage"]["total_tokens"], 3);
  EXPECT_EQ(ev[3], "[DONE]");
}

TEST(OpenAiApi, ChatChunksCarryRoleFirst) {
  auto r = ok(R"({"model":"m","messages":[{"role":"user","content":"hi"}],"stream":true})", true);
  auto c0 = json::parse(events(stream_chunk(r, "c", 1, 0, false))[0]);
  EXPECT_EQ(c0["object"], "chat.completion.chunk");
  EXPECT_EQ(c0["choices"][0]["delta"]["role"], "assistant");
  auto c1 = json::parse(events(stream_chunk(r, "c", 1, 1, false))[0]);
  EXPECT_FALSE(c1["choices"][0]["delta"].contains("role"));
}

TEST(OpenAiApi, FullResponse) {
  auto r = ok(R"({"model":"m","prompt":"abcd","max_tokens":3})");
  auto j = json::parse(full_response(r, "cmpl-9", 5, 3));
  EXPECT_EQ(j["choices"][0]["text"], token_text(0) + token_text(1) + token_text(2));
  EXPECT_EQ(j["usage"]["completion_tokens"], 3);
  auto e = json::parse(error_body({404, "nope"}));
  EXPECT_EQ(e["code"], 404);
  EXPECT_EQ(e["message"], "nope");
}

TEST(OpenAiApi, WrongTypesAreA400NeverAnException) {
  // Each used to throw out of the server's event loop (nlohmann type_error).
  for (const char* body : {
           R"({"model":7,"prompt":"x"})",
           R"({"model":["m"],"prompt":"x"})",
           R"({"model":"m","prompt":"x","stream":true,"stream_options":{"include_usage":"yes"}})",
           R"({"model":"m","prompt":"x","stream":true,"stream_options":{"include_usage":1}})",
           R"({"model":"m","prompt":"x","stream":true,"stream_options":[]})",
           R"({"model":"m","prompt":"x","max_tokens":"10"})",
           R"({"model":"m","prompt":"x","min_tokens":-1})",
           R"({"model":"m","prompt":{"a":1}})",
       }) {
    ApiError e;
    ASSERT_NO_THROW(e = err(body)) << body;
    EXPECT_EQ(e.status, 400) << body;
    auto j = json::parse(error_body(e));
    EXPECT_EQ(j["object"], "error");
    EXPECT_EQ(j["code"], 400);
  }
  EXPECT_TRUE(
      ok(R"({"model":"m","prompt":"x","stream":true,"stream_options":{"include_usage":true}})")
          .include_usage);
}

TEST(OpenAiApi, ErrorBodiesStayValidJsonWithHostileBytes) {
  // A request target with a 0xFF byte made the 404 body's dump() throw.
  std::string body;
  ASSERT_NO_THROW(body = error_body({404, std::string("no route /\xff\x1b[2J")}));
  auto j = json::parse(body);
  EXPECT_EQ(j["code"], 404);
  EXPECT_EQ(j["type"], "NotFoundError");
}
