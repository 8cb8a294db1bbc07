// The imgsearch binary as other tools call it: output contract, order of inputs, exit codes.
#include <gtest/gtest.h>

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <filesystem>
#include <set>
#include <sstream>

#include <nlohmann/json.hpp>

#include "imgsearch/image.h"
#include "test_util.h"

namespace imgsearch {
namespace {

using testing::ImgsearchBin;
using testing::JsonLines;
using testing::RunCommand;
using testing::TestModelDir;

std::vector<std::string> MakeLibrary(const std::string& dir);

// A valid 1×1 PNG: decoders are covered by the image tests; the CLI needs only something real.
std::string WriteTinyPng(const std::string& dir) {
  static const unsigned char kPng[] = {
      0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A, 0x00, 0x00, 0x00, 0x0D, 0x49, 0x48, 0x44, 0x52, 0x00, 0x00,
      0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x02, 0x00, 0x00, 0x00, 0x90, 0x77, 0x53, 0xDE, 0x00, 0x00, 0x00,
      0x0C, 0x49, 0x44, 0x41, 0x54, 0x08, 0xD7, 0x63, 0xF8, 0xCF, 0xC0, 0x00, 0x00, 0x03, 0x01, 0x01, 0x00, 0x18,
      0xDD, 0x8D, 0xB0, 0x00, 0x00, 0x00, 0x00, 0x49, 0x45, 0x4E, 0x44, 0xAE, 0x42, 0x60, 0x82};
  const std::string path = dir + "/pixel.png";
  testing::WriteFile(path, std::string(reinterpret_cast<const char*>(kPng), sizeof(kPng)));
  return path;
}

TEST(Cli, EmbedKeepsCommandLineOrderAndReportsBadImages) {
  const std::string dir = testing::MakeTempDir();
  const std::string png = WriteTinyPng(dir);
  const std::string bad = dir + "/notes.jpg";
  testing::WriteFile(bad, "this is text, not a JPEG");
  auto r = RunCommand({ImgsearchBin(), "embed", "--model", TestModelDir(), "--image", png, "--text", "a cat", "--image",
                       bad, "--text", "a dog", "--image", dir + "/missing.png"});
  EXPECT_EQ(r.exit_code, 1) << r.err;
  const auto lines = JsonLines(r.out);
  ASSERT_EQ(lines.size(), 5u) << r.out;
  EXPECT_EQ(lines[0]["image"], png);
  EXPECT_EQ(lines[0]["embedding"].size(), 48u);
  EXPECT_EQ(lines[1]["text"], "a cat");
  ASSERT_GE(lines[1]["ids"].size(), 2u);
  EXPECT_GT(lines[1]["ids"].back().get<int>(), lines[1]["ids"][1].get<int>());  // ends with EOT, the top id
  EXPECT_EQ(lines[1]["embedding"].size(), 48u);
  EXPECT_EQ(lines[2]["image"], bad);
  EXPECT_NE(lines[2]["error"].get<std::string>().find("not an image"), std::string::npos);
  EXPECT_EQ(lines[3]["text"], "a dog");
  EXPECT_NE(lines[4]["error"].get<std::string>().find("missing.png"), std::string::npos);
  double norm = 0;
  for (double v : lines[3]["embedding"]) norm += v * v;
  EXPECT_NEAR(norm, 1.0, 1e-5);
}

TEST(Cli, EmbedExitCodes) {
  auto ok = RunCommand({ImgsearchBin(), "embed", "--model", TestModelDir(), "--text", "x"});
  EXPECT_EQ(ok.exit_code, 0) << ok.err;
  auto no_model = RunCommand({ImgsearchBin(), "embed", "--model", "/nonexistent", "--text", "x"});
  EXPECT_EQ(no_model.exit_code, 2);
  EXPECT_NE(no_model.err.find("/nonexistent"), std::string::npos) << no_model.err;
  auto usage = RunCommand({ImgsearchBin(), "embed", "--text", "x"},
                          {"XDG_CACHE_HOME=" + testing::MakeTempDir(), "IMGSEARCH_MODEL="});
  EXPECT_EQ(usage.exit_code, 2);
  EXPECT_NE(usage.err.find("imgsearch model pull"), std::string::npos) << usage.err;
  auto nothing = RunCommand({ImgsearchBin(), "embed", "--model", TestModelDir()});
  EXPECT_EQ(nothing.exit_code, 2);
  auto bad_precision =
      RunCommand({ImgsearchBin(), "embed", "--model", TestModelDir(), "--precision", "int3", "--text", "x"});
  EXPECT_EQ(bad_precision.exit_code, 2);
  EXPECT_NE(bad_precision.err.find("int3"), std::string::npos);
  auto auto_precision =
      RunCommand({ImgsearchBin(), "embed", "--model", TestModelDir(), "--precision", "auto", "--text", "x"});
  EXPECT_EQ(auto_precision.exit_code, 0) << auto_precision.err;
}

TEST(Cli, TokenizePreprocessAndModelInfo) {
  auto tok = RunCommand({ImgsearchBin(), "tokenize", "--model", TestModelDir(), "a photo of a cat", ""});
  ASSERT_EQ(tok.exit_code, 0) << tok.err;
  const auto lines = JsonLines(tok.out);
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_EQ(lines[1]["ids"].size(), 2u);  // SOT, EOT

  const std::string dir = testing::MakeTempDir();
  const std::string out = dir + "/crop.png";
  auto pre = RunCommand({ImgsearchBin(), "preprocess", WriteTinyPng(dir), "--out", out});
  ASSERT_EQ(pre.exit_code, 0) << pre.err;
  EXPECT_TRUE(std::filesystem::exists(out));
  auto pre_bad = RunCommand({ImgsearchBin(), "preprocess", dir + "/none.png", "--out", out});
  EXPECT_NE(pre_bad.exit_code, 0);

  auto info = RunCommand({ImgsearchBin(), "model", "info", "--model", TestModelDir(), "--json"});
  ASSERT_EQ(info.exit_code, 0) << info.err;
  const auto j = nlohmann::json::parse(info.out);
  EXPECT_EQ(j["embedding_dim"], 48);
  EXPECT_EQ(j["vision"]["layers"], 2);
  EXPECT_EQ(j["dtype"], "F32");
  auto text = RunCommand({ImgsearchBin(), "model", "info", "--model", TestModelDir()});
  EXPECT_NE(text.out.find("embedding   48 dimensions"), std::string::npos) << text.out;
}

TEST(Cli, GoldenEmbedReportsTruncatedAndEmbedsTheRest) {
  REQUIRE_GOLDEN(golden);
  std::vector<std::string> argv = {ImgsearchBin(), "embed", "--model", golden + "/tiny-model"};
  for (const char* name : {"rocket.jpg", "truncated.jpg", "camera.png"}) {
    argv.push_back("--image");
    argv.push_back(golden + "/images/" + name);
  }
  auto r = RunCommand(argv);
  EXPECT_EQ(r.exit_code, 1);
  const auto lines = JsonLines(r.out);
  ASSERT_EQ(lines.size(), 3u);
  EXPECT_TRUE(lines[0].contains("embedding"));
  EXPECT_TRUE(lines[1].contains("error"));
  EXPECT_TRUE(lines[2].contains("embedding"));
}

}  // namespace
}  // namespace imgsearch

