// kube-api-double: a strict stand-in for the Kubernetes API server's
// EndpointSlice endpoints, for kvlb's tests (the one test double the project
// allows: no real API server can run here).
//
// Strict where a real API server is: HTTPS only; a bearer token that must match
// the token file (re-read per request, so rotation can be tested) or 401 with a
// Status object; Accept must allow application/json (406); the label selector
// must be kubernetes.io/service-name=<name> (400); unknown paths are 404 Status.
// List returns an EndpointSliceList with metadata.resourceVersion. Watch
// (watch=1) needs resourceVersion: events after it are sent, then new ones as
// they happen, and BOOKMARK events when allowWatchBookmarks=true; a version older
// than the last compaction gets an ERROR event with a 410 Status, as etcd
// compaction does.
//
// Test control (not Kubernetes; header X-Kvlb-Test-Control: yes, no auth):
//   PUT    /_test/slices/<ns>/<name>   body: an EndpointSlice  (ADDED or MODIFIED)
//   DELETE /_test/slices/<ns>/<name>                            (DELETED)
//   POST   /_test/compact   the version advances (an unseen write) and everything
//                            older expires (410); open watches are closed
//   PUT    /_test/services/<ns>/<name>  body: a Service (GET /api/v1/.../services/<name>)
//   POST   /_test/fail?n=K  the next K API requests get 500
//   GET    /_test/requests  JSON counters of what the API saw
#include <utility>  // Boost 1.74 asio uses std::exchange without including it

#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>

#include <fstream>
#include <deque>
#include <list>
#include <map>
#include <sstream>

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

namespace net = boost::asio;
namespace ssl = net::ssl;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = net::ip::tcp;
using nlohmann::json;

namespace {

std::string url_decode(std::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%' && i + 2 < s.size()) {
      out.push_back(static_cast<char>(std::stoi(std::string(s.substr(i + 1, 2)), nullptr, 16)));
      i += 2;
    } else {
      out.push_back(s[i] == '+' ? ' ' : s[i]);
    }
  }
  return out;
}

std::map<std::string, std::string> query_of(const std::string& target) {
  std::map<std::string, std::string> q;
  auto pos = target.find('?');
  if (pos == std::string::npos) return q;
  std::stringstream ss(target.substr(pos + 1));
  std::string kv;
  while (std::getline(ss, kv, '&')) {
    auto eq = kv.find('=');
    q[url_decode(kv.substr(0, eq))] = eq == std::string::npos ? "" : url_decode(kv.substr(eq + 1));
  }
  return q;
}

json status(int code, const std::string& reason, const std::string& message) {
  return {{"kind", "Status"},    {"apiVersion", "v1"}, {"metadata", json::object()},
          {"status", "Failure"}, {"message", message}, {"reason", reason},
          {"code", code}};
}

struct Event {
  uint64_t rv;
  std::string type;
  json object;
};

class Session;

struct State {
  std::string token_file;
  uint64_t rv = 1000;
  uint64_t compacted = 0;                // watches from versions below this get 410
  std::map<std::string, json> slices;    // "<ns>/<name>" -> object
  std::map<std::string, json> services;  // "<ns>/<name>" -> Service
  std::vector<Event> events;
  std::list<std::shared_ptr<Session>> watchers;  // open watches, kept alive until closed
  int fail_next = 0;
  std::map<std::string, int> counters;
  std::chrono::milliseconds bookmark_every{1000};
};

bool matches(const json& slice, const std::string& ns, const std::string& svc) {
  const auto& md = slice["metadata"];
  return md.value("namespace", "") == ns &&
         md.value("labels", json::object()).value("kubernetes.io/service-name", "") == svc;
}

