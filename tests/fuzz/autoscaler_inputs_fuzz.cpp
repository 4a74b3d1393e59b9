// Any bytes as what kvlb-autoscaler reads: its YAML configuration (parsed, or
// std::invalid_argument naming a field: nothing else), and the answers it
// decodes (the agent's /v1/services and /v1/backends, a Scale, a Pod, a
// Lease): decoded, or a std::exception the caller turns into an error; no
// abort, no other throw.
#include <cstddef>
#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

#include "autoscaler/config.h"
#include "autoscaler/observe.h"
#include "k8s/leader_election.h"
#include "k8s/pods.h"
#include "k8s/workload_scale.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1 || size > 64 * 1024) return 0;
  const uint8_t which = data[0] % 5;
  std::string doc(reinterpret_cast<const char*>(data) + 1, size - 1);
  if (which == 0) {
    try {
      auto cfg = kvlb::autoscaler::parse_config(doc);
      (void)cfg;
    } catch (const std::invalid_argument& e) {
      if (std::string(e.what()).find(':') == std::string::npos) __builtin_trap();  // no field
    }
    return 0;
  }
  if (which == 1) {  // a Scale: errors are values
    auto s = kvlb::k8s::parse_scale(doc);
    (void)s;
    return 0;
  }
  auto j = nlohmann::json::parse(doc, nullptr, false);
  if (j.is_discarded()) return 0;
  try {
    if (which == 2) (void)kvlb::k8s::pod_info_of(j);
    if (which == 3) (void)kvlb::k8s::lease_of(j);
    if (which == 4 && j.is_array() && j.size() == 2)
      (void)kvlb::autoscaler::agent_view_of(j[0], j[1]);
  } catch (const std::exception&) {
  }
  return 0;
}
