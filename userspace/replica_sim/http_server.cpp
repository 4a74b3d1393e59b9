#include "http_server.h"

#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "common/printable.h"

namespace kvlb::replica {
namespace beast = boost::beast;
namespace http = beast::http;
namespace net = boost::asio;
using tcp = net::ip::tcp;

namespace {

const char* reason_phrase(int status) {
  switch (status) {
    case 200:
      return "OK";
    case 400:
      return "Bad Request";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 413:
      return "Payload Too Large";
    case 500:
      return "Internal Server Error";
    case 503:
      return "Service Unavailable";
    default:
      return "Error";
  }
}

}  // namespace

// One client connection: reads requests (keep-alive), answers simple ones at
// once, and streams generations as the engine produces tokens.
class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(tcp::socket s, ReplicaServer& srv) : stream_(std::move(s)), srv_(srv) {}

  void start() { read(); }

  // A token event of this session's generation.
  void on_event(const TokenEvent& ev) {
    if (!gen_) return;
    const bool last = ev.kind == TokenEventKind::Finished;
    if (gen_->stream) {
      out_ += chunk(stream_chunk(*gen_, resp_id_, created_, ev.generated - 1, last));
      if (last) {
        if (gen_->include_usage)
          out_ += chunk(stream_usage_chunk(*gen_, resp_id_, created_, ev.generated));
        out_ += chunk(kStreamDone);
        // The last chunk goes out in a write of its own, after the data: as
        // uvicorn (vLLM, SGLang) ends a StreamingResponse.
        end_pending_ = true;
      }
    } else if (last) {
      respond(200, "application/json", full_response(*gen_, resp_id_, created_, ev.generated));
    }
    if (last) {
      gen_.reset();
      response_done_ = true;
    }
    flush();
  }

 private:
  static std::string chunk(const std::string& data) {
    return fmt::format("{:x}\r\n{}\r\n", data.size(), data);
  }

  std::string headers(int status, const std::string& content_type) const {
    return fmt::format("HTTP/1.1 {} {}\r\nContent-Type: {}\r\nX-Kvlb-Replica: {}\r\n{}", status,
                       reason_phrase(status), content_type, srv_.options().name,
                       keep_alive_ ? "" : "Connection: close\r\n");
  }

  void respond(int status, const std::string& content_type, const std::string& body) {
    out_ += headers(status, content_type);
    out_ += fmt::format("Content-Length: {}\r\n\r\n", body.size());
    out_ += body;
    response_done_ = true;
  }

  void read() {
    parser_.emplace();
    parser_->body_limit(srv_.options().max_body_bytes);
    stream_.expires_after(std::chrono::minutes(5));  // idle keep-alive limit
    http::async_read(
        stream_, buf_, *parser_,
        [self = shared_from_this()](beast::error_code ec, size_t) { self->on_read(ec); });
  }

  void on_read(beast::error_code ec) {
    if (ec == http::error::body_limit) {
      keep_alive_ = false;
      respond(413, "application/json", error_body({413, "request body too large"}));
      flush();
      return;
    }
    if (ec == http::error::end_of_stream || ec == net::error::eof ||
        ec == net::error::connection_reset || ec == net::error::operation_aborted ||
        ec == beast::error::timeout || ec == http::error::partial_message)
      return close();
    if (ec) {
      // Not HTTP (a bad request line, header or framing): say so, then hang up.
      keep_alive_ = false;
      respond(400, "application/json",
              error_body({400, "malformed HTTP request: " + ec.message()}));
      flush();
      return;
    }
    auto req = parser_->release();
    keep_alive_ = req.keep_alive();
    response_done_ = false;
    try {
      handle(req);
    } catch (const std::exception& e) {
      // Last resort: nothing a client sends may escape into the event loop.
      spdlog::error("request {}: {}", printable(std::string(req.target())), e.what());
      gen_.reset();
      keep_alive_ = false;
      out_.clear();
      respond(500, "application/json", error_body({500, "internal error"}));
    }
    flush();
  }

