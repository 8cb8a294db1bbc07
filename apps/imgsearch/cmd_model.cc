// imgsearch model pull / list / info: getting models and looking at them.
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <vector>

#include "commands.h"
#include "imgsearch/clip.h"
#include "imgsearch/hub.h"
#include "imgsearch/image.h"
#include "imgsearch/path_display.h"
#include "json_out.h"

namespace imgsearch::cli {

namespace {

nlohmann::json TowerJson(const TowerInfo& t) {
  return {{"width", t.width},          {"layers", t.n_layers},       {"heads", t.n_head},
          {"mlp_width", t.mlp_width},  {"positions", t.n_positions}, {"layer_norm_eps", t.layer_norm_eps},
          {"activation", t.activation}};
}

// A text-only model (for --text-model): what it is and which space it maps into.
int PrintTextModelInfo(const std::string& dir, bool as_json) {
  auto model = TextModel::Load(dir);
  if (!model.ok()) return ReportError(model.status());
  const TextModelInfo& m = (*model)->info();
  const nlohmann::json j = {{"family", m.family},
                            {"base", m.base},
                            {"tokenizer", m.tokenizer},
                            {"dir", m.dir},
                            {"weights", m.weights_path},
                            {"file_bytes", m.weights_bytes},
                            {"dtype", m.dtype},
                            {"parameters", m.n_params},
                            {"embedding_dim", m.embedding_dim},
                            {"max_tokens", m.max_tokens},
                            {"vocab_size", m.vocab_size},
                            {"text", TowerJson(m.tower)},
                            {"identity", m.fingerprint},
                            {"text_only", true}};
  if (as_json) {
    std::printf("%s\n", j.dump().c_str());
    return kExitOk;
  }
  std::printf("model       %s (text only: use it with --text-model)\n", m.dir.c_str());
  std::printf("family      %s (%s), tokenizer %s\n", m.family.c_str(), m.base.c_str(), m.tokenizer.c_str());
  std::printf("weights     %s (%.1f MB, %s, %.1fM parameters)\n", m.weights_path.c_str(), m.weights_bytes / 1e6,
              m.dtype.c_str(), m.n_params / 1e6);
  std::printf("text        at most %d tokens, vocab %d, width %d, %d layers, %d heads, mlp %d, %s\n", m.max_tokens,
              m.vocab_size, m.tower.width, m.tower.n_layers, m.tower.n_head, m.tower.mlp_width,
              m.tower.activation.c_str());
  std::printf("embedding   %d dimensions (an image model's of the same size)\n", m.embedding_dim);
  std::printf("identity    %s\n", m.fingerprint.c_str());
  return kExitOk;
}

int PrintInfo(const std::string& flag, bool as_json) {
  if (auto dir = ResolveModel(flag); dir.ok() && TextModel::LooksLikeTextModel(*dir)) {
    return PrintTextModelInfo(*dir, as_json);
  }
  auto model = LoadModel(flag);
  if (!model.ok()) return ReportError(model.status());
  const ModelInfo& m = (*model)->info();
  nlohmann::json j = {{"family", m.family},
                      {"tokenizer", m.tokenizer},
                      {"dir", m.dir},
                      {"weights", m.weights_path},
                      {"file_bytes", m.weights_bytes},
                      {"dtype", m.dtype},
                      {"parameters", m.n_params},
                      {"embedding_dim", m.embedding_dim},
                      {"image_size", m.image_size},
                      {"patch_size", m.patch_size},
                      {"vocab_size", m.vocab_size},
                      {"context_length", m.text.n_positions},
                      {"text", TowerJson(m.text)},
                      {"vision", TowerJson(m.vision)},
                      {"identity", m.fingerprint},
                      {"kernels", m.isa}};
  const Preprocessing& pre = (*model)->preprocessing();
  std::string fit = "resize shorter side, centre crop", fit_name = "center_crop";
  if (pre.fit == Preprocessing::Fit::kStretch) {
    fit = "resize to square";
    fit_name = "stretch";
  } else if (pre.fit == Preprocessing::Fit::kPatchBudget) {
    fit = "aspect ratio kept, at most " + std::to_string(pre.max_patches) + " patches";
    fit_name = "patch_budget";
  }
  const char* filter = pre.filter == ResampleFilter::kBicubic ? "bicubic" : "bilinear";
  j["preprocessing"] = {{"fit", fit_name}, {"filter", filter}, {"mean", pre.mean}, {"std", pre.std}};
  if (m.max_patches > 0) j["preprocessing"]["max_patches"] = m.max_patches;
  if (m.has_match_probability) j["scores"] = {{"logit_scale", m.logit_scale}, {"logit_bias", m.logit_bias}};
  if (as_json) {
    std::printf("%s\n", j.dump().c_str());
    return kExitOk;
  }
  std::printf("model       %s\n", m.dir.c_str());
  std::printf("family      %s, tokenizer %s\n", m.family.c_str(), m.tokenizer.c_str());
  std::printf("weights     %s (%.1f MB, %s, %.1fM parameters)\n", m.weights_path.c_str(), m.weights_bytes / 1e6,
              m.dtype.c_str(), m.n_params / 1e6);
  const std::string input = m.max_patches > 0 ? "NaFlex ≤ " + std::to_string(m.max_patches) + " patches"
                                              : std::to_string(m.image_size) + "px";
  std::printf("vision      ViT %s, patch %d, width %d, %d layers, %d heads, mlp %d, %s\n", input.c_str(), m.patch_size,
              m.vision.width, m.vision.n_layers, m.vision.n_head, m.vision.mlp_width, m.vision.activation.c_str());
  std::printf("text        context %d, vocab %d, width %d, %d layers, %d heads, mlp %d, %s\n", m.text.n_positions,
              m.vocab_size, m.text.width, m.text.n_layers, m.text.n_head, m.text.mlp_width, m.text.activation.c_str());
  std::printf("images      %s, %s, mean %.3g %.3g %.3g, std %.3g %.3g %.3g\n", fit.c_str(), filter, pre.mean[0],
              pre.mean[1], pre.mean[2], pre.std[0], pre.std[1], pre.std[2]);
  std::printf("embedding   %d dimensions\n", m.embedding_dim);
  if (m.has_match_probability) {
    std::printf("scores      cosine; match probability sigmoid(cosine × %.4g %+.4g)\n", std::exp(m.logit_scale),
                m.logit_bias);
  }
  std::printf("identity    %s\n", m.fingerprint.c_str());
  std::printf("kernels     %s\n", m.isa.c_str());
  return kExitOk;
}

// Texts the self-check embeds: captions and queries of several lengths and scripts.
constexpr const char* kCheckTexts[] = {
    "a photo of a cat",
    "a red car in the snow",
    "people walking on a city street at night, wet pavement reflecting neon signs",
    "invoice 4471",
    "platform 9",
    "a plate of pasta with tomato sauce and basil on a wooden table",
    "the beach at sunset",
    "a dog catching a frisbee in a park",
    "un chat sur une table",
    "ein Hund im Schnee",
    "東京タワーの夜景",
    "x",
};

struct Spread {
  double min = 1, median = 1;
  int n = 0;
  std::string worst;  // what gave the minimum
};

Spread SpreadOf(std::vector<std::pair<double, std::string>> cosines) {
  Spread s;
  s.n = static_cast<int>(cosines.size());
  if (cosines.empty()) return s;
  std::sort(cosines.begin(), cosines.end());
  s.min = cosines.front().first;
  s.worst = cosines.front().second;
  s.median = cosines[cosines.size() / 2].first;
  return s;
}

double CosineOf(const float* a, const float* b, int n) {
  double dot = 0, na = 0, nb = 0;
  for (int i = 0; i < n; ++i) {
    dot += double{a[i]} * b[i];
    na += double{a[i]} * a[i];
    nb += double{b[i]} * b[i];
  }
  return na > 0 && nb > 0 ? dot / std::sqrt(na * nb) : 0;
}

using Embedded = std::vector<std::pair<std::string, std::vector<float>>>;

// The embedding of each image file under `dir` (the first `limit`, sorted) through `model`,
// decoded as `pre` says; files that do not decode are left out.
Embedded EmbedFolder(const ClipModel& model, const Preprocessing& pre, const std::vector<std::string>& files) {
  Embedded out;
  for (const std::string& file : files) {
    auto decoded = DecodeImageFile(file, ForModelInput({}, pre));
    if (!decoded.ok()) continue;
    std::vector<float> input(static_cast<size_t>(pre.input_floats())), emb(model.embedding_dim());
    Normalize(ResizeForModel(decoded->image, pre), pre, input.data());
    if (!model.EncodeImages(input.data(), 1, emb.data()).ok()) continue;
    out.emplace_back(file, std::move(emb));
  }
  return out;
}

// The cosine of each of `model`'s embeddings of `files` (decoded as `pre` says) to the reference's.
Spread ImageCosines(const ClipModel& model, const Preprocessing& pre, const std::vector<std::string>& files,
                    const Embedded& reference) {
  std::vector<std::pair<double, std::string>> cosines;
  for (const auto& [file, emb] : EmbedFolder(model, pre, files)) {
    auto ref = std::find_if(reference.begin(), reference.end(), [&](const auto& r) { return r.first == file; });
    if (ref != reference.end()) {
      cosines.emplace_back(CosineOf(emb.data(), ref->second.data(), model.embedding_dim()), file);
    }
  }
  return SpreadOf(std::move(cosines));
}

nlohmann::json Describe(const Spread& s) {
  return {{"min", s.min}, {"median", s.median}, {"n", s.n}, {"worst", s.worst}};
}

// What fp32 computes for `model check`'s texts and images, which the fast precisions are held to.
struct CheckReference {
  std::vector<std::string> texts;
  std::vector<float> text_embeddings;
  std::vector<std::string> files;
  Embedded images;
};

// One fast precision against fp32: its texts, its images decoded exactly and with reduced decoding
// (what auto and int8 store). `bound` is the lowest cosine the precision is held to.
Result<nlohmann::json> CheckPrecision(const std::string& flag, Precision precision, const char* name, double bound,
                                      const CheckReference& ref, int dim) {
  nlohmann::json r = {{"precision", name}, {"bound", bound}};
  auto loaded = LoadModel(flag, {.precision = precision});
  if (!loaded.ok()) {
    r["available"] = false;
    r["reason"] = loaded.status().message();
    return r;
  }
  const ClipModel& fast = **loaded;
  r["available"] = true;
  std::vector<float> out(ref.texts.size() * dim);
  RETURN_IF_ERROR(fast.EncodeTexts(ref.texts, out.data()));
  std::vector<std::pair<double, std::string>> text_cos;
  for (size_t i = 0; i < ref.texts.size(); ++i) {
    text_cos.emplace_back(CosineOf(out.data() + i * dim, ref.text_embeddings.data() + i * dim, dim), ref.texts[i]);
  }
  Preprocessing exact = fast.preprocessing(), reduced = fast.preprocessing();
  exact.reduced_decode = false;
  reduced.reduced_decode = true;
  const Spread t = SpreadOf(text_cos), i = ImageCosines(fast, exact, ref.files, ref.images),
               a = ImageCosines(fast, reduced, ref.files, ref.images);
  r["texts"] = Describe(t);
  if (!ref.files.empty()) {
    r["images"] = Describe(i);
    r["images_auto"] = Describe(a);  // decoded as auto (and int8) decode
  }
  r["within_bound"] = t.min >= bound && (ref.files.empty() || (i.min >= bound && a.min >= bound));
  return r;
}

// `model check`: how far the fast precisions are from fp32 on this model, these images, this CPU.
int RunCheck(const std::string& flag, const std::string& images_dir, int limit, bool as_json) {
  constexpr double kAutoBound = 0.999;  // what auto promises
  constexpr double kInt8Bound = 0.99;   // what int8 is held to
  auto reference = LoadModel(flag, {.precision = Precision::kFp32});
  if (!reference.ok()) return ReportError(reference.status());
  const ClipModel& fp32 = **reference;
  CheckReference ref;
  if (!images_dir.empty()) {
    std::error_code ec;
    for (auto it = std::filesystem::recursive_directory_iterator(images_dir, ec);
         !ec && it != std::filesystem::recursive_directory_iterator(); it.increment(ec)) {
      if (it->is_regular_file(ec)) ref.files.push_back(it->path().string());
    }
    if (ec) return ReportError(Status::IoError("cannot read " + images_dir + ": " + ec.message()));
    std::sort(ref.files.begin(), ref.files.end());
    if (ref.files.size() > static_cast<size_t>(limit)) ref.files.resize(static_cast<size_t>(limit));
  }
  nlohmann::json report = {{"model", fp32.info().source}, {"kernels", fp32.info().isa}, {"bound", kAutoBound}};
  const int dim = fp32.embedding_dim();
  ref.texts.assign(std::begin(kCheckTexts), std::end(kCheckTexts));
  ref.text_embeddings.resize(ref.texts.size() * dim);
  if (Status st = fp32.EncodeTexts(ref.texts, ref.text_embeddings.data()); !st.ok()) return ReportError(st);
  ref.images = EmbedFolder(fp32, fp32.preprocessing(), ref.files);

  auto bf16_checked = CheckPrecision(flag, Precision::kBf16, "bf16", kAutoBound, ref, dim);
  if (!bf16_checked.ok()) return ReportError(bf16_checked.status());
  auto int8_checked = CheckPrecision(flag, Precision::kInt8, "int8", kInt8Bound, ref, dim);
  if (!int8_checked.ok()) return ReportError(int8_checked.status());
  const nlohmann::json& bf16 = *bf16_checked;
  const nlohmann::json& int8 = *int8_checked;
  report["precisions"] = {bf16, int8};
  const bool auto_uses_bf16 = bf16["available"].get<bool>();
  report["auto"] = auto_uses_bf16 ? "bf16" : "fp32";
  // Without bf16, auto is fp32 with reduced decoding: that alone is checked.
  bool auto_within_bound = auto_uses_bf16 ? bf16["within_bound"].get<bool>() : true;
  if (!auto_uses_bf16 && !ref.files.empty()) {
    Preprocessing reduced = fp32.preprocessing();
    reduced.reduced_decode = true;
    const Spread a = ImageCosines(fp32, reduced, ref.files, ref.images);
    report["auto_images"] = Describe(a);
    auto_within_bound = a.min >= kAutoBound;
  }
  report["images_checked"] = ref.images.size();
  if (as_json) {
    std::printf("%s\n", DumpJson(report).c_str());
    return kExitOk;
  }
  std::printf("model     %s\nkernels   %s\n", ForTerminal(fp32.info().source).c_str(), fp32.info().isa.c_str());
  auto line = [](const std::string& name, const char* what, const nlohmann::json& s) {
    std::printf("%-9s %-28s cosine to fp32: lowest %.6f, median %.6f over %d (lowest: %s)\n", name.c_str(), what,
                s["min"].get<double>(), s["median"].get<double>(), s["n"].get<int>(),
                ForTerminal(s["worst"].get<std::string>()).c_str());
  };
  for (const nlohmann::json& p : {bf16, int8}) {
    const std::string name = p["precision"].get<std::string>();
    if (!p["available"].get<bool>()) {
      std::printf("%-9s not available: %s\n", name.c_str(), ForTerminal(p["reason"].get<std::string>()).c_str());
      continue;
    }
    line(name, "texts", p["texts"]);
    if (p.contains("images")) {
      line(name, "images", p["images"]);
      line(name, "images, reduced decoding", p["images_auto"]);
    } else {
      std::printf("%-9s images: none checked (give --images DIR with your photos)\n", name.c_str());
    }
  }
  if (report.contains("auto_images")) line("fp32", "images, reduced decoding", report["auto_images"]);
  if (!auto_uses_bf16) {
    std::printf("auto      computes fp32 on this CPU, with reduced JPEG decoding%s\n",
                auto_within_bound ? "" : ": some cosine is below 0.999, index with --precision fp32");
  } else if (auto_within_bound) {
    std::printf("auto      uses bf16: every cosine checked is at least %.3f\n", kAutoBound);
  } else {
    std::printf("auto      uses bf16, but some cosine above is below %.3f: index with --precision fp32\n", kAutoBound);
  }
  if (int8["available"].get<bool>()) {
    std::printf("int8      %s (used only with --precision int8)\n",
                int8["within_bound"].get<bool>() ? "every cosine checked is at least 0.990"
                                                 : "some cosine above is below 0.990: keep to auto or fp32");
  }
  return kExitOk;
}

}  // namespace

std::function<void(const PullProgress&)> PullProgressPrinter() {
  const bool tty = ::isatty(2) != 0;
  auto start = std::chrono::steady_clock::now();
  auto last = std::make_shared<std::chrono::steady_clock::time_point>();
  auto last_file = std::make_shared<std::string>();
  return [=](const PullProgress& p) {
    const auto now = std::chrono::steady_clock::now();
    const bool file_done = p.file_bytes_done == p.file_bytes_total;
    if (!file_done && now - *last < std::chrono::milliseconds(tty ? 200 : 5000)) return;
    if (file_done && *last_file == p.file) return;
    *last = now;
    if (file_done) *last_file = p.file;
    const double s = std::chrono::duration<double>(now - start).count();
    std::fprintf(
        stderr,
        tty ? "\r%-24s %7.1f / %.1f MB  (all: %.0f%%, %.1f MB/s)   " : "%s %.1f / %.1f MB (all: %.0f%%, %.1f MB/s)\n",
        p.file.c_str(), p.file_bytes_done / 1e6, p.file_bytes_total / 1e6,
        p.bytes_total > 0 ? 100.0 * p.bytes_done / p.bytes_total : 100.0, s > 0 ? p.bytes_done / 1e6 / s : 0.0);
    if (tty && file_done) std::fprintf(stderr, "\n");
  };
}

RunFn AddModelCommand(CLI::App& root) {
  struct Flags {
    std::string model;
    std::string name = kDefaultModelName;
    std::string cache;
    std::string revision = "main";
    std::string images;
    int limit = 64;
    bool json = false;
  };
  auto f = std::make_shared<Flags>();
  CLI::App* app = root.add_subcommand("model", "get models and look at them");
  app->require_subcommand(1);
  CLI::App* pull =
      app->add_subcommand("pull", "download a model (CLIP, SigLIP, SigLIP 2) from the Hugging Face hub into the cache");
  pull->add_option("name", f->name, "owner/name on the hub")->capture_default_str();
  pull->add_option("--cache", f->cache, "cache folder (default: $XDG_CACHE_HOME/imgsearch/models)");
  pull->add_option("--revision", f->revision, "branch, tag or commit")->capture_default_str();
  CLI::App* list = app->add_subcommand("list", "cached models with their size and identity");
  list->add_option("--cache", f->cache, "cache folder (default: $XDG_CACHE_HOME/imgsearch/models)");
  list->add_flag("--json", f->json, "one JSON list ([] when none)");
  CLI::App* info = app->add_subcommand("info", "print a model's architecture, dtype, size");
  info->add_option("--model", f->model, "model folder or name (default: $IMGSEARCH_MODEL, then the default model)");
  info->add_flag("--json", f->json, "print one JSON object");
  CLI::App* check = app->add_subcommand(
      "check", "how close the fast precisions (bf16) come to fp32 with this model, on your images and this CPU");
  check->add_option("--model", f->model, "model folder or name (default: $IMGSEARCH_MODEL, then the default model)");
  check->add_option("--images", f->images, "a folder of your images to check (its first --limit files, sorted)");
  check->add_option("--limit", f->limit, "images checked at most")->capture_default_str()->check(CLI::Range(1, 100000));
  check->add_flag("--json", f->json, "print one JSON object");
  return [f, pull, list, check] {
    if (check->parsed()) return RunCheck(f->model, f->images, f->limit, f->json);
    if (pull->parsed()) {
      PullOptions o;
      o.cache_dir = f->cache;
      o.revision = f->revision;
      o.on_progress = PullProgressPrinter();
      auto dir = PullModel(f->name, o);
      if (!dir.ok()) return ReportError(dir.status());
      std::printf("%s is in %s\n", f->name.c_str(), dir->c_str());
      return kExitOk;
    }
    if (list->parsed()) {
      const std::string cache = f->cache.empty() ? DefaultModelCache() : f->cache;
      const auto models = ListCachedModels(cache);
      if (models.empty() && !f->json)
        std::printf("no models in %s (get one with `imgsearch model pull`)\n", cache.c_str());
      nlohmann::json listed = nlohmann::json::array();
      for (const CachedModel& m : models) {
        auto loaded = ClipModel::Load(m.dir);
        const std::string identity =
            loaded.ok() ? (*loaded)->info().fingerprint : "unreadable: " + loaded.status().message();
        if (f->json) {
          listed.push_back({{"name", m.name},
                            {"dir", m.dir},
                            {"bytes", m.bytes},
                            {"revision", m.revision},
                            {"pulled_at", m.pulled_at},
                            {"identity", identity}});
        } else {
          std::printf("%-40s %8.1f MB  %s  %s\n", m.name.c_str(), m.bytes / 1e6, identity.c_str(), m.dir.c_str());
        }
      }
      if (f->json) std::printf("%s\n", DumpJson(listed).c_str());
      return kExitOk;
    }
    return PrintInfo(f->model, f->json);
  };
}

}  // namespace imgsearch::cli
