// `imgsearch watch` as users run it: the real binary, real files, the tiny model. Every test ends by
// comparing the collection's exact content (paths, states, ids where they must survive) with the
// folder.
#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <map>
#include <thread>

#include "imgsearch/collection.h"
#include "imgsearch/image.h"
#include "test_util.h"

namespace imgsearch {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;
using testing::ImgsearchBin;
using testing::Process;
using testing::TestModelDir;

// Relative path → "indexed" or "failed".
using Content = std::map<std::string, std::string>;

std::string PngBytes(int seed) {
  Image img(40 + seed % 7, 30 + seed % 5);
  for (size_t i = 0; i < img.rgb.size(); ++i) img.rgb[i] = static_cast<uint8_t>((i * (seed + 3) + seed * 17) % 251);
  const std::string tmp = testing::MakeTempDir() + "/x.png";
  EXPECT_TRUE(WritePng(img, tmp).ok());
  return testing::ReadFile(tmp);
}

std::string Describe(const Content& c) {
  std::string s;
  for (const auto& [p, st] : c) s += "  " + p + " " + st + "\n";
  return s.empty() ? "  (nothing)\n" : s;
}

class WatchTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const std::string tmp = testing::MakeTempDir();
    root_ = tmp + "/photos";
    outside_ = tmp + "/outside";
    db_ = tmp + "/db";
    fs::create_directories(root_);
    fs::create_directories(outside_);
  }

  void TearDown() override {
    if (watch_ && watch_->Running()) StopWatch();
  }

  void StartWatch(std::vector<std::string> extra = {}) {
    std::vector<std::string> argv = {ImgsearchBin(), "watch",      "--db", db_,  "--model",
                                     TestModelDir(), "--quiet-ms", "150",  root_};
    argv.insert(argv.end(), extra.begin(), extra.end());
    watch_ = std::make_unique<Process>(argv);
    // Once the start-up reconciliation is over, every later change is the watcher's to see.
    ASSERT_TRUE(watch_->WaitForOutput("initial scan done", 120)) << watch_->Out() << watch_->Err();
  }

  void StopWatch() {
    watch_->Signal(SIGTERM);
    EXPECT_EQ(watch_->Wait(), 0) << watch_->Out() << watch_->Err();
  }

  void Write(const std::string& rel, int seed) { WriteBytes(rel, PngBytes(seed)); }
  void WriteBytes(const std::string& rel, const std::string& bytes) {
    const fs::path p = fs::path(root_) / rel;
    fs::create_directories(p.parent_path());
    testing::WriteFile(p.string(), bytes);
  }

  // The collection as a reader sees it while the watcher writes.
  Content Listed(std::map<std::string, int64_t>* ids = nullptr) {
    Content c;
    auto col = OpenCollection(db_, nullptr, CollectionOptions{.read_only = true, .create_if_missing = false});
    if (!col.ok()) return c;
    EXPECT_TRUE((*col)
                    ->ForEach([&](const ImageRecord& r) {
                      const std::string rel = r.path.substr(root_.size() + 1);
                      c[rel] = ImageStatusName(r.status);
                      if (ids) (*ids)[rel] = r.id;
                      return true;
                    })
                    .ok());
    return c;
  }

  // Waits until the collection holds exactly `want`.
  void ExpectConverges(const Content& want, double timeout_s = 60) {
    const auto deadline = Clock::now() + std::chrono::duration<double>(timeout_s);
    Content got;
    while (Clock::now() < deadline) {
      got = Listed();
      if (got == want) return;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    ADD_FAILURE() << "collection never matched the folder.\nwanted:\n"
                  << Describe(want) << "got:\n"
                  << Describe(got) << "watch output:\n"
                  << (watch_ ? watch_->Out() + watch_->Err() : "");
  }

  Content AllIndexed(int n, const std::string& prefix = "") {
    Content c;
    for (int i = 0; i < n; ++i) c[prefix + "img" + std::to_string(i) + ".png"] = "indexed";
    return c;
  }

  std::string root_, outside_, db_;
  std::unique_ptr<Process> watch_;
};

