#include "common/duration.h"
#include "common/endpoint.h"
#include "common/logging.h"
#include "common/strings.h"

#include <gtest/gtest.h>

using namespace kvlb;
using namespace std::chrono_literals;

TEST(Duration, ParsesUnits) {
  EXPECT_EQ(*parse_duration("50ms"), 50ms);
  EXPECT_EQ(*parse_duration("2s"), 2s);
  EXPECT_EQ(*parse_duration("1.5s"), 1500ms);
  EXPECT_EQ(*parse_duration("3m"), 180s);
  EXPECT_EQ(*parse_duration("10us"), 10us);
  EXPECT_FALSE(parse_duration("50"));
  EXPECT_FALSE(parse_duration("ms"));
  EXPECT_FALSE(parse_duration("-1s"));
  EXPECT_FALSE(parse_duration("1d"));
  EXPECT_EQ(format_duration(1500ms), "1500ms");
  EXPECT_EQ(format_duration(2s), "2s");
}

TEST(Endpoint, ParsesV4AndV6) {
  auto a = Endpoint::parse("10.0.0.1:8000");
  ASSERT_TRUE(a);
  EXPECT_EQ(a->family, KVLB_AF_INET);
  EXPECT_EQ(a->port, 8000);
  EXPECT_EQ(a->to_string(), "10.0.0.1:8000");
  EXPECT_EQ(a->addr.words[1], 0u);  // IPv4 keys are zero-padded
  auto b = Endpoint::parse("[fd00::1]:443");
  ASSERT_TRUE(b);
  EXPECT_EQ(b->family, KVLB_AF_INET6);
  EXPECT_EQ(b->to_string(), "[fd00::1]:443");
  for (auto bad : {"10.0.0.1", "10.0.0.1:0", "10.0.0.1:65536", "fd00::1:80", "[10.0.0.1]:80",
                   "host:80", "10.0.0.1:80x", "[fd00::1]80", ""})
    EXPECT_FALSE(Endpoint::parse(bad)) << bad;
}

TEST(Logging, JsonEscape) {
  EXPECT_EQ(json_escape("plain"), "plain");
  EXPECT_EQ(json_escape("a \"q\" \\ b\nc\t\x01"), "a \\\"q\\\" \\\\ b\\nc\\t\\u0001");
  EXPECT_THROW(setup_logging("info", "xml"), std::invalid_argument);
}

TEST(Strings, SplitListSkipsEmptyItems) {
  EXPECT_EQ(split_list("a,b,,c,"), (std::vector<std::string>{"a", "b", "c"}));
  EXPECT_TRUE(split_list("").empty());
  EXPECT_EQ(split_list("one"), (std::vector<std::string>{"one"}));
}
