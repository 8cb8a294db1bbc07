// Text recognition on photos the test makes: words in a real font drawn onto the golden photographs
// (busy backgrounds: fur, a rocket's exhaust), small and large, light and dark, boxed and bare.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <random>
#include <thread>

#include "draw_text.h"
#include "imgsearch/ocr.h"
#include "test_util.h"

namespace imgsearch {
namespace {

using tools::DrawText;
using tools::TextStyle;

std::string Lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  return s;
}

// Every word of `words` was read (as search matches them: anywhere in the text, any case).
bool Reads(const RecognizedText& text, const std::string& words) {
  const std::string read = Lower(text.text);
  size_t start = 0;
  while (start < words.size()) {
    const size_t space = std::min(words.find(' ', start), words.size());
    if (read.find(Lower(words.substr(start, space - start))) == std::string::npos) return false;
    start = space + 1;
  }
  return true;
}

// The words read with their confidences, for failure messages.
std::string Described(const RecognizedText& text) {
  std::string out;
  for (const RecognizedWord& w : text.words)
    out += w.text + " (" + std::to_string(static_cast<int>(w.confidence)) + ") ";
  return out;
}

class OcrTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (tools::TextFontBytes().empty()) GTEST_SKIP() << "no font at " << tools::kTextFont << " (fonts-dejavu-core)";
    auto reader = TextReader::Open();
    if (!reader.ok() && reader.status().code() == StatusCode::kNotFound) {
      GTEST_SKIP() << reader.status().message();
    }
    ASSERT_TRUE(reader.ok()) << reader.status().ToString();
    reader_ = std::move(*reader);
  }

  // A golden photograph scaled to `width` wide (a camera-like size), or skips.
  std::optional<Image> Photo(const std::string& name, int width) {
    const auto golden = testing::GoldenDir();
    if (!golden) return std::nullopt;
    auto decoded = DecodeImageFile(*golden + "/images/" + name);
    EXPECT_TRUE(decoded.ok()) << decoded.status().ToString();
    if (!decoded.ok()) return std::nullopt;
    const Image& im = decoded->image;
    return Resize(im, width, im.height * width / im.width);
  }

  std::unique_ptr<TextReader> reader_;
};

TEST_F(OcrTest, ReadsWordsOnBusyPhotos) {
  std::optional<Image> cat = Photo("chelsea.png", 2400);
  if (!cat) GTEST_SKIP() << "no ../shared/golden";
  // White letters straight on fur, and a small yellow label.
  ASSERT_TRUE(DrawText(&*cat, "INVOICE 4471", 200, 300, {.pixel_height = 90}));
  ASSERT_TRUE(DrawText(&*cat, "Platform 9", 1200, 1100,
                       {.pixel_height = 56, .color = {0, 0, 0}, .box = std::array<uint8_t, 3>{255, 230, 0}}));
  auto text = reader_->Read(*cat);
  ASSERT_TRUE(text.ok()) << text.status().ToString();
  EXPECT_TRUE(Reads(*text, "INVOICE 4471")) << Described(*text);
  // (A lone "9" on fur is beyond it: single characters count only when Tesseract is sure.)
  EXPECT_TRUE(Reads(*text, "Platform")) << Described(*text);
  // Boxes are in the given image's pixels.
  const auto invoice = std::find_if(text->words.begin(), text->words.end(),
                                    [](const RecognizedWord& w) { return Lower(w.text) == "invoice"; });
  ASSERT_NE(invoice, text->words.end());
  EXPECT_NEAR(invoice->x, 200, 30);
  EXPECT_NEAR(invoice->y + invoice->height / 2, 300 + 45, 40);
}

TEST_F(OcrTest, ReadsLargeLetteringAndCaptions) {
  std::optional<Image> rocket = Photo("rocket.jpg", 1800);
  if (!rocket) GTEST_SKIP() << "no ../shared/golden";
  // Lettering a third of the picture high across the rocket and its towers (a banner), and a
  // caption on the dusk sky.
  ASSERT_TRUE(DrawText(&*rocket, "OPEN", 100, 250, {.pixel_height = 420, .color = {255, 200, 0}}));
  ASSERT_TRUE(DrawText(&*rocket, "LAUNCH PAD 39A", 60, 60, {.pixel_height = 70, .color = {235, 235, 235}}));
  auto text = reader_->Read(*rocket);
  ASSERT_TRUE(text.ok()) << text.status().ToString();
  EXPECT_TRUE(Reads(*text, "OPEN")) << Described(*text);
  EXPECT_TRUE(Reads(*text, "LAUNCH PAD")) << Described(*text);
}

