#include "endpoint.h"

#include <arpa/inet.h>

#include <charconv>
#include <cstring>

#include <fmt/format.h>

namespace kvlb {

std::optional<Endpoint> Endpoint::parse_address(std::string_view text, uint16_t port) {
  std::string s(text);
  Endpoint e;
  e.port = port;
  if (inet_pton(AF_INET, s.c_str(), &e.addr.words[0]) == 1) {
    e.family = KVLB_AF_INET;
    return e;
  }
  if (inet_pton(AF_INET6, s.c_str(), e.addr.words) == 1) {
    e.family = KVLB_AF_INET6;
    return e;
  }
  return std::nullopt;
}

std::optional<Endpoint> Endpoint::parse(std::string_view text) {
  std::string_view host, port_text;
  if (!text.empty() && text.front() == '[') {
    auto close = text.find(']');
    if (close == std::string_view::npos || close + 1 >= text.size() || text[close + 1] != ':')
      return std::nullopt;
    host = text.substr(1, close - 1);
    port_text = text.substr(close + 2);
  } else {
    auto colon = text.rfind(':');
    if (colon == std::string_view::npos || text.find(':') != colon) return std::nullopt;
    host = text.substr(0, colon);
    port_text = text.substr(colon + 1);
  }
  unsigned port = 0;
  auto [ptr, ec] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
  if (ec != std::errc() || ptr != port_text.data() + port_text.size() || port == 0 || port > 65535)
    return std::nullopt;
  auto e = parse_address(host, static_cast<uint16_t>(port));
  if (e && e->family == KVLB_AF_INET && text.front() == '[') return std::nullopt;
  return e;
}

std::string Endpoint::address_string() const {
  char buf[INET6_ADDRSTRLEN] = {};
  if (family == KVLB_AF_INET)
    inet_ntop(AF_INET, &addr.words[0], buf, sizeof(buf));
  else if (family == KVLB_AF_INET6)
    inet_ntop(AF_INET6, addr.words, buf, sizeof(buf));
  return buf;
}

std::string Endpoint::to_string() const {
  if (family == KVLB_AF_INET6) return fmt::format("[{}]:{}", address_string(), port);
  return fmt::format("{}:{}", address_string(), port);
}

bool Endpoint::operator==(const Endpoint& o) const {
  return family == o.family && port == o.port && std::memcmp(&addr, &o.addr, sizeof(addr)) == 0;
}

}  // namespace kvlb
