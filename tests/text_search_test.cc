// Text in images end to end: words in a real font drawn onto the golden photographs, indexed by the
// imgsearch binary with the tiny random-weight model (which cannot read), then found by the words
// through the CLI and the server, alone and fused with a text query; changed and deleted files
// update the text index.
#include <gtest/gtest.h>
#include <httplib.h>

#include <chrono>
#include <csignal>
#include <filesystem>
#include <thread>

#include <nlohmann/json.hpp>

#include "draw_text.h"
#include "imgsearch/image.h"
#include "test_util.h"

namespace imgsearch {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
using testing::ImgsearchBin;
using testing::JsonLines;
using testing::RunCommand;
using testing::TestModelDir;

class TextSearchTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto golden = testing::GoldenDir();
    if (!golden) GTEST_SKIP() << "no ../shared/golden";
    if (tools::TextFontBytes().empty()) GTEST_SKIP() << "no font at " << tools::kTextFont;
    if (!fs::exists("/usr/share/tesseract-ocr/5/tessdata/eng.traineddata")) {
      GTEST_SKIP() << "tesseract-ocr-eng is not installed (scripts/setup installs it)";
    }
    golden_ = *golden;
    dir_ = testing::MakeTempDir();
    lib_ = dir_ + "/photos";
    db_ = dir_ + "/db";
    fs::create_directories(lib_);
    // A sign on fur, a caption over a launch pad, and photos without words.
    Draw("chelsea.png", "cat.png", {{"INVOICE 4471", 200, 300, 90, {255, 255, 255}}});
    Draw("rocket.jpg", "rocket.png", {{"LAUNCH PAD 39A", 60, 60, 70, {235, 235, 235}}});
    fs::copy_file(golden_ + "/images/astronaut.png", lib_ + "/astronaut.png");
    fs::copy_file(golden_ + "/images/coffee.png", lib_ + "/coffee.png");
  }

  struct Words {
    std::string text;
    int x, y, height;
    std::array<uint8_t, 3> color;
    std::optional<std::array<uint8_t, 3>> box = std::nullopt;  // a sign's: behind the letters
  };

  // A golden photograph scaled to 2400 wide with `words` drawn on it, written as PNG to `name`.
  void Draw(const std::string& golden_name, const std::string& name, const std::vector<Words>& words) {
    DrawAt(golden_name, lib_ + "/" + name, words, 2400);
  }
  // The same, `width` wide, to `path`.
  void DrawAt(const std::string& golden_name, const std::string& path, const std::vector<Words>& words, int width) {
    auto decoded = DecodeImageFile(golden_ + "/images/" + golden_name);
    ASSERT_TRUE(decoded.ok()) << decoded.status().ToString();
    Image image = Resize(decoded->image, width, decoded->image.height * width / decoded->image.width);
    for (const Words& w : words) {
      ASSERT_TRUE(
          tools::DrawText(&image, w.text, w.x, w.y, {.pixel_height = w.height, .color = w.color, .box = w.box}));
    }
    ASSERT_TRUE(WritePng(image, path).ok());
  }

  testing::CommandResult Index(const std::string& db = "", const std::string& folder = "") {
    return RunCommand({ImgsearchBin(), "index", "--db", db.empty() ? db_ : db, "--model", TestModelDir(), "--offline",
                       folder.empty() ? lib_ : folder});
  }

  std::vector<json> Search(std::vector<std::string> args, const std::string& db = "") {
    std::vector<std::string> argv = {ImgsearchBin(), "search", "--db", db.empty() ? db_ : db, "--json"};
    argv.insert(argv.end(), args.begin(), args.end());
    const auto r = RunCommand(argv);
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return JsonLines(r.out);
  }

  std::string golden_, dir_, lib_, db_;
};

