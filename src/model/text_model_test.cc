// Multilingual text towers on random models made by make_test_model (sentence-transformers
// DistilBERT and M-CLIP XLM-R): loading, invariants upstream's code has for any weights, and clear
// errors. Parity with upstream's outputs is in tests/families_test.cc.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <functional>

#include <nlohmann/json.hpp>

#include "imgsearch/clip.h"
#include "imgsearch/text_model.h"
#include "test_util.h"

namespace imgsearch {
namespace {

namespace fs = std::filesystem;
using testing::Cosine;
using testing::ReadFile;
using testing::WriteFile;

std::string StDir() { return testing::TestModelDir() + "-multilingual"; }
std::string MclipDir() { return testing::TestModelDir() + "-mclip"; }

std::unique_ptr<TextModel> Load(const std::string& dir) {
  auto m = TextModel::Load(dir);
  EXPECT_TRUE(m.ok()) << m.status().ToString();
  return m.ok() ? std::move(m).value() : nullptr;
}

void ExpectLoadError(const std::string& dir, const std::vector<std::string>& needles) {
  auto m = TextModel::Load(dir);
  ASSERT_FALSE(m.ok()) << "loading " << dir << " should fail";
  for (const std::string& n : needles) {
    EXPECT_NE(m.status().message().find(n), std::string::npos) << m.status().ToString();
  }
}

TEST(TextModel, LoadsBothLayoutsIntoTheTinyClipSpace) {
  auto st = Load(StDir());
  auto mclip = Load(MclipDir());
  ASSERT_TRUE(st && mclip);
  auto clip = ClipModel::Load(testing::TestModelDir());
  ASSERT_TRUE(clip.ok());
  EXPECT_EQ(st->embedding_dim(), (*clip)->embedding_dim());
  EXPECT_EQ(mclip->embedding_dim(), (*clip)->embedding_dim());
  EXPECT_EQ(st->info().family, "sentence-transformers");
  EXPECT_EQ(st->info().base, "distilbert");
  EXPECT_EQ(st->info().tokenizer, "BERT WordPiece");
  EXPECT_EQ(st->info().max_tokens, 128);
  EXPECT_EQ(mclip->info().family, "m-clip");
  EXPECT_EQ(mclip->info().base, "xlm-roberta");
  EXPECT_EQ(mclip->info().max_tokens, 512);
}

TEST(TextModel, TokenizersWrapAndCut) {
  auto st = Load(StDir());
  auto mclip = Load(MclipDir());
  ASSERT_TRUE(st && mclip);
  const std::vector<int32_t> ids = st->Tokenize("a photo of a cat");
  ASSERT_GE(ids.size(), 3u);
  EXPECT_EQ(ids.front(), 101);  // [CLS]
  EXPECT_EQ(ids.back(), 102);   // [SEP]
  EXPECT_EQ(st->Tokenize(""), (std::vector<int32_t>{101, 102}));
  EXPECT_NE(st->Tokenize("A photo"), st->Tokenize("a photo"));  // cased
  // Punctuation and CJK ideographs are split off; typed special tokens are theirs.
  EXPECT_EQ(st->Tokenize("cat,dog").size(), st->Tokenize("cat , dog").size());
  EXPECT_EQ(st->Tokenize("猫写真").size(), 5u);  // [CLS], three ideographs, [SEP]
  const std::vector<int32_t> typed = st->Tokenize("cat [SEP] dog");
  EXPECT_EQ(std::count(typed.begin(), typed.end(), 102), 2);
  std::string long_text;
  for (int i = 0; i < 200; ++i) long_text += "cat ";
  const std::vector<int32_t> cut = st->Tokenize(long_text);
  EXPECT_EQ(cut.size(), 128u);
  EXPECT_EQ(cut.back(), 102);

  const std::vector<int32_t> x = mclip->Tokenize("a photo of a cat");
  EXPECT_EQ(x.front(), 0);  // <s>
  EXPECT_EQ(x.back(), 2);   // </s>
  EXPECT_EQ(mclip->Tokenize(""), (std::vector<int32_t>{0, 2}));
  const std::vector<int32_t> unknown = mclip->Tokenize("🐱");
  EXPECT_EQ(std::count(unknown.begin(), unknown.end(), 3), 1) << "an unknown character is <unk> (3)";
}

TEST(TextModel, BatchesEqualOneByOneAndLanguagesDiffer) {
  for (const std::string& dir : {StDir(), MclipDir()}) {
    auto m = Load(dir);
    ASSERT_TRUE(m);
    const int dim = m->embedding_dim();
    const std::vector<std::string> texts = {"a photo of a cat", "", "ein Hund im Schnee", "猫の写真",
                                            "a photo of a dog"};
    std::vector<float> together(texts.size() * dim);
    ASSERT_TRUE(m->EncodeTexts(texts, together.data()).ok());
    for (size_t i = 0; i < texts.size(); ++i) {
      std::vector<float> alone(dim);
      ASSERT_TRUE(m->EncodeTexts({&texts[i], 1}, alone.data()).ok());
      EXPECT_GE(Cosine(alone, {together.begin() + i * dim, together.begin() + (i + 1) * dim}), 0.9999999)
          << dir << ": " << texts[i];
      double norm = 0;
      for (float v : alone) norm += double{v} * v;
      EXPECT_NEAR(norm, 1.0, 1e-5);
    }
    EXPECT_LT(Cosine({together.begin(), together.begin() + dim}, {together.begin() + 4 * dim, together.end()}),
              0.999999);
    // More texts of one length than one pass holds: the same embeddings, pass by pass.
    std::string long_text;
    for (int i = 0; i < 100; ++i) long_text += "a cat ";
    const std::vector<std::string> many(200, long_text);
    std::vector<float> out(many.size() * dim), alone(dim);
    ASSERT_TRUE(m->EncodeTexts(many, out.data()).ok());
    ASSERT_TRUE(m->EncodeTexts({&long_text, 1}, alone.data()).ok());
    EXPECT_GE(Cosine({out.end() - dim, out.end()}, alone), 0.9999999) << dir;
  }
}

TEST(TextModel, BadFilesGetClearErrors) {
  {
    const std::string dir = testing::CopyToTemp(StDir());
    fs::remove(dir + "/vocab.txt");
    ExpectLoadError(dir, {"vocab.txt"});
  }
  {
    const std::string dir = testing::CopyToTemp(StDir());
    testing::EditJsonFile(dir + "/1_Pooling/config.json", [](nlohmann::json& j) {
      j["pooling_mode_mean_tokens"] = false;
      j["pooling_mode_cls_token"] = true;
    });
    ExpectLoadError(dir, {"pooling_mode_cls_token"});
  }
  {
    const std::string dir = testing::CopyToTemp(StDir());
    testing::EditJsonFile(dir + "/2_Dense/config.json",
                          [](nlohmann::json& j) { j["activation_function"] = "torch.nn.ReLU"; });
    ExpectLoadError(dir, {"activation_function", "ReLU"});
  }
  {
    const std::string dir = testing::CopyToTemp(StDir());
    testing::EditJsonFile(dir + "/2_Dense/config.json", [](nlohmann::json& j) { j["in_features"] = 7; });
    ExpectLoadError(dir, {"in_features 7"});
  }
  {
    const std::string dir = testing::CopyToTemp(StDir());
    testing::EditJsonFile(dir + "/config.json", [](nlohmann::json& j) { j["model_type"] = "bert"; });
    ExpectLoadError(dir, {"model_type \"bert\"", "distilbert"});
  }
  {
    const std::string dir = testing::CopyToTemp(StDir());
    testing::EditJsonFile(dir + "/config.json", [](nlohmann::json& j) { j["n_heads"] = "four"; });
    ExpectLoadError(dir, {"n_heads"});
  }
  {
    const std::string dir = testing::CopyToTemp(StDir());
    WriteFile(dir + "/modules.json", "{not json");
    ExpectLoadError(dir, {"modules.json"});
  }
  {
    const std::string dir = testing::CopyToTemp(MclipDir());
    fs::remove(dir + "/sentencepiece.bpe.model");
    ExpectLoadError(dir, {"sentencepiece.bpe.model"});
  }
  {
    const std::string dir = testing::CopyToTemp(MclipDir());
    testing::EditJsonFile(dir + "/config.json", [](nlohmann::json& j) { j["numDims"] = 12; });
    ExpectLoadError(dir, {"LinearTransformation"});
  }
  {
    const std::string dir = testing::CopyToTemp(MclipDir());
    testing::EditJsonFile(dir + "/base/config.json", [](nlohmann::json& j) { j["layer_norm_eps"] = 0; });
    ExpectLoadError(dir, {"layer_norm_eps"});
  }
  // An image model is not a text model, and the other way round, each said plainly.
  ExpectLoadError(testing::TestModelDir(), {"not a text model"});
  auto as_image = ClipModel::Load(StDir());
  ASSERT_FALSE(as_image.ok());
  EXPECT_NE(as_image.status().message().find("--text-model"), std::string::npos) << as_image.status().ToString();
  auto mclip_as_image = ClipModel::Load(MclipDir());
  ASSERT_FALSE(mclip_as_image.ok());
  EXPECT_NE(mclip_as_image.status().message().find("--text-model"), std::string::npos);
}

}  // namespace
}  // namespace imgsearch
