#include "admin_server.h"

#include <utility>  // Boost 1.74 asio uses std::exchange without including it

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include <sys/stat.h>

#include <thread>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "common/endpoint.h"

namespace kvlb::agent {
namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;

namespace {

template <typename Socket>
class Session : public std::enable_shared_from_this<Session<Socket>> {
 public:
  // `may_write`: the listener may serve state-changing requests (the unix
  // socket, mode 0600); the TCP listener (for a Prometheus server) may not.
  Session(Socket s, const AdminHandler& h, bool may_write)
      : socket_(std::move(s)), handler_(h), may_write_(may_write) {}
  void start() { read(); }

 private:
  void read() {
    req_ = {};
    parser_.emplace();
    parser_->body_limit(64 * 1024);
    http::async_read(socket_, buf_, *parser_,
                     [self = this->shared_from_this()](beast::error_code ec, size_t) {
                       if (ec) return;
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
           fmt::format(R"({{"error":"{}: state-changing requests are served on the admin unix )"
                       R"(socket only, not on TCP"}})",
                       r.method)};
    } else {
      try {
        a = handler_(r);
      } catch (const std::exception& e) {
        a = {500, "application/json", fmt::format(R"({{"error":"{}"}})", e.what())};
      }
    }
    res_ = {};
    res_.result(static_cast<http::status>(a.status));
    res_.version(req_.version());
    res_.set(http::field::content_type, a.content_type);
    res_.keep_alive(req_.keep_alive());
    res_.body() = std::move(a.body);
    res_.prepare_payload();
    http::async_write(socket_, res_,
                      [self = this->shared_from_this()](beast::error_code ec, size_t) {
                        if (!ec && self->res_.keep_alive()) self->read();
                      });
  }
  Socket socket_;
  const AdminHandler& handler_;
  const bool may_write_;
  beast::flat_buffer buf_;
  std::optional<http::request_parser<http::string_body>> parser_;
  http::request<http::string_body> req_;
  http::response<http::string_body> res_;
};

template <typename Acceptor>
void accept_loop(Acceptor& a, const AdminHandler& h, bool may_write) {
  a.async_accept(
      [&a, &h, may_write](beast::error_code ec, typename Acceptor::protocol_type::socket s) {
        if (ec == net::error::operation_aborted) return;
        if (!ec)
          std::make_shared<Session<typename Acceptor::protocol_type::socket>>(std::move(s), h,
                                                                              may_write)
              ->start();
        accept_loop(a, h, may_write);
      });
}

}  // namespace

struct AdminServer::Impl {
  net::io_context io{1};
  std::optional<net::local::stream_protocol::acceptor> unix_acceptor;
  std::optional<net::ip::tcp::acceptor> tcp_acceptor;
  std::filesystem::path socket_path;
  AdminHandler handler;
  std::thread thread;
};

AdminServer::AdminServer(std::filesystem::path socket_path, std::string listen,
                         AdminHandler handler)
    : impl_(std::make_unique<Impl>()) {
  impl_->handler = std::move(handler);
  if (!socket_path.empty()) {
    std::error_code ec;
    std::filesystem::create_directories(socket_path.parent_path(), ec);
    std::filesystem::remove(socket_path, ec);  // a stale socket of a previous run
    impl_->socket_path = socket_path;
    try {
      impl_->unix_acceptor.emplace(impl_->io,
                                   net::local::stream_protocol::endpoint(socket_path.string()));
    } catch (const std::exception& e) {
      throw std::runtime_error(fmt::format("admin socket {}: {}", socket_path.string(), e.what()));
    }
    ::chmod(socket_path.c_str(), 0600);
    accept_loop(*impl_->unix_acceptor, impl_->handler, true);
  }
  if (!listen.empty()) {
    auto ep = Endpoint::parse(listen);
    if (!ep) throw std::runtime_error("admin listen address '" + listen + "' is not ip:port");
    try {
      auto addr = net::ip::make_address(ep->address_string());
      impl_->tcp_acceptor.emplace(impl_->io, net::ip::tcp::endpoint(addr, ep->port));
    } catch (const std::exception& e) {
      throw std::runtime_error(fmt::format("admin listen {}: {}", listen, e.what()));
    }
    accept_loop(*impl_->tcp_acceptor, impl_->handler, false);
  }
  impl_->thread = std::thread([this] { impl_->io.run(); });
}

AdminServer::~AdminServer() {
  impl_->io.stop();
  if (impl_->thread.joinable()) impl_->thread.join();
  std::error_code ec;
  if (!impl_->socket_path.empty()) std::filesystem::remove(impl_->socket_path, ec);
}

}  // namespace kvlb::agent
