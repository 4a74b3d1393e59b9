// endpoint.h - IPv4/IPv6 address + port, convertible to the kernel map layout.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "kvlb_maps.h"

namespace kvlb {

struct Endpoint {
  int family = 0;              // KVLB_AF_INET or KVLB_AF_INET6
  struct kvlb_addr addr = {};  // network byte order, as in the maps
  uint16_t port = 0;           // host byte order

  // "10.0.0.1:8000" or "[fd00::1]:8000". nullopt on any syntax error.
  static std::optional<Endpoint> parse(std::string_view text);
  // Address only, without port ("10.0.0.1", "fd00::1").
  static std::optional<Endpoint> parse_address(std::string_view text, uint16_t port);
  std::string address_string() const;
  std::string to_string() const;  // with port, brackets for IPv6
  bool operator==(const Endpoint& o) const;
};

}  // namespace kvlb
