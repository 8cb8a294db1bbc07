#include "kernels/gemm.h"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <map>
#include <mutex>
#include <string_view>
#include <tuple>
#include <unordered_map>
#include <vector>

#include "dnnl.hpp"
#include "kernels/cpu.h"
#include "kernels/ops.h"
#include "kernels/vector_ops.h"

namespace imgsearch::kernels {

void LinearRef(const float* x, const float* w, const float* bias, float* y, int m, int k, int n) {
  for (int i = 0; i < m; ++i) {
    for (int j = 0; j < n; ++j) {
      double acc = bias != nullptr ? bias[j] : 0.0;
      for (int p = 0; p < k; ++p) acc += static_cast<double>(x[int64_t{i} * k + p]) * w[int64_t{j} * k + p];
      y[int64_t{i} * n + j] = static_cast<float>(acc);
    }
  }
}

namespace {

using dnnl::memory;

enum class Kind {
  kF32,   // fp32 source, weights and result
  kBf16,  // bfloat16 source and weights, fp32 result
  kU8S8,  // u8 source, s8 weights, s32 result (no bias)
};

// What the GEMM does with its result before writing it.
enum class Epilogue {
  kNone,
  kAccumulate,  // y += result
  kQuickGelu,   // y = activation(result), in the source type (fp32 or bfloat16)
  kGelu,
  kGeluTanh,
};

struct Shape {
  int m, k, n;
  bool has_bias;
  Kind kind;
  Epilogue epilogue = Epilogue::kNone;
  Layout layout = Layout::kRows;
  bool operator<(const Shape& o) const {
    return std::tie(m, k, n, has_bias, kind, epilogue, layout) <
           std::tie(o.m, o.k, o.n, o.has_bias, o.kind, o.epilogue, o.layout);
  }
};

Kind KindOf(WeightType type) {
  switch (type) {
    case WeightType::kF32: return Kind::kF32;
    case WeightType::kBf16: return Kind::kBf16;
    case WeightType::kS8: return Kind::kU8S8;
  }
  return Kind::kF32;
}

memory::data_type SourceType(Kind kind) {
  switch (kind) {
    case Kind::kF32: return memory::data_type::f32;
    case Kind::kBf16: return memory::data_type::bf16;
    case Kind::kU8S8: return memory::data_type::u8;
  }
  return memory::data_type::f32;
}
memory::data_type WeightDataType(Kind kind) { return kind == Kind::kU8S8 ? memory::data_type::s8 : SourceType(kind); }
memory::data_type ResultType(const Shape& s) {
  if (s.kind == Kind::kU8S8) return memory::data_type::s32;
  const bool activated = s.epilogue != Epilogue::kNone && s.epilogue != Epilogue::kAccumulate;
  return activated ? SourceType(s.kind) : memory::data_type::f32;
}

dnnl::primitive_attr AttributesOf(Epilogue epilogue) {
  dnnl::post_ops ops;
  switch (epilogue) {
    case Epilogue::kNone: break;
    case Epilogue::kAccumulate: ops.append_sum(1.0f); break;
    case Epilogue::kQuickGelu: ops.append_eltwise(1.0f, dnnl::algorithm::eltwise_swish, 1.702f, 0.0f); break;
    case Epilogue::kGelu: ops.append_eltwise(1.0f, dnnl::algorithm::eltwise_gelu_erf, 0.0f, 0.0f); break;
    case Epilogue::kGeluTanh: ops.append_eltwise(1.0f, dnnl::algorithm::eltwise_gelu_tanh, 0.0f, 0.0f); break;
  }
  dnnl::primitive_attr attr;
  attr.set_post_ops(ops);
  return attr;
}

memory::desc RowsDesc(Kind kind, int k, int n) {
  return memory::desc({k, n}, WeightDataType(kind), memory::format_tag::ba);  // w stored [n, k]
}

// A primitive, and whether it reads packed weights only after unpacking them into rows (should
// oneDNN have no kernel for the packed layout at some shape: never seen, but never wrong).
struct Matmul {
  dnnl::matmul prim;
  memory::desc weights;  // as the call's weights lie (rows, or packed)
  bool unpack = false;
};

// One engine for the process, a matmul primitive per shape, and the packed weights' layout per
// weight shape. Primitives are immutable once made and may be executed from several threads at
// once, each with its own stream.
class MatmulCache {
 public:
  static MatmulCache& Get() {
    static MatmulCache cache;
    return cache;
  }

