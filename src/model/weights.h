// The checkpoint's tensors, named as Hugging Face's CLIPModel and SiglipModel name them.
//
// F32 tensors point straight into the memory-mapped file; F16 and BF16 ones are widened to F32
// once at load, where every tensor's shape is checked. A tower is readied for the GEMMs at its first
// use (TensorStore::Prepare): q/k/v fused into one [3·width, width] matrix per layer, the layers
// converted to bfloat16 or int8 where asked, and packed; private copies then, the mapped pages
// dropped. A tower never used costs no memory beyond its mapped file. (A widened checkpoint at bf16
// or int8 is readied at load instead: its fp32 copy, larger than those forms, is not kept until a
// first use that may never come.)
#pragma once

#include <array>
#include <cassert>
#include <cstddef>
#include <deque>
#include <functional>
#include <initializer_list>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "kernels/gemm.h"
#include "model/checkpoint.h"
#include "model/config.h"

namespace imgsearch::model {

// A layer's weights in one of three forms: fp32, or in their place bfloat16 or int8; each either
// in [out, in] rows or packed for the GEMM (`layout`).
struct LinearWeights {
  const float* weight = nullptr;                    // [out, in]; null once replaced by weight_bf16 or weight_s8
  const uint16_t* weight_bf16 = nullptr;            // [out, in] in bfloat16, for the bf16 precision
  const int8_t* weight_s8 = nullptr;                // [out, in] in int8 (kernels::QuantizeInt8), for int8
  kernels::Layout layout = kernels::Layout::kRows;  // kPacked: the weights above are packed (PackWeights)
  const float* weight_scale = nullptr;              // [out]: weight ≈ weight_s8 · weight_scale
  const int32_t* weight_sum = nullptr;              // [out]: Σ weight_s8 over in
  const float* bias = nullptr;                      // [out] or null
  int in = 0;
  int out = 0;

