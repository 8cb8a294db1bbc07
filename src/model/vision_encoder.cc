#include <algorithm>
#include <cmath>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "kernels/ops.h"
#include "kernels/resample.h"
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
  ApplyLinear(h.attention.Rows(0, width), h.probe, 1, q.data());
  // Keys and values of every token in one GEMM: rows width..3·width of the fused in-projection.
  std::vector<float> kv(static_cast<size_t>(n_images) * seq_len * 2 * width);
  ApplyLinear(h.attention.Rows(width, 2 * width), x, n_images * seq_len, kv.data());
  std::vector<float> attended(static_cast<size_t>(n_images) * width);
  for (int b = 0; b < n_images; ++b) {
    kernels::AttendOne(q.data(), kv.data() + int64_t{b} * seq_len * 2 * width, attended.data() + int64_t{b} * width,
                       seq_len, width, c.vision.n_head);
  }
  ApplyLinear(h.out, attended.data(), n_images, out);
  std::vector<float> normed(static_cast<size_t>(n_images) * width);
  kernels::LayerNorm(out, h.ln.gamma, h.ln.beta, normed.data(), n_images, width, c.vision.layer_norm_eps);
  std::vector<float> hidden(static_cast<size_t>(n_images) * c.vision.mlp_width);
  ApplyLinear(h.fc1, normed.data(), n_images, hidden.data());
  kernels::Activate(c.vision.activation, hidden.data(), static_cast<int64_t>(hidden.size()));
  ApplyLinear(h.fc2, hidden.data(), n_images, normed.data());
  kernels::AddInPlace(out, normed.data(), int64_t{n_images} * width);
}

// The transformer's buffers for an image batch, kept from batch to batch: allocated anew, tens of
// MB of fresh pages were faulted in and zeroed for every batch (~10 % of the encoder's time,
// measured). Batches borrow them; one set waits for the next batch, whichever thread runs it
// (ingest runs one batch at a time), and sets beyond it are freed when returned.
class ScratchLease {
 public:
  ScratchLease() {
    std::lock_guard<std::mutex> lock(mu_);
    if (pool_.empty()) {
      scratch_ = std::make_unique<BlockScratch>();
    } else {
      scratch_ = std::move(pool_.back());
      pool_.pop_back();
    }
  }
  ~ScratchLease() {
    std::lock_guard<std::mutex> lock(mu_);
    if (pool_.empty()) pool_.push_back(std::move(scratch_));
  }
  ScratchLease(const ScratchLease&) = delete;
  ScratchLease& operator=(const ScratchLease&) = delete;

  BlockScratch* get() { return scratch_.get(); }

 private:
  static inline std::mutex mu_;
  static inline std::vector<std::unique_ptr<BlockScratch>> pool_;  // guarded by mu_; one at most
  std::unique_ptr<BlockScratch> scratch_;
};

// The transformer, then the family's pooling, on n_images sequences of seq_len tokens (x, in place);
// writes n_images normalised embeddings.
void EncodeTokens(const ModelConfig& c, const VisionWeights& w, float* x, int n_images, int seq_len, float* out,
                  BlockScratch* scratch) {
  const int width = c.vision.width;
  const int n_tokens = n_images * seq_len;
  if (w.pre_ln.gamma != nullptr) {
    kernels::LayerNorm(x, w.pre_ln.gamma, w.pre_ln.beta, x, n_tokens, width, c.vision.layer_norm_eps);
  }
  for (const BlockWeights& block : w.blocks) {
    TransformerBlock(block, c.vision, x, n_images, seq_len, /*causal=*/false, scratch);
  }
  if (c.class_token()) {
    // CLIP: post-LayerNorm of each class token, projection.
    std::vector<float> pooled(static_cast<size_t>(n_images) * width);
    for (int b = 0; b < n_images; ++b) {
      kernels::LayerNorm(x + int64_t{b} * seq_len * width, w.post_ln.gamma, w.post_ln.beta,
                         pooled.data() + int64_t{b} * width, 1, width, c.vision.layer_norm_eps);
    }
    ApplyLinear(w.projection, pooled.data(), n_images, out);
  } else {
    // SigLIP: post-LayerNorm of every token, attention pooling.
    kernels::LayerNorm(x, w.post_ln.gamma, w.post_ln.beta, x, n_tokens, width, c.vision.layer_norm_eps);
    AttentionPool(c, w.pool, x, n_images, seq_len, out);
  }
  for (int b = 0; b < n_images; ++b) kernels::L2Normalize(out + int64_t{b} * c.projection_dim, c.projection_dim);
}

// Square images of image_size pixels ([n, 3, size, size]): a convolution's patches, the class token
// where the family has one, the learned positions.
void EncodeSquareImages(const ModelConfig& c, const VisionWeights& w, const float* pixels, int n_images, float* out) {
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
  ApplyLinear(w.patch, cols.data(), n_images * n_patches, patches.data());

  // [class;] patches + positions.
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
  ScratchLease lease;
  EncodeTokens(c, w, x.data(), n_images, seq_len, out, lease.get());
}

