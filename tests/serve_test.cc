// `imgsearch serve` as clients use it: the real binary on loopback, real files, the tiny model.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <netinet/in.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>
#include <thread>

#include <nlohmann/json.hpp>

#include "imgsearch/clip.h"
#include "imgsearch/collection.h"
#include "imgsearch/image.h"
#include "imgsearch/ingest.h"
#include "imgsearch/text_model.h"
#include "test_util.h"

namespace imgsearch {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
using testing::ImgsearchBin;
using testing::Process;
using testing::TestModelDir;
using Clock = std::chrono::steady_clock;

// A small JPEG whose content depends on `seed`.
std::string JpegBytes(int seed, int w = 96, int h = 64) {
  Image img(w, h);
  for (int y = 0; y < h; ++y) {
    for (int x = 0; x < w; ++x) {
      uint8_t* p = img.row(y) + 3 * x;
      p[0] = static_cast<uint8_t>((x * (seed + 2) + y) % 256);
      p[1] = static_cast<uint8_t>((y * (seed + 5)) % 256);
      p[2] = static_cast<uint8_t>((x + y + seed * 40) % 256);
    }
  }
  auto bytes = EncodeJpeg(img, 90);
  EXPECT_TRUE(bytes.ok());
  return std::string(bytes->begin(), bytes->end());
}

// The response head of a GET, as it crossed the wire (httplib's client percent-decodes header
// values, which would hide how they were sent).
// Sends `request` as it is and returns what comes back until the server closes the connection, or
// 10 s pass without a byte.
std::string RawExchange(int port, const std::string& request, bool head_only = false) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  timeval tv{10, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  std::string response;
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0 &&
      ::write(fd, request.data(), request.size()) == static_cast<ssize_t>(request.size())) {
    char buf[4096];
    ssize_t n = 0;
    while (!(head_only && response.find("\r\n\r\n") != std::string::npos) && (n = ::read(fd, buf, sizeof(buf))) > 0) {
      response.append(buf, n);
    }
  }
  ::close(fd);
  return response;
}

std::string RawResponseHead(int port, const std::string& path) {
  const std::string head =
      RawExchange(port, "GET " + path + " HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", /*head_only=*/true);
  return head.substr(0, head.find("\r\n\r\n"));
}

// The most memory the process has held (VmHWM), in bytes.
int64_t PeakMemory(int pid) {
  std::istringstream status(testing::ReadFile("/proc/" + std::to_string(pid) + "/status"));
  for (std::string line; std::getline(status, line);) {
    if (line.rfind("VmHWM:", 0) == 0) return std::stoll(line.substr(6)) * 1024;
  }
  return -1;
}

// The query vector for weighted texts, computed here from the model alone (an oracle independent of
// the search layer): the normalised sum of the normalised, weighted text embeddings.
std::vector<float> TextQuery(const ClipModel& model, const std::vector<std::pair<std::string, float>>& terms) {
  const int dim = model.embedding_dim();
  std::vector<float> sum(static_cast<size_t>(dim), 0.0f);
  for (const auto& [text, weight] : terms) {
    std::vector<float> e(static_cast<size_t>(dim));
    EXPECT_TRUE(model.EncodeTexts(std::vector<std::string>{text}, e.data()).ok());
    double norm = 0;
    for (float x : e) norm += static_cast<double>(x) * x;
    for (int i = 0; i < dim; ++i) sum[i] += weight * e[i] / static_cast<float>(std::sqrt(norm));
  }
  double norm = 0;
  for (float x : sum) norm += static_cast<double>(x) * x;
  for (float& x : sum) x /= static_cast<float>(std::sqrt(norm));
  return sum;
}

class ServeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = testing::MakeTempDir();
    root_ = dir_ + "/pics";
    db_ = dir_ + "/db";
    fs::create_directories(root_ + "/sub");
    for (int i = 0; i < 12; ++i) {
      testing::WriteFile(root_ + (i < 4 ? "/sub/" : "/") + "img" + std::to_string(i) + ".jpg", JpegBytes(i));
    }
  }

  void TearDown() override { StopServer(); }

  // Starts serve and waits until it listens (and, with a watcher, has indexed everything).
  void StartServer(std::vector<std::string> extra = {}, bool watch = true) {
    std::vector<std::string> argv = {ImgsearchBin(), "serve",    "--db",        db_,          "--model", TestModelDir(),
                                     "--offline",    "--listen", "127.0.0.1:0", "--quiet-ms", "100"};
    if (watch) argv.insert(argv.end(), {"--watch", root_});
    argv.insert(argv.end(), extra.begin(), extra.end());
    started_at_ = Clock::now();
    server_ = std::make_unique<Process>(argv);
    ASSERT_TRUE(server_->WaitForOutput("serving http://", 60)) << server_->Out() << server_->Err();
    port_ = testing::ServingPort(server_->Out());
    ASSERT_NE(port_, 0) << server_->Out();
    if (watch) {
      ASSERT_TRUE(server_->WaitForOutput("initial scan done", 120)) << server_->Out() << server_->Err();
    }
  }

  void StopServer() {
    if (!server_) return;
    server_->Signal(SIGTERM);
    EXPECT_EQ(server_->Wait(), 0) << server_->Out() << server_->Err();
    server_.reset();
  }

  httplib::Client Client() const {
    httplib::Client c("127.0.0.1", port_);
    c.set_read_timeout(std::chrono::seconds(60));
    return c;
  }

  // Status and parsed JSON body.
  std::pair<int, json> Get(const std::string& path, const httplib::Headers& headers = {}) {
    auto res = Client().Get(path, headers);
    if (!res) return {-1, json()};
    return {res->status, json::parse(res->body, nullptr, false)};
  }
  std::pair<int, json> PostJson(const std::string& path, const std::string& body,
                                const std::string& type = "application/json", const httplib::Headers& headers = {}) {
    auto res = Client().Post(path, headers, body, type);
    if (!res) return {-1, json()};
    return {res->status, json::parse(res->body, nullptr, false)};
  }
  // Asks the watcher to look now (POST /api/rescan) and waits until it has; returns the status then.
  json RescanAndWait() {
    const int64_t rescans = Get("/api/status").second["ingest"]["rescans"].get<int64_t>();
    auto [code, body] = PostJson("/api/rescan", "");
    EXPECT_EQ(code, 202) << body.dump();
    const auto deadline = Clock::now() + std::chrono::seconds(60);
    json status;
    while (Clock::now() < deadline) {
      status = Get("/api/status").second;
      if (status["ingest"]["rescans"].get<int64_t>() > rescans && status["ingest"]["idle"].get<bool>()) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    EXPECT_GT(status["ingest"]["rescans"].get<int64_t>(), rescans) << status.dump();
    return status;
  }

  int64_t IdOf(const std::string& rel) {
    auto c = OpenCollection(db_, nullptr, CollectionOptions{.read_only = true, .create_if_missing = false});
    EXPECT_TRUE(c.ok());
    auto r = (*c)->GetByPath(root_ + "/" + rel);
    EXPECT_TRUE(r.ok() && r->has_value()) << rel;
    return r.ok() && r->has_value() ? (**r).id : -1;
  }

  std::string dir_, root_, db_;
  std::unique_ptr<Process> server_;
  int port_ = 0;
  Clock::time_point started_at_;
};

