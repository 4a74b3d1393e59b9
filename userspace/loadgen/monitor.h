// monitor.h - records the replicas' own metrics (queue, running, KV usage) over a
// run, on a thread of its own, straight from their /metrics (never through the
// balancer under test).
#pragma once

#include <atomic>
#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

namespace kvlb::loadgen {

struct ReplicaSeries {
  std::string url;
  std::vector<double> t, waiting, running, kv;
  size_t failed_scrapes = 0;
};

// Max and p99 of waiting, max and mean KV usage over samples at or after
// `from_s`; the series itself when asked.
nlohmann::json series_summary(const ReplicaSeries& s, double from_s, bool with_series);

// Whether the cluster's queues are bounded over [from_s, to_s]: the least-squares
// slope of each replica's waiting count over its samples in the window, summed
// (the slope of the total), in requests per minute; the mean and last total.
// A stable cluster's growth is near 0 however long the run; above capacity it
// is about (arrival rate - service rate) * 60, and p99 latency there only
// measures how long the run was.
nlohmann::json queue_trend(const std::vector<ReplicaSeries>& replicas, double from_s, double to_s);

class ReplicaMonitor {
 public:
  ReplicaMonitor(std::vector<std::string> metrics_urls, std::chrono::milliseconds interval);
  ~ReplicaMonitor();
  void start();
  void stop();
  // Per replica, over samples at or after `from_s`: max and p99 of waiting, max
  // and mean KV usage; and the whole series when asked.
  nlohmann::json to_json(bool with_series, double from_s = 0) const;
  const std::vector<ReplicaSeries>& series() const { return series_; }

 private:
  void loop();
  std::vector<ReplicaSeries> series_;
  std::chrono::milliseconds interval_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

}  // namespace kvlb::loadgen