  void handle(const http::request<http::string_body>& req) {
    auto target = std::string(req.target());
    if (auto q = target.find('?'); q != std::string::npos) target.resize(q);
    const bool get = req.method() == http::verb::get, post = req.method() == http::verb::post;
    if (target == "/health") {
      if (!get) return respond(405, "text/plain", "");
      return srv_.ready() ? respond(200, "text/plain", "")
                          : respond(503, "text/plain", "model loading\n");
    }
    if (target == "/metrics") {
      if (!get) return respond(405, "text/plain", "");
      if (srv_.options().metrics_delay.count() > 0) return delayed_metrics();
      return respond(200, "text/plain; version=0.0.4; charset=utf-8", srv_.metrics_text());
    }
    if (target.rfind("/v1/", 0) == 0 && !srv_.options().api_key.empty() &&
        req[http::field::authorization] != "Bearer " + srv_.options().api_key)
      return respond(401, "application/json", error_body({401, "Unauthorized"}));
    if (target == "/v1/models") {
      if (!get) return respond(405, "application/json", error_body({405, "use GET"}));
      nlohmann::json list = {{"object", "list"},
                             {"data",
                              {{{"id", srv_.options().model},
                                {"object", "model"},
                                {"owned_by", "kvlb"},
                                {"max_model_len", srv_.options().max_model_len}}}}};
      return respond(200, "application/json", list.dump());
    }
    const bool chat = target == "/v1/chat/completions";
    if (chat || target == "/v1/completions") {
      if (!post) return respond(405, "application/json", error_body({405, "use POST"}));
      if (!srv_.ready())
        return respond(503, "application/json", error_body({503, "model is still loading"}));
      if (srv_.options().fail_requests)
        return respond(500, "application/json", error_body({500, "engine error (fault)"}));
      auto parsed =
          parse_request(req.body(), chat, srv_.options().model, srv_.options().max_model_len);
      if (auto* e = std::get_if<ApiError>(&parsed))
        return respond(e->status, "application/json", error_body(*e));
      auto api = std::get<ApiRequest>(parsed);
      uint64_t id = srv_.next_request_id();
      if (auto rej = srv_.submit(id, api, shared_from_this()))
        return respond(400, "application/json", error_body({400, *rej}));
      gen_ = api;
      gen_id_ = id;
      resp_id_ = fmt::format("{}-{}-{}", chat ? "chatcmpl" : "cmpl", srv_.options().name, id);
      created_ = std::chrono::duration_cast<std::chrono::seconds>(
                     std::chrono::system_clock::now().time_since_epoch())
                     .count();
      if (api.stream) {
        out_ += headers(200, "text/event-stream; charset=utf-8");
        out_ += "Transfer-Encoding: chunked\r\nCache-Control: no-cache\r\n\r\n";
      }
      watch_peer();
      return;
    }
    respond(404, "application/json", error_body({404, "no route " + printable(target)}));
  }

  // The metrics_delay fault: /metrics answers late (a replica stuck in GC, a
  // Python process busy with the model).
  void delayed_metrics() {
    auto timer = std::make_shared<net::steady_timer>(stream_.get_executor());
    timer->expires_after(srv_.options().metrics_delay);
    timer->async_wait([self = shared_from_this(), timer](beast::error_code ec) {
      if (ec) return;
      self->respond(200, "text/plain; version=0.0.4; charset=utf-8", self->srv_.metrics_text());
      self->flush();
    });
  }

  // While a generation runs nothing is read, so a client that goes away would
  // hold its KV blocks until the end. A pending read notices the close at once
  // (and keeps any pipelined bytes in the buffer for the next request).
  void watch_peer() {
    if (watching_) return;
    watching_ = true;
    stream_.expires_never();
    stream_.async_read_some(buf_.prepare(4096),
                            [self = shared_from_this()](beast::error_code ec, size_t n) {
                              self->watching_ = false;
                              self->buf_.commit(n);
                              if (ec) {
                                if (self->gen_) self->srv_.cancel(self->gen_id_);
                                self->gen_.reset();
                                return self->close();
                              }
                              if (self->gen_) return self->watch_peer();
                              if (!self->writing_ && self->out_.empty() && self->keep_alive_)
                                self->read();
                            });
  }

  void flush() {
    if (writing_ || out_.empty()) return;
    writing_ = true;
    wbuf_.swap(out_);
    out_.clear();
    net::async_write(stream_, net::buffer(wbuf_),
                     [self = shared_from_this()](beast::error_code ec, size_t) {
                       self->writing_ = false;
                       self->wbuf_.clear();
                       if (ec) {
                         if (self->gen_) self->srv_.cancel(self->gen_id_);
                         self->gen_.reset();
                         return self->close();
                       }
                       if (self->out_.empty() && self->end_pending_) {
                         self->end_pending_ = false;
                         self->out_ = "0\r\n\r\n";
                       }
                       if (!self->out_.empty()) return self->flush();
                       if (self->response_done_ && !self->gen_) {
                         self->response_done_ = false;
                         if (!self->keep_alive_) return self->close();
                         if (!self->watching_) self->read();  // else the watch read hands over
                       }
                     });
  }