TEST_F(ServeTest, SearchAnswersWhatTheLibraryComputes) {
  StartServer();
  EXPECT_LT(std::chrono::duration<double>(Clock::now() - started_at_).count(), 30) << "ready within seconds";
  auto [code, body] = Get("/api/search?q=a%20red%20car%20in%20the%20snow&k=5");
  ASSERT_EQ(code, 200) << body.dump();
  ASSERT_EQ(body["results"].size(), 5u);

  // The same query through the library, in this process, at the server's precision (auto).
  auto model = ClipModel::Load(TestModelDir(), {.precision = Precision::kAuto});
  ASSERT_TRUE(model.ok());
  const ModelIdentity identity = IdentityOf(**model);
  auto col = OpenCollection(db_, &identity, CollectionOptions{.read_only = true, .create_if_missing = false});
  ASSERT_TRUE(col.ok()) << col.status().ToString();
  auto hits = (*col)->Search(TextQuery(**model, {{"a red car in the snow", 1.0f}}), SearchOptions{.k = 5});
  ASSERT_TRUE(hits.ok());
  for (size_t i = 0; i < hits->size(); ++i) {
    const json& r = body["results"][i];
    EXPECT_EQ(r["id"].get<int64_t>(), (*hits)[i].id) << i;
    EXPECT_NEAR(r["score"].get<double>(), (*hits)[i].score, 1e-5) << i;
    EXPECT_EQ(r["path"], (*hits)[i].path);
    EXPECT_EQ(r["width"], 96);
    EXPECT_EQ(r["thumbnail"], "/api/images/" + std::to_string((*hits)[i].id) + "/thumbnail");
  }

  // POST with weighted terms equals the library's combination; pagination continues the ranking.
  auto hits2 = (*col)->Search(TextQuery(**model, {{"a red car in the snow", 1.0f}, {"people", -0.5f}}),
                              SearchOptions{.k = 3, .offset = 2});
  auto [code2, body2] = PostJson("/api/search", R"({"terms": [{"text": "a red car in the snow"},
      {"text": "people", "weight": -0.5}], "k": 3, "offset": 2})");
  ASSERT_EQ(code2, 200) << body2.dump();
  ASSERT_EQ(body2["results"].size(), hits2->size());
  for (size_t i = 0; i < hits2->size(); ++i) EXPECT_EQ(body2["results"][i]["id"].get<int64_t>(), (*hits2)[i].id);

  // Filters: folder, format, date.
  auto [code3, body3] = Get("/api/search?q=dog&k=50&under=" + root_ + "/sub");
  ASSERT_EQ(code3, 200);
  EXPECT_EQ(body3["results"].size(), 4u);
  for (const json& r : body3["results"]) EXPECT_EQ(r["path"].get<std::string>().rfind(root_ + "/sub/", 0), 0u);
  EXPECT_EQ(Get("/api/search?q=dog&k=50&format=png").second["results"].size(), 0u);
  EXPECT_EQ(Get("/api/search?q=dog&k=50&format=jpg").second["results"].size(), 12u);
  EXPECT_EQ(Get("/api/search?q=dog&k=50&after=2100-01-01").second["results"].size(), 0u);
  EXPECT_EQ(Get("/api/search?q=dog&k=50&before=2100-01-01T00:00:00Z").second["results"].size(), 12u);
}

// --text-model: query texts go through a multilingual text tower into the collection's space,
// ranked by its embedding against the stored image embeddings; /api/status names it.
TEST_F(ServeTest, AMultilingualTextModelAnswersQueryTexts) {
  const std::string text_model = TestModelDir() + "-multilingual";
  StartServer({"--text-model", text_model});
  auto [code, body] = Get("/api/search?q=ein%20rotes%20Auto%20im%20Schnee&k=12");
  ASSERT_EQ(code, 200) << body.dump();
  ASSERT_EQ(body["results"].size(), 12u);

  auto model = ClipModel::Load(TestModelDir());
  auto text = TextModel::Load(text_model);
  ASSERT_TRUE(model.ok() && text.ok());
  std::vector<float> query(static_cast<size_t>((*text)->embedding_dim()));
  const std::string q = "ein rotes Auto im Schnee";
  ASSERT_TRUE((*text)->EncodeTexts({&q, 1}, query.data()).ok());
  const ModelIdentity identity = IdentityOf(**model);
  auto col = OpenCollection(db_, &identity, CollectionOptions{.read_only = true, .create_if_missing = false});
  ASSERT_TRUE(col.ok()) << col.status().ToString();
  auto hits = (*col)->Search(query, SearchOptions{.k = 12, .exact = true});
  ASSERT_TRUE(hits.ok());
  for (size_t i = 0; i < hits->size(); ++i) {
    EXPECT_EQ(body["results"][i]["id"].get<int64_t>(), (*hits)[i].id) << i;
    EXPECT_NEAR(body["results"][i]["score"].get<double>(), (*hits)[i].score, 1e-5) << i;
  }
  // The image model's own text tower would rank differently: the text model is what answered.
  auto own = (*col)->Search(TextQuery(**model, {{q, 1.0f}}), SearchOptions{.k = 12, .exact = true});
  ASSERT_TRUE(own.ok());
  bool same_scores = true;
  for (size_t i = 0; i < own->size(); ++i) same_scores &= std::abs((*own)[i].score - (*hits)[i].score) < 1e-6;
  EXPECT_FALSE(same_scores);

  const json status = Get("/api/status").second;
  EXPECT_EQ(status["text_model"]["family"], "sentence-transformers") << status.dump();
  EXPECT_EQ(status["text_model"]["dim"], status["model"]["dim"]);
  // Images still go through the image model: more like this works as ever.
  auto [similar_code, similar] = Get("/api/search?similar=" + std::to_string((*hits)[0].id) + "&k=3");
  EXPECT_EQ(similar_code, 200) << similar.dump();
}

TEST_F(ServeTest, ATextModelOfAnotherDimensionIsRefused) {
  std::vector<std::string> argv = {ImgsearchBin(),
                                   "serve",
                                   "--db",
                                   db_,
                                   "--model",
                                   TestModelDir(),
                                   "--offline",
                                   "--listen",
                                   "127.0.0.1:0",
                                   "--text-model",
                                   TestModelDir() + "-mclip-wide"};
  auto run = testing::RunCommand(argv);
  EXPECT_EQ(run.exit_code, 2) << run.out << run.err;
  EXPECT_NE(run.err.find("dimensions"), std::string::npos) << run.err;
}

