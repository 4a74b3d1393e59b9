#include "k8s/events.h"

#include <stdexcept>

#include <fmt/format.h>

namespace kvlb::k8s {

using nlohmann::json;

namespace {

bool camel_case(const std::string& s) {
  if (s.empty() || s.size() > 128 || s[0] < 'A' || s[0] > 'Z') return false;
  for (char c : s)
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))) return false;
  return true;
}

// At most `max` bytes, not splitting a UTF-8 sequence (the server rejects
// invalid UTF-8).
std::string cut(const std::string& s, size_t max) {
  if (s.size() <= max) return s;
  size_t n = max;
  while (n > 0 && (static_cast<unsigned char>(s[n]) & 0xC0) == 0x80) --n;
  return s.substr(0, n);
}

}  // namespace

json event_object(const EventSpec& e, WallTime now) {
  const auto& o = e.object;
  if (o.kind.empty()) throw std::invalid_argument("event: involvedObject kind is empty");
  if (!is_dns1123_label(o.ns))
    throw std::invalid_argument(fmt::format("event: invalid namespace \"{}\"", o.ns));
  if (!is_dns1123_subdomain(o.name))
    throw std::invalid_argument(fmt::format("event: invalid object name \"{}\"", o.name));
  if (!camel_case(e.reason))
    throw std::invalid_argument(fmt::format("event: reason \"{}\" is not CamelCase", e.reason));
  auto nanos = std::chrono::duration_cast<std::chrono::nanoseconds>(now.time_since_epoch()).count();
  auto suffix = fmt::format(".{:x}", static_cast<uint64_t>(nanos));
  // The name must stay a 253-character subdomain: shorten the object part.
  auto base = o.name.substr(0, 253 - suffix.size());
  while (!base.empty() && (base.back() == '-' || base.back() == '.')) base.pop_back();
  json involved = {{"kind", o.kind}, {"namespace", o.ns}, {"name", o.name}};
  if (!o.api_version.empty()) involved["apiVersion"] = o.api_version;
  if (!o.uid.empty()) involved["uid"] = o.uid;
  auto ts = format_time(now);
  return {{"apiVersion", "v1"},
          {"kind", "Event"},
          {"metadata", {{"name", base + suffix}, {"namespace", o.ns}}},
          {"involvedObject", involved},
          {"type", e.type == EventType::Normal ? "Normal" : "Warning"},
          {"reason", e.reason},
          {"message", cut(e.message, kMaxEventMessage)},
          {"source", {{"component", e.component}}},
          {"firstTimestamp", ts},
          {"lastTimestamp", ts},
          {"count", 1},
          {"reportingComponent", e.component}};
}

ApiResult<std::string> create_event(const KubeClient& c, const EventSpec& e, WallTime now) {
  json ev;
  try {
    ev = event_object(e, now);
  } catch (const std::invalid_argument& x) {
    return bad_input(x.what());
  }
  std::string name = ev["metadata"]["name"];
  auto r = c.post(fmt::format("/api/v1/namespaces/{}/events", e.object.ns), ev.dump());
  if (!r.success())
    return api_error(r, fmt::format("create event {} for {} {}/{}", e.reason, e.object.kind,
                                    e.object.ns, e.object.name));
  return name;
}

}  // namespace kvlb::k8s
