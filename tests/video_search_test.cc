// Videos end to end: slideshows of the golden photographs, made with the ffmpeg command, indexed by
// the imgsearch binary and searched through the CLI and the server: a photo finds its video at its
// moment; renames, deletions, partial writes and damaged videos behave as photos do; the server
// serves frames and byte ranges.
#include <gtest/gtest.h>
#include <httplib.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <map>
#include <regex>
#include <set>
#include <sstream>
#include <thread>

#include <nlohmann/json.hpp>

#include "imgsearch/collection.h"
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
using Clock = std::chrono::steady_clock;

// The slides: golden photographs, each shown for kSlideSeconds.
const std::vector<std::string> kSlides = {"astronaut.png", "camera.png", "chelsea.png", "coffee.png"};
constexpr int kSlideSeconds = 4;

// A slideshow of `slides` (golden file names) at 320×240, encoded with `codec` ("h264", "vp9").
void MakeSlideshow(const std::string& golden, const std::vector<std::string>& slides, const std::string& codec,
                   const std::string& out) {
  std::vector<std::string> pictures;
  for (const std::string& slide : slides) pictures.push_back(golden + "/images/" + slide);
  ASSERT_EQ(testing::MakeSlideshow(pictures, kSlideSeconds, codec, out), "");
}

class VideoSearchTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!testing::FindProgram("ffmpeg"))
      GTEST_SKIP() << "the ffmpeg command is not installed (scripts/setup installs it); skipping";
    auto golden = testing::GoldenDir();
    if (!golden) {
      if (testing::GoldenRequired()) GTEST_FAIL() << "golden data not found and IMGSEARCH_REQUIRE_GOLDEN=1";
      GTEST_SKIP() << "golden data not found (set IMGSEARCH_GOLDEN or place ../shared/golden beside the project)";
    }
    golden_ = *golden;
    dir_ = testing::MakeTempDir();
    lib_ = dir_ + "/lib";
    db_ = dir_ + "/db";
    fs::create_directories(lib_);
    MakeSlideshow(golden_, kSlides, "h264", lib_ + "/show.mp4");
    // The WebM shows the slides in the opposite order.
    MakeSlideshow(golden_, {kSlides.rbegin(), kSlides.rend()}, "vp9", lib_ + "/reversed.webm");
    // Photos that are in neither video.
    fs::copy_file(golden_ + "/images/rocket.jpg", lib_ + "/rocket.jpg");
    fs::copy_file(golden_ + "/images/palette_color.png", lib_ + "/palette.png");
  }

  testing::CommandResult Index() {
    return RunCommand({ImgsearchBin(), "index", "--db", db_, "--model", TestModelDir(), "--offline", lib_});
  }

  // The hits of searching by the golden photo `slide`, as JSON lines.
  std::vector<json> SearchByImage(const std::string& slide, int k) {
    const auto r = RunCommand({ImgsearchBin(), "search", "--db", db_, "--image", golden_ + "/images/" + slide, "-k",
                               std::to_string(k), "--json"});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return JsonLines(r.out);
  }

  std::string golden_, dir_, lib_, db_;
};

// Where `slide` is shown in a video of kSlides (reversed or not): [start, end) in seconds.
std::pair<double, double> Interval(const std::string& slide, bool reversed) {
  const auto at = static_cast<int>(std::find(kSlides.begin(), kSlides.end(), slide) - kSlides.begin());
  const int i = reversed ? static_cast<int>(kSlides.size()) - 1 - at : at;
  return {i * kSlideSeconds, (i + 1) * kSlideSeconds};
}

