// Writes a random-weight model in Hugging Face layout for tests and benchmarks: real pretrained
// weights cannot be fetched everywhere, and a random model exercises every numeric step just the same.
//   CLIP presets:   config.json, model.safetensors, vocab.json, merges.txt (a CLIPModel).
//   SigLIP presets: config.json, model.safetensors, spiece.model (SigLIP) or tokenizer.model (SigLIP 2,
//                   Gemma-style), tokenizer_config.json, preprocessor_config.json (a SiglipModel; the
//                   NaFlex presets a Siglip2Model).
// With --weights-format torch, pytorch_model.bin (torch.save's zip, tools/torch_zip_writer.h) in place
// of model.safetensors, with the same weights for the same seed.
//
//   make_test_model --out DIR [--preset NAME] [--dtype F32|F16|BF16] [--seed N] [--tokenizer-from DIR]
//                   [--weights-format safetensors|torch]
//
// Without --tokenizer-from, a small tokenizer is made: for CLIP a synthetic BPE vocabulary (the 512
// byte tokens, merges for a list of common words, then <|startoftext|> and <|endoftext|> as the two
// highest ids); for SigLIP a SentencePiece model trained on a built-in text (unigram with SigLIP's
// special ids, or byte-fallback BPE with Gemma's).
#include <sentencepiece_processor.h>
#include <sentencepiece_trainer.h>
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
#include <set>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include "torch_zip_writer.h"

