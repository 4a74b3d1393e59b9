// vllm_v0_model.h - vLLM's V0 default scheduler (no chunked prefill) over a
// block-granular KV cache, with a step-time profile. Defaults: Llama-3.1-8B on
// one A10G, as described in docs/replica-emulator.md (BRIEF.md "Replica emulator").
#pragma once

#include <deque>
#include <random>
#include <unordered_map>
#include <vector>

#include "replica_model/engine_model.h"

namespace kvlb::replica {

struct EngineProfile {
  // KV cache
  uint32_t kv_blocks = 2200;
  uint32_t block_size = 16;
  double watermark = 0.01;  // fraction of blocks kept free at admission
  // scheduler limits
  uint32_t max_num_seqs = 256;
  uint32_t max_model_len = 4096;
  uint32_t max_num_batched_tokens = 0;  // 0: max(max_model_len, 2048), as vLLM V0
  // step time: decode = t0 + per_seq * batch + per_ctx_token * sum(context)
  double decode_t0_ms = 30.0;
  double decode_per_seq_ms = 0.05;
  double decode_per_ctx_token_us = 0.273;
  // prefill = overhead + tokens / rate
  double prefill_tokens_per_s = 4000.0;
  double prefill_overhead_ms = 15.0;
  double jitter = 0.10;  // uniform +-fraction on every step time
  uint64_t seed = 1;

  uint32_t batched_token_budget() const;
  // Throws std::invalid_argument naming the field when a value is unusable.
  void validate() const;
};

class VllmV0Model final : public EngineModel {
 public:
  explicit VllmV0Model(EngineProfile p);

  std::optional<std::string> submit(const GenRequest& r) override;
  void cancel(uint64_t id) override;
  std::optional<double> begin_step(double now_s) override;
  std::vector<TokenEvent> end_step(double now_s) override;
  EngineSnapshot snapshot() const override;

  const EngineProfile& profile() const { return p_; }

 private:
  struct Seq {
    GenRequest req;
    uint32_t generated = 0;
    uint32_t blocks = 0;  // KV blocks held
    uint32_t tokens() const { return req.prompt_tokens + generated; }
  };
  enum class StepKind { None, Prefill, Decode };

  uint32_t blocks_for(uint32_t tokens) const {
    return (tokens + p_.block_size - 1) / p_.block_size;
  }
  uint32_t free_blocks() const { return p_.kv_blocks - used_blocks_; }
  void free_seq(Seq& s);
  double jittered(double seconds);

  EngineProfile p_;
  uint32_t watermark_blocks_;
  std::mt19937_64 rng_;
  std::deque<uint64_t> waiting_;   // FCFS; preempted sequences go back to the front
  std::vector<uint64_t> running_;  // admission order; the newest is preempted first
  std::unordered_map<uint64_t, Seq> seqs_;
  uint32_t used_blocks_ = 0;
  StepKind step_ = StepKind::None;
  std::vector<uint64_t> step_seqs_;  // sequences in the current step
  EngineSnapshot counters_;
};

}  // namespace kvlb::replica
