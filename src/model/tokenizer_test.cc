// Tokenizer and text cleaning on a synthetic vocabulary: no ../shared needed. Expected values for
// html.unescape and str.lower() were taken from Python 3.11.
#include <gtest/gtest.h>

#include "model/text_clean.h"
#include "model/tokenizer.h"

namespace imgsearch::model {
namespace {

TEST(HtmlUnescape, MatchesPython) {
  const std::pair<const char*, const char*> cases[] = {
      {"&amp;", "&"},
      {"&amp", "&"},
      {"&ampx", "&x"},
      {"&#65;", "A"},
      {"&#x41", "A"},
      {"&#0;", "\xEF\xBF\xBD"},
      {"&#128;", "\xE2\x82\xAC"},
      {"&#xD800;", "\xEF\xBF\xBD"},
      {"&#1;", ""},
      {"&unknown;", "&unknown;"},
      {"&lt;b&gt;", "<b>"},
      {"&notit;", "\xC2\xACit;"},
      {"&#99999999999999;", "\xEF\xBF\xBD"},
      {"&", "&"},
      {"a & b", "a & b"},
      {"&;", "&;"},
      {"&#;", "&#;"},
      {"&#x;", "&#x;"},
      {"&NotNestedGreaterGreater;", "\xE2\xAA\xA2\xCC\xB8"},
      {"&amp;amp;", "&amp;"},
  };
  for (const auto& [in, out] : cases) EXPECT_EQ(HtmlUnescape(in), out) << "input: " << in;
}

TEST(CleanText, UnescapesTwiceNormalisesAndLowers) {
  EXPECT_EQ(ToUtf8(CleanText("&amp;amp;")), "&");
  EXPECT_EQ(ToUtf8(CleanText("  A  B\tC\n ")), "a b c");
  EXPECT_EQ(ToUtf8(CleanText("e\xCC\x81")), "\xC3\xA9");            // NFC: e + acute → é
  EXPECT_EQ(ToUtf8(CleanText("\xCE\xA3\xCE\x91\xCE\xA3")), "σας");  // final sigma, as str.lower()
  EXPECT_EQ(ToUtf8(CleanText("\xC4\xB0")), "i\xCC\x87");            // full case mapping of İ
  EXPECT_EQ(ToUtf8(CleanText("a\xE3\x80\x80"
                             "b")),
            "a b");  // ideographic space is space
  EXPECT_EQ(ToUtf8(CleanText("a\x1F"
                             "b")),
            "a b");  // Python's isspace() includes U+001F
  EXPECT_EQ(ToUtf8(CleanText("")), "");
  EXPECT_EQ(ToUtf8(CleanText("   ")), "");
  EXPECT_EQ(ToUtf8(CleanText("\xFF"
                             "a")),
            "\xEF\xBF\xBD"
            "a");  // invalid UTF-8 → U+FFFD
}

std::vector<std::string> SplitUtf8(const std::string& s) {
  std::vector<std::string> out;
  for (const std::u32string& piece : Tokenizer::Split(CleanText(s))) out.push_back(ToUtf8(piece));
  return out;
}

TEST(Split, FollowsClipsPattern) {
  using V = std::vector<std::string>;
  EXPECT_EQ(SplitUtf8("it's a dog's life, isn't it?"),
            (V{"it", "'s", "a", "dog", "'s", "life", ",", "isn", "'t", "it", "?"}));
  EXPECT_EQ(SplitUtf8("we'll see you're"), (V{"we", "'ll", "see", "you", "'re"}));
  EXPECT_EQ(SplitUtf8("hello!!! what??? ..."), (V{"hello", "!!!", "what", "???", "..."}));
  EXPECT_EQ(SplitUtf8("pi is 3.14"), (V{"pi", "is", "3", ".", "1", "4"}));
  EXPECT_EQ(SplitUtf8("a+b=c $100"), (V{"a", "+", "b", "=", "c", "$", "1", "0", "0"}));
  EXPECT_EQ(SplitUtf8("'hello ''s"), (V{"'", "hello", "''", "s"}));
  EXPECT_EQ(SplitUtf8("x<|endoftext|>y"), (V{"x", "<|endoftext|>", "y"}));
  EXPECT_EQ(SplitUtf8("!<|endoftext|>"), (V{"!<|", "endoftext", "|>"}));  // a punctuation run got there first
  EXPECT_EQ(SplitUtf8("<|endoftext|>y"), (V{"<|endoftext|>", "y"}));
  EXPECT_EQ(SplitUtf8("東京タワー"), (V{"東京タワー"}));
  EXPECT_EQ(SplitUtf8("½²"), (V{"½", "²"}));  // \p{N} includes other numbers, one at a time
  EXPECT_EQ(SplitUtf8("🐱🐶"), (V{"🐱🐶"}));
  EXPECT_TRUE(SplitUtf8("").empty());
}

// Byte tokens, their "</w>" forms, the given merges, then SOT and EOT.
Tokenizer MakeTokenizer(const std::vector<std::pair<std::string, std::string>>& merges) {
  std::unordered_map<std::string, int32_t> vocab;
  int32_t next = 0;
  auto symbol = [](int b) {
    const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
    static int extra = 256;
    static std::map<int, char32_t> assigned;
    if (!assigned.contains(b)) assigned[b] = printable ? static_cast<char32_t>(b) : static_cast<char32_t>(extra++);
    return ToUtf8(std::u32string(1, assigned[b]));
  };
  std::vector<std::string> bytes;
  for (int b = 0; b < 256; ++b) bytes.push_back(symbol(b));
  for (const std::string& s : bytes) vocab[s] = next++;
  for (const std::string& s : bytes) vocab[s + "</w>"] = next++;
  for (const auto& [a, b] : merges) vocab.emplace(a + b, next++);
  vocab["<|startoftext|>"] = next++;
  vocab["<|endoftext|>"] = next++;
  auto t = Tokenizer::FromData(vocab, merges);
  EXPECT_TRUE(t.ok());
  return std::move(t).value();
}

TEST(Tokenizer, MergesFollowRankOrder) {
  const Tokenizer by_ca = MakeTokenizer({{"c", "a"}, {"a", "t</w>"}, {"ca", "t</w>"}});
  const Tokenizer by_at = MakeTokenizer({{"a", "t</w>"}, {"c", "a"}});
  // 'c' = 99, 't' = 116 among the byte tokens; "t</w>" is 256 + 116.
  EXPECT_EQ(by_ca.EncodeRaw("cat"), (std::vector<int32_t>{514}));          // "cat</w>", the third merge
  EXPECT_EQ(by_at.EncodeRaw("cat"), (std::vector<int32_t>{99, 512}));      // c + "at</w>" (first merge)
  EXPECT_EQ(by_ca.EncodeRaw("ca"), (std::vector<int32_t>{99, 256 + 97}));  // "a</w>" never merges with c
}

TEST(Tokenizer, WrapsAndTruncatesKeepingEot) {
  const Tokenizer t = MakeTokenizer({});
  const int32_t sot = t.sot_id(), eot = t.eot_id();
  EXPECT_EQ(t.Encode("", 77), (std::vector<int32_t>{sot, eot}));
  EXPECT_EQ(t.Encode("a", 77), (std::vector<int32_t>{sot, 256 + 'a', eot}));
  std::string long_text;
  for (int i = 0; i < 100; ++i) long_text += "x ";
  const std::vector<int32_t> ids = t.Encode(long_text, 77);
  ASSERT_EQ(ids.size(), 77u);
  EXPECT_EQ(ids.front(), sot);
  EXPECT_EQ(ids.back(), eot);
  EXPECT_EQ(ids[75], 256 + 'x');
  EXPECT_EQ(t.Encode(long_text, 0).size(), 102u);  // no limit
}

TEST(Tokenizer, EncodesEveryByteAndSpecialTokens) {
  const Tokenizer t = MakeTokenizer({});
  // "é" is two UTF-8 bytes C3 A9, both printable in GPT-2's table.
  EXPECT_EQ(t.EncodeRaw("\xC3\xA9"), (std::vector<int32_t>{0xC3, 256 + 0xA9}));
  EXPECT_EQ(t.EncodeRaw("<|endoftext|>"), (std::vector<int32_t>{t.eot_id()}));
  EXPECT_EQ(t.EncodeRaw("<|startoftext|>"), (std::vector<int32_t>{t.sot_id()}));
  // A control byte maps to a shifted code point and still has a token.
  EXPECT_EQ(t.EncodeRaw("\x01").size(), 1u);
}

TEST(Tokenizer, RefusesVocabularyWithoutSpecialTokens) {
  std::unordered_map<std::string, int32_t> vocab{{"a", 0}};
  auto t = Tokenizer::FromData(vocab, {});
  ASSERT_FALSE(t.ok());
  EXPECT_NE(t.status().message().find("startoftext"), std::string::npos);
}

}  // namespace
}  // namespace imgsearch::model
