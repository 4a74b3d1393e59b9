#include "scoring/suspects.h"

#include <algorithm>
#include <cmath>

#include <fmt/format.h>

namespace kvlb::scoring {
namespace {

constexpr size_t kMinObservations = 10;
constexpr double kMaxProbationS = 300;
// A backend that behaved this long since it was last cleared starts over.
constexpr double kStrikesForgottenAfterS = 600;

template <typename T>
T median(std::vector<T> v) {
  std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(v.size() / 2), v.end());
  return v[v.size() / 2];
}

}  // namespace

void SuspectTracker::observe(uint32_t key, const Observation& o) {
  if (!rules_.enabled) return;
  State& s = state_[key];
  s.window.push_back(o);
  if (o.scraped && (o.running > 0 || o.waiting > 0)) s.last_work = o.t;
  // Keep the window: everything newer than window_s, and at least the last ten.
  while (s.window.size() > kMinObservations && o.t - s.window[1].t >= rules_.window_s)
    s.window.pop_front();
}

double SuspectTracker::last_work(uint32_t key) const {
  auto it = state_.find(key);
  return it == state_.end() ? -1e300 : it->second.last_work;
}

bool SuspectTracker::update(uint32_t key, double peers_last_work) {
  if (!rules_.enabled) return false;
  auto it = state_.find(key);
  if (it == state_.end() || it->second.window.empty()) return false;
  State& s = it->second;
  const Observation& o = s.window.back();
  const bool was = s.suspect;
  if (s.suspect && o.scraped && (o.running > 0 || o.waiting > 0)) {
    // It reports work: whatever it was, it is serving now.
    s.suspect = false;
  } else {
    const auto& first = s.window.front();
    const double span = o.t - first.t;
    bool found = false;
    const uint64_t picks = o.picks >= first.picks ? o.picks - first.picks : 0;
    // The contrast: some peer reported work within the same window.
    const bool peers_work = peers_last_work >= first.t;
    if (peers_work && picks >= rules_.min_picks && s.window.size() >= kMinObservations &&
        span >= rules_.window_s * 0.999) {
      bool idle_reports = true;
      double inflight_sum = 0;
      for (const auto& w : s.window) {
        idle_reports = idle_reports && w.scraped && w.running == 0 && w.waiting == 0;
        inflight_sum += static_cast<double>(std::max<int64_t>(0, w.inflight));
      }
      const double mean_inflight = inflight_sum / static_cast<double>(s.window.size());
      const double lifetime = mean_inflight * span / static_cast<double>(picks);
      if (idle_reports && lifetime < rules_.max_lifetime_s) {
        found = true;
        s.reason = fmt::format(
            "{} connections in {:.1f} s, mean lifetime {:.0f} ms, while reporting nothing "
            "running or waiting and its peers report work",
            picks, span, lifetime * 1000);
      }
    }
    if (found) {
      if (!s.suspect) {
        if (o.t - s.last_clear > kStrikesForgottenAfterS) s.strikes = 0;
        ++s.strikes;
        ++events_;
        s.until =
            o.t + std::min(kMaxProbationS, rules_.probation_s * std::pow(2.0, s.strikes - 1.0));
      }
      s.suspect = true;
    } else if (s.suspect && o.t >= s.until) {
      s.suspect = false;
    }
  }
  if (was && !s.suspect) {
    s.last_clear = o.t;
    s.reason.clear();
  }
  return was != s.suspect;
}

bool SuspectTracker::suspect(uint32_t key) const {
  auto it = state_.find(key);
  return it != state_.end() && it->second.suspect;
}

std::string SuspectTracker::reason(uint32_t key) const {
  auto it = state_.find(key);
  return it != state_.end() && it->second.suspect ? it->second.reason : std::string();
}

kvlb_score bound_suspect(const kvlb_score& own, int64_t own_inflight,
                         const std::vector<PeerLoad>& peers) {
  if (peers.empty()) return own;
  std::vector<uint32_t> waiting;
  std::vector<uint16_t> kv;
  std::vector<int64_t> inflight;
  for (const auto& p : peers) {
    waiting.push_back(p.score.waiting);
    kv.push_back(p.score.kv_permille);
    inflight.push_back(std::max<int64_t>(0, p.inflight));
  }
  kvlb_score s = own;
  // Strictly above the median: it loses to at least half its peers on every
  // policy's first criterion, and on the in-flight tie-break.
  const uint32_t mw = median(waiting);
  s.waiting = std::max(own.waiting, mw == UINT32_MAX ? mw : mw + 1);
  s.kv_permille = std::max(own.kv_permille, median(kv));
  const int64_t target = median(inflight) + 1;
  const int64_t own_if = std::max<int64_t>(0, own_inflight);
  s.inflight_bias = static_cast<uint32_t>(std::clamp<int64_t>(target - own_if, 0, 1 << 20));
  return s;
}

}  // namespace kvlb::scoring