// SigLIP 2 NaFlex: each image is its own grid of patches (Normalize's kPatchBudget layout), its
// positions the learned square grid resized to that grid (bilinear, antialiased, as upstream's
// F.interpolate). Upstream pads every image to max_num_patches and masks the padding out of
// attention and pooling; computing each image at its own length gives the same result, so images
// are grouped by patch count and run unpadded.
Status EncodePatchGrids(const ModelConfig& c, const VisionWeights& w, const float* inputs, int64_t input_floats,
                        int n_images, float* out) {
  const int width = c.vision.width;
  const int grid = c.grid();
  const int patch_len = 3 * c.patch_size * c.patch_size;
  const int64_t capacity = (input_floats - 2) / patch_len;
  std::map<int, std::vector<int>> by_length;  // patch count → images
  for (int b = 0; b < n_images; ++b) {
    const float* input = inputs + b * input_floats;
    const float rows = input[0], cols = input[1];
    if (!(rows >= 1 && cols >= 1 && rows * cols <= static_cast<float>(capacity)) || rows != std::floor(rows) ||
        cols != std::floor(cols)) {
      return Status::InvalidArgument("image " + std::to_string(b) + ": a patch grid of " + std::to_string(rows) +
                                     " × " + std::to_string(cols) + " does not fit the model's " +
                                     std::to_string(capacity) + " patches");
    }
    by_length[static_cast<int>(rows) * static_cast<int>(cols)].push_back(b);
  }
  // Passes of at most kMaxTokensPerPass tokens (one image at least), so a large patch budget does
  // not multiply the activations' memory by the batch.
  constexpr int kMaxTokensPerPass = 8192;
  std::vector<std::pair<int, std::vector<int>>> passes;  // patch count, images
  for (const auto& [seq_len, images] : by_length) {
    const size_t per_pass = static_cast<size_t>(std::max(1, kMaxTokensPerPass / seq_len));
    for (size_t first = 0; first < images.size(); first += per_pass) {
      const size_t last = std::min(images.size(), first + per_pass);
      passes.emplace_back(seq_len, std::vector<int>(images.begin() + first, images.begin() + last));
    }
  }
  std::map<std::pair<int, int>, std::vector<float>> positions;  // resized grids, by shape
  ScratchLease lease;
  for (const auto& [seq_len, images] : passes) {
    const int n = static_cast<int>(images.size());
    std::vector<float> patches(static_cast<size_t>(n) * seq_len * patch_len);
    for (int i = 0; i < n; ++i) {
      const float* first = inputs + images[i] * input_floats + 2;
      std::copy(first, first + int64_t{seq_len} * patch_len, patches.data() + int64_t{i} * seq_len * patch_len);
    }
    std::vector<float> x(static_cast<size_t>(n) * seq_len * width);
    ApplyLinear(w.patch, patches.data(), n * seq_len, x.data());
    for (int i = 0; i < n; ++i) {
      const float* input = inputs + images[i] * input_floats;
      const std::pair<int, int> shape{static_cast<int>(input[0]), static_cast<int>(input[1])};
      std::vector<float>& pos = positions[shape];
      if (pos.empty()) {
        pos.resize(static_cast<size_t>(seq_len) * width);
        kernels::ResizeFloats(w.position_embedding, grid, grid, width, shape.first, shape.second,
                              kernels::ResampleKernel::kTriangle, pos.data());
      }
      kernels::AddInPlace(x.data() + int64_t{i} * seq_len * width, pos.data(), int64_t{seq_len} * width);
    }
    std::vector<float> pooled(static_cast<size_t>(n) * c.projection_dim);
    EncodeTokens(c, w, x.data(), n, seq_len, pooled.data(), lease.get());
    for (int i = 0; i < n; ++i) {
      std::copy_n(pooled.data() + int64_t{i} * c.projection_dim, c.projection_dim,
                  out + int64_t{images[i]} * c.projection_dim);
    }
  }
  return Status::Ok();
}

}  // namespace

Status EncodeImageBatch(const ModelConfig& c, const VisionWeights& w, const float* inputs, int64_t input_floats,
                        int n_images, float* out) {
  if (c.naflex) return EncodePatchGrids(c, w, inputs, input_floats, n_images, out);
  if (input_floats != 3 * int64_t{c.image_size} * c.image_size) {
    return Status::InvalidArgument("images of " + std::to_string(input_floats) + " floats for a model that takes " +
                                   std::to_string(c.image_size) + " × " + std::to_string(c.image_size) + " pixels");
  }
  EncodeSquareImages(c, w, inputs, n_images, out);
  return Status::Ok();
}

}  // namespace imgsearch::model
