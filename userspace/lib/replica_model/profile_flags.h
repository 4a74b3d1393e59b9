// profile_flags.h - the engine-profile command-line flags, shared by the live
// emulator and the simulator so a profile is the same set of flags in both.
#pragma once

#include <CLI/CLI.hpp>

#include "replica_model/vllm_v0_model.h"

namespace kvlb::replica {

inline void add_profile_flags(CLI::App& app, EngineProfile& p) {
  auto* g = app.add_option_group("engine profile", "defaults: Llama-3.1-8B on one A10G (24 GB)");
  g->add_option("--kv-blocks", p.kv_blocks, "KV-cache blocks");
  g->add_option("--block-size", p.block_size, "tokens per KV block");
  g->add_option("--watermark", p.watermark, "fraction of blocks kept free at admission");
  g->add_option("--max-num-seqs", p.max_num_seqs, "running sequences at most");
  g->add_option("--max-model-len", p.max_model_len, "context window in tokens");
  g->add_option("--max-num-batched-tokens", p.max_num_batched_tokens,
                "prefill token budget (0: max(max_model_len, 2048))");
  g->add_option("--decode-t0-ms", p.decode_t0_ms, "fixed decode step time");
  g->add_option("--decode-per-seq-ms", p.decode_per_seq_ms, "decode time per running sequence");
  g->add_option("--decode-per-ctx-token-us", p.decode_per_ctx_token_us,
                "decode time per context token");
  g->add_option("--prefill-tokens-per-s", p.prefill_tokens_per_s, "prefill throughput");
  g->add_option("--prefill-overhead-ms", p.prefill_overhead_ms, "fixed prefill step time");
  g->add_option("--jitter", p.jitter, "uniform +- fraction on every step time");
}

}  // namespace kvlb::replica