  // Output features [first, first + count): rows of the weights and the bias (weights in rows).
  LinearWeights Rows(int first, int count) const {
    assert(layout == kernels::Layout::kRows);
    const int64_t offset = int64_t{first} * in;
    LinearWeights r = *this;
    r.weight = weight != nullptr ? weight + offset : nullptr;
    r.weight_bf16 = weight_bf16 != nullptr ? weight_bf16 + offset : nullptr;
    r.weight_s8 = weight_s8 != nullptr ? weight_s8 + offset : nullptr;
    r.weight_scale = weight_scale != nullptr ? weight_scale + first : nullptr;
    r.weight_sum = weight_sum != nullptr ? weight_sum + first : nullptr;
    r.bias = bias != nullptr ? bias + first : nullptr;
    r.out = count;
    return r;
  }
};

// The form ModelWeights holds the Linear layers' weights in.
enum class WeightForm {
  kFp32,
  kBf16,  // every Linear layer in bfloat16
  kInt8,  // the transformer blocks' layers in int8; patch embedding, pooling and projections fp32
};

struct LayerNormWeights {
  const float* gamma = nullptr;
  const float* beta = nullptr;
};

// One pre-LN transformer block: x += attn(ln1(x)); x += mlp(ln2(x)).
struct BlockWeights {
  LayerNormWeights ln1;                      // layer_norm1
  LinearWeights qkv;                         // self_attn.{q,k,v}_proj fused (TensorStore::Prepare; empty until then)
  LinearWeights out;                         // self_attn.out_proj
  LayerNormWeights ln2;                      // layer_norm2
  LinearWeights fc1;                         // mlp.fc1
  LinearWeights fc2;                         // mlp.fc2
  std::array<LinearWeights, 3> unfused_qkv;  // q, k and v as loaded, until Prepare fuses them into qkv
};

// SigLIP's image pooling (SiglipMultiheadAttentionPoolingHead): a learned probe attends over the
// tokens (nn.MultiheadAttention), then x + mlp(layernorm(x)); the probe's row is the feature.
struct AttentionPoolWeights {
  const float* probe = nullptr;  // vision_model.head.probe [1, 1, width]
  LinearWeights attention;       // vision_model.head.attention.in_proj_{weight,bias} [3·width, width]
  LinearWeights out;             // vision_model.head.attention.out_proj
  LayerNormWeights ln;           // vision_model.head.layernorm
  LinearWeights fc1;             // vision_model.head.mlp.fc1
  LinearWeights fc2;             // vision_model.head.mlp.fc2
};

struct TextWeights {
  const float* token_embedding = nullptr;     // text_model.embeddings.token_embedding.weight [vocab, width]
  const float* position_embedding = nullptr;  // text_model.embeddings.position_embedding.weight [ctx, width]
  std::vector<BlockWeights> blocks;           // text_model.encoder.layers.N
  LayerNormWeights final_ln;                  // text_model.final_layer_norm
  LinearWeights projection;                   // CLIP: text_projection [proj, width]; SigLIP: text_model.head
};

struct VisionWeights {
  const float* class_embedding = nullptr;  // CLIP: vision_model.embeddings.class_embedding [width]
  // vision_model.embeddings.patch_embedding.{weight,bias} (bias: SigLIP) as a Linear layer over
  // patches of 3·p·p values ([width, 3, p, p]; NaFlex: [width, p, p, 3]).
  LinearWeights patch;
  const float* position_embedding = nullptr;  // vision_model.embeddings.position_embedding.weight [(1+)grid², width]
  LayerNormWeights pre_ln;                    // CLIP: vision_model.pre_layrnorm (sic)
  std::vector<BlockWeights> blocks;           // vision_model.encoder.layers.N
  LayerNormWeights post_ln;                   // vision_model.post_layernorm
  LinearWeights projection;                   // CLIP: visual_projection.weight [proj, width]
  AttentionPoolWeights pool;                  // SigLIP: vision_model.head
};

// Where one transformer block's tensors live under its prefix, per checkpoint family.
struct BlockNames {
  const char* ln1;  // pre-LN: before attention; post-LN: after it
  const char* q;
  const char* k;
  const char* v;
  const char* out;
  const char* ln2;  // pre-LN: before the MLP; post-LN: after it
  const char* fc1;
  const char* fc2;
};

inline constexpr BlockNames kClipBlockNames = {
    "layer_norm1",        "self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj",
    "self_attn.out_proj", "layer_norm2",      "mlp.fc1",          "mlp.fc2"};

// The tensors of one checkpoint, looked up by name with their shapes checked, as F32: F32 tensors
// point into the mapping; F16 and BF16 ones are widened once and kept here.
class TensorStore {
 public:
  explicit TensorStore(CheckpointFile file) : file_(std::move(file)) {}
  TensorStore(const TensorStore&) = delete;
  TensorStore& operator=(const TensorStore&) = delete;

  Result<const float*> Get(const std::string& name, std::initializer_list<int64_t> expected);
  Result<LinearWeights> Linear(const std::string& prefix, int in, int out, bool has_bias);
  Result<LayerNormWeights> Norm(const std::string& prefix, int width);
  // One block under `prefix`, its q, k and v not yet fused (Prepare).
  Result<BlockWeights> Block(const std::string& prefix, const TowerConfig& c, const BlockNames& names);

  // Readies blocks for the GEMMs, one layer after another (so each fp32 copy goes as its new form
  // comes): q, k and v fused, the four layers in `form` (ToBf16, ToInt8) and packed (Pack). A block
  // already readied is left as it is.
  void Prepare(std::span<BlockWeights> blocks, WeightForm form);
  // Gives `linear` bfloat16 weights and lets its fp32 ones go: a copy made here is freed, pages of
  // the mapped file are dropped from memory (the weights are held once, in bfloat16).
  void ToBf16(LinearWeights* linear);
  // The same, to int8 with a scale per output feature (kernels::QuantizeInt8).
  void ToInt8(LinearWeights* linear);
  // Packs `linear`'s weights, in whichever form, for the GEMM (kernels::PackWeights) and lets the
  // rows go; nothing changes where this CPU's kernels gain nothing from it.
  void Pack(LinearWeights* linear);

