// Model loading: the layouts we accept and a clear error, never a crash, for every kind of bad input.
#include <gtest/gtest.h>

#include <filesystem>
#include <random>
#include <thread>

#include <nlohmann/json.hpp>

#include "imgsearch/clip.h"
#include "test_util.h"
#include "torch_zip_writer.h"

namespace imgsearch {
namespace {

namespace fs = std::filesystem;
using testing::MakeTempDir;
using testing::ReadFile;
using testing::WriteFile;

// A safetensors file split into its JSON header and data bytes, to be edited and written back.
struct Safetensors {
  nlohmann::ordered_json header;
  std::string data;

  static Safetensors Read(const std::string& path) {
    const std::string bytes = ReadFile(path);
    uint64_t n = 0;
    for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<uint8_t>(bytes[i]);
    Safetensors st;
    st.header = nlohmann::ordered_json::parse(bytes.substr(8, n));
    st.data = bytes.substr(8 + n);
    return st;
  }

  void Write(const std::string& path) const { WriteFile(path, Serialize(header.dump(), data)); }

  static std::string Serialize(const std::string& header_text, const std::string& data) {
    std::string out(8, '\0');
    const uint64_t n = header_text.size();
    for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((n >> (8 * i)) & 0xFF);
    return out + header_text + data;
  }
};

// A copy of the test model that a test may damage.
std::string CopyModel() {
  const std::string dir = MakeTempDir() + "/model";
  fs::copy(testing::TestModelDir(), dir, fs::copy_options::recursive);
  return dir;
}

Status LoadStatus(const std::string& dir) {
  auto m = ClipModel::Load(dir);
  return m.ok() ? Status::Ok() : m.status();
}

void ExpectError(const std::string& dir, const std::vector<std::string>& needles) {
  const Status st = LoadStatus(dir);
  ASSERT_FALSE(st.ok()) << "loading should fail";
  for (const std::string& n : needles) EXPECT_NE(st.message().find(n), std::string::npos) << st.ToString();
}

TEST(Loader, LoadsTheTestModelAndDerivesTheArchitecture) {
  auto model = ClipModel::Load(testing::TestModelDir());
  ASSERT_TRUE(model.ok()) << model.status().ToString();
  const ModelInfo& info = (*model)->info();
  EXPECT_EQ(info.text.width, 64);
  EXPECT_EQ(info.text.n_layers, 2);
  EXPECT_EQ(info.text.n_head, 2);    // from config.json
  EXPECT_EQ(info.vision.n_head, 1);  // width // 64, as OpenAI's CLIP builds it
  EXPECT_EQ(info.vision.width, 96);
  EXPECT_EQ(info.patch_size, 32);
  EXPECT_EQ(info.image_size, 224);
  EXPECT_EQ(info.embedding_dim, 48);
  EXPECT_EQ(info.text.n_positions, 77);
  EXPECT_EQ(info.dtype, "F32");
  EXPECT_GT(info.n_params, 0);
}

TEST(Loader, MissingDirectoryAndFiles) {
  ExpectError("/nonexistent/model", {"/nonexistent/model", "does not exist"});
  for (const char* file : {"vocab.json", "merges.txt", "model.safetensors"}) {
    const std::string dir = CopyModel();
    fs::remove(dir + "/" + file);
    ExpectError(dir, {file});
  }
}

TEST(Loader, PytorchModelBinIsReadByItsContent) {
  // Without model.safetensors, pytorch_model.bin is the weights, in whichever format its bytes are.
  const std::string dir = CopyModel();
  auto reference = ClipModel::Load(dir);
  ASSERT_TRUE(reference.ok());
  fs::rename(dir + "/model.safetensors", dir + "/pytorch_model.bin");
  auto renamed = ClipModel::Load(dir);
  ASSERT_TRUE(renamed.ok()) << renamed.status().ToString();
  EXPECT_EQ((*renamed)->info().fingerprint, (*reference)->info().fingerprint);
  WriteFile(dir + "/pytorch_model.bin", std::string("PK\x03\x04", 4) + std::string(200, '\0'));
  ExpectError(dir, {"pytorch_model.bin"});
  fs::remove(dir + "/pytorch_model.bin");
  ExpectError(dir, {"missing file", "model.safetensors", "pytorch_model.bin"});
}

// make_test_model's model for `preset` and `seed`, its weights in `format`, in a new folder.
std::string MakeTestModel(const std::string& preset, int seed, const std::string& format,
                          const std::string& tokenizer_from = "") {
  const std::string dir = MakeTempDir() + "/" + preset + "-" + format;
  std::vector<std::string> argv = {
      IMGSEARCH_MAKE_TEST_MODEL, "--out", dir, "--preset", preset, "--seed", std::to_string(seed),
      "--weights-format",        format};
  if (!tokenizer_from.empty()) argv.insert(argv.end(), {"--tokenizer-from", tokenizer_from});
  const auto made = testing::RunCommand(argv);
  EXPECT_EQ(made.exit_code, 0) << made.err;
  return dir;
}

// Row i of `rows` (of `dim` floats each).
std::vector<float> Row(const std::vector<float>& rows, int dim, size_t i) {
  return std::vector<float>(rows.begin() + static_cast<std::ptrdiff_t>(i * dim),
                            rows.begin() + static_cast<std::ptrdiff_t>((i + 1) * dim));
}

TEST(Loader, TorchCheckpointsLoadLikeSafetensors) {
  // The same model written by make_test_model as model.safetensors and as pytorch_model.bin: the
  // same tokens and the same embeddings, for each family (CLIP, SigLIP, SigLIP 2). The torch one
  // takes the tokenizer of the first, so that both have the same vocabulary and so the same weights.
  const std::vector<std::string> texts = {"a photo of a cat", "a red car in the snow", "ein Hund im Schnee", ""};
  for (const std::string preset : {"tiny", "siglip-tiny", "siglip2-tiny"}) {
    SCOPED_TRACE(preset);
    const std::string safetensors_dir = MakeTestModel(preset, 21, "safetensors");
    const std::string torch_dir = MakeTestModel(preset, 21, "torch", safetensors_dir);
    EXPECT_FALSE(fs::exists(torch_dir + "/model.safetensors"));
    auto reference = ClipModel::Load(safetensors_dir);
    ASSERT_TRUE(reference.ok()) << reference.status().ToString();
    auto model = ClipModel::Load(torch_dir);
    ASSERT_TRUE(model.ok()) << model.status().ToString();
    const ClipModel& a = **reference;
    const ClipModel& b = **model;
    EXPECT_EQ(b.info().weights_path, torch_dir + "/pytorch_model.bin");
    EXPECT_EQ(b.info().family, a.info().family);
    EXPECT_EQ(b.info().dtype, "F32");
    EXPECT_EQ(b.info().n_params, a.info().n_params);
    ASSERT_EQ(b.embedding_dim(), a.embedding_dim());
    ASSERT_EQ(b.image_size(), a.image_size());

    for (const std::string& text : texts) EXPECT_EQ(b.Tokenize(text), a.Tokenize(text)) << text;
    const int dim = a.embedding_dim();
    std::vector<float> text_a(texts.size() * dim), text_b(texts.size() * dim);
    ASSERT_TRUE(a.EncodeTexts(texts, text_a.data()).ok());
    ASSERT_TRUE(b.EncodeTexts(texts, text_b.data()).ok());
    for (size_t i = 0; i < texts.size(); ++i) {
      EXPECT_GE(testing::Cosine(Row(text_a, dim, i), Row(text_b, dim, i)), 0.9999999) << texts[i];
    }

    const int n_images = 2, side = a.image_size();
    std::vector<float> pixels(static_cast<size_t>(n_images) * 3 * side * side);
    std::mt19937 rng(5);
    std::uniform_real_distribution<float> uniform(-1.0f, 1.0f);
    for (float& p : pixels) p = uniform(rng);
    std::vector<float> image_a(n_images * dim), image_b(n_images * dim);
    ASSERT_TRUE(a.EncodeImages(pixels.data(), n_images, image_a.data()).ok());
    ASSERT_TRUE(b.EncodeImages(pixels.data(), n_images, image_b.data()).ok());
    for (int i = 0; i < n_images; ++i) {
      EXPECT_GE(testing::Cosine(Row(image_a, dim, i), Row(image_b, dim, i)), 0.9999999) << "image " << i;
    }
  }
}

TEST(Loader, DamagedPytorchModelBinIsAClearError) {
  const std::string dir = MakeTestModel("tiny", 21, "torch");
  const std::string bin = dir + "/pytorch_model.bin";
  const std::string bytes = ReadFile(bin);
  ASSERT_TRUE(LoadStatus(dir).ok()) << LoadStatus(dir).ToString();
  // Cut anywhere: in the central directory, in a storage, in data.pkl, in the first header.
  for (size_t size : {bytes.size() - 1, bytes.size() - 100, bytes.size() / 2, size_t{200}, size_t{10}, size_t{0}}) {
    SCOPED_TRACE(size);
    WriteFile(bin, bytes.substr(0, size));
    ExpectError(dir, {"pytorch_model.bin"});
  }
  // A pickle that would run os.system('touch ...') under torch.load: refused by name, and nothing
  // is run.
  const std::string witness = MakeTempDir() + "/pwned";
  tools::Pickler p;
  p.Op('c').Raw("os\nsystem\n").Str("touch " + witness).Op(0x85).Op('R');
  WriteFile(bin, tools::WriteZip(tools::TorchSaveRecords(p.Stop(), {}, "pytorch_model")));
  ExpectError(dir, {"pytorch_model.bin", "refuses pickle global os.system"});
  EXPECT_FALSE(fs::exists(witness));
}

TEST(Loader, SentenceTransformersLayout) {
  const std::string root = MakeTempDir() + "/clip-ViT-B-32";
  fs::create_directories(root);
  fs::copy(testing::TestModelDir(), root + "/0_CLIPModel", fs::copy_options::recursive);
  WriteFile(root + "/modules.json", "[]");
  auto model = ClipModel::Load(root);
  ASSERT_TRUE(model.ok()) << model.status().ToString();
  EXPECT_EQ((*model)->info().dir, root + "/0_CLIPModel");
}

TEST(Loader, TruncatedWeights) {
  const std::string dir = CopyModel();
  const std::string bytes = ReadFile(dir + "/model.safetensors");
  WriteFile(dir + "/model.safetensors", bytes.substr(0, bytes.size() / 2));
  ExpectError(dir, {"model.safetensors", "truncated"});
  WriteFile(dir + "/model.safetensors", bytes.substr(0, 5));
  ExpectError(dir, {"model.safetensors", "too short"});
  WriteFile(dir + "/model.safetensors", "");
  ExpectError(dir, {"model.safetensors"});
}

TEST(Loader, BadHeader) {
  const std::string dir = CopyModel();
  const Safetensors st = Safetensors::Read(dir + "/model.safetensors");
  WriteFile(dir + "/model.safetensors", Safetensors::Serialize("{not json", st.data));
  ExpectError(dir, {"model.safetensors", "not valid JSON"});
  WriteFile(dir + "/model.safetensors", Safetensors::Serialize("[1, 2]", st.data));
  ExpectError(dir, {"not a JSON object"});
  std::string huge = Safetensors::Serialize("{}", st.data);
  huge[6] = 0x7F;  // header length far beyond the file
  WriteFile(dir + "/model.safetensors", huge);
  ExpectError(dir, {"header length"});
}

TEST(Loader, MissingTensorIsNamed) {
  const std::string dir = CopyModel();
  Safetensors st = Safetensors::Read(dir + "/model.safetensors");
  st.header.erase("vision_model.post_layernorm.weight");
  st.Write(dir + "/model.safetensors");
  ExpectError(dir, {"missing tensor vision_model.post_layernorm.weight"});
}

TEST(Loader, WrongShapeIsNamed) {
  const std::string dir = CopyModel();
  Safetensors st = Safetensors::Read(dir + "/model.safetensors");
  st.header["text_model.encoder.layers.1.mlp.fc2.weight"]["shape"] = {256, 64};  // same bytes, transposed
  st.Write(dir + "/model.safetensors");
  ExpectError(dir, {"text_model.encoder.layers.1.mlp.fc2.weight", "[256, 64]", "expected [64, 256]"});
}

TEST(Loader, UnsupportedDtypeIsNamed) {
  const std::string dir = CopyModel();
  Safetensors st = Safetensors::Read(dir + "/model.safetensors");
  st.header["vision_model.pre_layrnorm.bias"]["dtype"] = "I32";
  st.Write(dir + "/model.safetensors");
  ExpectError(dir, {"vision_model.pre_layrnorm.bias", "I32"});
}

TEST(Loader, BadConfigJson) {
  const std::string dir = CopyModel();
  WriteFile(dir + "/config.json", "{");
  ExpectError(dir, {"config.json"});
  WriteFile(dir + "/config.json", R"({"vision_config": {"hidden_act": "relu"}})");
  ExpectError(dir, {"config.json", "relu"});
  WriteFile(dir + "/config.json", R"({"text_config": {"num_attention_heads": 3}})");
  ExpectError(dir, {"not divisible"});
  fs::remove(dir + "/config.json");  // optional: shapes say enough
  EXPECT_TRUE(LoadStatus(dir).ok());
}

uint16_t ToHalf(float f, bool bf16) {
  uint32_t x;
  std::memcpy(&x, &f, 4);
  if (bf16) return static_cast<uint16_t>((x + 0x7FFF + ((x >> 16) & 1)) >> 16);
  const uint32_t sign = (x >> 16) & 0x8000;
  const int32_t exp = static_cast<int32_t>((x >> 23) & 0xFF) - 112;
  if (exp <= 0) return static_cast<uint16_t>(sign);
  return static_cast<uint16_t>(sign | (exp << 10) | ((x & 0x7FFFFF) >> 13));
}

// Rewrites every F32 tensor as F16 or BF16.
void ConvertWeights(const std::string& path, bool bf16) {
  const Safetensors in = Safetensors::Read(path);
  Safetensors out;
  uint64_t offset = 0;
  for (const auto& [name, entry] : in.header.items()) {
    if (name == "__metadata__") continue;
    const uint64_t b = entry["data_offsets"][0], e = entry["data_offsets"][1];
    std::string bytes = in.data.substr(b, e - b);
    nlohmann::ordered_json converted = entry;
    if (entry["dtype"] == "F32") {
      std::string half(bytes.size() / 2, '\0');
      for (size_t i = 0; i < bytes.size() / 4; ++i) {
        float f;
        std::memcpy(&f, bytes.data() + 4 * i, 4);
        const uint16_t h = ToHalf(f, bf16);
        std::memcpy(half.data() + 2 * i, &h, 2);
      }
      bytes = half;
      converted["dtype"] = bf16 ? "BF16" : "F16";
    }
    converted["data_offsets"] = {offset, offset + bytes.size()};
    offset += bytes.size();
    out.header[name] = converted;
    out.data += bytes;
  }
  out.Write(path);
}

TEST(Loader, HalfPrecisionCheckpointsMatchF32) {
  auto reference = ClipModel::Load(testing::TestModelDir());
  ASSERT_TRUE(reference.ok());
  const std::vector<std::string> texts = {"a photo of a cat", "a red car in the snow"};
  const int dim = (*reference)->embedding_dim();
  std::vector<float> ref(texts.size() * dim);
  ASSERT_TRUE((*reference)->EncodeTexts(texts, ref.data()).ok());
  for (bool bf16 : {false, true}) {
    const std::string dir = CopyModel();
    ConvertWeights(dir + "/model.safetensors", bf16);
    // int8: the widened towers are readied at load rather than at first use.
    for (Precision precision : {Precision::kFp32, Precision::kInt8}) {
      auto model = ClipModel::Load(dir, {.precision = precision});
      ASSERT_TRUE(model.ok()) << model.status().ToString();
      EXPECT_EQ((*model)->info().dtype, bf16 ? "BF16" : "F16");
      std::vector<float> out(texts.size() * dim);
      ASSERT_TRUE((*model)->EncodeTexts(texts, out.data()).ok());
      EXPECT_GT(testing::Cosine(ref, out), precision == Precision::kInt8 ? 0.99 : bf16 ? 0.99 : 0.9999);
    }
  }
}

TEST(Encoder, BatchedTextsMatchOneByOne) {
  auto model = ClipModel::Load(testing::TestModelDir());
  ASSERT_TRUE(model.ok()) << model.status().ToString();
  // Lengths from 3 tokens to the full context, in no particular order, with a duplicate: the batch
  // groups them by length and pads, which must change nothing.
  std::string long_text;
  for (int i = 0; i < 100; ++i) long_text += "word" + std::to_string(i) + " ";
  const std::vector<std::string> texts = {
      "a dog", long_text, "a red car in the snow at night", "cat", "a photo of a small bird sitting on a branch",
      "a dog", ""};
  const int dim = (*model)->embedding_dim();
  std::vector<float> batched(texts.size() * dim);
  ASSERT_TRUE((*model)->EncodeTexts(texts, batched.data()).ok());
  for (size_t i = 0; i < texts.size(); ++i) {
    std::vector<float> one(dim);
    ASSERT_TRUE((*model)->EncodeTexts(std::vector<std::string>{texts[i]}, one.data()).ok());
    const std::vector<float> row(batched.begin() + i * dim, batched.begin() + (i + 1) * dim);
    EXPECT_GT(testing::Cosine(one, row), 0.9999999) << "text " << i;
  }
}

// A tower is readied at its first use (q, k and v fused; weights converted to the precision and
// packed). Two threads using the two towers of a fresh model at the same moment get what one thread
// gets from them in turn.
TEST(Encoder, TowersReadiedFromTwoThreadsAtOnceGiveWhatTheyGiveInTurn) {
  const std::vector<std::string> texts = {"a photo of a cat", "a red car in the snow at night"};
  for (Precision precision : {Precision::kFp32, Precision::kAuto, Precision::kInt8}) {
    SCOPED_TRACE(static_cast<int>(precision));
    auto in_turn = ClipModel::Load(testing::TestModelDir(), {.precision = precision});
    auto at_once = ClipModel::Load(testing::TestModelDir(), {.precision = precision});
    ASSERT_TRUE(in_turn.ok()) << in_turn.status().ToString();
    ASSERT_TRUE(at_once.ok()) << at_once.status().ToString();
    const int dim = (*in_turn)->embedding_dim();
    const int n_images = 2;
    std::vector<float> pixels(static_cast<size_t>(n_images) * (*in_turn)->preprocessing().input_floats());
    std::mt19937 rng(5);
    std::normal_distribution<float> normal;
    for (float& v : pixels) v = normal(rng);

    std::vector<float> texts_ref(texts.size() * dim), images_ref(n_images * dim);
    ASSERT_TRUE((*in_turn)->EncodeTexts(texts, texts_ref.data()).ok());
    ASSERT_TRUE((*in_turn)->EncodeImages(pixels.data(), n_images, images_ref.data()).ok());

    std::vector<float> texts_out(texts.size() * dim), images_out(n_images * dim);
    Status texts_status;
    std::thread text_thread([&] { texts_status = (*at_once)->EncodeTexts(texts, texts_out.data()); });
    const Status images_status = (*at_once)->EncodeImages(pixels.data(), n_images, images_out.data());
    text_thread.join();
    ASSERT_TRUE(texts_status.ok()) << texts_status.ToString();
    ASSERT_TRUE(images_status.ok()) << images_status.ToString();
    EXPECT_GT(testing::Cosine(texts_ref, texts_out), 0.9999999);
    EXPECT_GT(testing::Cosine(images_ref, images_out), 0.9999999);
  }
}

TEST(Loader, RandomHeaderDamageNeverCrashes) {
  const std::string dir = CopyModel();
  const std::string original = ReadFile(dir + "/model.safetensors");
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | static_cast<uint8_t>(original[i]);
  std::mt19937 rng(42);
  int failures = 0;
  for (int round = 0; round < 60; ++round) {
    std::string damaged = original;
    for (int k = 0; k < 4; ++k) {
      const size_t pos = rng() % (8 + header_len);
      damaged[pos] = static_cast<char>(rng() & 0xFF);
    }
    WriteFile(dir + "/model.safetensors", damaged);
    auto model = ClipModel::Load(dir);
    if (!model.ok()) {
      ++failures;
      EXPECT_FALSE(model.status().message().empty());
    }
  }
  EXPECT_GT(failures, 0);
}

}  // namespace
}  // namespace imgsearch
