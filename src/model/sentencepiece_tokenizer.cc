// SigLIP's, SigLIP 2's and XLM-RoBERTa's tokenizers over libsentencepiece, as Hugging Face's slow
// SiglipTokenizer, GemmaTokenizer and XLMRobertaTokenizer run them (transformers 4.50):
//   1. SigLIP only: "▁" + text (any "▁" in it becomes a space), each character lower-cased
//      (do_lower_case).
//   2. The text is split around the added tokens of tokenizer_config.json (</s>, Gemma's <eos>,
//      <pad>, … typed literally become their ids); each piece between them goes through
//      SentencePiece.
//   3. SigLIP canonicalises each piece (ASCII punctuation removed, runs of whitespace made one
//      space, stripped), loads spiece.model with add_dummy_prefix turned off and encodes "<unk>" +
//      piece, dropping the ids "<unk>" alone encodes to: that keeps SentencePiece from treating the
//      piece's start as the start of the text; a leading "▁" before an added token is dropped.
//      Gemma encodes each piece as is.
//   4. Cut to context − 1 ids, EOS appended (SigLIP: unless already last), padded to the context
//      (SigLIP pads with </s>, Gemma with <pad>).
// XLM-RoBERTa: each piece's SentencePiece id + 1 (fairseq's <s> <pad> </s> <unk> take 0-3; the
// model's own unknown becomes 3), wrapped as <s> … </s>, not padded.
#include <sentencepiece_processor.h>

#include <algorithm>

#include <nlohmann/json.hpp>

#include "base/file.h"
#include "model/text_clean.h"
#include "model/text_tokenizer.h"

namespace imgsearch::model {

namespace {

// NormalizerSpec { add_dummy_prefix: false } as a ModelProto field: protobuf merges a repeated
// message field, so appending it to the serialised model overrides the flag.
constexpr char kNoDummyPrefix[] = {0x1a, 0x02, 0x18, 0x00};

// XLM-RoBERTa's fairseq dictionary: <s> 0, <pad> 1, </s> 2, <unk> 3, then SentencePiece's ids + 1.
constexpr int32_t kXlmrBos = 0, kXlmrEos = 2, kXlmrUnk = 3, kFairseqOffset = 1;

constexpr std::u32string_view kAsciiPunctuation = U"!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~";

// Python: text.translate(remove string.punctuation); re.sub(r"\s+", " ", ·); strip().
std::u32string CanonicalizeForSiglip(std::u32string_view text) {
  std::u32string out;
  bool pending_space = false;
  for (char32_t c : text) {
    if (kAsciiPunctuation.find(c) != std::u32string_view::npos) continue;
    if (IsSpace(c)) {
      pending_space = !out.empty();
      continue;
    }
    if (pending_space) out.push_back(U' ');
    pending_space = false;
    out.push_back(c);
  }
  return out;
}

class SentencePieceTokenizer final : public TextTokenizer {
 public:
  SentencePieceTokenizer(TokenizerKind kind, int context_length) : kind_(kind), context_length_(context_length) {}

  Status Load(const ModelFiles& files) {
    ASSIGN_OR_RETURN(std::string proto, ReadFileText(files.sentencepiece, 64u << 20));
    if (kind_ == TokenizerKind::kSiglipUnigram) proto.append(kNoDummyPrefix, sizeof(kNoDummyPrefix));
    const auto status = sp_.LoadFromSerializedProto(proto);
    if (!status.ok()) {
      return Status::Corruption(files.sentencepiece + ": not a SentencePiece model (" + status.ToString() + ")");
    }
    RETURN_IF_ERROR(ReadConfig(files));
    AddDefaultSpecialTokens();
    if (kind_ == TokenizerKind::kXlmrUnigram) return Status::Ok();  // fairseq's fixed ids
    const char* eos = kind_ == TokenizerKind::kSiglipUnigram ? "</s>" : "<eos>";
    const char* pad = kind_ == TokenizerKind::kSiglipUnigram ? "</s>" : "<pad>";
    eos_id_ = PieceId(eos);
    pad_id_ = PieceId(pad);
    if (eos_id_ < 0 || pad_id_ < 0) {
      return Status::InvalidArgument(files.sentencepiece + " has no " + (eos_id_ < 0 ? eos : pad) + " piece");
    }
    if (kind_ == TokenizerKind::kSiglipUnigram) {
      std::vector<int> unk_ids;
      sp_.Encode("<unk>", &unk_ids).IgnoreError();
      unk_prefix_length_ = unk_ids.size();
      underline_id_ = sp_.PieceToId("\u2581");
    }
    return Status::Ok();
  }

  std::vector<int32_t> Encode(std::string_view text) const override {
    std::u32string u = ToUtf32(text);
    if (kind_ == TokenizerKind::kSiglipUnigram) {
      std::replace(u.begin(), u.end(), U'\u2581', U' ');
      u = U"\u2581" + u;
      if (lower_case_) u = LowerEachCharacter(u);
    }
    std::vector<int32_t> ids;
    size_t first_added = std::string::npos;  // position of the first added token's id
    SplitOnAddedTokens(
        added_, u, [&](std::u32string_view piece) { EncodePiece(piece, &ids); },
        [&](int32_t id) {
          if (first_added == std::string::npos) first_added = ids.size();
          ids.push_back(id);
        });
    // SiglipTokenizer.tokenize: a lone "▁" right before an added token is dropped.
    if (kind_ == TokenizerKind::kSiglipUnigram && first_added == 1 && ids[0] == underline_id_) {
      ids.erase(ids.begin());
    }
    if (kind_ == TokenizerKind::kXlmrUnigram) {
      if (ids.size() > static_cast<size_t>(context_length_ - 2)) ids.resize(context_length_ - 2);
      ids.insert(ids.begin(), kXlmrBos);
      ids.push_back(kXlmrEos);
      return ids;
    }
    if (ids.size() > static_cast<size_t>(context_length_ - 1)) ids.resize(context_length_ - 1);
    // SiglipTokenizer adds EOS only when absent; GemmaTokenizer always does.
    if (kind_ == TokenizerKind::kGemmaBpe || ids.empty() || ids.back() != eos_id_) ids.push_back(eos_id_);
    ids.resize(context_length_, pad_id_);
    return ids;
  }

