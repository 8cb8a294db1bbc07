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
  CLI::App* app = root.add_subcommand("tokenize", "print the model's token ids of texts as JSON lines");
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
    std::string model;
    int size = 224;
  };
  auto f = std::make_shared<Flags>();
  CLI::App* app = root.add_subcommand("preprocess", "write the image the model sees as a PNG");
  app->add_option("image", f->image, "image file")->required();
  app->add_option("--out", f->out, "output PNG")->required();
  CLI::Option* model = app->add_option(
      "--model", f->model, "the model whose image processor to apply (default: CLIP's resize and centre crop)");
  app->add_option("--size", f->size, "CLIP crop size in pixels, without --model")
      ->capture_default_str()
      ->check(CLI::Range(1, 4096))
      ->excludes(model);
  return [f] {
    Preprocessing pre = Preprocessing::Clip(f->size);
    if (!f->model.empty()) {
      auto loaded = LoadModel(f->model);
      if (!loaded.ok()) return ReportError(loaded.status());
      pre = (*loaded)->preprocessing();
    }
    auto decoded = DecodeImageFile(f->image, ForModelInput({}, pre));
    if (!decoded.ok()) {
      PrintError(decoded.status().ToString());
      return kExitSomeFailed;
    }
    Status st = WritePng(ResizeForModel(decoded->image, pre), f->out);
    if (!st.ok()) {
      PrintError(st.ToString());
      return kExitSomeFailed;
    }
    return kExitOk;
  };
}

}  // namespace imgsearch::cli
