// events.h - core/v1 Events about an object (what `kubectl describe` shows), one
// per autoscaling decision: type, a CamelCase reason, and a message with the
// numbers behind it.
#pragma once

#include <cstddef>
#include <string>

#include <nlohmann/json.hpp>

#include "k8s/api_error.h"
#include "k8s/api_time.h"
#include "k8s/kube_client.h"

namespace kvlb::k8s {

struct ObjectRef {
  std::string api_version;  // "apps/v1"
  std::string kind;         // "Deployment"
  std::string ns;
  std::string name;
  std::string uid;  // "" when unknown
};

enum class EventType { Normal, Warning };

struct EventSpec {
  ObjectRef object;
  EventType type = EventType::Normal;
  std::string reason;     // CamelCase: ScaledUp, ScaleDownBlocked, ...
  std::string message;    // cut at kMaxEventMessage bytes (on a UTF-8 boundary)
  std::string component;  // source.component, e.g. "kvlb-autoscaler"
};

// events.k8s.io/v1 refuses a note over 1 kB, and core/v1 Events are read
// through that API too: stay under it.
inline constexpr size_t kMaxEventMessage = 1024;

// The Event object to POST: metadata.name "<object>.<unix nanoseconds, hex>",
// as client-go's recorder names them. Throws std::invalid_argument on a
// missing kind, an invalid name or namespace, or a reason that is not CamelCase.
nlohmann::json event_object(const EventSpec& e, WallTime now);

// Creates it; returns the Event's name.
ApiResult<std::string> create_event(const KubeClient& c, const EventSpec& e,
                                    WallTime now = std::chrono::system_clock::now());

}  // namespace kvlb::k8s
