#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sqlite3.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <map>
#include <random>
#include <set>
#include <thread>

#include "imgsearch/collection.h"
#include "store/catalog_backend.h"
#include "store/collection_meta.h"
#include "store/store_test_util.h"
#include "test_util.h"

namespace imgsearch {
namespace {

namespace fs = std::filesystem;
using store::testing::MakeImage;
using store::testing::RandomUnit;
using store::testing::TestModel;

std::unique_ptr<Collection> Open(const std::string& dir, const CollectionOptions& options = {}, int dim = 16) {
  const ModelIdentity model = TestModel(dim);
  auto c = OpenCollection(dir, &model, options);
  EXPECT_TRUE(c.ok()) << c.status().ToString();
  return c.ok() ? std::move(c).value() : nullptr;
}

std::vector<float> Axis(int dim, int i) {
  std::vector<float> v(dim, 0.0f);
  v[i] = 1.0f;
  return v;
}

TEST(Collection, UpsertSearchGetMoveRemove) {
  const std::string dir = testing::MakeTempDir() + "/db";
  auto c = Open(dir);
  ASSERT_NE(c, nullptr);
  auto ids = c->Upsert(std::vector<ImageUpsert>{MakeImage("/p/a.jpg", Axis(16, 0), "ha"),
                                                MakeImage("/p/b.jpg", Axis(16, 1), "hb"),
                                                MakeImage("/p/c.png", Axis(16, 2), "hc", "png")});
  ASSERT_TRUE(ids.ok()) << ids.status().ToString();
  ASSERT_EQ(ids->size(), 3u);

  std::vector<float> q = Axis(16, 1);
  q[0] = 0.5f;
  SearchOptions o;
  o.k = 2;
  auto hits = c->Search(q, o);
  ASSERT_TRUE(hits.ok());
  ASSERT_EQ(hits->size(), 2u);
  EXPECT_EQ((*hits)[0].path, "/p/b.jpg");
  EXPECT_EQ((*hits)[1].path, "/p/a.jpg");
  EXPECT_NEAR((*hits)[0].score, 1.0 / std::sqrt(1.25), 1e-5);
  EXPECT_EQ((*hits)[0].width, 640);

  auto rec = c->GetByPath("/p/c.png");
  ASSERT_TRUE(rec.ok() && rec->has_value());
  EXPECT_EQ((*rec)->format, "png");
  EXPECT_EQ((*rec)->id, (*ids)[2]);
  auto emb = c->GetEmbedding((*ids)[2]);
  ASSERT_TRUE(emb.ok());
  EXPECT_EQ(*emb, Axis(16, 2));

  ASSERT_TRUE(c->Move("/p/b.jpg", "/q/b2.jpg").ok());
  hits = c->Search(q, o);
  EXPECT_EQ((*hits)[0].path, "/q/b2.jpg");
  EXPECT_EQ((*hits)[0].id, (*ids)[1]);  // a rename keeps the id
  EXPECT_FALSE(c->Move("/nope.jpg", "/x.jpg").ok());
  EXPECT_FALSE(c->Move("/p/a.jpg", "/p/c.png").ok());  // target taken

  auto removed = c->Remove(std::vector<std::string>{"/q/b2.jpg", "/unknown.jpg"});
  ASSERT_TRUE(removed.ok());
  EXPECT_EQ(*removed, 1);
  hits = c->Search(q, o);
  EXPECT_EQ((*hits)[0].path, "/p/a.jpg");
  EXPECT_EQ(*c->Count(), 2);
  EXPECT_TRUE(c->CheckIntegrity().ok());
}

// Recorded folders: their real paths kept, names of any bytes kept exactly, a folder that now
// leads elsewhere refused unless accepted, and the list written before real paths were kept read.
TEST(CollectionRoots, RealPathsAreKeptAndAChangeIsRefused) {
  auto c = Open(testing::MakeTempDir() + "/db");
  ASSERT_NE(c, nullptr);
  const std::string odd = "/photos/bad\xff\xfename";
  const std::vector<CollectionRoot> first = {{"/photos/a", "/mnt/a"}, {odd, odd}};
  ASSERT_TRUE(c->AddRoots(first, RootChange::kRefuse).ok());
  auto roots = c->Roots();
  ASSERT_TRUE(roots.ok()) << roots.status().ToString();
  ASSERT_EQ(roots->size(), 2u);
  EXPECT_EQ((*roots)[0].path, "/photos/a");
  EXPECT_EQ((*roots)[0].real_path, "/mnt/a");
  EXPECT_EQ((*roots)[1].path, odd);
  EXPECT_EQ((*roots)[1].real_path, odd);

  const std::vector<CollectionRoot> swapped = {{"/photos/a", "/etc"}};
  const Status refused = c->AddRoots(swapped, RootChange::kRefuse);
  EXPECT_EQ(refused.code(), StatusCode::kPermissionDenied);
  EXPECT_NE(refused.message().find("/etc"), std::string::npos) << refused.message();
  EXPECT_NE(refused.message().find("/mnt/a"), std::string::npos) << refused.message();
  EXPECT_EQ((*c->Roots())[0].real_path, "/mnt/a");
  ASSERT_TRUE(c->AddRoots(swapped, RootChange::kAccept).ok());
  EXPECT_EQ((*c->Roots())[0].real_path, "/etc");

  auto legacy = store::ParseRoots(R"(["/old/b", "/old/a"])", "test");
  ASSERT_TRUE(legacy.ok());
  ASSERT_EQ(legacy->size(), 2u);
  EXPECT_EQ((*legacy)[0].path, "/old/b");
  EXPECT_TRUE((*legacy)[0].real_path.empty());
  bool changed = false;
  const std::vector<CollectionRoot> resolved = {{"/old/a", "/real/a"}};
  ASSERT_TRUE(store::MergeRoots(&*legacy, resolved, RootChange::kRefuse, &changed).ok());
  EXPECT_TRUE(changed);  // a legacy entry gains its real path without a refusal
  EXPECT_EQ((*legacy)[0].path, "/old/a");
  EXPECT_EQ((*legacy)[0].real_path, "/real/a");
  EXPECT_FALSE(store::ParseRoots(R"([{"real_path": "/x"}])", "test").ok());
  EXPECT_FALSE(store::ParseRoots(R"({"path": "/x"})", "test").ok());
}

TEST(Collection, IdenticalContentSharesOneVector) {
  const std::string dir = testing::MakeTempDir() + "/db";
  auto c = Open(dir, {.keep_removed = std::chrono::milliseconds(0)});
  ASSERT_TRUE(c->Upsert(std::vector<ImageUpsert>{MakeImage("/a.jpg", Axis(16, 3), "same")}).ok());
  EXPECT_TRUE(*c->HasEmbeddingFor("same"));
  EXPECT_FALSE(*c->HasEmbeddingFor("other"));
  // A copy: no embedding given, the stored one is used.
  ASSERT_TRUE(c->Upsert(std::vector<ImageUpsert>{MakeImage("/copy.jpg", {}, "same")}).ok());
  auto hits = c->Search(Axis(16, 3), SearchOptions{});
  ASSERT_EQ(hits->size(), 2u);
  EXPECT_NEAR((*hits)[1].score, 1.0, 1e-6);
  EXPECT_EQ(c->Stats()->distinct_vectors, 1);
  // Without any stored vector for the hash, an embedding is required.
  EXPECT_FALSE(c->Upsert(std::vector<ImageUpsert>{MakeImage("/new.jpg", {}, "unknown")}).ok());
  ASSERT_TRUE(c->Remove(std::vector<std::string>{"/a.jpg"}).ok());
  EXPECT_TRUE(*c->HasEmbeddingFor("same"));
  ASSERT_TRUE(c->Remove(std::vector<std::string>{"/copy.jpg"}).ok());
  EXPECT_FALSE(*c->HasEmbeddingFor("same"));
  EXPECT_EQ(c->Stats()->distinct_vectors, 0);
}

// Content no image has any more keeps its vector for the collection's grace period: the same
// content coming back under any path takes it again instead of being embedded again.
TEST(Collection, RemovedContentIsKeptForTheGracePeriod) {
  const std::string dir = testing::MakeTempDir() + "/db";
  {
    auto c = Open(dir);
    ASSERT_TRUE(c->Upsert(std::vector<ImageUpsert>{MakeImage("/a.jpg", Axis(16, 3), "kept")}).ok());
    ASSERT_TRUE(c->Remove(std::vector<std::string>{"/a.jpg"}).ok());
    auto s = c->Stats();
    EXPECT_EQ(s->indexed, 0);
    EXPECT_EQ(s->distinct_vectors, 0);
    EXPECT_EQ(s->kept_vectors, 1);
    EXPECT_EQ(s->keep_removed, kDefaultKeepRemoved);
    EXPECT_TRUE(c->Search(Axis(16, 3), SearchOptions{})->empty());  // kept is not searched
    // Back under another name, without an embedding: the kept one is taken, and is in use again.
    EXPECT_TRUE(*c->HasEmbeddingFor("kept"));
    ASSERT_TRUE(c->Upsert(std::vector<ImageUpsert>{MakeImage("/moved/a.jpg", {}, "kept")}).ok());
    s = c->Stats();
    EXPECT_EQ(s->distinct_vectors, 1);
    EXPECT_EQ(s->kept_vectors, 0);
    auto hits = c->Search(Axis(16, 3), SearchOptions{});
    ASSERT_EQ(hits->size(), 1u);
    EXPECT_NEAR((*hits)[0].score, 1.0, 1e-6);
    // Changed content releases the old vector too.
    ASSERT_TRUE(c->Upsert(std::vector<ImageUpsert>{MakeImage("/moved/a.jpg", Axis(16, 4), "edited")}).ok());
    EXPECT_EQ(c->Stats()->kept_vectors, 1);
  }
  {
    // A shorter period, stored with the collection: what was released before it is deleted at the
    // next write.
    auto c = Open(dir, {.keep_removed = std::chrono::milliseconds(50)});
    EXPECT_EQ(c->Stats()->keep_removed, std::chrono::milliseconds(50));
    std::this_thread::sleep_for(std::chrono::milliseconds(80));
    ASSERT_TRUE(c->Upsert(std::vector<ImageUpsert>{MakeImage("/b.jpg", Axis(16, 5), "other")}).ok());
    EXPECT_EQ(c->Stats()->kept_vectors, 0);
    EXPECT_FALSE(*c->HasEmbeddingFor("kept"));
    EXPECT_TRUE(c->CheckIntegrity().ok());
  }
  {
    auto c = Open(dir);  // the stored period holds for writers that do not set one
    EXPECT_EQ(c->Stats()->keep_removed, std::chrono::milliseconds(50));
    ASSERT_TRUE(c->Upsert(std::vector<ImageUpsert>{MakeImage("/d.jpg", Axis(16, 7), "fourth")}).ok());
    ASSERT_TRUE(c->Remove(std::vector<std::string>{"/d.jpg"}).ok());
    EXPECT_EQ(c->Stats()->kept_vectors, 1);
  }
  {
    auto c = Open(dir, {.keep_removed = std::chrono::milliseconds(0)});  // applies at once, no write needed
    EXPECT_EQ(c->Stats()->kept_vectors, 0);
    EXPECT_FALSE(*c->HasEmbeddingFor("fourth"));
  }
  {
    // A vector marked released while an image uses it (as a writer of an older imgsearch leaves
    // one) is never deleted; one near its deletion is not offered for reuse.
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open((dir + "/catalog.db").c_str(), &db), SQLITE_OK);
    ASSERT_EQ(sqlite3_exec(db, "UPDATE vectors SET released_at_ms = 1", nullptr, nullptr, nullptr), SQLITE_OK);
    sqlite3_close(db);
    auto c = Open(dir, {.keep_removed = std::chrono::minutes(5)});
    ASSERT_TRUE(c->Upsert(std::vector<ImageUpsert>{MakeImage("/c.jpg", Axis(16, 6), "third")}).ok());
    EXPECT_TRUE(c->CheckIntegrity().ok()) << c->CheckIntegrity().ToString();
    EXPECT_EQ(c->Search(Axis(16, 5), SearchOptions{})->front().path, "/b.jpg");
    ASSERT_TRUE(c->Remove(std::vector<std::string>{"/c.jpg"}).ok());
    EXPECT_EQ(c->Stats()->kept_vectors, 1);
    EXPECT_FALSE(*c->HasEmbeddingFor("third"));  // kept 5 minutes: within the margin of its deletion
  }
  auto negative = OpenCollection(dir, nullptr, {.keep_removed = std::chrono::milliseconds(-1)});
  ASSERT_FALSE(negative.ok());
  EXPECT_NE(negative.status().message().find("cannot be negative"), std::string::npos) << negative.status().ToString();
}

ContentText TextOf(const std::string& hash, const std::string& text) {
  ContentText t;
  t.content_hash = hash;
  t.languages = "eng";
  t.text.text = text;
  int x = 0;
  for (const std::string& w : store::QueryWords(text)) {
    t.text.words.push_back({w, x, 10, 40, 20, 90});
    x += 50;
  }
  return t;
}

std::vector<std::string> PathsOf(Collection* c, const std::vector<TextMatch>& matches) {
  std::vector<std::string> paths;
  for (const TextMatch& m : matches) paths.push_back((*c->GetById(m.id))->path);
  return paths;
}

TEST(Text, StoredPerContentSearchedByAnyPartAndGoneWithTheContent) {
  const std::string dir = testing::MakeTempDir() + "/db";
  auto c = Open(dir, {.keep_removed = std::chrono::milliseconds(0)});
  ASSERT_TRUE(c->Upsert(std::vector<ImageUpsert>{MakeImage("/p/receipt.jpg", Axis(16, 0), "receipt"),
                                                 MakeImage("/p/copy/receipt.jpg", {}, "receipt"),
                                                 MakeImage("/p/sign.png", Axis(16, 1), "sign", "png"),
                                                 MakeImage("/p/plain.jpg", Axis(16, 2), "plain")})
                  .ok());
  EXPECT_EQ(c->Stats()->texts_pending, 3);  // contents, not files
  auto pending = c->PendingTexts(10);
  ASSERT_TRUE(pending.ok());
  ASSERT_EQ(pending->size(), 3u);
  ASSERT_TRUE(c->PutTexts(std::vector<ContentText>{TextOf("receipt", "INVOICE 4471\nTotal 12.50"),
                                                   TextOf("sign", "Platform 9"), TextOf("plain", "")})
                  .ok());
  EXPECT_EQ(c->Stats()->texts_pending, 0);
  EXPECT_EQ(c->Stats()->texts_read, 3);
  EXPECT_TRUE(c->PendingTexts(10)->empty());

  // Every word, any part of it, any case; copies share their content's text.
  auto found = c->SearchText("voice 4471", {}, 10);
  ASSERT_TRUE(found.ok()) << found.status().ToString();
  EXPECT_EQ(PathsOf(c.get(), *found), (std::vector<std::string>{"/p/receipt.jpg", "/p/copy/receipt.jpg"}));
  EXPECT_EQ((*found)[0].words, (std::vector<std::string>{"INVOICE", "4471"}));
  EXPECT_FLOAT_EQ((*found)[0].score, 1.0f);
  EXPECT_TRUE(c->SearchText("invoice zebra", {}, 10)->empty());
  // A short word must appear too, but does not find images alone.
  EXPECT_EQ(PathsOf(c.get(), *c->SearchText("platform 9", {}, 10)), (std::vector<std::string>{"/p/sign.png"}));
  EXPECT_TRUE(c->SearchText("platform 8", {}, 10)->empty());
  EXPECT_TRUE(c->SearchText("9", {}, 10)->empty());
  EXPECT_TRUE(c->SearchText("  ,; ", {}, 10)->empty());
  // Quotes and FTS syntax are words like any other.
  EXPECT_TRUE(c->SearchText("\"invoice\" OR NEAR(a b) *", {}, 10).ok());
  // Filters apply.
  SearchFilter pngs;
  pngs.formats = {"png"};
  EXPECT_TRUE(c->SearchText("invoice", pngs, 10)->empty());
  SearchFilter copies;
  copies.under = "/p/copy";
  EXPECT_EQ(PathsOf(c.get(), *c->SearchText("invoice", copies, 10)), (std::vector<std::string>{"/p/copy/receipt.jpg"}));
  // The words and their boxes come back.
  auto text = c->GetText(c->GetByPath("/p/sign.png").value().value().id);
  ASSERT_TRUE(text.ok() && text->has_value());
  EXPECT_EQ((*text)->text.text, "Platform 9");
  ASSERT_EQ((*text)->text.words.size(), 2u);
  EXPECT_EQ((*text)->text.words[1].x, 50);

  // Renamed: still found; changed: its text is to be read again, the old one is not found.
  ASSERT_TRUE(c->Move("/p/sign.png", "/p/sign2.png").ok());
  EXPECT_EQ(PathsOf(c.get(), *c->SearchText("platform", {}, 10)), (std::vector<std::string>{"/p/sign2.png"}));
  ASSERT_TRUE(c->Upsert(std::vector<ImageUpsert>{MakeImage("/p/sign2.png", Axis(16, 3), "sign-edited", "png")}).ok());
  EXPECT_TRUE(c->SearchText("platform", {}, 10)->empty());
  EXPECT_EQ(c->Stats()->texts_pending, 1);
  // Deleted: gone from the text index, and the text goes with the content (kept 0 ms here).
  ASSERT_TRUE(c->Remove(std::vector<std::string>{"/p/receipt.jpg", "/p/copy/receipt.jpg"}).ok());
  EXPECT_TRUE(c->SearchText("invoice", {}, 10)->empty());
  EXPECT_EQ(c->Stats()->texts_read, 1);  // "plain"
  // A text for content that is gone is not stored.
  ASSERT_TRUE(c->PutTexts(std::vector<ContentText>{TextOf("receipt", "INVOICE")}).ok());
  EXPECT_EQ(c->Stats()->texts_read, 1);
  EXPECT_FALSE(c->PutTexts(std::vector<ContentText>{TextOf("", "x")}).ok());
  EXPECT_TRUE(c->CheckIntegrity().ok());
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open((dir + "/catalog.db").c_str(), &db), SQLITE_OK);
  EXPECT_EQ(sqlite3_exec(db, "INSERT INTO texts_fts(texts_fts) VALUES ('integrity-check')", nullptr, nullptr, nullptr),
            SQLITE_OK)
      << sqlite3_errmsg(db);
  sqlite3_close(db);