TEST_F(TextSearchTest, WordsFindTheirPhotosAloneAndFusedWithTheModel) {
  const auto indexed = Index();
  ASSERT_EQ(indexed.exit_code, 0) << indexed.out << indexed.err;
  EXPECT_NE(indexed.out.find("text read in 4 images"), std::string::npos) << indexed.out;

  // --contains alone: any part of a word, any case; the words that matched are named.
  std::vector<json> hits = Search({"--contains", "invoice 4471"});
  ASSERT_EQ(hits.size(), 1u);
  EXPECT_EQ(hits[0]["path"], lib_ + "/cat.png");
  EXPECT_EQ(hits[0]["words"], json({"INVOICE", "4471"}));
  hits = Search({"--contains", "aunch"});
  ASSERT_EQ(hits.size(), 1u);
  EXPECT_EQ(hits[0]["path"], lib_ + "/rocket.png");
  EXPECT_TRUE(Search({"--contains", "zebra"}).empty());

  // A plain query: the tiny model cannot read, the text index can; fused, the photo showing the
  // words comes first, and the rest still follow by the model's ranking.
  for (const auto& [query, path] : {std::pair{"launch pad", "/rocket.png"}, std::pair{"invoice", "/cat.png"}}) {
    hits = Search({query, "-k", "4"});
    ASSERT_EQ(hits.size(), 4u) << query;
    EXPECT_EQ(hits[0]["path"], lib_ + path) << query;
    EXPECT_TRUE(hits[0].contains("words")) << query;
    EXPECT_FALSE(hits[1].contains("words")) << query;
  }
  // Mixed with a filter: a folder without the photo finds nothing by its words.
  EXPECT_TRUE(Search({"--contains", "invoice", "--format", "jpeg"}).empty());

  // Changed and deleted files keep the text index right.
  fs::remove(lib_ + "/cat.png");
  Draw("rocket.jpg", "rocket.png", {{"GATE 12 CLOSED", 60, 60, 70, {235, 235, 235}}});
  const auto again = Index();
  ASSERT_EQ(again.exit_code, 0) << again.out << again.err;
  EXPECT_TRUE(Search({"--contains", "invoice"}).empty());
  EXPECT_TRUE(Search({"--contains", "launch"}).empty());
  hits = Search({"--contains", "gate closed"});
  ASSERT_EQ(hits.size(), 1u);
  EXPECT_EQ(hits[0]["path"], lib_ + "/rocket.png");

  const json stats = json::parse(RunCommand({ImgsearchBin(), "stats", "--db", db_, "--json"}).out);
  EXPECT_EQ(stats["text"]["pending"], 0) << stats.dump();
  EXPECT_EQ(stats["text"]["read"], 3) << stats.dump();

  // Another model: the text comes along, nothing is read again.
  const auto reindexed = RunCommand({ImgsearchBin(), "reindex", "--db", db_, "--model", TestModelDir() + "-2"});
  ASSERT_EQ(reindexed.exit_code, 0) << reindexed.err;
  const json after = json::parse(RunCommand({ImgsearchBin(), "stats", "--db", db_, "--json"}).out);
  EXPECT_EQ(after["text"]["read"], 3) << after.dump();
  hits = Search({"--contains", "gate closed"});
  ASSERT_EQ(hits.size(), 1u);
  EXPECT_EQ(hits[0]["path"], lib_ + "/rocket.png");
}

