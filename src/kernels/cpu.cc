#include "kernels/cpu.h"

#include <omp.h>

#include <cstdlib>
#include <cstring>
#include <mutex>

#include "dnnl.hpp"
#include "kernels/vector_ops.h"

namespace imgsearch::kernels {

namespace {

std::once_flag g_isa_env_once;
bool g_limited_to_avx2 = false;

void ApplyIsaEnvironment() {
  std::call_once(g_isa_env_once, [] {
    const char* env = std::getenv("IMGSEARCH_MAX_ISA");
    if (env != nullptr && std::strcmp(env, "avx2") == 0) {
      g_limited_to_avx2 = dnnl::set_max_cpu_isa(dnnl::cpu_isa::avx2) == dnnl::status::success;
    }
  });
}

}  // namespace

void LimitIsa(IsaLimit limit) {
  ApplyIsaEnvironment();
  if (limit == IsaLimit::kAvx2 && !g_limited_to_avx2) {
    g_limited_to_avx2 = dnnl::set_max_cpu_isa(dnnl::cpu_isa::avx2) == dnnl::status::success;
  }
}

bool IsaLimitedToAvx2() {
  ApplyIsaEnvironment();
  return g_limited_to_avx2;
}

bool NativeBf16() {
  // What oneDNN will run, after every cap (IMGSEARCH_MAX_ISA, ONEDNN_MAX_CPU_ISA): its bf16 matmul
  // needs avx512_core_bf16 or AMX.
  ApplyIsaEnvironment();
  const dnnl::cpu_isa isa = dnnl::get_effective_cpu_isa();
  return isa == dnnl::cpu_isa::avx512_core_bf16 || isa == dnnl::cpu_isa::avx512_core_amx;
}

bool NativeVnni() {
  ApplyIsaEnvironment();
  // (AVX-VNNI is left out: oneDNN 2.6's int8 matmul does not use it, and adds pairs in 16 bits there.)
  switch (dnnl::get_effective_cpu_isa()) {
    case dnnl::cpu_isa::avx512_core_vnni:
    case dnnl::cpu_isa::avx512_core_bf16:
    case dnnl::cpu_isa::avx512_core_amx: return true;
    default: return false;
  }
}

std::string DescribeIsa() {
  ApplyIsaEnvironment();
  const char* name = "unknown";
  switch (dnnl::get_effective_cpu_isa()) {
    case dnnl::cpu_isa::sse41: name = "sse41"; break;
    case dnnl::cpu_isa::avx: name = "avx"; break;
    case dnnl::cpu_isa::avx2: name = "avx2"; break;
    case dnnl::cpu_isa::avx2_vnni: name = "avx2_vnni"; break;
    case dnnl::cpu_isa::avx512_core: name = "avx512_core"; break;
    case dnnl::cpu_isa::avx512_core_vnni: name = "avx512_core_vnni"; break;
    case dnnl::cpu_isa::avx512_core_bf16: name = "avx512_core_bf16"; break;
    case dnnl::cpu_isa::avx512_core_amx: name = "avx512_core_amx"; break;
    default: break;
  }
  const dnnl_version_t* v = dnnl_version();
  return std::string(name) + " (oneDNN " + std::to_string(v->major) + "." + std::to_string(v->minor) + "), " +
         ActiveVectorOps().isa + " vector ops";
}

const VectorOps& ActiveVectorOps() {
  // As oneDNN decides, after every cap (IMGSEARCH_MAX_ISA, ONEDNN_MAX_CPU_ISA): its avx512_core
  // needs AVX-512 F, BW, DQ and VL, what the AVX-512 build of the vector operations uses.
  ApplyIsaEnvironment();
  switch (dnnl::get_effective_cpu_isa()) {
    case dnnl::cpu_isa::avx512_core:
    case dnnl::cpu_isa::avx512_core_vnni:
    case dnnl::cpu_isa::avx512_core_bf16:
    case dnnl::cpu_isa::avx512_core_amx: return Avx512VectorOps();
    default: return Avx2VectorOps();
  }
}

void SetNumThreads(int n_threads) { omp_set_num_threads(n_threads > 0 ? n_threads : omp_get_num_procs()); }

int NumThreads() { return omp_get_max_threads(); }

}  // namespace imgsearch::kernels
