// imgsearch embed: embeddings of texts and images, one JSON object per input, in the order given.
#include <spdlog/spdlog.h>

#include <cstdio>
#include <memory>
#include <vector>

#include "commands.h"
#include "imgsearch/clip.h"
#include "imgsearch/image.h"
#include "json_out.h"

namespace imgsearch::cli {

namespace {

struct EmbedFlags {
  std::string model;
  std::string precision = "fp32";
  int threads = 0;
  double max_megapixels = 100;
  std::vector<std::string> texts;
  std::vector<std::string> images;
  CLI::Option* text_opt = nullptr;
  CLI::Option* image_opt = nullptr;
  CLI::App* app = nullptr;
};

struct Input {
  bool is_text = false;
  std::string value;
  std::string error;  // images that could not be read
  int row = -1;       // row in the text or image embedding batch
  std::vector<int32_t> ids;
};

int RunEmbed(const EmbedFlags& f) {
  auto options = ModelOptionsFor(f.precision, f.threads);
  if (!options.ok()) return ReportError(options.status());
  auto model = LoadModel(f.model, *options);
  if (!model.ok()) {
    return ReportError(model.status());
  }
  const ClipModel& m = **model;
  spdlog::info("model {}: kernels {}, {}", m.info().dir, m.info().isa, m.info().precision);

  // Inputs in command-line order: --text and --image may be interleaved.
  std::vector<Input> inputs;
  size_t next_text = 0, next_image = 0;
  for (CLI::Option* opt : f.app->parse_order()) {
    Input in;
    if (opt == f.text_opt && next_text < f.texts.size()) {
      in.is_text = true;
      in.value = f.texts[next_text++];
    } else if (opt == f.image_opt && next_image < f.images.size()) {
      in.value = f.images[next_image++];
    } else {
      continue;
    }
    inputs.push_back(std::move(in));
  }
  if (inputs.empty()) {
    PrintError("nothing to embed: give --text TEXT or --image FILE");
    return kExitUsage;
  }

  const int64_t image_floats = m.preprocessing().input_floats();
  std::vector<float> pixels;
  std::vector<std::vector<int32_t>> token_ids;
  int n_images = 0;
  for (Input& in : inputs) {
    if (in.is_text) {
      in.ids = m.Tokenize(in.value);
      in.row = static_cast<int>(token_ids.size());
      token_ids.push_back(in.ids);
      continue;
    }
    DecodeOptions decode;
    decode.max_pixels = static_cast<uint64_t>(f.max_megapixels * 1e6);
    auto decoded = DecodeImageFile(in.value, ForModelInput(decode, m.preprocessing()));
    if (!decoded.ok()) {
      in.error = decoded.status().message();
      continue;
    }
    pixels.resize(static_cast<size_t>(n_images + 1) * image_floats);
    Normalize(ResizeForModel(decoded->image, m.preprocessing()), m.preprocessing(),
              pixels.data() + n_images * image_floats);
    in.row = n_images++;
  }

  const int dim = m.embedding_dim();
  std::vector<float> text_emb(token_ids.size() * dim);
  std::vector<float> image_emb(static_cast<size_t>(n_images) * dim);
  Status st = m.EncodeTokens(token_ids, text_emb.data());
  if (st.ok()) st = m.EncodeImages(pixels.data(), n_images, image_emb.data());
  if (!st.ok()) {
    return ReportError(st);
  }

  bool any_failed = false;
  std::string line;
  for (const Input& in : inputs) {
    line.clear();
    if (in.is_text) {
      line += "{\"text\":" + JsonString(in.value) + ",\"ids\":" + nlohmann::json(in.ids).dump() + ",\"embedding\":";
      AppendFloatArray(&line, {text_emb.data() + int64_t{in.row} * dim, static_cast<size_t>(dim)});
    } else if (in.row >= 0) {
      line += "{\"image\":" + JsonString(in.value) + ",\"embedding\":";
      AppendFloatArray(&line, {image_emb.data() + int64_t{in.row} * dim, static_cast<size_t>(dim)});
    } else {
      any_failed = true;
      line += "{\"image\":" + JsonString(in.value) + ",\"error\":" + JsonString(in.error);
    }
    line += "}\n";
    std::fwrite(line.data(), 1, line.size(), stdout);
  }
  std::fflush(stdout);
  return any_failed ? kExitSomeFailed : kExitOk;
}

}  // namespace

RunFn AddEmbedCommand(CLI::App& root) {
  auto f = std::make_shared<EmbedFlags>();
  CLI::App* app = root.add_subcommand("embed", "print CLIP embeddings of texts and images as JSON lines");
  f->app = app;
  app->add_option("--model", f->model, "model folder or hub name (default: $IMGSEARCH_MODEL, then the default model)");
  AddPrecisionFlag(app, &f->precision);
  app->add_option("--threads", f->threads, "threads for the kernels (0: all cores)")->capture_default_str();
  app->add_option("--max-megapixels", f->max_megapixels, "refuse larger images before decoding them")
      ->capture_default_str()
      ->check(CLI::Range(0.001, 10000.0));
  f->text_opt = app->add_option("--text", f->texts, "a text to embed (repeatable)")->allow_extra_args(false);
  f->image_opt = app->add_option("--image", f->images, "an image file to embed (repeatable)")->allow_extra_args(false);
  return [f] { return RunEmbed(*f); };
}

}  // namespace imgsearch::cli