TEST_F(WatchTest, AddModifyDeleteAndRename) {
  Write("a.png", 1);
  StartWatch();
  ExpectConverges({{"a.png", "indexed"}});  // the start-up reconciliation

  Write("b.png", 2);
  Write("sub/c.png", 3);
  ExpectConverges({{"a.png", "indexed"}, {"b.png", "indexed"}, {"sub/c.png", "indexed"}});
  std::map<std::string, int64_t> ids;
  Listed(&ids);

  // Modify in place: same path and id, new content (a new embedding, checked by its hash below).
  auto before = OpenCollection(db_, nullptr, CollectionOptions{.read_only = true, .create_if_missing = false});
  ASSERT_TRUE(before.ok());
  const std::string old_hash = (*(*before)->GetByPath(root_ + "/a.png"))->content_hash;
  before = Status::Internal("closed");
  Write("a.png", 4);
  const auto deadline = Clock::now() + std::chrono::seconds(30);
  std::string new_hash = old_hash;
  while (new_hash == old_hash && Clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    auto c = OpenCollection(db_, nullptr, CollectionOptions{.read_only = true, .create_if_missing = false});
    new_hash = (*(*c)->GetByPath(root_ + "/a.png"))->content_hash;
  }
  EXPECT_NE(new_hash, old_hash);

  // Rename a file and a folder: ids survive (moved, not re-added).
  fs::rename(root_ + "/b.png", root_ + "/b2.png");
  fs::rename(root_ + "/sub", root_ + "/sub2");
  ExpectConverges({{"a.png", "indexed"}, {"b2.png", "indexed"}, {"sub2/c.png", "indexed"}});
  std::map<std::string, int64_t> after;
  Listed(&after);
  EXPECT_EQ(after["a.png"], ids["a.png"]);
  EXPECT_EQ(after["b2.png"], ids["b.png"]);
  EXPECT_EQ(after["sub2/c.png"], ids["sub/c.png"]);

  // New folders are watched too, however deep, and files already in them when they arrive count.
  fs::create_directories(root_ + "/x/y/z");
  Write("x/y/z/d.png", 5);
  ExpectConverges({{"a.png", "indexed"}, {"b2.png", "indexed"}, {"sub2/c.png", "indexed"}, {"x/y/z/d.png", "indexed"}});
  Write("x/y/z/e.png", 6);  // after the watch on z is in place

  fs::remove(root_ + "/a.png");
  fs::remove_all(root_ + "/sub2");
  ExpectConverges({{"b2.png", "indexed"}, {"x/y/z/d.png", "indexed"}, {"x/y/z/e.png", "indexed"}});
  StopWatch();
  auto c = OpenCollection(db_, nullptr, CollectionOptions{.read_only = true, .create_if_missing = false});
  ASSERT_TRUE(c.ok());
  EXPECT_TRUE((*c)->CheckIntegrity().ok());
}

TEST_F(WatchTest, MovesInAndOutOfTheTree) {
  testing::WriteFile(outside_ + "/in.png", PngBytes(10));
  fs::create_directories(outside_ + "/album");
  testing::WriteFile(outside_ + "/album/p.png", PngBytes(11));
  Write("out.png", 12);
  Write("folder/q.png", 13);
  StartWatch();
  ExpectConverges({{"out.png", "indexed"}, {"folder/q.png", "indexed"}});
  fs::rename(outside_ + "/in.png", root_ + "/in.png");
  fs::rename(outside_ + "/album", root_ + "/album");
  fs::rename(root_ + "/out.png", outside_ + "/out.png");
  fs::rename(root_ + "/folder", outside_ + "/folder");
  ExpectConverges({{"in.png", "indexed"}, {"album/p.png", "indexed"}});
  // The folder moved out is no longer watched: changes in it are not ours.
  testing::WriteFile(outside_ + "/folder/r.png", PngBytes(14));
  Write("late.png", 15);
  ExpectConverges({{"in.png", "indexed"}, {"album/p.png", "indexed"}, {"late.png", "indexed"}});
}

