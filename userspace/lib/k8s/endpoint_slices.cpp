#include "endpoint_slices.h"

#include <stdexcept>

#include <fmt/format.h>

namespace kvlb::k8s {
namespace {

bool condition(const nlohmann::json& conds, const char* name, bool if_missing) {
  if (!conds.is_object() || !conds.contains(name) || conds[name].is_null()) return if_missing;
  return conds[name].get<bool>();
}

std::string slice_name(const nlohmann::json& slice) {
  const auto& md = slice.value("metadata", nlohmann::json::object());
  if (!md.contains("name") || !md["name"].is_string())
    throw std::invalid_argument("EndpointSlice without metadata.name");
  return md["name"].get<std::string>();
}

std::vector<DiscoveredEndpoint> decode_slice(const nlohmann::json& slice,
                                             const std::string& port_name);

}  // namespace

std::vector<DiscoveredEndpoint> endpoints_of_slice(const nlohmann::json& slice,
                                                   const std::string& port_name) {
  return decoding("EndpointSlice", [&] { return decode_slice(slice, port_name); });
}

namespace {

std::vector<DiscoveredEndpoint> decode_slice(const nlohmann::json& slice,
                                             const std::string& port_name) {
  if (!slice.is_object()) throw std::invalid_argument("EndpointSlice is not an object");
  const std::string name = slice_name(slice);
  const std::string type = slice.value("addressType", "");
  if (type != "IPv4" && type != "IPv6") return {};  // FQDN slices carry no IPs
  std::optional<uint16_t> port;
  if (slice.contains("ports") && slice["ports"].is_array()) {
    for (const auto& p : slice["ports"]) {
      if (p.value("name", "") != port_name) continue;
      if (p.value("protocol", "TCP") != "TCP") continue;
      if (!p.contains("port") || !p["port"].is_number_integer())
        throw std::invalid_argument(
            fmt::format("slice {}: port {} without a number", name, port_name));
      auto v = p["port"].get<int64_t>();
      if (v < 1 || v > 65535)
        throw std::invalid_argument(fmt::format("slice {}: port {} out of range", name, v));
      port = static_cast<uint16_t>(v);
    }
  }
  if (!port) return {};  // this slice does not carry the port
  std::vector<DiscoveredEndpoint> out;
  for (const auto& ep : slice.value("endpoints", nlohmann::json::array())) {
    const auto& conds = ep.value("conditions", nlohmann::json::object());
    // Kubernetes: a missing ready means ready; serving defaults to ready;
    // terminating defaults to false.
    bool ready = condition(conds, "ready", true);
    bool serving = condition(conds, "serving", ready);
    bool terminating = condition(conds, "terminating", false);
    if (!serving) continue;
    kvlb_backend_state state = ready && !terminating ? KVLB_STATE_ACTIVE : KVLB_STATE_DRAINING;
    for (const auto& a : ep.value("addresses", nlohmann::json::array())) {
      if (!a.is_string())
        throw std::invalid_argument(fmt::format("slice {}: address not a string", name));
      auto e = Endpoint::parse_address(a.get<std::string>(), *port);
      if (!e) throw std::invalid_argument(fmt::format("slice {}: bad address {}", name, a.dump()));
      DiscoveredEndpoint d;
      d.address = *e;
      d.state = state;
      d.node_name = ep.value("nodeName", "");
      if (ep.contains("targetRef") && ep["targetRef"].value("kind", "") == "Pod")
        d.pod_name = ep["targetRef"].value("name", "");
      out.push_back(std::move(d));
    }
  }
  return out;
}

}  // namespace

void ServiceEndpoints::apply_list(const nlohmann::json& list) {
  decoding("EndpointSlice list", [&] { apply_list_checked(list); });
}

WatchAction ServiceEndpoints::apply_event(const nlohmann::json& event) {
  return decoding("watch event", [&] { return apply_event_checked(event); });
}

void ServiceEndpoints::apply_list_checked(const nlohmann::json& list) {
  if (!list.is_object() || !list.contains("items") || !list["items"].is_array())
    throw std::invalid_argument("EndpointSlice list without items");
  std::map<std::string, std::vector<DiscoveredEndpoint>> next;
  for (const auto& item : list["items"])
    next[slice_name(item)] = endpoints_of_slice(item, port_name_);
  auto rv = resource_version_of(list, "EndpointSlice list");
  slices_ = std::move(next);
  resource_version_ = std::move(rv);
}

WatchAction ServiceEndpoints::apply_event_checked(const nlohmann::json& event) {
  std::string type, rv;
  const nlohmann::json* obj = nullptr;
  if (auto done = watch_envelope(event, type, obj, rv, resource_version_)) return *done;
  auto name = slice_name(*obj);
  auto before = endpoints();
  if (type == "DELETED")
    slices_.erase(name);
  else
    slices_[name] = endpoints_of_slice(*obj, port_name_);
  if (!rv.empty()) resource_version_ = rv;
  return endpoints() == before ? WatchAction::None : WatchAction::Changed;
}

std::vector<DiscoveredEndpoint> ServiceEndpoints::endpoints() const {
  // An address in several slices (during a slice rebalance) appears once, with
  // the most available state.
  std::map<std::string, DiscoveredEndpoint> merged;
  for (const auto& [name, eps] : slices_)
    for (const auto& e : eps) {
      auto [it, fresh] = merged.emplace(e.address.to_string(), e);
      if (!fresh && e.state < it->second.state) it->second = e;
    }
  std::vector<DiscoveredEndpoint> out;
  for (auto& [k, v] : merged) out.push_back(std::move(v));
  return out;
}

}  // namespace kvlb::k8s
