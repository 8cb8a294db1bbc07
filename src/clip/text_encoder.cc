#include <algorithm>
#include <vector>

#include "clip/encoders.h"
#include "clip/transformer.h"
#include "kernels/ops.h"

namespace imgsearch::clip {

Status EncodeText(const ClipConfig& c, const TextWeights& w, std::span<const int32_t> ids, float* out) {
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
  // The pooled output is the hidden state at the first occurrence of the highest id (the EOT).
  const int eot_pos = static_cast<int>(std::max_element(ids.begin(), ids.end()) - ids.begin());
  const int n_tokens = eot_pos + 1;
  const int width = c.text.width;

  std::vector<float> x(static_cast<size_t>(n_tokens) * width);
  for (int t = 0; t < n_tokens; ++t) {
    const float* tok = w.token_embedding + int64_t{ids[t]} * width;
    const float* pos = w.position_embedding + int64_t{t} * width;
    float* row = x.data() + int64_t{t} * width;
    for (int i = 0; i < width; ++i) row[i] = tok[i] + pos[i];
  }
  BlockScratch scratch;
  for (const BlockWeights& block : w.blocks) {
    TransformerBlock(block, c.text, x.data(), 1, n_tokens, /*causal=*/true, &scratch);
  }
  std::vector<float> pooled(static_cast<size_t>(width));
  kernels::LayerNorm(x.data() + int64_t{eot_pos} * width, w.final_ln.gamma, w.final_ln.beta, pooled.data(), 1, width,
                     c.text.layer_norm_eps);
  ApplyLinear(w.projection, pooled.data(), 1, out);
  kernels::L2Normalize(out, c.projection_dim);
  return Status::Ok();
}

}  // namespace imgsearch::clip