  // Read-only opens refuse to write text.
  c.reset();
  auto reader = OpenCollection(dir, nullptr, {.read_only = true});
  ASSERT_TRUE(reader.ok());
  EXPECT_FALSE((*reader)->PutTexts(std::vector<ContentText>{TextOf("plain", "x")}).ok());
}

TEST(Collection, FailedImagesAreListedNotSearched) {
  const std::string dir = testing::MakeTempDir() + "/db";
  auto c = Open(dir);
  ImageUpsert bad;
  bad.record.path = "/broken.jpg";
  bad.record.status = ImageStatus::kFailed;
  bad.record.error = "JPEG: Premature end of JPEG file";
  ASSERT_TRUE(c->Upsert(std::vector<ImageUpsert>{bad, MakeImage("/good.jpg", Axis(16, 0), "g")}).ok());
  auto hits = c->Search(Axis(16, 0), SearchOptions{});
  ASSERT_EQ(hits->size(), 1u);
  std::vector<ImageRecord> failed;
  ASSERT_TRUE(c->ForEach(
                   [&](const ImageRecord& r) {
                     failed.push_back(r);
                     return true;
                   },
                   ImageStatus::kFailed)
                  .ok());
  ASSERT_EQ(failed.size(), 1u);
  EXPECT_EQ(failed[0].error, "JPEG: Premature end of JPEG file");
  EXPECT_EQ(c->Stats()->failed, 1);
  // Fixed later: it becomes searchable.
  ASSERT_TRUE(c->Upsert(std::vector<ImageUpsert>{MakeImage("/broken.jpg", Axis(16, 1), "fixed")}).ok());
  EXPECT_EQ(c->Search(Axis(16, 1), SearchOptions{})->front().path, "/broken.jpg");
  EXPECT_EQ(c->Stats()->failed, 0);
}

