// Where a worker reads a job's file: the path itself, or its place under a mapped prefix (another
// mount point of the same share, or an http(s) URL).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "base/http_client.h"
#include "imgsearch/collection.h"
#include "imgsearch/scaleout.h"
#include "ingest/pipeline.h"

namespace imgsearch::scaleout {

class FileSources {
 public:
  explicit FileSources(std::vector<PathMap> maps);

  // The local path or URL a job's `path` is read from: under the longest matching prefix, else the
  // path itself. URLs get the rest of the path percent-escaped.
  std::string Locate(const std::string& path) const;

  // NotFound: the file is gone. Unavailable: it cannot be reached now (the share is not there,
  // the file server does not answer) and the job should be tried again later.
  Result<ingest::FileContent> Read(const std::string& path, int64_t mtime_ns,
                                   const std::vector<CollectionRoot>& roots) const;

 private:
  // Downloads `url` into a nameless temporary file (in $TMPDIR, else /tmp): an image's bytes are
  // then read into memory, a video stays in the file (far larger than memory, maybe) until the
  // content is dropped.
  Result<ingest::FileContent> Fetch(const std::string& url, const std::string& path, int64_t mtime_ns) const;

  std::vector<PathMap> maps_;
  HttpClient http_;
};

}  // namespace imgsearch::scaleout
