#include "config.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include <fmt/format.h>

#include "common/duration.h"
#include "cluster/score_message.h"
#include "common/names.h"
#include "agent/settings.h"
#include "common/printable.h"
#include "k8s/kube_client.h"

namespace kvlb::agent {
namespace {

bool parse_ip(const std::string& text, int family) {
  auto e = Endpoint::parse_address(text, 0);
  return e && e->family == family;
}

// Rejects keys this version does not know: a typo must not silently fall back to
// a default in a load balancer.
void check_keys(const YAML::Node& node, const std::string& path,
                const std::vector<std::string>& allowed) {
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

bool boolean(const YAML::Node& n, const std::string& field) {
  auto s = scalar(n, field);
  if (s != "true" && s != "false")
    throw ConfigError(field, "'" + printable(s, 64) + "' is not true or false");
  return s == "true";
}

std::string required_string(const YAML::Node& parent, const std::string& key,
                            const std::string& path) {
  if (!parent[key]) throw ConfigError(join(path, key), "is required");
  auto s = scalar(parent[key], join(path, key));
  if (s.empty()) throw ConfigError(join(path, key), "must not be empty");
  return s;
}

BackendConfig parse_backend(const YAML::Node& n, const std::string& path) {
  check_keys(n, path, {"address", "metrics_url", "engine", "weight", "state", "node"});
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
  if (n["node"]) {
    // With score sharing, that node's agent scrapes it (docs/cluster.md).
    b.node = scalar(n["node"], join(path, "node"));
    if (!cluster::valid_name(b.node))
      throw ConfigError(
          join(path, "node"),
          "'" + printable(b.node, 64) + "' is not a node name (1-253 of A-Z a-z 0-9 . _ -)");
  }
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
  check_keys(n, path,
             {"name", "vip", "policy", "choices", "backends", "kubernetes", "keepalive_rebalance"});
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
  if (n["keepalive_rebalance"])
    s.keepalive_rebalance = boolean(n["keepalive_rebalance"], join(path, "keepalive_rebalance"));
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

namespace {
std::vector<std::string> comma_list(const std::string& text) {
  std::vector<std::string> out;
  std::string cur;
  for (char ch : text + ",") {
    if (ch == ',') {
      while (!cur.empty() && cur.back() == ' ') cur.pop_back();
      if (!cur.empty()) out.push_back(cur);
      cur.clear();
    } else if (!(ch == ' ' && cur.empty())) {
      cur += ch;
    }
  }
  return out;
}
}  // namespace

std::vector<std::string> GatewayConfig::interface_list() const {
  return comma_list(interfaces);
}
std::vector<std::string> GatewayConfig::sync_peer_list() const {
  return comma_list(sync_peers);
}
std::vector<std::string> ClusterSettings::server_list() const {
  return comma_list(nats_servers);
}

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

  // The keys: every setting of the table (settings.h), by section, and services.
  std::vector<std::string> top = {"services"};
  std::map<std::string, std::vector<std::string>> sections;
  for (const auto& st : settings()) {
    auto dot = st.path.find('.');
    auto head = st.path.substr(0, dot);
    if (std::find(top.begin(), top.end(), head) == top.end()) top.push_back(head);
    if (dot != std::string::npos) sections[head].push_back(st.path.substr(dot + 1));
  }
  check_keys(root, "", top);
  for (const auto& [name, keys] : sections)
    if (root[name]) check_keys(root[name], name, keys);

  AgentConfig c;  // the table's defaults
  for (const auto& st : settings()) {
    auto dot = st.path.find('.');
    YAML::Node node = dot == std::string::npos
                          ? root[st.path]
                          : root[st.path.substr(0, dot)][st.path.substr(dot + 1)];
    if (node) st.apply(c, parse_setting(st, scalar(node, st.path)));
  }

  // What involves several settings.
  if (c.gateway_mode) {
    const auto ifs = c.gateway.interface_list();
    if (ifs.empty()) throw ConfigError("gateway.interfaces", "is required in gateway mode");
    for (const auto& i : ifs)
      if (i.size() >= 16 || i.find_first_of("/ \t") != std::string::npos)
        throw ConfigError("gateway.interfaces",
                          "'" + printable(i, 32) + "' is not an interface name");
    if (c.gateway.snat_ipv4.empty() && c.gateway.snat_ipv6.empty())
      throw ConfigError("gateway.snat_ipv4", "gateway mode needs snat_ipv4 or snat_ipv6");
    if (!c.gateway.snat_ipv4.empty() && !parse_ip(c.gateway.snat_ipv4, KVLB_AF_INET))
      throw ConfigError("gateway.snat_ipv4",
                        "'" + printable(c.gateway.snat_ipv4, 64) + "' is not an IPv4 address");
    if (!c.gateway.snat_ipv6.empty() && !parse_ip(c.gateway.snat_ipv6, KVLB_AF_INET6))
      throw ConfigError("gateway.snat_ipv6",
                        "'" + printable(c.gateway.snat_ipv6, 64) + "' is not an IPv6 address");
    if (c.gateway.port_lo > c.gateway.port_hi)
      throw ConfigError("gateway.snat_port_min", "must not be above gateway.snat_port_max");
    if (c.gateway.closing >= c.gateway.idle)
      throw ConfigError("gateway.closing_timeout", "must be shorter than gateway.idle_timeout");
    if (c.gateway.flow_sync()) {
      const auto& g = c.gateway.sync_group;
      if (!cluster::valid_name(g) || g.find('.') != std::string::npos)
        throw ConfigError("gateway.sync_group",
                          "'" + printable(g, 64) + "' is not a name of A-Z a-z 0-9 _ - (no dots)");
      if (!c.cluster.enabled())
        throw ConfigError("gateway.sync_group",
                          "flow sync goes over NATS: set cluster.nats_servers too");
      if (c.gateway.sync_refresh >= c.gateway.idle)
        throw ConfigError("gateway.sync_refresh", "must be shorter than gateway.idle_timeout");
      for (const auto& a : c.gateway.sync_peer_list())
        if (!parse_ip(a, KVLB_AF_INET) && !parse_ip(a, KVLB_AF_INET6))
          throw ConfigError("gateway.sync_peers",
                            "'" + printable(a, 64) + "' is not an IPv4 or IPv6 address");
    } else if (!c.gateway.sync_peers.empty()) {
      throw ConfigError("gateway.sync_peers", "is for flow sync: set gateway.sync_group too");
    }
  } else if (!c.gateway.sync_group.empty()) {
    throw ConfigError("gateway.sync_group", "flow sync is for gateway mode");
  } else if (c.cgroup.empty()) {
    throw ConfigError("cgroup", "is required");
  }
  {
    auto rel = c.pin_dir.lexically_relative(c.bpffs);
    if (rel.empty() || rel == "." || *rel.begin() == "..")
      throw ConfigError("pin_dir", "must be a directory below bpffs (" + c.bpffs.string() + ")");
  }
  if (c.scrape_timeout.count() == 0) c.scrape_timeout = c.scrape_interval;
  if (c.stale_after <= c.scrape_interval)
    throw ConfigError("stale_after", fmt::format("must be longer than scrape_interval ({} ms)",
                                                 c.scrape_interval.count()));
  if (!c.admin_listen.empty() && !Endpoint::parse(c.admin_listen))
    throw ConfigError("admin.listen", "'" + printable(c.admin_listen, 64) + "' is not ip:port");
  if (root["kubernetes"] && c.kubernetes_in_cluster == !c.kubeconfig.empty())
    throw ConfigError("kubernetes", "set exactly one of in_cluster: true and kubeconfig");

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
    if (c.gateway_mode) {
      if (root["services"][i]["keepalive_rebalance"] && s.keepalive_rebalance)
        throw ConfigError(path + ".keepalive_rebalance",
                          "keep-alive rebalancing is for the socket LB, not gateway mode");
      s.keepalive_rebalance = false;  // the default, in gateway mode
    }
    for (size_t b = 0; b < s.backends.size(); ++b) {
      const auto& bc = s.backends[b];
      auto here = fmt::format("{}.backends[{}]", path, b);
      auto [it, fresh] = replicas.emplace(bc.address.to_string(), std::make_pair(here, bc));
      const auto& other = it->second.second;
      if (!fresh &&
          (other.state != bc.state || other.weight != bc.weight || other.engine != bc.engine ||
           other.metrics_url != bc.metrics_url || other.node != bc.node))
        throw ConfigError(here, fmt::format("{} is also {} with a different state, weight, engine, "
                                            "metrics_url or node; a replica has one of each",
                                            bc.address.to_string(), it->second.first));
    }
    c.services.push_back(std::move(s));
  }
  if (c.cluster.enabled()) {
    for (const auto& url : c.cluster.server_list())
      if (!(url.rfind("nats://", 0) == 0 || url.rfind("tls://", 0) == 0) || url.size() > 255)
        throw ConfigError("cluster.nats_servers",
                          "'" + printable(url, 64) + "' is not a nats:// or tls:// URL");
    if (!c.cluster.agent_id.empty() && !cluster::valid_name(c.cluster.agent_id))
      throw ConfigError("cluster.agent_id", "use 1-253 of A-Z a-z 0-9 . _ -");
    if (!cluster::valid_name(c.cluster.subject_prefix))
      throw ConfigError("cluster.subject_prefix", "use 1-253 of A-Z a-z 0-9 _ - (no dots)");
    if (c.cluster.subject_prefix.find('.') != std::string::npos)
      throw ConfigError("cluster.subject_prefix", "use 1-253 of A-Z a-z 0-9 _ - (no dots)");
    for (size_t i = 0; i < c.services.size(); ++i)
      if (!cluster::valid_name(c.services[i].name) ||
          c.services[i].name.find('.') != std::string::npos)
        throw ConfigError(fmt::format("services[{}].name", i),
                          "with cluster.nats_servers a service's name is a subject token: use "
                          "1-253 of A-Z a-z 0-9 _ -");
    if (c.cluster.user.empty() != c.cluster.password_file.empty())
      throw ConfigError("cluster.user", "set both user and password_file, or neither");
    if (!c.cluster.credentials_file.empty() && !c.cluster.user.empty())
      throw ConfigError("cluster.credentials_file", "set credentials_file or user, not both");
    // Two publishes of a live owner can be a jittered interval plus a round's
    // scrape deadline apart.
    const auto longest_round = c.scrape_interval * 11 / 10 + c.scrape_timeout;
    if (c.cluster.peer_timeout <= longest_round)
      throw ConfigError("cluster.peer_timeout",
                        fmt::format("must be longer than a round can take (1.1 x scrape_interval "
                                    "+ scrape_timeout = {} ms)",
                                    longest_round.count()));
    if (c.cluster.fallback_after <= c.scrape_interval)
      throw ConfigError("cluster.fallback_after", fmt::format("must be longer than "
                                                              "scrape_interval ({} ms)",
                                                              c.scrape_interval.count()));
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
