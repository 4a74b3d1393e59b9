// failpoint.h - named places where a test can make a step fail on purpose, to
// prove that what runs after a failure (rollback, the old state kept) works.
//
// KVLB_FAILPOINTS="name,name@N,..." in the environment (read once): failpoint
// `name` throws std::runtime_error("failpoint <name>") every time it is reached;
// `name@N` only the N-th time (so a test can let a start-up pass and fail a
// later reload at the same place). Nothing sets it outside tests; unset, a
// failpoint is one branch on an empty table.
#pragma once

#include <string_view>

namespace kvlb {

void failpoint(std::string_view name);

}  // namespace kvlb
