// settings.h - every scalar setting of the agent's configuration file, in one
// table: its YAML path, kind, default, bounds, where it goes and what it does.
//
// The table is the one source: the config parser reads the file through it,
// AgentConfig takes its defaults from it (and the selection tunables' defaults
// come from bpf/lib/select.h's table through it), and docs/config-reference.md
// is generated from it (`kvlb-agent --print-config-reference`; a test keeps the
// committed file in step). The services list, being structured, is parsed by
// config.cpp.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "dataplane/program_settings.h"

namespace kvlb::agent {

struct AgentConfig;

enum class SettingKind { Text, Path, Duration, Integer, Bool, Choice };

// One parsed value: the member that matches the setting's kind is set.
struct SettingValue {
  std::string text;
  int64_t number = 0;
  bool flag = false;
  std::chrono::milliseconds duration{0};
};

struct Setting {
  std::string path;  // "scrape_interval", "passive_health.cooldown"
  SettingKind kind;
  std::string default_text;          // written as in the file; "" for no default
  int64_t min = 0, max = 0;          // Integer: the value's bounds; Duration: in ms (max 0: none)
  std::vector<std::string> choices;  // Choice
  std::string goes_to;  // where the value ends up: "scraper", "BPF programs (cfg_stale_ns)"...
  std::string doc;
  void (*apply)(AgentConfig&, const SettingValue&);
};

const std::vector<Setting>& settings();

// Parses a setting's text (from the file, or its default). Throws ConfigError
// naming the setting's path and the reason.
SettingValue parse_setting(const Setting& s, const std::string& text);

// Sets every setting that has a default to it.
void apply_setting_defaults(AgentConfig& c);

// The configuration reference (Markdown), from the table.
std::string config_reference_markdown();

// The programs' load-time settings for a configuration; `netns_cookie` is this
// network namespace's (used with host_network_only).
ProgramSettings program_settings(const AgentConfig& c, uint64_t netns_cookie);

}  // namespace kvlb::agent
