#include "search/query_encoder.h"

#include <algorithm>

namespace imgsearch::search {

namespace {

constexpr int kMaxImageBatch = 16;

}  // namespace

QueryEncoder::QueryEncoder(const ClipModel& model, const TextModel* text_model, int max_text_batch,
                           size_t cache_entries)
    : model_(model),
      text_model_(text_model),
      max_text_batch_(std::max(1, max_text_batch)),
      cache_entries_(cache_entries) {
  worker_ = std::thread([this] { Run(); });
}

QueryEncoder::~QueryEncoder() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  worker_.join();
}

Result<std::vector<float>> QueryEncoder::EncodeText(const std::string& text) {
  std::future<Result<std::vector<float>>> result;
  {
    std::lock_guard<std::mutex> lock(mu_);
    ++stats_.texts;
    std::vector<float> cached;
    if (CacheLookup(text, &cached)) {
      ++stats_.cache_hits;
      return cached;
    }
    if (stopping_) return Status::Internal("the query encoder is shutting down");
    texts_.push_back(TextJob{text, {}});
    result = texts_.back().done.get_future();
  }
  cv_.notify_one();
  return result.get();
}

Result<std::vector<float>> QueryEncoder::EncodeImage(const Image& image) {
  const Preprocessing& pre = model_.preprocessing();
  ImageJob job;
  job.pixels.resize(static_cast<size_t>(pre.input_floats()));
  Normalize(ResizeForModel(image, pre), pre, job.pixels.data());
  std::future<Result<std::vector<float>>> result = job.done.get_future();
  {
    std::lock_guard<std::mutex> lock(mu_);
    ++stats_.images;
    if (stopping_) return Status::Internal("the query encoder is shutting down");
    images_.push_back(std::move(job));
  }
  cv_.notify_one();
  return result.get();
}

SearcherStats QueryEncoder::Stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  return stats_;
}

void QueryEncoder::Run() {
  while (true) {
    std::vector<TextJob> texts;
    std::vector<ImageJob> images;
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [&] { return stopping_ || !texts_.empty() || !images_.empty(); });
      if (texts_.empty() && images_.empty()) return;  // stopping, nothing left
      // Everything waiting goes into this round, up to the batch limits; the rest waits for the next.
      const size_t n_texts = std::min(texts_.size(), static_cast<size_t>(max_text_batch_));
      std::move(texts_.begin(), texts_.begin() + static_cast<ptrdiff_t>(n_texts), std::back_inserter(texts));
      texts_.erase(texts_.begin(), texts_.begin() + static_cast<ptrdiff_t>(n_texts));
      const size_t n_images = std::min(images_.size(), static_cast<size_t>(kMaxImageBatch));
      std::move(images_.begin(), images_.begin() + static_cast<ptrdiff_t>(n_images), std::back_inserter(images));
      images_.erase(images_.begin(), images_.begin() + static_cast<ptrdiff_t>(n_images));
    }
    if (!texts.empty()) RunTexts(&texts);
    if (!images.empty()) RunImages(&images);
  }
}

void QueryEncoder::RunTexts(std::vector<TextJob>* jobs) {
  // The same text asked by several requests at once is encoded once.
  std::vector<std::string> unique;
  std::vector<size_t> slot(jobs->size());
  {
    std::unordered_map<std::string, size_t> seen;
    for (size_t i = 0; i < jobs->size(); ++i) {
      auto [it, inserted] = seen.emplace((*jobs)[i].text, unique.size());
      if (inserted) unique.push_back((*jobs)[i].text);
      slot[i] = it->second;
    }
  }
  const int dim = text_model_ ? text_model_->embedding_dim() : model_.embedding_dim();
  std::vector<float> out(unique.size() * dim);
  const Status status =
      text_model_ ? text_model_->EncodeTexts(unique, out.data()) : model_.EncodeTexts(unique, out.data());
  {
    std::lock_guard<std::mutex> lock(mu_);
    ++stats_.text_batches;
    stats_.largest_batch = std::max<int64_t>(stats_.largest_batch, static_cast<int64_t>(unique.size()));
    if (status.ok()) {
      for (size_t u = 0; u < unique.size(); ++u) {
        CacheInsert(unique[u], std::vector<float>(out.begin() + u * dim, out.begin() + (u + 1) * dim));
      }
    }
  }
  for (size_t i = 0; i < jobs->size(); ++i) {
    if (!status.ok()) {
      (*jobs)[i].done.set_value(status);
    } else {
      const auto row = out.begin() + slot[i] * dim;
      (*jobs)[i].done.set_value(std::vector<float>(row, row + dim));
    }
  }
}

void QueryEncoder::RunImages(std::vector<ImageJob>* jobs) {
  const size_t image_floats = (*jobs)[0].pixels.size();
  std::vector<float> pixels(jobs->size() * image_floats);
  for (size_t i = 0; i < jobs->size(); ++i) {
    std::copy((*jobs)[i].pixels.begin(), (*jobs)[i].pixels.end(), pixels.begin() + i * image_floats);
  }
  const int dim = model_.embedding_dim();
  std::vector<float> out(jobs->size() * dim);
  const Status status = model_.EncodeImages(pixels.data(), static_cast<int>(jobs->size()), out.data());
  {
    std::lock_guard<std::mutex> lock(mu_);
    ++stats_.image_batches;
  }
  for (size_t i = 0; i < jobs->size(); ++i) {
    if (!status.ok()) {
      (*jobs)[i].done.set_value(status);
    } else {
      (*jobs)[i].done.set_value(std::vector<float>(out.begin() + i * dim, out.begin() + (i + 1) * dim));
    }
  }
}

bool QueryEncoder::CacheLookup(const std::string& text, std::vector<float>* out) {
  auto it = cache_.find(text);
  if (it == cache_.end()) return false;
  lru_.splice(lru_.begin(), lru_, it->second);
  *out = it->second->second;
  return true;
}

void QueryEncoder::CacheInsert(const std::string& text, const std::vector<float>& embedding) {
  if (cache_entries_ == 0 || cache_.count(text) != 0) return;
  lru_.emplace_front(text, embedding);
  cache_[text] = lru_.begin();
  if (lru_.size() > cache_entries_) {
    cache_.erase(lru_.back().first);
    lru_.pop_back();
  }
}

}  // namespace imgsearch::search