  const CheckpointFile& file() const { return file_; }
  const char* dtype_name() const { return DTypeName(dtype_); }
  bool widened() const { return dtype_ != DType::kF32; }  // F16 or BF16 tensors, held here as F32
  int64_t n_params() const { return n_params_; }

 private:
  // Elements left uninitialised: every buffer here is written whole right away, and zero-filling
  // hundreds of megabytes first would double the passes over new memory at load.
  template <typename T>
  struct UninitAllocator : std::allocator<T> {
    template <typename U>
    struct rebind {
      using other = UninitAllocator<U>;
    };
    UninitAllocator() = default;
    template <typename U>
    UninitAllocator(const UninitAllocator<U>&) {}  // NOLINT(google-explicit-constructor): as std::allocator
    template <typename U>
    void construct(U* p) {
      ::new (static_cast<void*>(p)) U;
    }
  };
  template <typename T>
  using Buffer = std::vector<T, UninitAllocator<T>>;

  // q, k and v fused into qkv; their copies freed, their mapped pages dropped.
  void Fuse(BlockWeights* b);
  // Lets `linear`'s fp32 weights go, once held in another form.
  void Release(LinearWeights* linear);
  // Frees the owned buffer in `owned` holding `data`, if one does.
  template <typename T>
  static void Free(std::deque<Buffer<T>>& owned, const T* data);

  struct AlignedFree {
    void operator()(std::byte* p) const { ::operator delete[](p, std::align_val_t{64}); }
  };

  CheckpointFile file_;
  std::deque<Buffer<float>> owned_;  // widened or fused tensors; deque: references stay valid
  std::deque<Buffer<uint16_t>> owned_bf16_;
  std::deque<Buffer<int8_t>> owned_s8_;
  std::deque<Buffer<int32_t>> owned_sums_;
  std::deque<std::unique_ptr<std::byte[], AlignedFree>> owned_packed_;
  DType dtype_ = DType::kF32;  // of the checkpoint's tensors: F32 unless some were widened
  int64_t n_params_ = 0;
};

// Runs `ready` once per `flag`, as std::call_once does. If memory runs out on the way, says so
// (kResourceExhausted, naming `what`) and leaves `flag` unset: the next call tries again.
Status ReadyOnce(std::once_flag& flag, const std::function<void()>& ready, std::string_view what);

class ModelWeights {
 public:
  // Checks every tensor's presence, dtype and shape against `config`. Layers held in bfloat16 or
  // int8 (`form`) are held so only (kernels::LinearBf16, LinearInt8).
  static Result<std::unique_ptr<ModelWeights>> Load(CheckpointFile file, const ModelConfig& config,
                                                    WeightForm form = WeightForm::kFp32);

  // A tower's weights. The first call readies its GEMMs' weights (TensorStore::Prepare: fused,
  // converted to the form asked at load, packed): a tower never used costs nothing (a text query's
  // image tower, a model only listed). Fails only for want of memory. Thread-safe.
  Result<const TextWeights*> text() const;
  Result<const VisionWeights*> vision() const;
  const CheckpointFile& file() const { return store_.file(); }
  const char* dtype_name() const { return store_.dtype_name(); }
  int64_t n_params() const { return store_.n_params(); }
  // SigLIP's score parameters (0 when the checkpoint has none).
  float logit_scale() const { return logit_scale_; }
  float logit_bias() const { return logit_bias_; }

 private:
  ModelWeights(CheckpointFile file, WeightForm form) : store_(std::move(file)), form_(form) {}

  // Readying a tower on first use changes the store and the tower's layers: once each, under
  // prepare_mu_.
  mutable TensorStore store_;
  WeightForm form_;
  float logit_scale_ = 0;
  float logit_bias_ = 0;
  mutable TextWeights text_;
  mutable VisionWeights vision_;
  mutable std::mutex prepare_mu_;
  mutable std::once_flag text_ready_, vision_ready_;
};

}  // namespace imgsearch::model
