// names.h - the one spelling of each policy and backend state: the config
// file, the admin API, kvlbctl, the logs and the simulator all use these.
#pragma once

#include <array>
#include <optional>
#include <string>
#include <string_view>

#include "kvlb_maps.h"

namespace kvlb {

inline constexpr std::array<std::string_view, KVLB_POLICY_COUNT> kPolicyNames = {
    "random", "least-inflight", "p2c-kv", "p2c-queue-kv", "p2c-score"};

inline constexpr std::array<std::string_view, 3> kStateNames = {"active", "draining", "down"};

// Data-plane events (enum kvlb_event) by index; "" for unused slots.
inline constexpr std::array<std::string_view, KVLB_EVENT_COUNT> kEventNames = {"socket_table_full",
                                                                               "no_backend"};

// Gateway packet counters (enum kvlb_gw_stat) by index; "" for unused slots.
inline constexpr std::array<std::string_view, KVLB_GW_STAT_COUNT> kGatewayStatNames = {
    "packets",      "not_vip",   "new_flow",        "forward",
    "reverse",      "maglev",    "no_backend",      "truncated",
    "malformed",    "fragment",  "ipv6_ext",        "not_tcp",
    "icmp",         "ttl",       "fib_pass",        "fib_fail",
    "reverse_miss", "snat_busy", "flow_table_full", "closed",
    "expired",      "sync_lost", "taken_over"};

// Keep-alive rebalancing: why a backend's idle pooled connections are closed
// (enum kvlb_shed_reason) and what the iterator did with each balanced socket
// to a shed backend (enum kvlb_rebalance_verdict); "" for unused slots.
inline constexpr std::array<std::string_view, KVLB_SHED_REASON_COUNT> kShedReasonNames = {
    "none", "poor_choice", "draining"};
inline constexpr std::array<std::string_view, KVLB_RB_VERDICT_COUNT> kRebalanceVerdictNames = {
    "closed",     "backend_ok", "in_flight",     "no_response_end",
    "too_recent", "budget",     "destroy_failed"};

inline std::string_view policy_name(kvlb_policy p) {
  return p < KVLB_POLICY_COUNT ? kPolicyNames[p] : "unknown";
}

inline std::optional<kvlb_policy> policy_from_name(std::string_view name) {
  for (size_t i = 0; i < kPolicyNames.size(); ++i)
    if (kPolicyNames[i] == name) return static_cast<kvlb_policy>(i);
  return std::nullopt;
}

// Unknown values read as "down": never shown as eligible.
inline std::string_view state_name(uint8_t state) {
  return state < kStateNames.size() ? kStateNames[state] : "down";
}

inline std::optional<kvlb_backend_state> state_from_name(std::string_view name) {
  for (size_t i = 0; i < kStateNames.size(); ++i)
    if (kStateNames[i] == name) return static_cast<kvlb_backend_state>(i);
  return std::nullopt;
}

// "random, least-inflight, ..." for error messages.
template <size_t N>
std::string joined(const std::array<std::string_view, N>& names) {
  std::string out;
  for (auto n : names) out += (out.empty() ? "" : ", ") + std::string(n);
  return out;
}

}  // namespace kvlb
