// Text recognition with Tesseract's LSTM engine, set up for photos (imgsearch/ocr.h).
//
// Photos are not pages: text is sparse, anywhere, on busy or uneven backgrounds, and from a few
// pixels to half the picture high. So each image is read
//   - in sparse-text segmentation (PSM 11: find as much text as possible, in no particular order),
//   - at up to TextReaderOptions::max_side, then at two thirds and a third of that scale, where
//     lettering too large for the first pass fits the sizes Tesseract reads best; a later pass's
//     word is kept where earlier ones read nothing, or less,
//   - after Sauvola binarisation at the two larger scales (thresholds follow the local background,
//     where one global threshold loses light text on a light patch of a dark photo), and Otsu's
//     global threshold at the smallest (a local window hollows out strokes wider than itself: a
//     banner's letters),
//   - with Tesseract's OpenMP threads held to one (below).
// What photos' textures make Tesseract "read" (isolated strokes, fur, foliage) is filtered out:
// words are kept when they hold letters or digits and Tesseract is confident enough for their
// length.
#include <leptonica/allheaders.h>
#include <tesseract/baseapi.h>
#include <tesseract/ocrclass.h>
#include <tesseract/resultiterator.h>
#include <unicode/uchar.h>
#include <unicode/utf8.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <memory>

#include "base/text.h"
#include "imgsearch/ocr.h"