TEST_F(VideoSearchTest, APhotoFindsItsVideosAtItsMoment) {
  const auto indexed = Index();
  ASSERT_EQ(indexed.exit_code, 0) << indexed.err << indexed.out;
  EXPECT_NE(indexed.out.find("4 added"), std::string::npos) << indexed.out;

  for (const std::string& slide : kSlides) {
    SCOPED_TRACE(slide);
    const std::vector<json> hits = SearchByImage(slide, 3);
    ASSERT_EQ(hits.size(), 3u);
    // Both videos come first (each once, however many of its frames match), each at the moment
    // that shows the photo; then a photo, without a time.
    std::set<std::string> videos;
    for (size_t i = 0; i < 2; ++i) {
      const std::string path = hits[i]["path"];
      videos.insert(path);
      const bool reversed = path.ends_with(".webm");
      const auto [start, end] = Interval(slide, reversed);
      ASSERT_TRUE(hits[i].contains("time")) << hits[i].dump();
      EXPECT_GE(hits[i]["time"].get<double>(), start) << hits[i].dump();
      EXPECT_LT(hits[i]["time"].get<double>(), end) << hits[i].dump();
      EXPECT_GT(hits[i]["score"].get<double>(), hits[2]["score"].get<double>());
      EXPECT_TRUE(hits[i]["moments"].is_array());
    }
    EXPECT_EQ(videos, (std::set<std::string>{lib_ + "/show.mp4", lib_ + "/reversed.webm"}));
    EXPECT_FALSE(hits[2].contains("time")) << hits[2].dump();
  }

  // More like a moment: the frame of show.mp4 at 9.5 s shows chelsea, which the WebM shows at 4–8 s.
  int64_t show_id = -1;
  for (const json& j : JsonLines(RunCommand({ImgsearchBin(), "list", "--db", db_, "--json"}).out)) {
    if (j["path"] == lib_ + "/show.mp4") show_id = j["id"];
  }
  const auto like = RunCommand(
      {ImgsearchBin(), "search", "--db", db_, "--similar", std::to_string(show_id) + "@9.5", "-k", "3", "--json"});
  ASSERT_EQ(like.exit_code, 0) << like.err;
  const std::vector<json> similar = JsonLines(like.out);
  ASSERT_FALSE(similar.empty());
  EXPECT_EQ(similar[0]["path"], lib_ + "/reversed.webm") << like.out;
  EXPECT_GE(similar[0]["time"].get<double>(), 4) << like.out;
  EXPECT_LT(similar[0]["time"].get<double>(), 8) << like.out;
  for (const json& j : similar) EXPECT_NE(j["path"], lib_ + "/show.mp4") << "the video itself is left out";

  // Text output names the moment; the format filter takes video formats.
  const auto text = RunCommand({ImgsearchBin(), "search", "--db", db_, "--image", golden_ + "/images/chelsea.png", "-k",
                                "1", "--format", "webm"});
  ASSERT_EQ(text.exit_code, 0) << text.err;
  EXPECT_TRUE(std::regex_search(text.out, std::regex("/reversed\\.webm @ 0:0[4-7]\\.[0-9][ \n]")))
      << text.out;  // chelsea: 4–8 s
  const auto stats = RunCommand({ImgsearchBin(), "stats", "--db", db_, "--json"});
  const json s = json::parse(stats.out);
  EXPECT_EQ(s["formats"]["mp4"], 1) << s.dump();
  EXPECT_EQ(s["formats"]["webm"], 1) << s.dump();

  // A rename keeps the video's vectors; a deletion removes them.
  fs::rename(lib_ + "/show.mp4", lib_ + "/renamed.mp4");
  fs::remove(lib_ + "/reversed.webm");
  const auto again = Index();
  ASSERT_EQ(again.exit_code, 0) << again.err;
  EXPECT_NE(again.out.find("1 moved, 1 removed"), std::string::npos) << again.out;
  EXPECT_NE(again.out.find("(0 embedded)"), std::string::npos) << again.out;
  const std::vector<json> hits = SearchByImage("coffee.png", 2);
  ASSERT_EQ(hits.size(), 2u);
  EXPECT_EQ(hits[0]["path"], lib_ + "/renamed.mp4");
  EXPECT_GE(hits[0]["time"].get<double>(), 12);
  EXPECT_FALSE(hits[1].contains("time"));  // the WebM is gone
}

