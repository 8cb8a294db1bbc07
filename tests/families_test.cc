// Parity with the upstream code of each model family on ../shared/golden/families: token ids, the
// preprocessed pixels, text and image embeddings, SigLIP's logits. Skips when the data is absent.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <cmath>

#include "imgsearch/clip.h"
#include "imgsearch/image.h"
#include "imgsearch/text_model.h"
#include "test_util.h"

namespace imgsearch {
namespace {

using testing::Cosine;

constexpr double kTextCosine = 0.999999;
constexpr double kImageCosine = 0.99999;

class FamilyParity : public ::testing::TestWithParam<std::string> {
 protected:
  // Loads the family's model and expectations; false (with a skip or failure recorded) otherwise.
  bool Load() {
    auto golden = testing::GoldenDir();
    if (!golden) {
      if (testing::GoldenRequired()) ADD_FAILURE() << "golden data not found and IMGSEARCH_REQUIRE_GOLDEN=1";
      return false;
    }
    golden_ = *golden;
    dir_ = golden_ + "/families/" + GetParam();
    auto model = ClipModel::Load(dir_);
    EXPECT_TRUE(model.ok()) << model.status().ToString();
    if (!model.ok()) return false;
    model_ = std::move(model).value();
    expected_ = nlohmann::json::parse(testing::ReadFile(dir_ + "/expected.json"));
    return true;
  }

  // The pixels the model is fed for `name`, or the decode error.
  Result<std::vector<float>> Pixels(const std::string& name) const {
    ASSIGN_OR_RETURN(DecodedImage decoded, DecodeImageFile(golden_ + "/images/" + name));
    const Preprocessing& pre = model_->preprocessing();
    std::vector<float> pixels(static_cast<size_t>(pre.input_floats()));
    Normalize(ResizeForModel(decoded.image, pre), pre, pixels.data());
    return pixels;
  }

