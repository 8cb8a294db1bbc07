#include <algorithm>
#include <vector>

#include "kernels/ops.h"
#include "model/encoders.h"
#include "model/transformer.h"

namespace imgsearch::model {

namespace {

Status CheckIds(const ModelConfig& c, std::span<const int32_t> ids) {
  if (ids.empty()) return Status::InvalidArgument("empty token sequence");
  if (ids.size() > static_cast<size_t>(c.text.n_positions)) {
    return Status::InvalidArgument("token sequence of " + std::to_string(ids.size()) + " exceeds the context of " +
                                   std::to_string(c.text.n_positions));
  }
  for (int32_t id : ids) {
    if (id < 0 || id >= c.vocab_size) {
      return Status::InvalidArgument("token id " + std::to_string(id) + " is outside the vocabulary of " +
                                     std::to_string(c.vocab_size));
    }
  }
  return Status::Ok();
}

// The position whose hidden state is pooled. CLIP: the first occurrence of the highest id (the
// EOT). SigLIP: the last position (the padding is attended to, as upstream does, without a mask).
int PooledPosition(const ModelConfig& c, std::span<const int32_t> ids) {
  if (c.family == Family::kSiglip) return static_cast<int>(ids.size()) - 1;
  return static_cast<int>(std::max_element(ids.begin(), ids.end()) - ids.begin());
}

// Runs the sequences `group` (indices into `seqs`) as one batch padded to `seq_len` tokens. CLIP's
// padding goes after each EOT, where the causal mask keeps it from influencing anything that is
// pooled; SigLIP's groups hold sequences of one length, so there is none.
void EncodeGroup(const ModelConfig& c, const TextWeights& w, std::span<const std::span<const int32_t>> seqs,
                 std::span<const int> group, int seq_len, float* out, BlockScratch* scratch) {
  const int width = c.text.width;
  const int n = static_cast<int>(group.size());
  std::vector<float> x(static_cast<size_t>(n) * seq_len * width);
  for (int b = 0; b < n; ++b) {
    std::span<const int32_t> ids = seqs[group[b]];
    for (int t = 0; t < seq_len; ++t) {
      const int32_t id = t < static_cast<int>(ids.size()) ? ids[t] : 0;
      const float* tok = w.token_embedding + int64_t{id} * width;
      const float* pos = w.position_embedding + int64_t{t} * width;
      float* row = x.data() + (int64_t{b} * seq_len + t) * width;
      for (int i = 0; i < width; ++i) row[i] = tok[i] + pos[i];
    }
  }
  for (const BlockWeights& block : w.blocks) {
    TransformerBlock(block, c.text, x.data(), n, seq_len, /*causal=*/c.family == Family::kClip, scratch);
  }
  std::vector<float> pooled(static_cast<size_t>(n) * width);
  for (int b = 0; b < n; ++b) {
    const int pooled_at = PooledPosition(c, seqs[group[b]]);
    kernels::LayerNorm(x.data() + (int64_t{b} * seq_len + pooled_at) * width, w.final_ln.gamma, w.final_ln.beta,
                       pooled.data() + int64_t{b} * width, 1, width, c.text.layer_norm_eps);
  }
  std::vector<float> projected(static_cast<size_t>(n) * c.projection_dim);
  ApplyLinear(w.projection, pooled.data(), n, projected.data());
  for (int b = 0; b < n; ++b) {
    float* dst = out + int64_t{group[b]} * c.projection_dim;
    std::copy_n(projected.data() + int64_t{b} * c.projection_dim, c.projection_dim, dst);
    kernels::L2Normalize(dst, c.projection_dim);
  }
}

}  // namespace

Status EncodeTextBatch(const ModelConfig& c, const TextWeights& w, std::span<const std::span<const int32_t>> seqs,
                       float* out) {
  for (std::span<const int32_t> ids : seqs) RETURN_IF_ERROR(CheckIds(c, ids));
  // CLIP's sequences are computed up to their EOT only, grouped by that length so that little
  // padding is computed: a group closes when the next sequence is more than a quarter longer than
  // its first. SigLIP's attend both ways, so a group holds one length only.
  std::vector<int> order(seqs.size());
  std::vector<int> lengths(seqs.size());
  for (size_t i = 0; i < seqs.size(); ++i) {
    order[i] = static_cast<int>(i);
    lengths[i] = PooledPosition(c, seqs[i]) + 1;
  }
  std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return lengths[a] < lengths[b]; });
  BlockScratch scratch;
  for (size_t begin = 0; begin < order.size();) {
    size_t end = begin + 1;
    const int slack = c.family == Family::kClip ? 5 : 4;
    while (end < order.size() && lengths[order[end]] * 4 <= lengths[order[begin]] * slack) ++end;
    const int seq_len = lengths[order[end - 1]];
    EncodeGroup(c, w, seqs, std::span<const int>(order).subspan(begin, end - begin), seq_len, out, &scratch);
    begin = end;
  }
  return Status::Ok();
}

}  // namespace imgsearch::model
