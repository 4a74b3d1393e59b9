// Any bytes as a watch event or a list from the API server, fed to both watch
// states the agent keeps (a Service's EndpointSlices, the drained pods): each
// applies it or throws std::invalid_argument; no other exception, no abort; a
// refused event changes nothing; every drained pod has a DNS-1123 name and
// their number stays bounded.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <stdexcept>
#include <string>

#include <nlohmann/json.hpp>

#include "k8s/draining_pods.h"
#include "k8s/endpoint_slices.h"
#include "k8s/kube_client.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto j = nlohmann::json::parse(data, data + size, nullptr, false);
  if (j.is_discarded()) return 0;
  using namespace kvlb::k8s;
  DrainingPods pods;
  ServiceEndpoints slices("http");
  try {
    pods.apply_list(j);
  } catch (const std::invalid_argument&) {
    if (!pods.names().empty() || !pods.resource_version().empty()) std::abort();
  }
  try {
    slices.apply_list(j);
  } catch (const std::invalid_argument&) {
  }
  auto names = pods.names();
  auto rv = pods.resource_version();
  try {
    pods.apply_event(j);
  } catch (const std::invalid_argument&) {
    if (pods.names() != names || pods.resource_version() != rv) std::abort();
  }
  try {
    slices.apply_event(j);
  } catch (const std::invalid_argument&) {
  }
  if (pods.names().size() > kMaxDrainingPods) std::abort();
  for (const auto& n : pods.names())
    if (!is_dns1123_subdomain(n)) std::abort();
  return 0;
}