TEST_F(ServeTest, ImagesThumbnailsSimilarAndUploads) {
  StartServer();
  const int64_t id = IdOf("img5.jpg");
  auto file = Client().Get("/api/images/" + std::to_string(id));
  ASSERT_TRUE(file);
  EXPECT_EQ(file->status, 200);
  EXPECT_EQ(file->get_header_value("Content-Type"), "image/jpeg");
  EXPECT_EQ(file->body, testing::ReadFile(root_ + "/img5.jpg"));
  // Conditional request: the client's copy is current.
  auto again = Client().Get("/api/images/" + std::to_string(id), {{"If-None-Match", file->get_header_value("ETag")}});
  EXPECT_EQ(again->status, 304);

  auto info = Get("/api/images/" + std::to_string(id) + "/info");
  EXPECT_EQ(info.first, 200);
  EXPECT_EQ(info.second["path"], root_ + "/img5.jpg");
  EXPECT_EQ(info.second["format"], "jpeg");

  // Thumbnails: longest side is the size rounded up to a cached size; made once, then cached.
  for (auto [asked, side] : {std::pair{40, 64}, std::pair{100, 96}, std::pair{256, 96}}) {
    auto t = Client().Get("/api/images/" + std::to_string(id) + "/thumbnail?size=" + std::to_string(asked));
    ASSERT_TRUE(t);
    ASSERT_EQ(t->status, 200) << t->body;
    EXPECT_EQ(t->get_header_value("Content-Type"), "image/jpeg");
    auto d = DecodeImage(std::span(reinterpret_cast<const uint8_t*>(t->body.data()), t->body.size()));
    ASSERT_TRUE(d.ok());
    EXPECT_EQ(std::max(d->image.width, d->image.height), side) << "size=" << asked;  // never enlarged
  }
  Client().Get("/api/images/" + std::to_string(id) + "/thumbnail?size=40");
  const json status = Get("/api/status").second;
  EXPECT_EQ(status["server"]["thumbnails_made"], 3);  // 64, 128 and 256 (96 px originals are not enlarged)
  EXPECT_GE(status["server"]["thumbnails_cached"], 1);

  // More like this: the image itself is left out.
  auto [code, similar] = Get("/api/images/" + std::to_string(id) + "/similar?k=20");
  ASSERT_EQ(code, 200) << similar.dump();
  EXPECT_EQ(similar["results"].size(), 11u);
  for (const json& r : similar["results"]) EXPECT_NE(r["id"].get<int64_t>(), id);
  // Pages continue that ranking without overlap.
  auto page2 = Get("/api/images/" + std::to_string(id) + "/similar?k=4&offset=4").second["results"];
  ASSERT_EQ(page2.size(), 4u);
  for (size_t i = 0; i < 4; ++i) EXPECT_EQ(page2[i]["id"], similar["results"][4 + i]["id"]) << i;

  // Uploading the image finds it first, score 1: multipart and base64 JSON alike.
  httplib::MultipartFormDataItems form = {{"image", testing::ReadFile(root_ + "/img5.jpg"), "img5.jpg", "image/jpeg"},
                                          {"k", "3", "", ""}};
  auto up = Client().Post("/api/search", form);
  ASSERT_TRUE(up);
  ASSERT_EQ(up->status, 200) << up->body;
  const json upj = json::parse(up->body);
  ASSERT_EQ(upj["results"].size(), 3u);
  EXPECT_EQ(upj["results"][0]["id"].get<int64_t>(), id);
  EXPECT_NEAR(upj["results"][0]["score"].get<double>(), 1.0, 1e-5);
  const std::string b64 = testing::Base64(testing::ReadFile(root_ + "/img5.jpg"));
  auto [code2, body2] = PostJson("/api/search", R"({"image": "data:image/jpeg;base64,)" + b64 + R"(", "k": 1})");
  ASSERT_EQ(code2, 200) << body2.dump();
  EXPECT_EQ(body2["results"][0]["id"].get<int64_t>(), id);
}

// HEIC, AVIF and JPEG XL beside the JPEGs: indexed, counted by format, filtered by format, shown
// through a JPEG rendition where browsers cannot display the file, the original still downloadable,
// and a HEIC upload searches like any image.
TEST_F(ServeTest, EveryFormatIsShownInABrowser) {
  REQUIRE_GOLDEN(golden);
  const std::string photo = golden + "/images/rocket.jpg";
  for (const std::vector<std::string>& argv :
       {std::vector<std::string>{"/usr/bin/heif-enc", "-q", "80", "-o", root_ + "/photo.heic", photo},
        std::vector<std::string>{"/usr/bin/heif-enc", "-A", "-q", "60", "-o", root_ + "/photo.avif", photo},
        std::vector<std::string>{"/usr/bin/cjxl", photo, root_ + "/photo.jxl"}}) {
    const testing::CommandResult r = testing::RunCommand(argv);
    ASSERT_EQ(r.exit_code, 0) << argv[0] << ": " << r.out << r.err;
  }
  StartServer();
  const json collection = Get("/api/status").second["collection"];
  EXPECT_EQ(collection["formats"], json({{"jpeg", 12}, {"heif", 1}, {"avif", 1}, {"jxl", 1}})) << collection.dump();

  const std::string heic = std::to_string(IdOf("photo.heic"));
  auto [code, info] = Get("/api/images/" + heic + "/info");
  ASSERT_EQ(code, 200);
  EXPECT_EQ(info["format"], "heif");
  EXPECT_EQ(info["width"], 640);
  EXPECT_EQ(info["original_url"], "/api/images/" + heic);
  EXPECT_EQ(info["view_url"], "/api/images/" + heic + "/view");
  EXPECT_FALSE(info["browser_displays"].get<bool>());

  auto original = Client().Get("/api/images/" + heic);
  ASSERT_TRUE(original);
  EXPECT_EQ(original->get_header_value("Content-Type"), "image/heif");
  EXPECT_EQ(original->body, testing::ReadFile(root_ + "/photo.heic"));
  for (const std::string name : {"photo.heic", "photo.jxl"}) {
    auto view = Client().Get("/api/images/" + std::to_string(IdOf(name)) + "/view");
    ASSERT_TRUE(view);
    ASSERT_EQ(view->status, 200) << view->body;
    EXPECT_EQ(view->get_header_value("Content-Type"), "image/jpeg") << name;
    auto d = DecodeImage(std::span(reinterpret_cast<const uint8_t*>(view->body.data()), view->body.size()));
    ASSERT_TRUE(d.ok()) << name;
    EXPECT_EQ(d->format, ImageFormat::kJpeg);
    EXPECT_EQ(d->image.width, 640) << "full size, under the rendition's limit";
    auto again = Client().Get("/api/images/" + std::to_string(IdOf(name)) + "/view",
                              {{"If-None-Match", view->get_header_value("ETag")}});
    EXPECT_EQ(again->status, 304);
  }
  // What a browser shows by itself is the file itself.
  for (const std::string name : {"img5.jpg", "photo.avif"}) {
    auto view = Client().Get("/api/images/" + std::to_string(IdOf(name)) + "/view");
    ASSERT_TRUE(view);
    EXPECT_EQ(view->body, testing::ReadFile(root_ + "/" + name)) << name;
  }
  auto thumb = Client().Get("/api/images/" + heic + "/thumbnail?size=128");
  ASSERT_TRUE(thumb);
  EXPECT_EQ(thumb->status, 200);
  EXPECT_EQ(thumb->get_header_value("Content-Type"), "image/jpeg");

  auto [fcode, only] = Get("/api/search?q=rocket&k=50&format=heic");
  ASSERT_EQ(fcode, 200) << only.dump();
  ASSERT_EQ(only["results"].size(), 1u);
  EXPECT_EQ(only["results"][0]["view_url"], "/api/images/" + heic + "/view");

  httplib::MultipartFormDataItems form = {
      {"image", testing::ReadFile(root_ + "/photo.heic"), "IMG_0001.HEIC", "application/octet-stream"},
      {"k", "1", "", ""}};
  auto up = Client().Post("/api/search", form);
  ASSERT_TRUE(up);
  ASSERT_EQ(up->status, 200) << up->body;
  EXPECT_EQ(json::parse(up->body)["results"][0]["id"].get<int64_t>(), std::stoll(heic));
}

