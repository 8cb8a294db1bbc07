// SigLIP, SigLIP 2 and SigLIP 2 NaFlex on random models made by make_test_model: loading, the invariants upstream's
// code has for any weights (tokenizer rules, batching), and a clear error for each kind of bad input.
// Parity with upstream's outputs is in tests/families_test.cc.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <functional>

#include <nlohmann/json.hpp>

#include "imgsearch/clip.h"
#include "imgsearch/image.h"
#include "test_util.h"

namespace imgsearch {
namespace {

namespace fs = std::filesystem;
using testing::Cosine;
using testing::ReadFile;
using testing::WriteFile;

std::string SiglipDir() { return testing::TestModelDir() + "-siglip"; }
std::string Siglip2Dir() { return testing::TestModelDir() + "-siglip2"; }
// siglip2-tiny's weights (same seed) as a NaFlex checkpoint: 196 patches of 16 px at most.
std::string NaflexDir() { return testing::TestModelDir() + "-siglip2-naflex"; }

std::unique_ptr<ClipModel> Load(const std::string& dir) {
  auto m = ClipModel::Load(dir);
  EXPECT_TRUE(m.ok()) << m.status().ToString();
  return m.ok() ? std::move(m).value() : nullptr;
}

void ExpectLoadError(const std::string& dir, const std::vector<std::string>& needles) {
  auto m = ClipModel::Load(dir);
  ASSERT_FALSE(m.ok()) << "loading " << dir << " should fail";
  for (const std::string& n : needles) {
    EXPECT_NE(m.status().message().find(n), std::string::npos) << m.status().ToString();
  }
}

TEST(Siglip, LoadsAsItsFamily) {
  auto v1 = Load(SiglipDir());
  auto v2 = Load(Siglip2Dir());
  ASSERT_TRUE(v1 && v2);
  EXPECT_EQ(v1->info().family, "siglip");
  EXPECT_EQ(v1->info().tokenizer, "SigLIP SentencePiece (unigram)");
  EXPECT_EQ(v1->info().vision.activation, "gelu_pytorch_tanh");
  EXPECT_EQ(v1->embedding_dim(), 64);
  EXPECT_EQ(v1->context_length(), 64);
  EXPECT_EQ(v1->preprocessing().fit, Preprocessing::Fit::kStretch);
  EXPECT_EQ(v1->preprocessing().filter, ResampleFilter::kBicubic);
  EXPECT_EQ(v1->preprocessing().mean[0], 0.5f);
  EXPECT_TRUE(v1->info().has_match_probability);
  EXPECT_EQ(v2->info().tokenizer, "Gemma SentencePiece (BPE)");
  EXPECT_EQ(v2->preprocessing().filter, ResampleFilter::kBilinear);
  EXPECT_EQ(v2->info().text.width, 48);  // SigLIP 2's text width may differ from the projection
  EXPECT_EQ(v2->embedding_dim(), 64);
}

TEST(Siglip, TokenizerCanonicalisesLowerCasesAndPads) {
  auto m = Load(SiglipDir());
  ASSERT_TRUE(m);
  const std::vector<int32_t> ids = m->Tokenize("a photo of a cat");
  ASSERT_EQ(ids.size(), 64u);
  EXPECT_EQ(m->Tokenize("  A PHOTO, of a\t cat!!!  "), ids);  // punctuation, spacing and case do not count
  EXPECT_EQ(m->Tokenize("a photo of a cat\u2581"), ids);      // "▁" is a space
  // </s> (1) closes the text and pads it.
  const auto eos = std::find(ids.begin(), ids.end(), 1);
  ASSERT_NE(eos, ids.end());
  EXPECT_TRUE(std::all_of(eos, ids.end(), [](int32_t id) { return id == 1; }));
  EXPECT_GT(eos - ids.begin(), 1);
  // A long text is cut so that </s> stays last.
  std::string long_text;
  for (int i = 0; i < 100; ++i) long_text += "a red car in the snow ";
  const std::vector<int32_t> cut = m->Tokenize(long_text);
  ASSERT_EQ(cut.size(), 64u);
  EXPECT_EQ(cut.back(), 1);
  EXPECT_NE(cut[62], 1);
  // A typed </s> is the token, not the letter s left after punctuation is removed; one at the start
  // loses the "▁" before it, as SiglipTokenizer.tokenize drops it.
  const std::vector<int32_t> typed = m->Tokenize("a cat </s> dog");
  const auto first_eos = std::find(typed.begin(), typed.end(), 1);
  ASSERT_NE(first_eos, typed.end());
  EXPECT_NE(*(first_eos + 1), 1) << "</s> in the middle, then more text";
  EXPECT_EQ(m->Tokenize("</s> dog")[0], 1);
  // Empty text and punctuation only still make a sequence the model runs.
  EXPECT_EQ(m->Tokenize("").size(), 64u);
  EXPECT_EQ(m->Tokenize("?!").size(), 64u);
  std::vector<float> out(2 * m->embedding_dim());
  const std::vector<std::string> texts = {"", "?!"};
  EXPECT_TRUE(m->EncodeTexts(texts, out.data()).ok());
}

TEST(Siglip, GemmaTokenizerKeepsCaseAndReadsSpecialTokens) {
  auto m = Load(Siglip2Dir());
  ASSERT_TRUE(m);
  const std::vector<int32_t> lower = m->Tokenize("a photo of a cat");
  ASSERT_EQ(lower.size(), 64u);
  EXPECT_NE(m->Tokenize("A PHOTO OF A CAT"), lower);  // GemmaTokenizer does not lower-case
  // <eos> (1) appended, then <pad> (0).
  const auto eos = std::find(lower.begin(), lower.end(), 1);
  ASSERT_NE(eos, lower.end());
  EXPECT_TRUE(std::all_of(eos + 1, lower.end(), [](int32_t id) { return id == 0; }));
  // Special tokens typed in the text become their ids, as upstream's added-token split does.
  const std::vector<int32_t> with_eos = m->Tokenize("cat<eos>dog");
  EXPECT_EQ(std::count(with_eos.begin(), with_eos.end(), 1), 2) << "the typed <eos> and the appended one";
  const std::vector<int32_t> ends_with_eos = m->Tokenize("cat<eos>");
  EXPECT_EQ(std::count(ends_with_eos.begin(), ends_with_eos.end(), 1), 2) << "GemmaTokenizer always appends <eos>";
  // Characters outside the vocabulary fall back to bytes, not <unk>.
  const std::vector<int32_t> emoji = m->Tokenize("🐱");
  EXPECT_EQ(std::count(emoji.begin(), emoji.end(), 3), 0);
  std::string long_text;
  for (int i = 0; i < 100; ++i) long_text += "a red car in the snow ";
  const std::vector<int32_t> cut = m->Tokenize(long_text);
  ASSERT_EQ(cut.size(), 64u);
  EXPECT_EQ(cut.back(), 1);
}

// so400m-patch14-384: 27 patches of 14 pixels in a 384-pixel input; the remainder is left out by the
// patch convolution, and the image processor still resizes to 384.
TEST(Siglip, InputSizeFromConfigBeyondTheGrid) {
  const std::string dir = testing::CopyToTemp(SiglipDir());
  testing::EditJsonFile(dir + "/config.json", [](nlohmann::json& j) { j["vision_config"]["image_size"] = 230; });
  testing::EditJsonFile(dir + "/preprocessor_config.json", [](nlohmann::json& j) {
    j["size"] = {{"height", 230}, {"width", 230}};
  });
  auto m = Load(dir);
  ASSERT_TRUE(m);
  EXPECT_EQ(m->image_size(), 230);
  EXPECT_EQ(m->preprocessing().size, 230);
  std::vector<float> pixels(3 * 230 * 230, 0.25f), emb(m->embedding_dim());
  ASSERT_TRUE(m->EncodeImages(pixels.data(), 1, emb.data()).ok());
  // The last 6 rows and columns do not count, as in the convolution.
  std::vector<float> changed = pixels, emb2(m->embedding_dim());
  for (int c = 0; c < 3; ++c) changed[c * 230 * 230 + 229 * 230 + 229] = -1.0f;
  ASSERT_TRUE(m->EncodeImages(changed.data(), 1, emb2.data()).ok());
  EXPECT_EQ(emb, emb2);
}

TEST(Siglip, BatchesEqualOneByOne) {
  for (const std::string& dir : {SiglipDir(), Siglip2Dir()}) {
    auto m = Load(dir);
    ASSERT_TRUE(m);
    const int dim = m->embedding_dim();
    const std::vector<std::string> texts = {"a photo of a cat", "", "東京タワーの夜景", "a red car in the snow"};
    std::vector<float> together(texts.size() * dim);
    ASSERT_TRUE(m->EncodeTexts(texts, together.data()).ok());
    for (size_t i = 0; i < texts.size(); ++i) {
      std::vector<float> alone(dim);
      ASSERT_TRUE(m->EncodeTexts({&texts[i], 1}, alone.data()).ok());
      EXPECT_GE(Cosine(alone, {together.begin() + i * dim, together.begin() + (i + 1) * dim}), 0.9999999) << dir;
    }
    const int size = m->image_size();
    const size_t floats = 3 * static_cast<size_t>(size) * size;
    std::vector<float> pixels(3 * floats);
    for (size_t i = 0; i < pixels.size(); ++i) pixels[i] = static_cast<float>((i * 7919) % 255) / 127.5f - 1.0f;
    std::vector<float> images(3 * dim);
    ASSERT_TRUE(m->EncodeImages(pixels.data(), 3, images.data()).ok());
    for (int i = 0; i < 3; ++i) {
      std::vector<float> alone(dim);
      ASSERT_TRUE(m->EncodeImages(pixels.data() + i * floats, 1, alone.data()).ok());
      EXPECT_GE(Cosine(alone, {images.begin() + i * dim, images.begin() + (i + 1) * dim}), 0.9999999) << dir;
    }
  }
}

TEST(Siglip, PaddingIsAttendedToAsUpstreamDoes) {
  // SigLIP's text tower has no attention mask: the </s> padding is part of the input, so the same
  // ids without it embed differently (and still run: pooled at their own last position).
  auto m = Load(SiglipDir());
  ASSERT_TRUE(m);
  const std::vector<int32_t> padded = m->Tokenize("a photo of a cat");
  const auto eos = std::find(padded.begin(), padded.end(), 1);
  std::vector<std::vector<int32_t>> seqs = {padded, std::vector<int32_t>(padded.begin(), eos + 1)};
  std::vector<float> out(2 * m->embedding_dim());
  ASSERT_TRUE(m->EncodeTokens(seqs, out.data()).ok());
  const int dim = m->embedding_dim();
  EXPECT_LT(Cosine({out.begin(), out.begin() + dim}, {out.begin() + dim, out.end()}), 0.99999);
}

TEST(Siglip, MatchProbabilityIsTheSigmoidOfTheScaledCosine) {
  auto m = Load(SiglipDir());
  ASSERT_TRUE(m);
  const double scale = std::exp(m->info().logit_scale), bias = m->info().logit_bias;
  for (float c : {-1.0f, -0.2f, 0.0f, 0.3f, 1.0f}) {
    EXPECT_NEAR(m->MatchProbability(c), 1.0 / (1.0 + std::exp(-(c * scale + bias))), 1e-6);
  }
  EXPECT_LT(m->MatchProbability(0.1f), m->MatchProbability(0.2f));
  auto clip = Load(testing::TestModelDir());
  ASSERT_TRUE(clip);
  EXPECT_FALSE(clip->info().has_match_probability);
  EXPECT_EQ(clip->MatchProbability(0.25f), 0.25f);
}

TEST(Siglip, BadFilesGetClearErrors) {
  {
    const std::string dir = testing::CopyToTemp(SiglipDir());
    fs::remove(dir + "/spiece.model");
    ExpectLoadError(dir, {"spiece.model", "missing"});
  }
  {
    const std::string dir = testing::CopyToTemp(Siglip2Dir());
    fs::remove(dir + "/tokenizer.model");
    ExpectLoadError(dir, {"tokenizer.model", "missing"});
  }
  {
    const std::string dir = testing::CopyToTemp(SiglipDir());
    WriteFile(dir + "/spiece.model", "not a model at all");
    ExpectLoadError(dir, {"spiece.model", "not a SentencePiece model"});
  }
  {
    const std::string dir = testing::CopyToTemp(SiglipDir());
    testing::EditJsonFile(dir + "/config.json", [](nlohmann::json& j) { j["model_type"] = "blip"; });
    ExpectLoadError(dir, {"model_type \"blip\"", "clip, siglip"});
  }
  {
    // A convolution's weights under NaFlex's model_type.
    const std::string dir = testing::CopyToTemp(SiglipDir());
    testing::EditJsonFile(dir + "/config.json", [](nlohmann::json& j) { j["model_type"] = "siglip2"; });
    ExpectLoadError(dir, {"patch_embedding.weight", "rank 4, expected 2"});
  }
  {
    const std::string dir = testing::CopyToTemp(SiglipDir());
    testing::EditJsonFile(dir + "/config.json", [](nlohmann::json& j) { j["vision_config"]["hidden_act"] = "swish"; });
    ExpectLoadError(dir, {"hidden_act", "swish", "gelu_pytorch_tanh"});
  }
  {
    const std::string dir = testing::CopyToTemp(SiglipDir());
    testing::EditJsonFile(dir + "/config.json", [](nlohmann::json& j) { j["text_config"]["num_attention_heads"] = 5; });
    ExpectLoadError(dir, {"not divisible by 5 heads"});
  }
  {
    const std::string dir = testing::CopyToTemp(SiglipDir());
    testing::EditJsonFile(dir + "/tokenizer_config.json",
                          [](nlohmann::json& j) { j["tokenizer_class"] = "BertTokenizer"; });
    ExpectLoadError(dir, {"BertTokenizer"});
  }
  {
    const std::string dir = testing::CopyToTemp(SiglipDir());
    testing::EditJsonFile(dir + "/preprocessor_config.json", [](nlohmann::json& j) { j["resample"] = 0; });
    ExpectLoadError(dir, {"resample", "bicubic"});
  }
  {
    const std::string dir = testing::CopyToTemp(SiglipDir());
    testing::EditJsonFile(dir + "/preprocessor_config.json", [](nlohmann::json& j) {
      j["size"] = {{"height", 384}, {"width", 384}};
    });
    ExpectLoadError(dir, {"384", "224"});
  }
  {
    const std::string dir = testing::CopyToTemp(SiglipDir());
    testing::EditJsonFile(dir + "/preprocessor_config.json", [](nlohmann::json& j) { j["image_std"] = {0.5, 0, 0.5}; });
    ExpectLoadError(dir, {"image_std"});
  }
  {
    const std::string dir = testing::CopyToTemp(SiglipDir());
    testing::EditJsonFile(dir + "/preprocessor_config.json", [](nlohmann::json& j) { j["do_normalize"] = false; });
    ExpectLoadError(dir, {"do_normalize false"});
  }
  {
    const std::string dir = testing::CopyToTemp(SiglipDir());
    testing::EditJsonFile(dir + "/preprocessor_config.json", [](nlohmann::json& j) { j["rescale_factor"] = 0.5; });
    ExpectLoadError(dir, {"rescale_factor 0.5"});
  }
  {
    const std::string dir = testing::CopyToTemp(SiglipDir());
    testing::EditJsonFile(dir + "/tokenizer_config.json", [](nlohmann::json& j) {
      j["added_tokens_decoder"]["2147483647"] = {{"content", "<huge>"}, {"special", true}};
    });
    ExpectLoadError(dir, {"2147483647", "out of range"});
  }
  {
    const std::string dir = testing::CopyToTemp(SiglipDir());
    testing::EditJsonFile(dir + "/config.json", [](nlohmann::json& j) { j["vision_config"]["image_size"] = 260; });
    ExpectLoadError(dir, {"image_size 260", "14×14"});
  }
  {
    // A tokenizer whose ids reach past the token embedding.
    const std::string dir = testing::CopyToTemp(SiglipDir());
    testing::EditJsonFile(dir + "/tokenizer_config.json", [](nlohmann::json& j) {
      j["added_tokens_decoder"]["5000"] = {{"content", "<extra>"}, {"special", true}};
    });
    ExpectLoadError(dir, {"tokenizer's ids reach 5000", "token embedding"});
  }
  {
    const std::string dir = testing::CopyToTemp(SiglipDir());
    fs::remove(dir + "/config.json");
    ExpectLoadError(dir, {});  // without config.json, a SigLIP checkpoint is not read as CLIP
  }
}

// A picture with structure at every scale, so that resizing and patch order matter.
Image Picture(int width, int height) {
  Image image(width, height);
  for (int y = 0; y < height; ++y) {
    for (int x = 0; x < width; ++x) {
      uint8_t* p = image.row(y) + 3 * x;
      p[0] = static_cast<uint8_t>(x * 255 / std::max(1, width - 1));
      p[1] = static_cast<uint8_t>(y * 255 / std::max(1, height - 1));
      p[2] = static_cast<uint8_t>(((x / 7) ^ (y / 5)) * 37);
    }
  }
  return image;
}

std::vector<float> ModelInput(const ClipModel& m, const Image& image) {
  std::vector<float> input(static_cast<size_t>(m.preprocessing().input_floats()));
  Normalize(ResizeForModel(image, m.preprocessing()), m.preprocessing(), input.data());
  return input;
}

std::vector<float> EmbedImage(const ClipModel& m, const Image& image) {
  const std::vector<float> input = ModelInput(m, image);
  std::vector<float> emb(m.embedding_dim());
  EXPECT_TRUE(m.EncodeImages(input.data(), 1, emb.data()).ok());
  return emb;
}

TEST(Naflex, LoadsWithItsPatchBudget) {
  auto m = Load(NaflexDir());
  ASSERT_TRUE(m);
  EXPECT_EQ(m->info().family, "siglip");
  EXPECT_EQ(m->info().tokenizer, "Gemma SentencePiece (BPE)");
  EXPECT_EQ(m->info().max_patches, 196);
  EXPECT_EQ(m->info().patch_size, 16);
  const Preprocessing& pre = m->preprocessing();
  EXPECT_EQ(pre.fit, Preprocessing::Fit::kPatchBudget);
  EXPECT_EQ(pre.filter, ResampleFilter::kBilinear);
  EXPECT_EQ(pre.max_patches, 196);
  EXPECT_EQ(pre.input_floats(), 2 + 196 * 3 * 16 * 16);
  // Aspect ratio kept (each side rounded up to whole patches): a 2:1 picture becomes 19 × 10 patches.
  const Image resized = ResizeForModel(Picture(600, 300), pre);
  EXPECT_EQ(resized.width, 19 * 16);
  EXPECT_EQ(resized.height, 10 * 16);
  EXPECT_EQ(resized.width % 16, 0);
  EXPECT_LE((resized.width / 16) * (resized.height / 16), 196);
}

TEST(Naflex, SquarePictureAtTheGridSizeIsTheFixedResolutionModel) {
  // The same weights (the convolution as a Linear layer): a square picture resized to the 14 × 14
  // position grid needs no position resizing, so the two checkpoints must agree.
  auto naflex = Load(NaflexDir());
  auto fixed = Load(Siglip2Dir());
  ASSERT_TRUE(naflex && fixed);
  const Image picture = Picture(300, 300);
  EXPECT_GE(Cosine(EmbedImage(*naflex, picture), EmbedImage(*fixed, picture)), 0.99999);
  const std::string text = "a red car in the snow";
  std::vector<float> a(64), b(64);
  ASSERT_TRUE(naflex->EncodeTexts({&text, 1}, a.data()).ok());
  ASSERT_TRUE(fixed->EncodeTexts({&text, 1}, b.data()).ok());
  EXPECT_EQ(a, b);
  // Another aspect ratio is not stretched: the fixed model's square differs from NaFlex's grid.
  const Image wide = Picture(600, 200);
  EXPECT_LT(Cosine(EmbedImage(*naflex, wide), EmbedImage(*fixed, wide)), 0.9999);
}

TEST(Naflex, MixedGridsBatchEqualOneByOne) {
  auto m = Load(NaflexDir());
  ASSERT_TRUE(m);
  const int dim = m->embedding_dim();
  const std::vector<Image> pictures = {Picture(300, 300), Picture(640, 480), Picture(100, 900), Picture(480, 640),
                                       Picture(7, 5)};
  const size_t floats = static_cast<size_t>(m->preprocessing().input_floats());
  std::vector<float> batch;
  for (const Image& p : pictures) {
    const std::vector<float> input = ModelInput(*m, p);
    batch.insert(batch.end(), input.begin(), input.end());
  }
  std::vector<float> together(pictures.size() * dim);
  ASSERT_TRUE(m->EncodeImages(batch.data(), static_cast<int>(pictures.size()), together.data()).ok());
  for (size_t i = 0; i < pictures.size(); ++i) {
    std::vector<float> alone(dim);
    ASSERT_TRUE(m->EncodeImages(batch.data() + i * floats, 1, alone.data()).ok());
    EXPECT_GE(Cosine(alone, {together.begin() + i * dim, together.begin() + (i + 1) * dim}), 0.9999999) << i;
  }
  // 640 × 480 and 480 × 640 have the same patch count but not the same grid.
  EXPECT_LT(Cosine({together.begin() + dim, together.begin() + 2 * dim},
                   {together.begin() + 3 * dim, together.begin() + 4 * dim}),
            0.9999);
}

TEST(Naflex, LargeBatchesSplitIntoPassesGiveTheSameEmbeddings) {
  // 45 images of 196 patches exceed one pass's 8192 tokens: two passes, each image as alone.
  auto m = Load(NaflexDir());
  ASSERT_TRUE(m);
  const int dim = m->embedding_dim();
  const std::vector<float> one = ModelInput(*m, Picture(300, 300));
  ASSERT_EQ(one[0] * one[1], 196.0f);
  constexpr int kImages = 45;
  std::vector<float> batch;
  for (int i = 0; i < kImages; ++i) batch.insert(batch.end(), one.begin(), one.end());
  std::vector<float> together(static_cast<size_t>(kImages) * dim), alone(dim);
  ASSERT_TRUE(m->EncodeImages(batch.data(), kImages, together.data()).ok());
  ASSERT_TRUE(m->EncodeImages(one.data(), 1, alone.data()).ok());
  for (int i = 0; i < kImages; ++i) {
    EXPECT_GE(Cosine(alone, {together.begin() + i * dim, together.begin() + (i + 1) * dim}), 0.9999999) << i;
  }
}

TEST(Naflex, PatchBudgetSizeAsUpstream) {
  // Shapes upstream's Siglip2ImageProcessor gives (../shared/golden/families/siglip2-naflex).
  EXPECT_EQ(PatchBudgetSize(512, 512, 16, 64), std::make_pair(128, 128));
  EXPECT_EQ(PatchBudgetSize(300, 451, 16, 64), std::make_pair(96, 160));
  EXPECT_EQ(PatchBudgetSize(5, 7, 16, 64), std::make_pair(112, 144));  // small pictures are scaled up
  // Any shape stays within the budget, at least one patch per side.
  for (const auto& [h, w] :
       std::vector<std::pair<int, int>>{{1, 1}, {1, 100000}, {100000, 1}, {4000, 3000}, {17, 31}, {1080, 1920}}) {
    for (int budget : {1, 64, 256, 1024}) {
      const auto [oh, ow] = PatchBudgetSize(h, w, 16, budget);
      EXPECT_EQ(oh % 16, 0);
      EXPECT_EQ(ow % 16, 0);
      EXPECT_GE(oh, 16);
      EXPECT_GE(ow, 16);
      EXPECT_LE((oh / 16) * (ow / 16), budget) << h << "×" << w;
    }
  }
}

TEST(Naflex, ExtremeAspectRatiosEmbed) {
  auto m = Load(NaflexDir());
  ASSERT_TRUE(m);
  for (const Image& p : {Picture(1, 4000), Picture(4000, 1), Picture(1, 1)}) {
    const std::vector<float> emb = EmbedImage(*m, p);
    double norm = 0;
    for (float v : emb) norm += v * v;
    EXPECT_NEAR(norm, 1.0, 1e-5);
  }
}

TEST(Naflex, BadInputsGetClearErrors) {
  auto m = Load(NaflexDir());
  ASSERT_TRUE(m);
  std::vector<float> input = ModelInput(*m, Picture(64, 64)), emb(m->embedding_dim());
  for (const auto& [rows, cols] : std::vector<std::pair<float, float>>{{0, 4}, {15, 15}, {2.5f, 2}, {-1, -1}}) {
    input[0] = rows;
    input[1] = cols;
    const Status st = m->EncodeImages(input.data(), 1, emb.data());
    ASSERT_FALSE(st.ok()) << rows << "×" << cols;
    EXPECT_NE(st.message().find("patch grid"), std::string::npos) << st.ToString();
  }
  {
    const std::string dir = testing::CopyToTemp(NaflexDir());
    testing::EditJsonFile(dir + "/preprocessor_config.json", [](nlohmann::json& j) { j["max_num_patches"] = 0; });
    ExpectLoadError(dir, {"max_num_patches 0"});
  }
  {
    const std::string dir = testing::CopyToTemp(NaflexDir());
    testing::EditJsonFile(dir + "/preprocessor_config.json", [](nlohmann::json& j) { j["patch_size"] = 14; });
    ExpectLoadError(dir, {"patch_size 14", "16"});
  }
  {
    const std::string dir = testing::CopyToTemp(NaflexDir());
    testing::EditJsonFile(dir + "/config.json", [](nlohmann::json& j) { j["vision_config"]["patch_size"] = 32; });
    ExpectLoadError(dir, {"vision_config.patch_size 32"});
  }
  {
    // A fixed-resolution checkpoint's convolution is not read as NaFlex's Linear layer, nor the reverse.
    const std::string dir = testing::CopyToTemp(NaflexDir());
    testing::EditJsonFile(dir + "/config.json", [](nlohmann::json& j) { j["model_type"] = "siglip"; });
    ExpectLoadError(dir, {"patch_embedding.weight", "rank 2, expected 4"});
  }
}

}  // namespace
}  // namespace imgsearch
