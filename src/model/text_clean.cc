#include "model/text_clean.h"

#include <unicode/locid.h>
#include <unicode/normalizer2.h>
#include <unicode/uchar.h>
#include <unicode/unistr.h>

#include <algorithm>
#include <cstring>

namespace imgsearch::model {

namespace {

#include "html_entities.inc"

void AppendUtf8(std::string* out, char32_t c) {
  if (c < 0x80) {
    out->push_back(static_cast<char>(c));
  } else if (c < 0x800) {
    out->push_back(static_cast<char>(0xC0 | (c >> 6)));
    out->push_back(static_cast<char>(0x80 | (c & 0x3F)));
  } else if (c < 0x10000) {
    out->push_back(static_cast<char>(0xE0 | (c >> 12)));
    out->push_back(static_cast<char>(0x80 | ((c >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (c & 0x3F)));
  } else {
    out->push_back(static_cast<char>(0xF0 | (c >> 18)));
    out->push_back(static_cast<char>(0x80 | ((c >> 12) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | ((c >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (c & 0x3F)));
  }
}

const char* FindEntity(std::string_view name) {
  auto it = std::lower_bound(std::begin(kHtml5Entities), std::end(kHtml5Entities), name,
                             [](const HtmlEntity& e, std::string_view n) { return std::string_view(e.name) < n; });
  if (it != std::end(kHtml5Entities) && std::string_view(it->name) == name) return it->utf8;
  return nullptr;
}

bool IsDigit(char c) { return c >= '0' && c <= '9'; }
bool IsHexDigit(char c) { return IsDigit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'); }

// Python: numeric references map some code points specially; see html._replace_charref.
void AppendNumericReference(std::string* out, uint64_t code) {
  for (const InvalidCharref& r : kInvalidCharrefs) {
    if (r.code == code) {
      out->append(r.utf8);
      return;
    }
  }
  if ((code >= 0xD800 && code <= 0xDFFF) || code > 0x10FFFF) {
    out->append("\xEF\xBF\xBD");
    return;
  }
  if (std::binary_search(std::begin(kInvalidCodepoints), std::end(kInvalidCodepoints), code)) return;
  AppendUtf8(out, static_cast<char32_t>(code));
}

}  // namespace

std::string HtmlUnescape(std::string_view s) {
  if (s.find('&') == std::string_view::npos) return std::string(s);
  std::string out;
  out.reserve(s.size());
  size_t i = 0;
  while (i < s.size()) {
    if (s[i] != '&') {
      out.push_back(s[i++]);
      continue;
    }
    // Pattern: &(#[0-9]+;?|#[xX][0-9a-fA-F]+;?|[^\t\n\f <&#;]{1,32};?)
    const size_t start = i + 1;
    if (start < s.size() && s[start] == '#') {
      size_t j = start + 1;
      const bool hex = j < s.size() && (s[j] == 'x' || s[j] == 'X');
      if (hex) ++j;
      const size_t digits_begin = j;
      while (j < s.size() && (hex ? IsHexDigit(s[j]) : IsDigit(s[j]))) ++j;
      if (j == digits_begin) {  // no digits: not a reference
        out.push_back(s[i++]);
        continue;
      }
      uint64_t code = 0;
      for (size_t p = digits_begin; p < j; ++p) {
        const char c = s[p];
        const uint64_t v = IsDigit(c) ? c - '0' : (c | 0x20) - 'a' + 10;
        code = std::min<uint64_t>(code * (hex ? 16 : 10) + v, 0x7FFFFFFF);  // saturate: anything huge is invalid
      }
      if (j < s.size() && s[j] == ';') ++j;
      AppendNumericReference(&out, code);
      i = j;
      continue;
    }
    size_t j = start;
    while (j < s.size() && j - start < 32 && std::strchr("\t\n\f <&#;", s[j]) == nullptr) ++j;
    if (j == start) {
      out.push_back(s[i++]);
      continue;
    }
    if (j < s.size() && s[j] == ';') ++j;
    const std::string_view ref = s.substr(start, j - start);
    if (const char* value = FindEntity(ref)) {
      out.append(value);
      i = j;
      continue;
    }
    // Longest prefix that is a name (legacy references without ';'), as the standard defines.
    bool replaced = false;
    for (size_t len = ref.size() - 1; len > 1; --len) {
      if (const char* value = FindEntity(ref.substr(0, len))) {
        out.append(value);
        out.append(ref.substr(len));
        replaced = true;
        break;
      }
    }
    if (!replaced) {
      out.push_back('&');
      out.append(ref);
    }
    i = j;
  }
  return out;
}

bool IsLetter(char32_t c) {
  const int8_t type = u_charType(static_cast<UChar32>(c));
  return type == U_UPPERCASE_LETTER || type == U_LOWERCASE_LETTER || type == U_TITLECASE_LETTER ||
         type == U_MODIFIER_LETTER || type == U_OTHER_LETTER;
}

bool IsNumber(char32_t c) {
  const int8_t type = u_charType(static_cast<UChar32>(c));
  return type == U_DECIMAL_DIGIT_NUMBER || type == U_LETTER_NUMBER || type == U_OTHER_NUMBER;
}

bool IsSpace(char32_t c) {
  // Python's str.isspace(): the White_Space property plus the separators U+001C..U+001F.
  return u_isUWhiteSpace(static_cast<UChar32>(c)) || (c >= 0x1C && c <= 0x1F);
}

std::string ToUtf8(std::u32string_view text) {
  std::string out;
  out.reserve(text.size());
  for (char32_t c : text) AppendUtf8(&out, c);
  return out;
}

namespace {

// Appends the code points of an ICU (UTF-16) string.
void AppendCodePoints(const icu::UnicodeString& u, std::u32string* out) {
  for (int32_t i = 0; i < u.length();) {
    const UChar32 c = u.char32At(i);
    i += U16_LENGTH(c);
    out->push_back(static_cast<char32_t>(c));
  }
}

}  // namespace

std::u32string ToUtf32(std::string_view text) {
  std::u32string out;
  AppendCodePoints(icu::UnicodeString::fromUTF8(icu::StringPiece(text.data(), static_cast<int32_t>(text.size()))),
                   &out);
  return out;
}

std::u32string LowerEachCharacter(std::u32string_view text) {
  std::u32string out;
  out.reserve(text.size());
  for (char32_t c : text) {
    icu::UnicodeString one(static_cast<UChar32>(c));
    AppendCodePoints(one.toLower(icu::Locale::getRoot()), &out);
  }
  return out;
}

std::u32string NormalizeUnicode(std::u32string_view text, bool decompose) {
  icu::UnicodeString u;
  for (char32_t c : text) u.append(static_cast<UChar32>(c));
  UErrorCode err = U_ZERO_ERROR;
  const icu::Normalizer2* n = decompose ? icu::Normalizer2::getNFDInstance(err) : icu::Normalizer2::getNFCInstance(err);
  if (U_FAILURE(err)) return std::u32string(text);
  const icu::UnicodeString normalized = n->normalize(u, err);
  if (U_FAILURE(err)) return std::u32string(text);
  std::u32string out;
  AppendCodePoints(normalized, &out);
  return out;
}

std::u32string CleanText(std::string_view text) {
  const std::string unescaped = HtmlUnescape(HtmlUnescape(text));
  icu::UnicodeString u =
      icu::UnicodeString::fromUTF8(icu::StringPiece(unescaped.data(), static_cast<int32_t>(unescaped.size())));
  UErrorCode err = U_ZERO_ERROR;
  const icu::Normalizer2* nfc = icu::Normalizer2::getNFCInstance(err);
  if (U_SUCCESS(err)) {
    icu::UnicodeString normalized = nfc->normalize(u, err);
    if (U_SUCCESS(err)) u = normalized;
  }
  u.toLower(icu::Locale::getRoot());

  std::u32string out;
  out.reserve(static_cast<size_t>(u.length()));
  bool pending_space = false;
  for (int32_t i = 0; i < u.length();) {
    const UChar32 c = u.char32At(i);
    i += U16_LENGTH(c);
    if (IsSpace(static_cast<char32_t>(c))) {
      pending_space = !out.empty();
      continue;
    }
    if (pending_space) out.push_back(U' ');
    pending_space = false;
    out.push_back(static_cast<char32_t>(c));
  }
  return out;
}

}  // namespace imgsearch::model
