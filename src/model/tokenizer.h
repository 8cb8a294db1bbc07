// CLIP's byte-level BPE tokenizer, bit-exact with the reference implementation.
//
// Text is cleaned (clip/text_clean.h), split with CLIP's pattern, each piece mapped byte by byte to
// GPT-2's printable code points, "</w>" appended to its last symbol, and merged by merges.txt rank.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "imgsearch/status.h"

namespace imgsearch::model {

class Tokenizer {
 public:
  // Reads a Hugging Face vocab.json (token → id) and merges.txt (one "a b" pair a line, a
  // "#version" header line allowed).
  static Result<Tokenizer> Load(const std::string& vocab_path, const std::string& merges_path);

  // Builds from parsed data; `merges` in rank order. Needs "<|startoftext|>" and "<|endoftext|>".
  static Result<Tokenizer> FromData(std::unordered_map<std::string, int32_t> vocab,
                                    const std::vector<std::pair<std::string, std::string>>& merges);

  // [SOT] + BPE ids + [EOT], cut to `context_length` with the last id set to EOT.
  std::vector<int32_t> Encode(std::string_view text, int context_length) const;

  // The BPE ids of the cleaned text, without SOT/EOT and without truncation.
  std::vector<int32_t> EncodeRaw(std::string_view text) const;

  // CLIP's pre-tokenisation of already-cleaned text (exposed for tests).
  static std::vector<std::u32string> Split(std::u32string_view cleaned);

  int32_t sot_id() const { return sot_id_; }
  int32_t eot_id() const { return eot_id_; }
  size_t vocab_size() const { return vocab_.size(); }

 private:
  Tokenizer() = default;

  // Appends the ids of one pre-token (already byte-encoded, as UTF-8).
  void Bpe(const std::string& piece, std::vector<int32_t>* ids) const;

  std::unordered_map<std::string, int32_t> vocab_;
  std::unordered_map<std::string, int32_t> merge_rank_;  // "a b" → rank
  std::string byte_symbol_[256];                         // GPT-2 bytes_to_unicode, as UTF-8
  int32_t sot_id_ = -1;
  int32_t eot_id_ = -1;
};

}  // namespace imgsearch::model
