// The text stage (imgsearch/ingest.h: TextRecognition) reading files its own way: a worker's,
// through its path maps or over HTTP, as its pipeline reads them.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "imgsearch/ingest.h"
#include "ingest/pipeline.h"

namespace imgsearch::ingest {

// A file's content for the text stage, by its path in the collection (FileContent: a still image's
// bytes whole, a video's read where it lies).
using PathReader = std::function<Result<FileContent>(const std::string& path)>;

// TextRecognition::Start, reading through `read`.
Result<std::unique_ptr<TextRecognition>> StartTextRecognition(Collection* collection, const TextOptions& options,
                                                              PathReader read);

}  // namespace imgsearch::ingest
