// Folder sync on real files with the tiny test model: every kind of change, checked by the
// collection's exact content afterwards.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <utime.h>

#include <algorithm>
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
  fs::rename(outside + "/1.png", root_ + "/back.png");  // moved back in: its vector was kept
  r = Sync();
  EXPECT_EQ(r.added, 1);
  EXPECT_EQ(r.embedded, 0);
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

TEST_F(SyncTest, SymlinkLoopsEndAndEveryFileIsIndexedOnce) {
  WriteImage("a/one.png", 1);
  WriteImage("a/b/two.png", 2);
  WriteImage("c/three.png", 3);
  std::filesystem::create_directory_symlink("..", root_ + "/a/b/up");    // a/b/up → a
  std::filesystem::create_directory_symlink("..", root_ + "/a/up2");     // a/up2 → the root
  std::filesystem::create_directory_symlink("../c", root_ + "/a/to_c");  // a second way into c
  SyncOptions options;
  options.scan.follow_symlinks = true;
  const std::vector<std::string> roots = {root_};
  auto r = SyncFolders(roots, *model_, collection_.get(), options);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->added, 3);
  EXPECT_EQ(*collection_->Count(), 3);
  // Each image under one of its paths, whichever the walk met first.
  std::set<std::string> names;
  for (const std::string& p : Indexed()) names.insert(std::filesystem::path(p).filename().string());
  EXPECT_EQ(names, (std::set<std::string>{"one.png", "two.png", "three.png"}));
}

TEST_F(SyncTest, AMissingOrEmptyRootKeepsItsImagesUntilForgotten) {
  for (int i = 0; i < 4; ++i) WriteImage("sub/img" + std::to_string(i) + ".png", i);
  ASSERT_EQ(Sync().added, 4);
  const int64_t id = IdOf("sub/img0.png");
  // Unmounted: the folder is there and empty.
  const std::string aside = root_ + ".aside";
  std::filesystem::rename(root_, aside);
  std::filesystem::create_directory(root_);
  SyncReport r = Sync();
  EXPECT_EQ(r.removed, 0);
  EXPECT_EQ(*collection_->Count(), 4);
  ASSERT_FALSE(r.warnings.empty());
  EXPECT_NE(r.warnings[0].find("is missing or empty: its 4 images are kept"), std::string::npos) << r.warnings[0];
  EXPECT_NE(r.warnings[0].find("--forget-missing"), std::string::npos);
  // Mounted again: nothing is embedded again and ids stay.
  std::filesystem::remove(root_);
  std::filesystem::rename(aside, root_);
  r = Sync();
  EXPECT_EQ(r.embedded, 0);
  EXPECT_EQ(r.unchanged, 4);
  EXPECT_EQ(IdOf("sub/img0.png"), id);
  // Emptied on purpose.
  std::filesystem::rename(root_, aside);
  std::filesystem::create_directory(root_);
  SyncOptions forget;
  forget.scan.forget_missing = true;
  const std::vector<std::string> roots = {root_};
  auto gone = SyncFolders(roots, *model_, collection_.get(), forget);
  ASSERT_TRUE(gone.ok()) << gone.status().ToString();
  EXPECT_EQ(gone->removed, 4);
  EXPECT_EQ(*collection_->Count(), 0);
  // Back after being forgotten, under other names: the embeddings of removed content are kept
  // (for the collection's grace period), so nothing goes through the model again.
  std::filesystem::remove(root_);
  std::filesystem::rename(aside, root_);
  std::filesystem::rename(root_ + "/sub", root_ + "/renamed");
  r = Sync();
  EXPECT_EQ(r.added, 4);
  EXPECT_EQ(r.embedded, 0);
  EXPECT_EQ(collection_->Stats()->kept_vectors, 0);
  // A folder removed altogether is named with --forget-missing too.
  std::filesystem::remove_all(root_);
  gone = SyncFolders(roots, *model_, collection_.get(), forget);
  ASSERT_TRUE(gone.ok()) << gone.status().ToString();
  EXPECT_EQ(gone->removed, 4);
}

// chmod 0 stops only an unprivileged user: run as root (as CI does), the scan runs in a child that
// has given up root.
TEST_F(SyncTest, AnUnreadableFolderKeepsItsImagesAndIsReported) {
  for (int i = 0; i < 3; ++i) WriteImage("open/img" + std::to_string(i) + ".png", i);
  for (int i = 3; i < 6; ++i) WriteImage("locked/img" + std::to_string(i) + ".png", i);
  ASSERT_EQ(Sync().added, 6);
  const ModelIdentity id = IdentityOf(*model_);
  const std::string db = testing::MakeTempDir() + "/db2";
  {
    auto c = OpenCollection(db, &id);
    ASSERT_TRUE(c.ok());
    const std::vector<std::string> roots = {root_};
    ASSERT_TRUE(SyncFolders(roots, *model_, c->get()).ok());
  }
  ASSERT_EQ(::chmod((root_ + "/locked").c_str(), 0), 0);
  const bool root_user = ::geteuid() == 0;
  if (root_user) {
    // Everything the child needs must be reachable by "nobody".
    for (std::string p = root_; p != "/" && p != "/tmp"; p = std::filesystem::path(p).parent_path().string()) {
      ::chmod(p.c_str(), 0755);
    }
    ::chmod(std::filesystem::path(db).parent_path().c_str(), 0755);
    for (const auto& e : std::filesystem::recursive_directory_iterator(db)) ::chown(e.path().c_str(), 65534, 65534);
    ::chown(db.c_str(), 65534, 65534);
    for (const auto& e : std::filesystem::directory_iterator(root_ + "/open")) ::chmod(e.path().c_str(), 0644);
  }
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    if (root_user && (::setgid(65534) != 0 || ::setuid(65534) != 0)) ::_exit(10);
    auto c = OpenCollection(db, &id);
    if (!c.ok()) ::_exit(11);
    const std::vector<std::string> roots = {root_};
    auto r = SyncFolders(roots, *model_, c->get());
    if (!r.ok()) ::_exit(12);
    // Nothing to embed: the child never starts the model's OpenMP threads, which a fork does not carry.
    if (r->removed != 0 || *(*c)->Count() != 6) ::_exit(13);
    const bool named = std::any_of(r->warnings.begin(), r->warnings.end(), [&](const std::string& w) {
      return w.find("cannot read folder " + root_ + "/locked") != std::string::npos &&
             w.find("kept as they were") != std::string::npos;
    });
    ::_exit(named ? 0 : 14);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  ::chmod((root_ + "/locked").c_str(), 0755);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0)
      << "10: cannot drop root, 11: open, 12: sync, 13: images removed, 14: the folder not named";
}

}  // namespace
}  // namespace imgsearch