TEST_F(VideoSearchTest, DamagedVideosFailAloneWithTheirReason) {
  const std::string mp4 = testing::ReadFile(lib_ + "/show.mp4");
  testing::WriteFile(lib_ + "/empty.mp4", "");
  testing::WriteFile(lib_ + "/truncated.mp4", mp4.substr(0, mp4.size() / 2));  // its index (moov) is at the end
  std::string noise = mp4.substr(0, 32);
  for (int i = 0; i < 5000; ++i) noise += static_cast<char>((i * 7919) % 251);
  testing::WriteFile(lib_ + "/noise.mp4", noise);
  // Sound alone in a video container is nothing to index: skipped, not failed.
  const auto audio = RunCommand({*testing::FindProgram("ffmpeg"), "-nostdin", "-v", "error", "-f", "lavfi", "-i",
                                 "sine=frequency=440:duration=1", lib_ + "/audio.mp4"});
  ASSERT_EQ(audio.exit_code, 0) << audio.err;
  const auto indexed = Index();
  EXPECT_EQ(indexed.exit_code, 1) << indexed.err;  // some files failed
  EXPECT_NE(indexed.out.find("4 added"), std::string::npos) << indexed.out;
  EXPECT_NE(indexed.out.find("3 failed"), std::string::npos) << indexed.out;
  const auto failed = RunCommand({ImgsearchBin(), "list", "--db", db_, "--status", "failed", "--json"});
  const std::vector<json> lines = JsonLines(failed.out);
  std::map<std::string, std::string> errors;
  for (const json& j : lines) errors[j["path"]] = j["error"];
  ASSERT_EQ(errors.size(), 3u) << failed.out;
  EXPECT_EQ(RunCommand({ImgsearchBin(), "list", "--db", db_}).out.find("audio.mp4"), std::string::npos);
  EXPECT_EQ(errors[lib_ + "/empty.mp4"], "empty file (0 bytes)");
  for (const std::string name : {"truncated.mp4", "noise.mp4"}) {
    const std::string& error = errors[lib_ + "/" + name];
    EXPECT_TRUE(error.starts_with("MP4 video: ")) << name << ": " << error;
    EXPECT_EQ(error.find(lib_), std::string::npos) << "the path is the record's, not the message's: " << error;
  }
  // The good videos are indexed beside them.
  const std::vector<json> hits = SearchByImage("camera.png", 2);
  ASSERT_EQ(hits.size(), 2u);
  EXPECT_TRUE(hits[0].contains("time") && hits[1].contains("time"));
}

// Whether process `pid` has `path` open.
bool HasOpen(int pid, const std::string& path) {
  std::error_code ec;
  for (const auto& fd : fs::directory_iterator("/proc/" + std::to_string(pid) + "/fd", ec)) {
    std::error_code gone;  // a descriptor closed meanwhile
    if (fs::read_symlink(fd.path(), gone) == path) return true;
  }
  return false;
}

// The frame times of the video at `path` in the collection at `db`, or nullopt when it is not there.
std::optional<std::vector<float>> FrameTimes(const std::string& db, const std::string& path) {
  auto c = OpenCollection(db, nullptr, CollectionOptions{.read_only = true, .create_if_missing = false});
  EXPECT_TRUE(c.ok()) << c.status().ToString();
  if (!c.ok()) return std::nullopt;
  EXPECT_TRUE((*c)->CheckIntegrity().ok());
  auto record = (*c)->GetByPath(path);
  EXPECT_TRUE(record.ok()) << record.status().ToString();
  if (!record.ok() || !*record || (*record)->status != ImageStatus::kIndexed) return std::nullopt;
  return (*record)->frame_times;
}

