// The data plane's kernel-facing helpers that need no kernel: the feature check's
// message, the load-time settings' comparison, libbpf's log summary, failpoints.
#include <gtest/gtest.h>

#include <cstdlib>
#include <stdexcept>
#include <string>

#include "common/failpoint.h"
#include "dataplane/kernel_features.h"
#include "dataplane/libbpf_log.h"
#include "selection/select_defaults.h"

namespace kvlb {
namespace {

TEST(KernelFeatures, AllPresentPasses) {
  EXPECT_NO_THROW(require_kernel_features([](const KernelFeature&) { return true; }));
}

TEST(KernelFeatures, TheFirstMissingFeatureIsNamedWithItsKernelInOneLine) {
  // A 5.15 kernel: everything up to 5.11 is there, bpf_loop and bpf_set_retval are not.
  auto probe = [](const KernelFeature& f) { return f.since != "5.17" && f.since != "5.18"; };
  auto missing = missing_kernel_features(probe);
  ASSERT_EQ(missing.size(), 2u);
  try {
    require_kernel_features(probe);
    FAIL() << "no error";
  } catch (const std::runtime_error& e) {
    std::string msg = e.what();
    EXPECT_NE(msg.find("lacks bpf_loop() helper (Linux 5.17"), std::string::npos) << msg;
    EXPECT_NE(msg.find("and 1 more"), std::string::npos) << msg;
    EXPECT_NE(msg.find("kvlb needs Linux 5.18 or newer"), std::string::npos) << msg;
    EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
  }
}

TEST(KernelFeatures, TheMinimumIsTheNewestFeature) {
  EXPECT_EQ(minimum_kernel(), "5.18");
}

TEST(SelectSettings, EveryTunableTakesPartInTheComparison) {
  // Generated from the same table as the struct: a new tunable is covered here.
  const kvlb_select_cfg base = default_select_cfg();
  int fields = 0;
#define KVLB_CHANGE_ONE_(type, field, def)                      \
  {                                                             \
    kvlb_select_cfg changed = base;                             \
    changed.field = static_cast<type>(changed.field + 1);       \
    EXPECT_FALSE(changed == base) << #field " is not compared"; \
    ++fields;                                                   \
  }
  KVLB_SELECT_TUNABLES(KVLB_CHANGE_ONE_)
#undef KVLB_CHANGE_ONE_
  EXPECT_EQ(fields, 8);
  EXPECT_TRUE(default_select_cfg() == base);
}

TEST(SelectSettings, DefaultsComeFromTheTable) {
  constexpr kvlb_select_cfg c = default_select_cfg();
  static_assert(c.stale_ns == 2'000'000'000ull && c.fail_threshold == 1);
  EXPECT_EQ(c.kv_permille_per_pick, 80u);
}

TEST(LibbpfLog, AVerifierRefusalIsSummarisedOnOneLine) {
  take_libbpf_error();
  libbpf_log_message(true, "libbpf: prog 'kvlb_connect4': BPF program load failed: E2BIG\n");
  libbpf_log_message(true,
                     "libbpf: prog 'kvlb_connect4': -- BEGIN PROG LOAD LOG --\n"
                     "0: R1=ctx() R10=fp0\n1: (b7) r1 = 0\n390: (b7) r0 = 0\n"
                     "BPF program is too large. Processed 1000001 insn\n"
                     "processed 1000001 insns (limit 1000000) max_states_per_insn 38\n"
                     "-- END PROG LOAD LOG --\n");
  libbpf_log_message(true, "libbpf: failed to load object 'kvlb_connect4'\n");
  EXPECT_EQ(take_libbpf_error(),
            "verifier: 390: (b7) r0 = 0 | BPF program is too large. Processed 1000001 insn | "
            "processed 1000001 insns (limit 1000000) max_states_per_insn 38");
  EXPECT_EQ(take_libbpf_error(), "");
}

TEST(LibbpfLog, WithoutAVerifierLogTheLastWarningIsKept) {
  take_libbpf_error();
  libbpf_log_message(false, "libbpf: loading object\n");
  libbpf_log_message(true, "libbpf: map 'kvlb_sock_v2': failed to create: Invalid argument(-22)\n");
  EXPECT_EQ(take_libbpf_error(), "map 'kvlb_sock_v2': failed to create: Invalid argument(-22)");
}

TEST(Failpoint, NamedHitsFailOnlyWhenArmed) {
  // The table is read once, at the first failpoint of the process: this test's.
  ::setenv("KVLB_FAILPOINTS", "test:always,test:second@2", 1);
  EXPECT_THROW(failpoint("test:always"), std::runtime_error);
  EXPECT_THROW(failpoint("test:always"), std::runtime_error);
  EXPECT_NO_THROW(failpoint("test:second"));
  EXPECT_THROW(failpoint("test:second"), std::runtime_error);
  EXPECT_NO_THROW(failpoint("test:second"));
  EXPECT_NO_THROW(failpoint("test:unarmed"));
  ::unsetenv("KVLB_FAILPOINTS");
}

}  // namespace
}  // namespace kvlb