namespace imgsearch {

namespace {

constexpr const char* kDebianDataDir = "/usr/share/tesseract-ocr/5/tessdata";
// Pictures (at a pass's scale) narrower than this are not read.
constexpr int kSmallestSide = 16;
// Passes below this many pixels on the longer side read nothing the larger ones miss.
constexpr double kSmallestPass = 500;

// Tesseract's LSTM opens an OpenMP parallel region of up to four threads at every step; while the
// cores are busy (embedding, other readers) their barriers cost far more than they save (a read
// took 3× longer measured with them than with OMP_THREAD_LIMIT=1). A host teams region with a
// thread limit of one makes them serial for this call only: OMP_THREAD_LIMIT would also hold the
// model's own kernels to one thread.
void RecognizeSerially(tesseract::TessBaseAPI* api, tesseract::ETEXT_DESC* monitor) {
#pragma omp teams num_teams(1) thread_limit(1)
  api->Recognize(monitor);
}

// `image` scaled by `scale` (Tesseract converts it to grey itself: its conversion reads better than
// plain luma on coloured text).
Image ScaledBy(const Image& image, double scale) {
  if (std::abs(scale - 1.0) <= 1e-3) return image;
  const int width = std::max(1, static_cast<int>(std::lround(image.width * scale)));
  const int height = std::max(1, static_cast<int>(std::lround(image.height * scale)));
  return Resize(image, width, height, scale < 1 ? ResampleFilter::kBicubic : ResampleFilter::kBilinear);
}

// `word` without what Tesseract attaches to its ends that is not a letter or digit ("9}", "“Sale",
// "»").
std::string Trimmed(const std::string& word) {
  const auto* s = reinterpret_cast<const uint8_t*>(word.data());
  const auto length = static_cast<int32_t>(word.size());
  int32_t begin = 0, end = 0, i = 0;
  bool seen = false;
  while (i < length) {
    const int32_t start = i;
    UChar32 c = 0;
    U8_NEXT(s, i, length, c);
    if (c >= 0 && u_isalnum(c)) {
      if (!seen) begin = start;
      seen = true;
      end = i;
    }
  }
  return seen ? word.substr(static_cast<size_t>(begin), static_cast<size_t>(end - begin)) : std::string();
}

// Letters and digits in `word`, in any script.
int Alphanumerics(const std::string& word) {
  const auto* s = reinterpret_cast<const uint8_t*>(word.data());
  const auto length = static_cast<int32_t>(word.size());
  int n = 0;
  for (int32_t i = 0; i < length;) {
    UChar32 c = 0;
    U8_NEXT(s, i, length, c);
    n += c >= 0 && u_isalnum(c) ? 1 : 0;
  }
  return n;
}

// Whether a word read from a photo is text rather than texture: longer words are kept at lower
// confidence (Tesseract is often unsure of a real word on a busy background, and texture rarely
// makes three letters in a row), short ones only when it is sure.
bool LooksLikeText(const std::string& word, float confidence) {
  const int n = Alphanumerics(word);
  if (n == 0) return false;
  if (n >= 5) return confidence >= 10;
  if (n == 4) return confidence >= 50;
  if (n == 3) return confidence >= 60;
  return confidence >= 80;
}

bool Overlaps(const RecognizedWord& a, const RecognizedWord& b) {
  const int x0 = std::max(a.x, b.x), x1 = std::min(a.x + a.width, b.x + b.width);
  const int y0 = std::max(a.y, b.y), y1 = std::min(a.y + a.height, b.y + b.height);
  if (x1 <= x0 || y1 <= y0) return false;
  const double inter = static_cast<double>(x1 - x0) * (y1 - y0);
  const double smaller = std::min(static_cast<double>(a.width) * a.height, static_cast<double>(b.width) * b.height);
  return smaller > 0 && inter / smaller > 0.3;
}

// Above this Busyness a picture is noise at that scale (photos measure 1 to 10).
constexpr double kNoiseBusyness = 30;

// Mean absolute difference (0..255) between horizontally adjacent pixels' luma, over every other
// row: about 85 for uniform noise, a few units for photographs, documents and screenshots.
double Busyness(const Image& image) {
  if (image.width < 2) return 0;
  double sum = 0;
  int64_t n = 0;
  for (int y = 0; y < image.height; y += 2) {
    const uint8_t* p = image.row(y);
    int previous = (p[0] * 299 + p[1] * 587 + p[2] * 114) / 1000;
    for (int x = 1; x < image.width; ++x) {
      p += 3;
      const int luma = (p[0] * 299 + p[1] * 587 + p[2] * 114) / 1000;
      sum += std::abs(luma - previous);
      previous = luma;
    }
    n += image.width - 1;
  }
  return n > 0 ? sum / static_cast<double>(n) : 0;
}

// How much a reading of a place is worth: its letters, weighted by Tesseract's confidence.
double Weight(const RecognizedWord& w) { return Alphanumerics(w.text) * static_cast<double>(w.confidence); }

// Adds `word` from a later pass: where earlier passes read nothing, or read less (fewer letters,
// less sure: "44" where this pass reads "4471"), in which case it replaces those readings.
void MergeWord(RecognizedWord word, int line, std::vector<RecognizedWord>* words, std::vector<int>* lines) {
  double overlapped = 0;
  for (const RecognizedWord& w : *words) overlapped += Overlaps(w, word) ? Weight(w) : 0;
  if (overlapped > 0 && Weight(word) <= overlapped) return;
  for (size_t i = words->size(); i-- > 0;) {
    if (Overlaps((*words)[i], word)) {
      words->erase(words->begin() + static_cast<ptrdiff_t>(i));
      lines->erase(lines->begin() + static_cast<ptrdiff_t>(i));
    }
  }
  words->push_back(std::move(word));
  lines->push_back(line);
}

// Tesseract's cancel callback: `cancel_this` is the caller's stop flag.
bool Cancelled(void* stop, int /*words*/) {
  return stop != nullptr && static_cast<const std::atomic<bool>*>(stop)->load(std::memory_order_relaxed);
}

Status CheckLanguages(const std::string& languages, const std::string& dir) {
  if (languages.empty()) return Status::InvalidArgument("no text recognition language given (e.g. eng, eng+deu)");
  size_t start = 0;
  while (start <= languages.size()) {
    const size_t plus = std::min(languages.find('+', start), languages.size());
    const std::string lang = languages.substr(start, plus - start);
    const bool well_formed = !lang.empty() && lang.size() <= 32 && std::all_of(lang.begin(), lang.end(), [](char c) {
      return std::isalnum(static_cast<unsigned char>(c)) || c == '_';
    });
    if (!well_formed) {
      return Status::InvalidArgument(
          "text recognition languages are Tesseract names joined by +, like eng+deu, not \"" +
          EscapeForDisplay(languages, 80) + "\"");
    }
    std::error_code ec;
    if (!std::filesystem::is_regular_file(dir + "/" + lang + ".traineddata", ec)) {
      std::string debian = lang;
      std::replace(debian.begin(), debian.end(), '_', '-');
      std::transform(debian.begin(), debian.end(), debian.begin(), [](unsigned char c) { return std::tolower(c); });
      return Status::NotFound("text recognition language \"" + lang + "\" is not installed (no " + dir + "/" + lang +
                              ".traineddata); install it (Debian: apt-get install tesseract-ocr-" + debian +
                              ") or choose others with --ocr-lang");
    }
    start = plus + 1;
  }
  return Status::Ok();
}

class TesseractReader final : public TextReader {
 public:
  explicit TesseractReader(TextReaderOptions options) : options_(std::move(options)) {}
  ~TesseractReader() override { api_.End(); }

