// Embeds the queries of concurrent requests together: texts that arrive while the model is busy
// are encoded in one batch (one set of matrix products for all of them) instead of one after
// another behind a lock; uploaded images likewise. Recent texts are answered from a cache.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <future>
#include <list>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "imgsearch/clip.h"
#include "imgsearch/image.h"
#include "imgsearch/search.h"
#include "imgsearch/text_model.h"

namespace imgsearch::search {

class QueryEncoder {
 public:
  // Texts go through `text_model` when given (a text tower into `model`'s space), else `model`.
  QueryEncoder(const ClipModel& model, const TextModel* text_model, int max_text_batch, size_t cache_entries);
  ~QueryEncoder();
  QueryEncoder(const QueryEncoder&) = delete;
  QueryEncoder& operator=(const QueryEncoder&) = delete;

  // Blocks until the embedding is ready.
  Result<std::vector<float>> EncodeText(const std::string& text);
  // `image` is any decoded image; it is resized and cropped for the model here, by the caller's thread.
  Result<std::vector<float>> EncodeImage(const Image& image);
  const Preprocessing& preprocessing() const { return model_.preprocessing(); }

  SearcherStats Stats() const;

 private:
  struct TextJob {
    std::string text;
    std::promise<Result<std::vector<float>>> done;
  };
  struct ImageJob {
    std::vector<float> pixels;
    std::promise<Result<std::vector<float>>> done;
  };

  void Run();
  void RunTexts(std::vector<TextJob>* jobs);
  void RunImages(std::vector<ImageJob>* jobs);
  bool CacheLookup(const std::string& text, std::vector<float>* out);
  void CacheInsert(const std::string& text, const std::vector<float>& embedding);

  const ClipModel& model_;
  const TextModel* const text_model_;
  const int max_text_batch_;
  const size_t cache_entries_;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::vector<TextJob> texts_;
  std::vector<ImageJob> images_;
  bool stopping_ = false;
  SearcherStats stats_;
  // LRU: most recent at the front.
  std::list<std::pair<std::string, std::vector<float>>> lru_;
  std::unordered_map<std::string, decltype(lru_)::iterator> cache_;

  std::thread worker_;
};

}  // namespace imgsearch::search