TEST(Collection, RejectsBadInputWithClearErrors) {
  const std::string dir = testing::MakeTempDir() + "/db";
  auto c = Open(dir);
  ASSERT_TRUE(c->Upsert(std::vector<ImageUpsert>{MakeImage("/a.jpg", Axis(16, 0), "a")}).ok());
  auto wrong_dim = c->Search(std::vector<float>(8, 1.0f), SearchOptions{});
  EXPECT_NE(wrong_dim.status().message().find("dimensions"), std::string::npos);
  EXPECT_FALSE(c->Search(std::vector<float>(16, 0.0f), SearchOptions{}).ok());
  SearchOptions o;
  o.k = 0;
  EXPECT_NE(c->Search(Axis(16, 0), o).status().message().find("k must be"), std::string::npos);
  o.k = 5;
  o.offset = -1;
  EXPECT_FALSE(c->Search(Axis(16, 0), o).ok());
  EXPECT_FALSE(c->Upsert(std::vector<ImageUpsert>{MakeImage("/b.jpg", std::vector<float>(3, 1.0f), "b")}).ok());
  EXPECT_FALSE(c->Upsert(std::vector<ImageUpsert>{MakeImage("/c.jpg", Axis(16, 1), "")}).ok());
  EXPECT_FALSE(c->Upsert(std::vector<ImageUpsert>{MakeImage("", Axis(16, 1), "x")}).ok());
  EXPECT_FALSE(c->Upsert(std::vector<ImageUpsert>{MakeImage("/z.jpg", std::vector<float>(16, 0.0f), "z")}).ok());
  EXPECT_FALSE(c->Upsert(std::vector<ImageUpsert>{MakeImage("/n.jpg", std::vector<float>(16, NAN), "n")}).ok());
  // The same path twice in one batch: the last one wins.
  ASSERT_TRUE(c->Upsert(std::vector<ImageUpsert>{MakeImage("/t.jpg", Axis(16, 4), "t1"),
                                                 MakeImage("/t.jpg", Axis(16, 5), "t2")})
                  .ok());
  EXPECT_EQ(c->Search(Axis(16, 5), SearchOptions{})->front().path, "/t.jpg");
  ASSERT_TRUE(c->Remove(std::vector<std::string>{"/t.jpg"}).ok());
  // A failed batch writes nothing.
  EXPECT_FALSE(
      c->Upsert(std::vector<ImageUpsert>{MakeImage("/d.jpg", Axis(16, 2), "d"), MakeImage("/e.jpg", Axis(16, 3), "")})
          .ok());
  EXPECT_FALSE(c->GetByPath("/d.jpg")->has_value());
  EXPECT_EQ(*c->Count(), 1);
  EXPECT_TRUE(c->CheckIntegrity().ok());
}

