// The imgsearch binary as other tools call it: output contract, order of inputs, exit codes.
#include <gtest/gtest.h>

#include <filesystem>
#include <sstream>

#include <nlohmann/json.hpp>

#include "test_util.h"

namespace imgsearch {
namespace {

using testing::ImgsearchBin;
using testing::RunCommand;
using testing::TestModelDir;

std::vector<nlohmann::json> JsonLines(const std::string& out) {
  std::vector<nlohmann::json> lines;
  std::istringstream in(out);
  for (std::string line; std::getline(in, line);) lines.push_back(nlohmann::json::parse(line));
  return lines;
}

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
  auto usage = RunCommand({ImgsearchBin(), "embed", "--text", "x"});
  EXPECT_EQ(usage.exit_code, 2);
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
