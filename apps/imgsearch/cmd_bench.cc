// imgsearch bench: how fast the engine runs on this machine. Prints one JSON object.
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <mutex>
#include <queue>
#include <random>
#include <string_view>
#include <thread>

#include "commands.h"
#include "imgsearch/clip.h"
#include "imgsearch/image.h"
#include "json_out.h"

namespace imgsearch::cli {

namespace {

using Clock = std::chrono::steady_clock;
double Since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

double Percentile(std::vector<double> v, double p) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[std::min(v.size() - 1, static_cast<size_t>(p * v.size()))];
}

// Photo-like JPEGs of mixed sizes (smooth gradients plus noise), written once to `dir`.
std::vector<std::string> MakeJpegs(const std::string& dir, int n) {
  std::filesystem::create_directories(dir);
  std::mt19937 rng(1);
  const std::pair<int, int> sizes[] = {{640, 480}, {1024, 768}, {1600, 1200}, {800, 800}, {480, 640}};
  std::vector<std::string> paths;
  for (int i = 0; i < n; ++i) {
    const auto [w, h] = sizes[i % 5];
    Image img(w, h);
    for (int y = 0; y < h; ++y) {
      for (int x = 0; x < w; ++x) {
        uint8_t* p = img.row(y) + 3 * x;
        p[0] = static_cast<uint8_t>((x * 255 / w + rng() % 16) & 0xFF);
        p[1] = static_cast<uint8_t>((y * 255 / h + rng() % 16) & 0xFF);
        p[2] = static_cast<uint8_t>(((x + y + i * 37) % 256));
      }
    }
    auto bytes = EncodeJpeg(img, 88);
    const std::string path = dir + "/bench" + std::to_string(i) + ".jpg";
    std::FILE* f = std::fopen(path.c_str(), "wb");
    if (f != nullptr && bytes.ok()) {
      std::fwrite(bytes->data(), 1, bytes->size(), f);
      std::fclose(f);
      paths.push_back(path);
    } else if (f != nullptr) {
      std::fclose(f);
    }
  }
  return paths;
}

// Files → decode on a helper thread → batches of normalised pixels → the encoder on this thread.
double EndToEnd(const ClipModel& model, const std::vector<std::string>& files, int batch) {
  const size_t floats = static_cast<size_t>(model.preprocessing().input_floats());
  std::mutex mu;
  std::condition_variable cv;
  std::queue<std::vector<float>> ready;  // guarded by mu; at most 2 batches
  bool done = false;
  const auto start = Clock::now();
  std::thread decoder([&] {
    std::vector<float> current;
    auto push = [&] {
      std::unique_lock<std::mutex> lock(mu);
      cv.wait(lock, [&] { return ready.size() < 2; });
      ready.push(std::move(current));
      current.clear();
      cv.notify_all();
    };
    for (const std::string& f : files) {
      auto d = DecodeImageFile(f, ForModelInput({}, model.preprocessing()));
      if (!d.ok()) continue;
      current.resize(current.size() + floats);
      Normalize(ResizeForModel(d->image, model.preprocessing()), model.preprocessing(),
                current.data() + current.size() - floats);
      if (current.size() == floats * batch) push();
    }
    if (!current.empty()) push();
    std::lock_guard<std::mutex> lock(mu);
    done = true;
    cv.notify_all();
  });
  std::vector<float> out(static_cast<size_t>(batch) * model.embedding_dim());
  int64_t encoded = 0;
  while (true) {
    std::vector<float> pixels;
    {
      std::unique_lock<std::mutex> lock(mu);
      cv.wait(lock, [&] { return !ready.empty() || done; });
      if (ready.empty()) break;
      pixels = std::move(ready.front());
      ready.pop();
      cv.notify_all();
    }
    const int n = static_cast<int>(pixels.size() / floats);
    (void)model.EncodeImages(pixels.data(), n, out.data());
    encoded += n;
  }
  decoder.join();
  return encoded / Since(start);
}

}  // namespace