TEST(Collection, ModelIsCheckedAndSchemaVersioned) {
  const std::string dir = testing::MakeTempDir() + "/db";
  { ASSERT_NE(Open(dir), nullptr); }
  const ModelIdentity other{"another", "other-model", 16};
  auto refused = OpenCollection(dir, &other);
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.status().message().find("reindex"), std::string::npos) << refused.status().ToString();
  auto any = OpenCollection(dir, nullptr);
  ASSERT_TRUE(any.ok());
  EXPECT_EQ((*any)->model().id, TestModel().id);
  any = Status::Internal("closed");  // release the lock

  // A schema newer than this build is refused, not misread.
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open((dir + "/catalog.db").c_str(), &db), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(db, "PRAGMA user_version = 99", nullptr, nullptr, nullptr), SQLITE_OK);
  sqlite3_close(db);
  auto newer = OpenCollection(dir, nullptr);
  ASSERT_FALSE(newer.ok());
  EXPECT_NE(newer.status().message().find("newer"), std::string::npos);

  EXPECT_EQ(OpenCollection(testing::MakeTempDir() + "/missing", nullptr).status().code(), StatusCode::kNotFound);
}

// A collection written before removed content was kept (schema 1) is brought up to date by a
// writer, keeping its images; a reader refuses it rather than writing.
TEST(Collection, AnOlderSchemaIsUpgradedByAWriter) {
  const std::string dir = testing::MakeTempDir() + "/db";
  {
    auto c = Open(dir);
    ASSERT_TRUE(c->Upsert(std::vector<ImageUpsert>{MakeImage("/a.jpg", Axis(16, 3), "a")}).ok());
  }
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open((dir + "/catalog.db").c_str(), &db), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(db,
                         "DROP TRIGGER vectors_removed; DROP TABLE texts_fts; DROP TABLE texts; "
                         "DROP INDEX vectors_released; ALTER TABLE vectors DROP COLUMN released_at_ms; "
                         "ALTER TABLE vectors DROP COLUMN times; PRAGMA user_version = 1",
                         nullptr, nullptr, nullptr),
            SQLITE_OK)
      << sqlite3_errmsg(db);
  sqlite3_close(db);
  auto reader = OpenCollection(dir, nullptr, {.read_only = true});
  ASSERT_FALSE(reader.ok());
  EXPECT_NE(reader.status().message().find("schema version 1"), std::string::npos) << reader.status().ToString();
  auto c = Open(dir);
  ASSERT_NE(c, nullptr);
  EXPECT_EQ(c->Stats()->schema_version, 4);
  EXPECT_EQ(c->Stats()->indexed, 1);
  ASSERT_TRUE(c->Remove(std::vector<std::string>{"/a.jpg"}).ok());
  EXPECT_EQ(c->Stats()->kept_vectors, 1);
  EXPECT_TRUE(c->CheckIntegrity().ok());
}

TEST(Collection, CorruptDatabaseGivesAClearError) {
  const std::string dir = testing::MakeTempDir() + "/db";
  fs::create_directories(dir);
  testing::WriteFile(dir + "/catalog.db", std::string(8192, 'x'));
  const ModelIdentity model = TestModel();
  auto c = OpenCollection(dir, &model);
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.status().message().find("catalog.db"), std::string::npos) << c.status().ToString();
}

TEST(Collection, OneWriterAtATime) {
  const std::string dir = testing::MakeTempDir() + "/db";
  auto first = Open(dir);
  const ModelIdentity model = TestModel();
  auto second = OpenCollection(dir, &model);
  ASSERT_FALSE(second.ok());
  EXPECT_NE(second.status().message().find("another imgsearch process"), std::string::npos);
  CollectionOptions ro;
  ro.read_only = true;
  EXPECT_TRUE(OpenCollection(dir, &model, ro).ok());
}

