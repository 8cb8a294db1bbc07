// Writes a random-weight CLIP model in Hugging Face layout (config.json, model.safetensors,
// vocab.json, merges.txt) for tests and benchmarks: real pretrained weights cannot be fetched
// everywhere, and a random model exercises every numeric step just the same.
//
//   make_test_model --out DIR [--preset tiny|vit-b-32|vit-b-16|vit-l-14] [--dtype F32|F16|BF16]
//                   [--seed N] [--tokenizer-from DIR]
//
// Without --tokenizer-from, a small synthetic BPE vocabulary is written (the 512 byte tokens, merges
// for a list of common words, then <|startoftext|> and <|endoftext|> as the two highest ids).
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <string>
#include <vector>

namespace {

struct Preset {
  int text_width, text_layers, text_heads, context;
  int vision_width, vision_layers, vision_heads, patch, image_size;
  int projection;
};

const std::map<std::string, Preset> kPresets = {
    {"tiny", {64, 2, 2, 77, 96, 2, 2, 32, 224, 48}},
    {"vit-b-32", {512, 12, 8, 77, 768, 12, 12, 32, 224, 512}},
    {"vit-b-16", {512, 12, 8, 77, 768, 12, 12, 16, 224, 512}},
    {"vit-l-14", {768, 12, 12, 77, 1024, 24, 16, 14, 224, 768}},
};

const char* kWords[] = {"a",      "an",    "the",      "photo", "of",     "cat",   "dog",    "car",  "red",
                        "snow",   "in",    "on",       "with",  "rocket", "cup",   "coffee", "tree", "beach",
                        "people", "space", "suit",     "white", "blue",   "green", "night",  "city", "street",
                        "house",  "water", "mountain", "sky",   "flower", "bird",  "person", "man",  "woman"};

std::string Utf8(char32_t c) {
  std::string s;
  if (c < 0x80) {
    s += static_cast<char>(c);
  } else {
    s += static_cast<char>(0xC0 | (c >> 6));
    s += static_cast<char>(0x80 | (c & 0x3F));
  }
  return s;
}

// GPT-2's bytes_to_unicode table.
std::vector<std::string> ByteSymbols() {
  std::vector<std::string> symbols(256);
  int next = 256;
  for (int b = 0; b < 256; ++b) {
    const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
    symbols[b] = Utf8(printable ? static_cast<char32_t>(b) : static_cast<char32_t>(next++));
  }
  return symbols;
}

// Returns the vocabulary size.
int WriteSyntheticTokenizer(const std::filesystem::path& dir) {
  const std::vector<std::string> bytes = ByteSymbols();
  nlohmann::ordered_json vocab;
  int next_id = 0;
  for (const std::string& s : bytes) vocab[s] = next_id++;
  for (const std::string& s : bytes) vocab[s + "</w>"] = next_id++;
  std::vector<std::string> merges;
  for (const char* word : kWords) {
    // Merge the word left to right: "c a", "ca t</w>".
    std::string w = word;
    std::string acc(1, w[0]);
    for (size_t i = 1; i < w.size(); ++i) {
      std::string next(1, w[i]);
      if (i + 1 == w.size()) next += "</w>";
      const std::string merged = acc + next;
      if (!vocab.contains(merged)) {
        merges.push_back(acc + " " + next);
        vocab[merged] = next_id++;
      }
      acc = merged;
    }
  }
  vocab["<|startoftext|>"] = next_id++;
  vocab["<|endoftext|>"] = next_id++;
  std::ofstream(dir / "vocab.json") << vocab.dump();
  std::ofstream m(dir / "merges.txt");
  m << "#version: 0.2\n";
  for (const std::string& line : merges) m << line << "\n";
  return next_id;
}

struct Tensor {
  std::string name;
  std::vector<int64_t> shape;
  enum Init { kNormal, kOnes, kZeros } init = kNormal;
  float scale = 0.02f;
};

uint16_t ToF16(float f) {
  uint32_t x;
  std::memcpy(&x, &f, 4);
  const uint32_t sign = (x >> 16) & 0x8000;
  int32_t exp = static_cast<int32_t>((x >> 23) & 0xFF) - 127 + 15;
  uint32_t mant = x & 0x7FFFFF;
  if (exp <= 0) return static_cast<uint16_t>(sign);  // tiny values flush to zero
  if (exp >= 31) return static_cast<uint16_t>(sign | 0x7C00);
  uint32_t h = sign | (static_cast<uint32_t>(exp) << 10) | (mant >> 13);
  if ((mant & 0x1FFF) > 0x1000 || ((mant & 0x1FFF) == 0x1000 && (h & 1))) ++h;  // round to nearest even
  return static_cast<uint16_t>(h);
}

uint16_t ToBf16(float f) {
  uint32_t x;
  std::memcpy(&x, &f, 4);
  x += 0x7FFF + ((x >> 16) & 1);
  return static_cast<uint16_t>(x >> 16);
}

void AddBlock(std::vector<Tensor>* t, const std::string& prefix, int width, int mlp) {
  t->push_back({prefix + ".layer_norm1.weight", {width}, Tensor::kOnes});
  t->push_back({prefix + ".layer_norm1.bias", {width}, Tensor::kZeros});
  for (const char* p : {"q_proj", "k_proj", "v_proj", "out_proj"}) {
    t->push_back({prefix + ".self_attn." + p + ".weight", {width, width}});
    t->push_back({prefix + ".self_attn." + p + ".bias", {width}});
  }
  t->push_back({prefix + ".layer_norm2.weight", {width}, Tensor::kOnes});
  t->push_back({prefix + ".layer_norm2.bias", {width}, Tensor::kZeros});
  t->push_back({prefix + ".mlp.fc1.weight", {mlp, width}});
  t->push_back({prefix + ".mlp.fc1.bias", {mlp}});
  t->push_back({prefix + ".mlp.fc2.weight", {width, mlp}});
  t->push_back({prefix + ".mlp.fc2.bias", {width}});
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"write a random-weight CLIP model for tests"};
  std::string out_dir, preset_name = "tiny", dtype = "F32", tokenizer_from;
  uint64_t seed = 1;
  app.add_option("--out", out_dir, "output directory")->required();
  app.add_option("--preset", preset_name, "tiny, vit-b-32, vit-b-16 or vit-l-14")->capture_default_str();
  app.add_option("--dtype", dtype, "F32, F16 or BF16")->capture_default_str();
  app.add_option("--seed", seed, "random seed")->capture_default_str();
  app.add_option("--tokenizer-from", tokenizer_from, "copy vocab.json and merges.txt from this model directory");
  CLI11_PARSE(app, argc, argv);
  auto preset_it = kPresets.find(preset_name);
  if (preset_it == kPresets.end() || (dtype != "F32" && dtype != "F16" && dtype != "BF16")) {
    std::fprintf(stderr, "make_test_model: unknown preset or dtype\n");
    return 2;
  }
  const Preset& p = preset_it->second;
  const std::filesystem::path dir(out_dir);
  std::filesystem::create_directories(dir);

