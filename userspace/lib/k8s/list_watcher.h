// list_watcher.h - keeps one collection of API objects current, as client-go's
// reflector does: list, then watch from the list's resourceVersion with
// bookmarks; a watch that ends is resumed from the last version seen; 410 Gone
// re-lists; any error backs off exponentially (with jitter) before the next
// attempt. What is kept, and how an object changes it, is the WatchedState's.
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>

#include <fmt/format.h>

#include <nlohmann/json.hpp>

#include "k8s/kube_client.h"

namespace kvlb::k8s {

enum class WatchAction { None, Changed, Relist };

// An API object is untrusted: a field of an unexpected type makes nlohmann::json
// throw its own exceptions; they become the decoder's std::invalid_argument.
template <typename F>
auto decoding(const char* what, F&& f) -> decltype(f()) {
  try {
    return f();
  } catch (const nlohmann::json::exception& e) {
    throw std::invalid_argument(fmt::format("malformed {}: {}", what, e.what()));
  }
}

// The decoded state of one list-and-watch. Both calls throw
// std::invalid_argument (and only that) on a malformed list or event.
class WatchedState {
 public:
  virtual ~WatchedState() = default;
  // Replaces everything with a list response; remembers its resourceVersion.
  virtual void apply_list(const nlohmann::json& list) = 0;
  // Applies one watch event line ({"type":..., "object":...}).
  virtual WatchAction apply_event(const nlohmann::json& event) = 0;
  virtual const std::string& resource_version() const = 0;
};

// An object's or a list's metadata.resourceVersion, "" when absent; throws
// std::invalid_argument (naming `what`) when metadata is not an object or the
// version not a string.
std::string resource_version_of(const nlohmann::json& object, std::string_view what);

// A watch event's envelope, handled the same for every resource: ERROR 410
// (Gone: the version is too old) is Relist, any other ERROR throws; BOOKMARK
// moves `resource_version` and is None. For ADDED, MODIFIED and DELETED it
// returns nullopt with `type`, `object` and the object's `object_version` set:
// the caller applies the object and only then moves its resourceVersion (an
// object it cannot decode is not skipped: the watch resumes before it). Throws
// std::invalid_argument when the event is malformed or of an unknown type.
std::optional<WatchAction> watch_envelope(const nlohmann::json& event, std::string& type,
                                          const nlohmann::json*& object,
                                          std::string& object_version,
                                          std::string& resource_version);

class ListWatcher {
 public:
  using OnChange = std::function<void()>;
  using OnError = std::function<void(const std::string&)>;

  // `what` names the collection in errors and logs; `list_path` is the list
  // request (with its selectors); the watch adds watch=1 to it.
  ListWatcher(const KubeClient& client, std::string what, std::string list_path,
              WatchedState& state, OnChange on_change, OnError on_error);
  // Runs until `stop` is set (checked at least every 200 ms).
  void run(const std::atomic<bool>& stop);

  // For tests: the backoff sequence, capped.
  static std::chrono::milliseconds backoff(unsigned attempt);

 private:
  bool list();
  const KubeClient& client_;
  std::string what_;
  std::string list_path_;
  WatchedState& state_;
  OnChange on_change_;
  OnError on_error_;
};

}  // namespace kvlb::k8s
