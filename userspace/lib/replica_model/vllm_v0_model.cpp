#include "vllm_v0_model.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>

#include <fmt/format.h>

namespace kvlb::replica {

uint32_t EngineProfile::batched_token_budget() const {
  return max_num_batched_tokens ? max_num_batched_tokens : std::max<uint32_t>(max_model_len, 2048);
}

void EngineProfile::validate() const {
  auto bad = [](const char* f, const std::string& why) {
    throw std::invalid_argument(fmt::format("{}: {}", f, why));
  };
  if (kv_blocks < 2) bad("kv_blocks", "must be at least 2");
  if (block_size == 0) bad("block_size", "must be positive");
  if (!(watermark >= 0 && watermark < 1)) bad("watermark", "must be in [0, 1)");
  if (max_num_seqs == 0) bad("max_num_seqs", "must be positive");
  if (max_model_len == 0) bad("max_model_len", "must be positive");
  if (batched_token_budget() < max_model_len)
    bad("max_num_batched_tokens", "must be at least max_model_len (no chunked prefill)");
  if (!(decode_t0_ms >= 0) || !(decode_per_seq_ms >= 0) || !(decode_per_ctx_token_us >= 0))
    bad("decode_*", "must be non-negative");
  if (!(prefill_tokens_per_s > 0)) bad("prefill_tokens_per_s", "must be positive");
  if (!(prefill_overhead_ms >= 0)) bad("prefill_overhead_ms", "must be non-negative");
  if (!(jitter >= 0 && jitter < 1)) bad("jitter", "must be in [0, 1)");
  uint32_t wm = static_cast<uint32_t>(watermark * kv_blocks);
  if ((max_model_len + block_size - 1) / block_size + wm > kv_blocks)
    bad("max_model_len", fmt::format("{} tokens do not fit {} KV blocks of {} above the watermark",
                                     max_model_len, kv_blocks, block_size));
}

VllmV0Model::VllmV0Model(EngineProfile p) : p_(p), rng_(p.seed) {
  p_.validate();
  watermark_blocks_ = static_cast<uint32_t>(p_.watermark * p_.kv_blocks);
  counters_.kv_blocks_total = p_.kv_blocks;
  counters_.block_size = p_.block_size;
}

double VllmV0Model::jittered(double seconds) {
  if (p_.jitter <= 0) return seconds;
  std::uniform_real_distribution<double> d(1.0 - p_.jitter, 1.0 + p_.jitter);
  return seconds * d(rng_);
}

std::optional<std::string> VllmV0Model::submit(const GenRequest& r) {
  if (seqs_.count(r.id))
    throw std::invalid_argument(fmt::format("request id {} already queued", r.id));
  Seq s{r};
  s.req.prompt_tokens = std::max<uint32_t>(r.prompt_tokens, 1);
  s.req.output_tokens = std::max<uint32_t>(r.output_tokens, 1);
  // vLLM rejects prompts that can never be scheduled instead of queuing them forever.
  std::string reason;
  // As vLLM's API layer: prompt + max_tokens must fit the context window. With
  // validate()'s check that the cache holds max_model_len tokens, every admitted
  // sequence fits an empty cache, so preemption can always make progress.
  if (uint64_t(s.req.prompt_tokens) + s.req.output_tokens > p_.max_model_len)
    reason = fmt::format(
        "This model's maximum context length is {} tokens. However, you requested {} tokens "
        "({} in the messages, {} in the completion).",
        p_.max_model_len, uint64_t(s.req.prompt_tokens) + s.req.output_tokens, s.req.prompt_tokens,
        s.req.output_tokens);
  if (!reason.empty()) {
    ++counters_.requests_rejected_total;
    return reason;
  }
  seqs_.emplace(r.id, s);
  waiting_.push_back(r.id);
  return std::nullopt;
}

void VllmV0Model::free_seq(Seq& s) {
  used_blocks_ -= s.blocks;
  s.blocks = 0;
}

void VllmV0Model::cancel(uint64_t id) {
  auto it = seqs_.find(id);
  if (it == seqs_.end()) return;
  ++counters_.requests_aborted_total;
  free_seq(it->second);
  seqs_.erase(it);
  waiting_.erase(std::remove(waiting_.begin(), waiting_.end(), id), waiting_.end());
  running_.erase(std::remove(running_.begin(), running_.end(), id), running_.end());
  step_seqs_.erase(std::remove(step_seqs_.begin(), step_seqs_.end(), id), step_seqs_.end());
}

std::optional<double> VllmV0Model::begin_step(double now_s) {
  if (step_ != StepKind::None) throw std::logic_error("begin_step while a step is in progress");
  step_seqs_.clear();

  // 1. Prefill: admit waiting sequences FCFS while their blocks fit above the
  //    watermark, the token budget and max_num_seqs allow. The head blocks the
  //    queue (no skipping), as in vLLM.
  uint32_t budget = p_.batched_token_budget(), tokens = 0;
  while (!waiting_.empty()) {
    Seq& s = seqs_.at(waiting_.front());
    uint32_t t = s.tokens();  // a recomputed sequence prefills prompt + generated
    uint32_t need = blocks_for(t);
    if (tokens + t > budget) break;
    if (running_.size() + step_seqs_.size() >= p_.max_num_seqs) break;
    if (free_blocks() < need + watermark_blocks_) break;
    s.blocks = need;
    used_blocks_ += need;
    tokens += t;
    step_seqs_.push_back(waiting_.front());
    waiting_.pop_front();
  }
  if (!step_seqs_.empty()) {
    step_ = StepKind::Prefill;
    counters_.prompt_tokens_total += tokens;
    return jittered(p_.prefill_overhead_ms / 1e3 + tokens / p_.prefill_tokens_per_s);
  }

  // 2. Decode one token for every running sequence. A sequence whose last block
  //    is full needs a new one; when none is free, the newest running sequence is
  //    preempted (recompute: blocks freed, back to the front of the queue).
  if (running_.empty()) return std::nullopt;
  std::vector<uint64_t> preempted;
  size_t i = 0;
  while (i < running_.size()) {
    Seq& s = seqs_.at(running_[i]);
    if (s.tokens() <= s.blocks * p_.block_size) {
      ++i;
      continue;
    }
    if (free_blocks() > 0) {
      ++s.blocks;
      ++used_blocks_;
      ++i;
      continue;
    }
    uint64_t victim = running_.back();
    running_.pop_back();
    free_seq(seqs_.at(victim));
    preempted.push_back(victim);
    ++counters_.preemptions_total;
    // If the victim was this very sequence, the loop ends: i == running_.size().
  }
  // Oldest preempted first at the head of the queue.
  for (auto it = preempted.begin(); it != preempted.end(); ++it) waiting_.push_front(*it);
  // Everything was preempted: the cache is empty now, so the head of the queue
  // can be prefilled (submit() guarantees any request fits an empty cache).
  if (running_.empty()) return begin_step(now_s);
  uint64_t ctx = 0;
  for (auto id : running_) ctx += seqs_.at(id).tokens();
  step_ = StepKind::Decode;
  step_seqs_ = running_;
  return jittered((p_.decode_t0_ms + p_.decode_per_seq_ms * running_.size()) / 1e3 +
                  p_.decode_per_ctx_token_us * static_cast<double>(ctx) / 1e6);
}

std::vector<TokenEvent> VllmV0Model::end_step(double /*now_s*/) {
  std::vector<TokenEvent> events;
  StepKind kind = step_;
  step_ = StepKind::None;
  if (kind == StepKind::None) return events;
  for (auto id : step_seqs_) {
    auto it = seqs_.find(id);
    if (it == seqs_.end()) continue;  // cancelled during the step
    Seq& s = it->second;
    ++s.generated;
    ++counters_.generation_tokens_total;
    if (kind == StepKind::Prefill) running_.push_back(id);
    if (s.generated >= s.req.output_tokens) {
      events.push_back({id, TokenEventKind::Finished, s.generated});
      ++counters_.requests_finished_total;
      free_seq(s);
      running_.erase(std::remove(running_.begin(), running_.end(), id), running_.end());
      seqs_.erase(it);
    } else {
      events.push_back({id, TokenEventKind::Token, s.generated});
    }
  }
  step_seqs_.clear();
  return events;
}

EngineSnapshot VllmV0Model::snapshot() const {
  EngineSnapshot s = counters_;
  s.waiting = static_cast<uint32_t>(waiting_.size());
  // vLLM's scheduler puts a request in its running list when it schedules its
  // prefill, so num_requests_running counts sequences being prefilled too.
  s.running =
      static_cast<uint32_t>(running_.size() + (step_ == StepKind::Prefill ? step_seqs_.size() : 0));
  s.kv_blocks_used = used_blocks_;
  return s;
}

}  // namespace kvlb::replica