namespace {

enum class Family { kClip, kSiglip, kSiglip2 };

struct Preset {
  Family family;
  int text_width, text_layers, text_heads, context;
  int vision_width, vision_layers, vision_heads, patch, image_size;
  int projection;
  int mlp_ratio_x4 = 16;  // MLP width = width · mlp_ratio_x4 / 4
  // SigLIP 2 NaFlex (model_type "siglip2"): images keep their aspect ratio within (image_size /
  // patch)² patches, the position grid.
  bool naflex = false;
};

const std::map<std::string, Preset> kPresets = {
    {"tiny", {Family::kClip, 64, 2, 2, 77, 96, 2, 2, 32, 224, 48}},
    {"vit-b-32", {Family::kClip, 512, 12, 8, 77, 768, 12, 12, 32, 224, 512}},
    {"vit-b-16", {Family::kClip, 512, 12, 8, 77, 768, 12, 12, 16, 224, 512}},
    {"vit-l-14", {Family::kClip, 768, 12, 12, 77, 1024, 24, 16, 14, 224, 768}},
    // SigLIP: text and image towers of one width (the features are compared directly).
    {"siglip-tiny", {Family::kSiglip, 64, 2, 4, 64, 64, 2, 4, 16, 224, 64, 8}},
    {"siglip-b-16", {Family::kSiglip, 768, 12, 12, 64, 768, 12, 12, 16, 224, 768}},
    // SigLIP 2: a text width other than the projection's, as the format allows.
    {"siglip2-tiny", {Family::kSiglip2, 48, 2, 4, 64, 64, 2, 4, 16, 224, 64, 8}},
    {"siglip2-b-16", {Family::kSiglip2, 768, 12, 12, 64, 768, 12, 12, 16, 224, 768}},
    {"siglip2-b-32-256", {Family::kSiglip2, 768, 12, 12, 64, 768, 12, 12, 32, 256, 768}},
    // NaFlex: siglip2-tiny's shapes (a square image at 224 px is the same model), and
    // google/siglip2-base-patch16-naflex's (256 patches).
    {"siglip2-naflex-tiny", {Family::kSiglip2, 48, 2, 4, 64, 64, 2, 4, 16, 224, 64, 8, true}},
    {"siglip2-naflex-b-16", {Family::kSiglip2, 768, 12, 12, 64, 768, 12, 12, 16, 256, 768, 16, true}},
};

// Text the SentencePiece tokenizers are trained on: enough words for captions in tests.
const char* kCorpus[] = {"a photo of a cat",
                         "a photo of a dog",
                         "a red car in the snow",
                         "a cup of coffee on a saucer",
                         "a rocket on the launch pad",
                         "an astronaut in a white space suit",
                         "people walking on a city street at night",
                         "a house with a green tree",
                         "a blue sky over the mountain",
                         "a bird on a flower",
                         "the beach and the water",
                         "a man and a woman with a bicycle",
                         "text on a sign",
                         "un chat sur une table",
                         "ein Hund im Schnee",
                         "東京タワーの夜景",
                         "猫の写真",
                         "il y a 3 voitures et 12 vélos",
                         "numbers 0 1 2 3 4 5 6 7 8 9"};

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

// Trains a small SentencePiece model on kCorpus as dir/NAME.model with `args` (model type, size,
// special ids) and loads it into `sp`. False (with a message) on failure.
bool TrainSentencePiece(const std::filesystem::path& dir, const std::string& name, const std::string& args,
                        sentencepiece::SentencePieceProcessor* sp) {
  const std::filesystem::path corpus = dir / "corpus.txt.tmp";
  {
    std::ofstream out(corpus);
    for (int repeat = 0; repeat < 4; ++repeat) {
      for (const char* line : kCorpus) out << line << "\n";
    }
  }
  const std::string prefix = (dir / name).string();
  const auto status = sentencepiece::SentencePieceTrainer::Train(
      "--input=" + corpus.string() + " --model_prefix=" + prefix +
      " --character_coverage=1.0 --minloglevel=2 --hard_vocab_limit=false " + args);
  std::filesystem::remove(corpus);
  std::filesystem::remove(prefix + ".vocab");
  if (!status.ok()) {
    std::fprintf(stderr, "make_test_model: training the tokenizer failed: %s\n", status.ToString().c_str());
    return false;
  }
  return sp->Load(prefix + ".model").ok();
}

// SigLIP's or SigLIP 2's tokenizer trained on kCorpus, and its tokenizer_config.json.
// Returns the vocabulary size, or 0 on failure.
int WriteSentencePieceTokenizer(const std::filesystem::path& dir, Family family) {
  const bool gemma = family == Family::kSiglip2;
  // Gemma: <pad> 0, <eos> 1, <bos> 2, <unk> 3; byte fallback, no dummy prefix, text kept as is.
  const std::string gemma_args =
      "--model_type=bpe --vocab_size=400 --byte_fallback=true --pad_id=0 --eos_id=1 --bos_id=2 --unk_id=3"
      " --pad_piece=<pad> --eos_piece=<eos> --bos_piece=<bos> --unk_piece=<unk> --add_dummy_prefix=false"
      " --remove_extra_whitespaces=false --normalization_rule_name=identity --split_digits=true";
  // SigLIP: <pad> 0, </s> 1, <unk> 2, no BOS.
  const std::string siglip_args = "--model_type=unigram --vocab_size=200 --pad_id=0 --eos_id=1 --unk_id=2 --bos_id=-1";
  sentencepiece::SentencePieceProcessor sp;
  const bool trained = TrainSentencePiece(dir, gemma ? "tokenizer" : "spiece", gemma ? gemma_args : siglip_args, &sp);
  if (!trained) return 0;
  nlohmann::ordered_json added;
  auto add = [&](int id, bool strip) {
    added[std::to_string(id)] = {{"content", sp.IdToPiece(id)}, {"lstrip", strip},
                                 {"normalized", false},         {"rstrip", strip},
                                 {"single_word", false},        {"special", true}};
  };
  nlohmann::ordered_json config;
  if (gemma) {
    for (int id = 0; id < 4; ++id) add(id, false);
    config = {{"add_bos_token", false},        {"add_eos_token", true},
              {"added_tokens_decoder", added}, {"do_lower_case", true},
              {"pad_token", "<pad>"},          {"eos_token", "<eos>"},
              {"padding_side", "right"},       {"tokenizer_class", "GemmaTokenizer"}};
  } else {
    add(1, true);
    add(2, true);
    config = {{"added_tokens_decoder", added}, {"do_lower_case", true}, {"eos_token", "</s>"},
              {"model_max_length", 64},        {"pad_token", "</s>"},   {"tokenizer_class", "SiglipTokenizer"}};
  }
  std::ofstream(dir / "tokenizer_config.json") << config.dump(2) << "\n";
  return sp.GetPieceSize();
}

struct Tensor {
  std::string name;
  std::vector<int64_t> shape;
  enum Init { kNormal, kOnes, kZeros } init = kNormal;
  float scale = 0.02f;
  // A convolution's [out, 3, p, p] values, stored as the Linear layer [out, p·p·3] of the same
  // patches (SigLIP 2 NaFlex): the same random stream as the convolution, laid out channels last.
  bool as_patch_linear = false;