TEST_F(OcrTest, PhotosWithoutTextReadAlmostNothing) {
  for (const char* name : {"chelsea.png", "astronaut.png", "coffee.png"}) {
    std::optional<Image> photo = Photo(name, 1600);
    if (!photo) GTEST_SKIP() << "no ../shared/golden";
    auto text = reader_->Read(*photo);
    ASSERT_TRUE(text.ok()) << text.status().ToString();
    // Texture is not text: at most a few stray short "words".
    EXPECT_LE(text->words.size(), 8u) << name << ": " << Described(*text);
  }
}

TEST_F(OcrTest, ForeignScriptsAndTinyImagesAreNotErrors) {
  Image image(900, 300);
  std::fill(image.rgb.begin(), image.rgb.end(), 235);
  // Greek and Cyrillic with only English installed: read as whatever it resembles, or nothing.
  ASSERT_TRUE(DrawText(&image, "Καλημέρα κόσμε", 20, 40, {.pixel_height = 60, .color = {0, 0, 0}}));
  ASSERT_TRUE(DrawText(&image, "Привет мир", 20, 170, {.pixel_height = 60, .color = {0, 0, 0}}));
  auto text = reader_->Read(image);
  ASSERT_TRUE(text.ok()) << text.status().ToString();
  for (const Image& tiny : {Image(1, 1), Image(3, 2000), Image(2000, 3)}) {
    auto t = reader_->Read(tiny);
    ASSERT_TRUE(t.ok()) << t.status().ToString();
    EXPECT_TRUE(t->empty());
  }
  EXPECT_EQ(reader_->Read(Image()).status().code(), StatusCode::kInvalidArgument);
}

TEST_F(OcrTest, NoiseIsSkippedQuickly) {
  // Tesseract's layout analysis of pure noise takes tens of seconds and no deadline interrupts it
  // (16 s per pass on the 2400×1800 picture, three passes). Skipped, both pictures take about 1 s in
  // a release build and up to 12 s under the sanitizers on a busy machine: the bound tells the two
  // apart without timing the check itself.
  for (const auto& [w, h] : {std::pair{2400, 1800}, std::pair{6000, 4000}}) {
    Image noise(w, h);
    std::mt19937 rng(3);
    for (uint8_t& v : noise.rgb) v = static_cast<uint8_t>(rng());
    const auto start = std::chrono::steady_clock::now();
    auto text = reader_->Read(noise);
    ASSERT_TRUE(text.ok()) << text.status().ToString();
    EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(30)) << w << "x" << h;
  }
}

TEST_F(OcrTest, StopsAtTheTimeLimitAndOnRequest) {
  // A page dense with text: reading all of it takes seconds.
  Image page(2400, 3200);
  std::fill(page.rgb.begin(), page.rgb.end(), 250);
  for (int line = 0; line < 60; ++line) {
    ASSERT_TRUE(DrawText(&page, "The quick brown fox jumps over the lazy dog " + std::to_string(line), 40,
                         20 + line * 52, {.pixel_height = 36, .color = {0, 0, 0}}));
  }
  const auto started = std::chrono::steady_clock::now();
  auto all = reader_->Read(page);
  const auto full = std::chrono::steady_clock::now() - started;
  ASSERT_TRUE(all.ok()) << all.status().ToString();
  EXPECT_TRUE(Reads(*all, "quick brown fox lazy")) << Described(*all);

  auto limited = TextReader::Open({.time_limit = std::chrono::milliseconds(300)});
  ASSERT_TRUE(limited.ok()) << limited.status().ToString();
  auto start = std::chrono::steady_clock::now();
  auto part = (*limited)->Read(page);
  const auto cut = std::chrono::steady_clock::now() - start;
  ASSERT_TRUE(part.ok()) << part.status().ToString();
  EXPECT_LT(part->words.size(), all->words.size());
  EXPECT_LT(cut, full);

  std::atomic<bool> stop{true};
  start = std::chrono::steady_clock::now();
  auto stopped = reader_->Read(page, &stop);
  ASSERT_TRUE(stopped.ok()) << stopped.status().ToString();
  EXPECT_LT(stopped->words.size(), all->words.size());
  EXPECT_LT(std::chrono::steady_clock::now() - start, full);
}

TEST(OcrLanguages, MissingAndMalformedLanguagesAreNamed) {
  auto missing = TextReader::Open({.languages = "eng+xyz"});
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().code(), StatusCode::kNotFound);
  EXPECT_NE(missing.status().message().find("\"xyz\" is not installed"), std::string::npos)
      << missing.status().message();
  EXPECT_NE(missing.status().message().find("tesseract-ocr-xyz"), std::string::npos);
  for (const char* bad : {"", "eng+", "../../etc/passwd", "eng deu", "+eng"}) {
    auto r = TextReader::Open({.languages = bad});
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument) << bad << ": " << r.status().message();
  }
  auto elsewhere = TextReader::Open({.data_dir = "/nonexistent"});
  ASSERT_FALSE(elsewhere.ok());
  EXPECT_EQ(elsewhere.status().code(), StatusCode::kNotFound);
}

}  // namespace
}  // namespace imgsearch
