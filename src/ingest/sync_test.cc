// Folder sync on real files with the tiny test model: every kind of change, checked by the
// collection's exact content afterwards.
#include <gtest/gtest.h>
#include <utime.h>

#include <filesystem>
#include <set>

#include "imgsearch/ingest.h"
#include "ingest/ingest_test_util.h"
#include "test_util.h"

namespace imgsearch {
namespace {

namespace fs = std::filesystem;

using SyncTest = testing::IngestTest;

TEST_F(SyncTest, AddsThenDoesNothingTheSecondTime) {
  WriteImage("a.png", 1);
  WriteImage("sub/b.png", 2);
  WriteImage("sub/deeper/c.png", 3);
  testing::WriteFile(root_ + "/notes.txt", "not an image");
  WriteImage(".hidden/d.png", 4);
  WriteImage("@eaDir/e.png", 5);
  SyncReport first = Sync();
  EXPECT_EQ(first.added, 3);
  EXPECT_EQ(first.embedded, 3);
  EXPECT_EQ(Indexed(), (std::set<std::string>{"a.png", "sub/b.png", "sub/deeper/c.png"}));
  SyncReport second = Sync();
  EXPECT_EQ(second.embedded, 0);
  EXPECT_EQ(second.added + second.updated + second.moved + second.removed, 0);
  EXPECT_EQ(second.unchanged, 3);
}

TEST_F(SyncTest, ModifyTouchRenameCopyDelete) {
  WriteImage("a.png", 1);
  WriteImage("b.png", 2);
  WriteImage("c.png", 3);
  Sync();
  const int64_t id_b = IdOf("b.png");

  WriteImage("a.png", 10);  // modified in place
  SyncReport r = Sync();
  EXPECT_EQ(r.updated, 1);
  EXPECT_EQ(r.embedded, 1);

  // Touched: new mtime, same bytes: re-hashed, not re-embedded.
  const std::string c = root_ + "/c.png";
  struct utimbuf times {
    1'700'000'000, 1'700'000'000
  };
  ASSERT_EQ(::utime(c.c_str(), &times), 0);
  r = Sync();
  EXPECT_EQ(r.updated, 1);
  EXPECT_EQ(r.embedded, 0);

  fs::rename(root_ + "/b.png", root_ + "/renamed.png");
  r = Sync();
  EXPECT_EQ(r.moved, 1);
  EXPECT_EQ(r.embedded, 0);
  EXPECT_EQ(IdOf("renamed.png"), id_b);  // a rename keeps its id

  fs::copy_file(root_ + "/renamed.png", root_ + "/copy.png");
  r = Sync();
  EXPECT_EQ(r.added, 1);
  EXPECT_EQ(r.embedded, 0);  // identical content shares the embedding

  fs::remove(root_ + "/c.png");
  r = Sync();
  EXPECT_EQ(r.removed, 1);
  EXPECT_EQ(Indexed(), (std::set<std::string>{"a.png", "renamed.png", "copy.png"}));
  EXPECT_TRUE(collection_->CheckIntegrity().ok());
}

TEST_F(SyncTest, FolderRenameAndMovesInAndOut) {
  WriteImage("trip/1.png", 1);
  WriteImage("trip/2.png", 2);
  Sync();
  fs::rename(root_ + "/trip", root_ + "/holiday");
  SyncReport r = Sync();
  EXPECT_EQ(r.moved, 2);
  EXPECT_EQ(r.embedded, 0);
  EXPECT_EQ(Indexed(), (std::set<std::string>{"holiday/1.png", "holiday/2.png"}));
  const std::string outside = testing::MakeTempDir();
  fs::rename(root_ + "/holiday/1.png", outside + "/1.png");  // moved out
  r = Sync();
  EXPECT_EQ(r.removed, 1);
  fs::rename(outside + "/1.png", root_ + "/back.png");  // moved back in: its vector left with it
  r = Sync();
  EXPECT_EQ(r.added, 1);
  EXPECT_EQ(r.embedded, 1);  // its vector was dropped with the last image that had it
  EXPECT_EQ(Indexed(), (std::set<std::string>{"back.png", "holiday/2.png"}));
}

TEST_F(SyncTest, BrokenFilesFailWithReasonsAndRecoverWhenFixed) {
  WriteImage("good.png", 1);
  WriteImage("broken.png", 2);
  std::string bytes = testing::ReadFile(root_ + "/broken.png");
  testing::WriteFile(root_ + "/broken.png", bytes.substr(0, bytes.size() / 2));
  testing::WriteFile(root_ + "/empty.jpg", "");
  SyncReport r = Sync();
  EXPECT_EQ(r.failed, 2);
  EXPECT_EQ(r.added, 1);
  std::map<std::string, std::string> failures(r.failures.begin(), r.failures.end());
  EXPECT_NE(failures[root_ + "/broken.png"].find("PNG"), std::string::npos);
  EXPECT_NE(failures[root_ + "/empty.jpg"].find("empty"), std::string::npos);
  // Unchanged failures are not retried; a fixed file is.
  EXPECT_EQ(Sync().failed, 0);
  WriteImage("broken.png", 2);
  r = Sync();
  EXPECT_EQ(r.updated, 1);
  EXPECT_EQ(Indexed(), (std::set<std::string>{"good.png", "broken.png"}));
}

TEST_F(SyncTest, SearchFindsAnImageByItself) {
  for (int i = 0; i < 6; ++i) WriteImage("img" + std::to_string(i) + ".png", i * 13);
  Sync();
  auto v = collection_->GetEmbedding(IdOf("img3.png"));
  ASSERT_TRUE(v.ok());
  SearchOptions o;
  o.k = 1;
  auto hits = collection_->Search(*v, o);
  ASSERT_EQ(hits->size(), 1u);
  EXPECT_EQ((*hits)[0].path, root_ + "/img3.png");
  EXPECT_NEAR((*hits)[0].score, 1.0, 1e-5);
}

TEST_F(SyncTest, MissingRootIsAnError) {
  const std::vector<std::string> roots = {root_ + "/does-not-exist"};
  auto r = SyncFolders(roots, *model_, collection_.get());
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("does not exist"), std::string::npos);
}

}  // namespace
}  // namespace imgsearch
