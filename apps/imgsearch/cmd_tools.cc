// imgsearch tokenize and preprocess: looking inside the engine.
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
  app->add_option("--model", f->model, "model folder or hub name (default: $IMGSEARCH_MODEL, then the default model)");
  app->add_option("texts", f->texts, "texts to tokenize")->required();
  return [f] {
    auto model = LoadModel(f->model);
    if (!model.ok()) {
      return ReportError(model.status());
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
    auto decoded = DecodeImageFile(f->image, ForModelInput({}, f->size));
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

}  // namespace imgsearch::cli
