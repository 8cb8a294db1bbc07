#include "kernels/gemm.h"

#include <cstdint>
#include <cstring>
#include <map>
#include <mutex>
#include <tuple>
#include <unordered_map>
#include <vector>

#include "dnnl.hpp"
#include "kernels/cpu.h"

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

struct Shape {
  int m, k, n;
  bool has_bias;
  bool bf16;  // bfloat16 source and weights
  bool operator<(const Shape& o) const {
    return std::tie(m, k, n, has_bias, bf16) < std::tie(o.m, o.k, o.n, o.has_bias, o.bf16);
  }
};

// One engine for the process, and a matmul primitive per shape. Primitives are immutable once made
// and may be executed from several threads at once, each with its own stream.
class MatmulCache {
 public:
  static MatmulCache& Get() {
    static MatmulCache cache;
    return cache;
  }

  const dnnl::engine& engine() const { return engine_; }

  dnnl::matmul Primitive(const Shape& s) {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = primitives_.find(s);
    if (it != primitives_.end()) return it->second;
    const memory::data_type in_type = s.bf16 ? memory::data_type::bf16 : memory::data_type::f32;
    memory::desc src_md({s.m, s.k}, in_type, memory::format_tag::ab);
    memory::desc wei_md({s.k, s.n}, in_type, memory::format_tag::ba);  // w stored [n, k]
    memory::desc dst_md({s.m, s.n}, memory::data_type::f32, memory::format_tag::ab);
    dnnl::matmul::primitive_desc pd;
    if (s.has_bias) {
      memory::desc bias_md({1, s.n}, memory::data_type::f32, memory::format_tag::ab);
      pd = dnnl::matmul::primitive_desc(dnnl::matmul::desc(src_md, wei_md, bias_md, dst_md), engine_);
    } else {
      pd = dnnl::matmul::primitive_desc(dnnl::matmul::desc(src_md, wei_md, dst_md), engine_);
    }
    dnnl::matmul prim(pd);
    if (primitives_.size() > 4096) primitives_.clear();  // bounded: shapes vary with batch and text length
    primitives_.emplace(s, prim);
    return prim;
  }

 private:
  MatmulCache() {
    IsaLimitedToAvx2();  // applies IMGSEARCH_MAX_ISA before oneDNN picks its kernels
    engine_ = dnnl::engine(dnnl::engine::kind::cpu, 0);
  }

  dnnl::engine engine_;
  std::mutex mu_;
  std::map<Shape, dnnl::matmul> primitives_;  // guarded by mu_
};

// Runs the cached primitive for `shape` on x ([m, k]), w ([n, k]), of the shape's input type.
void RunMatmul(const Shape& shape, const void* x, const void* w, const float* bias, float* y) {
  MatmulCache& cache = MatmulCache::Get();
  dnnl::matmul prim = cache.Primitive(shape);
  const dnnl::engine& eng = cache.engine();
  dnnl::stream stream(eng);
  const memory::data_type in_type = shape.bf16 ? memory::data_type::bf16 : memory::data_type::f32;
  const int m = shape.m, k = shape.k, n = shape.n;
  memory src({{m, k}, in_type, memory::format_tag::ab}, eng, const_cast<void*>(x));
  memory wei({{k, n}, in_type, memory::format_tag::ba}, eng, const_cast<void*>(w));
  memory dst({{m, n}, memory::data_type::f32, memory::format_tag::ab}, eng, y);
  std::unordered_map<int, memory> args{{DNNL_ARG_SRC, src}, {DNNL_ARG_WEIGHTS, wei}, {DNNL_ARG_DST, dst}};
  if (bias != nullptr) {
    args.emplace(DNNL_ARG_BIAS,
                 memory({{1, n}, memory::data_type::f32, memory::format_tag::ab}, eng, const_cast<float*>(bias)));
  }
  prim.execute(stream, args);
  stream.wait();
}

}  // namespace

void Linear(const float* x, const float* w, const float* bias, float* y, int m, int k, int n) {
  if (m == 0 || n == 0) return;
  RunMatmul({m, k, n, bias != nullptr, /*bf16=*/false}, x, w, bias, y);
}

void ToBf16(const float* x, uint16_t* out, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    uint32_t u;
    std::memcpy(&u, x + i, sizeof(u));
    if ((u & 0x7FFFFFFFu) > 0x7F800000u) {
      out[i] = static_cast<uint16_t>((u >> 16) | 0x40u);  // NaN: keep it a (quiet) NaN
    } else {
      out[i] = static_cast<uint16_t>((u + 0x7FFFu + ((u >> 16) & 1u)) >> 16);
    }
  }
}

void LinearBf16(const float* x, const uint16_t* w, const float* bias, float* y, int m, int k, int n) {
  if (m == 0 || n == 0) return;
  thread_local std::vector<uint16_t> x_bf16;
  x_bf16.resize(static_cast<size_t>(m) * k);
  ToBf16(x, x_bf16.data(), int64_t{m} * k);
  RunMatmul({m, k, n, bias != nullptr, /*bf16=*/true}, x_bf16.data(), w, bias, y);
}

}  // namespace imgsearch::kernels