  const dnnl::engine& engine() const { return engine_; }

  Matmul Primitive(const Shape& s) {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = primitives_.find(s);
    if (it != primitives_.end()) return it->second;
    Matmul m;
    m.weights = s.layout == Layout::kPacked ? PackedDescLocked(s.kind, s.k, s.n) : RowsDesc(s.kind, s.k, s.n);
    if (s.layout == Layout::kPacked) {
      // No kernel for the packed layout at this shape, or only oneDNN's reference one (far slower
      // than unpacking): the rows' kernel, on weights unpacked per call.
      try {
        const auto pd = Describe(s, m.weights);
        if (std::string_view(pd.impl_info_str()).starts_with("ref")) {
          m.unpack = true;
        } else {
          m.prim = dnnl::matmul(pd);
        }
      } catch (const dnnl::error&) {
        m.unpack = true;
      }
    }
    if (!m.prim) m.prim = dnnl::matmul(Describe(s, RowsDesc(s.kind, s.k, s.n)));
    if (primitives_.size() > 4096) primitives_.clear();  // bounded: shapes vary with batch and text length
    primitives_.emplace(s, m);
    return m;
  }

  // The layout oneDNN's kernels prefer for [n, k] weights of `kind` (the same whatever the number
  // of rows multiplied: checked on the encoders' shapes from 1 to 1600 rows).
  memory::desc PackedDesc(Kind kind, int k, int n) {
    std::lock_guard<std::mutex> lock(mu_);
    return PackedDescLocked(kind, k, n);
  }

 private:
  MatmulCache() {
    IsaLimitedToAvx2();  // applies IMGSEARCH_MAX_ISA before oneDNN picks its kernels
    engine_ = dnnl::engine(dnnl::engine::kind::cpu, 0);
  }

  dnnl::matmul::primitive_desc Describe(const Shape& s, const memory::desc& wei_md) const {
    memory::desc src_md({s.m, s.k}, SourceType(s.kind), memory::format_tag::ab);
    memory::desc dst_md({s.m, s.n}, ResultType(s), memory::format_tag::ab);
    const dnnl::primitive_attr attr = AttributesOf(s.epilogue);
    if (s.has_bias) {
      memory::desc bias_md({1, s.n}, memory::data_type::f32, memory::format_tag::ab);
      return dnnl::matmul::primitive_desc(dnnl::matmul::desc(src_md, wei_md, bias_md, dst_md), attr, engine_);
    }
    return dnnl::matmul::primitive_desc(dnnl::matmul::desc(src_md, wei_md, dst_md), attr, engine_);
  }

  memory::desc PackedDescLocked(Kind kind, int k, int n) {
    const auto key = std::tuple(kind, k, n);
    auto it = packed_.find(key);
    if (it != packed_.end()) return it->second;
    constexpr int kRows = 256;
    memory::desc any({k, n}, WeightDataType(kind), memory::format_tag::any);
    const memory::desc packed = Describe({kRows, k, n, /*has_bias=*/false, kind}, any).weights_desc();
    packed_.emplace(key, packed);
    return packed;
  }

