#include "config.h"

#include <yaml-cpp/yaml.h>

#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include <fmt/format.h>

#include "common/duration.h"
#include "common/names.h"
#include "common/printable.h"
#include "k8s/kube_client.h"

namespace kvlb::agent {
namespace {

// Rejects keys this version does not know: a typo must not silently fall back to
// a default in a load balancer.
void check_keys(const YAML::Node& node, const std::string& path,
                std::initializer_list<std::string_view> allowed) {
  if (!node.IsMap()) throw ConfigError(path.empty() ? "(top level)" : path, "must be a mapping");
  std::set<std::string> seen;
  for (const auto& kv : node) {
    // A key is a plain name: `{}:` or `[a]:` is not one of ours, whatever it holds.
    if (!kv.first.IsScalar())
      throw ConfigError(path.empty() ? "(top level)" : path,
                        "a key is not a plain name (a mapping or list used as a key)");
    auto key = kv.first.Scalar();
    // The key as a field path: escaped (it is the document's text), never empty.
    const std::string shown = key.empty() ? "\"\"" : printable(key, 64);
    const std::string field = path.empty() ? shown : path + "." + shown;
    // YAML forbids duplicate keys; yaml-cpp keeps both and answers with the first.
    if (!seen.insert(key).second) throw ConfigError(field, "is given twice");
    bool ok = false;
    for (auto a : allowed) ok = ok || a == key;
    if (!ok) {
      std::string known;
      for (auto a : allowed) known += (known.empty() ? "" : ", ") + std::string(a);
      throw ConfigError(field, "unknown field (known: " + known + ")");
    }
  }
}

// An absolute path with no ".." component, in its normal form: the agent runs as
// root, so a path that names one place and reaches another must not pass.
std::filesystem::path checked_path(const std::filesystem::path& p, const std::string& field) {
  if (!p.is_absolute()) throw ConfigError(field, "must be an absolute path");
  for (const auto& part : p)
    if (part == "..") throw ConfigError(field, "must not contain '..'");
  auto normal = p.lexically_normal();
  if (normal.has_filename() == false && normal != normal.root_path())
    normal = normal.parent_path();  // no trailing slash
  return normal;
}

std::string join(const std::string& path, const std::string& key) {
  return path.empty() ? key : path + "." + key;
}

std::string scalar(const YAML::Node& n, const std::string& field) {
  if (!n.IsScalar()) throw ConfigError(field, "must be a scalar value");
  return n.Scalar();
}

template <typename T>
T integer(const YAML::Node& n, const std::string& field, T lo, T hi) {
  auto s = scalar(n, field);
  long long v = 0;
  size_t used = 0;
  try {
    v = std::stoll(s, &used);
  } catch (...) {
    used = 0;
  }
  if (used == 0 || used != s.size()) throw ConfigError(field, "'" + s + "' is not an integer");
  if (v < static_cast<long long>(lo) || v > static_cast<long long>(hi))
    throw ConfigError(field, fmt::format("{} is out of range [{}, {}]", v, lo, hi));
  return static_cast<T>(v);
}

std::chrono::milliseconds duration_ms(const YAML::Node& n, const std::string& field,
                                      std::chrono::milliseconds min) {
  auto s = scalar(n, field);
  auto d = parse_duration(s);
  if (!d) throw ConfigError(field, "'" + s + "' is not a duration (like 50ms, 2s)");
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(*d);
  if (ms < min) throw ConfigError(field, fmt::format("must be at least {} ms", min.count()));
  return ms;
}

std::string required_string(const YAML::Node& parent, const std::string& key,
                            const std::string& path) {
  if (!parent[key]) throw ConfigError(join(path, key), "is required");
  auto s = scalar(parent[key], join(path, key));
  if (s.empty()) throw ConfigError(join(path, key), "must not be empty");
  return s;
}

BackendConfig parse_backend(const YAML::Node& n, const std::string& path) {
  check_keys(n, path, {"address", "metrics_url", "engine", "weight", "state"});
  BackendConfig b;
  auto addr = required_string(n, "address", path);
  auto ep = Endpoint::parse(addr);
  if (!ep) throw ConfigError(join(path, "address"), "'" + addr + "' is not ip:port or [ipv6]:port");
  b.address = *ep;
  if (n["metrics_url"]) {
    b.metrics_url = scalar(n["metrics_url"], join(path, "metrics_url"));
    if (b.metrics_url.rfind("http://", 0) != 0 && b.metrics_url.rfind("https://", 0) != 0)
      throw ConfigError(join(path, "metrics_url"), "must start with http:// or https://");
  } else {
    b.metrics_url = "http://" + b.address.to_string() + "/metrics";
  }
  if (n["engine"]) {
    auto e = scalar(n["engine"], join(path, "engine"));
    auto engine = engines::parse_engine(e);
    if (!engine)
      throw ConfigError(
          join(path, "engine"),
          "unknown engine '" + e + "' (auto, vllm, tgi, sglang, llamacpp, tensorrt-llm)");
    b.engine = *engine;
  }
  if (n["weight"]) b.weight = integer<uint16_t>(n["weight"], join(path, "weight"), 1, 10000);
  if (n["state"]) {
    auto s = scalar(n["state"], join(path, "state"));
    auto st = state_from_name(s);
    // "down" is the agent's to decide (failed scrapes), never configured.
    if (!st || *st == KVLB_STATE_DOWN)
      throw ConfigError(join(path, "state"), "'" + s + "' is not active or draining");
    b.state = *st;
  }
  return b;
}

ServiceConfig parse_service(const YAML::Node& n, const std::string& path) {
  check_keys(n, path, {"name", "vip", "policy", "choices", "backends", "kubernetes"});
  ServiceConfig s;
  s.name = required_string(n, "name", path);
  if (n["vip"] || !n["kubernetes"]) {  // with kubernetes, the Service's ClusterIP by default
    auto vip = required_string(n, "vip", path);
    auto ep = Endpoint::parse(vip);
    if (!ep) throw ConfigError(join(path, "vip"), "'" + vip + "' is not ip:port or [ipv6]:port");
    s.vip = *ep;
  }
  if (n["policy"])
    s.policy = parse_policy(scalar(n["policy"], join(path, "policy")), join(path, "policy"));
  if (n["choices"])
    s.choices = integer<uint8_t>(n["choices"], join(path, "choices"), 2, KVLB_MAX_CHOICES);
  if (const auto& k = n["kubernetes"]) {
    auto kpath = join(path, "kubernetes");
    check_keys(k, kpath, {"namespace", "service", "port"});
    KubernetesServiceRef ref;
    ref.ns = k["namespace"] ? scalar(k["namespace"], kpath + ".namespace") : "default";
    ref.service = required_string(k, "service", kpath);
    // These go into API request paths: only what the API server itself accepts.
    if (!k8s::is_dns1123_label(ref.ns))
      throw ConfigError(kpath + ".namespace",
                        "'" + printable(ref.ns) + "' is not a DNS-1123 label (a-z, 0-9, '-')");
    if (!k8s::is_dns1123_label(ref.service))
      throw ConfigError(kpath + ".service",
                        "'" + printable(ref.service) + "' is not a DNS-1123 label (a-z, 0-9, '-')");
    if (k["port"]) ref.port_name = scalar(k["port"], kpath + ".port");
    if (n["backends"])
      throw ConfigError(join(path, "backends"), "not allowed with kubernetes (discovered)");
    s.kubernetes = ref;
    return s;
  }
  if (!n["backends"] || !n["backends"].IsSequence() || n["backends"].size() == 0)
    throw ConfigError(join(path, "backends"), "must be a non-empty list (or a kubernetes block)");
  if (n["backends"].size() > KVLB_MAX_SLOTS)
    throw ConfigError(join(path, "backends"), fmt::format("more than {} backends", KVLB_MAX_SLOTS));
  std::set<std::string> seen;
  for (size_t i = 0; i < n["backends"].size(); ++i) {
    auto bpath = fmt::format("{}.backends[{}]", path, i);
    auto b = parse_backend(n["backends"][i], bpath);
    if (b.address.family != s.vip.family)
      throw ConfigError(join(bpath, "address"),
                        fmt::format("{} is not of the VIP's address family ({})",
                                    b.address.to_string(), s.vip.to_string()));
    if (!seen.insert(b.address.to_string()).second)
      throw ConfigError(join(bpath, "address"), b.address.to_string() + " is listed twice");
    s.backends.push_back(std::move(b));
  }
  return s;
}

}  // namespace

kvlb_policy parse_policy(const std::string& name, const std::string& field) {
  if (auto p = policy_from_name(name)) return *p;
  throw ConfigError(field,
                    "unknown policy '" + printable(name, 64) + "' (" + joined(kPolicyNames) + ")");
}

AgentConfig parse_config_checked(const std::string& yaml_text);

AgentConfig parse_config(const std::string& yaml_text) {
  // Whatever yaml-cpp throws on an odd document (a conversion, an invalid node)
  // is a configuration error with its position, never an escaped exception.
  try {
    return parse_config_checked(yaml_text);
  } catch (const ConfigError&) {
    throw;
  } catch (const YAML::Exception& e) {
    throw ConfigError(
        "(yaml)", e.mark.is_null() ? e.msg : fmt::format("line {}: {}", e.mark.line + 1, e.msg));
  }
}

AgentConfig parse_config_checked(const std::string& yaml_text) {
  YAML::Node root;
  try {
    root = YAML::Load(yaml_text);
  } catch (const YAML::Exception& e) {
    throw ConfigError("(yaml)", fmt::format("line {}: {}", e.mark.line + 1, e.msg));
  }
  if (!root || root.IsNull()) throw ConfigError("(top level)", "the configuration is empty");
  check_keys(root, "",
             {"cgroup", "bpffs", "pin_dir", "scrape_interval", "scrape_timeout", "max_scrape_bytes",
              "scrape_client", "max_sockets", "down_after_failures", "stale_after",
              "kv_permille_per_pick", "passive_health", "suspect_backends", "host_network_only",
              "bypass_mark", "admin", "kubernetes", "services"});
  AgentConfig c;
  c.cgroup = required_string(root, "cgroup", "");
  if (root["bpffs"]) c.bpffs = scalar(root["bpffs"], "bpffs");
  if (root["pin_dir"]) c.pin_dir = scalar(root["pin_dir"], "pin_dir");
  c.bpffs = checked_path(c.bpffs, "bpffs");
  c.pin_dir = checked_path(c.pin_dir, "pin_dir");
  {
    auto rel = c.pin_dir.lexically_relative(c.bpffs);
    if (rel.empty() || rel == "." || *rel.begin() == "..")
      throw ConfigError("pin_dir", "must be a directory below bpffs (" + c.bpffs.string() + ")");
  }
  using std::chrono::milliseconds;
  if (root["scrape_interval"])
    c.scrape_interval = duration_ms(root["scrape_interval"], "scrape_interval", milliseconds(10));
  c.scrape_timeout = c.scrape_interval;
  if (root["scrape_timeout"])
    c.scrape_timeout = duration_ms(root["scrape_timeout"], "scrape_timeout", milliseconds(5));
  if (root["max_scrape_bytes"])
    c.max_scrape_bytes =
        integer<size_t>(root["max_scrape_bytes"], "max_scrape_bytes", 1024, 256u << 20);
  if (root["scrape_client"]) {
    auto v = scalar(root["scrape_client"], "scrape_client");
    if (v == "auto")
      c.scrape_client = ScrapeClient::Auto;
    else if (v == "curl")
      c.scrape_client = ScrapeClient::Curl;
    else
      throw ConfigError("scrape_client", "'" + v + "' is not one of auto, curl");
  }
  if (root["down_after_failures"])
    c.down_after_failures =
        integer<unsigned>(root["down_after_failures"], "down_after_failures", 1, 1000);
  if (root["stale_after"])
    c.stale_after = duration_ms(root["stale_after"], "stale_after", milliseconds(10));
  if (c.stale_after <= c.scrape_interval)
    throw ConfigError("stale_after", fmt::format("must be longer than scrape_interval ({} ms)",
                                                 c.scrape_interval.count()));
  if (root["kv_permille_per_pick"])
    c.kv_permille_per_pick =
        integer<uint32_t>(root["kv_permille_per_pick"], "kv_permille_per_pick", 0, 1000);

  if (const auto& ph = root["passive_health"]) {
    check_keys(ph, "passive_health", {"failure_threshold", "cooldown"});
    if (ph["failure_threshold"])
      c.failure_threshold =
          integer<uint32_t>(ph["failure_threshold"], "passive_health.failure_threshold", 0, 1000);
    if (ph["cooldown"])
      c.failure_cooldown = duration_ms(ph["cooldown"], "passive_health.cooldown", milliseconds(1));
  }
  if (const auto& sb = root["suspect_backends"]) {
    check_keys(sb, "suspect_backends",
               {"enabled", "window", "min_connections", "max_connection_lifetime", "probation"});
    auto& r = c.suspects;
    if (sb["enabled"]) {
      auto v = scalar(sb["enabled"], "suspect_backends.enabled");
      if (v != "true" && v != "false")
        throw ConfigError("suspect_backends.enabled", "'" + v + "' is not true or false");
      r.enabled = v == "true";
    }
    auto seconds = [&](const char* key, milliseconds min) {
      return duration_ms(sb[key], std::string("suspect_backends.") + key, min).count() / 1000.0;
    };
    if (sb["window"]) r.window_s = seconds("window", milliseconds(100));
    if (sb["min_connections"])
      r.min_picks =
          integer<uint64_t>(sb["min_connections"], "suspect_backends.min_connections", 1, 1000000);
    if (sb["max_connection_lifetime"])
      r.max_lifetime_s = seconds("max_connection_lifetime", milliseconds(1));
    if (sb["probation"]) r.probation_s = seconds("probation", milliseconds(100));
  }
  if (root["max_sockets"])
    c.max_sockets = integer<uint32_t>(root["max_sockets"], "max_sockets", 16, 16u << 20);
  if (root["host_network_only"]) {
    auto v = scalar(root["host_network_only"], "host_network_only");
    if (v != "true" && v != "false")
      throw ConfigError("host_network_only", "'" + v + "' is not true or false");
    c.host_network_only = v == "true";
  }
  if (const auto& admin = root["admin"]) {
    check_keys(admin, "admin", {"socket", "listen"});
    if (admin["socket"]) {
      c.admin_socket = scalar(admin["socket"], "admin.socket");
      if (!c.admin_socket.empty() && !c.admin_socket.is_absolute())
        throw ConfigError("admin.socket", "must be an absolute path (or empty: no socket)");
    }
    if (admin["listen"]) {
      c.admin_listen = scalar(admin["listen"], "admin.listen");
      if (!c.admin_listen.empty() && !Endpoint::parse(c.admin_listen))
        throw ConfigError("admin.listen", "'" + c.admin_listen + "' is not ip:port");
    }
  }
  if (const auto& k = root["kubernetes"]) {
    check_keys(k, "kubernetes", {"in_cluster", "kubeconfig", "allow_insecure_http"});
    if (k["allow_insecure_http"])
      c.kubernetes_allow_insecure_http =
          scalar(k["allow_insecure_http"], "kubernetes.allow_insecure_http") == "true";
    if (k["in_cluster"])
      c.kubernetes_in_cluster = scalar(k["in_cluster"], "kubernetes.in_cluster") == "true";
    if (k["kubeconfig"]) c.kubeconfig = scalar(k["kubeconfig"], "kubernetes.kubeconfig");
    if (c.kubernetes_in_cluster == !c.kubeconfig.empty())
      throw ConfigError("kubernetes", "set exactly one of in_cluster: true and kubeconfig");
  }
  if (root["bypass_mark"])
    c.bypass_mark = integer<uint32_t>(root["bypass_mark"], "bypass_mark", 0, 0xffffffffu);

  if (!root["services"] || !root["services"].IsSequence() || root["services"].size() == 0)
    throw ConfigError("services", "must be a non-empty list");
  if (root["services"].size() > KVLB_MAX_SERVICES)
    throw ConfigError("services", fmt::format("more than {} services", KVLB_MAX_SERVICES));
  std::set<std::string> names, vips;
  // A replica listed by several services is one backend with one state, weight,
  // engine and metrics URL: conflicting settings are an error, not a silent pick.
  std::map<std::string, std::pair<std::string, BackendConfig>> replicas;
  for (size_t i = 0; i < root["services"].size(); ++i) {
    auto path = fmt::format("services[{}]", i);
    auto s = parse_service(root["services"][i], path);
    if (!names.insert(s.name).second)
      throw ConfigError(path + ".name", "'" + s.name + "' is used twice");
    if (s.vip.family && !vips.insert(s.vip.to_string()).second)
      throw ConfigError(path + ".vip", s.vip.to_string() + " is used by another service");
    for (size_t b = 0; b < s.backends.size(); ++b) {
      const auto& bc = s.backends[b];
      auto here = fmt::format("{}.backends[{}]", path, b);
      auto [it, fresh] = replicas.emplace(bc.address.to_string(), std::make_pair(here, bc));
      const auto& other = it->second.second;
      if (!fresh && (other.state != bc.state || other.weight != bc.weight ||
                     other.engine != bc.engine || other.metrics_url != bc.metrics_url))
        throw ConfigError(here, fmt::format("{} is also {} with a different state, weight, engine "
                                            "or metrics_url; a replica has one of each",
                                            bc.address.to_string(), it->second.first));
    }
    c.services.push_back(std::move(s));
  }
  if (c.uses_kubernetes() && !c.kubernetes_in_cluster && c.kubeconfig.empty())
    throw ConfigError("kubernetes",
                      "services use kubernetes discovery: set in_cluster or kubeconfig");
  return c;
}

AgentConfig load_config(const std::filesystem::path& file) {
  std::ifstream in(file);
  if (!in) throw ConfigError("(file)", "cannot read " + file.string());
  std::stringstream ss;
  ss << in.rdbuf();
  return parse_config(ss.str());
}

}  // namespace kvlb::agent