TEST_F(TextSearchTest, ServerSearchesAndShowsTheWords) {
  // --no-ocr: embedded, searchable by the model, no text yet; the next run reads it without
  // embedding anything again.
  const auto plain =
      RunCommand({ImgsearchBin(), "index", "--db", db_, "--model", TestModelDir(), "--offline", "--no-ocr", lib_});
  ASSERT_EQ(plain.exit_code, 0) << plain.err;
  EXPECT_TRUE(Search({"--contains", "invoice"}).empty());
  const auto again = Index();
  ASSERT_EQ(again.exit_code, 0) << again.err;
  EXPECT_NE(again.out.find("(0 embedded)"), std::string::npos) << again.out;
  EXPECT_NE(again.out.find("text read in 4 images"), std::string::npos) << again.out;

  testing::Process server({ImgsearchBin(), "serve", "--db", db_, "--model", TestModelDir(), "--offline", "--listen",
                           "127.0.0.1:0", "--quiet-ms", "100", "--watch", lib_});
  ASSERT_TRUE(server.WaitForOutput("serving http://", 60)) << server.Out() << server.Err();
  httplib::Client c("127.0.0.1", testing::ServingPort(server.Out()));
  c.set_read_timeout(std::chrono::seconds(60));

  auto res = c.Get("/api/search?contains=Invoice");
  ASSERT_TRUE(res);
  ASSERT_EQ(res->status, 200) << res->body;
  json body = json::parse(res->body);
  ASSERT_EQ(body["results"].size(), 1u) << res->body;
  EXPECT_EQ(body["results"][0]["words"], json({"INVOICE"}));
  const int64_t id = body["results"][0]["id"];

  res = c.Post("/api/search", R"({"terms": [{"text": "a photo"}, {"contains": "launch pad", "weight": 2}], "k": 2})",
               "application/json");
  ASSERT_TRUE(res);
  ASSERT_EQ(res->status, 200) << res->body;
  body = json::parse(res->body);
  ASSERT_EQ(body["results"].size(), 2u) << res->body;
  EXPECT_EQ(body["results"][0]["path"], lib_ + "/rocket.png") << res->body;
  // A negative contains term leaves the photos showing the words out.
  res = c.Post("/api/search", R"({"terms": [{"text": "a photo"}, {"contains": "launch", "weight": -1}], "k": 10})",
               "application/json");
  ASSERT_TRUE(res);
  body = json::parse(res->body);
  ASSERT_EQ(body["results"].size(), 3u) << res->body;
  for (const json& h : body["results"]) EXPECT_NE(h["path"], lib_ + "/rocket.png");
  res = c.Get("/api/search?contains=%21%21");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 400) << res->body;

  res = c.Get("/api/images/" + std::to_string(id) + "/info");
  ASSERT_TRUE(res);
  const json info = json::parse(res->body);
  EXPECT_NE(info["text"]["text"].get<std::string>().find("INVOICE"), std::string::npos) << res->body;
  EXPECT_EQ(info["text"]["languages"], "eng");
  EXPECT_FALSE(info["text"]["words"].empty());

  res = c.Get("/api/status");
  ASSERT_TRUE(res);
  const json status = json::parse(res->body);
  EXPECT_EQ(status["text"]["read"], 4) << res->body;
  EXPECT_EQ(status["text"]["running"], true) << res->body;

  // A new photo with words is embedded, then read, while the server runs.
  Draw("coffee.png", "menu.png", {{"ESPRESSO 2.50", 100, 100, 80, {250, 250, 250}}});
  bool found = false;
  for (int i = 0; i < 300 && !found; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    res = c.Get("/api/search?contains=espresso");
    found = res && res->status == 200 && json::parse(res->body)["results"].size() == 1;
  }
  EXPECT_TRUE(found) << server.Out() << server.Err();
  server.Signal(SIGTERM);
  EXPECT_EQ(server.Wait(), 0) << server.Err();
}

