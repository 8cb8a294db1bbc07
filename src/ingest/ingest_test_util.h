// The ingest tests' common ground: the tiny test model, an empty collection bound to it, a folder of
// photos to fill with distinct images, and what the collection holds.
#pragma once

#include <gtest/gtest.h>

#include <filesystem>
#include <memory>
#include <set>
#include <string>

#include "imgsearch/ingest.h"
#include "test_util.h"

namespace imgsearch::testing {

class IngestTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto m = ClipModel::Load(testing::TestModelDir());
    ASSERT_TRUE(m.ok()) << m.status().ToString();
    model_ = std::move(m).value();
    root_ = testing::MakeTempDir() + "/photos";
    std::filesystem::create_directories(root_);
    const ModelIdentity id = IdentityOf(*model_);
    auto c = OpenCollection(testing::MakeTempDir() + "/db", &id);
    ASSERT_TRUE(c.ok()) << c.status().ToString();
    collection_ = std::move(c).value();
  }

  // A distinct image per seed.
  void WriteImage(const std::string& rel, int seed) {
    Image img(40 + seed % 7, 30 + seed % 5);
    for (size_t i = 0; i < img.rgb.size(); ++i) img.rgb[i] = static_cast<uint8_t>((i * (seed + 3) + seed * 17) % 251);
    std::filesystem::create_directories(std::filesystem::path(root_ + "/" + rel).parent_path());
    ASSERT_TRUE(WritePng(img, root_ + "/" + rel).ok());
  }

  SyncReport Sync() {
    const std::vector<std::string> roots = {root_};
    auto r = SyncFolders(roots, *model_, collection_.get());
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    return r.ok() ? *r : SyncReport{};
  }

  std::set<std::string> Indexed() {
    std::set<std::string> paths;
    EXPECT_TRUE(collection_
                    ->ForEach(
                        [&](const ImageRecord& r) {
                          paths.insert(r.path.substr(root_.size() + 1));
                          return true;
                        },
                        ImageStatus::kIndexed)
                    .ok());
    return paths;
  }

  int64_t IdOf(const std::string& rel) {
    auto r = collection_->GetByPath(root_ + "/" + rel);
    return r.ok() && r->has_value() ? (*r)->id : -1;
  }

  std::unique_ptr<ClipModel> model_;
  std::unique_ptr<Collection> collection_;
  std::string root_;
};

}  // namespace imgsearch::testing
