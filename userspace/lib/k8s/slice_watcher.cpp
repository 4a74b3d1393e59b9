#include "slice_watcher.h"

#include <random>
#include <thread>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

namespace kvlb::k8s {

SliceWatcher::SliceWatcher(const KubeClient& client, ServiceRef ref, OnChange on_change,
                           OnError on_error)
    : client_(client),
      ref_(std::move(ref)),
      on_change_(std::move(on_change)),
      on_error_(std::move(on_error)),
      state_(ref_.port_name) {}

std::chrono::milliseconds SliceWatcher::backoff(unsigned attempt) {
  // 200 ms doubling to 30 s, like client-go's reflector backoff in spirit.
  auto ms = 200ll << std::min(attempt, 8u);
  return std::chrono::milliseconds(std::min(ms, 30000ll));
}

std::string SliceWatcher::list_path() const {
  return fmt::format(
      "/apis/discovery.k8s.io/v1/namespaces/{}/endpointslices?labelSelector="
      "kubernetes.io%2Fservice-name%3D{}",
      ref_.ns, ref_.name);
}

bool SliceWatcher::list() {
  auto r = client_.get(list_path());
  if (!r.ok()) {
    on_error_(fmt::format(
        "list {}/{}: {}", ref_.ns, ref_.name,
        r.error.empty() ? fmt::format("HTTP {}: {}", r.status, r.body.substr(0, 200)) : r.error));
    return false;
  }
  try {
    state_.apply_list(nlohmann::json::parse(r.body));
  } catch (const std::exception& e) {
    on_error_(fmt::format("list {}/{}: {}", ref_.ns, ref_.name, e.what()));
    return false;
  }
  on_change_(state_.endpoints());
  return true;
}

void SliceWatcher::run(const std::atomic<bool>& stop) {
  std::mt19937 rng(std::random_device{}());
  unsigned failures = 0;
  bool need_list = true;
  auto sleep = [&](std::chrono::milliseconds d) {
    // Jittered, and interruptible by stop.
    d = std::chrono::milliseconds(d.count() / 2 +
                                  std::uniform_int_distribution<long>(0, d.count() / 2)(rng));
    auto until = std::chrono::steady_clock::now() + d;
    while (!stop && std::chrono::steady_clock::now() < until)
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
  };
  while (!stop) {
    if (need_list) {
      if (!list()) {
        sleep(backoff(failures++));
        continue;
      }
      need_list = false;
      failures = 0;
    }
    bool relist = false, bad = false;
    std::string path = list_path() + "&watch=1&allowWatchBookmarks=true&resourceVersion=" +
                       state_.resource_version();
    auto r = client_.watch(
        path,
        [&](std::string_view line) {
          if (line.empty()) return true;
          try {
            auto action = state_.apply_event(nlohmann::json::parse(line));
            if (action == WatchAction::Changed) on_change_(state_.endpoints());
            if (action == WatchAction::Relist) {
              relist = true;
              return false;
            }
          } catch (const std::exception& e) {
            on_error_(fmt::format("watch {}/{}: {}", ref_.ns, ref_.name, e.what()));
            bad = true;
            return false;
          }
          return true;
        },
        [&] { return stop.load(); });
    if (stop) break;
    if (relist) {
      spdlog::info("watch {}/{}: resourceVersion expired (410 Gone), listing again", ref_.ns,
                   ref_.name);
      need_list = true;
      continue;
    }
    if (bad || !r.error.empty() || r.status != 200) {
      if (!bad)
        on_error_(fmt::format("watch {}/{}: {}", ref_.ns, ref_.name,
                              r.error.empty() ? fmt::format("HTTP {}", r.status) : r.error));
      if (r.status == 410) need_list = true;
      sleep(backoff(failures++));
      continue;
    }
    failures = 0;  // the server ended the watch normally: resume from the last version
  }
}

}  // namespace kvlb::k8s
