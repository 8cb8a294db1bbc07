// The watcher in this process, over real folders with the tiny model: changes followed live, and a
// root swapped for a link neither scanned through nor emptied. Every outcome is waited for as a
// state of the watcher or the collection, never after a fixed sleep.
#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <functional>
#include <thread>

#include "ingest/ingest_test_util.h"

namespace imgsearch {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

class WatcherTest : public testing::IngestTest {
 protected:
  void Start() {
    const std::vector<std::string> roots = {root_};
    WatchOptions options;
    options.quiet_ms = 50;
    auto w = FolderWatcher::Start(roots, *model_, collection_.get(), options);
    ASSERT_TRUE(w.ok()) << w.status().ToString();
    watcher_ = std::move(w).value();
  }

  void TearDown() override {
    if (watcher_) watcher_->Stop();
  }

  // Waits (up to a minute) until `done` holds with the watcher idle.
  bool WaitFor(const std::function<bool()>& done) {
    const auto deadline = Clock::now() + std::chrono::seconds(60);
    while (Clock::now() < deadline) {
      if (watcher_->Idle() && done()) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return false;
  }

  std::unique_ptr<FolderWatcher> watcher_;
};

TEST_F(WatcherTest, FollowsNewRenamedAndDeletedFiles) {
  WriteImage("a.png", 1);
  Start();
  ASSERT_TRUE(WaitFor([&] { return Indexed() == std::set<std::string>{"a.png"}; })) << Indexed().size();
  const int64_t id = IdOf("a.png");
  WriteImage("sub/b.png", 2);
  ASSERT_TRUE(WaitFor([&] { return Indexed() == std::set<std::string>{"a.png", "sub/b.png"}; }));
  fs::rename(root_ + "/a.png", root_ + "/c.png");
  ASSERT_TRUE(WaitFor([&] { return Indexed() == std::set<std::string>{"c.png", "sub/b.png"}; }));
  EXPECT_EQ(IdOf("c.png"), id) << "a rename keeps the image's row and embedding";
  fs::remove(root_ + "/sub/b.png");
  ASSERT_TRUE(WaitFor([&] { return Indexed() == std::set<std::string>{"c.png"}; }));
  const WatchStats s = watcher_->Stats();
  EXPECT_EQ(s.totals.moved, 1);
  EXPECT_EQ(s.totals.removed, 1);
  EXPECT_EQ(s.roots, std::vector<std::string>{root_});
}

TEST_F(WatcherTest, ARootSwappedForALinkIsNotScannedNorEmptied) {
  WriteImage("a.png", 1);
  WriteImage("b.png", 2);
  Start();
  ASSERT_TRUE(WaitFor([&] { return Indexed().size() == 2; }));
  const std::string outside = testing::MakeTempDir();
  fs::create_directories(outside);
  fs::rename(root_, root_ + ".old");
  fs::create_directory_symlink(outside, root_);
  // Files behind the link, one of them with an indexed image's name.
  const std::string saved = root_;
  root_ = outside;
  WriteImage("a.png", 3);
  WriteImage("secret.png", 4);
  root_ = saved;
  const int64_t rescans = watcher_->Stats().rescans;
  ASSERT_TRUE(watcher_->Rescan().ok());
  ASSERT_TRUE(WaitFor([&] { return watcher_->Stats().rescans > rescans; }));
  EXPECT_EQ(Indexed(), (std::set<std::string>{"a.png", "b.png"})) << "nothing added through the link, nothing dropped";
  // The status says why the folder is not scanned, and that its images are offline.
  const std::vector<UnavailableFolder> unavailable = watcher_->Stats().unavailable;
  ASSERT_EQ(unavailable.size(), 1u);
  EXPECT_EQ(unavailable[0].path, root_);
  EXPECT_NE(unavailable[0].reason.find("now leads to"), std::string::npos) << unavailable[0].reason;
}

}  // namespace
}  // namespace imgsearch
