#include <gtest/gtest.h>

#include "base/file.h"
#include "test_util.h"

namespace imgsearch {
namespace {

TEST(File, ReadsWholeFilesAndNamesMissingOnes) {
  const std::string dir = testing::MakeTempDir();
  testing::WriteFile(dir + "/a", "hello");
  auto bytes = ReadFileBytes(dir + "/a");
  ASSERT_TRUE(bytes.ok());
  EXPECT_EQ(std::string(bytes->begin(), bytes->end()), "hello");

  auto missing = ReadFileBytes(dir + "/missing");
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().code(), StatusCode::kNotFound);
  EXPECT_NE(missing.status().message().find(dir + "/missing"), std::string::npos);

  auto directory = ReadFileBytes(dir);
  ASSERT_FALSE(directory.ok());
  EXPECT_NE(directory.status().message().find("not a regular file"), std::string::npos);

  auto too_big = ReadFileBytes(dir + "/a", 3);
  ASSERT_FALSE(too_big.ok());
  EXPECT_EQ(too_big.status().code(), StatusCode::kResourceExhausted);
}

TEST(File, MapsFilesIncludingEmptyOnes) {
  const std::string dir = testing::MakeTempDir();
  testing::WriteFile(dir + "/a", "mapped");
  testing::WriteFile(dir + "/empty", "");
  auto m = MappedFile::Open(dir + "/a");
  ASSERT_TRUE(m.ok());
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(m->data()), m->size()), "mapped");
  MappedFile moved = std::move(m).value();
  EXPECT_EQ(moved.size(), 6u);
  auto e = MappedFile::Open(dir + "/empty");
  ASSERT_TRUE(e.ok());
  EXPECT_EQ(e->size(), 0u);
}

TEST(Status, CarriesCodeMessageAndContext) {
  Status st = Status::Corruption("bad byte").WithContext("file.bin");
  EXPECT_FALSE(st.ok());
  EXPECT_EQ(st.message(), "file.bin: bad byte");
  EXPECT_EQ(st.ToString(), "corrupt: file.bin: bad byte");
  EXPECT_TRUE(Status::Ok().WithContext("x").ok());
  Result<int> r = 5;
  EXPECT_EQ(*r, 5);
  Result<int> e = Status::NotFound("nope");
  EXPECT_EQ(e.status().code(), StatusCode::kNotFound);
}

}  // namespace
}  // namespace imgsearch
