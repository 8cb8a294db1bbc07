// Text that comes from outside (file names, request fields) is bytes: these tell whether it is
// UTF-8 and show it safely where text is needed.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace imgsearch {

// True when `text` is well-formed UTF-8 (no overlong forms, surrogates or code points past U+10FFFF).
bool IsValidUtf8(std::string_view text);

// Unicode characters in `text`; each byte of an invalid sequence counts as one.
size_t Utf8Length(std::string_view text);

// `text` safe to print or put in a message: valid UTF-8 kept, control characters and invalid bytes
// written as \n, \t, \xNN (a backslash as \\), cut after `max_chars` characters with "…" (0: no limit).
std::string EscapeForDisplay(std::string_view text, size_t max_chars = 0);

}  // namespace imgsearch