// A reader (a read-only open, as `serve` without --watch or `search`) beside a writer in another
// process: it follows what the writer commits, also across the writer's snapshot, which drops the
// change log the reader would have replayed; and a reader writes nothing into the folder.
TEST(Collection, AReaderFollowsTheWriterAndWritesNothing) {
  const std::string dir = testing::MakeTempDir() + "/db";
  CollectionOptions options;
  options.index.exact_below = 10;
  auto writer = Open(dir, options);
  std::mt19937 rng(5);
  std::vector<ImageUpsert> batch;
  for (int i = 0; i < 50; ++i)
    batch.push_back(MakeImage("/a/" + std::to_string(i), RandomUnit(16, &rng), "a" + std::to_string(i)));
  ASSERT_TRUE(writer->Upsert(batch).ok());
  ASSERT_TRUE(writer->Checkpoint().ok());

  options.read_only = true;
  const ModelIdentity model = TestModel();
  auto opened = OpenCollection(dir, &model, options);
  ASSERT_TRUE(opened.ok()) << opened.status().ToString();
  std::unique_ptr<Collection> reader = std::move(opened).value();
  SearchOptions o;
  o.k = 1;
  ASSERT_EQ(reader->Search(Axis(16, 0), o)->size(), 1u);

  // Waits until the reader's search finds `path` first for `query` (or gives up after 20 s).
  auto reader_finds = [&](const std::vector<float>& query, const std::string& path) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    while (std::chrono::steady_clock::now() < deadline) {
      auto hits = reader->Search(query, o);
      if (hits.ok() && !hits->empty() && hits->front().path == path) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return false;
  };
  const std::vector<float> first = RandomUnit(16, &rng), second = RandomUnit(16, &rng);
  ASSERT_TRUE(writer->Upsert(std::vector<ImageUpsert>{MakeImage("/new/1", first, "n1")}).ok());
  EXPECT_TRUE(reader_finds(first, "/new/1"));
  ASSERT_TRUE(writer->Move("/new/1", "/moved/1").ok());
  EXPECT_TRUE(reader_finds(first, "/moved/1"));
  // The writer snapshots (forgetting the log up to here), then writes on.
  ASSERT_TRUE(writer->Remove(std::vector<std::string>{"/moved/1"}).ok());
  ASSERT_TRUE(writer->Checkpoint().ok());
  ASSERT_TRUE(writer->Upsert(std::vector<ImageUpsert>{MakeImage("/new/2", second, "n2")}).ok());
  EXPECT_TRUE(reader_finds(second, "/new/2"));
  EXPECT_TRUE(reader->CheckIntegrity().ok()) << reader->CheckIntegrity().ToString();
  EXPECT_EQ(*reader->Count(), 51);
  reader.reset();

  // With the writer gone and its snapshot deleted, a reader rebuilds the index in memory only.
  writer.reset();
  fs::remove(dir + "/ann.hnsw");
  fs::remove(dir + "/ann.hnsw.meta");
  auto listing = [&] {
    std::map<std::string, std::pair<uintmax_t, fs::file_time_type>> files;
    for (const auto& e : fs::directory_iterator(dir)) {
      // SQLite's write-ahead log and its shared-memory index are every reader's to open (and make).
      if (e.path().filename() != "catalog.db-shm" && e.path().filename() != "catalog.db-wal") {
        files[e.path().filename().string()] = {e.file_size(), e.last_write_time()};
      }
    }
    return files;
  };
  const auto before = listing();
  opened = OpenCollection(dir, &model, options);
  ASSERT_TRUE(opened.ok()) << opened.status().ToString();
  reader = std::move(opened).value();
  EXPECT_EQ(reader->Search(second, o)->front().path, "/new/2");
  EXPECT_TRUE(reader->CheckIntegrity().ok());
  EXPECT_TRUE(reader->Checkpoint().ok());
  reader.reset();
  EXPECT_EQ(listing(), before);
}

// Clustered unit vectors, like real embeddings: many near neighbours, not uniform noise.
std::vector<std::vector<float>> Clustered(int n, int dim, int clusters, std::mt19937* rng) {
  std::vector<std::vector<float>> centres;
  for (int i = 0; i < clusters; ++i) centres.push_back(RandomUnit(dim, rng));
  std::normal_distribution<float> noise(0.0f, 0.35f / std::sqrt(static_cast<float>(dim)));
  std::vector<std::vector<float>> out;
  for (int i = 0; i < n; ++i) {
    std::vector<float> v = centres[(*rng)() % clusters];
    double sq = 0;
    for (float& x : v) {
      x += noise(*rng);
      sq += x * x;
    }
    for (float& x : v) x /= static_cast<float>(std::sqrt(sq));
    out.push_back(std::move(v));
  }
  return out;
}

TEST(Search, AnnAgreesWithExactAndFiltersApplyInside) {
  const std::string dir = testing::MakeTempDir() + "/db";
  CollectionOptions options;
  options.index.exact_below = 0;  // always the graph unless asked
  auto c = Open(dir, options, 32);
  std::mt19937 rng(5);
  const auto vectors = Clustered(3000, 32, 30, &rng);
  std::vector<ImageUpsert> batch;
  for (int i = 0; i < 3000; ++i) {
    ImageUpsert u = MakeImage((i % 10 == 0 ? "/rare/" : "/common/") + std::to_string(i) + ".jpg", vectors[i],
                              "h" + std::to_string(i), i % 2 ? "png" : "jpeg");
    u.record.capture_time = "20" + std::to_string(10 + i % 10) + "-06-01T12:00:00";
    batch.push_back(std::move(u));
  }
  ASSERT_TRUE(c->Upsert(batch).ok());

  int agree = 0, total = 0;
  for (int qi = 0; qi < 50; ++qi) {
    const std::vector<float> q = RandomUnit(32, &rng);
    SearchOptions o;
    o.k = 10;
    auto ann = c->Search(q, o);
    o.exact = true;
    auto exact = c->Search(q, o);
    ASSERT_TRUE(ann.ok() && exact.ok());
    std::set<int64_t> truth;
    for (const auto& h : *exact) truth.insert(h.id);
    for (const auto& h : *ann) agree += truth.count(h.id);
    total += 10;
  }
  EXPECT_GE(static_cast<double>(agree) / total, 0.95);

  // Filters: every hit passes, and a selective filter still fills k (inside, not after).
  SearchOptions o;
  o.k = 20;
  o.filter.under = "/rare";
  auto rare = c->Search(RandomUnit(32, &rng), o);
  ASSERT_EQ(rare->size(), 20u);
  for (const auto& h : *rare) EXPECT_EQ(h.path.rfind("/rare/", 0), 0u);
  o.filter = {};
  o.filter.formats = {"png"};
  o.filter.after_s = 1'420'070'400;   // 2015-01-01
  o.filter.before_s = 1'483'228'800;  // 2017-01-01
  auto dated = c->Search(RandomUnit(32, &rng), o);
  ASSERT_EQ(dated->size(), 20u);
  for (const auto& h : *dated) {
    const int i = std::stoi(h.path.substr(h.path.rfind('/') + 1));
    EXPECT_EQ(i % 2, 1);
    EXPECT_TRUE(i % 10 == 5 || i % 10 == 6) << h.path;
  }
  o.filter = {};
  o.filter.under = "/rar";  // a prefix of a folder name is not that folder
  EXPECT_TRUE(c->Search(RandomUnit(32, &rng), o)->empty());
}

