// select_defaults.h - the selection's tunables (bpf/lib/select.h's table) on the
// C++ side: their defaults and a field-by-field comparison, both generated from
// the table, so a new tunable cannot be left out of either.
#pragma once

extern "C" {
#include "select.h"
}

namespace kvlb {

constexpr kvlb_select_cfg default_select_cfg() {
  kvlb_select_cfg c{};
#define KVLB_DEFAULT_(type, field, def) c.field = def;
  KVLB_SELECT_TUNABLES(KVLB_DEFAULT_)
#undef KVLB_DEFAULT_
  return c;
}

}  // namespace kvlb

// Field by field (kvlb_select_cfg is a C struct: no defaulted comparison).
constexpr bool operator==(const kvlb_select_cfg& a, const kvlb_select_cfg& b) {
  bool same = true;
#define KVLB_SAME_(type, field, def) same = same && a.field == b.field;
  KVLB_SELECT_TUNABLES(KVLB_SAME_)
#undef KVLB_SAME_
  return same;
}
