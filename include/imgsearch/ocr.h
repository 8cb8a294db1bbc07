// Reading the words an image shows (OCR) with Tesseract: signs, captions, labels, receipts,
// screenshots, slides. Tuned for photos rather than scanned pages: sparse text found anywhere in
// the picture, locally adaptive binarisation for busy backgrounds, and a second pass at half the
// scale for large lettering.
//
//   ASSIGN_OR_RETURN(auto reader, TextReader::Open({.languages = "eng+deu"}));
//   ASSIGN_OR_RETURN(RecognizedText text, reader->Read(decoded.image));
#pragma once

#include <atomic>
#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "imgsearch/image.h"
#include "imgsearch/status.h"

namespace imgsearch {

// A word read, with its box in the pixels of the image given to TextReader::Read.
struct RecognizedWord {
  std::string text;
  int x = 0;
  int y = 0;
  int width = 0;
  int height = 0;
  float confidence = 0;  // Tesseract's, 0..100
  // In a video's text: the time of the frame it was read from (the box is in that frame).
  std::optional<double> time_s;
};

struct RecognizedText {
  std::string text;  // the words in reading order: spaces between words, a newline between lines
  std::vector<RecognizedWord> words;
  bool empty() const { return words.empty(); }
};

struct TextReaderOptions {
  // Tesseract language names joined by "+" ("eng", "eng+deu"); each needs its data installed
  // (Debian: tesseract-ocr-eng, tesseract-ocr-deu, …).
  std::string languages = "eng";
  // Where the language data lives; empty: $TESSDATA_PREFIX when set, else Debian's folder.
  std::string data_dir;
  // The image is scaled so that its longer side is at most this (and small images are enlarged
  // up to it, at most twofold): text a few pixels high is not readable, and camera-size photos
  // cost seconds more without reading more.
  int max_side = 2400;
  // Reading one image gives up after this long (a huge or adversarial picture must not hold a
  // reader); what was read so far is kept.
  std::chrono::milliseconds time_limit = std::chrono::seconds(60);
};

// One Tesseract engine. Not thread-safe: use one per thread (each holds its language models,
// some tens of MB).
class TextReader {
 public:
  // kNotFound naming the package to install when a language's data is missing; kInvalidArgument
  // for a malformed language list.
  static Result<std::unique_ptr<TextReader>> Open(const TextReaderOptions& options = {});
  virtual ~TextReader() = default;

  // The words `image` shows (none is not an error). Stops early, keeping what was read, when
  // `stop` turns true or the time limit passes.
  virtual Result<RecognizedText> Read(const Image& image, const std::atomic<bool>* stop = nullptr) = 0;

  virtual const std::string& languages() const = 0;
};

// The folder TextReader reads language data from for `data_dir` (see TextReaderOptions).
std::string TextDataDir(const std::string& data_dir = "");

// The languages whose data is installed there, sorted ("eng", "osd", …).
std::vector<std::string> InstalledTextLanguages(const std::string& data_dir = "");

}  // namespace imgsearch