TEST(Search, PaginationAndThreshold) {
  const std::string dir = testing::MakeTempDir() + "/db";
  auto c = Open(dir, {}, 32);
  std::mt19937 rng(6);
  std::vector<ImageUpsert> batch;
  for (int i = 0; i < 100; ++i)
    batch.push_back(MakeImage("/" + std::to_string(i), RandomUnit(32, &rng), std::to_string(i)));
  ASSERT_TRUE(c->Upsert(batch).ok());
  const std::vector<float> q = RandomUnit(32, &rng);
  SearchOptions o;
  o.k = 20;
  auto all = *c->Search(q, o);
  o.k = 10;
  o.offset = 10;
  auto page2 = *c->Search(q, o);
  ASSERT_EQ(page2.size(), 10u);
  for (int i = 0; i < 10; ++i) EXPECT_EQ(page2[i].id, all[10 + i].id);
  o.offset = 0;
  o.k = 100;
  o.min_score = all[4].score;
  auto above = *c->Search(q, o);
  EXPECT_EQ(above.size(), 5u);
  for (size_t i = 1; i < all.size(); ++i) EXPECT_GE(all[i - 1].score, all[i].score);
}

TEST(Snapshot, ReloadsCatchesUpAndRebuildsWhenDamaged) {
  const std::string dir = testing::MakeTempDir() + "/db";
  CollectionOptions options;
  options.index.exact_below = 10;
  std::mt19937 rng(8);
  std::vector<float> probe = RandomUnit(16, &rng);
  std::vector<SearchHit> before;
  {
    auto c = Open(dir, options);
    std::vector<ImageUpsert> batch;
    for (int i = 0; i < 200; ++i)
      batch.push_back(MakeImage("/" + std::to_string(i), RandomUnit(16, &rng), std::to_string(i)));
    ASSERT_TRUE(c->Upsert(batch).ok());
    ASSERT_TRUE(c->Checkpoint().ok());
    // Writes after the snapshot are caught up from the change log on the next open.
    ASSERT_TRUE(c->Remove(std::vector<std::string>{"/0", "/1"}).ok());
    ASSERT_TRUE(c->Upsert(std::vector<ImageUpsert>{MakeImage("/new", probe, "new")}).ok());
    // Copy the directory as a crash would leave it: snapshot older than the catalog.
    fs::copy(dir, dir + "-crashed", fs::copy_options::recursive);
    SearchOptions o;
    o.k = 5;
    before = *c->Search(probe, o);
  }
  for (const std::string& d : {dir, dir + "-crashed"}) {
    fs::remove(d + "/LOCK");
    auto c = Open(d, options);
    ASSERT_NE(c, nullptr);
    EXPECT_TRUE(c->CheckIntegrity().ok()) << c->CheckIntegrity().ToString();
    EXPECT_EQ(*c->Count(), 199);
    SearchOptions o;
    o.k = 5;
    auto after = *c->Search(probe, o);
    ASSERT_EQ(after.size(), before.size());
    EXPECT_EQ(after[0].path, "/new");
  }
  // Damaged and missing snapshots are rebuilt.
  std::string snapshot = testing::ReadFile(dir + "/ann.hnsw");
  snapshot[snapshot.size() / 2] ^= 0x5A;
  testing::WriteFile(dir + "/ann.hnsw", snapshot);
  {
    auto c = Open(dir, options);
    EXPECT_TRUE(c->CheckIntegrity().ok());
    EXPECT_EQ(c->Search(probe, SearchOptions{})->front().path, "/new");
  }
  fs::remove(dir + "/ann.hnsw");
  fs::remove(dir + "/ann.hnsw.meta");
  auto c = Open(dir, options);
  EXPECT_TRUE(c->CheckIntegrity().ok());
  EXPECT_EQ(c->Search(probe, SearchOptions{})->front().path, "/new");
}

TEST(Concurrency, SearchesDuringWritesSeeConsistentResults) {
  const std::string dir = testing::MakeTempDir() + "/db";
  CollectionOptions options;
  options.index.exact_below = 50;
  auto c = Open(dir, options, 32);
  std::atomic<bool> done{false};
  std::atomic<int> failures{0}, searches{0};
  std::thread writer([&] {
    std::mt19937 rng(9);
    for (int b = 0; b < 40; ++b) {
      std::vector<ImageUpsert> batch;
      for (int i = 0; i < 25; ++i) {
        const int n = b * 25 + i;
        batch.push_back(MakeImage("/w/" + std::to_string(n), RandomUnit(32, &rng), std::to_string(n)));
      }
      if (!c->Upsert(batch).ok()) ++failures;
      if (b % 5 == 4 && !c->Remove(std::vector<std::string>{"/w/" + std::to_string(b * 25)}).ok()) ++failures;
    }
    done = true;
  });
  std::vector<std::thread> readers;
  for (int t = 0; t < 3; ++t) {
    readers.emplace_back([&, t] {
      std::mt19937 rng(100 + t);
      while (!done) {
        SearchOptions o;
        o.k = 10;
        auto hits = c->Search(RandomUnit(32, &rng), o);
        if (!hits.ok()) {
          ++failures;
          continue;
        }
        for (size_t i = 1; i < hits->size(); ++i) {
          if ((*hits)[i - 1].score < (*hits)[i].score || (*hits)[i].path.rfind("/w/", 0) != 0) ++failures;
        }
        ++searches;
      }
    });
  }
  writer.join();
  for (auto& r : readers) r.join();
  EXPECT_EQ(failures, 0);
  EXPECT_GT(searches, 0);
  EXPECT_EQ(*c->Count(), 1000 - 8);
  EXPECT_TRUE(c->CheckIntegrity().ok());
}

// kill -9 a real writer process at random moments: the collection must open, pass the integrity
// check and hold every image whose batch was acknowledged.
TEST(Crash, KillNineAtRandomMomentsLosesNothingAcknowledged) {
  std::mt19937 rng(std::random_device{}());
  int total_acknowledged = 0, rounds_checked = 0;
  for (int round = 0; round < 6; ++round) {
    const std::string dir = testing::MakeTempDir() + "/db";
    int pipe_fds[2];
    ASSERT_EQ(::pipe(pipe_fds), 0);
    const pid_t pid = ::fork();
    if (pid == 0) {
      ::dup2(pipe_fds[1], 1);
      ::close(pipe_fds[0]);
      ::execl(IMGSEARCH_CRASH_WRITER, IMGSEARCH_CRASH_WRITER, dir.c_str(), "400", nullptr);
      ::_exit(127);
    }
    ::close(pipe_fds[1]);
    // Read acknowledgements until a random deadline, then kill.
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(50 + rng() % 1500);
    int acknowledged = 0;
    std::string buffer;
    char chunk[256];
    ::fcntl(pipe_fds[0], F_SETFL, O_NONBLOCK);
    while (std::chrono::steady_clock::now() < deadline) {
      const ssize_t n = ::read(pipe_fds[0], chunk, sizeof(chunk));
      if (n > 0) {
        buffer.append(chunk, static_cast<size_t>(n));
      } else if (n == 0) {
        break;
      } else {
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
      }
    }
    ::kill(pid, SIGKILL);
    int status = 0;
    ::waitpid(pid, &status, 0);
    for (ssize_t n; (n = ::read(pipe_fds[0], chunk, sizeof(chunk))) > 0;) buffer.append(chunk, static_cast<size_t>(n));
    ::close(pipe_fds[0]);
    for (size_t pos = 0; (pos = buffer.find("ok ", pos)) != std::string::npos; pos += 3) {
      const size_t end = buffer.find('\n', pos);
      if (end == std::string::npos) break;  // a line cut by the kill was not acknowledged
      acknowledged = std::stoi(buffer.substr(pos + 3, end - pos - 3));
    }
    total_acknowledged += acknowledged;
    std::printf("round %d: killed after %d acknowledged images\n", round, acknowledged);
    if (!fs::exists(dir + "/catalog.db")) continue;  // killed before it created anything
    ++rounds_checked;
    CollectionOptions options;
    options.index.exact_below = 100;
    auto c = Open(dir, options, 32);
    ASSERT_NE(c, nullptr);
    EXPECT_TRUE(c->CheckIntegrity().ok()) << c->CheckIntegrity().ToString();
    const int64_t count = *c->Count();
    EXPECT_GE(count, acknowledged) << "round " << round;
    for (int i = 0; i < acknowledged; i += 37) {
      EXPECT_TRUE(c->GetByPath("/photos/img" + std::to_string(i) + ".jpg")->has_value()) << i;
    }
    // Search sees exactly what the catalog holds.
    SearchOptions o;
    o.k = 5;
    o.exact = true;
    EXPECT_EQ(c->Search(RandomUnit(32, &rng), o)->size(), static_cast<size_t>(std::min<int64_t>(5, count)));
  }
  EXPECT_GT(total_acknowledged, 0) << "the writer never got going: the test checked nothing";
  EXPECT_GT(rounds_checked, 3);
}

}  // namespace
}  // namespace imgsearch

