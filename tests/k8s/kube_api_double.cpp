// kube-api-double: a strict stand-in for the Kubernetes API server, for kvlb's
// tests (the one test double the project allows: no real API server can run
// here). It serves what kvlb uses: EndpointSlices and Services (discovery),
// Deployments/StatefulSets and their scale subresource, Pods, Leases and Events
// (the autoscaler).
//
// Strict where a real API server is: HTTPS only; a bearer token that must match
// the token file (re-read per request, so rotation can be tested) or 401 with a
// Status object; Accept must allow application/json (406); unknown paths are 404
// Status, a known path with a method it does not serve 405. Every stored object
// gets metadata.resourceVersion from one global counter (as etcd's revision).
//
// EndpointSlices: the label selector must be kubernetes.io/service-name=<name>
// (400). List returns an EndpointSliceList with metadata.resourceVersion.
// Watch (watch=1, here and for Deployments/StatefulSets) needs resourceVersion:
// events after it are sent, then new ones as they happen, and BOOKMARK events
// when allowWatchBookmarks=true; a version older than the last compaction gets
// an ERROR event with a 410 Status, as etcd compaction does.
//
// apps/v1 deployments and statefulsets: GET one; list and watch (fieldSelector
// metadata.name=<name> only); GET and PATCH <name>/scale (autoscaling/v1 Scale:
// spec.replicas, status.replicas, status.selector = spec.selector.matchLabels
// as "k=v,..."). PATCH needs Content-Type application/merge-patch+json (415),
// applies RFC 7386, answers 409 Conflict when the patch carries a
// metadata.resourceVersion that is not the current one, 422 when spec.replicas
// is not a non-negative int32; a change updates the workload's spec.replicas
// and resourceVersion (a patch that changes nothing writes nothing).
// v1 pods: list and watch with an equality-based labelSelector (a=b,c!=d;
// anything else 400; the watch as the API server's watch cache serves a
// selection: a pod that comes to match is ADDED, one that stops matching is
// DELETED), GET, merge PATCH of metadata.annotations and metadata.labels only
// (422 otherwise; a pod-deletion-cost that is not an int32 string is 422 too).
// coordination.k8s.io/v1 leases: GET (404), POST (201; 409 AlreadyExists), PUT
// (409 Conflict when metadata.resourceVersion is set and not the current one;
// 404 when absent). Times must be RFC 3339 (400).
// v1 events: POST (201) validated as the API server does: involvedObject kind
// and name, reason, type Normal or Warning, metadata.name or generateName (422).
// POST and PUT bodies must be application/json (415).
//
// Test control (not Kubernetes; header X-Kvlb-Test-Control: yes, no auth):
//   PUT    /_test/slices/<ns>/<name>   body: an EndpointSlice  (ADDED or MODIFIED)
//   DELETE /_test/slices/<ns>/<name>                            (DELETED)
//   PUT    /_test/{deployments,statefulsets,pods,leases}/<ns>/<name>  body: the object
//   DELETE /_test/{deployments,statefulsets,pods,leases}/<ns>/<name>
//   POST   /_test/touch/<resource>/<ns>/<name>  a write behind the client's back:
//                            the object's resourceVersion advances (to provoke 409)
//   PUT    /_test/status/<resource>/<ns>/<name>  body: the object's new .status
//                            (a controller's status write; nothing else changes)
//   GET    /_test/events     every Event created through the API, in order
//   POST   /_test/deny?verb=<get|list|watch|patch|create|update>&resource=<r>
//                            (r as RBAC spells it: deployments/scale, pods, leases,
//                            events, ...) those requests get 403 until:
//   POST   /_test/allow
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

#include <chrono>
#include <climits>
#include <cstdio>
#include <ctime>
#include <fstream>
#include <deque>
#include <list>
#include <map>
#include <optional>
#include <regex>
#include <set>
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

