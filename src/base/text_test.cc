#include "base/text.h"

#include <gtest/gtest.h>

namespace imgsearch {
namespace {

TEST(Text, Utf8IsCheckedAndShownEscaped) {
  EXPECT_TRUE(IsValidUtf8("caf\xc3\xa9"));
  EXPECT_FALSE(IsValidUtf8("bad\xff\xfe"));
  EXPECT_FALSE(IsValidUtf8("\xc0\xaf"));  // overlong "/"
  EXPECT_EQ(Utf8Length("caf\xc3\xa9"), 4u);
  EXPECT_EQ(EscapeForDisplay("a\nb\xff\\"), "a\\nb\\xff\\\\");
  EXPECT_EQ(EscapeForDisplay("abcdef", 3), "abc\xe2\x80\xa6");
}

}  // namespace
}  // namespace imgsearch
