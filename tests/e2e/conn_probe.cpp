// kvlb-conn-probe: opens connections to an address one after another, the way a
// client of a Service does, and reports where they went.
//
// For every connection: connect(), getpeername() (must report the address the
// application dialled, even though the socket LB rewrote it), an HTTP GET, and the
// replica's name from its X-Kvlb-Replica header. Prints one JSON object.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <map>
#include <string>

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "common/endpoint.h"
#include "common/unique_fd.h"

using namespace kvlb;

namespace {

struct Outcome {
  std::string replica;  // empty on failure
  std::string error;
  bool peer_ok = false;
};

Outcome probe_once(const Endpoint& target, const std::string& path) {
  Outcome o;
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(target.port);
  sa.sin_addr.s_addr = target.addr.words[0];
  UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd) return {"", fmt::format("socket: {}", std::strerror(errno))};
  timeval tv{5, 0};
  setsockopt(fd.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  setsockopt(fd.get(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
  if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&sa), sizeof(sa)) != 0)
    return {"", fmt::format("connect: {}", std::strerror(errno))};
  sockaddr_in peer{};
  socklen_t len = sizeof(peer);
  if (::getpeername(fd.get(), reinterpret_cast<sockaddr*>(&peer), &len) != 0)
    return {"", fmt::format("getpeername: {}", std::strerror(errno))};
  o.peer_ok = peer.sin_addr.s_addr == sa.sin_addr.s_addr && peer.sin_port == sa.sin_port;
  auto req = fmt::format("GET {} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n", path,
                         target.to_string());
  if (::send(fd.get(), req.data(), req.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(req.size()))
    return {"", fmt::format("send: {}", std::strerror(errno)), o.peer_ok};
  std::string resp;
  char buf[4096];
  for (;;) {
    ssize_t n = ::recv(fd.get(), buf, sizeof(buf), 0);
    if (n < 0) return {"", fmt::format("recv: {}", std::strerror(errno)), o.peer_ok};
    if (n == 0) break;
    resp.append(buf, static_cast<size_t>(n));
    if (resp.size() > (1 << 20)) break;
  }
  static const std::string kHeader = "\r\nX-Kvlb-Replica: ";
  auto pos = resp.find(kHeader);
  if (pos == std::string::npos) return {"", "response without X-Kvlb-Replica", o.peer_ok};
  auto end = resp.find("\r\n", pos + kHeader.size());
  o.replica = resp.substr(pos + kHeader.size(), end - pos - kHeader.size());
  return o;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"kvlb-conn-probe: where do connections to an address go?"};
  std::string target_text, path = "/health";
  int count = 100;
  app.add_option("--target", target_text, "ip:port to connect to")->required();
  app.add_option("--count", count, "connections to open, one after another");
  app.add_option("--path", path, "HTTP path to GET");
  CLI11_PARSE(app, argc, argv);
  auto target = Endpoint::parse(target_text);
  if (!target || target->family != KVLB_AF_INET) {
    fmt::print(stderr, "--target: '{}' is not an IPv4 ip:port\n", target_text);
    return 2;
  }
  std::map<std::string, int> by_replica, errors;
  int peer_mismatch = 0, ok = 0;
  for (int i = 0; i < count; ++i) {
    auto o = probe_once(*target, path);
    if (!o.replica.empty()) {
      ++ok;
      ++by_replica[o.replica];
    } else {
      ++errors[o.error];
    }
    if (!o.peer_ok && o.error.rfind("connect:", 0) != 0) ++peer_mismatch;
  }
  nlohmann::json j = {
      {"target", target->to_string()},  {"connections", count},     {"ok", ok},
      {"peer_mismatch", peer_mismatch}, {"by_replica", by_replica}, {"errors", errors}};
  fmt::print("{}\n", j.dump());
  return 0;
}