  dnnl::engine engine_;
  std::mutex mu_;
  std::map<Shape, Matmul> primitives_;                         // guarded by mu_
  std::map<std::tuple<Kind, int, int>, memory::desc> packed_;  // guarded by mu_
};

// Runs the cached primitive for `shape` on x ([m, k]), w ([n, k], or packed) into y ([m, n]), of
// the shape's types.
void RunMatmul(const Shape& shape, const void* x, const void* w, const float* bias, void* y) {
  MatmulCache& cache = MatmulCache::Get();
  const Matmul matmul = cache.Primitive(shape);
  const dnnl::engine& eng = cache.engine();
  dnnl::stream stream(eng);
  const int m = shape.m, k = shape.k, n = shape.n;
  memory src({{m, k}, SourceType(shape.kind), memory::format_tag::ab}, eng, const_cast<void*>(x));
  memory wei(matmul.weights, eng, const_cast<void*>(w));
  thread_local std::vector<std::byte> rows;
  if (matmul.unpack) {
    const memory::desc rows_md = RowsDesc(shape.kind, k, n);
    rows.resize(rows_md.get_size());
    memory unpacked(rows_md, eng, rows.data());
    dnnl::reorder(wei, unpacked).execute(stream, wei, unpacked);
    wei = unpacked;
  }
  memory dst({{m, n}, ResultType(shape), memory::format_tag::ab}, eng, y);
  std::unordered_map<int, memory> args{{DNNL_ARG_SRC, src}, {DNNL_ARG_WEIGHTS, wei}, {DNNL_ARG_DST, dst}};
  if (bias != nullptr) {
    args.emplace(DNNL_ARG_BIAS,
                 memory({{1, n}, memory::data_type::f32, memory::format_tag::ab}, eng, const_cast<float*>(bias)));
  }
  matmul.prim.execute(stream, args);
  stream.wait();
}

}  // namespace

size_t PackedWeightBytes(WeightType type, int k, int n) {
  const Kind kind = KindOf(type);
  const memory::desc packed = MatmulCache::Get().PackedDesc(kind, k, n);
  // A plain layout (the rows, or their transpose: oneDNN 2.6's AVX2 GEMM) gains nothing measurable.
  const bool blocked = packed.data.format_kind == dnnl_blocked && packed.data.format_desc.blocking.inner_nblks > 0;
  return blocked ? packed.get_size() : 0;
}

void PackWeights(WeightType type, const void* rows, int k, int n, void* packed) {
  const Kind kind = KindOf(type);
  MatmulCache& cache = MatmulCache::Get();
  const dnnl::engine& eng = cache.engine();
  dnnl::stream stream(eng);
  memory from(RowsDesc(kind, k, n), eng, const_cast<void*>(rows));
  memory to(cache.PackedDesc(kind, k, n), eng, packed);
  dnnl::reorder(from, to).execute(stream, from, to);
  stream.wait();
}

void Linear(const float* x, const float* w, const float* bias, float* y, int m, int k, int n, Layout layout) {
  if (m == 0 || n == 0) return;
  RunMatmul({m, k, n, bias != nullptr, Kind::kF32, Epilogue::kNone, layout}, x, w, bias, y);
}

void LinearBf16(const float* x, const uint16_t* w, const float* bias, float* y, int m, int k, int n, Layout layout) {
  if (m == 0 || n == 0) return;
  thread_local std::vector<uint16_t> x_bf16;
  x_bf16.resize(static_cast<size_t>(m) * k);
  ToBf16(x, x_bf16.data(), int64_t{m} * k);
  LinearBf16(x_bf16.data(), w, bias, y, m, k, n, layout);
}

void LinearBf16(const uint16_t* x, const uint16_t* w, const float* bias, float* y, int m, int k, int n, Layout layout) {
  if (m == 0 || n == 0) return;
  RunMatmul({m, k, n, bias != nullptr, Kind::kBf16, Epilogue::kNone, layout}, x, w, bias, y);
}

namespace {

Epilogue EpilogueOf(Activation activation) {
  switch (activation) {
    case Activation::kQuickGelu: return Epilogue::kQuickGelu;
    case Activation::kGelu: return Epilogue::kGelu;
    case Activation::kGeluTanh: return Epilogue::kGeluTanh;
  }
  return Epilogue::kQuickGelu;
}

}  // namespace

void LinearAccumulate(const float* x, const float* w, const float* bias, float* y, int m, int k, int n, Layout layout) {
  if (m == 0 || n == 0) return;
  RunMatmul({m, k, n, bias != nullptr, Kind::kF32, Epilogue::kAccumulate, layout}, x, w, bias, y);
}

void LinearAccumulate(const uint16_t* x, const uint16_t* w, const float* bias, float* y, int m, int k, int n,
                      Layout layout) {
  if (m == 0 || n == 0) return;
  RunMatmul({m, k, n, bias != nullptr, Kind::kBf16, Epilogue::kAccumulate, layout}, x, w, bias, y);
}

void LinearActivate(const float* x, const float* w, const float* bias, float* y, int m, int k, int n,
                    Activation activation, Layout layout) {
  if (m == 0 || n == 0) return;
  RunMatmul({m, k, n, bias != nullptr, Kind::kF32, EpilogueOf(activation), layout}, x, w, bias, y);
}

void LinearActivate(const uint16_t* x, const uint16_t* w, const float* bias, uint16_t* y, int m, int k, int n,
                    Activation activation, Layout layout) {
  if (m == 0 || n == 0) return;
  RunMatmul({m, k, n, bias != nullptr, Kind::kBf16, EpilogueOf(activation), layout}, x, w, bias, y);
}

int Int8Levels() { return NativeVnni() ? 127 : 63; }

void QuantizeInt8(const float* w, int rows, int k, int8_t* q, float* scale, int32_t* sum) {
  for (int r = 0; r < rows; ++r) {
    const float* wr = w + int64_t{r} * k;
    float max_abs = 0.0f;
    for (int i = 0; i < k; ++i) max_abs = std::max(max_abs, std::abs(wr[i]));
    scale[r] = max_abs > 0.0f ? max_abs / 127.0f : 1.0f;
    const float inv = max_abs > 0.0f ? 127.0f / max_abs : 0.0f;
    int32_t total = 0;
    for (int i = 0; i < k; ++i) {
      const int v = static_cast<int>(std::nearbyint(std::clamp(wr[i] * inv, -127.0f, 127.0f)));
      q[int64_t{r} * k + i] = static_cast<int8_t>(v);
      total += v;
    }
    sum[r] = total;
  }
}

void LinearInt8(const float* x, const int8_t* w, const float* w_scale, const int32_t* w_sum, const float* bias,
                float* y, int m, int k, int n, Int8Result result, Activation activation, Layout layout) {
  if (m == 0 || n == 0) return;
  const VectorOps& ops = ActiveVectorOps();
  const int levels = Int8Levels();
  thread_local std::vector<uint8_t> xq;
  thread_local std::vector<float> x_scale;
  thread_local std::vector<int32_t> acc;
  xq.resize(static_cast<size_t>(m) * k);
  x_scale.resize(static_cast<size_t>(m));
  acc.resize(static_cast<size_t>(m) * n);
  uint8_t* q = xq.data();
  float* xs = x_scale.data();
#pragma omp parallel for schedule(static) if (int64_t{m} * k >= (1 << 15))
  for (int r = 0; r < m; ++r) xs[r] = ops.quantize_row(x + int64_t{r} * k, k, levels, q + int64_t{r} * k);
  RunMatmul({m, k, n, /*has_bias=*/false, Kind::kU8S8, Epilogue::kNone, layout}, q, w, nullptr, acc.data());
  const int32_t* a = acc.data();
#pragma omp parallel for schedule(static) if (int64_t{m} * n >= (1 << 15))
  for (int r = 0; r < m; ++r) {
    float* yr = y + int64_t{r} * n;
    ops.dequantize_row(a + int64_t{r} * n, n, xs[r], w_scale, w_sum, levels + 1, bias, result == Int8Result::kAdd, yr);
    if (result == Int8Result::kActivate) Activate(activation, yr, n);  // while the row is in cache (one thread)
  }
}

}  // namespace imgsearch::kernels
