// kvlb-conn-probe: opens connections to an address the way a client of a
// Service does, and reports where they went.
//
// For every connection: connect(), getpeername() (must report the address the
// application dialled, even though the socket LB rewrote it), an HTTP GET, and the
// replica's name from its X-Kvlb-Replica header. Prints one JSON object.
//
// --hold S keeps one keep-alive connection instead: a request, S seconds of
// waiting (while a test drains a backend or restarts the agent), a second request
// on the same connection; both answers and getpeername after the wait are reported.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <map>
#include <string>
#include <thread>

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "common/endpoint.h"
#include "common/unique_fd.h"

using namespace kvlb;

namespace {

struct Target {
  sockaddr_storage sa{};
  socklen_t len = 0;
  int family = AF_INET;
};

Target make_target(const Endpoint& ep, bool v4mapped) {
  Target t;
  if (ep.family == KVLB_AF_INET && !v4mapped) {
    auto* s = reinterpret_cast<sockaddr_in*>(&t.sa);
    s->sin_family = AF_INET;
    s->sin_port = htons(ep.port);
    s->sin_addr.s_addr = ep.addr.words[0];
    t.len = sizeof(sockaddr_in);
    t.family = AF_INET;
  } else {
    auto* s = reinterpret_cast<sockaddr_in6*>(&t.sa);
    s->sin6_family = AF_INET6;
    s->sin6_port = htons(ep.port);
    if (ep.family == KVLB_AF_INET) {  // ::ffff:a.b.c.d
      s->sin6_addr.s6_addr[10] = 0xff;
      s->sin6_addr.s6_addr[11] = 0xff;
      std::memcpy(&s->sin6_addr.s6_addr[12], &ep.addr.words[0], 4);
    } else {
      std::memcpy(&s->sin6_addr, ep.addr.words, 16);
    }
    t.len = sizeof(sockaddr_in6);
    t.family = AF_INET6;
  }
  return t;
}

bool same_peer(const Target& t, int fd) {
  sockaddr_storage peer{};
  socklen_t len = sizeof(peer);
  if (::getpeername(fd, reinterpret_cast<sockaddr*>(&peer), &len) != 0) return false;
  return len == t.len && std::memcmp(&peer, &t.sa, t.len) == 0;
}

// One HTTP/1.1 request on fd; returns the replica name, or "" and sets error.
std::string request(int fd, const std::string& path, bool keep_alive, std::string& error) {
  auto req = fmt::format("GET {} HTTP/1.1\r\nHost: probe\r\nConnection: {}\r\n\r\n", path,
                         keep_alive ? "keep-alive" : "close");
  if (::send(fd, req.data(), req.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(req.size())) {
    error = fmt::format("send: {}", std::strerror(errno));
    return "";
  }
  std::string resp;
  char buf[4096];
  for (;;) {
    auto end = resp.find("\r\n\r\n");
    if (end != std::string::npos) {
      // Read until the body (Content-Length) is complete.
      auto cl = resp.find("Content-Length: ");
      size_t body = cl == std::string::npos ? 0 : std::stoul(resp.substr(cl + 16));
      if (resp.size() >= end + 4 + body) break;
    }
    ssize_t n = ::recv(fd, buf, sizeof(buf), 0);
    if (n < 0) {
      error = fmt::format("recv: {}", std::strerror(errno));
      return "";
    }
    if (n == 0) {
      error = "connection closed before a response";
      return "";
    }
    resp.append(buf, static_cast<size_t>(n));
  }
  static const std::string kHeader = "\r\nX-Kvlb-Replica: ";
  auto pos = resp.find(kHeader);
  if (pos == std::string::npos) {
    error = "response without X-Kvlb-Replica";
    return "";
  }
  auto end = resp.find("\r\n", pos + kHeader.size());
  return resp.substr(pos + kHeader.size(), end - pos - kHeader.size());
}

UniqueFd dial(const Target& t, uint32_t mark, std::string& error) {
  UniqueFd fd(::socket(t.family, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd) {
    error = fmt::format("socket: {}", std::strerror(errno));
    return fd;
  }
  timeval tv{5, 0};
  setsockopt(fd.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  setsockopt(fd.get(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
  if (mark && setsockopt(fd.get(), SOL_SOCKET, SO_MARK, &mark, sizeof(mark)) != 0) {
    error = fmt::format("SO_MARK: {}", std::strerror(errno));
    return UniqueFd();
  }
  if (::connect(fd.get(), reinterpret_cast<const sockaddr*>(&t.sa), t.len) != 0) {
    error = fmt::format("connect: {}", std::strerror(errno));
    return UniqueFd();
  }
  return fd;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"kvlb-conn-probe: where do connections to an address go?"};
  std::string target_text, path = "/health";
  int count = 100;
  double hold = 0;
  uint32_t mark = 0;
  bool v4mapped = false;
  app.add_option("--target", target_text, "ip:port or [ipv6]:port to connect to")->required();
  app.add_option("--count", count, "connections to open, one after another");
  app.add_option("--path", path, "HTTP path to GET");
  app.add_option("--mark", mark, "SO_MARK on every socket");
  app.add_flag("--v4mapped", v4mapped,
               "dial an IPv4 target from an AF_INET6 socket (::ffff:a.b.c.d)");
  app.add_option("--hold", hold,
                 "one keep-alive connection: request, wait this long, request again");
  CLI11_PARSE(app, argc, argv);
  auto ep = Endpoint::parse(target_text);
  if (!ep) {
    fmt::print(stderr, "--target: '{}' is not ip:port or [ipv6]:port\n", target_text);
    return 2;
  }
  Target t = make_target(*ep, v4mapped);

  if (hold > 0) {
    std::string error;
    nlohmann::json j = {{"target", target_text}};
    UniqueFd fd = dial(t, mark, error);
    if (fd) {
      j["first"] = request(fd.get(), path, true, error);
      std::this_thread::sleep_for(std::chrono::duration<double>(hold));
      if (error.empty()) j["second"] = request(fd.get(), path, true, error);
      j["peer_ok"] = same_peer(t, fd.get());
    }
    j["error"] = error;
    fmt::print("{}\n", j.dump());
    return 0;
  }

  std::map<std::string, int> by_replica, errors;
  int peer_mismatch = 0, ok = 0;
  for (int i = 0; i < count; ++i) {
    std::string error;
    UniqueFd fd = dial(t, mark, error);
    if (!fd) {
      ++errors[error];
      continue;
    }
    if (!same_peer(t, fd.get())) ++peer_mismatch;
    auto replica = request(fd.get(), path, false, error);
    if (replica.empty()) {
      ++errors[error];
      continue;
    }
    ++ok;
    ++by_replica[replica];
  }
  nlohmann::json j = {
      {"target", target_text},          {"connections", count},     {"ok", ok},
      {"peer_mismatch", peer_mismatch}, {"by_replica", by_replica}, {"errors", errors}};
  fmt::print("{}\n", j.dump());
  return 0;
}
