// The Searcher in one process with the tiny test model: concurrent searches give what each gives
// alone, "more like this" leaves the item out and pages continue one ranking, and the errors a bad
// term gets.
#include <gtest/gtest.h>

#include <sys/stat.h>

#include <algorithm>
#include <random>
#include <set>
#include <thread>

#include "imgsearch/search.h"
#include "store/store_test_util.h"
#include "test_util.h"

namespace imgsearch {
namespace {

using store::testing::MakeImage;
using store::testing::RandomUnit;

class SearcherTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto model = ClipModel::Load(testing::TestModelDir());
    ASSERT_TRUE(model.ok()) << model.status().ToString();
    model_ = std::move(model).value();
    identity_ = ModelIdentity{"searcher-test", "tiny", model_->embedding_dim()};
    auto collection = OpenCollection(testing::MakeTempDir() + "/db", &identity_);
    ASSERT_TRUE(collection.ok()) << collection.status().ToString();
    collection_ = std::move(collection).value();
    std::mt19937 rng(3);
    std::vector<ImageUpsert> batch;
    for (int i = 0; i < 40; ++i) {
      batch.push_back(
          MakeImage("/p/" + std::to_string(i) + ".jpg", RandomUnit(identity_.dim, &rng), "hash" + std::to_string(i)));
    }
    ImageUpsert failed = MakeImage("/p/broken.jpg", {}, "");
    failed.record.status = ImageStatus::kFailed;
    failed.record.error = "not an image";
    batch.push_back(failed);
    auto ids = collection_->Upsert(batch);
    ASSERT_TRUE(ids.ok()) << ids.status().ToString();
    ids_ = *ids;
  }

  static SearchRequest Text(const std::string& text, int k = 10) {
    SearchRequest r;
    r.terms.push_back(SearchTerm{.kind = SearchTerm::Kind::kText, .text = text});
    r.options.k = k;
    return r;
  }

  std::unique_ptr<ClipModel> model_;
  ModelIdentity identity_;
  std::unique_ptr<Collection> collection_;
  std::vector<int64_t> ids_;
};

TEST_F(SearcherTest, ConcurrentSearchesEqualTheirAnswersAlone) {
  std::vector<std::string> texts;
  for (int i = 0; i < 24; ++i) texts.push_back("query number " + std::to_string(i % 12));  // repeats hit the cache
  std::vector<std::vector<SearchHit>> alone;
  {
    Searcher searcher(model_.get(), collection_.get());
    for (const std::string& t : texts) {
      auto r = searcher.Search(Text(t));
      ASSERT_TRUE(r.ok()) << r.status().ToString();
      alone.push_back(r->hits);
    }
  }
  Searcher searcher(model_.get(), collection_.get(), SearcherOptions{.max_text_batch = 8});
  std::vector<std::vector<SearchHit>> together(texts.size());
  std::vector<std::thread> threads;
  for (size_t i = 0; i < texts.size(); ++i) {
    threads.emplace_back([&, i] {
      auto r = searcher.Search(Text(texts[i]));
      if (r.ok()) together[i] = r->hits;
    });
  }
  for (std::thread& t : threads) t.join();
  for (size_t i = 0; i < texts.size(); ++i) {
    ASSERT_EQ(together[i].size(), alone[i].size()) << i;
    for (size_t j = 0; j < alone[i].size(); ++j) {
      EXPECT_EQ(together[i][j].id, alone[i][j].id) << i << "," << j;
      EXPECT_NEAR(together[i][j].score, alone[i][j].score, 1e-5) << i << "," << j;
    }
  }
  const SearcherStats stats = searcher.Stats();
  EXPECT_EQ(stats.texts, 24);
  EXPECT_LE(stats.text_batches + stats.cache_hits, 24);
}

TEST_F(SearcherTest, MoreLikeThisLeavesTheItemOutAndPagesContinue) {
  Searcher searcher(nullptr, collection_.get());  // stored items need no model
  SearchRequest like;
  like.terms.push_back(SearchTerm{.kind = SearchTerm::Kind::kItem, .id = ids_[5]});
  like.options.k = 9;
  auto all = searcher.Search(like);
  ASSERT_TRUE(all.ok()) << all.status().ToString();
  ASSERT_EQ(all->hits.size(), 9u);
  for (const SearchHit& h : all->hits) EXPECT_NE(h.id, ids_[5]);
  like.options.k = 3;
  like.options.offset = 3;
  auto page = searcher.Search(like);
  ASSERT_TRUE(page.ok());
  ASSERT_EQ(page->hits.size(), 3u);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(page->hits[i].id, all->hits[3 + i].id);
  // With another term, or negative, the item is an ordinary term: it may rank itself.
  like.terms[0].weight = 2.0f;
  like.terms.push_back(SearchTerm{.kind = SearchTerm::Kind::kItem, .id = ids_[6], .weight = 0.1f});
  like.options.offset = 0;
  auto mixed = searcher.Search(like);
  ASSERT_TRUE(mixed.ok());
  EXPECT_EQ(mixed->hits[0].id, ids_[5]);
}

