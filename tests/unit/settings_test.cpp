// The settings table is the one source of the configuration's defaults, its
// parser's bounds and its reference documentation.
#include "agent/settings.h"

#include <gtest/gtest.h>

#include <fstream>
#include <set>
#include <sstream>

#include "agent/config.h"

using namespace kvlb;
using namespace kvlb::agent;

TEST(Settings, TheCommittedReferenceIsGeneratedFromTheTable) {
  std::ifstream in(std::string(KVLB_SOURCE_DIR) + "/docs/config-reference.md");
  std::stringstream committed;
  committed << in.rdbuf();
  EXPECT_EQ(committed.str(), config_reference_markdown())
      << "docs/config-reference.md is out of date: regenerate it with "
         "`kvlb-agent --print-config-reference > docs/config-reference.md`";
}

TEST(Settings, TheAgentsDefaultsAreTheProgramsDefaults) {
  // A default configuration loads the programs with select.h's defaults: one
  // source, whichever side reads it.
  const AgentConfig c;
  auto p = program_settings(c, 0);
  EXPECT_TRUE(p.select == default_select_cfg());
  EXPECT_EQ(p.max_sockets, static_cast<uint32_t>(KVLB_MAX_SOCKETS));
  EXPECT_EQ(p.host_netns_cookie, 0u);
  EXPECT_EQ(program_settings(c, 42).host_netns_cookie, 0u);  // only with host_network_only
  EXPECT_TRUE(c.suspects == scoring::SuspectRules{});
}

TEST(Settings, EveryPathIsUniqueAndEveryDefaultParses) {
  std::set<std::string> seen;
  for (const auto& s : settings()) {
    EXPECT_TRUE(seen.insert(s.path).second) << s.path;
    EXPECT_FALSE(s.doc.empty()) << s.path;
    if (!s.default_text.empty()) {
      EXPECT_NO_THROW(parse_setting(s, s.default_text)) << s.path;
    }
  }
}

TEST(Settings, IntegersAreDecimalOrHexNeverOctal) {
  const Setting* mark = nullptr;
  for (const auto& s : settings())
    if (s.path == "bypass_mark") mark = &s;
  ASSERT_TRUE(mark);
  EXPECT_EQ(parse_setting(*mark, "0x10").number, 16);
  EXPECT_EQ(parse_setting(*mark, "010").number, 10);
  EXPECT_THROW(parse_setting(*mark, "0x"), ConfigError);
  EXPECT_THROW(parse_setting(*mark, "12abc"), ConfigError);
}