namespace imgsearch {
namespace {

// Scores are exact cosines for any dimension (the SIMD kernel's tail included).
TEST(Search, ScoresAreCosinesAtOddDimensions) {
  for (int dim : {3, 8, 37, 515}) {
    const std::string dir = testing::MakeTempDir() + "/db";
    const ModelIdentity model = TestModel(dim);
    auto c = OpenCollection(dir, &model);
    ASSERT_TRUE(c.ok());
    std::mt19937 rng(dim);
    std::vector<std::vector<float>> vs;
    std::vector<ImageUpsert> batch;
    for (int i = 0; i < 20; ++i) {
      vs.push_back(RandomUnit(dim, &rng));
      batch.push_back(MakeImage("/" + std::to_string(i), vs.back(), std::to_string(i)));
    }
    ASSERT_TRUE((*c)->Upsert(batch).ok());
    const std::vector<float> q = RandomUnit(dim, &rng);
    SearchOptions o;
    o.k = 20;
    auto hits = (*c)->Search(q, o);
    ASSERT_EQ(hits->size(), 20u);
    for (const SearchHit& h : *hits) {
      const auto& v = vs[std::stoi(h.path.substr(1))];
      double dot = 0;
      for (int i = 0; i < dim; ++i) dot += double(q[i]) * v[i];
      EXPECT_NEAR(h.score, dot, 1e-5) << "dim " << dim;
    }
  }
}

}  // namespace
}  // namespace imgsearch

