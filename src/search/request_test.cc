// The request parsers on their own: dates, base64, and the rules every search request follows,
// whichever front end the request came through.
#include <gtest/gtest.h>

#include "base/base64.h"
#include "imgsearch/search.h"

namespace imgsearch {
namespace {

TEST(ParseTime, DatesTimesAndUnixSeconds) {
  EXPECT_EQ(*ParseSearchTime("1700000000", "after"), 1700000000);
  EXPECT_EQ(*ParseSearchTime("-86400", "after"), -86400);
  EXPECT_EQ(*ParseSearchTime("1970-01-02", "after"), 86400);
  EXPECT_EQ(*ParseSearchTime("2023-05-01", "after"), 1682899200);
  EXPECT_EQ(*ParseSearchTime("2023-05-01T12:30", "after"), 1682899200 + 12 * 3600 + 30 * 60);
  EXPECT_EQ(*ParseSearchTime("2023-05-01T12:30:15Z", "after"), 1682899200 + 12 * 3600 + 30 * 60 + 15);
  EXPECT_EQ(*ParseSearchTime("2023-05-01 00:00:01", "after"), 1682899201);
  for (const char* bad : {"", "yesterday", "2023-13-01", "2023-05-01T25:00", "2023-02-30", "2023-04-31", "2023-05-01x",
                          "2023-05-01T12", "12abc"}) {
    auto r = ParseSearchTime(bad, "after");
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
  for (const std::string bytes : {"h", "hi", "hello", "bad\xff\xfe name"}) {
    auto round = DecodeBase64(EncodeBase64(bytes), "t");
    ASSERT_TRUE(round.ok()) << bytes;
    EXPECT_EQ(std::string(round->begin(), round->end()), bytes);
  }
}

TEST(SearchRequests, OptionsAndTermsFromEachForm) {
  const RequestLimits limits;
  auto get =
      ParseSearchQuery({{"q", "dog"}, {"k", "7"}, {"offset", "3"}, {"format", "JPG,png"}, {"under", "/a/b/"}}, limits);
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
  EXPECT_EQ(post->terms[1].kind, SearchTerm::Kind::kItem);
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

  RequestLimits small;
  small.max_k = 50;
  EXPECT_FALSE(ParseSearchQuery({{"q", "dog"}, {"k", "51"}}, small).ok());
  EXPECT_FALSE(ParseSearchQuery({{"q", "dog"}, {"k", "30"}, {"offset", "30"}}, small).ok());
  EXPECT_FALSE(ParseSearchJson(R"({"q": "x", "terms": []})", limits).ok() &&
               ParseSearchJson(R"({"terms": []})", limits).ok());
  std::string many = R"({"terms": [)";
  for (int i = 0; i < 33; ++i) many += std::string(i ? "," : "") + R"({"text": "t"})";
  EXPECT_FALSE(ParseSearchJson(many + "]}", limits).ok());
}

}  // namespace
}  // namespace imgsearch

namespace imgsearch {
namespace {

// The same request through the command line, a query string, a JSON body and a form: one meaning.
TEST(SearchRequests, EveryFrontEndMeansTheSame) {
  const SearchFields options = {{"k", "7"},         {"offset", "2"},         {"min_score", "0.25"},
                                {"under", "/p/x/"}, {"after", "1700000000"}, {"before", "2024-01-01T00:00:00"},
                                {"format", "JPG"},  {"format", "tif"},       {"exact", "true"}};
  SearchFields query = options;
  query.insert(query.begin(), {{"q", "a red car"}, {"similar", "4"}, {"similar", "9@62.5"}});
  auto get = ParseSearchQuery(query);
  ASSERT_TRUE(get.ok()) << get.status().ToString();
  const std::vector<std::string> args = {"a red car"};
  const std::vector<std::string> items = {"4", "9@62.5"};
  auto cli = ParseSearchArgs(args, {}, items, options);
  ASSERT_TRUE(cli.ok()) << cli.status().ToString();
  auto post = ParseSearchJson(R"({"q": "a red car", "similar": 4, "terms": [{"time": 62.5, "id": 9}], "k": 7,
      "offset": 2, "min_score": 0.25, "under": "/p/x/", "after": 1700000000, "before": "2024-01-01T00:00:00",
      "formats": ["JPG", "tif"], "exact": true})");
  ASSERT_TRUE(post.ok()) << post.status().ToString();
  std::vector<FormPart> parts;
  for (const auto& [k, v] : query) parts.push_back({k, v, ""});
  auto form = ParseSearchForm(parts);
  ASSERT_TRUE(form.ok()) << form.status().ToString();
  for (const SearchRequest* r : {&*get, &*cli, &*post, &*form}) {
    EXPECT_EQ(r->options.k, 7);
    EXPECT_EQ(r->options.offset, 2);
    EXPECT_FLOAT_EQ(r->options.min_score, 0.25f);
    EXPECT_EQ(r->options.filter.under, "/p/x");
    EXPECT_EQ(r->options.filter.after_s, 1700000000);
    EXPECT_EQ(r->options.filter.before_s, 1704067200);
    EXPECT_EQ(r->options.filter.formats, (std::vector<std::string>{"jpeg", "tiff"}));
    EXPECT_TRUE(r->options.exact);
    ASSERT_EQ(r->terms.size(), 3u);
    std::vector<const SearchTerm*> items;
    for (const SearchTerm& t : r->terms) {
      if (t.kind == SearchTerm::Kind::kText) {
        EXPECT_EQ(t.text, "a red car");
      } else {
        items.push_back(&t);
      }
    }
    ASSERT_EQ(items.size(), 2u);
    EXPECT_EQ(items[0]->kind, SearchTerm::Kind::kItem);
    EXPECT_EQ(items[0]->id, 4);
    EXPECT_FALSE(items[0]->time_s.has_value());
    EXPECT_EQ(items[1]->id, 9);  // a video's moment
    EXPECT_EQ(items[1]->time_s, 62.5);
  }
  // A moment's time is a number of seconds from 0, and goes with an id only.
  for (const std::string bad : {"9@", "9@-1", "9@x", "9@nan", "@5"}) {
    EXPECT_FALSE(ParseSearchQuery({{"similar", bad}}).ok()) << bad;
    EXPECT_FALSE(ParseSearchArgs({}, {}, std::vector<std::string>{bad}, {}).ok()) << bad;
  }
  EXPECT_FALSE(ParseSearchJson(R"({"terms": [{"text": "x", "time": 3}]})").ok());
  EXPECT_FALSE(ParseSearchJson(R"({"terms": [{"id": 3, "time": -3}]})").ok());
  // The same mistake gets the same message.
  auto bad_get = ParseSearchQuery({{"q", "x"}, {"after", "2023-02-30"}});
  auto bad_cli = ParseSearchArgs(std::vector<std::string>{"x"}, {}, {}, {{"after", "2023-02-30"}});
  auto bad_post = ParseSearchJson(R"({"q": "x", "after": "2023-02-30"})");
  ASSERT_FALSE(bad_get.ok());
  ASSERT_FALSE(bad_cli.ok());
  ASSERT_FALSE(bad_post.ok());
  EXPECT_EQ(bad_get.status().message(), bad_cli.status().message());
  EXPECT_EQ(bad_get.status().message(), bad_post.status().message());
  EXPECT_NE(bad_get.status().message().find("after"), std::string::npos);
}

TEST(SearchRequests, CommandLineTermsWeightsAndOperators) {
  auto r = ParseSearchArgs(std::vector<std::string>{"golden retriever", "+", "0.5:beach", "-", "people"}, {}, {}, {});
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  ASSERT_EQ(r->terms.size(), 3u);
  EXPECT_FLOAT_EQ(r->terms[1].weight, 0.5f);
  EXPECT_EQ(r->terms[1].text, "beach");
  EXPECT_FLOAT_EQ(r->terms[2].weight, -1.0f);
  for (const std::vector<std::string>& bad :
       {std::vector<std::string>{"a", "b"}, {"a", "+", "-", "b"}, {"a", "+"}, {"0:zero"}, {}}) {
    EXPECT_FALSE(ParseSearchArgs(bad, {}, {}, {}).ok()) << (bad.empty() ? "(none)" : bad[0]);
  }
}

TEST(SearchRequests, TextIsUtf8AndCountedInCharacters) {
  // 667 CJK characters are 2001 bytes but well under 2000 characters.
  std::string cjk;
  for (int i = 0; i < 667; ++i) cjk += "\xe7\x8c\xab";  // 猫
  EXPECT_TRUE(ParseSearchQuery({{"q", cjk}}).ok());
  std::string long_cjk;
  for (int i = 0; i < 2001; ++i) long_cjk += "\xe7\x8c\xab";
  EXPECT_FALSE(ParseSearchQuery({{"q", long_cjk}}).ok());
  for (const SearchFields& bad :
       {SearchFields{{"q", "bad\xff"}}, SearchFields{{"q", "x"}, {"k", "\xff"}},
        SearchFields{{"q", "x"}, {"format", "\xff"}}, SearchFields{{"q", "x"}, {"under", "/tmp/\xff"}},
        SearchFields{{"q", "x"}, {"\xff", "1"}}}) {
    auto r = ParseSearchQuery(bad);
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(r.status().message().find("UTF-8"), std::string::npos) << r.status().message();
  }
  EXPECT_FALSE(ParseSearchJson("{\"q\": \"bad\xff\"}").ok());
}

TEST(SearchRequests, ContainsTermsFromEveryFrontEnd) {
  auto get = ParseSearchQuery({{"q", "a sign"}, {"contains", "invoice 4471"}});
  ASSERT_TRUE(get.ok()) << get.status().ToString();
  ASSERT_EQ(get->terms.size(), 2u);
  EXPECT_EQ(get->terms[1].kind, SearchTerm::Kind::kContains);
  EXPECT_EQ(get->terms[1].text, "invoice 4471");
  EXPECT_FALSE(NeedsModel(*ParseSearchQuery({{"contains", "exit"}})));
  auto json = ParseSearchJson(R"({"contains": "exit", "terms": [{"contains": "sale", "weight": -1}]})");
  ASSERT_TRUE(json.ok()) << json.status().ToString();
  ASSERT_EQ(json->terms.size(), 2u);
  EXPECT_EQ(json->terms[1].weight, -1.0f);
  auto cli = ParseSearchArgs({}, {}, {}, {{"contains", "gate 12"}});
  ASSERT_TRUE(cli.ok()) << cli.status().ToString();
  EXPECT_EQ(cli->terms[0].kind, SearchTerm::Kind::kContains);
  for (const auto& bad : {ParseSearchQuery({{"contains", "!!"}}), ParseSearchQuery({{"contains", ""}}),
                          ParseSearchJson(R"({"contains": 5})"), ParseSearchJson(R"({"terms": [{"contains": ""}]})"),
                          ParseSearchJson(R"({"terms": [{"contains": "a", "text": "b"}]})"),
                          ParseSearchQuery({{"contains", std::string(3000, 'a')}})}) {
    ASSERT_FALSE(bad.ok());
    EXPECT_EQ(bad.status().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(bad.status().message().find("contains"), std::string::npos) << bad.status().message();
  }
  // /similar takes no terms in its query string.
  EXPECT_FALSE(ParseSearchQuery({{"contains", "x"}}, {}, /*allow_terms=*/false).ok());
}

TEST(SearchRequests, FormatAliases) {
  EXPECT_EQ(*CanonicalFormat("JPG"), "jpeg");
  EXPECT_EQ(*CanonicalFormat("tif"), "tiff");
  EXPECT_EQ(*CanonicalFormat("webp"), "webp");
  auto bad = CanonicalFormat("psd");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("unknown format \"psd\""), std::string::npos) << bad.status().message();
}

}  // namespace
}  // namespace imgsearch