  void close() {
    beast::error_code ec;
    stream_.socket().shutdown(tcp::socket::shutdown_both, ec);
    stream_.socket().close(ec);
  }

  beast::tcp_stream stream_;
  ReplicaServer& srv_;
  beast::flat_buffer buf_;
  std::optional<http::request_parser<http::string_body>> parser_;
  std::string out_, wbuf_;
  bool writing_ = false, watching_ = false, keep_alive_ = true, response_done_ = false,
       end_pending_ = false;
  std::optional<ApiRequest> gen_;
  uint64_t gen_id_ = 0;
  std::string resp_id_;
  int64_t created_ = 0;
};

ReplicaServer::ReplicaServer(net::io_context& io, ServerOptions opts,
                             std::unique_ptr<EngineModel> engine)
    : opts_(std::move(opts)),
      engine_(std::move(engine)),
      acceptor_(io),
      step_timer_(io),
      start_(std::chrono::steady_clock::now()),
      start_unix_(std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch())
                      .count()) {}

ReplicaServer::~ReplicaServer() = default;

void ReplicaServer::start() {
  tcp::endpoint ep(net::ip::make_address(opts_.listen_address), opts_.port);
  acceptor_.open(ep.protocol());
  acceptor_.set_option(net::socket_base::reuse_address(true));
  acceptor_.bind(ep);
  acceptor_.listen(1024);
  accept();
}

uint16_t ReplicaServer::bound_port() const {
  return acceptor_.local_endpoint().port();
}

void ReplicaServer::accept() {
  acceptor_.async_accept([this](boost::system::error_code ec, tcp::socket s) {
    if (ec == net::error::operation_aborted) return;
    if (!ec) {
      s.set_option(tcp::no_delay(true));
      std::make_shared<Session>(std::move(s), *this)->start();
    }
    accept();
  });
}

double ReplicaServer::now_s() const {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
}

bool ReplicaServer::ready() const {
  return std::chrono::steady_clock::now() - start_ >= opts_.load_delay;
}

std::string ReplicaServer::metrics_text() {
  ++metrics_requests_;
  return render_metrics(opts_.flavor, opts_.model, engine_->snapshot(), hist_, start_unix_) +
         "# HELP kvlb_sim_metrics_requests_total GET /metrics answered by this emulator.\n"
         "# TYPE kvlb_sim_metrics_requests_total counter\n"
         "kvlb_sim_metrics_requests_total " +
         std::to_string(metrics_requests_) + "\n";
}

std::optional<std::string> ReplicaServer::submit(uint64_t id, const ApiRequest& r,
                                                 const std::shared_ptr<Session>& session) {
  GenRequest g;
  g.id = id;
  g.prompt_tokens = r.prompt_tokens;
  g.output_tokens = r.max_tokens;
  g.arrival_s = now_s();
  if (auto rej = engine_->submit(g)) return rej;
  pending_[id] = Pending{session, g.arrival_s, false};
  kick();
  return std::nullopt;
}

void ReplicaServer::cancel(uint64_t id) {
  engine_->cancel(id);
  pending_.erase(id);
}

// Runs the engine: begin a step, wait its duration on the real clock, end it,
// hand the tokens to their sessions, and go on while there is work.
void ReplicaServer::kick() {
  if (stepping_) return;
  auto d = engine_->begin_step(now_s());
  if (!d) return;
  stepping_ = true;
  step_timer_.expires_after(std::chrono::duration_cast<std::chrono::steady_clock::duration>(
      std::chrono::duration<double>(*d)));
  step_timer_.async_wait([this](boost::system::error_code ec) {
    if (ec == net::error::operation_aborted) return;
    stepping_ = false;
    dispatch(engine_->end_step(now_s()));
    kick();
  });
}

void ReplicaServer::dispatch(const std::vector<TokenEvent>& events) {
  const double now = now_s();
  for (const auto& ev : events) {
    auto it = pending_.find(ev.id);
    if (it == pending_.end()) continue;
    auto& p = it->second;
    if (!p.first_token_seen) {
      p.first_token_seen = true;
      hist_.ttft.observe(now - p.arrival_s);
    }
    auto session = p.session.lock();
    if (ev.kind == TokenEventKind::Finished) {
      hist_.e2e.observe(now - p.arrival_s);
      pending_.erase(it);
    }
    if (session)
      session->on_event(ev);
    else if (ev.kind != TokenEventKind::Finished)
      cancel(ev.id);
  }
}

}  // namespace kvlb::replica
