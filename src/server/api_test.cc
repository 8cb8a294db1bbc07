// The request parsers on their own: dates, base64, and the rules every search request follows.
#include <gtest/gtest.h>

#include "server/api.h"

namespace imgsearch::server {
namespace {

TEST(ParseTime, DatesTimesAndUnixSeconds) {
  EXPECT_EQ(*ParseTime("1700000000", "after"), 1700000000);
  EXPECT_EQ(*ParseTime("-86400", "after"), -86400);
  EXPECT_EQ(*ParseTime("1970-01-02", "after"), 86400);
  EXPECT_EQ(*ParseTime("2023-05-01", "after"), 1682899200);
  EXPECT_EQ(*ParseTime("2023-05-01T12:30", "after"), 1682899200 + 12 * 3600 + 30 * 60);
  EXPECT_EQ(*ParseTime("2023-05-01T12:30:15Z", "after"), 1682899200 + 12 * 3600 + 30 * 60 + 15);
  EXPECT_EQ(*ParseTime("2023-05-01 00:00:01", "after"), 1682899201);
  for (const char* bad : {"", "yesterday", "2023-13-01", "2023-05-01T25:00", "2023-05-01x", "2023-05-01T12", "12abc"}) {
    auto r = ParseTime(bad, "after");
    EXPECT_FALSE(r.ok()) << bad;
    if (!r.ok()) {
      EXPECT_NE(r.status().message().find("after"), std::string::npos) << r.status().message();
    }
  }
}

TEST(DecodeBase64, StandardUrlSafePaddedUnpaddedAndDataUrls) {
  auto text = [](const Result<std::vector<uint8_t>>& r) { return std::string(r->begin(), r->end()); };
  EXPECT_EQ(text(DecodeBase64("aGVsbG8=", "image")), "hello");
  EXPECT_EQ(text(DecodeBase64("aGVsbG8", "image")), "hello");
  EXPECT_EQ(text(DecodeBase64("aGVs\nbG8=", "image")), "hello");
  EXPECT_EQ(text(DecodeBase64("data:image/png;base64,aGk=", "image")), "hi");
  EXPECT_EQ(text(DecodeBase64("-_8=", "image")), "\xfb\xff");
  EXPECT_EQ(text(DecodeBase64("+/8=", "image")), "\xfb\xff");
  for (const char* bad : {"", "a", "aGk=aGk=", "a*b=", "data:image/png,aGk=", "aGk==="}) {
    EXPECT_FALSE(DecodeBase64(bad, "image").ok()) << bad;
  }
}

TEST(SearchRequests, OptionsAndTermsFromEachForm) {
  const Limits limits;
  auto get =
      ParseSearchParams({{"q", "dog"}, {"k", "7"}, {"offset", "3"}, {"format", "JPG,png"}, {"under", "/a/b/"}}, limits);
  ASSERT_TRUE(get.ok()) << get.status().ToString();
  EXPECT_EQ(get->options.k, 7);
  EXPECT_EQ(get->options.offset, 3);
  EXPECT_EQ(get->options.filter.under, "/a/b");
  EXPECT_EQ(get->options.filter.formats, (std::vector<std::string>{"jpeg", "png"}));
  ASSERT_EQ(get->terms.size(), 1u);
  EXPECT_EQ(get->terms[0].text, "dog");

  auto post = ParseSearchJson(R"({"terms": [{"text": "dog"}, {"id": 4, "weight": -0.5}], "min_score": 0.1,
                                  "exact": true, "formats": ["webp"], "after": null})",
                              limits);
  ASSERT_TRUE(post.ok()) << post.status().ToString();
  ASSERT_EQ(post->terms.size(), 2u);
  EXPECT_EQ(post->terms[1].kind, SearchTerm::Kind::kSimilar);
  EXPECT_FLOAT_EQ(post->terms[1].weight, -0.5f);
  EXPECT_TRUE(post->options.exact);
  EXPECT_FLOAT_EQ(post->options.min_score, 0.1f);
  EXPECT_FALSE(post->options.filter.after_s.has_value());

  auto form = ParseSearchForm(
      {{"image", "bytes", "a.jpg"}, {"image_weight", "-1", ""}, {"q", "cat", ""}, {"k", "", ""}}, limits);
  ASSERT_TRUE(form.ok()) << form.status().ToString();
  ASSERT_EQ(form->terms.size(), 2u);
  EXPECT_EQ(form->terms[0].kind, SearchTerm::Kind::kImage);
  EXPECT_FLOAT_EQ(form->terms[0].weight, -1.0f);
  EXPECT_EQ(form->options.k, 10);  // an empty field leaves the default

  Limits small;
  small.max_k = 50;
  EXPECT_FALSE(ParseSearchParams({{"q", "dog"}, {"k", "51"}}, small).ok());
  EXPECT_FALSE(ParseSearchParams({{"q", "dog"}, {"k", "30"}, {"offset", "30"}}, small).ok());
  EXPECT_FALSE(ParseSearchJson(R"({"q": "x", "terms": []})", limits).ok() &&
               ParseSearchJson(R"({"terms": []})", limits).ok());
  std::string many = R"({"terms": [)";
  for (int i = 0; i < 33; ++i) many += std::string(i ? "," : "") + R"({"text": "t"})";
  EXPECT_FALSE(ParseSearchJson(many + "]}", limits).ok());
}

}  // namespace
}  // namespace imgsearch::server
