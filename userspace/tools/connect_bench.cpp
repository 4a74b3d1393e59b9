// kvlb-connect-bench: TCP connection-rate measurement.
//
//   server: accepts and closes, as fast as it can (epoll, non-blocking).
//   client: connect() + close() in a loop for --seconds, to targets chosen at
//           random from --targets (ip:port,...) or --targets-file; prints
//           {"connections":N,"seconds":S,"rate":R,"errors":{...}}.
// The client closes with SO_LINGER 0 (RST, no TIME_WAIT), so ephemeral ports
// do not run out at tens of thousands of connections per second.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <fstream>
#include <map>
#include <random>
#include <sstream>
#include <vector>

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "common/endpoint.h"
#include "common/unique_fd.h"

using namespace kvlb;

namespace {

int serve(const std::string& listen, uint16_t port) {
  auto ep = Endpoint::parse_address(listen, port);
  if (!ep || ep->family != KVLB_AF_INET) {
    fmt::print(stderr, "--listen: '{}' is not an IPv4 address\n", listen);
    return 2;
  }
  UniqueFd ls(::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  int one = 1;
  setsockopt(ls.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(port);
  sa.sin_addr.s_addr = ep->addr.words[0];
  if (::bind(ls.get(), reinterpret_cast<sockaddr*>(&sa), sizeof(sa)) != 0 ||
      ::listen(ls.get(), 4096) != 0) {
    fmt::print(stderr, "bind/listen {}:{}: {}\n", listen, port, std::strerror(errno));
    return 1;
  }
  UniqueFd ep_fd(::epoll_create1(EPOLL_CLOEXEC));
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.fd = ls.get();
  epoll_ctl(ep_fd.get(), EPOLL_CTL_ADD, ls.get(), &ev);
  for (;;) {
    epoll_event out[8];
    int n = epoll_wait(ep_fd.get(), out, 8, -1);
    if (n < 0 && errno != EINTR) return 1;
    for (;;) {
      int c = ::accept4(ls.get(), nullptr, nullptr, SOCK_CLOEXEC);
      if (c < 0) break;
      ::close(c);
    }
  }
}

std::vector<sockaddr_in> load_targets(const std::string& list, const std::string& file) {
  std::string text = list;
  if (!file.empty()) {
    std::ifstream in(file);
    std::stringstream ss;
    ss << in.rdbuf();
    text = ss.str();
  }
  std::vector<sockaddr_in> out;
  std::string item;
  std::stringstream ss(text);
  while (ss >> item) {
    std::stringstream items(item);
    std::string one;
    while (std::getline(items, one, ',')) {
      if (one.empty()) continue;
      auto ep = Endpoint::parse(one);
      if (!ep || ep->family != KVLB_AF_INET) throw std::invalid_argument("bad target " + one);
      sockaddr_in sa{};
      sa.sin_family = AF_INET;
      sa.sin_port = htons(ep->port);
      sa.sin_addr.s_addr = ep->addr.words[0];
      out.push_back(sa);
    }
  }
  if (out.empty()) throw std::invalid_argument("no targets");
  return out;
}

int run_client(const std::vector<sockaddr_in>& targets, double seconds, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<size_t> pick(0, targets.size() - 1);
  std::map<std::string, uint64_t> errors;
  uint64_t ok = 0;
  linger lg{1, 0};
  const auto start = std::chrono::steady_clock::now();
  const auto end = start + std::chrono::duration<double>(seconds);
  auto now = start;
  while (now < end) {
    for (int i = 0; i < 64; ++i) {  // check the clock every 64 connections
      const auto& sa = targets[pick(rng)];
      int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
      if (::connect(fd, reinterpret_cast<const sockaddr*>(&sa), sizeof(sa)) == 0)
        ++ok;
      else
        ++errors[std::strerror(errno)];
      setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
      ::close(fd);
    }
    now = std::chrono::steady_clock::now();
  }
  double secs = std::chrono::duration<double>(now - start).count();
  fmt::print("{}\n",
             nlohmann::json{
                 {"connections", ok}, {"seconds", secs}, {"rate", ok / secs}, {"errors", errors}}
                 .dump());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"kvlb-connect-bench: TCP connections per second"};
  app.require_subcommand(1);
  auto* server = app.add_subcommand("server", "accept and close");
  std::string listen = "127.0.0.1", targets, targets_file;
  uint16_t port = 9000;
  double seconds = 3;
  uint64_t seed = 1;
  server->add_option("--listen", listen, "IPv4 address");
  server->add_option("--port", port, "port");
  auto* client = app.add_subcommand("client", "connect and close in a loop");
  client->add_option("--targets", targets, "ip:port,ip:port,...");
  client->add_option("--targets-file", targets_file,
                     "file of ip:port, whitespace or comma separated");
  client->add_option("--seconds", seconds, "how long");
  client->add_option("--seed", seed, "target choice seed");
  CLI11_PARSE(app, argc, argv);
  if (*server) return serve(listen, port);
  try {
    return run_client(load_targets(targets, targets_file), seconds, seed);
  } catch (const std::exception& e) {
    fmt::print(stderr, "{}\n", e.what());
    return 2;
  }
}
