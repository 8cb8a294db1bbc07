// Showing file names, which are bytes, the same way everywhere. In JSON (the HTTP API, the command
// line's --json) without loss: valid UTF-8 as "path"; any other bytes escaped for reading in "path"
// and exact, base64, in "path_bytes". On a terminal: escaped, so that a newline or an escape
// sequence in a name can neither forge a line nor reach the terminal.
#pragma once

#include <nlohmann/json.hpp>

#include <string>

namespace imgsearch {

void AddPath(nlohmann::json* object, const std::string& path);

// `text` (a path, or a message quoting one) with control characters and invalid bytes written as
// \n, \t, \xNN.
std::string ForTerminal(const std::string& text);

// JSON text of `value`. Text that is not UTF-8 outside paths (a reason quoting a file name) is
// replaced rather than failing the output.
std::string DumpJson(const nlohmann::json& value);

}  // namespace imgsearch