TEST_F(ServeTest, ThumbnailCacheStaysUnderItsLimit) {
  StartServer({"--thumbnail-cache-mb", "0.01"});  // 10,485 bytes: a few thumbnails
  auto cache_bytes = [&] {
    uint64_t total = 0;
    std::error_code ec;
    for (fs::recursive_directory_iterator it(db_ + "/thumbnails", ec), end; !ec && it != end; it.increment(ec)) {
      if (it->is_regular_file()) total += it->file_size();
    }
    return total;
  };
  std::vector<int64_t> ids;
  for (int i = 0; i < 12; ++i) ids.push_back(IdOf((i < 4 ? "sub/img" : "img") + std::to_string(i) + ".jpg"));
  uint64_t made_bytes = 0;
  for (int64_t id : ids) {
    for (int size : {64, 128}) {
      auto t = Client().Get("/api/images/" + std::to_string(id) + "/thumbnail?size=" + std::to_string(size));
      ASSERT_TRUE(t);
      ASSERT_EQ(t->status, 200);
      made_bytes += t->body.size();
    }
  }
  ASSERT_GT(made_bytes, 10485u * 2) << "the thumbnails must overflow the limit for this test to mean anything";
  // The pruner runs in the background: wait until the disk and the server's count agree.
  const auto deadline = Clock::now() + std::chrono::seconds(20);
  json server = Get("/api/status").second["server"];
  while ((cache_bytes() > 10485 || server["thumbnail_cache_bytes"].get<uint64_t>() > 10485) &&
         Clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    server = Get("/api/status").second["server"];
  }
  EXPECT_LE(cache_bytes(), 10485u);
  EXPECT_GT(server["thumbnails_evicted"].get<int64_t>(), 0);
  EXPECT_LE(server["thumbnail_cache_bytes"].get<uint64_t>(), 10485u);
  // An evicted thumbnail is simply made again.
  auto again = Client().Get("/api/images/" + std::to_string(ids[0]) + "/thumbnail?size=64");
  ASSERT_TRUE(again);
  EXPECT_EQ(again->status, 200);
}

// What a request may take is bounded while it is read: a length that is not a number or is over the
// limit is answered before any body; a JSON body of millions of tiny values is refused after a few
// thousand, so four at once cost little more than their bytes; forms and malformed bodies say why.
TEST_F(ServeTest, RequestsAreBoundedWhileTheyAreRead) {
  StartServer();
  const std::string post =
      "POST /api/search HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nConnection: close\r\n";
  std::string r = RawExchange(port_, post + "Content-Length: -1\r\n\r\n");
  EXPECT_NE(r.find("HTTP/1.1 400"), std::string::npos) << r;
  EXPECT_NE(r.find("Content-Length must be a number of bytes, not \\\"-1\\\""), std::string::npos) << r;
  r = RawExchange(port_, post + "Content-Length: 99999999999999\r\n\r\n");
  EXPECT_NE(r.find("HTTP/1.1 413"), std::string::npos) << r;
  EXPECT_NE(r.find("accepts at most"), std::string::npos) << r;

  std::string body = "{\"terms\": [";
  while (body.size() < (size_t{30} << 20)) body += "1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,";
  body += "1]}";
  const int64_t before = PeakMemory(server_->pid());
  std::vector<std::thread> clients;
  std::atomic<int> refused{0};
  for (int i = 0; i < 4; ++i) {
    clients.emplace_back([&] {
      auto res = Client().Post("/api/search", body, "application/json");
      if (res && res->status == 400 && res->body.find("more values than a search request") != std::string::npos) {
        ++refused;
      }
    });
  }
  for (std::thread& t : clients) t.join();
  EXPECT_EQ(refused, 4);
  const int64_t growth = PeakMemory(server_->pid()) - before;
  // Four bodies of 30 MiB are 120 MiB as bytes; building them as JSON took 1.8 GB each.
  EXPECT_LT(growth, int64_t{700} << 20) << "the server grew by " << growth / (1 << 20) << " MiB";
  std::printf("[ measured ] 4 concurrent 30 MiB bodies of tiny terms: peak memory +%lld MiB\n",
              static_cast<long long>(growth >> 20));

  for (const auto& [parts, says] : std::vector<std::pair<int, std::string>>{
           {100, "the form has 100 parts; a search has at most 80"}, {5000, "or more than 1024 parts"}}) {
    httplib::MultipartFormDataItems many;
    for (int i = 0; i < parts; ++i) many.push_back({"k", "1", "", ""});
    auto form = Client().Post("/api/search", many);
    ASSERT_TRUE(form);
    EXPECT_EQ(form->status, 400);
    EXPECT_NE(form->body.find(says), std::string::npos) << form->body;
  }
  const std::string broken = "--b\r\nContent-Disposition: form-data; name=\"q\"\r\n\r\ncat\r\n";  // no closing boundary
  r = RawExchange(port_,
                  "POST /api/search HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: "
                  "multipart/form-data; boundary=b\r\nContent-Length: " +
                      std::to_string(broken.size()) + "\r\n\r\n" + broken);
  EXPECT_NE(r.find("HTTP/1.1 400"), std::string::npos) << r;
  EXPECT_NE(r.find("multipart/form-data body cannot be read"), std::string::npos) << r;
  // The server is still well.
  EXPECT_EQ(Get("/healthz").first, 200);
}

// A connection to the server from `source` (another loopback address than the test's own requests).
int ConnectFrom(const char* source, int port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in from{};
  from.sin_family = AF_INET;
  ::inet_pton(AF_INET, source, &from.sin_addr);
  sockaddr_in to{};
  to.sin_family = AF_INET;
  to.sin_port = htons(static_cast<uint16_t>(port));
  to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&from), sizeof(from)) != 0 ||
      ::connect(fd, reinterpret_cast<sockaddr*>(&to), sizeof(to)) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

