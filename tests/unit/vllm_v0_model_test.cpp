// Pins the emulator's scheduler to vLLM V0 semantics.
#include "replica_model/vllm_v0_model.h"

#include <gtest/gtest.h>

using namespace kvlb::replica;

namespace {

EngineProfile small_profile() {
  EngineProfile p;
  p.kv_blocks = 100;
  p.block_size = 16;
  p.watermark = 0.01;  // 1 block
  p.max_model_len = 512;
  p.max_num_batched_tokens = 1024;
  p.jitter = 0;
  return p;
}

GenRequest req(uint64_t id, uint32_t prompt, uint32_t out) {
  GenRequest r;
  r.id = id;
  r.prompt_tokens = prompt;
  r.output_tokens = out;
  return r;
}

// Runs one step; returns its events.
std::vector<TokenEvent> step(VllmV0Model& m) {
  auto d = m.begin_step(0);
  EXPECT_TRUE(d.has_value());
  return m.end_step(0);
}

}  // namespace

TEST(VllmV0Model, PrefillThenDecodeNeverBoth) {
  VllmV0Model m(small_profile());
  ASSERT_FALSE(m.submit(req(1, 100, 3)));
  auto d = m.begin_step(0);
  ASSERT_TRUE(d);
  // Prefill of 100 tokens: 15 ms + 100 / 4000 s.
  EXPECT_DOUBLE_EQ(*d, 0.015 + 100.0 / 4000.0);
  auto ev = m.end_step(0);
  ASSERT_EQ(ev.size(), 1u);
  EXPECT_EQ(ev[0].generated, 1u);  // the prefill yields the first token
  EXPECT_EQ(m.snapshot().running, 1u);

  ASSERT_FALSE(m.submit(req(2, 50, 2)));
  d = m.begin_step(0);  // a waiting request that fits: this step is a prefill of it only
  EXPECT_DOUBLE_EQ(*d, 0.015 + 50.0 / 4000.0);
  ev = m.end_step(0);
  ASSERT_EQ(ev.size(), 1u);
  EXPECT_EQ(ev[0].id, 2u);

  d = m.begin_step(0);  // nothing waiting: decode both
  // decode: 30 ms + 0.05 ms * 2 + 0.273 us * (101 + 51) context tokens
  EXPECT_NEAR(*d, 0.030 + 0.0001 + 0.273e-6 * 152, 1e-12);
  ev = m.end_step(0);
  ASSERT_EQ(ev.size(), 2u);
  EXPECT_EQ(ev[1].kind, TokenEventKind::Finished);  // request 2 had 2 tokens
  EXPECT_EQ(m.snapshot().requests_finished_total, 1u);
}

TEST(VllmV0Model, AdmissionRespectsWatermarkAndIsFcfs) {
  auto p = small_profile();
  p.watermark = 0.10;  // 10 blocks kept free
  VllmV0Model m(p);
  // 80 blocks (1280 tokens) would need a larger budget; use 5 x 16 blocks.
  for (uint64_t id = 1; id <= 6; ++id) ASSERT_FALSE(m.submit(req(id, 256, 100)));
  step(m);  // prefill: budget 1024 tokens = 4 requests of 256 (64 blocks)
  auto s = m.snapshot();
  EXPECT_EQ(s.running, 4u);
  EXPECT_EQ(s.waiting, 2u);
  EXPECT_EQ(s.kv_blocks_used, 64u);
  step(m);  // request 5 needs 16 blocks: 36 free - 16 = 20 >= 10 watermark: admitted
  EXPECT_EQ(m.snapshot().running, 5u);
  EXPECT_EQ(m.snapshot().kv_blocks_used, 80u);
  // request 6: 20 free - 16 = 4 < 10: stays waiting; the step decodes instead
  auto ev = step(m);
  EXPECT_EQ(ev.size(), 5u);
  EXPECT_EQ(m.snapshot().waiting, 1u);
}

TEST(VllmV0Model, HeadOfLineBlocksLaterSmallerRequests) {
  auto p = small_profile();
  p.max_model_len = 1024;
  VllmV0Model m(p);
  ASSERT_FALSE(m.submit(req(1, 900, 100)));  // 57 blocks
  step(m);
  EXPECT_EQ(m.snapshot().kv_blocks_used, 57u);
  ASSERT_FALSE(m.submit(req(2, 800, 10)));  // 50 blocks: 43 free, does not fit
  ASSERT_FALSE(m.submit(req(3, 16, 10)));   // 1 block: would fit, but FCFS
  auto ev = step(m);                        // so this step decodes request 1 only
  ASSERT_EQ(ev.size(), 1u);
  EXPECT_EQ(ev[0].id, 1u);
  EXPECT_EQ(m.snapshot().running, 1u);
  EXPECT_EQ(m.snapshot().waiting, 2u);
}