namespace imgsearch {
namespace {

// A video of `frames` frames, frame f embedded as `vectors[f]`, sampled every 2 s.
ImageUpsert MakeVideo(const std::string& path, const std::vector<std::vector<float>>& vectors,
                      const std::string& hash) {
  ImageUpsert u = MakeImage(path, {}, hash, "mp4");
  for (size_t f = 0; f < vectors.size(); ++f) {
    u.embedding.insert(u.embedding.end(), vectors[f].begin(), vectors[f].end());
    u.record.frame_times.push_back(2.0f * static_cast<float>(f));
  }
  return u;
}

// A video is one item with a vector per frame: found once, at its best frame, with its other
// matching moments; the same through the graph, a snapshot, a copy and a shorter new version.
TEST(Video, OneHitAtItsBestMomentWithTheOthers) {
  for (const int exact_below : {20'000, 4}) {
    SCOPED_TRACE("exact_below " + std::to_string(exact_below));
    const std::string dir = testing::MakeTempDir() + "/db";
    CollectionOptions options;
    options.index.exact_below = exact_below;
    std::vector<float> near3 = Axis(16, 3);
    near3[4] = 0.3f;
    {
      auto c = Open(dir, options);
      ASSERT_NE(c, nullptr);
      std::mt19937 rng(3);
      std::vector<ImageUpsert> batch;
      for (int i = 0; i < 12; ++i)
        batch.push_back(MakeImage("/p/" + std::to_string(i), RandomUnit(16, &rng), "i" + std::to_string(i)));
      batch.push_back(MakeVideo("/p/clip.mp4", {Axis(16, 0), Axis(16, 1), Axis(16, 3), near3}, "v1"));
      batch.push_back(MakeImage("/p/three.jpg", Axis(16, 3), "three"));
      ASSERT_TRUE(c->Upsert(batch).ok());
      ASSERT_TRUE(c->Checkpoint().ok());
    }
    fs::remove(dir + "/LOCK");
    auto c = Open(dir, options);  // from the snapshot
    ASSERT_NE(c, nullptr);
    EXPECT_TRUE(c->CheckIntegrity().ok()) << c->CheckIntegrity().ToString();
    SearchOptions o;
    o.k = 3;
    o.exact = exact_below > 100;
    auto hits = c->Search(Axis(16, 3), o);
    ASSERT_TRUE(hits.ok()) << hits.status().ToString();
    ASSERT_EQ(hits->size(), 3u);
    const SearchHit& video = (*hits)[0].path == "/p/clip.mp4" ? (*hits)[0] : (*hits)[1];
    EXPECT_EQ(video.path, "/p/clip.mp4");
    EXPECT_NEAR(video.score, 1.0f, 1e-5);
    ASSERT_TRUE(video.time_s.has_value());
    EXPECT_EQ(*video.time_s, 4.0);
    ASSERT_GE(video.moments.size(), 1u);
    EXPECT_EQ(video.moments[0].time_s, 6.0);  // near3, the next best frame
    EXPECT_NEAR(video.moments[0].score, 1 / std::sqrt(1.09f), 1e-5);
    int clips = 0;
    for (const SearchHit& h : *hits) clips += h.path == "/p/clip.mp4";
    EXPECT_EQ(clips, 1);  // one hit however many frames match
    for (const SearchHit& h : *hits) {
      if (h.path != "/p/clip.mp4") {
        EXPECT_FALSE(h.time_s.has_value());
      }
    }

    auto rec = c->GetByPath("/p/clip.mp4");
    ASSERT_TRUE(rec.ok() && rec->has_value());
    EXPECT_EQ((*rec)->frame_times, (std::vector<float>{0, 2, 4, 6}));
    EXPECT_EQ(*c->GetEmbedding((*rec)->id, 2.9), Axis(16, 1));  // the frame nearest 2.9 s: 2 s
    auto whole = c->GetEmbedding((*rec)->id);                   // the mean of the frames, normalised
    ASSERT_TRUE(whole.ok());
    EXPECT_NEAR((*whole)[0], (*whole)[1], 1e-6);
    EXPECT_GT((*whole)[3], (*whole)[0]);
    EXPECT_EQ(c->GetVectors((*rec)->id)->size(), 4u * 16);

    // A copy shares the vectors and their times.
    ASSERT_TRUE(c->Upsert(std::vector<ImageUpsert>{MakeImage("/p/copy.mp4", {}, "v1", "mp4")}).ok());
    EXPECT_EQ((*c->GetByPath("/p/copy.mp4"))->frame_times.size(), 4u);
    // A new version with fewer frames leaves none of the old ones behind.
    ASSERT_TRUE(c->Upsert(std::vector<ImageUpsert>{MakeVideo("/p/clip.mp4", {Axis(16, 5)}, "v2")}).ok());
    o.k = 20;
    hits = c->Search(Axis(16, 5), o);
    ASSERT_TRUE(hits.ok());
    EXPECT_EQ((*hits)[0].path, "/p/clip.mp4");
    EXPECT_EQ(*(*hits)[0].time_s, 0.0);
    EXPECT_TRUE((*hits)[0].moments.empty());
    hits = c->Search(Axis(16, 1), o);
    for (const SearchHit& h : *hits) {
      if (h.path == "/p/clip.mp4") {
        EXPECT_LT(h.score, 0.5f);
      } else if (h.path == "/p/copy.mp4") {
        EXPECT_NEAR(h.score, 1.0f, 1e-5);
      }
    }
    EXPECT_TRUE(c->CheckIntegrity().ok()) << c->CheckIntegrity().ToString();
    ASSERT_TRUE(c->Remove(std::vector<std::string>{"/p/copy.mp4"}).ok());
    EXPECT_TRUE(c->CheckIntegrity().ok());
  }
}

// A video's text is read from its frames: its job names their times, its words keep theirs, and a
// search by words finds it at the frame showing the most of them.
TEST(Video, TextFromItsFramesFindsItAtTheirMoment) {
  auto c = Open(testing::MakeTempDir() + "/db");
  ASSERT_NE(c, nullptr);
  ASSERT_TRUE(c->Upsert(std::vector<ImageUpsert>{
                            MakeImage("/p/sign.jpg", Axis(16, 0), "sign"),
                            MakeVideo("/p/clip.mp4", {Axis(16, 1), Axis(16, 2), Axis(16, 3), Axis(16, 4)}, "clip")})
                  .ok());
  EXPECT_EQ(c->Stats()->texts_pending, 2);
  auto pending = c->PendingTexts(10);
  ASSERT_TRUE(pending.ok());
  ASSERT_EQ(pending->size(), 2u);
  for (const TextJob& job : *pending) {
    const std::vector<float> times = job.path == "/p/clip.mp4" ? std::vector<float>{0, 2, 4, 6} : std::vector<float>();
    EXPECT_EQ(job.frame_times, times) << job.path;
  }
  ContentText clip;
  clip.content_hash = "clip";
  clip.languages = "eng";
  clip.text.text = "EXIT\nGATE 12\nEXIT GATE";
  for (const auto& [word, time] :
       std::vector<std::pair<std::string, double>>{{"EXIT", 2}, {"GATE", 4}, {"12", 4}, {"EXIT", 6}, {"GATE", 6}}) {
    clip.text.words.push_back({word, 10, 10, 40, 20, 90, time});
  }
  ASSERT_TRUE(c->PutTexts(std::vector<ContentText>{clip, TextOf("sign", "EXIT GATE 12")}).ok());
  EXPECT_EQ(c->Stats()->texts_pending, 0);

  const int64_t clip_id = c->GetByPath("/p/clip.mp4").value().value().id;
  const int64_t sign_id = c->GetByPath("/p/sign.jpg").value().value().id;
  for (const auto& [query, time] :
       std::vector<std::pair<std::string, double>>{{"exit gate", 6}, {"gate 12", 4}, {"exit", 2}, {"gate, 12!", 4}}) {
    SCOPED_TRACE(query);
    auto found = c->SearchText(query, {}, 10);
    ASSERT_TRUE(found.ok()) << found.status().ToString();
    EXPECT_EQ(found->size(), 2u);
    EXPECT_EQ(c->TextMoment(clip_id, query).value(), time);
    EXPECT_EQ(c->TextMoment(sign_id, query).value(), std::nullopt);  // an image's words have no time
  }
  EXPECT_EQ(c->TextMoment(clip_id, "zebra").value(), std::nullopt);  // no frame shows it
  EXPECT_EQ(c->TextMoment(12345, "exit").value(), std::nullopt);

  // A stored word whose time cannot be read keeps its box; one of 8 elements (a later version's) is read.
  const RecognizedText parsed = store::TextFromJson(
      "A B C",
      R"([["A",1,2,3,4,50,2.5],["B",1,2,3,4,50,"soon"],["C",1,2,3,4,50,-1],["D",1,2,3,4,50,1.0,"x"],["E",1]])");
  ASSERT_EQ(parsed.words.size(), 4u);
  EXPECT_EQ(parsed.words[0].time_s, 2.5);
  EXPECT_FALSE(parsed.words[1].time_s.has_value());
  EXPECT_FALSE(parsed.words[2].time_s.has_value());
  EXPECT_EQ(parsed.words[3].time_s, 1.0);
  EXPECT_EQ(store::TextFromJson("x", store::WordsJson(clip.text)).words.size(), 5u);
  // The times come back with the words.
  auto text = c->GetText(c->GetByPath("/p/clip.mp4").value().value().id);
  ASSERT_TRUE(text.ok() && text->has_value());
  ASSERT_EQ((*text)->text.words.size(), 5u);
  EXPECT_EQ((*text)->text.words[2].time_s, 4.0);
  EXPECT_FALSE((*c->GetText(c->GetByPath("/p/sign.jpg").value().value().id))->text.words[0].time_s.has_value());
}

TEST(Video, MisshapenEmbeddingsAreRefused) {
  auto c = Open(testing::MakeTempDir() + "/db");
  ASSERT_NE(c, nullptr);
  ImageUpsert short_one = MakeVideo("/v.mp4", {Axis(16, 0), Axis(16, 1)}, "v");
  short_one.embedding.resize(20);
  auto st = c->Upsert(std::vector<ImageUpsert>{short_one});
  EXPECT_EQ(st.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(st.status().message().find("2 frames"), std::string::npos) << st.status().ToString();
  ImageUpsert bad_time = MakeVideo("/v.mp4", {Axis(16, 0)}, "v");
  bad_time.record.frame_times[0] = std::nanf("");
  EXPECT_EQ(c->Upsert(std::vector<ImageUpsert>{bad_time}).status().code(), StatusCode::kInvalidArgument);
  ImageUpsert zero_frame = MakeVideo("/v.mp4", {Axis(16, 0), std::vector<float>(16, 0.0f)}, "v");
  EXPECT_EQ(c->Upsert(std::vector<ImageUpsert>{zero_frame}).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(*c->Count(), 0);
}

}  // namespace
}  // namespace imgsearch
