// How long decoding takes, per file and per megapixel, in the two ways imgsearch decodes: the
// full picture (the page's renditions, `embed` of a JPEG), and for the model (ForModelInput: a RAW
// preview or HEIF thumbnail where one is large enough) followed by the resize and crop to 224,
// exactly (precision fp32) and with reduced decoding (auto and int8: a JPEG or WebP decoded at the
// smallest scale that keeps twice the model's input).
// Prints one JSON line per file:
//   bench_decode [--repeat N] FILE...
#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cstdio>

#include <nlohmann/json.hpp>

#include "imgsearch/image.h"

namespace {

using Clock = std::chrono::steady_clock;

// The fastest of `repeat` runs, in milliseconds (the least disturbed by the rest of the machine).
template <typename F>
double BestMs(int repeat, F&& run) {
  double best = 1e300;
  for (int i = 0; i < repeat; ++i) {
    const auto t0 = Clock::now();
    run();
    best = std::min(best, std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
  }
  return best;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app("Times image decoding per file");
  std::vector<std::string> files;
  int repeat = 5;
  app.add_option("files", files, "images")->required();
  app.add_option("--repeat", repeat, "runs per file; the fastest is reported")->check(CLI::Range(1, 1000));
  CLI11_PARSE(app, argc, argv);

  int failed = 0;
  for (const std::string& path : files) {
    auto first = imgsearch::DecodeImageFile(path);
    if (!first.ok()) {
      std::fprintf(stderr, "%s\n", first.status().ToString().c_str());
      ++failed;
      continue;
    }
    const double megapixels = static_cast<double>(first->width) * first->height / 1e6;
    const double full_ms = BestMs(repeat, [&] { (void)imgsearch::DecodeImageFile(path); });
    auto for_model = [&](bool reduced) {
      imgsearch::Preprocessing pre = imgsearch::Preprocessing::Clip(224);
      pre.reduced_decode = reduced;
      return BestMs(repeat, [&] {
        auto d = imgsearch::DecodeImageFile(path, imgsearch::ForModelInput({}, pre));
        if (d.ok()) (void)imgsearch::ResizeForModel(d->image, pre);
      });
    };
    const double model_ms = for_model(false), reduced_ms = for_model(true);
    const nlohmann::json line = {{"file", path},          {"format", imgsearch::ImageFormatName(first->format)},
                                 {"width", first->width}, {"height", first->height},
                                 {"full_ms", full_ms},    {"full_ms_per_megapixel", full_ms / megapixels},
                                 {"model_ms", model_ms},  {"model_reduced_ms", reduced_ms}};
    std::printf("%s\n", line.dump().c_str());
  }
  return failed == 0 ? 0 : 1;
}