  Status Init() {
    const std::string dir = TextDataDir(options_.data_dir);
    RETURN_IF_ERROR(CheckLanguages(options_.languages, dir));
    // Leptonica (Tesseract's image library) prints its complaints about degenerate inputs (a
    // picture a few pixels across) on stderr; the reader reports what matters itself.
    setMsgSeverity(L_SEVERITY_NONE);
    if (api_.Init(dir.c_str(), options_.languages.c_str(), tesseract::OEM_LSTM_ONLY) != 0) {
      return Status::Unavailable("Tesseract could not load the language data " + options_.languages + " from " + dir);
    }
    // Tesseract reports progress and guesses ("Estimating resolution as …") on stderr otherwise.
    api_.SetVariable("debug_file", "/dev/null");
    api_.SetPageSegMode(tesseract::PSM_SPARSE_TEXT);
    return Status::Ok();
  }

  Result<RecognizedText> Read(const Image& image, const std::atomic<bool>* stop) override {
    RecognizedText out;
    if (image.width <= 0 || image.height <= 0 ||
        image.rgb.size() != static_cast<size_t>(image.width) * image.height * 3) {
      return Status::InvalidArgument("text recognition needs an RGB image");
    }
    const auto deadline = std::chrono::steady_clock::now() + options_.time_limit;
    const int longer = std::max(image.width, image.height);
    const double scale = std::min(2.0, static_cast<double>(options_.max_side) / longer);
    std::vector<RecognizedWord> words;
    std::vector<int> lines;  // the line number of each of `words`
    int line = 0;
    // Tesseract reads letters best within a band of sizes: each pass covers a third of what a
    // photo may hold, and a later pass's word is kept where earlier ones read nothing, or less.
    struct Pass {
      double scale;
      const char* thresholding;  // Tesseract's thresholding_method: 0 Otsu, 2 Sauvola
    };
    for (const Pass pass : {Pass{scale, "2"}, Pass{scale * 2 / 3, "2"}, Pass{scale / 3, "0"}}) {
      const double pass_scale = pass.scale;
      if (pass_scale != scale && longer * pass_scale < kSmallestPass) break;
      api_.SetVariable("thresholding_method", pass.thresholding);
      if ((stop != nullptr && *stop) || std::chrono::steady_clock::now() >= deadline) break;
      std::vector<RecognizedWord> found;
      std::vector<int> found_lines;
      ReadPass(image, pass_scale, deadline, stop, &found, &found_lines, &line);
      for (size_t i = 0; i < found.size(); ++i) MergeWord(std::move(found[i]), found_lines[i], &words, &lines);
    }
    for (size_t i = 0; i < words.size(); ++i) {
      if (i > 0) out.text += lines[i] == lines[i - 1] ? " " : "\n";
      out.text += words[i].text;
    }
    out.words = std::move(words);
    return out;
  }

  const std::string& languages() const override { return options_.languages; }

