// Streams completions through the official OpenAI Node SDK (npm `openai`, its
// default keep-alive agent), one at a time, and prints one JSON line per request:
// what it saw (chunks, text, usage) and when (seconds since the request began).
//
//   node openai_sdk_stream.mjs BASE_URL MODEL REQUESTS.json [chat]
//
// BASE_URL includes the API path (http://127.0.0.1:8000/v1); the key comes from
// OPENAI_API_KEY, as for any SDK user. REQUESTS.json: [{"input_tokens": n,
// "output_tokens": m}, ...], the same requests kvlb-loadgen sent. vLLM's extra
// parameters (min_tokens, ignore_eos) pass through the SDK in the body.
import { readFileSync } from "node:fs";
import OpenAI from "openai";

const [baseURL, model, file, api] = process.argv.slice(2);
const requests = JSON.parse(readFileSync(file, "utf8"));
const client = new OpenAI({ baseURL, apiKey: process.env.OPENAI_API_KEY ?? "none", maxRetries: 0 });

for (const [i, r] of requests.entries()) {
  const ids = Array.from({ length: r.input_tokens }, (_, k) => 1000 + (k % 30000));
  const common = {
    model, max_tokens: r.output_tokens, min_tokens: r.output_tokens, ignore_eos: true,
    stream: true, stream_options: { include_usage: true },
  };
  const t0 = performance.now();
  let first = -1, chunks = 0, text = "", usage = null, error = null;
  try {
    const stream = api === "chat"
      ? await client.chat.completions.create({
          ...common, messages: [{ role: "user", content: "a".repeat(4 * r.input_tokens) }] })
      : await client.completions.create({ ...common, prompt: ids });
    for await (const chunk of stream) {
      if (chunk.usage) usage = chunk.usage;
      const piece = api === "chat" ? chunk.choices?.[0]?.delta?.content : chunk.choices?.[0]?.text;
      if (piece) {
        if (first < 0) first = (performance.now() - t0) / 1000;
        chunks += 1;
        text += piece;
      }
    }
  } catch (e) {
    error = `${e.status ?? ""} ${e.message}`.trim();
  }
  const end = (performance.now() - t0) / 1000;
  console.log(JSON.stringify({ i, expected: r.output_tokens, chunks, ttft: first, e2e: end,
                               usage, text_length: text.length, error }));
}