  std::string golden_, dir_;
  std::unique_ptr<ClipModel> model_;
  nlohmann::json expected_;
};

#define LOAD_OR_SKIP() \
  if (!Load()) GTEST_SKIP() << "golden family data not found (set IMGSEARCH_GOLDEN); skipping"

TEST_P(FamilyParity, TokenIdsAreIdentical) {
  LOAD_OR_SKIP();
  ASSERT_EQ(expected_["texts"].size(), 25u);
  for (const auto& t : expected_["texts"]) {
    const std::string text = t["text"];
    EXPECT_EQ(model_->Tokenize(text), t["ids"].get<std::vector<int32_t>>()) << "text: \"" << text << "\"";
  }
}

TEST_P(FamilyParity, TextEmbeddingsMatch) {
  LOAD_OR_SKIP();
  std::vector<std::string> texts;
  for (const auto& t : expected_["texts"]) texts.push_back(t["text"]);
  const int dim = model_->embedding_dim();
  std::vector<float> out(texts.size() * dim);
  ASSERT_TRUE(model_->EncodeTexts(texts, out.data()).ok());
  for (size_t i = 0; i < texts.size(); ++i) {
    std::vector<float> ours(out.begin() + i * dim, out.begin() + (i + 1) * dim);
    const auto ref = expected_["texts"][i]["embedding"].get<std::vector<float>>();
    ASSERT_EQ(ref.size(), ours.size());
    EXPECT_GE(Cosine(ours, ref), kTextCosine) << "text: \"" << texts[i] << "\"";
  }
}

TEST_P(FamilyParity, PixelsAndImageEmbeddingsMatchAndTruncatedFails) {
  LOAD_OR_SKIP();
  const int dim = model_->embedding_dim();
  int n_checked = 0, n_errors = 0;
  for (const auto& item : expected_["images"]) {
    const std::string name = item["image"];
    auto pixels = Pixels(name);
    if (item.contains("error")) {
      EXPECT_FALSE(pixels.ok()) << name << " should fail to decode";
      ++n_errors;
      continue;
    }
    ASSERT_TRUE(pixels.ok()) << name << ": " << pixels.status().ToString();
    // NaFlex: the patch grid leads the patches (image.h's Normalize); upstream's pixel_values hold
    // the patches alone.
    size_t first = 0;
    if (item.contains("spatial_shape")) {
      ASSERT_EQ(model_->preprocessing().fit, Preprocessing::Fit::kPatchBudget);
      const auto shape = item["spatial_shape"].get<std::vector<int>>();
      EXPECT_EQ((*pixels)[0], shape[0]) << name;
      EXPECT_EQ((*pixels)[1], shape[1]) << name;
      EXPECT_EQ(shape[0] * shape[1], item["valid_patches"].get<int>()) << name;
      first = 2;
    }
    double sum = 0;
    for (size_t i = first; i < pixels->size(); ++i) sum += (*pixels)[i];
    const double ref_sum = item["pixel_sum"];
    EXPECT_NEAR(sum, ref_sum, 1e-3 * std::max(1.0, std::abs(ref_sum))) << name;
    std::vector<float> emb(dim);
    ASSERT_TRUE(model_->EncodeImages(pixels->data(), 1, emb.data()).ok());
    EXPECT_GE(Cosine(emb, item["embedding"].get<std::vector<float>>()), kImageCosine) << name;
    ++n_checked;
  }
  EXPECT_EQ(n_checked, 9);
  EXPECT_EQ(n_errors, 1);
}

TEST_P(FamilyParity, LogitsAndMatchProbabilities) {
  LOAD_OR_SKIP();
  ASSERT_TRUE(model_->info().has_match_probability);
  EXPECT_FLOAT_EQ(model_->info().logit_scale, expected_["logit_scale"].get<float>());
  EXPECT_FLOAT_EQ(model_->info().logit_bias, expected_["logit_bias"].get<float>());
  if (model_->preprocessing().fit == Preprocessing::Fit::kPatchBudget) {
    // Upstream's Siglip2Processor, which made these logits, resizes to its own default of 256 patches
    // whatever preprocessor_config.json says (the image embeddings above used the configured 64):
    // the logits are matched with that budget, which also checks position grids scaled up.
    const std::string copy = testing::CopyToTemp(dir_);
    testing::EditJsonFile(copy + "/preprocessor_config.json", [](nlohmann::json& j) { j["max_num_patches"] = 256; });
    auto model = ClipModel::Load(copy);
    ASSERT_TRUE(model.ok()) << model.status().ToString();
    model_ = std::move(model).value();
    ASSERT_EQ(model_->preprocessing().max_patches, 256);
  }
  const int dim = model_->embedding_dim();
  std::vector<std::vector<float>> images;
  for (const auto& item : expected_["images"]) {
    if (item.contains("error")) continue;
    auto pixels = Pixels(item["image"]);
    ASSERT_TRUE(pixels.ok());
    images.emplace_back(dim);
    ASSERT_TRUE(model_->EncodeImages(pixels->data(), 1, images.back().data()).ok());
  }
  // The first texts against every image.
  const auto& logits = expected_["logits_per_text"];
  ASSERT_GE(logits.size(), 1u);
  ASSERT_LE(logits.size(), expected_["texts"].size());
  const double scale = std::exp(model_->info().logit_scale);
  for (size_t t = 0; t < logits.size(); ++t) {
    ASSERT_EQ(logits[t].size(), images.size());
    std::vector<float> text(dim);
    const std::string query = expected_["texts"][t]["text"];
    ASSERT_TRUE(model_->EncodeTexts({&query, 1}, text.data()).ok());
    for (size_t i = 0; i < images.size(); ++i) {
      const float cosine = static_cast<float>(Cosine(text, images[i]));
      const double logit = logits[t][i];
      EXPECT_NEAR(cosine * scale + model_->info().logit_bias, logit, 1e-4 * std::max(1.0, std::abs(logit)));
      EXPECT_NEAR(model_->MatchProbability(cosine), 1.0 / (1.0 + std::exp(-logit)), 1e-5);
    }
  }
}

TEST_P(FamilyParity, BatchedEqualsOneByOne) {
  LOAD_OR_SKIP();
  const int dim = model_->embedding_dim();
  const std::vector<std::string> texts = {"x", "a photo of a cat", "", "the 1920s were 100 years ago"};
  std::vector<float> together(texts.size() * dim);
  ASSERT_TRUE(model_->EncodeTexts(texts, together.data()).ok());
  for (size_t i = 0; i < texts.size(); ++i) {
    std::vector<float> alone(dim);
    ASSERT_TRUE(model_->EncodeTexts({&texts[i], 1}, alone.data()).ok());
    EXPECT_GE(Cosine(alone, {together.begin() + i * dim, together.begin() + (i + 1) * dim}), 0.9999999) << texts[i];
  }
  // NaFlex: three patch grids, two of them of one length (8 × 8, 7 × 9, 6 × 10 patches).
  const std::vector<std::string> names = {"rocket.jpg", "camera.png", "chelsea.png", "palette_color.png"};
  const size_t floats = static_cast<size_t>(model_->preprocessing().input_floats());
  std::vector<float> batch;
  for (const std::string& name : names) {
    auto pixels = Pixels(name);
    ASSERT_TRUE(pixels.ok());
    batch.insert(batch.end(), pixels->begin(), pixels->end());
  }
  std::vector<float> images(names.size() * dim);
  ASSERT_TRUE(model_->EncodeImages(batch.data(), static_cast<int>(names.size()), images.data()).ok());
  for (size_t i = 0; i < names.size(); ++i) {
    std::vector<float> alone(dim);
    ASSERT_TRUE(model_->EncodeImages(batch.data() + i * floats, 1, alone.data()).ok());
    EXPECT_GE(Cosine(alone, {images.begin() + i * dim, images.begin() + (i + 1) * dim}), 0.9999999) << names[i];
  }
}

INSTANTIATE_TEST_SUITE_P(Siglip, FamilyParity, ::testing::Values("siglip", "siglip2", "siglip2-naflex"));

// Multilingual text towers: text only, into an image model's space.
class TextFamilyParity : public ::testing::TestWithParam<std::string> {
 protected:
  bool Load() {
    auto golden = testing::GoldenDir();
    if (!golden) {
      if (testing::GoldenRequired()) ADD_FAILURE() << "golden data not found and IMGSEARCH_REQUIRE_GOLDEN=1";
      return false;
    }
    const std::string dir = *golden + "/families/" + GetParam();
    auto model = TextModel::Load(dir);
    EXPECT_TRUE(model.ok()) << model.status().ToString();
    if (!model.ok()) return false;
    model_ = std::move(model).value();
    expected_ = nlohmann::json::parse(testing::ReadFile(dir + "/expected.json"));
    return true;
  }