 private:
  // Reads `image` at `scale`, appending the words kept (boxes in `image`'s pixels) and their line
  // numbers (continuing from *line).
  void ReadPass(const Image& image, double scale, std::chrono::steady_clock::time_point deadline,
                const std::atomic<bool>* stop, std::vector<RecognizedWord>* words, std::vector<int>* lines, int* line) {
    const Image scaled = ScaledBy(image, scale);
    // A strip a few pixels across holds no legible text, and Tesseract's binarisation fails on it
    // (leaking its buffers).
    if (std::min(scaled.width, scaled.height) < kSmallestSide) return;
    // Noise (a sensor's at night, a test pattern) holds no readable text, and Tesseract's layout
    // analysis, which no deadline interrupts, takes tens of seconds over its millions of specks.
    if (Busyness(scaled) > kNoiseBusyness) return;
    api_.SetImage(scaled.rgb.data(), scaled.width, scaled.height, 3, scaled.width * 3);
    // No resolution is given: Tesseract estimates one from the letters' sizes, and its Sauvola
    // window (a third of an inch) follows. A fixed 300 dpi read far less on photos.
    tesseract::ETEXT_DESC monitor;
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    monitor.set_deadline_msecs(static_cast<int32_t>(std::max<int64_t>(1, left.count())));
    monitor.cancel = &Cancelled;
    monitor.cancel_this = const_cast<std::atomic<bool>*>(stop);
    RecognizeSerially(&api_, &monitor);  // what was read before a deadline or cancel stays readable
    std::unique_ptr<tesseract::ResultIterator> it(api_.GetIterator());
    if (it != nullptr) {
      const double inverse = 1.0 / scale;
      do {
        if (it->IsAtBeginningOf(tesseract::RIL_TEXTLINE)) ++*line;
        std::unique_ptr<char[]> utf8(it->GetUTF8Text(tesseract::RIL_WORD));
        if (utf8 == nullptr) continue;
        const float confidence = it->Confidence(tesseract::RIL_WORD);
        std::string text = Trimmed(utf8.get());
        if (!IsValidUtf8(text) || !LooksLikeText(text, confidence)) continue;
        int x0 = 0, y0 = 0, x1 = 0, y1 = 0;
        it->BoundingBox(tesseract::RIL_WORD, &x0, &y0, &x1, &y1);
        RecognizedWord w;
        w.text = std::move(text);
        w.x = static_cast<int>(std::lround(x0 * inverse));
        w.y = static_cast<int>(std::lround(y0 * inverse));
        w.width = std::max(1, static_cast<int>(std::lround((x1 - x0) * inverse)));
        w.height = std::max(1, static_cast<int>(std::lround((y1 - y0) * inverse)));
        w.confidence = confidence;
        words->push_back(std::move(w));
        lines->push_back(*line);
      } while (it->Next(tesseract::RIL_WORD));
    }
    api_.Clear();
  }

  const TextReaderOptions options_;
  tesseract::TessBaseAPI api_;
};

}  // namespace

std::string TextDataDir(const std::string& data_dir) {
  if (!data_dir.empty()) return data_dir;
  if (const char* env = std::getenv("TESSDATA_PREFIX"); env != nullptr && *env != '\0') return env;
  return kDebianDataDir;
}

std::vector<std::string> InstalledTextLanguages(const std::string& data_dir) {
  std::vector<std::string> out;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(TextDataDir(data_dir), ec)) {
    const std::filesystem::path& p = entry.path();
    if (p.extension() == ".traineddata") out.push_back(p.stem().string());
  }
  std::sort(out.begin(), out.end());
  return out;
}

Result<std::unique_ptr<TextReader>> TextReader::Open(const TextReaderOptions& options) {
  if (options.max_side < 64) return Status::InvalidArgument("text recognition's max_side must be at least 64");
  auto reader = std::make_unique<TesseractReader>(options);
  RETURN_IF_ERROR(reader->Init());
  return std::unique_ptr<TextReader>(std::move(reader));
}

}  // namespace imgsearch
