// libbpf_log.h - libbpf's own messages, through kvlb's logger.
//
// When the kernel refuses a program, libbpf prints the verifier's whole log
// (up to thousands of lines) and a cascade of "failed to load" warnings. Routed
// here, all of that goes to the debug level, and what matters is kept: the
// verifier's summary (its last lines: the reason, and "processed N insns") and
// libbpf's last warning. DataPlane puts them into the error it throws, so a load
// failure is one line in the agent's log, in the agent's format.
#pragma once

#include <string>
#include <string_view>

namespace kvlb {

// Installs the routing (libbpf_set_print). Idempotent.
void route_libbpf_logs();

// What the routed callback does with one formatted libbpf message (several
// lines at once, as libbpf prints a verifier log). Tests call it directly.
void libbpf_log_message(bool warning, std::string_view text);

// What libbpf reported since the last call, summarised on one line ("" when
// nothing): the verifier's summary if a program was refused, else libbpf's last
// warning. Clears it.
std::string take_libbpf_error();

// A libbpf call failed: throws std::system_error with the error and what libbpf
// itself reported (the verifier's summary when the kernel refused a program).
[[noreturn]] void throw_libbpf(int err, const std::string& what);

}  // namespace kvlb