  int vocab_size = 0;
  if (!tokenizer_from.empty()) {
    for (const char* f : {"vocab.json", "merges.txt"}) {
      std::filesystem::copy_file(std::filesystem::path(tokenizer_from) / f, dir / f,
                                 std::filesystem::copy_options::overwrite_existing);
      std::filesystem::permissions(dir / f, std::filesystem::perms::owner_write, std::filesystem::perm_options::add);
    }
    std::ifstream in(dir / "vocab.json");
    vocab_size = static_cast<int>(nlohmann::json::parse(in).size());
  } else {
    vocab_size = WriteSyntheticTokenizer(dir);
  }

  const int grid = p.image_size / p.patch;
  std::vector<Tensor> tensors;
  tensors.push_back({"logit_scale", {1}, Tensor::kOnes});
  tensors.push_back({"text_model.embeddings.token_embedding.weight", {vocab_size, p.text_width}});
  tensors.push_back({"text_model.embeddings.position_embedding.weight", {p.context, p.text_width}});
  for (int i = 0; i < p.text_layers; ++i) {
    AddBlock(&tensors, "text_model.encoder.layers." + std::to_string(i), p.text_width, 4 * p.text_width);
  }
  tensors.push_back({"text_model.final_layer_norm.weight", {p.text_width}, Tensor::kOnes});
  tensors.push_back({"text_model.final_layer_norm.bias", {p.text_width}, Tensor::kZeros});
  tensors.push_back({"text_projection.weight", {p.projection, p.text_width}});
  tensors.push_back({"vision_model.embeddings.class_embedding", {p.vision_width}});
  tensors.push_back({"vision_model.embeddings.patch_embedding.weight", {p.vision_width, 3, p.patch, p.patch}});
  tensors.push_back({"vision_model.embeddings.position_embedding.weight", {grid * grid + 1, p.vision_width}});
  tensors.push_back({"vision_model.pre_layrnorm.weight", {p.vision_width}, Tensor::kOnes});
  tensors.push_back({"vision_model.pre_layrnorm.bias", {p.vision_width}, Tensor::kZeros});
  for (int i = 0; i < p.vision_layers; ++i) {
    AddBlock(&tensors, "vision_model.encoder.layers." + std::to_string(i), p.vision_width, 4 * p.vision_width);
  }
  tensors.push_back({"vision_model.post_layernorm.weight", {p.vision_width}, Tensor::kOnes});
  tensors.push_back({"vision_model.post_layernorm.bias", {p.vision_width}, Tensor::kZeros});
  tensors.push_back({"visual_projection.weight", {p.projection, p.vision_width}});