// kill -9 while a video is being sampled: a video's parts are written together with its last one,
// so nothing of it was stored, and the next run embeds it whole; what was written before is kept.
TEST_F(VideoSearchTest, KillDashNineMidVideoThenIndexAgainEmbedsItWhole) {
  // Two minutes with a key frame every 10 s, sampled every 0.5 s: every frame is decoded, which
  // takes long enough for the kill to land mid-video.
  const std::string video = lib_ + "/long.mp4";
  const auto made = RunCommand({*testing::FindProgram("ffmpeg"), "-nostdin", "-v", "error", "-f", "lavfi", "-i",
                                "testsrc2=size=640x360:rate=25", "-t", "120", "-c:v", "libx264", "-preset", "ultrafast",
                                "-g", "250", video});
  ASSERT_EQ(made.exit_code, 0) << made.err;
  // Parts of 2 frames: many are embedded and wait for the rest when the kill lands.
  const std::vector<std::string> sampling = {"--video-interval", "0.5", "--video-max-frames", "240", "--no-ocr",
                                             "--batch",          "2"};
  auto index_argv = [&](const std::string& db, const std::string& what) {
    std::vector<std::string> argv = {ImgsearchBin(), "index", "--db", db, "--model", TestModelDir(), "--offline"};
    argv.insert(argv.end(), sampling.begin(), sampling.end());
    argv.push_back(what);
    return argv;
  };

  testing::Process doomed(index_argv(db_, lib_));
  const auto deadline = Clock::now() + std::chrono::seconds(120);
  while (doomed.Running() && !HasOpen(doomed.pid(), video) && Clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  // Sampled for a while (its first parts embedded, waiting for the rest), then killed.
  const auto opened = Clock::now();
  while (HasOpen(doomed.pid(), video) && Clock::now() < opened + std::chrono::milliseconds(300)) {
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  doomed.Signal(SIGKILL);
  ASSERT_EQ(doomed.Wait(), 128 + SIGKILL) << "the run ended before the kill: " << doomed.Out() << doomed.Err();
  EXPECT_EQ(FrameTimes(db_, video), std::nullopt) << "the video was written before the kill; the test proves nothing";

  const auto again = RunCommand(index_argv(db_, lib_));
  ASSERT_EQ(again.exit_code, 0) << again.err << again.out;
  // Every file once; the long video with every frame a run of its own samples.
  const auto listed = JsonLines(RunCommand({ImgsearchBin(), "list", "--db", db_, "--json"}).out);
  std::multiset<std::string> paths;
  for (const json& j : listed) paths.insert(j["path"].get<std::string>());
  EXPECT_EQ(paths, (std::multiset<std::string>{lib_ + "/long.mp4", lib_ + "/palette.png", lib_ + "/reversed.webm",
                                               lib_ + "/rocket.jpg", lib_ + "/show.mp4"}));
  const std::string alone = dir_ + "/alone";
  fs::create_directories(alone);
  fs::copy_file(video, alone + "/long.mp4");
  ASSERT_EQ(RunCommand(index_argv(alone + "/db", alone)).exit_code, 0);
  const auto whole = FrameTimes(alone + "/db", alone + "/long.mp4");
  ASSERT_TRUE(whole.has_value());
  EXPECT_EQ(whole->size(), 240u);
  EXPECT_EQ(FrameTimes(db_, video), whole);
}

class VideoServeTest : public VideoSearchTest {
 protected:
  void TearDown() override {
    if (server_) {
      server_->Signal(SIGTERM);
      EXPECT_EQ(server_->Wait(), 0) << server_->Err();
    }
  }

  void StartServer() {
    server_ = std::make_unique<testing::Process>(
        std::vector<std::string>{ImgsearchBin(), "serve", "--db", db_, "--model", TestModelDir(), "--offline",
                                 "--listen", "127.0.0.1:0", "--quiet-ms", "100", "--watch", lib_});
    ASSERT_TRUE(server_->WaitForOutput("serving http://", 60)) << server_->Out() << server_->Err();
    port_ = testing::ServingPort(server_->Out());
    ASSERT_NE(port_, 0) << server_->Out();
    ASSERT_TRUE(server_->WaitForOutput("initial scan done", 120)) << server_->Out() << server_->Err();
  }

  httplib::Result Get(const std::string& path, const httplib::Headers& headers = {}) {
    httplib::Client c("127.0.0.1", port_);
    c.set_read_timeout(std::chrono::seconds(60));
    return c.Get(path, headers);
  }

  json Info(const std::string& path) {
    const auto list = RunCommand({ImgsearchBin(), "list", "--db", db_, "--json"});
    for (const json& j : JsonLines(list.out)) {
      if (j["path"] == path) {
        auto res = Get("/api/images/" + std::to_string(j["id"].get<int64_t>()) + "/info");
        return res ? json::parse(res->body) : json();
      }
    }
    return json();
  }

  std::unique_ptr<testing::Process> server_;
  int port_ = 0;
};

// The mean colour of a JPEG.
std::array<double, 3> MeanColour(const std::string& jpeg) {
  auto decoded = DecodeImage(std::span(reinterpret_cast<const uint8_t*>(jpeg.data()), jpeg.size()));
  EXPECT_TRUE(decoded.ok()) << decoded.status().ToString();
  std::array<double, 3> sum{};
  if (!decoded.ok()) return sum;
  const Image& im = decoded->image;
  for (size_t i = 0; i < im.rgb.size(); ++i) sum[i % 3] += im.rgb[i];
  for (double& s : sum) s /= static_cast<double>(im.width) * im.height;
  return sum;
}

TEST_F(VideoServeTest, FramesRangesMomentsAndPartialWrites) {
  fs::rename(lib_ + "/reversed.webm", dir_ + "/reversed.webm");  // written into the folder later
  StartServer();
  const json info = Info(lib_ + "/show.mp4");
  ASSERT_EQ(info["video"], true) << info.dump();
  EXPECT_EQ(info["format"], "mp4");
  EXPECT_EQ(info["width"], 320);
  ASSERT_GE(info["frame_times"].size(), 8u) << info.dump();  // at least one every 2 s of 16 s
  const std::string id = std::to_string(info["id"].get<int64_t>());

  // A search hit of a video carries its moment, and its thumbnail is that frame.
  httplib::Client client("127.0.0.1", port_);
  const std::string chelsea = testing::ReadFile(golden_ + "/images/chelsea.png");
  auto found =
      client.Post("/api/search", json{{"image", testing::Base64(chelsea)}, {"k", 3}}.dump(), "application/json");
  ASSERT_TRUE(found);
  ASSERT_EQ(found->status, 200) << found->body;
  const json top = json::parse(found->body)["results"][0];
  EXPECT_EQ(top["id"].get<int64_t>(), std::stoll(id)) << top.dump();
  ASSERT_TRUE(top.contains("time")) << top.dump();
  const double time = top["time"].get<double>();
  EXPECT_GE(time, 8) << top.dump();  // chelsea: 8–12 s
  EXPECT_LT(time, 12) << top.dump();
  const std::string thumbnail = top["thumbnail"];
  const std::string prefix = "/api/images/" + id + "/thumbnail?t=";
  ASSERT_TRUE(thumbnail.starts_with(prefix)) << thumbnail;
  EXPECT_NEAR(std::stod(thumbnail.substr(prefix.size())), time, 1e-3) << thumbnail;
  EXPECT_TRUE(top["moments"].is_array());
  auto search = Get("/api/search?similar=" + id + "@9.5&k=5");
  ASSERT_TRUE(search);
  ASSERT_EQ(search->status, 200) << search->body;
  const json results = json::parse(search->body)["results"];
  for (const json& r : results) EXPECT_NE(r["id"].get<int64_t>(), std::stoll(id)) << "the video itself is left out";

  // Frames at given times: each is the slide shown then (chelsea at 9.5 s, the astronaut at 1 s).
  auto at1 = Get("/api/images/" + id + "/thumbnail?t=1");
  auto at9 = Get("/api/images/" + id + "/thumbnail?t=9.5&size=128");
  ASSERT_TRUE(at1 && at9);
  ASSERT_EQ(at1->status, 200) << at1->body;
  ASSERT_EQ(at9->status, 200) << at9->body;
  EXPECT_EQ(at1->get_header_value("Content-Type"), "image/jpeg");
  const auto c1 = MeanColour(at1->body), c9 = MeanColour(at9->body);
  EXPECT_GT(std::abs(c1[0] - c9[0]) + std::abs(c1[1] - c9[1]) + std::abs(c1[2] - c9[2]), 20);
  auto cached = Get("/api/images/" + id + "/thumbnail?t=1");
  ASSERT_TRUE(cached);
  EXPECT_EQ(cached->body, at1->body);
  EXPECT_EQ(Get("/api/images/" + id + "/thumbnail?t=-1")->status, 400);
  EXPECT_EQ(Get("/api/images/" + id + "/thumbnail?t=abc")->status, 400);

  // The file itself, with byte ranges (a browser's player seeks with them).
  const std::string file = testing::ReadFile(lib_ + "/show.mp4");
  auto whole = Get("/api/images/" + id + "/view");
  ASSERT_TRUE(whole);
  EXPECT_EQ(whole->status, 200);
  EXPECT_EQ(whole->get_header_value("Content-Type"), "video/mp4");
  EXPECT_EQ(whole->get_header_value("Accept-Ranges"), "bytes");
  EXPECT_EQ(whole->body, file);
  auto part = Get("/api/images/" + id, {{"Range", "bytes=100-1099"}});
  ASSERT_TRUE(part);
  EXPECT_EQ(part->status, 206);
  EXPECT_EQ(part->body, file.substr(100, 1000));
  EXPECT_EQ(part->get_header_value("Content-Range"), "bytes 100-1099/" + std::to_string(file.size()));

  // A video written in two steps (its first half, read and indexed meanwhile: a WebM is readable
  // while it grows; then the rest) ends indexed whole, as a photo copied slowly does.
  const std::string webm = testing::ReadFile(dir_ + "/reversed.webm");
  const std::string growing = lib_ + "/growing.webm";
  {
    std::ofstream out(growing, std::ios::binary);
    out.write(webm.data(), static_cast<std::streamsize>(webm.size() / 2));
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  {
    std::ofstream out(growing, std::ios::binary | std::ios::app);
    out.write(webm.data() + webm.size() / 2, static_cast<std::streamsize>(webm.size() - webm.size() / 2));
  }
  const auto deadline = Clock::now() + std::chrono::seconds(60);
  json grown;
  while (Clock::now() < deadline) {
    grown = Info(growing);
    if (grown.is_object() && grown["status"] == "indexed" && grown["size_bytes"] == webm.size()) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  EXPECT_EQ(grown["status"], "indexed") << grown.dump();
  EXPECT_EQ(grown["size_bytes"], webm.size()) << grown.dump();
  ASSERT_GE(grown["frame_times"].size(), 8u) << grown.dump();  // the whole 16 s, not its first half
  EXPECT_GE(grown["frame_times"].back().get<double>(), 14) << grown.dump();
}

}  // namespace
}  // namespace imgsearch
