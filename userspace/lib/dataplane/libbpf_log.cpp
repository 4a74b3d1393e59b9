#include "dataplane/libbpf_log.h"

#include <bpf/libbpf.h>

#include <cstdarg>
#include <cstdio>
#include <deque>
#include <mutex>
#include <string_view>
#include <system_error>

#include <spdlog/spdlog.h>

#include "common/strings.h"

namespace kvlb {
namespace {

struct State {
  std::mutex mu;
  bool in_verifier_log = false;
  std::deque<std::string> verifier_tail;  // last lines of the current/last log
  std::string summary;                    // the last complete log's tail
  std::string last_warning;
};

State& state() {
  static State s;
  return s;
}

constexpr size_t kTailLines = 3;

void on_line(State& s, bool warning, std::string_view line) {
  if (line.find("-- BEGIN PROG LOAD LOG --") != std::string_view::npos) {
    s.in_verifier_log = true;
    s.verifier_tail.clear();
    return;
  }
  if (line.find("-- END PROG LOAD LOG --") != std::string_view::npos) {
    s.in_verifier_log = false;
    s.summary.clear();
    for (const auto& l : s.verifier_tail) s.summary += (s.summary.empty() ? "" : " | ") + l;
    return;
  }
  if (s.in_verifier_log) {
    spdlog::debug("verifier: {}", line);
    if (line.empty()) return;
    s.verifier_tail.emplace_back(line);
    if (s.verifier_tail.size() > kTailLines) s.verifier_tail.pop_front();
    return;
  }
  if (warning) s.last_warning = std::string(line);
  spdlog::debug("libbpf: {}", line);
}

int print(libbpf_print_level level, const char* fmt, va_list args) {
  // One call can carry a whole verifier log (megabytes): size it first.
  va_list copy;
  va_copy(copy, args);
  int n = std::vsnprintf(nullptr, 0, fmt, copy);
  va_end(copy);
  if (n < 0) return 0;
  std::string buf(static_cast<size_t>(n) + 1, '\0');
  std::vsnprintf(buf.data(), buf.size(), fmt, args);
  buf.resize(static_cast<size_t>(n));
  if (level == LIBBPF_DEBUG) {
    spdlog::trace("libbpf: {}", trim_blanks(buf));
    return n;
  }
  libbpf_log_message(level == LIBBPF_WARN, buf);
  return n;
}

}  // namespace

void libbpf_log_message(bool warning, std::string_view text) {
  auto& s = state();
  std::lock_guard lock(s.mu);
  while (!text.empty()) {
    auto nl = text.find('\n');
    std::string_view line = text.substr(0, nl);
    if (line.rfind("libbpf: ", 0) == 0) line.remove_prefix(8);
    on_line(s, warning, trim_blanks(line));
    if (nl == std::string_view::npos) break;
    text.remove_prefix(nl + 1);
  }
}

void route_libbpf_logs() {
  libbpf_set_print(print);
}

std::string take_libbpf_error() {
  auto& s = state();
  std::lock_guard lock(s.mu);
  std::string out = !s.summary.empty() ? "verifier: " + s.summary : s.last_warning;
  s.summary.clear();
  s.last_warning.clear();
  s.verifier_tail.clear();
  s.in_verifier_log = false;
  return out;
}

[[noreturn]] void throw_libbpf(int err, const std::string& what) {
  std::string detail = take_libbpf_error();
  throw std::system_error(err < 0 ? -err : err, std::generic_category(),
                          detail.empty() ? what : what + " (" + detail + ")");
}

}  // namespace kvlb
