// clock.h - the clock the kernel programs read.
#pragma once

#include <time.h>

#include <cstdint>

namespace kvlb {

// CLOCK_MONOTONIC in nanoseconds: the clock of bpf_ktime_get_ns() and
// bpf_ktime_get_coarse_ns(), so a score's time compares with the kernel's.
inline uint64_t monotonic_ns() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1'000'000'000ull + static_cast<uint64_t>(ts.tv_nsec);
}

// CLOCK_REALTIME in nanoseconds: for what crosses hosts (a message's send
// time, for a delay metric), never to age a score.
inline uint64_t realtime_ns() {
  timespec ts{};
  clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1'000'000'000ull + static_cast<uint64_t>(ts.tv_nsec);
}

}  // namespace kvlb