namespace imgsearch {
namespace {

// A small library of distinct images, and one broken file.
std::vector<std::string> MakeLibrary(const std::string& dir) {
  std::vector<std::string> paths;
  std::filesystem::create_directories(dir + "/lib/sub");
  for (int seed : {1, 2, 3}) {
    Image img(40 + seed, 30 + 2 * seed);
    for (size_t i = 0; i < img.rgb.size(); ++i) img.rgb[i] = static_cast<uint8_t>((i * (seed * 7 + 3)) % 253);
    const std::string out = dir + (seed == 3 ? "/lib/sub/" : "/lib/") + "img" + std::to_string(seed) + ".png";
    EXPECT_TRUE(WritePng(img, out).ok());
    paths.push_back(out);
  }
  testing::WriteFile(dir + "/lib/broken.jpg", std::string("\xFF\xD8\xFF\xE0", 4));
  return paths;
}

// File names are bytes: `list --json`, `stats --json` and `search --json` keep them exactly
// (path_bytes), and plain lines escape them, so a newline or an escape sequence in a name can
// neither split a line nor reach the terminal.
TEST(Cli, FileNamesOfAnyBytesAreListedLosslesslyAndPrintedEscaped) {
  const std::string dir = testing::MakeTempDir();
  MakeLibrary(dir);
  const std::string lib = dir + "/lib";
  const std::string odd = lib + "/bad\xff\xfe\nname\x1b[31m.png";
  std::filesystem::copy_file(lib + "/img1.png", odd);
  std::filesystem::copy_file(lib + "/img2.png", lib + "/x.png");
  std::filesystem::resize_file(lib + "/x.png", 10);  // broken: listed among the failures
  std::filesystem::rename(lib + "/x.png", lib + "/broken\xff.png");
  const std::string db = dir + "/db";
  const auto indexed = RunCommand({ImgsearchBin(), "index", "--db", db, "--model", TestModelDir(), lib});
  ASSERT_EQ(indexed.exit_code, 1) << indexed.err;  // the broken files fail
  EXPECT_EQ(indexed.err.find('\x1b'), std::string::npos) << "an escape sequence reached the terminal";

  const auto list = RunCommand({ImgsearchBin(), "list", "--db", db, "--json"});
  ASSERT_EQ(list.exit_code, 0) << list.err;
  std::set<std::string> exact;
  std::istringstream lines(list.out);
  for (std::string line; std::getline(lines, line);) {
    const auto j = nlohmann::json::parse(line);
    if (j.contains("path_bytes")) exact.insert(j["path_bytes"].get<std::string>());
  }
  EXPECT_TRUE(exact.contains(testing::Base64(odd))) << list.out;
  EXPECT_TRUE(exact.contains(testing::Base64(lib + "/broken\xff.png"))) << list.out;

  const auto plain = RunCommand({ImgsearchBin(), "list", "--db", db});
  ASSERT_EQ(plain.exit_code, 0);
  EXPECT_EQ(std::count(plain.out.begin(), plain.out.end(), '\n'), 6) << plain.out;  // one line per file
  EXPECT_EQ(plain.out.find('\x1b'), std::string::npos);
  EXPECT_NE(plain.out.find(lib + "/bad\\xff\\xfe\\nname\\x1b[31m.png"), std::string::npos) << plain.out;

  const auto stats = RunCommand({ImgsearchBin(), "stats", "--db", db, "--json"});
  ASSERT_EQ(stats.exit_code, 0) << stats.err;
  bool failure_exact = false;
  const auto stats_json = nlohmann::json::parse(stats.out);
  for (const auto& f : stats_json["failures"]) {
    failure_exact |= f.value("path_bytes", "") == testing::Base64(lib + "/broken\xff.png");
  }
  EXPECT_TRUE(failure_exact) << stats.out;

  const auto search = RunCommand(
      {ImgsearchBin(), "search", "--db", db, "--model", TestModelDir(), "--json", "-k", "10", "--exact", "a photo"});
  ASSERT_EQ(search.exit_code, 0) << search.err;
  bool hit_exact = false;
  std::istringstream hits(search.out);
  for (std::string line; std::getline(hits, line);) {
    hit_exact |= nlohmann::json::parse(line).value("path_bytes", "") == testing::Base64(odd);
  }
  EXPECT_TRUE(hit_exact) << search.out;
}

TEST(Cli, IndexSearchStatsList) {
  const std::string dir = testing::MakeTempDir();
  const auto paths = MakeLibrary(dir);
  const std::string db = dir + "/db";
  auto index = RunCommand({ImgsearchBin(), "index", "--db", db, "--model", TestModelDir(), dir + "/lib"});
  EXPECT_EQ(index.exit_code, 1) << index.err;  // one file failed
  EXPECT_NE(index.out.find("3 added"), std::string::npos) << index.out;
  EXPECT_NE(index.out.find("failed: " + dir + "/lib/broken.jpg"), std::string::npos) << index.out;
  auto again = RunCommand({ImgsearchBin(), "index", "--db", db, "--model", TestModelDir(), dir + "/lib"});
  EXPECT_EQ(again.exit_code, 0) << again.err;
  EXPECT_NE(again.out.find("(0 embedded)"), std::string::npos) << again.out;

  auto search = RunCommand({ImgsearchBin(), "search", "--db", db, "--model", TestModelDir(), "a photo", "+", "0.5:cat",
                            "-", "dog", "-k", "2", "--json"});
  ASSERT_EQ(search.exit_code, 0) << search.err;
  auto hits = JsonLines(search.out);
  ASSERT_EQ(hits.size(), 2u);
  EXPECT_GE(hits[0]["score"].get<double>(), hits[1]["score"].get<double>());
  for (const char* key : {"id", "path", "score", "width", "height"}) EXPECT_TRUE(hits[0].contains(key)) << key;

  // By image file, restricted to a folder, and "more like this" without a model.
  auto by_image = RunCommand({ImgsearchBin(), "search", "--db", db, "--model", TestModelDir(), paths[2], "--under",
                              dir + "/lib/sub", "--json"});
  ASSERT_EQ(by_image.exit_code, 0) << by_image.err;
  hits = JsonLines(by_image.out);
  ASSERT_EQ(hits.size(), 1u);
  EXPECT_EQ(hits[0]["path"], paths[2]);
  EXPECT_NEAR(hits[0]["score"].get<double>(), 1.0, 1e-4);
  // More like this leaves the image itself out (as the API does): the other two are the answer.
  auto similar = RunCommand(
      {ImgsearchBin(), "search", "--db", db, "--similar", std::to_string(hits[0]["id"].get<int64_t>()), "-k", "5"});
  ASSERT_EQ(similar.exit_code, 0) << similar.err;
  EXPECT_EQ(similar.out.find(paths[2]), std::string::npos) << similar.out;
  EXPECT_EQ(std::count(similar.out.begin(), similar.out.end(), '\n'), 2) << similar.out;

  auto stats = RunCommand({ImgsearchBin(), "stats", "--db", db, "--json"});
  ASSERT_EQ(stats.exit_code, 0) << stats.err;
  const auto s = nlohmann::json::parse(stats.out);
  EXPECT_EQ(s["indexed"], 3);
  EXPECT_EQ(s["failed"], 1);
  EXPECT_EQ(s["model"]["dim"], 48);
  ASSERT_EQ(s["failures"].size(), 1u);  // with the reason
  EXPECT_EQ(s["failures"][0]["path"], dir + "/lib/broken.jpg");
  EXPECT_FALSE(s["failures"][0]["error"].get<std::string>().empty());

  auto failed = RunCommand({ImgsearchBin(), "list", "--db", db, "--status", "failed", "--json"});
  auto listed = JsonLines(failed.out);
  ASSERT_EQ(listed.size(), 1u);
  EXPECT_EQ(listed[0]["status"], "failed");
  EXPECT_FALSE(listed[0]["error"].get<std::string>().empty());
  auto all = RunCommand({ImgsearchBin(), "list", "--db", db});
  EXPECT_EQ(std::count(all.out.begin(), all.out.end(), '\n'), 4);

  auto dups = RunCommand({ImgsearchBin(), "duplicates", "--db", db, "--min-score", "0.9999", "--json"});
  EXPECT_EQ(dups.exit_code, 0) << dups.err;

  // The grace period for removed content: a bad duration is named; a good one is stored and shown.
  auto bad_keep = RunCommand(
      {ImgsearchBin(), "index", "--db", db, "--model", TestModelDir(), "--keep-removed", "3x", dir + "/lib"});
  EXPECT_EQ(bad_keep.exit_code, 2);
  EXPECT_NE(bad_keep.err.find("--keep-removed takes a duration such as 30d, 12h or 0, not \"3x\""), std::string::npos)
      << bad_keep.err;
  std::filesystem::remove(paths[2]);
  auto keep = RunCommand(
      {ImgsearchBin(), "index", "--db", db, "--model", TestModelDir(), "--keep-removed", "12h", dir + "/lib"});
  EXPECT_EQ(keep.exit_code, 0) << keep.err;
  auto kept = nlohmann::json::parse(RunCommand({ImgsearchBin(), "stats", "--db", db, "--json"}).out);
  EXPECT_EQ(kept["keep_removed"], "12h");
  EXPECT_EQ(kept["kept_vectors"], 1);
  EXPECT_EQ(kept["distinct_vectors"], 2);
  auto shown = RunCommand({ImgsearchBin(), "stats", "--db", db});
  EXPECT_NE(shown.out.find("1 of removed images kept for 12h"), std::string::npos) << shown.out;
}

// A collection records the model it was built with (a folder as an absolute path, a pulled model
// by its name): later commands use it without --model, from any folder; another model is refused
// with a message naming the recorded one.
TEST(Cli, CommandsUseTheModelTheCollectionWasBuiltWith) {
  const std::string dir = testing::MakeTempDir();
  MakeLibrary(dir);
  const std::string db = dir + "/db";
  const std::filesystem::path model = TestModelDir();
  // Indexed with a relative model path, from the model's parent folder.
  auto index = RunCommand({"/bin/sh", "-c",
                           "cd '" + model.parent_path().string() + "' && '" + ImgsearchBin() + "' index --db '" + db +
                               "' --model ./" + model.filename().string() + " '" + dir + "/lib'"});
  EXPECT_EQ(index.exit_code, 1) << index.err;  // the broken file
  // No default model to fall back on: only the recorded one can make these work.
  const std::vector<std::string> no_defaults = {"XDG_CACHE_HOME=" + dir + "/empty-cache", "IMGSEARCH_MODEL="};
  auto search = RunCommand({ImgsearchBin(), "search", "--db", db, "a photo", "--json"}, no_defaults);
  EXPECT_EQ(search.exit_code, 0) << search.err;
  EXPECT_EQ(JsonLines(search.out).size(), 3u);
  auto stats = nlohmann::json::parse(RunCommand({ImgsearchBin(), "stats", "--db", db, "--json"}).out);
  EXPECT_EQ(stats["model"]["source"], std::filesystem::absolute(model).lexically_normal().string());
  auto again = RunCommand({ImgsearchBin(), "index", "--db", db, dir + "/lib"}, no_defaults);
  EXPECT_EQ(again.exit_code, 0) << again.err;
  // Another model is refused, naming where the recorded one is.
  auto refused = RunCommand({ImgsearchBin(), "search", "--db", db, "--model", TestModelDir() + "-2", "cat"});
  EXPECT_EQ(refused.exit_code, 2);
  EXPECT_NE(refused.err.find("from " + stats["model"]["source"].get<std::string>()), std::string::npos) << refused.err;
}

// No arguments list the commands; an unknown one is named, with the closest suggested; -V works.
TEST(Cli, CommandsAreListedAndMistypedOnesNamed) {
  auto none = RunCommand({ImgsearchBin()});
  EXPECT_EQ(none.exit_code, 2);
  for (const char* command : {"index", "watch", "serve", "search", "stats", "list", "model", "worker"}) {
    EXPECT_NE(none.err.find(std::string("  ") + command), std::string::npos) << command << "\n" << none.err;
  }
  EXPECT_NE(none.err.find("Exit codes: 0 done; 1 some inputs failed"), std::string::npos) << none.err;
  auto typo = RunCommand({ImgsearchBin(), "serach", "cat"});
  EXPECT_EQ(typo.exit_code, 2);
  EXPECT_NE(typo.err.find("unknown command \"serach\"; did you mean \"search\"?"), std::string::npos) << typo.err;
  auto far = RunCommand({ImgsearchBin(), "photos"});
  EXPECT_EQ(far.exit_code, 2);
  EXPECT_NE(far.err.find("unknown command \"photos\" (imgsearch --help lists the commands)"), std::string::npos)
      << far.err;
  EXPECT_EQ(RunCommand({ImgsearchBin(), "-V"}).out, std::string("imgsearch ") + IMGSEARCH_VERSION + "\n");
  auto empty_cache = testing::MakeTempDir();
  auto models = RunCommand({ImgsearchBin(), "model", "list", "--json", "--cache", empty_cache});
  EXPECT_EQ(models.exit_code, 0) << models.err;
  EXPECT_EQ(models.out, "[]\n");
}

// A start that fails (a folder that is not there, a port in use, a model that does not load)
// leaves the disk as it was: no collection folder, no lock file.
TEST(Cli, AFailedStartCreatesNothing) {
  const std::string dir = testing::MakeTempDir();
  const std::string db = dir + "/db";
  auto created = [&] { return std::filesystem::exists(db); };
  auto missing = RunCommand({ImgsearchBin(), "index", "--db", db, "--model", TestModelDir(), dir + "/nope"});
  EXPECT_EQ(missing.exit_code, 2);
  EXPECT_NE(missing.err.find(dir + "/nope does not exist"), std::string::npos) << missing.err;
  EXPECT_FALSE(created());
  auto watch = RunCommand({ImgsearchBin(), "serve", "--db", db, "--model", TestModelDir(), "--watch", dir + "/nope"});
  EXPECT_EQ(watch.exit_code, 2) << watch.err;
  EXPECT_FALSE(created());
  auto no_model = RunCommand({ImgsearchBin(), "index", "--db", db, "--model", dir + "/no-model", dir});
  EXPECT_EQ(no_model.exit_code, 2) << no_model.err;
  EXPECT_FALSE(created());
  // A port in use.
  const int taken = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(taken, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  ASSERT_EQ(::listen(taken, 1), 0);
  socklen_t len = sizeof(addr);
  ::getsockname(taken, reinterpret_cast<sockaddr*>(&addr), &len);
  const std::string listen = "127.0.0.1:" + std::to_string(ntohs(addr.sin_port));
  auto busy = RunCommand({ImgsearchBin(), "serve", "--db", db, "--model", TestModelDir(), "--listen", listen});
  ::close(taken);
  EXPECT_EQ(busy.exit_code, 5) << busy.err;
  EXPECT_NE(busy.err.find("cannot listen on " + listen), std::string::npos) << busy.err;
  EXPECT_FALSE(created());
}

TEST(Cli, VersionAndTheCollectionsWriterNamed) {
  auto version = RunCommand({ImgsearchBin(), "--version"});
  EXPECT_EQ(version.exit_code, 0);
  EXPECT_EQ(version.out, std::string("imgsearch ") + IMGSEARCH_VERSION + "\n");
  // A second writer is told who holds the collection, with the "busy, retry later" exit code.
  const std::string dir = testing::MakeTempDir();
  MakeLibrary(dir);
  testing::Process watch({ImgsearchBin(), "watch", "--db", dir + "/db", "--model", TestModelDir(), dir + "/lib"});
  ASSERT_TRUE(watch.WaitForOutput("initial scan done", 120)) << watch.Err();
  auto second = RunCommand({ImgsearchBin(), "index", "--db", dir + "/db", "--model", TestModelDir(), dir + "/lib"});
  EXPECT_EQ(second.exit_code, 5) << second.err;
  EXPECT_NE(second.err.find("is being written by another imgsearch process (pid "), std::string::npos) << second.err;
  EXPECT_NE(second.err.find("watch"), std::string::npos) << second.err;
  // Reading goes on meanwhile.
  EXPECT_EQ(RunCommand({ImgsearchBin(), "stats", "--db", dir + "/db"}).exit_code, 0);
  watch.Signal(SIGTERM);
  EXPECT_EQ(watch.Wait(), 0) << watch.Err();
}

TEST(Cli, SearchErrorsAreClear) {
  const std::string dir = testing::MakeTempDir();
  auto no_db = RunCommand({ImgsearchBin(), "search", "--db", dir + "/none", "--model", TestModelDir(), "cat"});
  EXPECT_EQ(no_db.exit_code, 2);
  EXPECT_NE(no_db.err.find("no collection"), std::string::npos) << no_db.err;
  MakeLibrary(dir);
  RunCommand({ImgsearchBin(), "index", "--db", dir + "/db", "--model", TestModelDir(), dir + "/lib"});
  auto bad_query = RunCommand({ImgsearchBin(), "search", "--db", dir + "/db", "--model", TestModelDir(), "cat", "dog"});
  EXPECT_EQ(bad_query.exit_code, 2);
  EXPECT_NE(bad_query.err.find("+ or -"), std::string::npos) << bad_query.err;
  auto bad_date = RunCommand(
      {ImgsearchBin(), "search", "--db", dir + "/db", "--model", TestModelDir(), "cat", "--after", "yesterday"});
  EXPECT_EQ(bad_date.exit_code, 2);
  EXPECT_NE(bad_date.err.find("yesterday"), std::string::npos);
  auto bad_k = RunCommand({ImgsearchBin(), "search", "--db", dir + "/db", "--model", TestModelDir(), "cat", "-k", "0"});
  EXPECT_EQ(bad_k.exit_code, 2);
  auto unknown_id = RunCommand({ImgsearchBin(), "search", "--db", dir + "/db", "--similar", "999"});
  EXPECT_EQ(unknown_id.exit_code, 2);
  EXPECT_NE(unknown_id.err.find("999"), std::string::npos);
  // No model given, none cached, downloads forbidden: the message says how to get one.
  auto no_model = RunCommand({ImgsearchBin(), "index", "--offline", "--db", dir + "/db2", dir + "/lib"},
                             {"XDG_CACHE_HOME=" + dir + "/cache", "IMGSEARCH_MODEL="});
  EXPECT_EQ(no_model.exit_code, 2);
  EXPECT_NE(no_model.err.find("--model"), std::string::npos) << no_model.err;
  EXPECT_NE(no_model.err.find("imgsearch model pull"), std::string::npos) << no_model.err;
}

}  // namespace
}  // namespace imgsearch

namespace imgsearch {
namespace {

TEST(Cli, AnotherModelIsRefusedUntilReindex) {
  const std::string dir = testing::MakeTempDir();
  MakeLibrary(dir);
  const std::string db = dir + "/db";
  const std::string other = TestModelDir() + "-2";
  RunCommand({ImgsearchBin(), "index", "--db", db, "--model", TestModelDir(), dir + "/lib"});
  const auto before = nlohmann::json::parse(RunCommand({ImgsearchBin(), "stats", "--db", db, "--json"}).out);
  auto refused = RunCommand({ImgsearchBin(), "search", "--db", db, "--model", other, "cat"});
  EXPECT_EQ(refused.exit_code, 2);
  EXPECT_NE(refused.err.find("reindex"), std::string::npos) << refused.err;
  auto reindex = RunCommand({ImgsearchBin(), "reindex", "--db", db, "--model", other});
  EXPECT_EQ(reindex.exit_code, 1) << reindex.err;  // the broken file still fails
  EXPECT_NE(reindex.out.find("re-embedded 3 images"), std::string::npos) << reindex.out;
  const auto after = nlohmann::json::parse(RunCommand({ImgsearchBin(), "stats", "--db", db, "--json"}).out);
  EXPECT_NE(after["model"]["id"], before["model"]["id"]);
  EXPECT_EQ(after["indexed"], 3);
  EXPECT_EQ(after["failed"], 1);
  auto search = RunCommand({ImgsearchBin(), "search", "--db", db, "--model", other, "cat", "-k", "3"});
  EXPECT_EQ(search.exit_code, 0) << search.err;
  EXPECT_EQ(std::count(search.out.begin(), search.out.end(), '\n'), 3);
  EXPECT_FALSE(std::filesystem::exists(db + ".reindex"));
  EXPECT_FALSE(std::filesystem::exists(db + ".old"));
}

// --text-model: query texts through a multilingual tower (safetensors or pytorch_model.bin) into the
// collection's space; one of another dimension, or an image model, is refused with the reason.
TEST(Cli, SearchWithAMultilingualTextModel) {
  const std::string dir = testing::MakeTempDir();
  MakeLibrary(dir);
  const std::string db = dir + "/db";
  RunCommand({ImgsearchBin(), "index", "--db", db, "--model", TestModelDir(), dir + "/lib"});
  for (const std::string suffix : {"-multilingual", "-mclip"}) {
    auto hits = RunCommand({ImgsearchBin(), "search", "--db", db, "--text-model", TestModelDir() + suffix,
                            "ein Foto einer Katze", "--json"});
    ASSERT_EQ(hits.exit_code, 0) << hits.err;
    EXPECT_EQ(JsonLines(hits.out).size(), 3u) << suffix;
  }
  auto wide = RunCommand({ImgsearchBin(), "search", "--db", db, "--text-model", TestModelDir() + "-mclip-wide", "cat"});
  EXPECT_EQ(wide.exit_code, 2);
  EXPECT_NE(wide.err.find("maps text to 64 dimensions, but the image model"), std::string::npos) << wide.err;
  auto image_model = RunCommand({ImgsearchBin(), "search", "--db", db, "--text-model", TestModelDir(), "cat"});
  EXPECT_EQ(image_model.exit_code, 2);
  EXPECT_NE(image_model.err.find("not a text model"), std::string::npos) << image_model.err;
  auto info = RunCommand({ImgsearchBin(), "model", "info", "--model", TestModelDir() + "-mclip", "--json"});
  ASSERT_EQ(info.exit_code, 0) << info.err;
  const auto j = nlohmann::json::parse(info.out);
  EXPECT_EQ(j["family"], "m-clip");
  EXPECT_EQ(j["embedding_dim"], 48);
  EXPECT_EQ(j["text_only"], true);
  auto missing = RunCommand({ImgsearchBin(), "search", "--db", db, "--text-model", dir + "/nothing", "cat"});
  EXPECT_EQ(missing.exit_code, 2);
  EXPECT_NE(missing.err.find("(from --text-model)"), std::string::npos) << missing.err;
}

// A collection moves between families with reindex (CLIP → SigLIP 2 → SigLIP 2 NaFlex → SigLIP);
// SigLIP results carry the model's match probability for a query of one text, and only then. A
// query image goes through each family's own preprocessing and finds itself first.
TEST(Cli, ReindexAcrossFamiliesAndSiglipsMatchProbability) {
  const std::string dir = testing::MakeTempDir();
  MakeLibrary(dir);
  const std::string db = dir + "/db";
  RunCommand({ImgsearchBin(), "index", "--db", db, "--model", TestModelDir(), dir + "/lib"});
  auto clip_hits = JsonLines(RunCommand({ImgsearchBin(), "search", "--db", db, "cat", "--json"}).out);
  ASSERT_EQ(clip_hits.size(), 3u);
  EXPECT_FALSE(clip_hits[0].contains("probability"));
  for (const std::string suffix : {"-siglip2", "-siglip2-naflex", "-siglip"}) {
    const std::string model = TestModelDir() + suffix;
    auto reindex = RunCommand({ImgsearchBin(), "reindex", "--db", db, "--model", model});
    EXPECT_EQ(reindex.exit_code, 1) << reindex.err;  // the broken file still fails
    EXPECT_NE(reindex.out.find("re-embedded 3 images"), std::string::npos) << reindex.out;
    const auto stats = nlohmann::json::parse(RunCommand({ImgsearchBin(), "stats", "--db", db, "--json"}).out);
    EXPECT_EQ(stats["model"]["dim"], 64) << suffix;
    auto text = RunCommand({ImgsearchBin(), "search", "--db", db, "a photo of a cat", "--json"});
    ASSERT_EQ(text.exit_code, 0) << text.err;
    auto hits = JsonLines(text.out);
    ASSERT_EQ(hits.size(), 3u) << suffix;
    double previous = 1.0;
    for (const auto& h : hits) {
      ASSERT_TRUE(h.contains("probability")) << h.dump();
      const double p = h["probability"];
      EXPECT_GT(p, 0.0);
      EXPECT_LT(p, 1.0);
      EXPECT_LE(p, previous + 1e-6) << "the probability falls with the cosine";
      previous = p;
    }
    auto terminal = RunCommand({ImgsearchBin(), "search", "--db", db, "a photo of a cat"});
    EXPECT_NE(terminal.out.find("% "), std::string::npos) << terminal.out;
    // "More like this" compares images: no text, no probability.
    auto similar = RunCommand(
        {ImgsearchBin(), "search", "--db", db, "--json", "--similar", std::to_string(hits[0]["id"].get<int64_t>())});
    ASSERT_EQ(similar.exit_code, 0) << similar.err;
    for (const auto& h : JsonLines(similar.out)) EXPECT_FALSE(h.contains("probability")) << h.dump();
    auto by_image = RunCommand({ImgsearchBin(), "search", "--db", db, "--json", "--image", dir + "/lib/img2.png"});
    ASSERT_EQ(by_image.exit_code, 0) << by_image.err;
    const auto image_hits = JsonLines(by_image.out);
    ASSERT_FALSE(image_hits.empty()) << suffix;
    EXPECT_NE(image_hits[0]["path"].get<std::string>().find("img2.png"), std::string::npos) << suffix;
    EXPECT_NEAR(image_hits[0]["score"].get<double>(), 1.0, 1e-4) << suffix;
  }
  auto info = RunCommand({ImgsearchBin(), "model", "info", "--model", TestModelDir() + "-siglip", "--json"});
  ASSERT_EQ(info.exit_code, 0) << info.err;
  const auto j = nlohmann::json::parse(info.out);
  EXPECT_EQ(j["family"], "siglip");
  EXPECT_EQ(j["preprocessing"]["fit"], "stretch");
  EXPECT_TRUE(j.contains("scores"));
}

}  // namespace
}  // namespace imgsearch

namespace imgsearch {
namespace {

// `model check` compares the fast precisions with fp32 on the user's images; under
// IMGSEARCH_MAX_ISA=avx2 (as on a CPU without native bf16) bf16 is reported unavailable and auto fp32.
TEST(Cli, ModelCheckReportsHowCloseBf16Comes) {
  const std::string dir = testing::MakeTempDir();
  MakeLibrary(dir);
  for (const bool capped : {false, true}) {
    const std::vector<std::string> env =
        capped ? std::vector<std::string>{"IMGSEARCH_MAX_ISA=avx2"} : std::vector<std::string>{};
    auto r = RunCommand(
        {ImgsearchBin(), "model", "check", "--model", TestModelDir(), "--images", dir + "/lib", "--json"}, env);
    ASSERT_EQ(r.exit_code, 0) << r.err;
    const auto j = nlohmann::json::parse(r.out);
    EXPECT_EQ(j["images_checked"], 3) << "the broken file is left out";
    const auto& bf16 = j["precisions"][0];
    EXPECT_EQ(bf16["precision"], "bf16");
    if (capped) {
      EXPECT_NE(j["kernels"].get<std::string>().find("avx2"), std::string::npos) << j.dump();
      EXPECT_FALSE(bf16["available"].get<bool>());
      EXPECT_EQ(j["auto"], "fp32");
      EXPECT_EQ(j["auto_images"]["n"], 3) << "auto's reduced decoding is checked on its own";
    } else if (bf16["available"].get<bool>()) {
      EXPECT_EQ(j["auto"], "bf16");
      EXPECT_EQ(bf16["images"]["n"], 3);
      EXPECT_EQ(bf16["texts"]["n"], 12);
      EXPECT_GE(bf16["images"]["min"].get<double>(), 0.999);
      EXPECT_LE(bf16["images"]["min"].get<double>(), 1.0 + 1e-9);
      EXPECT_TRUE(bf16["within_bound"].get<bool>());
    }
    // int8 runs everywhere: 8-bit activations with VNNI, 7-bit without (and capped to AVX2).
    const auto& int8 = j["precisions"][1];
    EXPECT_EQ(int8["precision"], "int8");
    ASSERT_TRUE(int8["available"].get<bool>()) << int8.dump();
    EXPECT_EQ(int8["images"]["n"], 3);
    EXPECT_GE(int8["texts"]["min"].get<double>(), 0.9);
    EXPECT_LT(int8["texts"]["min"].get<double>(), 1.0) << "int8 is not fp32 under another name";
  }
  auto text = RunCommand({ImgsearchBin(), "model", "check", "--model", TestModelDir()});
  ASSERT_EQ(text.exit_code, 0) << text.err;
  EXPECT_NE(text.out.find("auto "), std::string::npos) << text.out;
}

// int8 embeddings differ from fp32's by up to 1% of cosine: a collection holds one or the other,
// and the error says which precision to pass.
TEST(Cli, Int8CollectionsAreKeptApart) {
  const std::string dir = testing::MakeTempDir();
  MakeLibrary(dir);
  const std::string db8 = dir + "/db8", db = dir + "/db";
  auto index8 = RunCommand(
      {ImgsearchBin(), "index", "--db", db8, "--model", TestModelDir(), "--precision", "int8", dir + "/lib"});
  EXPECT_NE(index8.out.find("3 added"), std::string::npos) << index8.out << index8.err;
  auto search8 = RunCommand(
      {ImgsearchBin(), "search", "--db", db8, "--model", TestModelDir(), "--precision", "int8", "a photo", "--json"});
  ASSERT_EQ(search8.exit_code, 0) << search8.err;
  EXPECT_EQ(JsonLines(search8.out).size(), 3u);
  auto mixed = RunCommand({ImgsearchBin(), "search", "--db", db8, "--model", TestModelDir(), "a photo"});
  EXPECT_EQ(mixed.exit_code, 2);
  EXPECT_NE(mixed.err.find("was indexed with --precision int8"), std::string::npos) << mixed.err;

  auto index = RunCommand({ImgsearchBin(), "index", "--db", db, "--model", TestModelDir(), dir + "/lib"});
  EXPECT_NE(index.out.find("3 added"), std::string::npos) << index.out << index.err;
  auto into =
      RunCommand({ImgsearchBin(), "index", "--db", db, "--model", TestModelDir(), "--precision", "int8", dir + "/lib"});
  EXPECT_EQ(into.exit_code, 2);
  EXPECT_NE(into.err.find("was indexed with fp32, bf16 or auto, not --precision int8"), std::string::npos) << into.err;
}

// The benchmark's output contract (figures themselves are never asserted in tests).
TEST(Cli, BenchReportsEveryFigure) {
  auto r = RunCommand({ImgsearchBin(), "bench", "--model", TestModelDir(), "--images", "4", "--batch", "2"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  for (const char* key : {"model_load_s", "encoder_first_batch_s", "encoder_images_per_s", "end_to_end_images_per_s",
                          "text_ms_first", "text_ms_p50_short", "text_ms_p99_short", "text_ms_p50_long",
                          "gemm_peak_gflops", "encoder_gflops", "path", "peak_rss_mb"}) {
    EXPECT_TRUE(j.contains(key)) << key;
  }
  EXPECT_GT(j["encoder_images_per_s"].get<double>(), 0);
  EXPECT_EQ(j["end_to_end_files"], 4);
}

}  // namespace
}  // namespace imgsearch