TEST_F(TextSearchTest, WordsInAVideoFindItAtTheirMoment) {
  if (!testing::FindProgram("ffmpeg"))
    GTEST_SKIP() << "the ffmpeg command is not installed (scripts/setup installs it)";
  // A slideshow of three photographs, 4 s each: only the second (from 4 s to 8 s) shows words. The
  // video is 1920×1280: frames are read at 1800×1200, and the words' boxes scaled back to the
  // video's pixels. (The second photograph fills the frame exactly: its pixels are the video's.)
  const std::string slides = dir_ + "/slides", videos = dir_ + "/videos", db = dir_ + "/videos-db";
  fs::create_directories(slides);
  fs::create_directories(videos);
  DrawAt("astronaut.png", slides + "/1.png", {}, 1920);
  DrawAt("coffee.png", slides + "/2.png",
         {{"TICKET 9021", 1000, 900, 120, {20, 20, 20}, std::array<uint8_t, 3>{245, 240, 220}}}, 1920);
  DrawAt("chelsea.png", slides + "/3.png", {}, 1920);
  // Not below 720p: Tesseract's sparse-text mode reads little in a 480p frame (docs/performance.md).
  ASSERT_EQ(testing::MakeSlideshow({slides + "/1.png", slides + "/2.png", slides + "/3.png"}, 4, "h264",
                                   videos + "/clip.mp4", 1920, 1280),
            "");
  const auto indexed = Index(db, videos);
  ASSERT_EQ(indexed.exit_code, 0) << indexed.out << indexed.err;
  EXPECT_NE(indexed.out.find("text read in 1 images"), std::string::npos) << indexed.out;

  // Found once, by its words, at a frame showing them.
  const std::vector<json> hits = Search({"--contains", "ticket 9021"}, db);
  ASSERT_EQ(hits.size(), 1u);
  EXPECT_EQ(hits[0]["path"], videos + "/clip.mp4");
  EXPECT_EQ(hits[0]["words"], json({"TICKET", "9021"}));
  ASSERT_TRUE(hits[0].contains("time")) << hits[0].dump();
  EXPECT_GE(hits[0]["time"].get<double>(), 4.0) << hits[0].dump();
  EXPECT_LT(hits[0]["time"].get<double>(), 8.0) << hits[0].dump();
  EXPECT_TRUE(Search({"--contains", "invoice"}, db).empty());

  // The server shows each word with its frame's time, after its box.
  testing::Process server({ImgsearchBin(), "serve", "--db", db, "--model", TestModelDir(), "--offline", "--listen",
                           "127.0.0.1:0", "--no-ocr"});
  ASSERT_TRUE(server.WaitForOutput("serving http://", 60)) << server.Out() << server.Err();
  httplib::Client c("127.0.0.1", testing::ServingPort(server.Out()));
  c.set_read_timeout(std::chrono::seconds(60));
  const auto res = c.Get("/api/images/" + std::to_string(hits[0]["id"].get<int64_t>()) + "/info");
  ASSERT_TRUE(res);
  ASSERT_EQ(res->status, 200) << res->body;
  const json words = json::parse(res->body)["text"]["words"];
  ASSERT_FALSE(words.empty()) << res->body;
  int sign = 0;
  for (const json& w : words) {
    ASSERT_EQ(w.size(), 7u) << w.dump();
    EXPECT_LE(w[1].get<int>() + w[3].get<int>(), 1920) << w.dump();  // in the video's pixels
    EXPECT_LE(w[2].get<int>() + w[4].get<int>(), 1280) << w.dump();
    if (w[0] != "TICKET" && w[0] != "9021") continue;  // (Tesseract reads a little in the photographs too)
    ++sign;
    // Where the sign was drawn, in the video's pixels: across its middle row (y 960), TICKET from
    // x 1000 (in the 1800×1200 frame read, they were at y 900 and x 937).
    EXPECT_LE(w[2].get<int>(), 960) << w.dump();
    EXPECT_GE(w[2].get<int>() + w[4].get<int>(), 960) << w.dump();
    if (w[0] == "TICKET") {
      EXPECT_NEAR(w[1].get<int>(), 1000, 15) << w.dump();
    }
    // ffmpeg's fps filter may hold a slide a frame or two past its 4 s.
    EXPECT_GE(w[6].get<double>(), 4.0) << w.dump();
    EXPECT_LE(w[6].get<double>(), 8.2) << w.dump();
  }
  EXPECT_GE(sign, 2) << words.dump();
  server.Signal(SIGTERM);
  EXPECT_EQ(server.Wait(), 0) << server.Err();
}

TEST_F(TextSearchTest, MissingLanguagesAreNamed) {
  const auto r = RunCommand(
      {ImgsearchBin(), "index", "--db", db_, "--model", TestModelDir(), "--offline", "--ocr-lang", "eng+xyz", lib_});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("tesseract-ocr-xyz"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace imgsearch