TEST_F(SearcherTest, WordsShownAreFusedWithTheRankingAndPagesFollowOneOrder) {
  // Half the images show "sale", every third "exit", image 7 both and "door 7".
  std::vector<ContentText> texts;
  for (int i = 0; i < 40; ++i) {
    ContentText t;
    t.content_hash = "hash" + std::to_string(i);
    t.languages = "eng";
    if (i % 2 == 0) t.text.text += "SALE ";
    if (i % 3 == 0) t.text.text += "EXIT ";
    if (i == 7) t.text.text += "SALE EXIT door 7";
    texts.push_back(t);
  }
  ASSERT_TRUE(collection_->PutTexts(texts).ok());
  Searcher searcher(model_.get(), collection_.get());
  auto contains = [](const std::string& words, float weight = 1) {
    return SearchTerm{.kind = SearchTerm::Kind::kContains, .text = words, .weight = weight};
  };

  // Words alone: the images showing all of them, each saying which matched.
  SearchRequest only;
  only.terms = {contains("door 7")};
  auto door = searcher.Search(only);
  ASSERT_TRUE(door.ok()) << door.status().ToString();
  ASSERT_EQ(door->hits.size(), 1u);
  EXPECT_EQ(door->hits[0].id, ids_[7]);
  EXPECT_EQ(door->hits[0].words, (std::vector<std::string>{"door", "7"}));

  // Fused: every page is a slice of one order, whatever its size.
  SearchRequest fused = Text("a photo", 40);
  fused.terms.push_back(contains("sale"));
  auto all = searcher.Search(fused);
  ASSERT_TRUE(all.ok()) << all.status().ToString();
  ASSERT_EQ(all->hits.size(), 40u);
  std::set<int64_t> distinct;
  for (const SearchHit& h : all->hits) distinct.insert(h.id);
  EXPECT_EQ(distinct.size(), 40u);
  // Showing the words lifts an image: the first is one of them.
  EXPECT_FALSE(all->hits[0].words.empty());
  for (int offset : {0, 7, 30}) {
    fused.options.k = 7;
    fused.options.offset = offset;
    auto page = searcher.Search(fused);
    ASSERT_TRUE(page.ok());
    for (size_t i = 0; i < page->hits.size(); ++i) EXPECT_EQ(page->hits[i].id, all->hits[offset + i].id) << offset;
  }

  // A negative contains term leaves out every image showing the words, and the pages stay full.
  SearchRequest without = Text("a photo", 10);
  without.terms.push_back(contains("exit", -1));
  auto rest = searcher.Search(without);
  ASSERT_TRUE(rest.ok()) << rest.status().ToString();
  ASSERT_EQ(rest->hits.size(), 10u);
  for (const SearchHit& h : rest->hits) {
    const auto at = std::find(ids_.begin(), ids_.end(), h.id) - ids_.begin();
    EXPECT_NE(at % 3, 0) << at;
    EXPECT_NE(at, 7);
  }

  // More like an image, showing words: the image itself stays out.
  SearchRequest like;
  like.terms = {SearchTerm{.kind = SearchTerm::Kind::kItem, .id = ids_[4]}, contains("sale")};
  auto similar = searcher.Search(like);
  ASSERT_TRUE(similar.ok()) << similar.status().ToString();
  for (const SearchHit& h : similar->hits) EXPECT_NE(h.id, ids_[4]);
}

TEST_F(SearcherTest, BadTermsGetClearErrors) {
  Searcher without_model(nullptr, collection_.get());
  auto needs_model = without_model.Search(Text("a dog"));
  ASSERT_FALSE(needs_model.ok());
  EXPECT_NE(needs_model.status().message().find("need a model"), std::string::npos);

  Searcher searcher(model_.get(), collection_.get());
  SearchRequest missing;
  missing.terms.push_back(SearchTerm{.kind = SearchTerm::Kind::kItem, .id = 999999});
  EXPECT_EQ(searcher.Search(missing).status().code(), StatusCode::kNotFound);

  SearchRequest failed;
  failed.terms.push_back(SearchTerm{.kind = SearchTerm::Kind::kItem, .id = ids_.back()});
  auto f = searcher.Search(failed);
  ASSERT_FALSE(f.ok());
  EXPECT_NE(f.status().message().find("could not be read when indexed (not an image)"), std::string::npos)
      << f.status().message();

  SearchRequest cancel = Text("x");
  cancel.terms.push_back(SearchTerm{.kind = SearchTerm::Kind::kText, .text = "x", .weight = -1.0f});
  auto c = searcher.Search(cancel);
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.status().message().find("cancel out"), std::string::npos);

  SearchRequest bad_image;
  bad_image.terms.push_back(SearchTerm{.kind = SearchTerm::Kind::kImage, .image = {1, 2, 3}});
  auto b = searcher.Search(bad_image);
  ASSERT_FALSE(b.ok());
  EXPECT_EQ(b.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(b.status().message().find("the uploaded image cannot be used"), std::string::npos);

  // An image file that is a FIFO is refused at once rather than waited on.
  const std::string fifo = testing::MakeTempDir() + "/pipe.jpg";
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0644), 0);
  SearchRequest from_fifo;
  from_fifo.terms.push_back(SearchTerm{.kind = SearchTerm::Kind::kImageFile, .path = fifo});
  auto p = searcher.Search(from_fifo);
  ASSERT_FALSE(p.ok());
  EXPECT_NE(p.status().message().find("not a regular file"), std::string::npos) << p.status().message();
}

}  // namespace
}  // namespace imgsearch
