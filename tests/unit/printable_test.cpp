#include "common/printable.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

using kvlb::printable;
using kvlb::quoted;

TEST(Printable, PlainTextAndUtf8PassUnchanged) {
  EXPECT_EQ(printable("vllm:num_requests_waiting 3"), "vllm:num_requests_waiting 3");
  EXPECT_EQ(printable("modèle 模型 🚀"), "modèle 模型 🚀");
}

TEST(Printable, ControlBytesAndBadUtf8AreEscaped) {
  EXPECT_EQ(printable("a\nb\r\x1b[31m\x7f"), "a\\x0ab\\x0d\\x1b[31m\\x7f");
  EXPECT_EQ(printable("\xff\xfe"), "\\xff\\xfe");
  EXPECT_EQ(printable("\xc0\xaf"), "\\xc0\\xaf");           // overlong '/'
  EXPECT_EQ(printable("\xed\xa0\x80"), "\\xed\\xa0\\x80");  // a surrogate
  EXPECT_EQ(printable("\xc2\x9b"), "\\xc2\\x9b");           // C1 CSI: terminals obey it
  EXPECT_EQ(printable("\xe6\xa8"), "\\xe6\\xa8");           // truncated sequence
  EXPECT_EQ(printable("back\\slash"), "back\\\\slash");     // the escaping cannot be forged
}

TEST(Printable, BoundedAndAlwaysValidJson) {
  std::string big(1000, 'x');
  EXPECT_EQ(printable(big, 10), "xxxxxxxxxx...");
  for (int b = 0; b < 256; ++b) {
    std::string s(1, static_cast<char>(b));
    EXPECT_NO_THROW(nlohmann::json(printable(s)).dump()) << b;
  }
  EXPECT_EQ(quoted("say \"hi\"\n"), "\"say \\x22hi\\x22\\x0a\"");
}