// 80 connections dripping a header byte every 0.3 s (faster than any per-read timeout) cannot stop
// the server answering others: after a second, all but 16 of them (the per-client cap) are closed,
// and those 16 when their header deadline passes; a SIGTERM meanwhile ends the server in seconds.
TEST_F(ServeTest, SlowClientsCannotStopTheServer) {
  StartServer({"--header-timeout", "3"});
  std::vector<int> slow;
  for (int i = 0; i < 80; ++i) {
    const int fd = ConnectFrom("127.0.0.2", port_);
    ASSERT_GE(fd, 0);
    timeval tv{0, 200'000};
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    slow.push_back(fd);
  }
  std::atomic<bool> dripping{true};
  std::thread drip([&] {
    const std::string head = "GET /healthz HTTP/1.1\r\nX-Slow: ";
    for (int fd : slow) (void)::send(fd, head.data(), head.size(), MSG_NOSIGNAL);
    while (dripping) {
      for (int fd : slow) (void)::send(fd, "x", 1, MSG_NOSIGNAL);
      std::this_thread::sleep_for(std::chrono::milliseconds(300));
    }
  });
  // Others are answered all along: at most about a second late while the burst holds every worker.
  for (int i = 0; i < 8; ++i) {
    const auto t0 = Clock::now();
    EXPECT_EQ(Get("/healthz").first, 200);
    EXPECT_LT(std::chrono::duration<double>(Clock::now() - t0).count(), 2.0);
    std::this_thread::sleep_for(std::chrono::milliseconds(400));
  }
  // By then (3.2 s) every slow connection has been closed: 64 over the cap, 16 at their deadline.
  int closed = 0;
  const auto deadline = Clock::now() + std::chrono::seconds(3);
  std::vector<bool> done(slow.size(), false);
  while (Clock::now() < deadline && closed < static_cast<int>(slow.size())) {
    for (size_t i = 0; i < slow.size(); ++i) {
      char buf[512];
      if (done[i]) continue;
      const ssize_t n = ::recv(slow[i], buf, sizeof(buf), 0);
      if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)) {
        ++closed;
        done[i] = true;
      }
    }
  }
  EXPECT_EQ(closed, 80);
  dripping = false;
  drip.join();
  for (int fd : slow) ::close(fd);

  // Held again, then SIGTERM: the server leaves without waiting for them.
  slow.clear();
  for (int i = 0; i < 16; ++i) {
    slow.push_back(ConnectFrom("127.0.0.2", port_));
    (void)::send(slow.back(), "GET /", 5, MSG_NOSIGNAL);
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  const auto t0 = Clock::now();
  server_->Signal(SIGTERM);
  EXPECT_EQ(server_->Wait(), 0) << server_->Err();
  EXPECT_LT(std::chrono::duration<double>(Clock::now() - t0).count(), 5.0);
  server_.reset();
  for (int fd : slow) ::close(fd);
}

// A full disk stops writing, not serving: searches are answered, /healthz says 503 with the reason,
// the images wait; once space is freed they are written, and no snapshot is left short.
TEST_F(ServeTest, ADiskFullStopsWritesNotSearchesAndResumes) {
  const std::string small = dir_ + "/small";
  fs::create_directories(small);
  if (::mount("tmpfs", small.c_str(), "tmpfs", 0, "size=6m") != 0) {
    GTEST_SKIP() << "cannot mount a small tmpfs here (" << std::strerror(errno)
                 << "): the full disk is tested where the tests run as root";
  }
  struct Unmount {
    std::string at;
    ~Unmount() { ::umount2(at.c_str(), MNT_DETACH); }
  } unmount{small};
  db_ = small + "/db";
  StartServer();
  auto status_of = [&] { return Get("/api/status").second; };
  ASSERT_EQ(status_of()["collection"]["indexed"], 12);
  {
    std::ofstream filler(small + "/filler", std::ios::binary);
    const std::string block(1 << 16, '\0');
    while (filler.write(block.data(), block.size()) && filler.flush()) {
    }
  }
  for (int i = 20; i < 26; ++i) testing::WriteFile(root_ + "/new" + std::to_string(i) + ".jpg", JpegBytes(i));
  auto wait_for = [&](const std::function<bool()>& done) {
    const auto deadline = Clock::now() + std::chrono::seconds(60);
    while (!done() && Clock::now() < deadline) std::this_thread::sleep_for(std::chrono::milliseconds(100));
    return done();
  };
  json health;
  EXPECT_TRUE(wait_for([&] {
    auto [code, body] = Get("/healthz");
    health = body;
    return code == 503;
  })) << health.dump();
  EXPECT_NE(health.value("error", "").find("full"), std::string::npos) << health.dump();
  EXPECT_NE(status_of()["ingest"].value("write_error", ""), "");
  EXPECT_EQ(Get("/api/search?q=a+photo&k=5").first, 200);  // searching goes on
  fs::remove(small + "/filler");
  EXPECT_TRUE(wait_for([&] { return Get("/healthz").first == 200 && status_of()["collection"]["indexed"] == 18; }))
      << status_of().dump();
  StopServer();
  for (const auto& e : fs::directory_iterator(db_)) {
    if (e.path().filename().string().starts_with("ann.hnsw") && e.path().extension() != ".lock") {
      EXPECT_GT(e.file_size(), 0u) << e.path();
    }
  }
}