  std::unique_ptr<TextModel> model_;
  nlohmann::json expected_;
};

TEST_P(TextFamilyParity, TokenIdsAreIdentical) {
  LOAD_OR_SKIP();
  ASSERT_EQ(expected_["texts"].size(), 25u);
  for (const auto& t : expected_["texts"]) {
    const std::string text = t["text"];
    EXPECT_EQ(model_->Tokenize(text), t["ids"].get<std::vector<int32_t>>()) << "text: \"" << text << "\"";
  }
}

TEST_P(TextFamilyParity, EmbeddingsMatchOneByOneAndBatched) {
  LOAD_OR_SKIP();
  std::vector<std::string> texts;
  for (const auto& t : expected_["texts"]) texts.push_back(t["text"]);
  const int dim = model_->embedding_dim();
  ASSERT_EQ(static_cast<size_t>(dim), expected_["texts"][0]["embedding"].size());
  std::vector<float> batched(texts.size() * dim);
  ASSERT_TRUE(model_->EncodeTexts(texts, batched.data()).ok());
  for (size_t i = 0; i < texts.size(); ++i) {
    const auto ref = expected_["texts"][i]["embedding"].get<std::vector<float>>();
    std::vector<float> alone(dim);
    ASSERT_TRUE(model_->EncodeTexts({&texts[i], 1}, alone.data()).ok());
    EXPECT_GE(Cosine(alone, ref), kTextCosine) << "text: \"" << texts[i] << "\"";
    EXPECT_GE(Cosine({batched.begin() + i * dim, batched.begin() + (i + 1) * dim}, ref), kTextCosine)
        << "batched text: \"" << texts[i] << "\"";
  }
}

INSTANTIATE_TEST_SUITE_P(Multilingual, TextFamilyParity, ::testing::Values("mclip-st", "mclip-xlmr"));

}  // namespace
}  // namespace imgsearch