RunFn AddBenchCommand(CLI::App& root) {
  struct Flags {
    std::string model, dir, text_model, precision = "fp32";
    int images = 64, batch = 32, threads = 0;
  };
  auto f = std::make_shared<Flags>();
  CLI::App* app = root.add_subcommand("bench", "measure the engine: image and text encoders, end to end, GEMM peak");
  app->add_option("--model", f->model, "model folder or hub name (default: $IMGSEARCH_MODEL, then the default model)");
  app->add_option("--images", f->images, "images per measurement")->capture_default_str()->check(CLI::Range(1, 100000));
  app->add_option("--batch", f->batch, "images per encoder call")->capture_default_str()->check(CLI::Range(1, 1024));
  app->add_option("--threads", f->threads, "threads (0: all cores)")->capture_default_str();
  AddPrecisionFlag(app, &f->precision);
  app->add_option("--dir", f->dir, "decode these image files end to end (default: generated JPEGs)");
  app->add_option("--text-model", f->text_model, "also time this text model's queries (text_model_ms_*)");
  return [f] {
    auto options = ModelOptionsFor(f->precision, f->threads);
    if (!options.ok()) return ReportError(options.status());
    const auto load_start = Clock::now();
    auto loaded = LoadModel(f->model, *options);
    if (!loaded.ok()) return ReportError(loaded.status());
    const double load_s = Since(load_start);
    const ClipModel& model = **loaded;
    const ModelInfo& info = model.info();
    nlohmann::ordered_json out;
    out["model"] = info.dir;
    out["path"] = info.isa + ", " + info.precision;
    out["threads"] = f->threads;
    out["batch"] = f->batch;
    out["model_load_s"] = load_s;

    // Image encoder alone, on a random 4:3 picture preprocessed as the model's family does.
    const Preprocessing& pre = model.preprocessing();
    const size_t floats = static_cast<size_t>(pre.input_floats());
    std::vector<float> pixels(floats * f->batch);
    {
      Image picture(640, 480);
      std::mt19937 rng(3);
      for (uint8_t& v : picture.rgb) v = static_cast<uint8_t>(rng());
      Normalize(ResizeForModel(picture, pre), pre, pixels.data());
      for (int b = 1; b < f->batch; ++b) std::copy_n(pixels.data(), floats, pixels.data() + b * floats);
    }
    std::vector<float> emb(static_cast<size_t>(f->batch) * model.embedding_dim());
    // The first call readies the image tower (fused, converted, packed weights) and warms the kernels.
    const auto first_start = Clock::now();
    (void)model.EncodeImages(pixels.data(), f->batch, emb.data());
    out["encoder_first_batch_s"] = Since(first_start);
    const auto enc_start = Clock::now();
    int encoded = 0;
    while (encoded < f->images) {
      (void)model.EncodeImages(pixels.data(), f->batch, emb.data());
      encoded += f->batch;
    }
    const double images_per_s = encoded / Since(enc_start);
    out["encoder_images_per_s"] = images_per_s;
    out["encoder_gflops"] = images_per_s * VisionFlopsPerImage(info) / 1e9;

    // End to end from files.
    std::vector<std::string> files;
    std::string tmp;
    if (!f->dir.empty()) {
      for (const auto& e : std::filesystem::recursive_directory_iterator(f->dir)) {
        if (e.is_regular_file() && static_cast<int>(files.size()) < f->images) files.push_back(e.path().string());
      }
    } else {
      tmp = (std::filesystem::temp_directory_path() / ("imgsearch-bench-" + std::to_string(::getpid()))).string();
      files = MakeJpegs(tmp, f->images);
    }
    out["end_to_end_images_per_s"] = EndToEnd(model, files, f->batch);
    out["end_to_end_files"] = files.size();
    if (!tmp.empty()) std::filesystem::remove_all(tmp);

    // Text queries: a short one and a full 77-token one.
    std::string long_text;
    for (int i = 0; i < 80; ++i) long_text += "word ";
    auto time_texts = [&](const char* prefix, int dim,
                          const std::function<Status(const std::vector<std::string>&, float*)>& encode) {
      for (const auto& [name, text] :
           {std::pair{"short", std::string("a photo of a cat")}, std::pair{"long", long_text}}) {
        std::vector<double> ms;
        std::vector<float> t(dim);
        const std::vector<std::string> one = {text};
        const auto first = Clock::now();
        (void)encode(one, t.data());  // the first query readies the text tower
        if (std::string_view(name) == "short") out[std::string(prefix) + "_ms_first"] = Since(first) * 1e3;
        for (int i = 0; i < 50; ++i) {
          const auto s = Clock::now();
          (void)encode(one, t.data());
          ms.push_back(Since(s) * 1e3);
        }
        out[std::string(prefix) + "_ms_p50_" + name] = Percentile(ms, 0.5);
        out[std::string(prefix) + "_ms_p99_" + name] = Percentile(ms, 0.99);
      }
    };
    time_texts("text", model.embedding_dim(),
               [&](const std::vector<std::string>& t, float* o) { return model.EncodeTexts(t, o); });
    if (!f->text_model.empty()) {
      auto text_model = LoadTextModel(f->text_model, model);
      if (!text_model.ok()) return ReportError(text_model.status());
      out["text_model"] = (*text_model)->info().dir;
      time_texts("text_model", (*text_model)->embedding_dim(),
                 [&](const std::vector<std::string>& t, float* o) { return (*text_model)->EncodeTexts(t, o); });
    }

    out["gemm_peak_gflops"] = MeasureGemmGflops(1600, 768, 3072, 1.0);
    rusage usage{};
    getrusage(RUSAGE_SELF, &usage);
    out["peak_rss_mb"] = usage.ru_maxrss / 1024.0;
    std::printf("%s\n", out.dump().c_str());
    return kExitOk;
  };
}

}  // namespace imgsearch::cli