TEST_F(ServeTest, BadRequestsGetClearErrors) {
  StartServer();
  struct Case {
    std::string method, path, body, type;
    int status;
    std::string error;  // a substring of the JSON error
  };
  const std::string big(33 << 20, 'x');
  const std::string truncated = JpegBytes(1).substr(0, 300);
  const std::vector<Case> cases = {
      {"GET", "/api/search?q=dog&k=0", "", "", 400, "k must be between 1 and 1000"},
      {"GET", "/api/search?q=dog&k=5000", "", "", 400, "k must be between 1 and 1000"},
      {"GET", "/api/search?q=dog&k=abc", "", "", 400, "k must be an integer"},
      {"GET", "/api/search?q=dog&k=600&offset=600", "", "", 400, "k + offset"},
      {"GET", "/api/search?q=dog&min_score=2", "", "", 400, "min_score"},
      {"GET", "/api/search?q=dog&under=relative/path", "", "", 400, "absolute"},
      {"GET", "/api/search?q=dog&after=yesterday", "", "", 400, "after must be a date"},
      {"GET", "/api/search?q=dog&after=2024-02-30x", "", "", 400, "after"},
      {"GET", "/api/search?q=dog&after=2024-01-02&before=2024-01-01", "", "", 400, "earlier"},
      {"GET", "/api/search?q=dog&format=psd", "", "", 400, "unknown format"},
      {"GET", "/api/search?q=dog&colour=red", "", "", 400, "unknown parameter \"colour\""},
      {"GET", "/api/search?q=", "", "", 400, "q is empty"},
      {"POST", "/api/search", "{\"q\": \"" + std::string(3000, 'a') + "\"}", "application/json", 400,
       "2000 characters"},
      {"GET", "/api/search", "", "", 400, "nothing to search for"},
      {"GET", "/api/search?similar=999999", "", "", 404, "no image with id 999999"},
      {"POST", "/api/search", "{not json", "application/json", 400, "not valid JSON"},
      {"POST", "/api/search", "[1,2]", "application/json", 400, "must be a JSON object"},
      {"POST", "/api/search", R"({"q": "dog", "colour": "red"})", "application/json", 400, "unknown field \"colour\""},
      {"POST", "/api/search", R"({"q": "dog", "k": "many"})", "application/json", 400, "k must be an integer"},
      {"POST", "/api/search", R"({"terms": [{"text": "dog", "id": 3}]})", "application/json", 400, "exactly one of"},
      {"POST", "/api/search", R"({"terms": [{"text": "dog", "weight": 0}]})", "application/json", 400, "weight"},
      {"POST", "/api/search", R"({"terms": [{"txt": "dog"}]})", "application/json", 400, "unknown field terms[0].txt"},
      {"POST", "/api/search", R"({"image": "%%%not base64"})", "application/json", 400, "not valid base64"},
      {"POST", "/api/search", R"({"image": "aGVsbG8gd29ybGQ="})", "application/json", 400, "not an image"},
      {"POST", "/api/search", R"({"q": "dog"})", "text/plain", 415, "application/json or multipart"},
      {"POST", "/api/search", big, "application/json", 413, "too large"},
      {"GET", "/api/images/999999", "", "", 404, "no image with id"},
      {"GET", "/api/images/99999999999999999999999", "", "", 404, "no image"},
      {"GET", "/api/images/1/thumbnail?size=5", "", "", 400, "size must be"},
      {"GET", "/api/images/1/thumbnail?width=5", "", "", 400, "unknown parameter"},
      {"GET", "/api/images/1/similar?q=dog", "", "", 400, "unknown parameter \"q\""},
      {"GET", "/api/nothing-here", "", "", 404, "no such endpoint"},
      {"POST", "/api/rescan", "{\"path\": 3}", "application/json", 400, "path must be"},
      {"POST", "/api/rescan", "{\"path\": \"/elsewhere\"}", "application/json", 400, "not under a watched folder"},
      {"POST", "/api/rescan", "{\"folder\": \"/x\"}", "application/json", 400, "unknown field"},
  };
  for (const Case& c : cases) {
    auto res = c.method == "GET" ? Client().Get(c.path) : Client().Post(c.path, c.body, c.type);
    ASSERT_TRUE(res) << c.method << " " << c.path;
    EXPECT_EQ(res->status, c.status) << c.method << " " << c.path << ": " << res->body.substr(0, 200);
    const json j = json::parse(res->body, nullptr, false);
    ASSERT_TRUE(j.is_object() && j.contains("error")) << c.path << ": " << res->body.substr(0, 200);
    EXPECT_NE(j["error"].get<std::string>().find(c.error), std::string::npos)
        << c.method << " " << c.path << ": " << j["error"];
  }
  // A truncated upload is refused with the decoder's reason; a bad multipart field likewise.
  httplib::MultipartFormDataItems form = {{"image", truncated, "cut.jpg", "image/jpeg"}};
  auto res = Client().Post("/api/search", form);
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 400) << res->body;
  EXPECT_NE(res->body.find("uploaded image"), std::string::npos) << res->body;
  httplib::MultipartFormDataItems form2 = {{"q", "dog", "", ""}, {"k", "-1", "", ""}};
  EXPECT_EQ(Client().Post("/api/search", form2)->status, 400);
  // And the server is still healthy, with nothing stored lost.
  EXPECT_EQ(Get("/healthz").first, 200);
  EXPECT_EQ(Get("/api/status").second["collection"]["indexed"], 12);
}

// The indexed folder itself replaced by a link to another folder holding files of the same names:
// the server serves none of them, and the watcher neither scans through the link nor drops what the
// folder held.
TEST_F(ServeTest, AFolderSwappedForALinkIsNeitherServedNorScanned) {
  StartServer();
  const int64_t id = IdOf("img5.jpg");
  ASSERT_EQ(Get("/api/images/" + std::to_string(id) + "/info").first, 200);
  const std::string outside = dir_ + "/outside";
  fs::create_directories(outside);
  ASSERT_EQ(::chmod(outside.c_str(), 0700), 0);
  testing::WriteFile(outside + "/img5.jpg", JpegBytes(77));
  testing::WriteFile(outside + "/secret.jpg", JpegBytes(78));
  fs::rename(root_, dir_ + "/pics.old");
  fs::create_directory_symlink(outside, root_);

  for (const std::string suffix : {"", "/thumbnail"}) {
    auto [code, body] = Get("/api/images/" + std::to_string(id) + suffix);
    EXPECT_EQ(code, 403) << suffix << " " << body.dump();
  }
  const json status = RescanAndWait();
  EXPECT_EQ(status["collection"]["indexed"], 12) << status.dump();
  ASSERT_EQ(status["ingest"]["unavailable"].size(), 1u) << status.dump();  // its images are offline
  EXPECT_EQ(status["ingest"]["unavailable"][0]["path"], root_);
  EXPECT_EQ(IdOf("img5.jpg"), id);
  auto c = OpenCollection(db_, nullptr, CollectionOptions{.read_only = true, .create_if_missing = false});
  ASSERT_TRUE(c.ok());
  auto secret = (*c)->GetByPath(root_ + "/secret.jpg");
  ASSERT_TRUE(secret.ok());
  EXPECT_FALSE(secret->has_value()) << "a file behind the link was indexed";
  // Still refused after the gate's periodic re-reading of the roots.
  std::this_thread::sleep_for(std::chrono::seconds(11));
  EXPECT_EQ(Get("/api/images/" + std::to_string(id)).first, 403);
  // Restarting does not make the link acceptable either.
  StopServer();
  StartServer({}, /*watch=*/false);
  EXPECT_EQ(Get("/api/images/" + std::to_string(id)).first, 403);
}

// A folder the watcher cannot see (here a mount point with nothing mounted) keeps its images: they
// are still found, marked offline in results, their info and the status, until it comes back.
TEST_F(ServeTest, ImagesOfAFolderThatCannotBeSeenAreShownOffline) {
  StartServer();
  auto offline_hits = [&] {
    auto [code, body] = Get("/api/search?q=a+photo&k=20");
    EXPECT_EQ(code, 200) << body.dump();
    int offline = 0;
    for (const json& hit : body["results"]) offline += hit.value("offline", false) ? 1 : 0;
    EXPECT_EQ(body["results"].size(), 12u);
    return offline;
  };
  EXPECT_EQ(offline_hits(), 0);
  const int64_t id = IdOf("sub/img1.jpg");

  fs::rename(root_, dir_ + "/pics.away");
  fs::create_directory(root_);
  json status = RescanAndWait();
  ASSERT_EQ(status["ingest"]["unavailable"].size(), 1u) << status.dump();
  EXPECT_EQ(status["ingest"]["unavailable"][0]["path"], root_);
  EXPECT_NE(status["ingest"]["unavailable"][0]["reason"].get<std::string>().find("is missing or empty"),
            std::string::npos)
      << status.dump();
  EXPECT_EQ(status["collection"]["indexed"], 12);
  EXPECT_EQ(offline_hits(), 12);
  EXPECT_EQ(Get("/api/images/" + std::to_string(id) + "/info").second.value("offline", false), true);

  fs::remove(root_);
  fs::rename(dir_ + "/pics.away", root_);
  status = RescanAndWait();
  EXPECT_EQ(status["ingest"]["unavailable"].size(), 0u) << status.dump();
  EXPECT_EQ(offline_hits(), 0);
  EXPECT_FALSE(Get("/api/images/" + std::to_string(id) + "/info").second.contains("offline"));
  EXPECT_EQ(status["ingest"]["since_start"]["embedded"], 12);  // nothing embedded again
}