class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(tcp::socket s, ssl::context& ctx, State& st) : stream_(std::move(s), ctx), st_(st) {}
  void start() {
    stream_.async_handshake(ssl::stream_base::server,
                            [self = shared_from_this()](beast::error_code ec) {
                              if (!ec) self->read();
                            });
  }
  // A watch session: push an event (or bookmark) if it concerns this watch.
  void push(const Event& e) {
    if (!watching_ || closed_) return;
    if (e.type != "BOOKMARK" && !matches(e.object, ns_, svc_)) return;
    write_chunk(json{{"type", e.type}, {"object", e.object}}.dump() + "\n");
  }
  void bookmark() {
    if (!watching_ || closed_ || !bookmarks_) return;
    json obj = {{"kind", "EndpointSlice"},
                {"apiVersion", "discovery.k8s.io/v1"},
                {"metadata", {{"resourceVersion", std::to_string(st_.rv)}}}};
    write_chunk(json{{"type", "BOOKMARK"}, {"object", obj}}.dump() + "\n");
  }
  bool is_closed() const { return closed_; }
  void close() {
    if (closed_) return;
    closed_ = true;
    if (watching_) write_raw("0\r\n\r\n");
  }

 private:
  void read() {
    req_ = {};
    http::async_read(stream_, buf_, req_,
                     [self = shared_from_this()](beast::error_code ec, size_t) {
                       if (ec) return;
                       self->handle();
                     });
  }
  void reply(int code, const json& body) {
    auto res =
        std::make_shared<http::response<http::string_body>>(static_cast<http::status>(code), 11);
    res->set(http::field::content_type, "application/json");
    res->keep_alive(req_.keep_alive());
    res->body() = body.dump();
    res->prepare_payload();
    http::async_write(stream_, *res,
                      [self = shared_from_this(), res](beast::error_code ec, size_t) {
                        if (!ec && res->keep_alive()) self->read();
                      });
  }
  void write_raw(std::string data) {
    out_.push_back(std::move(data));
    if (out_.size() == 1) flush();
  }
  void write_chunk(const std::string& data) {
    write_raw(fmt::format("{:x}\r\n{}\r\n", data.size(), data));
  }
  void flush() {
    net::async_write(stream_, net::buffer(out_.front()),
                     [self = shared_from_this()](beast::error_code ec, size_t) {
                       self->out_.pop_front();
                       if (ec) {
                         self->closed_ = true;
                         return;
                       }
                       if (!self->out_.empty()) self->flush();
                     });
  }

  void handle() {
    std::string target(req_.target());
    std::string path = target.substr(0, target.find('?'));
    if (path.rfind("/_test/", 0) == 0) return control(path, target);
    ++st_.counters["requests"];
    // Authentication first, as the API server does.
    std::string want;
    {
      std::ifstream in(st_.token_file);
      std::getline(in, want);
    }
    if (req_[http::field::authorization] != "Bearer " + want) {
      ++st_.counters["unauthorized"];
      return reply(401, status(401, "Unauthorized", "Unauthorized"));
    }
    if (st_.fail_next > 0) {
      --st_.fail_next;
      ++st_.counters["injected_500"];
      return reply(500, status(500, "InternalError", "injected failure"));
    }
    auto accept = std::string(req_[http::field::accept]);
    if (!accept.empty() && accept.find("application/json") == std::string::npos && accept != "*/*")
      return reply(406, status(406, "NotAcceptable", "only application/json is served"));
    if (req_.method() != http::verb::get)
      return reply(405, status(405, "MethodNotAllowed", "the server does not allow this method"));
    // /api/v1/namespaces/<ns>/services/<name>
    static const std::string core = "/api/v1/namespaces/";
    if (path.rfind(core, 0) == 0) {
      auto rest = path.substr(core.size());
      auto mid = rest.find("/services/");
      if (mid != std::string::npos) {
        auto key = rest.substr(0, mid) + "/" + rest.substr(mid + 10);
        auto it = st_.services.find(key);
        if (it == st_.services.end())
          return reply(
              404, status(404, "NotFound", "services \"" + rest.substr(mid + 10) + "\" not found"));
        ++st_.counters["service_gets"];
        return reply(200, it->second);
      }
    }
    // /apis/discovery.k8s.io/v1/namespaces/<ns>/endpointslices
    static const std::string pre = "/apis/discovery.k8s.io/v1/namespaces/",
                             post = "/endpointslices";
    if (path.rfind(pre, 0) != 0 || path.size() <= pre.size() + post.size() ||
        path.substr(path.size() - post.size()) != post)
      return reply(404,
                   status(404, "NotFound", "the server could not find the requested resource"));
    ns_ = path.substr(pre.size(), path.size() - pre.size() - post.size());
    auto q = query_of(target);
    auto sel = q["labelSelector"];
    static const std::string label = "kubernetes.io/service-name=";
    if (sel.rfind(label, 0) != 0 || sel.size() == label.size() ||
        sel.find(',') != std::string::npos)
      return reply(400, status(400, "BadRequest",
                               "labelSelector must be kubernetes.io/service-name=<name>"));
    svc_ = sel.substr(label.size());
    if (q.count("watch") && (q["watch"] == "1" || q["watch"] == "true")) return start_watch(q);
    ++st_.counters["lists"];
    json items = json::array();
    for (const auto& [k, v] : st_.slices)
      if (matches(v, ns_, svc_)) items.push_back(v);
    reply(200, {{"kind", "EndpointSliceList"},
                {"apiVersion", "discovery.k8s.io/v1"},
                {"metadata", {{"resourceVersion", std::to_string(st_.rv)}}},
                {"items", items}});
  }

  void start_watch(std::map<std::string, std::string>& q) {
    ++st_.counters["watches"];
    if (!q.count("resourceVersion") || q["resourceVersion"].empty())
      return reply(400, status(400, "BadRequest", "this double needs resourceVersion on watch"));
    uint64_t from = std::stoull(q["resourceVersion"]);
    bookmarks_ = q["allowWatchBookmarks"] == "true";
    watching_ = true;
    std::string head =
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n";
    write_raw(head);
    if (from < st_.compacted) {
      ++st_.counters["gone"];
      write_chunk(json{{"type", "ERROR"},
                       {"object", status(410, "Expired",
                                         fmt::format("too old resource version: {} ({})", from,
                                                     st_.compacted))}}
                      .dump() +
                  "\n");
      close();
      return;
    }
    for (const auto& e : st_.events)
      if (e.rv > from) push(e);
    st_.watchers.push_back(shared_from_this());
  }

  void control(const std::string& path, const std::string& target) {
    if (req_["X-Kvlb-Test-Control"] != "yes")
      return reply(403, status(403, "Forbidden", "control header missing"));
    static const std::string slices = "/_test/slices/";
    auto emit = [&](const std::string& type, const json& obj) {
      Event e{++st_.rv, type, obj};
      e.object["metadata"]["resourceVersion"] = std::to_string(e.rv);
      if (type != "DELETED")
        st_.slices[obj["metadata"]["namespace"].get<std::string>() + "/" +
                   obj["metadata"]["name"].get<std::string>()] = e.object;
      st_.events.push_back(e);
      for (auto& w : st_.watchers) w->push(e);
    };
    if (path.rfind(slices, 0) == 0) {
      auto key = path.substr(slices.size());
      auto slash = key.find('/');
      if (slash == std::string::npos) return reply(400, status(400, "BadRequest", "ns/name"));
      if (req_.method() == http::verb::put) {
        auto obj = json::parse(req_.body(), nullptr, false);
        if (obj.is_discarded()) return reply(400, status(400, "BadRequest", "body is not JSON"));
        obj["metadata"]["namespace"] = key.substr(0, slash);
        obj["metadata"]["name"] = key.substr(slash + 1);
        emit(st_.slices.count(key) ? "MODIFIED" : "ADDED", obj);
        return reply(200, {{"resourceVersion", st_.rv}});
      }
      if (req_.method() == http::verb::delete_) {
        auto it = st_.slices.find(key);
        if (it == st_.slices.end()) return reply(404, status(404, "NotFound", key));
        json obj = it->second;
        st_.slices.erase(it);
        emit("DELETED", obj);
        return reply(200, {{"resourceVersion", st_.rv}});
      }
    }
    static const std::string services = "/_test/services/";
    if (path.rfind(services, 0) == 0 && req_.method() == http::verb::put) {
      auto key = path.substr(services.size());
      auto obj = json::parse(req_.body(), nullptr, false);
      if (obj.is_discarded()) return reply(400, status(400, "BadRequest", "body is not JSON"));
      st_.services[key] = obj;
      return reply(200, {{"service", key}});
    }
    if (path == "/_test/compact") {
      // Other writes in the cluster advance the version; then etcd compacts at
      // it: anything older is gone (410), a fresh list's version is valid.
      st_.compacted = ++st_.rv;
      for (auto& w : st_.watchers) w->close();
      st_.watchers.clear();  // the pending writes keep each session alive until sent
      return reply(200, {{"compacted", st_.compacted}});
    }
    if (path == "/_test/fail") {
      st_.fail_next = std::stoi(query_of(target)["n"]);
      return reply(200, {{"fail_next", st_.fail_next}});
    }
    if (path == "/_test/requests") return reply(200, st_.counters);
    reply(404, status(404, "NotFound", path));
  }

  beast::ssl_stream<beast::tcp_stream> stream_;
  State& st_;
  beast::flat_buffer buf_;
  http::request<http::string_body> req_;
  std::deque<std::string> out_;
  bool watching_ = false, bookmarks_ = false, closed_ = false;
  std::string ns_, svc_;
};

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"kube-api-double: a strict EndpointSlice API server for tests"};
  std::string listen = "127.0.0.1", cert, key;
  uint16_t port = 6443;
  int bookmark_ms = 1000;
  State st;
  app.add_option("--listen", listen, "address");
  app.add_option("--port", port, "port");
  app.add_option("--cert", cert, "server certificate (PEM)")->required();
  app.add_option("--key", key, "server key (PEM)")->required();
  app.add_option("--token-file", st.token_file, "the one valid bearer token, re-read per request")
      ->required();
  app.add_option("--bookmark-ms", bookmark_ms, "bookmark interval");
  CLI11_PARSE(app, argc, argv);
  st.bookmark_every = std::chrono::milliseconds(bookmark_ms);

  net::io_context io(1);
  ssl::context ctx(ssl::context::tls_server);
  ctx.use_certificate_chain_file(cert);
  ctx.use_private_key_file(key, ssl::context::pem);
  tcp::acceptor acceptor(io, tcp::endpoint(net::ip::make_address(listen), port));
  std::function<void()> accept = [&] {
    acceptor.async_accept([&](beast::error_code ec, tcp::socket s) {
      if (!ec) std::make_shared<Session>(std::move(s), ctx, st)->start();
      accept();
    });
  };
  accept();
  net::steady_timer bookmarks(io);
  std::function<void()> tick = [&] {
    bookmarks.expires_after(st.bookmark_every);
    bookmarks.async_wait([&](beast::error_code ec) {
      if (ec) return;
      st.watchers.remove_if([](const std::shared_ptr<Session>& w) { return w->is_closed(); });
      for (auto& w : st.watchers) w->bookmark();
      tick();
    });
  };
  tick();
  net::signal_set sigs(io, SIGINT, SIGTERM);
  sigs.async_wait([&](auto, int) { io.stop(); });
  fmt::print(stderr, "kube-api-double on https://{}:{}\n", listen, port);
  io.run();
  return 0;
}
