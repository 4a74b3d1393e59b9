// admin_server.h - the agent's admin HTTP API, on a unix socket (mode 0600:
// root only) and optionally on a TCP address (loopback by default) for a
// Prometheus server to scrape /metrics. The TCP listener serves only GET and
// HEAD: anything that changes state (drain, undrain, ...) is refused there with
// 403, whatever the route, and served on the unix socket alone. Runs on its own
// thread; the handler is called there for every request.
#pragma once

#include <chrono>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>

namespace kvlb::agent {

struct AdminRequest {
  std::string method;  // GET, POST, ...
  std::string target;  // path, without the query string
};

struct AdminResponse {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
};

using AdminHandler = std::function<AdminResponse(const AdminRequest&)>;

// What one local client can take from the agent: a connection must deliver a
// whole request within read_timeout (an idle or dripping one is closed); at most
// max_connections are open at once (more are closed at accept); a failing
// accept() (out of descriptors) is retried after accept_backoff, never in a
// busy loop.
struct AdminLimits {
  std::chrono::milliseconds read_timeout{5000};
  size_t max_connections = 64;
  std::chrono::milliseconds accept_backoff{100};
};

class AdminServer {
 public:
  // Throws std::runtime_error when a socket cannot be bound. An empty
  // socket_path or listen skips that listener.
  AdminServer(std::filesystem::path socket_path, std::string listen, AdminHandler handler,
              AdminLimits limits = {});
  // The TCP listener's port (0 without one): "127.0.0.1:0" picks a free one.
  uint16_t tcp_port() const;
  ~AdminServer();  // stops the thread, removes the socket file

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace kvlb::agent