  std::vector<int64_t> stored_shape() const {
    if (!as_patch_linear) return shape;
    return {shape[0], shape[1] * shape[2] * shape[3]};
  }
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

// Writes `tensors` with random values drawn from `rng` into dir/model.safetensors, or with `torch`
// dir/pytorch_model.bin. Returns the bytes written, 0 (with a message) when the file cannot be.
uint64_t WriteWeights(const std::filesystem::path& dir, const std::vector<Tensor>& tensors, const std::string& dtype,
                      bool torch, std::mt19937_64& rng) {
  // One stream of random numbers over the tensors in order, whichever the format: a seed gives the
  // same weights as safetensors and as a torch checkpoint.
  const size_t elem = dtype == "F32" ? 4 : 2;
  std::normal_distribution<float> normal(0.0f, 1.0f);
  auto values = [&](const Tensor& t) {
    int64_t n = 1;
    for (int64_t d : t.shape) n *= d;
    std::vector<float> generated(static_cast<size_t>(n));
    for (float& v : generated) {
      v = t.init == Tensor::kOnes ? 1.0f : t.init == Tensor::kZeros ? 0.0f : normal(rng) * t.scale;
      if (t.init != Tensor::kNormal) v += normal(rng) * 0.02f;  // perturbed, so LayerNorm parameters matter
    }
    std::vector<float> stored = generated;
    if (t.as_patch_linear) {
      const int64_t channels = t.shape[1], rows = t.shape[2], cols = t.shape[3];
      for (int64_t i = 0; i < n; ++i) {  // i = ((o · channels + c) · rows + y) · cols + x
        const int64_t x = i % cols, y = i / cols % rows, c = i / (cols * rows) % channels,
                      o = i / (cols * rows * channels);
        stored[static_cast<size_t>(((o * rows + y) * cols + x) * channels + c)] = generated[static_cast<size_t>(i)];
      }
    }
    std::string bytes(static_cast<size_t>(n) * elem, '\0');
    for (int64_t i = 0; i < n; ++i) {
      const float v = stored[static_cast<size_t>(i)];
      if (elem == 4) {
        std::memcpy(bytes.data() + 4 * i, &v, 4);
      } else {
        const uint16_t h = dtype == "F16" ? ToF16(v) : ToBf16(v);
        std::memcpy(bytes.data() + 2 * i, &h, 2);
      }
    }
    return bytes;
  };

  const std::filesystem::path weights = dir / (torch ? "pytorch_model.bin" : "model.safetensors");
  // The other format's file, from an earlier run into this folder, would be read instead (the
  // loader prefers model.safetensors) or stay behind as a second copy.
  std::filesystem::remove(dir / (torch ? "model.safetensors" : "pytorch_model.bin"));
  const std::filesystem::path tmp = weights.string() + ".tmp";
  std::FILE* f = std::fopen(tmp.c_str(), "wb");
  if (f == nullptr) {
    std::perror("make_test_model");
    return 0;
  }
  uint64_t written = 0;
  auto write = [&](std::string_view bytes) {
    std::fwrite(bytes.data(), 1, bytes.size(), f);
    written += bytes.size();
  };
  if (torch) {
    // What torch.save(model.state_dict(), "pytorch_model.bin") writes, as transformers did before it
    // sharded checkpoints (the hub's older CLIP repositories hold such files); each tensor is made
    // only when its storage is written, so a large preset is never all in memory.
    std::vector<imgsearch::tools::NamedTensor> named;
    for (const Tensor& t : tensors)
      named.push_back({t.name, dtype, t.stored_shape(), "", [&values, &t] { return values(t); }});
    imgsearch::tools::WriteTorchStateDict(named, write, {.archive = "pytorch_model"});
  } else {
    nlohmann::ordered_json header;
    header["__metadata__"] = {{"format", "pt"}, {"generator", "imgsearch make_test_model"}};
    uint64_t offset = 0;
    for (const Tensor& t : tensors) {
      int64_t n = 1;
      for (int64_t d : t.shape) n *= d;
      header[t.name] = {{"dtype", dtype}, {"shape", t.stored_shape()}, {"data_offsets", {offset, offset + n * elem}}};
      offset += n * elem;
    }
    std::string header_text = header.dump();
    while ((header_text.size() + 8) % 8 != 0) header_text += ' ';
    std::string header_len(8, '\0');
    for (int i = 0; i < 8; ++i) header_len[i] = static_cast<char>((header_text.size() >> (8 * i)) & 0xFF);
    write(header_len);
    write(header_text);
    for (const Tensor& t : tensors) write(values(t));
  }
  if (std::ferror(f) != 0 || std::fclose(f) != 0) {
    std::perror("make_test_model");
    return 0;
  }
  std::filesystem::rename(tmp, weights);
  return written;
}

// Text-only towers into a CLIP model's space (imgsearch/text_model.h).
enum class TextBase { kDistilBert, kXlmRoberta };

struct TextPreset {
  TextBase base;
  int width, layers, heads, mlp;
  int projection;  // the image model's embedding size
};

const std::map<std::string, TextPreset> kTextPresets = {
    // Into the tiny CLIP preset's 48 dimensions.
    {"multilingual-tiny", {TextBase::kDistilBert, 64, 2, 4, 128, 48}},
    {"mclip-tiny", {TextBase::kXlmRoberta, 64, 2, 4, 128, 48}},
    // The shape of sentence-transformers/clip-ViT-B-32-multilingual-v1 (distilbert-base-multilingual).
    {"multilingual-b-32", {TextBase::kDistilBert, 768, 6, 12, 3072, 512}},
};

// A cased WordPiece vocabulary with BERT's special ids ([PAD] 0, [UNK] 100, [CLS] 101, [SEP] 102,
// [MASK] 103): ASCII characters and their "##" continuations, the test words, the corpus's other
// characters. Returns its size.
int WriteWordPieceVocab(const std::filesystem::path& dir) {
  std::vector<std::string> vocab = {"[PAD]"};
  for (int i = 1; i < 100; ++i) vocab.push_back("[unused" + std::to_string(i) + "]");
  for (const char* special : {"[UNK]", "[CLS]", "[SEP]", "[MASK]"}) vocab.push_back(special);
  std::set<std::string> seen(vocab.begin(), vocab.end());
  auto add = [&](const std::string& token) {
    if (seen.insert(token).second) vocab.push_back(token);
  };
  for (char c = '!'; c <= '~'; ++c) add(std::string(1, c));
  for (char c = '!'; c <= '~'; ++c) add("##" + std::string(1, c));
  for (const char* word : kWords) add(word);
  for (const char* line : kCorpus) {
    const std::string text = line;
    for (size_t i = 0; i < text.size();) {
      const unsigned char c = static_cast<unsigned char>(text[i]);
      const size_t len = c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
      if (c >= 0x80) {
        add(text.substr(i, len));
        add("##" + text.substr(i, len));
      }
      i += len;
    }
    std::istringstream words(text);
    for (std::string w; words >> w;) add(w);
  }
  std::ofstream out(dir / "vocab.txt");
  for (const std::string& token : vocab) out << token << "\n";
  return static_cast<int>(vocab.size());
}

// XLM-RoBERTa's SentencePiece unigram model (<unk> 0, <s> 1, </s> 2), as sentencepiece.bpe.model,
// and its tokenizer_config.json with fairseq's ids. Returns the size of the id space (pieces + 1 for
// fairseq's offset + <mask>), or 0.
int WriteXlmrTokenizer(const std::filesystem::path& dir) {
  sentencepiece::SentencePieceProcessor sp;
  if (!TrainSentencePiece(dir, "sentencepiece.bpe", "--model_type=unigram --vocab_size=200", &sp)) return 0;
  const int mask = sp.GetPieceSize() + 1;
  nlohmann::ordered_json added;
  const std::pair<int, const char*> specials[] = {
      {0, "<s>"}, {1, "<pad>"}, {2, "</s>"}, {3, "<unk>"}, {mask, "<mask>"}};
  for (const auto& [id, content] : specials) {
    added[std::to_string(id)] = {{"content", content}, {"lstrip", id == mask}, {"normalized", false},
                                 {"rstrip", false},    {"single_word", false}, {"special", true}};
  }
  const nlohmann::ordered_json config = {{"added_tokens_decoder", added},
                                         {"bos_token", "<s>"},
                                         {"eos_token", "</s>"},
                                         {"pad_token", "<pad>"},
                                         {"tokenizer_class", "XLMRobertaTokenizer"}};
  std::ofstream(dir / "tokenizer_config.json") << config.dump(2) << "\n";
  return mask + 1;
}

void AddBertBlock(std::vector<Tensor>* t, const std::string& prefix, TextBase base, int width, int mlp) {
  const bool distil = base == TextBase::kDistilBert;
  const char* names[] = {
      distil ? "attention.q_lin" : "attention.self.query", distil ? "attention.k_lin" : "attention.self.key",
      distil ? "attention.v_lin" : "attention.self.value", distil ? "attention.out_lin" : "attention.output.dense"};
  for (const char* n : names) {
    t->push_back({prefix + "." + n + ".weight", {width, width}});
    t->push_back({prefix + "." + n + ".bias", {width}});
  }
  for (const char* ln :
       {distil ? "sa_layer_norm" : "attention.output.LayerNorm", distil ? "output_layer_norm" : "output.LayerNorm"}) {
    t->push_back({prefix + "." + ln + ".weight", {width}, Tensor::kOnes});
    t->push_back({prefix + "." + ln + ".bias", {width}, Tensor::kZeros});
  }
  const std::string fc1 = distil ? "ffn.lin1" : "intermediate.dense", fc2 = distil ? "ffn.lin2" : "output.dense";
  t->push_back({prefix + "." + fc1 + ".weight", {mlp, width}});
  t->push_back({prefix + "." + fc1 + ".bias", {mlp}});
  t->push_back({prefix + "." + fc2 + ".weight", {width, mlp}});
  t->push_back({prefix + "." + fc2 + ".bias", {width}});
}

// A sentence-transformers folder (DistilBERT, mean pooling, Dense without bias) or an M-CLIP folder
// (XLM-RoBERTa with its base's config.json in base/, LinearTransformation).
int WriteTextModel(const std::filesystem::path& dir, const TextPreset& p, int projection, const std::string& dtype,
                   bool torch, std::mt19937_64& rng) {
  const bool distil = p.base == TextBase::kDistilBert;
  const int vocab = distil ? WriteWordPieceVocab(dir) : WriteXlmrTokenizer(dir);
  if (vocab == 0) return 1;
  const std::string prefix = distil ? "" : "transformer.";
  const int positions = distil ? 512 : 514;
  std::vector<Tensor> tensors;
  tensors.push_back({prefix + "embeddings.word_embeddings.weight", {vocab, p.width}});
  tensors.push_back({prefix + "embeddings.position_embeddings.weight", {positions, p.width}});
  if (!distil) tensors.push_back({prefix + "embeddings.token_type_embeddings.weight", {1, p.width}});
  tensors.push_back({prefix + "embeddings.LayerNorm.weight", {p.width}, Tensor::kOnes});
  tensors.push_back({prefix + "embeddings.LayerNorm.bias", {p.width}, Tensor::kZeros});
  for (int i = 0; i < p.layers; ++i) {
    AddBertBlock(&tensors, prefix + (distil ? "transformer.layer." : "encoder.layer.") + std::to_string(i), p.base,
                 p.width, p.mlp);
  }
  if (!distil) {
    tensors.push_back({"transformer.pooler.dense.weight", {p.width, p.width}});  // unused, as upstream's
    tensors.push_back({"transformer.pooler.dense.bias", {p.width}});
    tensors.push_back({"LinearTransformation.weight", {projection, p.width}});
    tensors.push_back({"LinearTransformation.bias", {projection}});
  }
  if (WriteWeights(dir, tensors, dtype, torch, rng) == 0) return 1;
  if (!distil) {
    const nlohmann::ordered_json config = {
        {"model_type", "M-CLIP"}, {"modelBase", "base"}, {"numDims", projection}, {"transformerDimensions", p.width}};
    std::ofstream(dir / "config.json") << config.dump(2) << "\n";
    std::filesystem::create_directories(dir / "base");
    const nlohmann::ordered_json base = {{"model_type", "xlm-roberta"},
                                         {"hidden_size", p.width},
                                         {"num_attention_heads", p.heads},
                                         {"num_hidden_layers", p.layers},
                                         {"intermediate_size", p.mlp},
                                         {"hidden_act", "gelu"},
                                         {"layer_norm_eps", 1e-5},
                                         {"max_position_embeddings", positions},
                                         {"pad_token_id", 1},
                                         {"type_vocab_size", 1},
                                         {"vocab_size", vocab}};
    std::ofstream(dir / "base" / "config.json") << base.dump(2) << "\n";
    return 0;
  }
  const nlohmann::ordered_json config = {{"model_type", "distilbert"},
                                         {"dim", p.width},
                                         {"n_layers", p.layers},
                                         {"n_heads", p.heads},
                                         {"hidden_dim", p.mlp},
                                         {"activation", "gelu"},
                                         {"max_position_embeddings", positions},
                                         {"sinusoidal_pos_embds", false},
                                         {"vocab_size", vocab}};
  std::ofstream(dir / "config.json") << config.dump(2) << "\n";
  const nlohmann::json modules = nlohmann::json::parse(R"([
    {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
    {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
    {"idx": 2, "name": "2", "path": "2_Dense", "type": "sentence_transformers.models.Dense"}])");
  std::ofstream(dir / "modules.json") << modules.dump(2) << "\n";
  std::ofstream(dir / "sentence_bert_config.json") << R"({"max_seq_length": 128, "do_lower_case": false})"
                                                   << "\n";
  const nlohmann::ordered_json tokenizer = {{"do_lower_case", false},
                                            {"tokenize_chinese_chars", true},
                                            {"strip_accents", nullptr},
                                            {"tokenizer_class", "DistilBertTokenizer"}};
  std::ofstream(dir / "tokenizer_config.json") << tokenizer.dump(2) << "\n";
  std::filesystem::create_directories(dir / "1_Pooling");
  std::ofstream(dir / "1_Pooling" / "config.json") << nlohmann::ordered_json{{"word_embedding_dimension", p.width},
                                                                             {"pooling_mode_cls_token", false},
                                                                             {"pooling_mode_mean_tokens", true},
                                                                             {"pooling_mode_max_tokens", false}}
                                                          .dump(2)
                                                   << "\n";
  std::filesystem::create_directories(dir / "2_Dense");
  std::ofstream(dir / "2_Dense" / "config.json")
      << nlohmann::ordered_json{{"in_features", p.width},
                                {"out_features", projection},
                                {"bias", false},
                                {"activation_function", "torch.nn.modules.linear.Identity"}}
             .dump(2)
      << "\n";
  return WriteWeights(dir / "2_Dense", {{"linear.weight", {projection, p.width}}}, dtype, torch, rng) == 0 ? 1 : 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"write a random-weight model for tests"};
  std::string out_dir, preset_name = "tiny", dtype = "F32", tokenizer_from, weights_format = "safetensors";
  uint64_t seed = 1;
  app.add_option("--out", out_dir, "output directory")->required();
  std::string preset_names;
  for (const auto& [name, preset] : kPresets) preset_names += (preset_names.empty() ? "" : ", ") + name;
  for (const auto& [name, preset] : kTextPresets) preset_names += ", " + name + " (text only)";
  int projection = 0;
  app.add_option("--projection", projection, "text-only presets: the embedding size (default: the preset's)");
  app.add_option("--preset", preset_name, preset_names)->capture_default_str();
  app.add_option("--dtype", dtype, "F32, F16 or BF16")->capture_default_str();
  app.add_option("--seed", seed, "random seed")->capture_default_str();
  app.add_option("--weights-format", weights_format,
                 "safetensors (model.safetensors) or torch (pytorch_model.bin, as torch.save writes it)")
      ->check(CLI::IsMember({"safetensors", "torch"}))
      ->capture_default_str();
  app.add_option("--tokenizer-from", tokenizer_from,
                 "copy the tokenizer files (vocab.json and merges.txt, or the SentencePiece model and "
                 "tokenizer_config.json) from this model directory");
  CLI11_PARSE(app, argc, argv);
  if (auto text = kTextPresets.find(preset_name); text != kTextPresets.end()) {
    if (dtype != "F32" && dtype != "F16" && dtype != "BF16") {
      std::fprintf(stderr, "make_test_model: unknown dtype\n");
      return 2;
    }
    const std::filesystem::path dir(out_dir);
    std::filesystem::create_directories(dir);
    std::mt19937_64 rng(seed);
    const int status = WriteTextModel(dir, text->second, projection > 0 ? projection : text->second.projection, dtype,
                                      weights_format == "torch", rng);
    if (status == 0) std::printf("wrote %s (%s, %s)\n", dir.c_str(), preset_name.c_str(), dtype.c_str());
    return status;
  }
  auto preset_it = kPresets.find(preset_name);
  if (preset_it == kPresets.end() || (dtype != "F32" && dtype != "F16" && dtype != "BF16")) {
    std::fprintf(stderr, "make_test_model: unknown preset or dtype\n");
    return 2;
  }
  const Preset& p = preset_it->second;
  const std::filesystem::path dir(out_dir);
  std::filesystem::create_directories(dir);

  const bool clip = p.family == Family::kClip;
  int vocab_size = 0;
  if (!tokenizer_from.empty()) {
    const std::vector<const char*> files =
        clip ? std::vector<const char*>{"vocab.json", "merges.txt"}
             : std::vector<const char*>{p.family == Family::kSiglip ? "spiece.model" : "tokenizer.model",
                                        "tokenizer_config.json"};
    for (const char* f : files) {
      std::filesystem::copy_file(std::filesystem::path(tokenizer_from) / f, dir / f,
                                 std::filesystem::copy_options::overwrite_existing);
      std::filesystem::permissions(dir / f, std::filesystem::perms::owner_write, std::filesystem::perm_options::add);
    }
    if (clip) {
      std::ifstream in(dir / "vocab.json");
      vocab_size = static_cast<int>(nlohmann::json::parse(in).size());
    } else {
      sentencepiece::SentencePieceProcessor sp;
      if (sp.Load((dir / files[0]).string()).ok()) vocab_size = sp.GetPieceSize();
    }
  } else {
    vocab_size = clip ? WriteSyntheticTokenizer(dir) : WriteSentencePieceTokenizer(dir, p.family);
  }
  if (vocab_size == 0) return 1;

  const int grid = p.image_size / p.patch;
  const int text_mlp = p.text_width * p.mlp_ratio_x4 / 4, vision_mlp = p.vision_width * p.mlp_ratio_x4 / 4;
  std::vector<Tensor> tensors;
  tensors.push_back({"logit_scale", {1}, Tensor::kOnes});
  if (!clip) tensors.push_back({"logit_bias", {1}, Tensor::kNormal, 1.0f});
  tensors.push_back({"text_model.embeddings.token_embedding.weight", {vocab_size, p.text_width}});
  tensors.push_back({"text_model.embeddings.position_embedding.weight", {p.context, p.text_width}});
  for (int i = 0; i < p.text_layers; ++i) {
    AddBlock(&tensors, "text_model.encoder.layers." + std::to_string(i), p.text_width, text_mlp);
  }
  tensors.push_back({"text_model.final_layer_norm.weight", {p.text_width}, Tensor::kOnes});
  tensors.push_back({"text_model.final_layer_norm.bias", {p.text_width}, Tensor::kZeros});
  if (clip) {
    tensors.push_back({"text_projection.weight", {p.projection, p.text_width}});
    tensors.push_back({"vision_model.embeddings.class_embedding", {p.vision_width}});
  } else {
    tensors.push_back({"text_model.head.weight", {p.projection, p.text_width}});
    tensors.push_back({"text_model.head.bias", {p.projection}});
    tensors.push_back({"vision_model.embeddings.patch_embedding.bias", {p.vision_width}});
  }
  tensors.push_back({"vision_model.embeddings.patch_embedding.weight",
                     {p.vision_width, 3, p.patch, p.patch},
                     Tensor::kNormal,
                     0.02f,
                     p.naflex});
  tensors.push_back(
      {"vision_model.embeddings.position_embedding.weight", {grid * grid + (clip ? 1 : 0), p.vision_width}});
  if (clip) {
    tensors.push_back({"vision_model.pre_layrnorm.weight", {p.vision_width}, Tensor::kOnes});
    tensors.push_back({"vision_model.pre_layrnorm.bias", {p.vision_width}, Tensor::kZeros});
  }
  for (int i = 0; i < p.vision_layers; ++i) {
    AddBlock(&tensors, "vision_model.encoder.layers." + std::to_string(i), p.vision_width, vision_mlp);
  }
  tensors.push_back({"vision_model.post_layernorm.weight", {p.vision_width}, Tensor::kOnes});
  tensors.push_back({"vision_model.post_layernorm.bias", {p.vision_width}, Tensor::kZeros});
  if (clip) {
    tensors.push_back({"visual_projection.weight", {p.projection, p.vision_width}});
  } else {
    const int w = p.vision_width;
    tensors.push_back({"vision_model.head.probe", {1, 1, w}, Tensor::kNormal, 1.0f});
    tensors.push_back({"vision_model.head.attention.in_proj_weight", {3 * w, w}});
    tensors.push_back({"vision_model.head.attention.in_proj_bias", {3 * w}});
    tensors.push_back({"vision_model.head.attention.out_proj.weight", {w, w}});
    tensors.push_back({"vision_model.head.attention.out_proj.bias", {w}});
    tensors.push_back({"vision_model.head.layernorm.weight", {w}, Tensor::kOnes});
    tensors.push_back({"vision_model.head.layernorm.bias", {w}, Tensor::kZeros});
    tensors.push_back({"vision_model.head.mlp.fc1.weight", {vision_mlp, w}});
    tensors.push_back({"vision_model.head.mlp.fc1.bias", {vision_mlp}});
    tensors.push_back({"vision_model.head.mlp.fc2.weight", {w, vision_mlp}});
    tensors.push_back({"vision_model.head.mlp.fc2.bias", {w}});
  }

  std::mt19937_64 rng(seed);
  const uint64_t written = WriteWeights(dir, tensors, dtype, weights_format == "torch", rng);
  if (written == 0) return 1;

  nlohmann::ordered_json config;
  if (clip) {
    config = {{"architectures", {"CLIPModel"}},
              {"model_type", "clip"},
              {"projection_dim", p.projection},
              {"text_config",
               {{"hidden_size", p.text_width},
                {"intermediate_size", text_mlp},
                {"num_attention_heads", p.text_heads},
                {"num_hidden_layers", p.text_layers},
                {"max_position_embeddings", p.context},
                {"vocab_size", vocab_size},
                {"hidden_act", "quick_gelu"},
                {"layer_norm_eps", 1e-5}}},
              {"vision_config",
               {{"hidden_size", p.vision_width},
                {"intermediate_size", vision_mlp},
                {"num_attention_heads", std::max(1, p.vision_width / 64)},
                {"num_hidden_layers", p.vision_layers},
                {"image_size", p.image_size},
                {"patch_size", p.patch},
                {"hidden_act", "quick_gelu"},
                {"layer_norm_eps", 1e-5}}}};
  } else {
    config = {{"architectures", {"SiglipModel"}},
              {"model_type", "siglip"},
              {"text_config",
               {{"model_type", "siglip_text_model"},
                {"hidden_size", p.text_width},
                {"intermediate_size", text_mlp},
                {"num_attention_heads", p.text_heads},
                {"num_hidden_layers", p.text_layers},
                {"max_position_embeddings", p.context},
                {"projection_size", p.projection},
                {"vocab_size", vocab_size},
                {"hidden_act", "gelu_pytorch_tanh"},
                {"layer_norm_eps", 1e-6}}},
              {"vision_config",
               {{"model_type", "siglip_vision_model"},
                {"hidden_size", p.vision_width},
                {"intermediate_size", vision_mlp},
                {"num_attention_heads", p.vision_heads},
                {"num_hidden_layers", p.vision_layers},
                {"image_size", p.image_size},
                {"patch_size", p.patch},
                {"hidden_act", "gelu_pytorch_tanh"},
                {"layer_norm_eps", 1e-6}}}};
    // SiglipImageProcessor: straight resize, BICUBIC (3) for SigLIP, BILINEAR (2) for SigLIP 2.
    nlohmann::ordered_json preprocessor = {{"do_normalize", true},
                                           {"do_rescale", true},
                                           {"do_resize", true},
                                           {"image_mean", {0.5, 0.5, 0.5}},
                                           {"image_std", {0.5, 0.5, 0.5}},
                                           {"image_processor_type", "SiglipImageProcessor"},
                                           {"resample", p.family == Family::kSiglip ? 3 : 2},
                                           {"rescale_factor", 1.0 / 255},
                                           {"size", {{"height", p.image_size}, {"width", p.image_size}}}};
    if (p.naflex) {
      // Siglip2Model: the position grid given as num_patches instead of an image size;
      // Siglip2ImageProcessor: a patch budget instead of a size.
      config["architectures"] = {"Siglip2Model"};
      config["model_type"] = "siglip2";
      config["text_config"]["model_type"] = "siglip2_text_model";
      auto& vision = config["vision_config"];
      vision["model_type"] = "siglip2_vision_model";
      vision.erase("image_size");
      vision["num_patches"] = grid * grid;
      preprocessor["image_processor_type"] = "Siglip2ImageProcessor";
      preprocessor.erase("size");
      preprocessor["max_num_patches"] = grid * grid;
      preprocessor["patch_size"] = p.patch;
    }
    std::ofstream(dir / "preprocessor_config.json") << preprocessor.dump(2) << "\n";
  }
  std::ofstream(dir / "config.json") << config.dump(2) << "\n";
  std::printf("wrote %s (%s, %s, %s, %.1f MB)\n", dir.c_str(), preset_name.c_str(), dtype.c_str(),
              weights_format == "torch" ? "pytorch_model.bin" : "model.safetensors", written / 1e6);
  return 0;
}
