#include "admin_server.h"

#include <utility>  // Boost 1.74 asio uses std::exchange without including it

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include <sys/stat.h>

#include <atomic>
#include <thread>

#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "common/endpoint.h"
#include "common/printable.h"

namespace kvlb::agent {
namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;

namespace {

// What every session shares: the handler, the limits, the open-session count.
struct Shared {
  AdminHandler handler;
  AdminLimits limits;
  std::atomic<size_t> sessions{0};
};

std::string error_json(const std::string& message) {
  return nlohmann::json{{"error", message}}.dump(-1, ' ', false,
                                                 nlohmann::json::error_handler_t::replace);
}

template <typename Protocol>
class Session : public std::enable_shared_from_this<Session<Protocol>> {
 public:
  using Socket = typename Protocol::socket;
  // `may_write`: the listener may serve state-changing requests (the unix
  // socket, mode 0600); the TCP listener (for a Prometheus server) may not.
  Session(Socket s, Shared& shared, bool may_write)
      : stream_(std::move(s)), shared_(shared), may_write_(may_write) {
    ++shared_.sessions;
  }
  ~Session() { --shared_.sessions; }
  void start() { read(); }

 private:
  void read() {
    req_ = {};
    parser_.emplace();
    parser_->body_limit(64 * 1024);
    parser_->header_limit(16 * 1024);
    // A client gets read_timeout to send a whole request (and between requests
    // on a kept-alive connection): an idle or dripping connection is closed.
    stream_.expires_after(shared_.limits.read_timeout);
    http::async_read(stream_, buf_, *parser_,
                     [self = this->shared_from_this()](beast::error_code ec, size_t) {
                       if (ec) return;  // timeout, close or garbage: drop the connection
                       self->req_ = self->parser_->release();
                       self->respond();
                     });
  }
  void respond() {
    AdminRequest r{std::string(req_.method_string()), std::string(req_.target())};
    if (auto q = r.target.find('?'); q != std::string::npos) r.target.resize(q);
    AdminResponse a;
    if (!may_write_ && r.method != "GET" && r.method != "HEAD") {
      a = {403, "application/json",
           error_json(printable(r.method) +
                      ": state-changing requests are served on the admin unix socket only, "
                      "not on TCP")};
    } else {
      try {
        a = shared_.handler(r);
      } catch (const std::exception& e) {
        a = {500, "application/json", error_json(e.what())};
      }
    }
    res_ = {};
    res_.result(static_cast<http::status>(a.status));
    res_.version(req_.version());
    res_.set(http::field::content_type, a.content_type);
    res_.keep_alive(req_.keep_alive());
    res_.body() = std::move(a.body);
    res_.prepare_payload();
    stream_.expires_after(shared_.limits.read_timeout);
    http::async_write(stream_, res_,
                      [self = this->shared_from_this()](beast::error_code ec, size_t) {
                        if (!ec && self->res_.keep_alive()) self->read();
                      });
  }
  beast::basic_stream<Protocol> stream_;
  Shared& shared_;
  const bool may_write_;
  beast::flat_buffer buf_;
  std::optional<http::request_parser<http::string_body>> parser_;
  http::request<http::string_body> req_;
  http::response<http::string_body> res_;
};

// Accepts forever. Over the connection cap a new connection is closed at once
// (the ones in progress finish or time out); an accept error (out of
// descriptors, say) waits accept_backoff before the next try instead of
// spinning on a listener that stays readable.
template <typename Protocol>
class Acceptor {
 public:
  Acceptor(net::io_context& io, typename Protocol::endpoint ep, Shared& shared, bool may_write,
           std::string name)
      : acceptor_(io, ep),
        timer_(io),
        shared_(shared),
        may_write_(may_write),
        name_(std::move(name)) {}
  void start() { accept(); }
  typename Protocol::endpoint local_endpoint() const { return acceptor_.local_endpoint(); }