  int32_t id_limit() const override {
    int32_t limit = sp_.GetPieceSize() + (kind_ == TokenizerKind::kXlmrUnigram ? kFairseqOffset : 0);
    for (const AddedToken& t : added_) limit = std::max(limit, t.id + 1);
    return limit;
  }

  bool pads() const override { return kind_ != TokenizerKind::kXlmrUnigram; }

 private:
  int32_t PieceId(const char* piece) const {
    for (const AddedToken& t : added_) {
      if (t.content == ToUtf32(piece)) return t.id;
    }
    const int id = sp_.PieceToId(piece);
    return id == sp_.unk_id() && std::string_view(piece) != "<unk>" ? -1 : id;
  }

  Status ReadConfig(const ModelFiles& files) {
    lower_case_ = kind_ == TokenizerKind::kSiglipUnigram;  // SiglipTokenizer's default
    if (files.tokenizer_config.empty()) return Status::Ok();
    ASSIGN_OR_RETURN(std::string text, ReadFileText(files.tokenizer_config, 16u << 20));
    const nlohmann::json j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
    if (!j.is_object()) return Status::Corruption(files.tokenizer_config + ": expected a JSON object");
    // GemmaTokenizer stores do_lower_case but never applies it; SiglipTokenizer applies it.
    if (auto it = j.find("do_lower_case");
        it != j.end() && it->is_boolean() && kind_ == TokenizerKind::kSiglipUnigram) {
      lower_case_ = it->get<bool>();
    }
    ASSIGN_OR_RETURN(added_, ReadAddedTokens(j, files.tokenizer_config));
    return Status::Ok();
  }

  // The family's special tokens when tokenizer_config.json lists none (older repositories): they
  // are never split, as upstream's tokenizers declare them.
  void AddDefaultSpecialTokens() {
    if (!added_.empty()) return;
    if (kind_ == TokenizerKind::kXlmrUnigram) {
      const std::pair<const char32_t*, int32_t> fixed[] = {
          {U"<s>", kXlmrBos}, {U"<pad>", 1}, {U"</s>", kXlmrEos}, {U"<unk>", kXlmrUnk}};
      for (const auto& [content, id] : fixed) added_.push_back({content, id, false, false});
      added_.push_back({U"<mask>", sp_.GetPieceSize() + kFairseqOffset, /*lstrip=*/true, false});
    } else {
      const bool siglip = kind_ == TokenizerKind::kSiglipUnigram;
      for (const char* piece : siglip ? std::vector<const char*>{"</s>", "<unk>"}
                                      : std::vector<const char*>{"<pad>", "<eos>", "<bos>", "<unk>"}) {
        const int id = sp_.PieceToId(piece);
        if (id >= 0 && sp_.IdToPiece(id) == piece) added_.push_back({ToUtf32(piece), id, siglip, siglip});
      }
    }
    std::stable_sort(added_.begin(), added_.end(),
                     [](const AddedToken& a, const AddedToken& b) { return a.content.size() > b.content.size(); });
  }

  void EncodePiece(std::u32string_view piece, std::vector<int32_t>* ids) const {
    std::vector<int> out;
    if (kind_ == TokenizerKind::kSiglipUnigram) {
      sp_.Encode("<unk>" + ToUtf8(CanonicalizeForSiglip(piece)), &out).IgnoreError();
      const size_t drop = std::min(out.size(), unk_prefix_length_);
      ids->insert(ids->end(), out.begin() + static_cast<std::ptrdiff_t>(drop), out.end());
    } else if (kind_ == TokenizerKind::kXlmrUnigram) {
      sp_.Encode(ToUtf8(piece), &out).IgnoreError();
      for (int id : out) ids->push_back(id == sp_.unk_id() ? kXlmrUnk : id + kFairseqOffset);
    } else {
      sp_.Encode(ToUtf8(piece), &out).IgnoreError();
      ids->insert(ids->end(), out.begin(), out.end());
    }
  }

  TokenizerKind kind_;
  int context_length_;
  sentencepiece::SentencePieceProcessor sp_;
  std::vector<AddedToken> added_;
  bool lower_case_ = false;
  int32_t eos_id_ = -1;
  int32_t pad_id_ = -1;
  size_t unk_prefix_length_ = 0;
  int32_t underline_id_ = -1;  // SigLIP's "▁" piece
};

}  // namespace

Result<std::unique_ptr<TextTokenizer>> LoadSentencePieceTokenizer(const ModelFiles& files, int context_length) {
  auto tokenizer = std::make_unique<SentencePieceTokenizer>(files.tokenizer, context_length);
  RETURN_IF_ERROR(tokenizer->Load(files));
  return std::unique_ptr<TextTokenizer>(std::move(tokenizer));
}

}  // namespace imgsearch::model