TEST_F(WatchTest, SlowPartialWriteIsTakenOnceComplete) {
  StartWatch();
  const std::string bytes = PngBytes(20);
  {
    std::ofstream f(root_ + "/slow.png", std::ios::binary);
    f.write(bytes.data(), static_cast<std::streamsize>(bytes.size() / 2));
    f.flush();
    std::this_thread::sleep_for(std::chrono::milliseconds(1500));  // ten quiet times with the file open
    EXPECT_EQ(Listed(), Content{});                                // not read half-written
    f.write(bytes.data() + bytes.size() / 2, static_cast<std::streamsize>(bytes.size() - bytes.size() / 2));
  }
  ExpectConverges({{"slow.png", "indexed"}});
  StopWatch();
  EXPECT_EQ(watch_->Out().find("failed:"), std::string::npos) << watch_->Out();
}

TEST_F(WatchTest, CorruptFileFailsWithReasonThenRecoversWhenFixed) {
  StartWatch();
  WriteBytes("broken.png", PngBytes(30).substr(0, 60));  // a truncated PNG
  WriteBytes("empty.jpg", "");
  WriteBytes("notes.txt", "not an image at all");
  ExpectConverges({{"broken.png", "failed"}, {"empty.jpg", "failed"}});
  Write("broken.png", 30);
  ExpectConverges({{"broken.png", "indexed"}, {"empty.jpg", "failed"}});
  fs::remove(root_ + "/empty.jpg");
  ExpectConverges({{"broken.png", "indexed"}});
}

TEST_F(WatchTest, ChangesMadeWhileStoppedAreReconciledAtStart) {
  for (int i = 0; i < 5; ++i) Write("img" + std::to_string(i) + ".png", 40 + i);
  StartWatch();
  ExpectConverges(AllIndexed(5));
  StopWatch();
  fs::remove(root_ + "/img0.png");
  fs::rename(root_ + "/img1.png", root_ + "/renamed.png");
  Write("img2.png", 99);  // modified
  Write("new.png", 98);
  StartWatch();
  ExpectConverges({{"renamed.png", "indexed"},
                   {"img2.png", "indexed"},
                   {"img3.png", "indexed"},
                   {"img4.png", "indexed"},
                   {"new.png", "indexed"}});
}

TEST_F(WatchTest, BurstOfImagesAllIndexed) {
  StartWatch();
  constexpr int kBurst = 1000;
  // Staged outside, then dropped in at once (as a copy or an unpacked archive would).
  fs::create_directories(outside_ + "/burst");
  for (int i = 0; i < kBurst; ++i) {
    testing::WriteFile(outside_ + "/burst/img" + std::to_string(i) + ".png", PngBytes(1000 + i));
  }
  for (int i = 0; i < kBurst; ++i) {
    const std::string name = "img" + std::to_string(i) + ".png";
    fs::rename(outside_ + "/burst/" + name, root_ + "/" + name);
  }
  ExpectConverges(AllIndexed(kBurst), 300);
  StopWatch();
  auto c = OpenCollection(db_, nullptr, CollectionOptions{.read_only = true, .create_if_missing = false});
  ASSERT_TRUE(c.ok());
  EXPECT_TRUE((*c)->CheckIntegrity().ok());
}