TEST_F(ServeTest, FilesOnlyFromInsideTheIndexedFolders) {
  // A large file is streamed in pieces; it must arrive whole.
  testing::WriteFile(root_ + "/big.jpg", JpegBytes(7, 2400, 1800));
  ASSERT_GT(fs::file_size(root_ + "/big.jpg"), 256u << 10);
  // Indexed first, served without a watcher: the server alone must refuse what now leads outside.
  // (Without text recognition, which spends half a minute on the big picture's stripes.)
  ASSERT_EQ(testing::RunCommand(
                {ImgsearchBin(), "index", "--db", db_, "--model", TestModelDir(), "--offline", "--no-ocr", root_})
                .exit_code,
            0);
  const std::string outside = dir_ + "/outside";
  fs::create_directories(outside + "/sub");
  testing::WriteFile(outside + "/secret.jpg", JpegBytes(99));
  testing::WriteFile(outside + "/sub/img0.jpg", JpegBytes(98));
  const int64_t swapped = IdOf("img7.jpg");
  const int64_t in_sub = IdOf("sub/img0.jpg");
  const int64_t fifo = IdOf("img8.jpg");
  const int64_t fine = IdOf("img9.jpg");
  StartServer({}, /*watch=*/false);

  // A file replaced by a symbolic link to a file outside.
  fs::remove(root_ + "/img7.jpg");
  fs::create_symlink(outside + "/secret.jpg", root_ + "/img7.jpg");
  // A folder replaced by a link to a folder outside holding a file of the same name.
  fs::rename(root_ + "/sub", dir_ + "/sub-moved");
  fs::create_directory_symlink(outside + "/sub", root_ + "/sub");
  // A FIFO in an image's place (must not hang the request).
  fs::remove(root_ + "/img8.jpg");
  ASSERT_EQ(::mkfifo((root_ + "/img8.jpg").c_str(), 0644), 0);

  for (int64_t id : {swapped, in_sub}) {
    for (const std::string suffix : {"", "/thumbnail"}) {
      auto [code, body] = Get("/api/images/" + std::to_string(id) + suffix);
      EXPECT_EQ(code, 403) << id << suffix << " " << body.dump();
      EXPECT_NE(body["error"].get<std::string>().find("outside the indexed folders"), std::string::npos);
    }
  }
  EXPECT_EQ(Get("/api/images/" + std::to_string(fifo)).first, 403);
  auto big = Client().Get("/api/images/" + std::to_string(IdOf("big.jpg")));
  ASSERT_TRUE(big);
  EXPECT_EQ(big->status, 200);
  EXPECT_TRUE(big->body == testing::ReadFile(root_ + "/big.jpg")) << big->body.size() << " bytes";
  auto ok = Client().Get("/api/images/" + std::to_string(fine));
  EXPECT_EQ(ok->status, 200);
  EXPECT_EQ(ok->body, testing::ReadFile(root_ + "/img9.jpg"));
  // A link inside the folders to a file inside them is fine.
  fs::remove(root_ + "/img9.jpg");
  fs::create_symlink(root_ + "/img10.jpg", root_ + "/img9.jpg");
  EXPECT_EQ(Get("/api/images/" + std::to_string(fine)).first, 200);
  // Without a watcher, rescan says why it cannot.
  EXPECT_EQ(PostJson("/api/rescan", "").first, 409);
}