  const size_t elem = dtype == "F32" ? 4 : 2;
  nlohmann::ordered_json header;
  header["__metadata__"] = {{"format", "pt"}, {"generator", "imgsearch make_test_model"}};
  uint64_t offset = 0;
  for (const Tensor& t : tensors) {
    int64_t n = 1;
    for (int64_t d : t.shape) n *= d;
    header[t.name] = {{"dtype", dtype}, {"shape", t.shape}, {"data_offsets", {offset, offset + n * elem}}};
    offset += n * elem;
  }
  std::string header_text = header.dump();
  while ((header_text.size() + 8) % 8 != 0) header_text += ' ';

  const std::filesystem::path tmp = dir / "model.safetensors.tmp";
  std::FILE* f = std::fopen(tmp.c_str(), "wb");
  if (f == nullptr) {
    std::perror("make_test_model");
    return 1;
  }
  const uint64_t header_len = header_text.size();
  for (int i = 0; i < 8; ++i) std::fputc(static_cast<int>((header_len >> (8 * i)) & 0xFF), f);
  std::fwrite(header_text.data(), 1, header_text.size(), f);
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<uint8_t> buf;
  for (const Tensor& t : tensors) {
    int64_t n = 1;
    for (int64_t d : t.shape) n *= d;
    buf.resize(static_cast<size_t>(n) * elem);
    for (int64_t i = 0; i < n; ++i) {
      float v = t.init == Tensor::kOnes ? 1.0f : t.init == Tensor::kZeros ? 0.0f : normal(rng) * t.scale;
      if (t.init != Tensor::kNormal) v += normal(rng) * 0.02f;  // perturbed, so LayerNorm parameters matter
      if (elem == 4) {
        std::memcpy(buf.data() + 4 * i, &v, 4);
      } else {
        const uint16_t h = dtype == "F16" ? ToF16(v) : ToBf16(v);
        std::memcpy(buf.data() + 2 * i, &h, 2);
      }
    }
    std::fwrite(buf.data(), 1, buf.size(), f);
  }
  if (std::fclose(f) != 0) {
    std::perror("make_test_model");
    return 1;
  }
  std::filesystem::rename(tmp, dir / "model.safetensors");

  nlohmann::ordered_json config = {{"architectures", {"CLIPModel"}},
                                   {"model_type", "clip"},
                                   {"projection_dim", p.projection},
                                   {"text_config",
                                    {{"hidden_size", p.text_width},
                                     {"intermediate_size", 4 * p.text_width},
                                     {"num_attention_heads", p.text_heads},
                                     {"num_hidden_layers", p.text_layers},
                                     {"max_position_embeddings", p.context},
                                     {"vocab_size", vocab_size},
                                     {"hidden_act", "quick_gelu"},
                                     {"layer_norm_eps", 1e-5}}},
                                   {"vision_config",
                                    {{"hidden_size", p.vision_width},
                                     {"intermediate_size", 4 * p.vision_width},
                                     {"num_attention_heads", std::max(1, p.vision_width / 64)},
                                     {"num_hidden_layers", p.vision_layers},
                                     {"image_size", p.image_size},
                                     {"patch_size", p.patch},
                                     {"hidden_act", "quick_gelu"},
                                     {"layer_norm_eps", 1e-5}}}};
  std::ofstream(dir / "config.json") << config.dump(2) << "\n";
  std::printf("wrote %s (%s, %s, %.1f MB)\n", dir.c_str(), preset_name.c_str(), dtype.c_str(),
              (offset + header_len + 8) / 1e6);
  return 0;
}