TEST_F(WatchTest, KillDashNineMidBurstThenRestartConverges) {
  StartWatch();
  constexpr int kBurst = 1000;
  fs::create_directories(outside_ + "/burst");
  for (int i = 0; i < kBurst; ++i) {
    testing::WriteFile(outside_ + "/burst/img" + std::to_string(i) + ".png", PngBytes(2000 + i));
  }
  for (int i = 0; i < kBurst; ++i) {
    const std::string name = "img" + std::to_string(i) + ".png";
    fs::rename(outside_ + "/burst/" + name, root_ + "/" + name);
  }
  // Killed once the first images are in: mid-burst by state, not by a guess at the machine's speed.
  const auto first_in = Clock::now() + std::chrono::seconds(120);
  while (Listed().empty() && Clock::now() < first_in) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  watch_->Signal(SIGKILL);
  watch_->Wait();
  const size_t at_kill = Listed().size();
  EXPECT_LT(at_kill, static_cast<size_t>(kBurst)) << "the burst finished before the kill; the test proves nothing";
  // Meanwhile, the folder changes further.
  fs::remove(root_ + "/img0.png");
  fs::remove(root_ + "/img999.png");
  Content want = AllIndexed(kBurst);
  want.erase("img0.png");
  want.erase("img999.png");
  StartWatch();
  ExpectConverges(want, 300);
  StopWatch();
  auto c = OpenCollection(db_, nullptr, CollectionOptions{.read_only = true, .create_if_missing = false});
  ASSERT_TRUE(c.ok());
  EXPECT_TRUE((*c)->CheckIntegrity().ok());
}

// A watched folder that goes away (an unmounted drive looks the same) keeps its images, offline,
// and says so; when it comes back nothing is embedded again. Only --forget-missing drops them.
TEST_F(WatchTest, AWatchedFolderThatGoesAwayKeepsItsImagesUntilForgotten) {
  Write("a.png", 50);
  Write("deep/b.png", 51);
  StartWatch();
  const Content both = {{"a.png", "indexed"}, {"deep/b.png", "indexed"}};
  ExpectConverges(both);
  auto says_offline = [&] {
    const auto deadline = Clock::now() + std::chrono::seconds(30);
    while (Clock::now() < deadline) {
      if (watch_->Err().find("is missing or empty: its 2 images are kept") != std::string::npos) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return false;
  };
  fs::rename(root_, outside_ + "/photos-away");
  EXPECT_TRUE(says_offline()) << watch_->Err();
  ExpectConverges(both);
  fs::rename(outside_ + "/photos-away", root_);
  Write("c.png", 52);  // the folder is followed again
  ExpectConverges({{"a.png", "indexed"}, {"deep/b.png", "indexed"}, {"c.png", "indexed"}});
  StopWatch();
  // a and b were added once, never removed nor embedded again; c was added.
  EXPECT_NE(watch_->Out().find("stopped: 3 added, 0 updated, 0 moved, 0 removed"), std::string::npos) << watch_->Out();

  fs::remove_all(root_);
  fs::create_directories(root_);
  StartWatch({"--forget-missing"});
  ExpectConverges({});
}

TEST_F(WatchTest, PollingModeFollowsChangesWithoutInotify) {
  Write("a.png", 60);
  StartWatch({"--poll", "0.3"});
  EXPECT_NE(watch_->Out().find("polling"), std::string::npos) << watch_->Out();
  ExpectConverges({{"a.png", "indexed"}});
  Write("b.png", 61);
  fs::rename(root_ + "/a.png", root_ + "/a2.png");
  ExpectConverges({{"a2.png", "indexed"}, {"b.png", "indexed"}});
}

TEST_F(WatchTest, CleanShutdownMidBurstIsQuickAndLosesNothing) {
  StartWatch();
  constexpr int kBurst = 300;
  for (int i = 0; i < kBurst; ++i) Write("img" + std::to_string(i) + ".png", 3000 + i);
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  const auto t0 = Clock::now();
  StopWatch();
  EXPECT_LT(std::chrono::duration<double>(Clock::now() - t0).count(), 30.0);
  EXPECT_NE(watch_->Out().find("stopped:"), std::string::npos);
  StartWatch();
  ExpectConverges(AllIndexed(kBurst), 300);
}

TEST_F(WatchTest, MissingFolderIsAClearError) {
  auto r =
      testing::RunCommand({ImgsearchBin(), "watch", "--db", db_, "--model", TestModelDir(), root_ + "/does-not-exist"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("does-not-exist"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace imgsearch