TEST(VllmV0Model, PreemptsTheNewestByRecomputeToTheFrontOfTheQueue) {
  auto p = small_profile();
  p.kv_blocks = 10;
  p.watermark = 0;
  p.max_model_len = 160;
  p.max_num_batched_tokens = 2048;
  VllmV0Model m(p);
  // Three sequences of 48 prompt tokens = 3 blocks each, 9 of 10 blocks used.
  for (uint64_t id = 1; id <= 3; ++id) ASSERT_FALSE(m.submit(req(id, 48, 100)));
  step(m);  // prefill all three; each now has 49 tokens and needs a 4th block to decode
  EXPECT_EQ(m.snapshot().kv_blocks_used, 9u);
  ASSERT_FALSE(m.submit(req(4, 16, 5)));  // waits: 1 free block, needs 1 + 0 watermark -> admitted?
  // Request 4 needs 1 block and 1 is free: it is prefilled now (prefill first).
  step(m);
  EXPECT_EQ(m.snapshot().running, 4u);
  EXPECT_EQ(m.snapshot().kv_blocks_used, 10u);
  // Decode: seq 1 needs a block, none free: the newest (4) is preempted; seq 2 needs
  // one: the newest left (3) is preempted; seq 3 was preempted.
  auto ev = step(m);
  auto s = m.snapshot();
  EXPECT_EQ(s.preemptions_total, 2u);
  EXPECT_EQ(s.running, 2u);
  EXPECT_EQ(s.waiting, 2u);
  ASSERT_EQ(ev.size(), 2u);
  EXPECT_EQ(ev[0].id, 1u);
  EXPECT_EQ(ev[1].id, 2u);
  // The preempted go back to the front, oldest first: 3 then 4; 3 recomputes
  // prompt + its 1 generated token when the cache allows.
  EXPECT_EQ(s.kv_blocks_used, 8u);
}

TEST(VllmV0Model, RejectsWhatCanNeverBeScheduled) {
  VllmV0Model m(small_profile());
  auto r = m.submit(req(1, 400, 200));  // 600 > max_model_len 512
  ASSERT_TRUE(r);
  EXPECT_NE(r->find("maximum context length is 512"), std::string::npos);
  EXPECT_EQ(m.snapshot().requests_rejected_total, 1u);
  EXPECT_FALSE(m.begin_step(0));
}

TEST(VllmV0Model, CancelFreesBlocks) {
  VllmV0Model m(small_profile());
  ASSERT_FALSE(m.submit(req(1, 160, 50)));
  ASSERT_FALSE(m.submit(req(2, 160, 50)));
  step(m);
  EXPECT_EQ(m.snapshot().kv_blocks_used, 20u);
  m.cancel(1);
  EXPECT_EQ(m.snapshot().kv_blocks_used, 10u);
  EXPECT_EQ(m.snapshot().running, 1u);
  m.cancel(2);
  EXPECT_FALSE(m.begin_step(0));
  EXPECT_EQ(m.snapshot().requests_aborted_total, 2u);
  m.cancel(2);  // unknown by now: not counted twice
  EXPECT_EQ(m.snapshot().requests_aborted_total, 2u);
}

TEST(VllmV0Model, RequestsBeingPrefilledCountAsRunning) {
  // vLLM moves a request to its running list when it schedules the prefill:
  // num_requests_running includes it while the prefill step runs.
  VllmV0Model m(small_profile());
  ASSERT_FALSE(m.submit(req(1, 100, 3)));
  ASSERT_FALSE(m.submit(req(2, 100, 3)));
  EXPECT_EQ(m.snapshot().waiting, 2u);
  EXPECT_EQ(m.snapshot().running, 0u);
  ASSERT_TRUE(m.begin_step(0));
  EXPECT_EQ(m.snapshot().waiting, 0u);
  EXPECT_EQ(m.snapshot().running, 2u);
  m.end_step(0);
  EXPECT_EQ(m.snapshot().running, 2u);
  ASSERT_FALSE(m.submit(req(3, 100, 3)));
  ASSERT_TRUE(m.begin_step(0));  // a prefill of request 3 alone; 1 and 2 wait for the next decode
  EXPECT_EQ(m.snapshot().running, 3u);
}

TEST(VllmV0Model, KvUsageAndCountersMatchWhatRan) {
  VllmV0Model m(small_profile());
  ASSERT_FALSE(m.submit(req(1, 32, 20)));
  int steps = 0;
  while (m.begin_step(0)) {
    m.end_step(0);
    ++steps;
  }
  auto s = m.snapshot();
  EXPECT_EQ(steps, 20);  // 1 prefill + 19 decodes
  EXPECT_EQ(s.generation_tokens_total, 20u);
  EXPECT_EQ(s.prompt_tokens_total, 32u);
  EXPECT_EQ(s.kv_blocks_used, 0u);
  EXPECT_EQ(s.kv_usage(), 0.0);
}

TEST(VllmV0Model, InvalidProfileNamesTheField) {
  auto p = small_profile();
  p.max_model_len = 100000;
  try {
    VllmV0Model m(p);
    FAIL();
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("max_model_len"), std::string::npos);
  }
}
