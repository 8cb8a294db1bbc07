#include "model/weights.h"

#include <algorithm>
#include <cstring>

#include "kernels/gemm.h"
#include "kernels/ops.h"

namespace imgsearch::model {

namespace {

float HalfToFloat(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000) << 16;
  uint32_t exponent = (h >> 10) & 0x1F;
  uint32_t mantissa = h & 0x3FF;
  uint32_t bits;
  if (exponent == 0x1F) {
    bits = sign | 0x7F800000 | (mantissa << 13);  // inf or NaN
  } else if (exponent != 0) {
    bits = sign | ((exponent + 112) << 23) | (mantissa << 13);
  } else if (mantissa == 0) {
    bits = sign;
  } else {  // subnormal: normalise
    exponent = 113;
    while ((mantissa & 0x400) == 0) {
      mantissa <<= 1;
      --exponent;
    }
    bits = sign | (exponent << 23) | ((mantissa & 0x3FF) << 13);
  }
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

float Bf16ToFloat(uint16_t h) {
  const uint32_t bits = static_cast<uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

}  // namespace

namespace {

std::string Dims(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

}  // namespace

Result<const float*> TensorStore::Get(const std::string& name, std::initializer_list<int64_t> expected) {
  const TensorInfo* t = file_.Find(name);
  if (t == nullptr) return Status::NotFound(file_.path() + ": missing tensor " + name);
  if (!std::equal(t->shape.begin(), t->shape.end(), expected.begin(), expected.end())) {
    return Status::InvalidArgument(file_.path() + ": tensor " + name + " has shape " + Dims(t->shape) + ", expected " +
                                   Dims(std::vector<int64_t>(expected)));
  }
  n_params_ += t->numel();
  switch (t->dtype) {
    case DType::kF32: {
      if (reinterpret_cast<uintptr_t>(t->data) % alignof(float) == 0) {
        return reinterpret_cast<const float*>(t->data);
      }
      Buffer<float>& out = owned_.emplace_back(static_cast<size_t>(t->numel()));  // unaligned offset
      std::memcpy(out.data(), t->data, t->n_bytes);
      return static_cast<const float*>(out.data());
    }
    case DType::kF16:
    case DType::kBF16: {
      dtype_ = t->dtype;
      Buffer<float>& out = owned_.emplace_back(static_cast<size_t>(t->numel()));
      for (int64_t i = 0; i < t->numel(); ++i) {
        uint16_t h;
        std::memcpy(&h, t->data + 2 * i, 2);
        out[static_cast<size_t>(i)] = t->dtype == DType::kF16 ? HalfToFloat(h) : Bf16ToFloat(h);
      }
      return static_cast<const float*>(out.data());
    }
    case DType::kOther: break;
  }
  return Status::Unsupported(file_.path() + ": tensor " + name + " has dtype " + t->dtype_name +
                             " (supported: F32, F16, BF16)");
}

Result<LinearWeights> TensorStore::Linear(const std::string& prefix, int in, int out, bool has_bias) {
  LinearWeights l;
  l.in = in;
  l.out = out;
  ASSIGN_OR_RETURN(l.weight, Get(prefix + ".weight", {out, in}));
  if (has_bias) {
    ASSIGN_OR_RETURN(l.bias, Get(prefix + ".bias", {out}));
  }
  return l;
}

Result<LayerNormWeights> TensorStore::Norm(const std::string& prefix, int width) {
  LayerNormWeights n;
  ASSIGN_OR_RETURN(n.gamma, Get(prefix + ".weight", {width}));
  ASSIGN_OR_RETURN(n.beta, Get(prefix + ".bias", {width}));
  return n;
}

void TensorStore::ToBf16(LinearWeights* linear) {
  const size_t n = static_cast<size_t>(linear->in) * linear->out;
  if (linear->weight_bf16 != nullptr) return;
  Buffer<uint16_t>& bf16 = owned_bf16_.emplace_back(n);
  kernels::ToBf16(linear->weight, bf16.data(), static_cast<int64_t>(n));
  linear->weight_bf16 = bf16.data();
  Release(linear);
}

void TensorStore::ToInt8(LinearWeights* linear) {
  const size_t n = static_cast<size_t>(linear->in) * linear->out;
  if (linear->weight_s8 != nullptr) return;
  // Allocated first, kept once all are: a failed allocation leaves nothing behind.
  Buffer<int8_t> q(n);
  Buffer<float> scale(static_cast<size_t>(linear->out));
  Buffer<int32_t> sum(static_cast<size_t>(linear->out));
  kernels::QuantizeInt8(linear->weight, linear->out, linear->in, q.data(), scale.data(), sum.data());
  linear->weight_s8 = owned_s8_.emplace_back(std::move(q)).data();
  linear->weight_scale = owned_.emplace_back(std::move(scale)).data();
  linear->weight_sum = owned_sums_.emplace_back(std::move(sum)).data();
  Release(linear);
}

void TensorStore::Pack(LinearWeights* linear) {
  // The form the layer is held in, and its rows.
  kernels::WeightType type = kernels::WeightType::kF32;
  const void* rows = linear->weight;
  if (linear->weight_s8 != nullptr) {
    type = kernels::WeightType::kS8;
    rows = linear->weight_s8;
  } else if (linear->weight_bf16 != nullptr) {
    type = kernels::WeightType::kBf16;
    rows = linear->weight_bf16;
  }
  if (linear->layout == kernels::Layout::kPacked || rows == nullptr) return;
  // Packing only speeds the layer up: if oneDNN or the memory for it fails, the rows serve.
  std::byte* packed = nullptr;
  try {
    const size_t bytes = kernels::PackedWeightBytes(type, linear->in, linear->out);
    if (bytes == 0) return;
    std::unique_ptr<std::byte[], AlignedFree> buffer(
        static_cast<std::byte*>(::operator new[](bytes, std::align_val_t{64})));
    kernels::PackWeights(type, rows, linear->in, linear->out, buffer.get());
    packed = owned_packed_.emplace_back(std::move(buffer)).get();
  } catch (const std::exception&) {
    return;
  }
  switch (type) {
    case kernels::WeightType::kF32:
      Release(linear);
      linear->weight = reinterpret_cast<const float*>(packed);
      break;
    case kernels::WeightType::kBf16:
      Free(owned_bf16_, linear->weight_bf16);
      linear->weight_bf16 = reinterpret_cast<const uint16_t*>(packed);
      break;
    case kernels::WeightType::kS8:
      Free(owned_s8_, linear->weight_s8);
      linear->weight_s8 = reinterpret_cast<const int8_t*>(packed);
      break;
  }
  linear->layout = kernels::Layout::kPacked;
}

void TensorStore::Prepare(std::span<BlockWeights> blocks, WeightForm form) {
  for (BlockWeights& b : blocks) {
    Fuse(&b);
    for (LinearWeights* linear : {&b.qkv, &b.out, &b.fc1, &b.fc2}) {
      if (form == WeightForm::kBf16) ToBf16(linear);
      if (form == WeightForm::kInt8) ToInt8(linear);
      Pack(linear);
    }
  }
}

void TensorStore::Fuse(BlockWeights* b) {
  if (b->unfused_qkv[0].weight == nullptr) return;  // fused already
  const int w = b->unfused_qkv[0].in;
  const size_t ww = static_cast<size_t>(w) * w;
  Buffer<float> fused_w(3 * ww);
  Buffer<float> fused_b(3 * static_cast<size_t>(w));
  for (size_t p = 0; p < 3; ++p) {
    const LinearWeights& part = b->unfused_qkv[p];
    std::memcpy(fused_w.data() + p * ww, part.weight, ww * sizeof(float));
    std::memcpy(fused_b.data() + p * static_cast<size_t>(w), part.bias, static_cast<size_t>(w) * sizeof(float));
  }
  b->qkv = LinearWeights{.weight = owned_.emplace_back(std::move(fused_w)).data(),
                         .bias = owned_.emplace_back(std::move(fused_b)).data(),
                         .in = w,
                         .out = 3 * w};
  for (LinearWeights& part : b->unfused_qkv) {
    Free(owned_, part.bias);  // a widened copy, if it is one
    Release(&part);
  }
}

template <typename T>
void TensorStore::Free(std::deque<Buffer<T>>& owned, const T* data) {
  auto it = std::find_if(owned.begin(), owned.end(), [&](const auto& v) { return v.data() == data; });
  if (it != owned.end()) Buffer<T>().swap(*it);
}

void TensorStore::Release(LinearWeights* linear) {
  const size_t n = static_cast<size_t>(linear->in) * linear->out;
  auto copy = std::find_if(owned_.begin(), owned_.end(), [&](const auto& v) { return v.data() == linear->weight; });
  if (copy != owned_.end()) {
    Buffer<float>().swap(*copy);
  } else {
    file_.Release(linear->weight, n * sizeof(float));
  }
  linear->weight = nullptr;
}

Result<BlockWeights> TensorStore::Block(const std::string& prefix, const TowerConfig& c, const BlockNames& n) {
  BlockWeights b;
  const int w = c.width;
  ASSIGN_OR_RETURN(b.ln1, Norm(prefix + "." + n.ln1, w));
  ASSIGN_OR_RETURN(b.unfused_qkv[0], Linear(prefix + "." + n.q, w, w, true));
  ASSIGN_OR_RETURN(b.unfused_qkv[1], Linear(prefix + "." + n.k, w, w, true));
  ASSIGN_OR_RETURN(b.unfused_qkv[2], Linear(prefix + "." + n.v, w, w, true));
  ASSIGN_OR_RETURN(b.out, Linear(prefix + "." + n.out, w, w, true));
  ASSIGN_OR_RETURN(b.ln2, Norm(prefix + "." + n.ln2, w));
  ASSIGN_OR_RETURN(b.fc1, Linear(prefix + "." + n.fc1, w, c.mlp_width, true));
  ASSIGN_OR_RETURN(b.fc2, Linear(prefix + "." + n.fc2, c.mlp_width, w, true));
  return b;
}

Result<std::unique_ptr<ModelWeights>> ModelWeights::Load(CheckpointFile file, const ModelConfig& c, WeightForm form) {
  std::unique_ptr<ModelWeights> w(new ModelWeights(std::move(file), form));
  TensorStore& load = w->store_;

  const bool clip = c.family == Family::kClip;
  TextWeights& t = w->text_;
  ASSIGN_OR_RETURN(t.token_embedding,
                   load.Get("text_model.embeddings.token_embedding.weight", {c.vocab_size, c.text.width}));
  ASSIGN_OR_RETURN(t.position_embedding,
                   load.Get("text_model.embeddings.position_embedding.weight", {c.text.n_positions, c.text.width}));
  for (int i = 0; i < c.text.n_layers; ++i) {
    ASSIGN_OR_RETURN(BlockWeights b,
                     load.Block("text_model.encoder.layers." + std::to_string(i), c.text, kClipBlockNames));
    t.blocks.push_back(b);
  }
  ASSIGN_OR_RETURN(t.final_ln, load.Norm("text_model.final_layer_norm", c.text.width));
  if (clip) {
    ASSIGN_OR_RETURN(t.projection, load.Linear("text_projection", c.text.width, c.projection_dim, false));
  } else {
    ASSIGN_OR_RETURN(t.projection, load.Linear("text_model.head", c.text.width, c.projection_dim, true));
  }

  VisionWeights& v = w->vision_;
  const int vw = c.vision.width;
  const char* patch_name = "vision_model.embeddings.patch_embedding.weight";
  const int64_t patch_len = 3 * int64_t{c.patch_size} * c.patch_size;
  ASSIGN_OR_RETURN(v.patch.weight, c.naflex ? load.Get(patch_name, {vw, patch_len})
                                            : load.Get(patch_name, {vw, 3, c.patch_size, c.patch_size}));
  v.patch.in = static_cast<int>(patch_len);
  v.patch.out = vw;
  ASSIGN_OR_RETURN(v.position_embedding,
                   load.Get("vision_model.embeddings.position_embedding.weight", {c.vision.n_positions, vw}));
  if (clip) {
    ASSIGN_OR_RETURN(v.class_embedding, load.Get("vision_model.embeddings.class_embedding", {vw}));
    ASSIGN_OR_RETURN(v.pre_ln, load.Norm("vision_model.pre_layrnorm", vw));
  } else {
    ASSIGN_OR_RETURN(v.patch.bias, load.Get("vision_model.embeddings.patch_embedding.bias", {vw}));
  }
  for (int i = 0; i < c.vision.n_layers; ++i) {
    ASSIGN_OR_RETURN(BlockWeights b,
                     load.Block("vision_model.encoder.layers." + std::to_string(i), c.vision, kClipBlockNames));
    v.blocks.push_back(b);
  }
  ASSIGN_OR_RETURN(v.post_ln, load.Norm("vision_model.post_layernorm", vw));
  if (!clip) {
    // SigLIP's score: read in whatever dtype the checkpoint holds them.
    for (auto [name, out] : {std::pair{"logit_scale", &w->logit_scale_}, std::pair{"logit_bias", &w->logit_bias_}}) {
      if (w->store_.file().Find(name) == nullptr) continue;
      ASSIGN_OR_RETURN(const float* value, load.Get(name, {1}));
      *out = *value;
    }
  }
  if (clip) {
    ASSIGN_OR_RETURN(v.projection, load.Linear("visual_projection", vw, c.projection_dim, false));
  } else {
    AttentionPoolWeights& h = v.pool;
    ASSIGN_OR_RETURN(h.probe, load.Get("vision_model.head.probe", {1, 1, vw}));
    ASSIGN_OR_RETURN(h.attention.weight, load.Get("vision_model.head.attention.in_proj_weight", {3 * vw, vw}));
    ASSIGN_OR_RETURN(h.attention.bias, load.Get("vision_model.head.attention.in_proj_bias", {3 * vw}));
    h.attention.in = vw;
    h.attention.out = 3 * vw;
    ASSIGN_OR_RETURN(h.out, load.Linear("vision_model.head.attention.out_proj", vw, vw, true));
    ASSIGN_OR_RETURN(h.ln, load.Norm("vision_model.head.layernorm", vw));
    ASSIGN_OR_RETURN(h.fc1, load.Linear("vision_model.head.mlp.fc1", vw, c.vision.mlp_width, true));
    ASSIGN_OR_RETURN(h.fc2, load.Linear("vision_model.head.mlp.fc2", c.vision.mlp_width, vw, true));
  }
  // A widened checkpoint's towers are readied now: left for their first use, a tower's fp32 copy
  // would be held until then (twice its bf16 size, four times its int8 one).
  if (form != WeightForm::kFp32 && load.widened()) {
    RETURN_IF_ERROR(w->text().status());
    RETURN_IF_ERROR(w->vision().status());
  }
  return w;
}

Status ReadyOnce(std::once_flag& flag, const std::function<void()>& ready, std::string_view what) {
  try {
    std::call_once(flag, ready);
    return Status::Ok();
  } catch (const std::bad_alloc&) {
    return Status::ResourceExhausted("not enough memory to ready " + std::string(what) +
                                     " (its weights fused, converted to the precision in use, and packed)");
  }
}

// The GEMMs that carry nearly all the work read their weights fused, converted and packed, from a
// tower's first use on. Outside the blocks, bf16 converts every Linear layer; int8 none; the patch
// embedding is packed.
Result<const TextWeights*> ModelWeights::text() const {
  RETURN_IF_ERROR(ReadyOnce(
      text_ready_,
      [this] {
        std::lock_guard<std::mutex> lock(prepare_mu_);
        store_.Prepare(text_.blocks, form_);
        if (form_ == WeightForm::kBf16) store_.ToBf16(&text_.projection);
      },
      "the model's text tower"));
  return &text_;
}

Result<const VisionWeights*> ModelWeights::vision() const {
  RETURN_IF_ERROR(ReadyOnce(
      vision_ready_,
      [this] {
        std::lock_guard<std::mutex> lock(prepare_mu_);
        store_.Prepare(vision_.blocks, form_);
        VisionWeights& v = vision_;
        if (form_ == WeightForm::kBf16) {
          for (LinearWeights* linear :
               {&v.patch, &v.projection, &v.pool.attention, &v.pool.out, &v.pool.fc1, &v.pool.fc2}) {
            if (linear->weight != nullptr) store_.ToBf16(linear);  // CLIP has no pooling head, SigLIP no projection
          }
        }
        store_.Pack(&v.patch);
      },
      "the model's image tower"));
  return &vision_;
}

}  // namespace imgsearch::model
