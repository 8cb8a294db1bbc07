// imgsearch tokenize, preprocess and model info: looking inside the engine.
#include <cstdio>
#include <memory>

#include "commands.h"
#include "imgsearch/clip.h"
#include "imgsearch/image.h"
#include "json_out.h"

namespace imgsearch::cli {

RunFn AddTokenizeCommand(CLI::App& root) {
  struct Flags {
    std::string model;
    std::vector<std::string> texts;
  };
  auto f = std::make_shared<Flags>();
  CLI::App* app = root.add_subcommand("tokenize", "print CLIP token ids of texts as JSON lines");
  app->add_option("--model", f->model, "model directory")->required();
  app->add_option("texts", f->texts, "texts to tokenize")->required();
  return [f] {
    auto model = ClipModel::Load(f->model);
    if (!model.ok()) {
      PrintError(model.status().ToString());
      return kExitUsage;
    }
    for (const std::string& text : f->texts) {
      std::printf("{\"text\":%s,\"ids\":%s}\n", JsonString(text).c_str(),
                  nlohmann::json((*model)->Tokenize(text)).dump().c_str());
    }
    return kExitOk;
  };
}

RunFn AddPreprocessCommand(CLI::App& root) {
  struct Flags {
    std::string image;
    std::string out;
    int size = 224;
  };
  auto f = std::make_shared<Flags>();
  CLI::App* app = root.add_subcommand("preprocess", "write the crop the model sees as a PNG");
  app->add_option("image", f->image, "image file")->required();
  app->add_option("--out", f->out, "output PNG")->required();
  app->add_option("--size", f->size, "crop size in pixels (the model's input size)")
      ->capture_default_str()
      ->check(CLI::Range(1, 4096));
  return [f] {
    auto decoded = DecodeImageFile(f->image);
    if (!decoded.ok()) {
      PrintError(decoded.status().ToString());
      return kExitSomeFailed;
    }
    Status st = WritePng(ResizeAndCropForClip(decoded->image, f->size), f->out);
    if (!st.ok()) {
      PrintError(st.ToString());
      return kExitSomeFailed;
    }
    return kExitOk;
  };
}

namespace {

nlohmann::json TowerJson(const TowerInfo& t) {
  return {{"width", t.width},          {"layers", t.n_layers},       {"heads", t.n_head},
          {"mlp_width", t.mlp_width},  {"positions", t.n_positions}, {"layer_norm_eps", t.layer_norm_eps},
          {"activation", t.activation}};
}

}  // namespace

RunFn AddModelCommand(CLI::App& root) {
  struct Flags {
    std::string model;
    bool json = false;
  };
  auto f = std::make_shared<Flags>();
  CLI::App* app = root.add_subcommand("model", "inspect models");
  app->require_subcommand(1);
  CLI::App* info = app->add_subcommand("info", "print a model's architecture, dtype, size");
  info->add_option("--model", f->model, "model directory")->required();
  info->add_flag("--json", f->json, "print one JSON object");
  return [f] {
    auto model = ClipModel::Load(f->model);
    if (!model.ok()) {
      PrintError(model.status().ToString());
      return kExitUsage;
    }
    const ModelInfo& m = (*model)->info();
    nlohmann::json j = {{"dir", m.dir},
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
                        {"kernels", m.isa}};
    if (f->json) {
      std::printf("%s\n", j.dump().c_str());
      return kExitOk;
    }
    std::printf("model       %s\n", m.dir.c_str());
    std::printf("weights     %s (%.1f MB, %s, %.1fM parameters)\n", m.weights_path.c_str(), m.weights_bytes / 1e6,
                m.dtype.c_str(), m.n_params / 1e6);
    std::printf("vision      ViT %dpx, patch %d, width %d, %d layers, %d heads, mlp %d, %s\n", m.image_size,
                m.patch_size, m.vision.width, m.vision.n_layers, m.vision.n_head, m.vision.mlp_width,
                m.vision.activation.c_str());
    std::printf("text        context %d, vocab %d, width %d, %d layers, %d heads, mlp %d, %s\n", m.text.n_positions,
                m.vocab_size, m.text.width, m.text.n_layers, m.text.n_head, m.text.mlp_width,
                m.text.activation.c_str());
    std::printf("embedding   %d dimensions\n", m.embedding_dim);
    std::printf("kernels     %s\n", m.isa.c_str());
    return kExitOk;
  };
}

}  // namespace imgsearch::cli
