#include "imgsearch/duration.h"

#include <gtest/gtest.h>

namespace imgsearch {
namespace {

using std::chrono::milliseconds;

TEST(Duration, AsPeopleWriteThem) {
  EXPECT_EQ(ParseDuration("30d"), milliseconds(30LL * 86'400'000));
  EXPECT_EQ(ParseDuration("12h"), milliseconds(12LL * 3'600'000));
  EXPECT_EQ(ParseDuration("90m"), milliseconds(90LL * 60'000));
  EXPECT_EQ(ParseDuration("45s"), milliseconds(45'000));
  EXPECT_EQ(ParseDuration("500ms"), milliseconds(500));
  EXPECT_EQ(ParseDuration("2w"), milliseconds(14LL * 86'400'000));
  EXPECT_EQ(ParseDuration("0"), milliseconds(0));
  EXPECT_EQ(ParseDuration("0d"), milliseconds(0));
  for (const char* bad : {"", "d", "30", "-1d", "1.5h", "30 d", "30D", "3x", "999999999999999d", "36501d"}) {
    EXPECT_EQ(ParseDuration(bad), std::nullopt) << bad;
  }
  for (const char* round_trip : {"30d", "2w", "12h", "90m", "45s", "500ms", "0"}) {
    EXPECT_EQ(FormatDuration(*ParseDuration(round_trip)), round_trip);
  }
  EXPECT_EQ(FormatDuration(milliseconds(1500)), "1500ms");
}

}  // namespace
}  // namespace imgsearch
