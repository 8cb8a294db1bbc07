#include <vector>

#include "kernels/ops.h"
#include "model/encoders.h"
#include "model/transformer.h"

namespace imgsearch::model {

namespace {

// Lays each patch out as one row of [3, p, p] values, the order of the convolution's weights, so
// the stride-p convolution becomes one GEMM.
void Im2Col(const float* image, int image_size, int patch, float* rows) {
  const int grid = image_size / patch;
  const int64_t plane = int64_t{image_size} * image_size;
  for (int py = 0; py < grid; ++py) {
    for (int px = 0; px < grid; ++px) {
      float* row = rows + (int64_t{py} * grid + px) * 3 * patch * patch;
      for (int ch = 0; ch < 3; ++ch) {
        for (int ky = 0; ky < patch; ++ky) {
          const float* src = image + ch * plane + int64_t{py * patch + ky} * image_size + px * patch;
          std::copy(src, src + patch, row);
          row += patch;
        }
      }
    }
  }
}

// SigLIP's head: the probe's query attends over each image's tokens; then x + mlp(ln(x)).
void AttentionPool(const ModelConfig& c, const AttentionPoolWeights& h, const float* x, int n_images, int seq_len,
                   float* out) {
  const int width = c.vision.width;
  std::vector<float> q(static_cast<size_t>(width));
  const LinearWeights q_proj{h.attention.weight, h.attention.bias, width, width};
  ApplyLinear(q_proj, h.probe, 1, q.data());
  // Keys and values of every token in one GEMM: rows width..3·width of the fused in-projection.
  const LinearWeights kv_proj{h.attention.weight + int64_t{width} * width, h.attention.bias + width, width, 2 * width};
  std::vector<float> kv(static_cast<size_t>(n_images) * seq_len * 2 * width);
  ApplyLinear(kv_proj, x, n_images * seq_len, kv.data());
  std::vector<float> attended(static_cast<size_t>(n_images) * width);
  std::vector<float> scratch(static_cast<size_t>(seq_len));
  for (int b = 0; b < n_images; ++b) {
    kernels::AttendOne(q.data(), kv.data() + int64_t{b} * seq_len * 2 * width, attended.data() + int64_t{b} * width,
                       seq_len, width, c.vision.n_head, scratch.data());
  }
  ApplyLinear(h.out, attended.data(), n_images, out);
  std::vector<float> normed(static_cast<size_t>(n_images) * width);
  kernels::LayerNorm(out, h.ln.gamma, h.ln.beta, normed.data(), n_images, width, c.vision.layer_norm_eps);
  std::vector<float> hidden(static_cast<size_t>(n_images) * c.vision.mlp_width);
  ApplyLinear(h.fc1, normed.data(), n_images, hidden.data());
  ApplyActivation(c.vision.activation, hidden.data(), static_cast<int64_t>(hidden.size()));
  ApplyLinear(h.fc2, hidden.data(), n_images, normed.data());
  kernels::AddInPlace(out, normed.data(), int64_t{n_images} * width);
}

}  // namespace

void EncodeImageBatch(const ModelConfig& c, const VisionWeights& w, const float* pixels, int n_images, float* out) {
  const int width = c.vision.width;
  const int grid = c.grid();
  const int n_patches = grid * grid;
  const int first_patch = c.class_token() ? 1 : 0;
  const int seq_len = n_patches + first_patch;
  const int patch_len = 3 * c.patch_size * c.patch_size;
  const int64_t image_floats = 3 * int64_t{c.image_size} * c.image_size;

  // Patch embedding: [n·patches, 3p²] · [width, 3p²]ᵀ (+ bias).
  std::vector<float> cols(static_cast<size_t>(n_images) * n_patches * patch_len);
  for (int b = 0; b < n_images; ++b) {
    Im2Col(pixels + b * image_floats, c.image_size, c.patch_size, cols.data() + int64_t{b} * n_patches * patch_len);
  }
  std::vector<float> patches(static_cast<size_t>(n_images) * n_patches * width);
  LinearWeights patch_linear{w.patch_embedding, w.patch_bias, patch_len, width};
  ApplyLinear(patch_linear, cols.data(), n_images * n_patches, patches.data());

  // [class;] patches + positions, then CLIP's pre-LayerNorm.
  std::vector<float> x(static_cast<size_t>(n_images) * seq_len * width);
  for (int b = 0; b < n_images; ++b) {
    float* seq = x.data() + int64_t{b} * seq_len * width;
    for (int t = 0; t < seq_len; ++t) {
      const float* src =
          t < first_patch ? w.class_embedding : patches.data() + (int64_t{b} * n_patches + t - first_patch) * width;
      const float* pos = w.position_embedding + int64_t{t} * width;
      float* row = seq + int64_t{t} * width;
      for (int i = 0; i < width; ++i) row[i] = src[i] + pos[i];
    }
  }
  const int n_tokens = n_images * seq_len;
  if (w.pre_ln.gamma != nullptr) {
    kernels::LayerNorm(x.data(), w.pre_ln.gamma, w.pre_ln.beta, x.data(), n_tokens, width, c.vision.layer_norm_eps);
  }

  BlockScratch scratch;
  for (const BlockWeights& block : w.blocks) {
    TransformerBlock(block, c.vision, x.data(), n_images, seq_len, /*causal=*/false, &scratch);
  }

  if (c.class_token()) {
    // CLIP: post-LayerNorm of each class token, projection.
    std::vector<float> pooled(static_cast<size_t>(n_images) * width);
    for (int b = 0; b < n_images; ++b) {
      kernels::LayerNorm(x.data() + int64_t{b} * seq_len * width, w.post_ln.gamma, w.post_ln.beta,
                         pooled.data() + int64_t{b} * width, 1, width, c.vision.layer_norm_eps);
    }
    ApplyLinear(w.projection, pooled.data(), n_images, out);
  } else {
    // SigLIP: post-LayerNorm of every token, attention pooling.
    kernels::LayerNorm(x.data(), w.post_ln.gamma, w.post_ln.beta, x.data(), n_tokens, width, c.vision.layer_norm_eps);
    AttentionPool(c, w.pool, x.data(), n_images, seq_len, out);
  }
  for (int b = 0; b < n_images; ++b) kernels::L2Normalize(out + int64_t{b} * c.projection_dim, c.projection_dim);
}

}  // namespace imgsearch::model