std::string now_rfc3339() {
  std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

// metav1.Time / MicroTime as the API server decodes them.
bool is_rfc3339(const std::string& s) {
  static const std::regex re(
      R"(^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})$)");
  return std::regex_match(s, re);
}

bool is_dns1123_subdomain(const std::string& s) {
  static const std::regex re(
      R"(^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$)");
  return !s.empty() && s.size() <= 253 && std::regex_match(s, re);
}

// A label key ([prefix/]name) or value, as Kubernetes validates them.
bool is_label_name(const std::string& s, bool allow_empty) {
  static const std::regex re(R"(^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$)");
  if (s.empty()) return allow_empty;
  return s.size() <= 63 && std::regex_match(s, re);
}
bool is_label_key(const std::string& k) {
  auto slash = k.find('/');
  if (slash == std::string::npos) return is_label_name(k, false);
  return is_dns1123_subdomain(k.substr(0, slash)) && is_label_name(k.substr(slash + 1), false);
}

struct Requirement {
  std::string key, value;
  bool equal = true;
};

// An equality-based label selector (a=b, a==b, a!=b, comma-separated); nullopt
// when malformed or set-based (which this double does not serve).
std::optional<std::vector<Requirement>> parse_selector(const std::string& sel) {
  std::vector<Requirement> out;
  if (sel.empty()) return out;
  std::stringstream ss(sel);
  std::string term;
  while (std::getline(ss, term, ',')) {
    Requirement r;
    auto ne = term.find("!=");
    auto eq = term.find('=');
    if (ne != std::string::npos) {
      r.equal = false;
      r.key = term.substr(0, ne);
      r.value = term.substr(ne + 2);
    } else if (eq != std::string::npos) {
      r.key = term.substr(0, eq);
      r.value = term.substr(term.compare(eq, 2, "==") == 0 ? eq + 2 : eq + 1);
    } else {
      return std::nullopt;
    }
    if (!is_label_key(r.key) || !is_label_name(r.value, true)) return std::nullopt;
    out.push_back(r);
  }
  if (!sel.empty() && sel.back() == ',') return std::nullopt;
  return out;
}

bool selected(const json& obj, const std::vector<Requirement>& reqs) {
  json labels = obj["metadata"].value("labels", json::object());
  for (const auto& r : reqs) {
    bool has = labels.contains(r.key) && labels[r.key].is_string() && labels[r.key] == r.value;
    if (has != r.equal) return false;
  }
  return true;
}

// A workload's spec.selector.matchLabels in the string form of Scale.status.selector.
std::string selector_string(const json& workload) {
  std::string out;
  auto ml = workload["spec"].value("selector", json::object()).value("matchLabels", json::object());
  for (const auto& [k, v] : ml.items())
    out += fmt::format("{}{}={}", out.empty() ? "" : ",", k,
                       v.is_string() ? v.get<std::string>() : v.dump());
  return out;
}

// How a resource is spelled in messages and what kind its objects are.
struct ResourceInfo {
  const char* api_version;
  const char* kind;
  const char* qualified;  // "deployments.apps", as the API server names it in messages
};
const std::map<std::string, ResourceInfo>& resources() {
  static const std::map<std::string, ResourceInfo> r = {
      {"endpointslices",
       {"discovery.k8s.io/v1", "EndpointSlice", "endpointslices.discovery.k8s.io"}},
      {"services", {"v1", "Service", "services"}},
      {"deployments", {"apps/v1", "Deployment", "deployments.apps"}},
      {"statefulsets", {"apps/v1", "StatefulSet", "statefulsets.apps"}},
      {"pods", {"v1", "Pod", "pods"}},
      {"leases", {"coordination.k8s.io/v1", "Lease", "leases.coordination.k8s.io"}},
      {"events", {"v1", "Event", "events"}},
  };
  return r;
}

json scale_of(const json& w) {
  const auto& md = w["metadata"];
  return {{"kind", "Scale"},
          {"apiVersion", "autoscaling/v1"},
          {"metadata",
           {{"name", md["name"]},
            {"namespace", md["namespace"]},
            {"resourceVersion", md["resourceVersion"]},
            {"uid", md.value("uid", "")},
            {"creationTimestamp", md.value("creationTimestamp", "")}}},
          {"spec", {{"replicas", w["spec"].value("replicas", 1)}}},
          {"status",
           {{"replicas", w.value("status", json::object()).value("replicas", 0)},
            {"selector", selector_string(w)}}}};
}

struct Event {
  uint64_t rv;
  std::string type;
  json object;
  std::string resource;  // endpointslices, deployments, ...
  json old;              // the object before this write (null when it is new)
};

class Session;

struct State {
  std::string token_file;
  uint64_t rv = 1000;
  uint64_t compacted = 0;  // watches from versions below this get 410
  // resource -> "<ns>/<name>" -> object
  std::map<std::string, std::map<std::string, json>> store;
  std::map<std::string, json> services;  // "<ns>/<name>" -> Service
  std::vector<Event> events;
  std::vector<json> created_events;              // core/v1 Events created through the API
  std::list<std::shared_ptr<Session>> watchers;  // open watches, kept alive until closed
  std::set<std::string> denied;                  // "<verb> <resource>"
  int fail_next = 0;
  uint64_t uids = 0;
  std::map<std::string, int> counters;
  std::chrono::milliseconds bookmark_every{1000};

  json* find(const std::string& resource, const std::string& key) {
    auto& m = store[resource];
    auto it = m.find(key);
    return it == m.end() ? nullptr : &it->second;
  }
  // Stores (or deletes) an object at a new resourceVersion and tells the watches.
  json write(const std::string& resource, const std::string& type, json obj);
};

bool matches(const json& slice, const std::string& ns, const std::string& svc) {
  const auto& md = slice["metadata"];
  return md.value("namespace", "") == ns &&
         md.value("labels", json::object()).value("kubernetes.io/service-name", "") == svc;
}

// A request path split as the API server routes it.
struct Route {
  std::string group_version;  // "v1", "apps/v1", ...
  std::string ns, resource, name, sub;
};

std::optional<Route> route_of(const std::string& path) {
  std::vector<std::string> seg;
  std::stringstream ss(path);
  std::string part;
  while (std::getline(ss, part, '/'))
    if (!part.empty()) seg.push_back(part);
  Route r;
  size_t i;
  if (seg.size() >= 2 && seg[0] == "api") {
    r.group_version = seg[1];
    i = 2;
  } else if (seg.size() >= 3 && seg[0] == "apis") {
    r.group_version = seg[1] + "/" + seg[2];
    i = 3;
  } else {
    return std::nullopt;
  }
  if (seg.size() < i + 3 || seg.size() > i + 5 || seg[i] != "namespaces") return std::nullopt;
  r.ns = seg[i + 1];
  r.resource = seg[i + 2];
  if (seg.size() > i + 3) r.name = seg[i + 3];
  if (seg.size() > i + 4) r.sub = seg[i + 4];
  auto it = resources().find(r.resource);
  if (it == resources().end() || it->second.api_version != r.group_version) return std::nullopt;
  return r;
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
  // A watch session: push an event if it concerns this watch.
  void push(const Event& e) {
    if (!watching_ || closed_ || e.resource != watch_resource_) return;
    std::string type = e.type;
    if (watch_resource_ == "endpointslices") {
      if (!matches(e.object, ns_, svc_)) return;
    } else if (watch_resource_ == "pods") {
      // A label-selected watch, as the API server's watch cache serves it: an
      // object that enters the selection is ADDED, one that leaves it DELETED.
      auto in = [&](const json& o) {
        return o.is_object() && o["metadata"].value("namespace", "") == ns_ &&
               selected(o, pod_selector_);
      };
      bool was = in(e.old), now = e.type != "DELETED" && in(e.object);
      if (!was && !now) return;
      type = was && now ? "MODIFIED" : now ? "ADDED" : "DELETED";
    } else {
      const auto& md = e.object["metadata"];
      if (md.value("namespace", "") != ns_ ||
          (!name_filter_.empty() && md.value("name", "") != name_filter_))
        return;
    }
    write_chunk(json{{"type", type}, {"object", e.object}}.dump() + "\n");
  }
  void bookmark() {
    if (!watching_ || closed_ || !bookmarks_) return;
    const auto& info = resources().at(watch_resource_);
    json obj = {{"kind", info.kind},
                {"apiVersion", info.api_version},
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

  void not_found_path() {
    reply(404, status(404, "NotFound", "the server could not find the requested resource"));
  }
  void method_not_allowed() {
    reply(405, status(405, "MethodNotAllowed", "the server does not allow this method"));
  }
  void not_found(const Route& r) {
    reply(404,
          status(404, "NotFound",
                 fmt::format("{} \"{}\" not found", resources().at(r.resource).qualified, r.name)));
  }
  void conflict(const Route& r) {
    ++st_.counters["conflicts"];
    reply(409, status(409, "Conflict",
                      fmt::format("Operation cannot be fulfilled on {} \"{}\": the object has been "
                                  "modified; please apply your changes to the latest version and "
                                  "try again",
                                  resources().at(r.resource).qualified, r.name)));
  }
  void invalid(const std::string& kind, const std::string& name, const std::string& why) {
    reply(422, status(422, "Invalid", fmt::format("{} \"{}\" is invalid: {}", kind, name, why)));
  }
  bool content_type_is(std::string_view want) {
    auto ct = std::string(req_[http::field::content_type]);
    ct = ct.substr(0, ct.find(';'));
    if (ct == want) return true;
    reply(415, status(415, "UnsupportedMediaType",
                      fmt::format("the body of the request was in an unknown format - accepted "
                                  "media types include: {}",
                                  want)));
    return false;
  }
  std::optional<json> body_json() {
    auto j = json::parse(req_.body(), nullptr, false);
    if (j.is_discarded()) {
      reply(400, status(400, "BadRequest", "the request body is not JSON"));
      return std::nullopt;
    }
    return j;
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
    auto route = route_of(path);
    if (!route) return not_found_path();
    auto q = query_of(target);
    const Route& r = *route;
    // Authorization (RBAC), after routing: verb and resource as a Role spells them.
    std::string verb;
    switch (req_.method()) {
      case http::verb::get:
        verb = !r.name.empty()                                                     ? "get"
               : (q.count("watch") && (q["watch"] == "1" || q["watch"] == "true")) ? "watch"
                                                                                   : "list";
        break;
      case http::verb::patch:
        verb = "patch";
        break;
      case http::verb::post:
        verb = "create";
        break;
      case http::verb::put:
        verb = "update";
        break;
      case http::verb::delete_:
        verb = "delete";
        break;
      default:
        return method_not_allowed();
    }
    std::string rbac_resource = r.resource + (r.sub.empty() ? "" : "/" + r.sub);
    if (st_.denied.count(verb + " " + rbac_resource)) {
      ++st_.counters["forbidden"];
      auto group = r.group_version.find('/') == std::string::npos
                       ? std::string()
                       : r.group_version.substr(0, r.group_version.find('/'));
      return reply(403, status(403, "Forbidden",
                               fmt::format("{}{} is forbidden: User \"system:serviceaccount:kvlb:"
                                           "test\" cannot {} resource \"{}\" in API group \"{}\" "
                                           "in the namespace \"{}\"",
                                           resources().at(r.resource).qualified,
                                           r.name.empty() ? "" : " \"" + r.name + "\"", verb,
                                           rbac_resource, group, r.ns)));
    }
    if (r.resource == "services") return services(r);
    if (r.resource == "endpointslices") return slices(r, q);
    if (r.resource == "deployments" || r.resource == "statefulsets") return workloads(r, q);
    if (r.resource == "pods") return pods(r, q);
    if (r.resource == "leases") return leases(r);
    if (r.resource == "events") return kube_events(r);
    not_found_path();
  }

  // /api/v1/namespaces/<ns>/services/<name>
  void services(const Route& r) {
    if (r.name.empty() || !r.sub.empty()) return not_found_path();
    if (req_.method() != http::verb::get) return method_not_allowed();
    auto it = st_.services.find(r.ns + "/" + r.name);
    if (it == st_.services.end())
      return reply(404, status(404, "NotFound", "services \"" + r.name + "\" not found"));
    ++st_.counters["service_gets"];
    reply(200, it->second);
  }

  // /apis/discovery.k8s.io/v1/namespaces/<ns>/endpointslices
  void slices(const Route& r, std::map<std::string, std::string>& q) {
    if (!r.name.empty()) return not_found_path();
    if (req_.method() != http::verb::get) return method_not_allowed();
    ns_ = r.ns;
    auto sel = q["labelSelector"];
    static const std::string label = "kubernetes.io/service-name=";
    if (sel.rfind(label, 0) != 0 || sel.size() == label.size() ||
        sel.find(',') != std::string::npos)
      return reply(400, status(400, "BadRequest",
                               "labelSelector must be kubernetes.io/service-name=<name>"));
    svc_ = sel.substr(label.size());
    watch_resource_ = "endpointslices";
    if (q.count("watch") && (q["watch"] == "1" || q["watch"] == "true")) return start_watch(q);
    ++st_.counters["lists"];
    json items = json::array();
    for (const auto& [k, v] : st_.store["endpointslices"])
      if (matches(v, ns_, svc_)) items.push_back(v);
    reply(200, {{"kind", "EndpointSliceList"},
                {"apiVersion", "discovery.k8s.io/v1"},
                {"metadata", {{"resourceVersion", std::to_string(st_.rv)}}},
                {"items", items}});
  }

  // /apis/apps/v1/namespaces/<ns>/{deployments,statefulsets}[/<name>[/scale]]
  void workloads(const Route& r, std::map<std::string, std::string>& q) {
    const auto& info = resources().at(r.resource);
    if (r.name.empty()) {  // list or watch
      if (req_.method() != http::verb::get) return method_not_allowed();
      ns_ = r.ns;
      name_filter_.clear();
      if (q.count("fieldSelector") && !q["fieldSelector"].empty()) {
        static const std::regex fs(R"(^metadata\.name==?(.+)$)");
        std::smatch m;
        if (!std::regex_match(q["fieldSelector"], m, fs))
          return reply(400, status(400, "BadRequest",
                                   "this double serves fieldSelector metadata.name=<name> only"));
        name_filter_ = m[1];
      }
      if (q.count("labelSelector") && !q["labelSelector"].empty())
        return reply(400, status(400, "BadRequest", "this double serves no labelSelector here"));
      watch_resource_ = r.resource;
      if (q.count("watch") && (q["watch"] == "1" || q["watch"] == "true")) return start_watch(q);
      ++st_.counters[r.resource + "_lists"];
      json items = json::array();
      for (const auto& [k, v] : st_.store[r.resource])
        if (v["metadata"]["namespace"] == ns_ &&
            (name_filter_.empty() || v["metadata"]["name"] == name_filter_))
          items.push_back(v);
      return reply(200, {{"kind", std::string(info.kind) + "List"},
                         {"apiVersion", info.api_version},
                         {"metadata", {{"resourceVersion", std::to_string(st_.rv)}}},
                         {"items", items}});
    }
    if (!r.sub.empty() && r.sub != "scale") return not_found_path();
    json* obj = st_.find(r.resource, r.ns + "/" + r.name);
    if (r.sub.empty()) {
      if (req_.method() != http::verb::get) return method_not_allowed();
      if (!obj) return not_found(r);
      return reply(200, *obj);
    }
    if (req_.method() == http::verb::get) {
      ++st_.counters["scale_gets"];
      if (!obj) return not_found(r);
      return reply(200, scale_of(*obj));
    }
    if (req_.method() != http::verb::patch) return method_not_allowed();
    ++st_.counters["scale_patches"];
    if (!content_type_is("application/merge-patch+json")) return;
    auto patch = body_json();
    if (!patch) return;
    if (!obj) return not_found(r);
    json cur = scale_of(*obj);
    json next = cur;
    next.merge_patch(*patch);  // RFC 7386
    if (!next.is_object() || !next["metadata"].is_object() || !next["spec"].is_object())
      return invalid("Scale.autoscaling", r.name, "the patched object is not a Scale");
    if (next["metadata"].value("resourceVersion", json()) != cur["metadata"]["resourceVersion"])
      return conflict(r);
    if (next["metadata"].value("name", json()) != cur["metadata"]["name"] ||
        next["metadata"].value("namespace", json()) != cur["metadata"]["namespace"])
      return invalid("Scale.autoscaling", r.name, "metadata.name/namespace cannot change");
    const json& rep = next["spec"].value("replicas", json());
    if (!rep.is_number_integer() || rep.get<int64_t>() < 0 || rep.get<int64_t>() > INT32_MAX)
      return invalid("Scale.autoscaling", r.name,
                     fmt::format("spec.replicas: Invalid value: {}: must be an integer greater "
                                 "than or equal to 0",
                                 rep.dump()));
    if (rep != cur["spec"]["replicas"]) {
      json w = *obj;
      w["spec"]["replicas"] = rep;
      *obj = st_.write(r.resource, "MODIFIED", w);
    }
    reply(200, scale_of(*obj));
  }

  // /api/v1/namespaces/<ns>/pods[/<name>]
  void pods(const Route& r, std::map<std::string, std::string>& q) {
    if (!r.sub.empty()) return not_found_path();
    if (r.name.empty()) {
      if (req_.method() != http::verb::get) return method_not_allowed();
      auto sel = parse_selector(q["labelSelector"]);
      if (!sel)
        return reply(400, status(400, "BadRequest",
                                 fmt::format("unable to parse requirement: labelSelector \"{}\" "
                                             "(this double serves equality-based selectors)",
                                             q["labelSelector"])));
      if (q.count("watch") && (q["watch"] == "1" || q["watch"] == "true")) {
        ns_ = r.ns;
        pod_selector_ = *sel;
        watch_resource_ = "pods";
        return start_watch(q);
      }
      ++st_.counters["pod_lists"];
      json items = json::array();
      for (const auto& [k, v] : st_.store["pods"])
        if (v["metadata"]["namespace"] == r.ns && selected(v, *sel)) items.push_back(v);
      return reply(200, {{"kind", "PodList"},
                         {"apiVersion", "v1"},
                         {"metadata", {{"resourceVersion", std::to_string(st_.rv)}}},
                         {"items", items}});
    }
    json* obj = st_.find("pods", r.ns + "/" + r.name);
    if (req_.method() == http::verb::get) {
      if (!obj) return not_found(r);
      return reply(200, *obj);
    }
    if (req_.method() != http::verb::patch) return method_not_allowed();
    ++st_.counters["pod_patches"];
    if (!content_type_is("application/merge-patch+json")) return;
    auto patch = body_json();
    if (!patch) return;
    if (!obj) return not_found(r);
    json next = *obj;
    next.merge_patch(*patch);
    if (!next.is_object() || !next["metadata"].is_object())
      return invalid("Pod", r.name, "the patched object is not a Pod");
    if (next["metadata"].value("resourceVersion", json()) != (*obj)["metadata"]["resourceVersion"])
      return conflict(r);
    auto rest = [](json p) {
      p["metadata"].erase("annotations");
      p["metadata"].erase("labels");
      return p;
    };
    if (rest(next) != rest(*obj))
      return invalid("Pod", r.name,
                     "this double lets a patch change metadata.annotations and metadata.labels "
                     "only");
    for (const char* field : {"annotations", "labels"}) {
      const json map = next["metadata"].value(field, json::object());
      for (const auto& [k, v] : map.items())
        if (!v.is_string())
          return invalid("Pod", r.name, fmt::format("metadata.{}[{}] must be a string", field, k));
    }
    // The ReplicaSet controller ignores a deletion cost it cannot parse as an
    // int32: refuse one here so such a write fails a test instead of doing nothing.
    auto ann = next["metadata"].value("annotations", json::object());
    static const char* cost_key = "controller.kubernetes.io/pod-deletion-cost";
    if (ann.contains(cost_key)) {
      static const std::regex int32(R"(^[-+]?\d{1,10}$)");
      std::string v = ann[cost_key];
      bool ok = std::regex_match(v, int32);
      if (ok) {
        long long n = std::stoll(v);
        ok = n >= INT32_MIN && n <= INT32_MAX;
      }
      if (!ok)
        return invalid(
            "Pod", r.name,
            fmt::format("metadata.annotations[{}]: \"{}\" is not an int32", cost_key, v));
    }
    if (next != *obj) *obj = st_.write("pods", "MODIFIED", next);
    reply(200, *obj);
  }

  // A Lease body's checks shared by create and update (400 as the decoder, 422 as validation).
  bool lease_valid(const Route& r, const json& lease) {
    if (!lease.is_object() || lease.value("kind", "") != "Lease" ||
        lease.value("apiVersion", "") != "coordination.k8s.io/v1") {
      reply(400, status(400, "BadRequest", "the body is not a coordination.k8s.io/v1 Lease"));
      return false;
    }
    const json spec = lease.value("spec", json::object());
    for (const char* t : {"acquireTime", "renewTime"})
      if (spec.contains(t) && !spec[t].is_null() &&
          (!spec[t].is_string() || !is_rfc3339(spec[t].get<std::string>()))) {
        reply(400, status(400, "BadRequest",
                          fmt::format("spec.{}: not an RFC 3339 time: {}", t, spec[t].dump())));
        return false;
      }
    for (const char* n : {"leaseDurationSeconds", "leaseTransitions"})
      if (spec.contains(n) && !spec[n].is_null() && !spec[n].is_number_integer()) {
        reply(400, status(400, "BadRequest", fmt::format("spec.{} is not an integer", n)));
        return false;
      }
    if (spec.contains("leaseDurationSeconds") && spec["leaseDurationSeconds"].is_number() &&
        spec["leaseDurationSeconds"].get<int64_t>() <= 0) {
      invalid("Lease.coordination.k8s.io", r.name, "spec.leaseDurationSeconds: must be > 0");
      return false;
    }
    if (spec.contains("leaseTransitions") && spec["leaseTransitions"].is_number() &&
        spec["leaseTransitions"].get<int64_t>() < 0) {
      invalid("Lease.coordination.k8s.io", r.name, "spec.leaseTransitions: must be >= 0");
      return false;
    }
    const json md = lease.value("metadata", json::object());
    if (md.contains("namespace") && md["namespace"] != r.ns) {
      reply(400, status(400, "BadRequest",
                        "the namespace of the provided object does not match the namespace sent "
                        "on the request"));
      return false;
    }
    return true;
  }

  // /apis/coordination.k8s.io/v1/namespaces/<ns>/leases[/<name>]
  void leases(const Route& r) {
    if (!r.sub.empty()) return not_found_path();
    if (r.name.empty()) {
      if (req_.method() != http::verb::post) return method_not_allowed();
      ++st_.counters["lease_creates"];
      if (!content_type_is("application/json")) return;
      auto lease = body_json();
      if (!lease) return;
      Route named = r;
      named.name = lease->value("metadata", json::object()).value("name", "");
      if (!lease_valid(named, *lease)) return;
      if (!is_dns1123_subdomain(named.name))
        return invalid("Lease.coordination.k8s.io", named.name,
                       "metadata.name: Required value or not a DNS-1123 subdomain");
      if ((*lease)["metadata"].contains("resourceVersion"))
        return reply(400, status(400, "BadRequest",
                                 "resourceVersion should not be set on objects to be created"));
      if (st_.find("leases", r.ns + "/" + named.name))
        return reply(409, status(409, "AlreadyExists",
                                 fmt::format("leases.coordination.k8s.io \"{}\" already exists",
                                             named.name)));
      (*lease)["metadata"]["namespace"] = r.ns;
      (*lease)["metadata"]["uid"] = fmt::format("uid-{}", ++st_.uids);
      (*lease)["metadata"]["creationTimestamp"] = now_rfc3339();
      return reply(201, st_.write("leases", "ADDED", *lease));
    }
    json* obj = st_.find("leases", r.ns + "/" + r.name);
    if (req_.method() == http::verb::get) {
      ++st_.counters["lease_gets"];
      if (!obj) return not_found(r);
      return reply(200, *obj);
    }
    if (req_.method() != http::verb::put) return method_not_allowed();
    ++st_.counters["lease_updates"];
    if (!content_type_is("application/json")) return;
    auto lease = body_json();
    if (!lease) return;
    if (!lease_valid(r, *lease)) return;
    if ((*lease)["metadata"].value("name", "") != r.name)
      return reply(400, status(400, "BadRequest",
                               fmt::format("the name of the object ({}) does not match the name "
                                           "on the URL ({})",
                                           (*lease)["metadata"].value("name", ""), r.name)));
    if (!obj) return not_found(r);
    // No resourceVersion: an unconditional update, as the API server allows.
    const auto& md = (*lease)["metadata"];
    if (md.contains("resourceVersion") &&
        md["resourceVersion"] != (*obj)["metadata"]["resourceVersion"])
      return conflict(r);
    (*lease)["metadata"]["namespace"] = r.ns;
    (*lease)["metadata"]["uid"] = (*obj)["metadata"]["uid"];
    (*lease)["metadata"]["creationTimestamp"] = (*obj)["metadata"]["creationTimestamp"];
    *obj = st_.write("leases", "MODIFIED", *lease);
    reply(200, *obj);
  }

  // /api/v1/namespaces/<ns>/events
  void kube_events(const Route& r) {
    if (!r.name.empty()) return not_found_path();
    if (req_.method() != http::verb::post) return method_not_allowed();
    ++st_.counters["event_creates"];
    if (!content_type_is("application/json")) return;
    auto ev = body_json();
    if (!ev) return;
    if (!ev->is_object() || ev->value("kind", "") != "Event" || ev->value("apiVersion", "") != "v1")
      return reply(400, status(400, "BadRequest", "the body is not a v1 Event"));
    json md = ev->value("metadata", json::object());
    std::string name = md.value("name", "");
    auto bad = [&](const std::string& why) { invalid("Event", name, why); };
    std::vector<std::string> errors;
    const json io = ev->value("involvedObject", json::object());
    auto str = [](const json& j, const char* k) {
      return j.contains(k) && j[k].is_string() ? j[k].get<std::string>() : std::string();
    };
    if (str(io, "kind").empty()) errors.push_back("involvedObject.kind: Required value");
    if (str(io, "name").empty()) errors.push_back("involvedObject.name: Required value");
    if (io.contains("namespace") && io["namespace"] != r.ns)
      errors.push_back("involvedObject.namespace: does not match event.namespace");
    if (str(*ev, "reason").empty()) errors.push_back("reason: Required value");
    auto type = str(*ev, "type");
    if (type != "Normal" && type != "Warning")
      errors.push_back(fmt::format("type: Unsupported value: \"{}\"", type));
    if (name.empty() && str(md, "generateName").empty())
      errors.push_back("metadata.name: Required value: name or generateName is required");
    if (!name.empty() && !is_dns1123_subdomain(name))
      errors.push_back("metadata.name: not a DNS-1123 subdomain");
    if (md.contains("namespace") && md["namespace"] != r.ns)
      return reply(400, status(400, "BadRequest",
                               "the namespace of the provided object does not match the namespace "
                               "sent on the request"));
    if (!errors.empty()) {
      std::string all;
      for (const auto& e : errors) all += (all.empty() ? "" : ", ") + e;
      return bad("[" + all + "]");
    }
    if (name.empty()) name = str(md, "generateName") + fmt::format("{:05x}", ++st_.uids % 0xfffff);
    if (st_.find("events", r.ns + "/" + name))
      return reply(409,
                   status(409, "AlreadyExists", fmt::format("events \"{}\" already exists", name)));
    (*ev)["metadata"]["name"] = name;
    (*ev)["metadata"]["namespace"] = r.ns;
    (*ev)["metadata"]["uid"] = fmt::format("uid-{}", ++st_.uids);
    (*ev)["metadata"]["creationTimestamp"] = now_rfc3339();
    json stored = st_.write("events", "ADDED", *ev);
    st_.created_events.push_back(stored);
    reply(201, stored);
  }

  void start_watch(std::map<std::string, std::string>& q) {
    ++st_.counters[watch_resource_ == "endpointslices" ? std::string("watches")
                                                       : watch_resource_ + "_watches"];
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
    // /_test/<resource>/<ns>/<name> for the objects a test seeds.
    static const std::map<std::string, std::string> seeded = {{"slices", "endpointslices"},
                                                              {"deployments", "deployments"},
                                                              {"statefulsets", "statefulsets"},
                                                              {"pods", "pods"},
                                                              {"leases", "leases"}};
    auto rest = path.substr(7);  // after "/_test/"
    auto slash = rest.find('/');
    auto kind = rest.substr(0, slash);
    if (slash != std::string::npos && seeded.count(kind)) {
      const std::string& resource = seeded.at(kind);
      auto key = rest.substr(slash + 1);
      auto sep = key.find('/');
      if (sep == std::string::npos) return reply(400, status(400, "BadRequest", "ns/name"));
      json* cur = st_.find(resource, key);
      if (req_.method() == http::verb::put) {
        auto obj = json::parse(req_.body(), nullptr, false);
        if (obj.is_discarded() || !obj.is_object())
          return reply(400, status(400, "BadRequest", "body is not JSON"));
        const auto& info = resources().at(resource);
        obj["metadata"]["namespace"] = key.substr(0, sep);
        obj["metadata"]["name"] = key.substr(sep + 1);
        if (resource != "endpointslices") {
          if (!obj.contains("apiVersion")) obj["apiVersion"] = info.api_version;
          if (!obj.contains("kind")) obj["kind"] = info.kind;
          obj["metadata"]["uid"] =
              cur ? (*cur)["metadata"]["uid"] : json(fmt::format("uid-{}", ++st_.uids));
          if (!obj["metadata"].contains("creationTimestamp"))
            obj["metadata"]["creationTimestamp"] = now_rfc3339();
          // API defaulting: a workload without spec.replicas has one.
          if ((resource == "deployments" || resource == "statefulsets") &&
              !obj["spec"].contains("replicas"))
            obj["spec"]["replicas"] = 1;
        }
        st_.write(resource, cur ? "MODIFIED" : "ADDED", obj);
        return reply(200, {{"resourceVersion", st_.rv}});
      }
      if (req_.method() == http::verb::delete_) {
        if (!cur) return reply(404, status(404, "NotFound", key));
        st_.write(resource, "DELETED", *cur);
        return reply(200, {{"resourceVersion", st_.rv}});
      }
    }
    static const std::string touch = "/_test/touch/";
    if (path.rfind(touch, 0) == 0 && req_.method() == http::verb::post) {
      auto key = path.substr(touch.size());
      auto s1 = key.find('/');
      if (s1 == std::string::npos) return reply(400, status(400, "BadRequest", "resource/ns/name"));
      json* cur = st_.find(key.substr(0, s1), key.substr(s1 + 1));
      if (!cur) return reply(404, status(404, "NotFound", key));
      *cur = st_.write(key.substr(0, s1), "MODIFIED", *cur);
      return reply(200, {{"resourceVersion", st_.rv}});
    }
    // A controller's status write (as the Deployment controller's UpdateStatus):
    // only .status changes, so it cannot undo a concurrent scale patch.
    static const std::string status_route = "/_test/status/";
    if (path.rfind(status_route, 0) == 0 && req_.method() == http::verb::put) {
      auto key = path.substr(status_route.size());
      auto s1 = key.find('/');
      if (s1 == std::string::npos) return reply(400, status(400, "BadRequest", "resource/ns/name"));
      auto body = json::parse(req_.body(), nullptr, false);
      if (body.is_discarded() || !body.is_object())
        return reply(400, status(400, "BadRequest", "body is not a status object"));
      json* cur = st_.find(key.substr(0, s1), key.substr(s1 + 1));
      if (!cur) return reply(404, status(404, "NotFound", key));
      if ((*cur).value("status", json()) != body) {
        json next = *cur;
        next["status"] = body;
        *cur = st_.write(key.substr(0, s1), "MODIFIED", next);
      }
      return reply(200, {{"resourceVersion", (*cur)["metadata"]["resourceVersion"]}});
    }
    static const std::string services = "/_test/services/";
    if (path.rfind(services, 0) == 0 && req_.method() == http::verb::put) {
      auto key = path.substr(services.size());
      auto obj = json::parse(req_.body(), nullptr, false);
      if (obj.is_discarded()) return reply(400, status(400, "BadRequest", "body is not JSON"));
      st_.services[key] = obj;
      return reply(200, {{"service", key}});
    }
    if (path == "/_test/events") return reply(200, st_.created_events);
    if (path == "/_test/deny") {
      auto q = query_of(target);
      if (q["verb"].empty() || q["resource"].empty())
        return reply(400, status(400, "BadRequest", "deny needs verb and resource"));
      st_.denied.insert(q["verb"] + " " + q["resource"]);
      return reply(200, {{"denied", st_.denied}});
    }
    if (path == "/_test/allow") {
      st_.denied.clear();
      return reply(200, {{"denied", st_.denied}});
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
  std::string watch_resource_;             // what a watch session streams
  std::string ns_, svc_;                   // its namespace; the slices' Service
  std::string name_filter_;                // fieldSelector metadata.name
  std::vector<Requirement> pod_selector_;  // a pods watch's labelSelector
};

json State::write(const std::string& resource, const std::string& type, json obj) {
  Event e{++rv, type, std::move(obj), resource, json()};
  e.object["metadata"]["resourceVersion"] = std::to_string(e.rv);
  auto key = e.object["metadata"]["namespace"].get<std::string>() + "/" +
             e.object["metadata"]["name"].get<std::string>();
  if (const json* before = find(resource, key)) e.old = *before;
  if (type == "DELETED")
    store[resource].erase(key);
  else
    store[resource][key] = e.object;
  events.push_back(e);
  for (auto& w : watchers) w->push(e);
  return e.object;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"kube-api-double: a strict Kubernetes API server stand-in for tests"};
  std::string listen = "127.0.0.1", cert, key, port_file;
  uint16_t port = 6443;
  int bookmark_ms = 1000;
  State st;
  app.add_option("--listen", listen, "address");
  app.add_option("--port", port, "port (0: any free port, see --port-file)");
  app.add_option("--port-file", port_file, "write the port listened on here, once listening");
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
  port = acceptor.local_endpoint().port();
  if (!port_file.empty()) {
    // Written whole, then renamed: a reader never sees a partial number.
    auto tmp = port_file + ".tmp";
    std::ofstream(tmp) << port << "\n";
    std::rename(tmp.c_str(), port_file.c_str());
  }
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
