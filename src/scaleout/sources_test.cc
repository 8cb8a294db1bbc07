// The scale-out pieces that need no database: where a worker reads a job's file, and the URL and
// SQL text helpers.
#include <gtest/gtest.h>

#include <filesystem>

#include "scaleout/pg.h"
#include "scaleout/sources.h"
#include "test_util.h"

namespace imgsearch::scaleout {
namespace {

TEST(FileSources, TheLongestPrefixWinsAndUrlsAreEscaped) {
  const FileSources sources({{"/srv/photos/", "/mnt/photos/"},
                             {"/srv/photos/2023", "https://files.example.com/y2023"},
                             {"/srv/other", "/mnt/other"}});
  EXPECT_EQ(sources.Locate("/srv/photos/a.jpg"), "/mnt/photos/a.jpg");
  EXPECT_EQ(sources.Locate("/srv/photos/2023/b c#?.jpg"), "https://files.example.com/y2023/b%20c%23%3F.jpg");
  EXPECT_EQ(sources.Locate("/srv/photos2/a.jpg"), "/srv/photos2/a.jpg");  // a prefix is a folder, not a string
  EXPECT_EQ(sources.Locate("/elsewhere/a.jpg"), "/elsewhere/a.jpg");
  EXPECT_EQ(FileSources({}).Locate("/x/y.jpg"), "/x/y.jpg");
}

TEST(FileSources, GoneIsNotFoundAndAMissingShareIsUnavailable) {
  const std::string dir = testing::MakeTempDir();
  std::filesystem::create_directories(dir + "/share");
  testing::WriteFile(dir + "/share/a.jpg", "bytes");
  const FileSources sources({{"/srv/share", dir + "/share"}, {"/srv/unmounted", dir + "/not-mounted"}});
  const std::vector<CollectionRoot> roots = {{"/srv/share", ""}, {"/srv/unmounted", ""}};
  auto read = sources.Read("/srv/share/a.jpg", 7, roots);
  ASSERT_TRUE(read.ok()) << read.status().ToString();
  EXPECT_EQ(std::string(read->bytes.begin(), read->bytes.end()), "bytes");
  EXPECT_EQ(read->stat.path, "/srv/share/a.jpg");
  EXPECT_EQ(sources.Read("/srv/share/gone.jpg", 7, roots).status().code(), StatusCode::kNotFound);
  auto unmounted = sources.Read("/srv/unmounted/b.jpg", 7, roots);
  EXPECT_EQ(unmounted.status().code(), StatusCode::kUnavailable);
  EXPECT_NE(unmounted.status().message().find("--map"), std::string::npos) << unmounted.status().message();
}

TEST(PgText, PasswordsAreRedactedAndArraysQuoted) {
  EXPECT_EQ(SafeUrl("postgresql://me:secret@db:5432/photos"), "postgresql://me:***@db:5432/photos");
  EXPECT_EQ(SafeUrl("postgresql://me@db/photos"), "postgresql://me@db/photos");
  EXPECT_EQ(ArrayLiteral({"a", "b\"c", "d\\e"}), R"({"a","b\"c","d\\e"})");
  EXPECT_EQ(ArrayLiteral({}), "{}");
}

}  // namespace
}  // namespace imgsearch::scaleout
