#include "kernels/gemm.h"

#include <cstdint>
#include <map>
#include <mutex>
#include <tuple>
#include <unordered_map>

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
  bool operator<(const Shape& o) const { return std::tie(m, k, n, has_bias) < std::tie(o.m, o.k, o.n, o.has_bias); }
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
    memory::desc src_md({s.m, s.k}, memory::data_type::f32, memory::format_tag::ab);
    memory::desc wei_md({s.k, s.n}, memory::data_type::f32, memory::format_tag::ba);  // w stored [n, k]
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

}  // namespace

void Linear(const float* x, const float* w, const float* bias, float* y, int m, int k, int n) {
  if (m == 0 || n == 0) return;
  MatmulCache& cache = MatmulCache::Get();
  Shape shape{m, k, n, bias != nullptr};
  dnnl::matmul prim = cache.Primitive(shape);
  const dnnl::engine& eng = cache.engine();
  dnnl::stream stream(eng);
  memory src({{m, k}, memory::data_type::f32, memory::format_tag::ab}, eng, const_cast<float*>(x));
  memory wei({{k, n}, memory::data_type::f32, memory::format_tag::ba}, eng, const_cast<float*>(w));
  memory dst({{m, n}, memory::data_type::f32, memory::format_tag::ab}, eng, y);
  std::unordered_map<int, memory> args{{DNNL_ARG_SRC, src}, {DNNL_ARG_WEIGHTS, wei}, {DNNL_ARG_DST, dst}};
  if (bias != nullptr) {
    args.emplace(DNNL_ARG_BIAS,
                 memory({{1, n}, memory::data_type::f32, memory::format_tag::ab}, eng, const_cast<float*>(bias)));
  }
  prim.execute(stream, args);
  stream.wait();
}

}  // namespace imgsearch::kernels