 private:
  void accept() {
    acceptor_.async_accept([this](beast::error_code ec, typename Protocol::socket s) {
      if (ec == net::error::operation_aborted) return;
      if (ec) {
        warn(fmt::format("accept failed ({}), retrying in {} ms", ec.message(),
                         shared_.limits.accept_backoff.count()));
        timer_.expires_after(shared_.limits.accept_backoff);
        timer_.async_wait([this](beast::error_code tec) {
          if (!tec) accept();
        });
        return;
      }
      if (shared_.sessions >= shared_.limits.max_connections) {
        warn(fmt::format("{} connections open: refusing more", shared_.limits.max_connections));
        beast::error_code ignored;
        s.close(ignored);
      } else {
        std::make_shared<Session<Protocol>>(std::move(s), shared_, may_write_)->start();
      }
      accept();
    });
  }
  // At most one warning a minute per listener: a flood must not flood the log.
  void warn(const std::string& what) {
    auto now = std::chrono::steady_clock::now();
    if (now - last_warning_ < std::chrono::minutes(1)) return;
    last_warning_ = now;
    spdlog::warn("admin {}: {}", name_, what);
  }
  typename Protocol::acceptor acceptor_;
  net::steady_timer timer_;
  Shared& shared_;
  const bool may_write_;
  std::string name_;
  std::chrono::steady_clock::time_point last_warning_{};
};

}  // namespace

struct AdminServer::Impl {
  Shared shared;  // outlives the io_context: pending sessions refer to it
  net::io_context io{1};
  std::unique_ptr<Acceptor<net::local::stream_protocol>> unix_acceptor;
  std::unique_ptr<Acceptor<net::ip::tcp>> tcp_acceptor;
  std::filesystem::path socket_path;
  std::thread thread;
};

AdminServer::AdminServer(std::filesystem::path socket_path, std::string listen,
                         AdminHandler handler, AdminLimits limits)
    : impl_(std::make_unique<Impl>()) {
  impl_->shared.handler = std::move(handler);
  impl_->shared.limits = limits;
  if (!socket_path.empty()) {
    std::error_code ec;
    std::filesystem::create_directories(socket_path.parent_path(), ec);
    std::filesystem::remove(socket_path, ec);  // a stale socket of a previous run
    impl_->socket_path = socket_path;
    // Created 0600: no moment in which another user could connect.
    const mode_t old_mask = ::umask(0177);
    try {
      impl_->unix_acceptor = std::make_unique<Acceptor<net::local::stream_protocol>>(
          impl_->io, net::local::stream_protocol::endpoint(socket_path.string()), impl_->shared,
          true, socket_path.string());
    } catch (const std::exception& e) {
      ::umask(old_mask);
      throw std::runtime_error(fmt::format("admin socket {}: {}", socket_path.string(), e.what()));
    }
    ::umask(old_mask);
    ::chmod(socket_path.c_str(), 0600);
    impl_->unix_acceptor->start();
  }
  if (!listen.empty()) {
    auto ep = Endpoint::parse(listen);
    if (!ep && listen.size() > 2 && listen.substr(listen.size() - 2) == ":0") {
      // Port 0: any free port (tests); Endpoint::parse wants a real one.
      auto host = listen.substr(0, listen.size() - 2);
      if (host.size() > 2 && host.front() == '[' && host.back() == ']')
        host = host.substr(1, host.size() - 2);
      ep = Endpoint::parse_address(host, 0);
    }
    if (!ep) throw std::runtime_error("admin listen address '" + listen + "' is not ip:port");
    try {
      auto addr = net::ip::make_address(ep->address_string());
      impl_->tcp_acceptor = std::make_unique<Acceptor<net::ip::tcp>>(
          impl_->io, net::ip::tcp::endpoint(addr, ep->port), impl_->shared, false, listen);
    } catch (const std::exception& e) {
      throw std::runtime_error(fmt::format("admin listen {}: {}", listen, e.what()));
    }
    impl_->tcp_acceptor->start();
  }
  impl_->thread = std::thread([this] { impl_->io.run(); });
}

uint16_t AdminServer::tcp_port() const {
  return impl_->tcp_acceptor ? impl_->tcp_acceptor->local_endpoint().port() : 0;
}

AdminServer::~AdminServer() {
  impl_->io.stop();
  if (impl_->thread.joinable()) impl_->thread.join();
  std::error_code ec;
  if (!impl_->socket_path.empty()) std::filesystem::remove(impl_->socket_path, ec);
}

}  // namespace kvlb::agent
