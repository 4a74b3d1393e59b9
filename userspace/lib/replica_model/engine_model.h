// engine_model.h - the interface between an inference-engine model and whatever
// drives it (the live HTTP emulator on a real clock, or the discrete-event
// simulator on a virtual one).
//
// A model is a clock-free state machine: the driver asks it to begin a step (it
// answers how long the step takes), waits that long on its clock, then ends the
// step and receives the token events it produced. Nothing here sleeps or reads a
// clock, so the same code runs in real and in virtual time.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace kvlb::replica {

struct GenRequest {
  uint64_t id = 0;
  uint32_t prompt_tokens = 1;
  uint32_t output_tokens = 1;  // tokens to generate (max_tokens when the length is fixed)
  double arrival_s = 0;        // driver clock, seconds
};

enum class TokenEventKind { Token, Finished };

struct TokenEvent {
  uint64_t id = 0;
  TokenEventKind kind = TokenEventKind::Token;
  uint32_t generated = 0;  // output tokens so far (after this event)
};

// Engine state as the engine's /metrics would report it.
struct EngineSnapshot {
  uint32_t waiting = 0;
  uint32_t running = 0;  // in the batch, including those being prefilled (as vLLM counts)
  uint32_t kv_blocks_total = 0;
  uint32_t kv_blocks_used = 0;
  uint32_t block_size = 16;
  double kv_usage() const { return kv_blocks_total ? double(kv_blocks_used) / kv_blocks_total : 0; }
  uint64_t prompt_tokens_total = 0;      // tokens prefilled (incl. recompute)
  uint64_t generation_tokens_total = 0;  // tokens generated
  uint64_t preemptions_total = 0;
  uint64_t requests_finished_total = 0;
  uint64_t requests_rejected_total = 0;
  uint64_t requests_aborted_total = 0;  // cancelled before they finished
};

class EngineModel {
 public:
  virtual ~EngineModel() = default;
  // Queues a request (FCFS). Returns the reason when the engine refuses it (it
  // could never be scheduled), as the engine's API would answer 400.
  virtual std::optional<std::string> submit(const GenRequest& r) = 0;
  // Drops a request wherever it is (client went away); frees its KV blocks.
  virtual void cancel(uint64_t id) = 0;
  // Starts the next step if there is work: returns its duration in seconds, or
  // nullopt when idle. Must be followed by end_step() before the next call.
  virtual std::optional<double> begin_step(double now_s) = 0;
  // Completes the step begun last and returns the events it produced.
  virtual std::vector<TokenEvent> end_step(double now_s) = 0;
  virtual EngineSnapshot snapshot() const = 0;
};

}  // namespace kvlb::replica
