// Paths as every layer and the command line share them: a folder's normal form, "is this under that folder", where a
// path really leads, and the per-user folders imgsearch keeps its caches in.
#pragma once

#include <string>

namespace imgsearch {

// Absolute, lexically normal, without a trailing slash ("./photos/" → "/home/me/photos").
std::string NormalisePath(const std::string& path);

// True when `path` is `folder` or lies below it (both normalised).
bool IsUnder(const std::string& path, const std::string& folder);

// Where `path` leads, every link followed; empty when it cannot be resolved (gone, unreadable).
std::string RealPath(const std::string& path);

// $XDG_CACHE_HOME/imgsearch/NAME, else ~/.cache/imgsearch/NAME (/tmp/.cache/… without a home).
std::string CacheDir(const std::string& name);

}  // namespace imgsearch
