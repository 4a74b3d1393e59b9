// Streams completions through the official OpenAI Node SDK (npm `openai`, its
// default keep-alive agent), one at a time, and prints one JSON line per request:
// what it saw (chunks, text, usage) and when (seconds since the request began).
//
//   node openai_sdk_stream.mjs BASE_URL MODEL REQUESTS.json [chat]
//
// With KVLB_GATE=1 in the environment, every request after the first waits for
// a line on stdin (the keep-alive test decides when the pooled connection is
// used again), and the SDK keeps its default retries, as its users run it.
// Each line names the replica that answered (X-Kvlb-Replica).
// BASE_URL includes the API path (http://127.0.0.1:8000/v1); the key comes from
// OPENAI_API_KEY, as for any SDK user. REQUESTS.json: [{"input_tokens": n,
// "output_tokens": m}, ...], the same requests kvlb-loadgen sent. vLLM's extra
// parameters (min_tokens, ignore_eos) pass through the SDK in the body.
import { readFileSync } from "node:fs";
import { createInterface } from "node:readline";
import OpenAI from "openai";

const [baseURL, model, file, api] = process.argv.slice(2);
const requests = JSON.parse(readFileSync(file, "utf8"));
const gated = process.env.KVLB_GATE === "1";
const client = new OpenAI({ baseURL, apiKey: process.env.OPENAI_API_KEY ?? "none",
                            ...(gated ? {} : { maxRetries: 0 }) });
const stdinLines = gated ? createInterface({ input: process.stdin })[Symbol.asyncIterator]() : null;

for (const [i, r] of requests.entries()) {
  if (gated && i > 0) await stdinLines.next();
  const ids = Array.from({ length: r.input_tokens }, (_, k) => 1000 + (k % 30000));
  const common = {
    model, max_tokens: r.output_tokens, min_tokens: r.output_tokens, ignore_eos: true,
    stream: true, stream_options: { include_usage: true },
  };
  const t0 = performance.now();
  let first = -1, chunks = 0, text = "", usage = null, error = null, replica = null;
  try {
    const { data: stream, response } = await (api === "chat"
      ? client.chat.completions.create({
          ...common, messages: [{ role: "user", content: "a".repeat(4 * r.input_tokens) }] })
      : client.completions.create({ ...common, prompt: ids })).withResponse();
    replica = response.headers.get("x-kvlb-replica");
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
                               usage, text_length: text.length, replica, error }));
}
process.exit(0);
