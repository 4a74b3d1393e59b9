#include "agent/settings.h"

#include <algorithm>

#include <fmt/format.h>

#include "agent/config.h"
#include "common/duration.h"
#include "common/endpoint.h"
#include "common/printable.h"
#include "scoring/suspects.h"
#include "selection/select_defaults.h"

namespace kvlb::agent {
namespace {

using std::chrono::milliseconds;

std::string ms_text(uint64_t ns) {
  return fmt::format("{}ms", ns / 1'000'000);
}
std::string seconds_text(double s) {
  return fmt::format("{}ms", static_cast<int64_t>(s * 1000 + 0.5));
}

std::vector<Setting> make_table() {
  constexpr kvlb_select_cfg sel = default_select_cfg();
  const scoring::SuspectRules sus;
  using K = SettingKind;
  // clang-format off
  return {
    {"mode", K::Choice, "socket", 0, 0, {"socket", "gateway"}, "data plane",
     "socket: the socket LB (connect() of the cgroup's processes; a Kubernetes node). gateway: "
     "the XDP gateway on gateway.interfaces (traffic that enters this host; docs/gateway.md).",
     [](AgentConfig& c, const SettingValue& v) { c.gateway_mode = v.text == "gateway"; }},
    {"cgroup", K::Text, "", 0, 0, {}, "data plane (attach point)",
     "The cgroup v2 whose processes are balanced: a path inside the cgroup2 mount (the agent "
     "finds it), or relative to it. Required in socket mode.",
     [](AgentConfig& c, const SettingValue& v) { c.cgroup = v.text; }},
    {"bpffs", K::Path, "/sys/fs/bpf", 0, 0, {}, "data plane (pins)",
     "Where bpffs is mounted. The agent mounts it only at or below /sys/fs/bpf.",
     [](AgentConfig& c, const SettingValue& v) { c.bpffs = v.text; }},
    {"pin_dir", K::Path, "/sys/fs/bpf/kvlb", 0, 0, {}, "data plane (pins)",
     "The maps and links, pinned: a directory below bpffs, the agent user's, mode 0700.",
     [](AgentConfig& c, const SettingValue& v) { c.pin_dir = v.text; }},
    {"scrape_interval", K::Duration, "50ms", 10, 0, {}, "scraper",
     "How often every replica's /metrics is scraped (jittered by +-10%).",
     [](AgentConfig& c, const SettingValue& v) { c.scrape_interval = v.duration; }},
    {"scrape_timeout", K::Duration, "", 5, 0, {}, "scraper",
     "A round's deadline, for every target, whichever client (default: scrape_interval).",
     [](AgentConfig& c, const SettingValue& v) { c.scrape_timeout = v.duration; }},
    {"max_scrape_bytes", K::Integer, "4194304", 1024, 256 << 20, {}, "scraper",
     "A /metrics body's limit; at most twice this is read on the wire.",
     [](AgentConfig& c, const SettingValue& v) { c.max_scrape_bytes = static_cast<size_t>(v.number); }},
    {"scrape_client", K::Choice, "auto", 0, 0, {"auto", "curl"}, "scraper",
     "auto: kvlb's own HTTP/1.1 client for http:// URLs with an IP address, libcurl for the "
     "rest; curl: libcurl for everything.",
     [](AgentConfig& c, const SettingValue& v) {
       c.scrape_client = v.text == "curl" ? ScrapeClient::Curl : ScrapeClient::Auto;
     }},
    {"down_after_failures", K::Integer, "3", 1, 1000, {}, "agent",
     "Failed scrapes in a row after which a backend is marked down (no new connections).",
     [](AgentConfig& c, const SettingValue& v) {
       c.down_after_failures = static_cast<unsigned>(v.number);
     }},
    {"stale_after", K::Duration, ms_text(sel.stale_ns), 10, 0, {},
     "BPF programs (cfg_stale_ns)",
     "A score older than this is stale: the kernel compares that backend on in-flight "
     "connections only. Longer than scrape_interval.",
     [](AgentConfig& c, const SettingValue& v) { c.stale_after = v.duration; }},
    {"kv_permille_per_pick", K::Integer, std::to_string(sel.kv_permille_per_pick), 0, 1000, {},
     "BPF programs (cfg_kv_permille_per_pick)",
     "KV-cache growth the kernel assumes per connection assigned since the last score "
     "(permille of the cache).",
     [](AgentConfig& c, const SettingValue& v) {
       c.kv_permille_per_pick = static_cast<uint32_t>(v.number);
     }},
    {"passive_health.failure_threshold", K::Integer, std::to_string(sel.fail_threshold), 0, 1000,
     {}, "BPF programs (cfg_fail_threshold)",
     "Failed connects in a row after which a backend cools down (0: passive health off, "
     "sockops not loaded).",
     [](AgentConfig& c, const SettingValue& v) {
       c.failure_threshold = static_cast<uint32_t>(v.number);
     }},
    {"passive_health.cooldown", K::Duration, ms_text(sel.fail_cooldown_ns), 1, 0, {},
     "BPF programs (cfg_fail_cooldown_ns)",
     "How long a backend with failed connects loses to every other eligible one.",
     [](AgentConfig& c, const SettingValue& v) { c.failure_cooldown = v.duration; }},
    {"suspect_backends.enabled", K::Bool, sus.enabled ? "true" : "false", 0, 0, {}, "agent",
     "Bound and report backends whose reports the kernel's counts contradict.",
     [](AgentConfig& c, const SettingValue& v) { c.suspects.enabled = v.flag; }},
    {"suspect_backends.window", K::Duration, seconds_text(sus.window_s), 100, 0, {}, "agent",
     "How far back the evidence goes (and at least 10 scrapes).",
     [](AgentConfig& c, const SettingValue& v) { c.suspects.window_s = v.duration.count() / 1000.0; }},
    {"suspect_backends.min_connections", K::Integer, std::to_string(sus.min_picks), 1, 1000000, {},
     "agent", "Connections a suspect got in the window.",
     [](AgentConfig& c, const SettingValue& v) {
       c.suspects.min_picks = static_cast<uint64_t>(v.number);
     }},
    {"suspect_backends.max_connection_lifetime", K::Duration, seconds_text(sus.max_lifetime_s), 1,
     0, {}, "agent", "Their mean lifetime under this.",
     [](AgentConfig& c, const SettingValue& v) {
       c.suspects.max_lifetime_s = v.duration.count() / 1000.0;
     }},
    {"suspect_backends.probation", K::Duration, seconds_text(sus.probation_s), 100, 0, {}, "agent",
     "How long a suspect stays one, doubled at each new finding (at most 5 min).",
     [](AgentConfig& c, const SettingValue& v) {
       c.suspects.probation_s = v.duration.count() / 1000.0;
     }},
    {"max_sockets", K::Integer, std::to_string(KVLB_MAX_SOCKETS), 16, 16 << 20, {},
     "BPF maps (kvlb_sock_v2 size)",
     "Balanced sockets the kernel tracks at once (~80 bytes each, preallocated); beyond it "
     "connections are balanced, not counted. Fixed while the table is pinned.",
     [](AgentConfig& c, const SettingValue& v) { c.max_sockets = static_cast<uint32_t>(v.number); }},
    {"host_network_only", K::Bool, "false", 0, 0, {}, "BPF programs (cfg_host_netns_cookie)",
     "Balance only connections made in the agent's own network namespace.",
     [](AgentConfig& c, const SettingValue& v) { c.host_network_only = v.flag; }},
    {"bypass_mark", K::Integer, "0x6b766c62", 0, 0xffffffffll, {},
     "BPF programs (cfg_bypass_mark), scraper",
     "SO_MARK on the agent's own scrape sockets, which the socket LB never balances (0: none).",
     [](AgentConfig& c, const SettingValue& v) { c.bypass_mark = static_cast<uint32_t>(v.number); }},
    {"admin.socket", K::Path, "/run/kvlb/agent.sock", 0, 0, {}, "admin API",
     "The admin API's unix socket (mode 0600; every route, state changes included). Empty: none.",
     [](AgentConfig& c, const SettingValue& v) { c.admin_socket = v.text; }},
    {"admin.listen", K::Text, "", 0, 0, {}, "admin API",
     "An ip:port for a Prometheus server (GET and HEAD only). Empty: none.",
     [](AgentConfig& c, const SettingValue& v) { c.admin_listen = v.text; }},
    {"gateway.interfaces", K::Text, "", 0, 0, {}, "data plane (attach points)",
     "Gateway mode: the interfaces the XDP program runs on, comma-separated: where clients' "
     "packets enter and where backends' answers come back (often two). Required in gateway mode.",
     [](AgentConfig& c, const SettingValue& v) { c.gateway.interfaces = v.text; }},
    {"gateway.xdp_mode", K::Choice, "auto", 0, 0, {"auto", "native", "generic"},
     "data plane (attach points)",
     "auto: native XDP where the driver runs it (generic on veth, whose native mode cannot "
     "redirect to a namespace without XDP), generic otherwise. The mode is logged.",
     [](AgentConfig& c, const SettingValue& v) { c.gateway.xdp_mode = v.text; }},
    {"gateway.snat_ipv4", K::Text, "", 0, 0, {}, "BPF programs (cfg_snat4)",
     "The gateway's source address towards IPv4 backends (an address of this host on their "
     "side). Empty: IPv4 services get no flows.",
     [](AgentConfig& c, const SettingValue& v) { c.gateway.snat_ipv4 = v.text; }},
    {"gateway.snat_ipv6", K::Text, "", 0, 0, {}, "BPF programs (cfg_snat6)",
     "The same for IPv6 backends.",
     [](AgentConfig& c, const SettingValue& v) { c.gateway.snat_ipv6 = v.text; }},
    {"gateway.snat_port_min", K::Integer, "10000", 1024, 65535, {}, "BPF programs (cfg_snat_port_lo)",
     "The lowest source port the gateway hands out; the range must stay clear of the host's "
     "ip_local_port_range (checked at start).",
     [](AgentConfig& c, const SettingValue& v) { c.gateway.port_lo = static_cast<uint16_t>(v.number); }},
    {"gateway.snat_port_max", K::Integer, "29999", 1024, 65535, {}, "BPF programs (cfg_snat_port_hi)",
     "The highest. Each backend can hold this many ports' worth of flows from the gateway.",
     [](AgentConfig& c, const SettingValue& v) { c.gateway.port_hi = static_cast<uint16_t>(v.number); }},
    {"gateway.flow_table", K::Integer, std::to_string(KVLB_GW_DEFAULT_FLOWS), 1024, 16777216, {},
     "BPF programs (flow table size)",
     "Flows the gateway tracks at once (an LRU table; 128 bytes a flow). Past it, the least "
     "recently used flows are forgotten and their next packets placed by Maglev.",
     [](AgentConfig& c, const SettingValue& v) { c.gateway.flows = static_cast<uint32_t>(v.number); }},
    {"gateway.idle_timeout", K::Duration, "600s", 1000, 0, {}, "BPF programs (cfg_flow_idle_ns)",
     "A flow with no packet in either direction for this long is removed and its in-flight "
     "count released.",
     [](AgentConfig& c, const SettingValue& v) { c.gateway.idle = v.duration; }},
    {"gateway.closing_timeout", K::Duration, "65s", 100, 0, {}, "BPF programs (cfg_flow_closing_ns)",
     "How long a flow that saw a FIN or RST is kept (its SNAT port not reused), counted from "
     "its last packet: longer than the backends' TIME_WAIT (60 s on Linux) plus the entry's "
     "one-second clock, or a new flow on the same port meets the old connection there and, "
     "with per-connection timestamp offsets, is refused (PAWS).",
     [](AgentConfig& c, const SettingValue& v) { c.gateway.closing = v.duration; }},
    {"gateway.sweep_interval", K::Duration, "1s", 100, 0, {}, "agent",
     "How often the agent runs the sweep program that removes closed and idle flows.",
     [](AgentConfig& c, const SettingValue& v) { c.gateway.sweep_every = v.duration; }},
    {"gateway.sync_group", K::Text, "", 0, 0, {}, "agent, BPF programs (cfg_sync_refresh_sweeps)",
     "Flow sync (docs/gateway.md): gateways with the same group name share the flows they "
     "place over cluster.nats_servers, so a flow that arrives at another gateway of the group "
     "(an ECMP change in front of them, a failover) keeps its backend and source port. Empty: "
     "off. A name of A-Z a-z 0-9 _ - (a subject token).",
     [](AgentConfig& c, const SettingValue& v) { c.gateway.sync_group = v.text; }},
    {"gateway.sync_peers", K::Text, "", 0, 0, {}, "agent",
     "Flow sync: the source (SNAT) addresses of the group's other gateways, comma-separated. "
     "A peer's flow is taken only if it names this gateway's SNAT address or one of these.",
     [](AgentConfig& c, const SettingValue& v) { c.gateway.sync_peers = v.text; }},
    {"gateway.sync_refresh", K::Duration, "150s", 1000, 0, {}, "BPF programs (cfg_sync_refresh_sweeps)",
     "Flow sync: each open flow is announced to the peers again this often (spread over the "
     "sweeps), so that they keep it past their idle timeout while it lives here; shorter than "
     "gateway.idle_timeout.",
     [](AgentConfig& c, const SettingValue& v) { c.gateway.sync_refresh = v.duration; }},
    {"keepalive.interval", K::Duration, "100ms", 100, 0, {}, "agent",
     "How often keep-alive rebalancing runs (for the services with keepalive_rebalance: true): "
     "the shed backends are marked and the pooled connections of the balanced cgroup's "
     "network namespaces walked once.",
     [](AgentConfig& c, const SettingValue& v) { c.keepalive.interval = v.duration; }},
    {"keepalive.idle", K::Duration, "0ms", 0, 0, {}, "BPF iterator (idle_ns)",
     "A pooled connection is closed only if its last response ended at least this long ago "
     "(and nothing was sent or received since: docs/keepalive.md). Longer spares connections "
     "a client reuses at once; shorter rebalances sooner.",
     [](AgentConfig& c, const SettingValue& v) { c.keepalive.idle = v.duration; }},
    {"keepalive.margin", K::Integer, "500", 100, 100000, {}, "agent (bpf/lib/shed.h)",
     "A backend is shed when its service's best backend beats it by this much, in "
     "milli-requests of the policy's load: 1000 is one waiting request under p2c-queue-kv "
     "(or a KV-usage gap of 50% under p2c-kv; one connection in flight under least-inflight, "
     "on top of the two a moved connection changes).",
     [](AgentConfig& c, const SettingValue& v) {
       c.keepalive.margin_milli = static_cast<uint32_t>(v.number);
     }},
    {"keepalive.max_closes_per_second", K::Integer, "200", 1, 100000, {}, "agent",
     "Connections closed at most, per second on average (a token bucket of one second's).",
     [](AgentConfig& c, const SettingValue& v) {
       c.keepalive.max_closes_per_second = static_cast<uint32_t>(v.number);
     }},
    {"cluster.nats_servers", K::Text, "", 0, 0, {}, "score sharing (docs/cluster.md)",
     "Comma-separated NATS servers (nats://host:port, tls://host:port): agents share what they "
     "scrape, so each replica is scraped by one agent per interval whatever the number of "
     "nodes. Empty: every agent scrapes every replica.",
     [](AgentConfig& c, const SettingValue& v) { c.cluster.nats_servers = v.text; }},
    {"cluster.agent_id", K::Text, "", 0, 0, {}, "score sharing",
     "This agent's name on the bus (1-253 of A-Z a-z 0-9 . _ -). Default: $NODE_NAME, else the "
     "host name.",
     [](AgentConfig& c, const SettingValue& v) { c.cluster.agent_id = v.text; }},
    {"cluster.subject_prefix", K::Text, "kvlb", 0, 0, {}, "score sharing",
     "Subjects are <prefix>.v1.scores.<service> and <prefix>.v1.agents: clusters sharing one "
     "NATS keep apart by prefix.",
     [](AgentConfig& c, const SettingValue& v) { c.cluster.subject_prefix = v.text; }},
    {"cluster.redundancy", K::Integer, "1", 1, 5, {}, "score sharing",
     "How many agents scrape a replica that has no agent on its own node (static backends, a "
     "gateway host's): the first r by a rendezvous hash over the live agents.",
     [](AgentConfig& c, const SettingValue& v) { c.cluster.redundancy = static_cast<uint32_t>(v.number); }},
    {"cluster.peer_timeout", K::Duration, "150ms", 10, 0, {}, "score sharing",
     "An agent whose scores (published every round) stop arriving for this long has left: "
     "its replicas are taken over at the next round. Longer than a round can take (1.1 x "
     "scrape_interval + scrape_timeout), or a live owner with a slow replica is taken for "
     "gone.",
     [](AgentConfig& c, const SettingValue& v) { c.cluster.peer_timeout = v.duration; }},
    {"cluster.heartbeat_interval", K::Duration, "1s", 10, 0, {}, "score sharing",
     "How often every agent announces itself to all (owners also by their scores, every "
     "round); one heard only this way has left after three missed.",
     [](AgentConfig& c, const SettingValue& v) { c.cluster.heartbeat_interval = v.duration; }},
    {"cluster.fallback_after", K::Duration, "150ms", 10, 0, {}, "score sharing",
     "A replica whose shared score has not arrived for this long (its owner silent, or this "
     "agent off the bus) is scraped by this agent directly.",
     [](AgentConfig& c, const SettingValue& v) { c.cluster.fallback_after = v.duration; }},
    {"cluster.fallback_scrape_interval", K::Duration, "250ms", 10, 0, {}, "score sharing",
     "While falling back, this agent scrapes such a replica at most once per this interval: "
     "the cap on the load N agents put on a replica when the bus is down.",
     [](AgentConfig& c, const SettingValue& v) { c.cluster.fallback_scrape_interval = v.duration; }},
    {"cluster.ca_file", K::Path, "", 0, 0, {}, "score sharing",
     "TLS to NATS, the server verified against this CA (PEM).",
     [](AgentConfig& c, const SettingValue& v) { c.cluster.ca_file = v.text; }},
    {"cluster.credentials_file", K::Path, "", 0, 0, {}, "score sharing",
     "This agent's NATS credentials (.creds: user JWT and nkey seed).",
     [](AgentConfig& c, const SettingValue& v) { c.cluster.credentials_file = v.text; }},
    {"cluster.user", K::Text, "", 0, 0, {}, "score sharing",
     "Or a NATS user, with cluster.password_file.",
     [](AgentConfig& c, const SettingValue& v) { c.cluster.user = v.text; }},
    {"cluster.password_file", K::Path, "", 0, 0, {}, "score sharing",
     "The file holding that user's password (one line).",
     [](AgentConfig& c, const SettingValue& v) { c.cluster.password_file = v.text; }},
    {"cluster.inbox_limit", K::Integer, "16384", 16, 1048576, {}, "score sharing",
     "Messages taken from the bus per round, at most; the rest wait in the NATS client "
     "(65,536 per subject), beyond which they are dropped and counted.",
     [](AgentConfig& c, const SettingValue& v) { c.cluster.inbox_limit = static_cast<uint32_t>(v.number); }},
    {"kubernetes.in_cluster", K::Bool, "false", 0, 0, {}, "discovery",
     "Reach the API server as a pod does (service account token, cluster CA).",
     [](AgentConfig& c, const SettingValue& v) { c.kubernetes_in_cluster = v.flag; }},
    {"kubernetes.kubeconfig", K::Path, "", 0, 0, {}, "discovery",
     "Or through this kubeconfig (its current context).",
     [](AgentConfig& c, const SettingValue& v) { c.kubeconfig = v.text; }},
    {"kubernetes.allow_insecure_http", K::Bool, "false", 0, 0, {}, "discovery",
     "Accept a kubeconfig server on plain http:// (the bearer token would travel in clear).",
     [](AgentConfig& c, const SettingValue& v) { c.kubernetes_allow_insecure_http = v.flag; }},
  };
  // clang-format on
}

const char* kind_name(SettingKind k) {
  switch (k) {
    case SettingKind::Text:
      return "text";
    case SettingKind::Path:
      return "path";
    case SettingKind::Duration:
      return "duration";
    case SettingKind::Integer:
      return "integer";
    case SettingKind::Bool:
      return "true/false";
    case SettingKind::Choice:
      return "one of";
  }
  return "";
}

}  // namespace

const std::vector<Setting>& settings() {
  static const std::vector<Setting> table = make_table();
  return table;
}

SettingValue parse_setting(const Setting& s, const std::string& text) {
  SettingValue v;
  v.text = text;
  switch (s.kind) {
    case SettingKind::Text:
      break;
    case SettingKind::Path: {
      if (text.empty()) break;
      std::filesystem::path p(text);
      if (!p.is_absolute()) throw ConfigError(s.path, "must be an absolute path");
      for (const auto& part : p)
        if (part == "..") throw ConfigError(s.path, "must not contain '..'");
      // Normal form, no trailing slash: the agent runs as root, so a path that
      // names one place and reaches another must not pass.
      auto normal = p.lexically_normal();
      if (!normal.has_filename() && normal != normal.root_path()) normal = normal.parent_path();
      v.text = normal.string();
      break;
    }
    case SettingKind::Duration: {
      auto d = parse_duration(text);
      if (!d)
        throw ConfigError(s.path,
                          "'" + printable(text, 64) + "' is not a duration (like 50ms, 2s)");
      v.duration = std::chrono::duration_cast<milliseconds>(*d);
      if (v.duration.count() < s.min)
        throw ConfigError(s.path, fmt::format("must be at least {} ms", s.min));
      if (s.max > 0 && v.duration.count() > s.max)
        throw ConfigError(s.path, fmt::format("must be at most {} ms", s.max));
      break;
    }
    case SettingKind::Integer: {
      long long n = 0;
      size_t used = 0;
      // Decimal, or hexadecimal with 0x (marks): never octal from a leading 0.
      const bool hex = text.size() > 2 && text[0] == '0' && (text[1] == 'x' || text[1] == 'X');
      try {
        n = std::stoll(hex ? text.substr(2) : text, &used, hex ? 16 : 10);
        if (hex) used += 2;
      } catch (...) {
        used = 0;
      }
      if (used == 0 || used != text.size())
        throw ConfigError(s.path, "'" + printable(text, 64) + "' is not an integer");
      if (n < s.min || n > s.max)
        throw ConfigError(s.path, fmt::format("{} is out of range [{}, {}]", n, s.min, s.max));
      v.number = n;
      break;
    }
    case SettingKind::Bool:
      if (text != "true" && text != "false")
        throw ConfigError(s.path, "'" + printable(text, 64) + "' is not true or false");
      v.flag = text == "true";
      break;
    case SettingKind::Choice: {
      bool ok = false;
      std::string known;
      for (const auto& c : s.choices) {
        ok = ok || c == text;
        known += (known.empty() ? "" : ", ") + c;
      }
      if (!ok) throw ConfigError(s.path, "'" + printable(text, 64) + "' is not one of " + known);
      break;
    }
  }
  return v;
}

void apply_setting_defaults(AgentConfig& c) {
  for (const auto& s : settings())
    if (!s.default_text.empty()) s.apply(c, parse_setting(s, s.default_text));
}

std::string config_reference_markdown() {
  std::string out =
      "# kvlb-agent configuration reference\n\n"
      "Generated from the settings table (`userspace/agent/settings.cpp`) by\n"
      "`kvlb-agent --print-config-reference`; a test keeps this file in step with it.\n"
      "Durations are written like `50ms`, `2s`; a key the agent does not know is an\n"
      "error. The `services` list is described in `docs/agent.md`.\n\n"
      "| setting | kind | default | range | goes to | what |\n"
      "| --- | --- | --- | --- | --- | --- |\n";
  for (const auto& s : settings()) {
    std::string range;
    if (s.kind == SettingKind::Integer) range = fmt::format("{} to {}", s.min, s.max);
    if (s.kind == SettingKind::Duration)
      range = s.max > 0 ? fmt::format("{} ms to {} ms", s.min, s.max)
                        : fmt::format("at least {} ms", s.min);
    std::string kind = kind_name(s.kind);
    if (s.kind == SettingKind::Choice) {
      for (size_t i = 0; i < s.choices.size(); ++i)
        kind += (i ? ", " : " ") + ("`" + s.choices[i] + "`");
    }
    out += fmt::format("| `{}` | {} | {} | {} | {} | {} |\n", s.path, kind,
                       s.default_text.empty() ? "—" : "`" + s.default_text + "`",
                       range.empty() ? "" : range, s.goes_to, s.doc);
  }
  return out;
}

ProgramSettings program_settings(const AgentConfig& c, uint64_t netns_cookie) {
  ProgramSettings p;
  p.select.stale_ns = static_cast<uint64_t>(c.stale_after.count()) * 1'000'000ull;
  p.select.kv_permille_per_pick = c.kv_permille_per_pick;
  p.select.fail_threshold = c.failure_threshold;
  p.select.fail_cooldown_ns = static_cast<uint64_t>(c.failure_cooldown.count()) * 1'000'000ull;
  p.bypass_mark = c.bypass_mark;
  p.max_sockets = c.max_sockets;
  p.host_netns_cookie = c.host_network_only ? netns_cookie : 0;
  p.response_ends = !c.gateway_mode && c.uses_keepalive_rebalance();
  if (c.gateway_mode) {
    auto& g = p.gateway;
    if (auto e = Endpoint::parse_address(c.gateway.snat_ipv4, 0)) g.snat4 = e->addr.words[0];
    if (auto e = Endpoint::parse_address(c.gateway.snat_ipv6, 0))
      for (size_t i = 0; i < 4; ++i) g.snat6[i] = e->addr.words[i];
    g.snat_port_lo = c.gateway.port_lo;
    g.snat_port_hi = c.gateway.port_hi;
    g.max_flows = c.gateway.flows;
    g.idle_ns = static_cast<uint64_t>(c.gateway.idle.count()) * 1'000'000ull;
    g.closing_ns = static_cast<uint64_t>(c.gateway.closing.count()) * 1'000'000ull;
    if (c.gateway.flow_sync())
      g.sync_refresh_sweeps = static_cast<uint32_t>(
          std::max<int64_t>(1, c.gateway.sync_refresh.count() / c.gateway.sweep_every.count()));
  }
  return p;
}

}  // namespace kvlb::agent