TEST_F(ServeTest, TokenGuardsRescanAndMetricsAndRescanFindsChanges) {
  // Polling once an hour: only a rescan can find what changes meanwhile.
  ::setenv("IMGSEARCH_TOKEN", "s3cret", 1);
  StartServer({"--poll", "3600"});
  ::unsetenv("IMGSEARCH_TOKEN");
  EXPECT_EQ(Get("/api/search?q=dog").first, 200);  // reading stays open
  EXPECT_EQ(Get("/metrics").first, 401);
  EXPECT_EQ(Get("/metrics", {{"Authorization", "Bearer wrong"}}).first, 401);
  EXPECT_EQ(PostJson("/api/rescan", "").first, 401);
  EXPECT_EQ(PostJson("/api/rescan", "", "application/json", {{"Authorization", "Bearer nope"}}).first, 401);

  testing::WriteFile(root_ + "/sub/new.jpg", JpegBytes(50));
  fs::remove(root_ + "/img6.jpg");
  auto [code, body] = PostJson("/api/rescan", R"({"path": ")" + root_ + R"("})", "application/json",
                               {{"Authorization", "Bearer s3cret"}});
  EXPECT_EQ(code, 202) << body.dump();
  const auto deadline = Clock::now() + std::chrono::seconds(60);
  json status;
  while (Clock::now() < deadline) {
    status = Get("/api/status").second;
    // Done: the removal and the new image both written, nothing left in flight.
    if (status["collection"]["indexed"] == 12 && status["ingest"]["since_start"]["removed"] == 1 &&
        status["ingest"]["since_start"]["added"] == 13 && status["ingest"]["idle"] == true) {
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_EQ(status["collection"]["indexed"], 12) << status.dump();
  EXPECT_EQ(status["ingest"]["since_start"]["removed"], 1) << status.dump();
  EXPECT_EQ(status["ingest"]["since_start"]["added"], 13) << status.dump();
  EXPECT_EQ(status["ingest"]["mode"], "polling");
  EXPECT_GE(status["ingest"]["rescans"].get<int>(), 1);

  auto metrics = Client().Get("/metrics", {{"Authorization", "Bearer s3cret"}});
  ASSERT_EQ(metrics->status, 200);
  EXPECT_NE(metrics->body.find("imgsearch_images{state=\"indexed\"} 12\n"), std::string::npos) << metrics->body;
  EXPECT_NE(metrics->body.find("imgsearch_http_requests_total{route=\"rescan\",code=\"401\"} 2"), std::string::npos)
      << metrics->body;
  EXPECT_NE(metrics->body.find("# TYPE imgsearch_http_request_seconds histogram"), std::string::npos);
  EXPECT_NE(metrics->body.find("imgsearch_http_request_seconds_bucket{route=\"search\",le=\"+Inf\"} 1"),
            std::string::npos);
}

TEST_F(ServeTest, BurstsOfNewConnectionsAndASecondServerOnThePort) {
  StartServer({}, /*watch=*/false);
  // 64 clients connecting at the same moment (a page loading its thumbnails): none may be dropped
  // from the listen queue (a dropped connection costs a 1 s SYN retransmit, or fails).
  constexpr int kClients = 64;
  std::atomic<int> ready{0}, ok{0}, slow{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < kClients; ++i) {
    threads.emplace_back([&] {
      ++ready;
      while (ready.load() < kClients) std::this_thread::yield();
      const auto t0 = Clock::now();
      auto res = Client().Get("/healthz");
      if (res && res->status == 200) ++ok;
      if (Clock::now() - t0 > std::chrono::milliseconds(900)) ++slow;
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(ok.load(), kClients);
  EXPECT_EQ(slow.load(), 0) << "connections waited for a SYN retransmit: the listen backlog overflowed";

  // A second server on the same port is refused, not silently sharing it.
  Process second({ImgsearchBin(), "serve", "--db", dir_ + "/db2", "--model", TestModelDir(), "--offline", "--listen",
                  "127.0.0.1:" + std::to_string(port_)});
  const auto deadline = Clock::now() + std::chrono::seconds(30);
  while (second.Running() && Clock::now() < deadline) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  ASSERT_FALSE(second.Running()) << "a second server started on the same port: " << second.Out();
  EXPECT_EQ(second.Wait(), 5);  // unavailable: the port is in use
  EXPECT_NE(second.Err().find("cannot listen on 127.0.0.1:" + std::to_string(port_)), std::string::npos)
      << second.Err();
}

// File names are bytes: one that is not UTF-8 is ranked, described and served without breaking a
// response, with its exact bytes in path_bytes; a name with quotes cannot add a header parameter.
TEST_F(ServeTest, FileNamesOfAnyBytesAreAnsweredLosslessly) {
  const std::string odd = root_ + "/bad\xff\xfename.jpg";
  const std::string quoted = root_ + "/a\"b;c.jpg";
  testing::WriteFile(odd, JpegBytes(41));
  testing::WriteFile(quoted, JpegBytes(42));
  StartServer();
  auto [code, body] = Get("/api/search?q=x&k=50&exact=1");
  ASSERT_EQ(code, 200) << body.dump();
  bool found = false;
  for (const json& r : body["results"]) {
    if (!r.contains("path_bytes")) continue;
    found = true;
    EXPECT_EQ(r["path"], root_ + "/bad\\xff\\xfename.jpg");
    const std::string b64 = r["path_bytes"].get<std::string>();
    EXPECT_EQ(b64, testing::Base64(odd));
    auto [info_code, info] = Get("/api/images/" + std::to_string(r["id"].get<int64_t>()) + "/info");
    EXPECT_EQ(info_code, 200);
    EXPECT_EQ(info["path_bytes"], b64);
    auto file = Client().Get("/api/images/" + std::to_string(r["id"].get<int64_t>()));
    ASSERT_TRUE(file);
    EXPECT_EQ(file->status, 200);
    EXPECT_EQ(file->body, testing::ReadFile(odd));
    EXPECT_NE(
        RawResponseHead(port_, "/api/images/" + std::to_string(r["id"].get<int64_t>()))
            .find("\r\nContent-Disposition: inline; filename=\"bad__name.jpg\"; filename*=UTF-8''bad%FF%FEname.jpg"),
        std::string::npos);
  }
  EXPECT_TRUE(found) << body.dump();
  const std::string head = RawResponseHead(port_, "/api/images/" + std::to_string(IdOf("a\"b;c.jpg")));
  EXPECT_NE(head.find("\r\nContent-Disposition: inline; filename=\"a_b_c.jpg\"; filename*=UTF-8''a%22b%3Bc.jpg"),
            std::string::npos)
      << head;
  EXPECT_EQ(Get("/api/status").first, 200);
  // Bad UTF-8 in a request is the client's mistake, named.
  for (const std::string bad : {"/api/search?q=%ff", "/api/search?q=x&k=%ff", "/api/search?q=x&format=%ff",
                                "/api/search?q=x&under=/tmp/%ff", "/api/search?q=x&%ff=1"}) {
    auto [c, b] = Get(bad);
    EXPECT_EQ(c, 400) << bad << " " << b.dump();
    EXPECT_NE(b["error"].get<std::string>().find("UTF-8"), std::string::npos) << bad << " " << b.dump();
  }
}

TEST_F(ServeTest, StatusReportsFailuresAndConcurrentQueriesAgree) {
  testing::WriteFile(root_ + "/broken.jpg", JpegBytes(3).substr(0, 200));
  StartServer();
  const json status = Get("/api/status").second;
  EXPECT_EQ(status["collection"]["indexed"], 12);
  EXPECT_EQ(status["collection"]["failed"], 1);
  ASSERT_EQ(status["failures"].size(), 1u) << status.dump();
  EXPECT_EQ(status["failures"][0]["path"], root_ + "/broken.jpg");
  EXPECT_FALSE(status["failures"][0]["reason"].get<std::string>().empty());
  EXPECT_EQ(status["model"]["name"], "tiny-model");
  EXPECT_EQ(status["roots"], json::array({root_}));
  EXPECT_TRUE(status["ingest"]["idle"].get<bool>());

  // Many clients at once, each asking different texts: every answer equals the one asked alone.
  std::vector<std::string> texts;
  for (int i = 0; i < 48; ++i) texts.push_back("query number " + std::to_string(i) + " about dogs");
  std::vector<json> alone;
  for (const std::string& t : texts) {
    alone.push_back(PostJson("/api/search", json{{"q", t}, {"k", 5}}.dump()).second["results"]);
  }
  // The answers above came from the cache on a second ask; new spellings make the model work again.
  std::vector<json> together(texts.size());
  std::vector<std::thread> threads;
  for (int w = 0; w < 16; ++w) {
    threads.emplace_back([&, w] {
      for (size_t i = static_cast<size_t>(w); i < texts.size(); i += 16) {
        together[i] = PostJson("/api/search", json{{"q", texts[i] + " "}, {"k", 5}}.dump()).second["results"];
      }
    });
  }
  for (auto& t : threads) t.join();
  for (size_t i = 0; i < texts.size(); ++i) {
    ASSERT_EQ(together[i].size(), 5u) << i;
    for (size_t r = 0; r < 5; ++r) {
      EXPECT_EQ(together[i][r]["id"], alone[i][r]["id"]) << texts[i];
    }
  }
  const json after = Get("/api/status").second["server"];
  EXPECT_EQ(after["query_texts"], 96);
  std::printf("[ info ] 48 concurrent texts took %d model calls (largest batch %d)\n",
              after["query_text_batches"].get<int>() - 48, after["query_largest_batch"].get<int>());
}

}  // namespace
}  // namespace imgsearch
