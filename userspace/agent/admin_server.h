// admin_server.h - the agent's admin HTTP API, on a unix socket (mode 0600:
// root only) and optionally on a TCP address (loopback by default) for a
// Prometheus server to scrape /metrics. The TCP listener serves only GET and
// HEAD: anything that changes state (drain, undrain, ...) is refused there with
// 403, whatever the route, and served on the unix socket alone. Runs on its own
// thread; the handler is called there for every request.
#pragma once

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

class AdminServer {
 public:
  // Throws std::runtime_error when a socket cannot be bound. An empty
  // socket_path or listen skips that listener.
  AdminServer(std::filesystem::path socket_path, std::string listen, AdminHandler handler);
  ~AdminServer();  // stops the thread, removes the socket file

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace kvlb::agent
