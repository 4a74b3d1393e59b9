#include "list_watcher.h"

#include <random>
#include <stdexcept>
#include <thread>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

namespace kvlb::k8s {

std::string resource_version_of(const nlohmann::json& object, std::string_view what) {
  if (!object.contains("metadata")) return "";
  const auto& md = object["metadata"];
  if (!md.is_object())
    throw std::invalid_argument(fmt::format("{}: metadata is not an object", what));
  if (!md.contains("resourceVersion")) return "";
  if (!md["resourceVersion"].is_string())
    throw std::invalid_argument(fmt::format("{}: metadata.resourceVersion is not a string", what));
  return md["resourceVersion"].get<std::string>();
}

std::optional<WatchAction> watch_envelope(const nlohmann::json& event, std::string& type,
                                          const nlohmann::json*& object,
                                          std::string& object_version,
                                          std::string& resource_version) {
  if (!event.is_object() || !event.contains("type") || !event["type"].is_string() ||
      !event.contains("object") || !event["object"].is_object())
    throw std::invalid_argument("watch event without type or object");
  type = event["type"].get<std::string>();
  object = &event["object"];
  const auto& obj = *object;
  if (type == "ERROR") {
    // A Status object; 410 Gone means our resourceVersion is too old: re-list.
    const auto& code = obj.contains("code") ? obj["code"] : nlohmann::json();
    if (code.is_number_integer() && code.get<int64_t>() == 410) return WatchAction::Relist;
    const auto& msg = obj.contains("message") ? obj["message"] : nlohmann::json();
    throw std::invalid_argument(
        fmt::format("watch error: {}", msg.is_string() ? msg.get<std::string>() : obj.dump()));
  }
  std::string rv = resource_version_of(obj, "watch event");
  if (type != "BOOKMARK" && type != "ADDED" && type != "MODIFIED" && type != "DELETED")
    throw std::invalid_argument("unknown watch event type " + type);
  if (type == "BOOKMARK") {
    if (!rv.empty()) resource_version = rv;
    return WatchAction::None;
  }
  object_version = rv;
  return std::nullopt;
}

ListWatcher::ListWatcher(const KubeClient& client, std::string what, std::string list_path,
                         WatchedState& state, OnChange on_change, OnError on_error)
    : client_(client),
      what_(std::move(what)),
      list_path_(std::move(list_path)),
      state_(state),
      on_change_(std::move(on_change)),
      on_error_(std::move(on_error)) {}

std::chrono::milliseconds ListWatcher::backoff(unsigned attempt) {
  // 200 ms doubling to 30 s, like client-go's reflector backoff in spirit.
  auto ms = 200ll << std::min(attempt, 8u);
  return std::chrono::milliseconds(std::min(ms, 30000ll));
}

bool ListWatcher::list() {
  auto r = client_.get(list_path_);
  if (!r.ok()) {
    on_error_(fmt::format(
        "list {}: {}", what_,
        r.error.empty() ? fmt::format("HTTP {}: {}", r.status, r.body.substr(0, 200)) : r.error));
    return false;
  }
  try {
    state_.apply_list(nlohmann::json::parse(r.body));
  } catch (const std::exception& e) {
    on_error_(fmt::format("list {}: {}", what_, e.what()));
    return false;
  }
  on_change_();
  return true;
}

void ListWatcher::run(const std::atomic<bool>& stop) {
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
  const char sep = list_path_.find('?') == std::string::npos ? '?' : '&';
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
    std::string path = list_path_ + sep + "watch=1&allowWatchBookmarks=true&resourceVersion=" +
                       state_.resource_version();
    auto r = client_.watch(
        path,
        [&](std::string_view line) {
          if (line.empty()) return true;
          try {
            auto action = state_.apply_event(nlohmann::json::parse(line));
            if (action == WatchAction::Changed) on_change_();
            if (action == WatchAction::Relist) {
              relist = true;
              return false;
            }
          } catch (const std::exception& e) {
            on_error_(fmt::format("watch {}: {}", what_, e.what()));
            bad = true;
            return false;
          }
          return true;
        },
        [&] { return stop.load(); });
    if (stop) break;
    if (relist) {
      spdlog::info("watch {}: resourceVersion expired (410 Gone), listing again", what_);
      need_list = true;
      continue;
    }
    if (bad || !r.error.empty() || r.status != 200) {
      if (!bad)
        on_error_(fmt::format("watch {}: {}", what_,
                              r.error.empty() ? fmt::format("HTTP {}", r.status) : r.error));
      if (r.status == 410) need_list = true;
      sleep(backoff(failures++));
      continue;
    }
    failures = 0;  // the server ended the watch normally: resume from the last version
  }
}

}  // namespace kvlb::k8s
