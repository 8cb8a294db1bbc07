// Fast paths against scalar references on odd shapes. Run a second time by ctest with
// IMGSEARCH_MAX_ISA=avx2 so the AVX2 kernels are checked on AVX-512 machines too.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstring>
#include <limits>
#include <random>
#include <tuple>
#include <vector>

#include "kernels/cpu.h"
#include "kernels/gemm.h"
#include "kernels/ops.h"
#include "kernels/resample.h"

namespace imgsearch::kernels {
namespace {

std::vector<float> Random(size_t n, std::mt19937* rng, float scale = 1.0f) {
  std::normal_distribution<float> d(0.0f, scale);
  std::vector<float> v(n);
  for (float& x : v) x = d(*rng);
  return v;
}

double MaxRelError(const std::vector<float>& a, const std::vector<float>& b) {
  double num = 0, den = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    num = std::max(num, static_cast<double>(std::abs(a[i] - b[i])));
    den = std::max(den, static_cast<double>(std::abs(b[i])));
  }
  return num / std::max(den, 1e-30);
}

TEST(Kernels, ReportsThePathInUse) {
  const std::string isa = DescribeIsa();
  EXPECT_FALSE(isa.empty());
  if (IsaLimitedToAvx2()) {
    EXPECT_NE(isa.find("avx2"), std::string::npos) << isa;
  }
  std::printf("kernels: %s\n", isa.c_str());
}

TEST(Kernels, LinearMatchesReferenceOnOddShapes) {
  std::mt19937 rng(1);
  const int sizes[] = {1, 3, 17, 65, 128};
  for (int m : sizes) {
    for (int k : sizes) {
      for (int n : {1, 5, 33, 96}) {
        for (bool bias : {false, true}) {
          auto x = Random(size_t(m) * k, &rng);
          auto w = Random(size_t(n) * k, &rng, 0.1f);
          auto b = Random(n, &rng);
          std::vector<float> fast(size_t(m) * n), ref(size_t(m) * n);
          Linear(x.data(), w.data(), bias ? b.data() : nullptr, fast.data(), m, k, n);
          LinearRef(x.data(), w.data(), bias ? b.data() : nullptr, ref.data(), m, k, n);
          ASSERT_LT(MaxRelError(fast, ref), 1e-5) << "m=" << m << " k=" << k << " n=" << n << " bias=" << bias;
        }
      }
    }
  }
}

TEST(Kernels, LinearAddsTheResidualAndActivatesInItsOwnPass) {
  std::mt19937 rng(10);
  for (auto [m, k, n] : {std::tuple{1, 64, 48}, std::tuple{37, 768, 96}, std::tuple{50, 33, 7}}) {
    auto x = Random(size_t(m) * k, &rng), w = Random(size_t(n) * k, &rng, 0.1f), b = Random(n, &rng);
    std::vector<float> ref(size_t(m) * n);
    LinearRef(x.data(), w.data(), b.data(), ref.data(), m, k, n);
    auto residual = Random(ref.size(), &rng);
    std::vector<float> added = residual, want_added(ref.size());
    LinearAccumulate(x.data(), w.data(), b.data(), added.data(), m, k, n);
    for (size_t i = 0; i < ref.size(); ++i) want_added[i] = residual[i] + ref[i];
    EXPECT_LT(MaxRelError(added, want_added), 1e-5) << "m=" << m;
    for (Activation activation : {Activation::kQuickGelu, Activation::kGelu, Activation::kGeluTanh}) {
      std::vector<float> got(ref.size()), want = ref;
      LinearActivate(x.data(), w.data(), b.data(), got.data(), m, k, n, activation);
      if (activation == Activation::kQuickGelu) QuickGelu(want.data(), static_cast<int64_t>(want.size()));
      if (activation == Activation::kGelu) Gelu(want.data(), static_cast<int64_t>(want.size()));
      if (activation == Activation::kGeluTanh) GeluTanh(want.data(), static_cast<int64_t>(want.size()));
      EXPECT_LT(MaxRelError(got, want), 1e-5) << "m=" << m << " activation " << int(activation);
    }
  }
}

TEST(Kernels, LayerNormMatchesDoublePrecision) {
  std::mt19937 rng(2);
  for (int width : {1, 3, 17, 64, 768}) {
    const int rows = 5;
    auto x = Random(size_t(rows) * width, &rng, 3.0f);
    auto g = Random(width, &rng);
    auto b = Random(width, &rng);
    std::vector<float> out(x.size()), ref(x.size());
    LayerNorm(x.data(), g.data(), b.data(), out.data(), rows, width, 1e-5f);
    for (int r = 0; r < rows; ++r) {
      double mean = 0, var = 0;
      for (int i = 0; i < width; ++i) mean += x[r * width + i];
      mean /= width;
      for (int i = 0; i < width; ++i) var += (x[r * width + i] - mean) * (x[r * width + i] - mean);
      var /= width;
      for (int i = 0; i < width; ++i) {
        ref[r * width + i] = static_cast<float>((x[r * width + i] - mean) / std::sqrt(var + 1e-5) * g[i] + b[i]);
      }
    }
    EXPECT_LT(MaxRelError(out, ref), 1e-5) << "width " << width;
  }
}

TEST(Kernels, ActivationsMatchTheirDefinitions) {
  std::vector<float> x = {-6.0f, -1.0f, -0.1f, 0.0f, 0.3f, 2.0f, 9.0f};
  std::vector<float> q = x, g = x, t = x;
  QuickGelu(q.data(), static_cast<int64_t>(q.size()));
  Gelu(g.data(), static_cast<int64_t>(g.size()));
  GeluTanh(t.data(), static_cast<int64_t>(t.size()));
  for (size_t i = 0; i < x.size(); ++i) {
    const double v = x[i];
    EXPECT_NEAR(q[i], v / (1.0 + std::exp(-1.702 * v)), 1e-6);
    EXPECT_NEAR(g[i], 0.5 * v * (1.0 + std::erf(v / std::sqrt(2.0))), 1e-6);
    EXPECT_NEAR(t[i], 0.5 * v * (1.0 + std::tanh(std::sqrt(2.0 / M_PI) * (v + 0.044715 * v * v * v))), 1e-6);
  }
  // The tanh form differs from the exact one where it should, so a swapped call shows.
  EXPECT_GT(std::abs(t[1] - g[1]) + std::abs(t[5] - g[5]), 5e-5);
}

TEST(Kernels, VectorisedActivationsHoldOverFloatsRange) {
  // Every magnitude the exponential meets, on lengths that leave partial vectors, in parallel
  // blocks and not.
  std::mt19937 rng(6);
  std::uniform_real_distribution<float> wide(-120.0f, 120.0f);
  for (int64_t n : {int64_t{1}, int64_t{15}, int64_t{33}, int64_t{100'003}}) {
    std::vector<float> x(static_cast<size_t>(n));
    for (float& v : x) v = std::abs(wide(rng)) < 10 ? wide(rng) : wide(rng) / 10;
    x[0] = n > 1 ? -100.0f : 0.5f;
    std::vector<float> q = x, t = x;
    QuickGelu(q.data(), n);
    GeluTanh(t.data(), n);
    for (size_t i = 0; i < x.size(); ++i) {
      const double v = x[i];
      const double want_q = v / (1.0 + std::exp(-1.702 * v));
      const double want_t = 0.5 * v * (1.0 + std::tanh(std::sqrt(2.0 / M_PI) * (v + 0.044715 * v * v * v)));
      ASSERT_NEAR(q[i], want_q, 2e-6 * std::max(1.0, std::abs(want_q))) << "x=" << v;
      ASSERT_NEAR(t[i], want_t, 2e-6 * std::max(1.0, std::abs(want_t))) << "x=" << v;
    }
  }
}

TEST(Kernels, LayerNormToBf16IsTheRoundedFp32) {
  std::mt19937 rng(7);
  for (int width : {5, 64, 768, 1000}) {
    const int rows = 33;
    auto x = Random(size_t(rows) * width, &rng, 2.0f);
    auto g = Random(width, &rng);
    auto b = Random(width, &rng);
    std::vector<float> out(x.size());
    std::vector<uint16_t> out16(x.size()), want(x.size());
    LayerNorm(x.data(), g.data(), b.data(), out.data(), rows, width, 1e-5f);
    LayerNorm(x.data(), g.data(), b.data(), out16.data(), rows, width, 1e-5f);
    ToBf16(out.data(), want.data(), static_cast<int64_t>(out.size()));
    EXPECT_EQ(out16, want) << "width " << width;
  }
}

// Attention straight from its definition, in double precision.
std::vector<float> AttentionRef(const std::vector<float>& qkv, int n, int width, int n_head, bool causal) {
  const int hd = width / n_head;
  std::vector<float> out(size_t(n) * width);
  for (int h = 0; h < n_head; ++h) {
    for (int i = 0; i < n; ++i) {
      std::vector<double> s(n, -INFINITY);
      double mx = -INFINITY;
      for (int j = 0; j < (causal ? i + 1 : n); ++j) {
        double dot = 0;
        for (int d = 0; d < hd; ++d)
          dot += double(qkv[i * 3 * width + h * hd + d]) * qkv[j * 3 * width + width + h * hd + d];
        s[j] = dot / std::sqrt(double(hd));
        mx = std::max(mx, s[j]);
      }
      double sum = 0;
      for (int j = 0; j < n; ++j) sum += (s[j] = std::isinf(s[j]) ? 0.0 : std::exp(s[j] - mx));
      for (int d = 0; d < hd; ++d) {
        double acc = 0;
        for (int j = 0; j < n; ++j) acc += s[j] / sum * qkv[j * 3 * width + 2 * width + h * hd + d];
        out[i * width + h * hd + d] = static_cast<float>(acc);
      }
    }
  }
  return out;
}

TEST(Kernels, AttentionMatchesDefinition) {
  // Token counts and head widths on both sides of the vectors' widths (8 and 16 floats).
  std::mt19937 rng(3);
  for (int n : {1, 3, 16, 17, 50, 77}) {
    for (int head_dim : {8, 24, 32, 64, 80}) {
      for (int n_head : {1, 3}) {
        for (bool causal : {false, true}) {
          const int width = head_dim * n_head;
          auto qkv = Random(size_t(n) * 3 * width, &rng);
          std::vector<float> out(size_t(n) * width);
          AttentionBatch(qkv.data(), out.data(), 1, n, width, n_head, causal);
          const std::vector<float> ref = AttentionRef(qkv, n, width, n_head, causal);
          ASSERT_LT(MaxRelError(out, ref), 1e-5)
              << "n=" << n << " head_dim=" << head_dim << " heads=" << n_head << " causal=" << causal;
          // Rounded to bfloat16 for the GEMM after it: the same values, rounded.
          std::vector<uint16_t> out16(out.size()), want16(out.size());
          AttentionBatch(qkv.data(), out16.data(), 1, n, width, n_head, causal);
          ToBf16(out.data(), want16.data(), static_cast<int64_t>(out.size()));
          ASSERT_EQ(out16, want16) << "n=" << n << " head_dim=" << head_dim;
        }
      }
    }
  }
}

TEST(Kernels, AttendOneIsAttentionOfOneQueryRow) {
  // Row 0 of full attention over [q_0; k; v] rows: the same as one query over [k | v] rows.
  std::mt19937 rng(5);
  for (int n : {1, 7, 49}) {
    for (int n_head : {1, 4}) {
      const int width = 16 * n_head;
      auto qkv = Random(size_t(n) * 3 * width, &rng);
      const std::vector<float> full = AttentionRef(qkv, n, width, n_head, /*causal=*/false);
      std::vector<float> kv(size_t(n) * 2 * width);
      for (int j = 0; j < n; ++j) {
        std::copy_n(qkv.begin() + j * 3 * width + width, 2 * width, kv.begin() + j * 2 * width);
      }
      std::vector<float> out(width);
      AttendOne(qkv.data(), kv.data(), out.data(), n, width, n_head);
      EXPECT_LT(MaxRelError(out, std::vector<float>(full.begin(), full.begin() + width)), 1e-5)
          << "n=" << n << " heads=" << n_head;
    }
  }
}

TEST(Kernels, L2NormalizeLeavesZeroAlone) {
  std::vector<float> zero(4, 0.0f), v = {3.0f, 4.0f};
  L2Normalize(zero.data(), 4);
  L2Normalize(v.data(), 2);
  EXPECT_EQ(zero, std::vector<float>(4, 0.0f));
  EXPECT_NEAR(v[0], 0.6f, 1e-7);
  EXPECT_NEAR(v[1], 0.8f, 1e-7);
}

TEST(Kernels, AttentionBatchEqualsOneSequenceAtATime) {
  std::mt19937 rng(4);
  const int n_seqs = 5, seq_len = 50, width = 128, n_head = 2;
  auto qkv = Random(size_t(n_seqs) * seq_len * 3 * width, &rng);
  std::vector<float> batched(size_t(n_seqs) * seq_len * width), single(batched.size());
  AttentionBatch(qkv.data(), batched.data(), n_seqs, seq_len, width, n_head, false);
  for (int s = 0; s < n_seqs; ++s) {
    AttentionBatch(qkv.data() + size_t(s) * seq_len * 3 * width, single.data() + size_t(s) * seq_len * width, 1,
                   seq_len, width, n_head, false);
  }
  EXPECT_EQ(batched, single);
}

TEST(Kernels, ToBf16RoundsEveryBitPatternAsTheScalarRule) {
  // Random bit patterns (NaNs, infinities, subnormals among them) on a length that leaves a partial
  // vector and spans parallel blocks.
  std::mt19937 rng(8);
  std::vector<float> in(100'003);
  for (float& f : in) {
    const uint32_t u = rng();
    std::memcpy(&f, &u, sizeof(f));
  }
  std::vector<uint16_t> out(in.size());
  ToBf16(in.data(), out.data(), static_cast<int64_t>(in.size()));
  for (size_t i = 0; i < in.size(); ++i) {
    uint32_t u;
    std::memcpy(&u, &in[i], sizeof(u));
    const uint16_t want = (u & 0x7FFFFFFFu) > 0x7F800000u
                              ? static_cast<uint16_t>((u >> 16) | 0x40u)
                              : static_cast<uint16_t>((u + 0x7FFFu + ((u >> 16) & 1u)) >> 16);
    ASSERT_EQ(out[i], want) << "bits " << std::hex << u;
  }
}

TEST(Kernels, ToBf16RoundsToNearestEven) {
  const std::vector<float> in = {1.0f,
                                 -2.5f,
                                 1.00390625f /* tie: 1 + 2⁻⁸, stays 1 */,
                                 1.01171875f /* tie, up */,
                                 3.4e38f,
                                 std::numeric_limits<float>::infinity(),
                                 std::nanf("")};
  std::vector<uint16_t> out(in.size());
  ToBf16(in.data(), out.data(), static_cast<int64_t>(in.size()));
  EXPECT_EQ(out[0], 0x3F80);
  EXPECT_EQ(out[1], 0xC020);
  EXPECT_EQ(out[2], 0x3F80);
  EXPECT_EQ(out[3], 0x3F82);
  EXPECT_EQ(out[4], 0x7F80);  // rounds up to infinity, as IEEE rounding does
  EXPECT_EQ(out[5], 0x7F80);
  EXPECT_EQ(out[6] & 0x7F80, 0x7F80);
  EXPECT_NE(out[6] & 0x007F, 0);  // still a NaN
}

TEST(Kernels, LinearBf16SumsBf16ProductsInFp32) {
  if (!NativeBf16()) {
    GTEST_SKIP() << "no native bf16 here (AVX512_BF16 or AMX, kernels not capped to AVX2): " << DescribeIsa();
  }
  std::mt19937 rng(6);
  for (auto [m, k, n] : {std::tuple{1, 64, 48}, std::tuple{37, 768, 96}, std::tuple{50, 33, 7}}) {
    auto x = Random(size_t(m) * k, &rng), w = Random(size_t(n) * k, &rng), b = Random(n, &rng);
    std::vector<uint16_t> x16(x.size()), w16(w.size());
    ToBf16(x.data(), x16.data(), static_cast<int64_t>(x.size()));
    ToBf16(w.data(), w16.data(), static_cast<int64_t>(w.size()));
    auto widen = [](const std::vector<uint16_t>& v) {
      std::vector<float> out(v.size());
      for (size_t i = 0; i < v.size(); ++i) {
        const uint32_t bits = uint32_t{v[i]} << 16;
        std::memcpy(&out[i], &bits, 4);
      }
      return out;
    };
    std::vector<float> want(size_t(m) * n), got(want.size());
    LinearRef(widen(x16).data(), widen(w16).data(), b.data(), want.data(), m, k, n);
    LinearBf16(x.data(), w16.data(), b.data(), got.data(), m, k, n);
    for (size_t i = 0; i < want.size(); ++i) EXPECT_NEAR(got[i], want[i], 1e-4 * (1 + std::abs(want[i]))) << i;

    // The residual added, and each activation applied, in the GEMM's own pass; an activated result
    // is rounded to bfloat16, so it may differ from ours by one bfloat16 step.
    auto residual = Random(want.size(), &rng);
    std::vector<float> added = residual;
    LinearAccumulate(x16.data(), w16.data(), b.data(), added.data(), m, k, n);
    for (size_t i = 0; i < want.size(); ++i) {
      EXPECT_NEAR(added[i], residual[i] + want[i], 1e-4 * (1 + std::abs(want[i]))) << i;
    }
    for (Activation activation : {Activation::kQuickGelu, Activation::kGelu, Activation::kGeluTanh}) {
      std::vector<uint16_t> act16(want.size());
      LinearActivate(x16.data(), w16.data(), b.data(), act16.data(), m, k, n, activation);
      std::vector<float> ours = want;
      if (activation == Activation::kQuickGelu) QuickGelu(ours.data(), static_cast<int64_t>(ours.size()));
      if (activation == Activation::kGelu) Gelu(ours.data(), static_cast<int64_t>(ours.size()));
      if (activation == Activation::kGeluTanh) GeluTanh(ours.data(), static_cast<int64_t>(ours.size()));
      const std::vector<float> theirs = widen(act16);
      for (size_t i = 0; i < want.size(); ++i) {
        EXPECT_NEAR(theirs[i], ours[i], 1e-2 * std::abs(ours[i]) + 1e-3) << i << " activation " << int(activation);
      }
    }
  }
}

// int8: each row of x quantised to Int8Levels() steps either side of zero, the weights to 127 per
// output feature; the products summed exactly. The reference repeats that in double precision.
TEST(Kernels, LinearInt8IsTheExactSumOfQuantisedProducts) {
  const int levels = Int8Levels();
  EXPECT_EQ(levels, NativeVnni() ? 127 : 63);
  std::printf("int8: activations in %d steps either side of zero (%s)\n", levels, DescribeIsa().c_str());
  std::mt19937 rng(9);
  for (int m : {1, 3, 17, 65}) {
    for (int k : {5, 33, 768}) {
      for (int n : {1, 5, 33, 96}) {
        auto x = Random(size_t(m) * k, &rng, 2.0f);
        auto w = Random(size_t(n) * k, &rng, 0.1f);
        auto b = Random(n, &rng);
        if (m > 1) std::fill_n(x.begin(), k, 0.0f);  // a row of zeros
        std::vector<int8_t> q(w.size());
        std::vector<float> scale(n);
        std::vector<int32_t> sum(n);
        QuantizeInt8(w.data(), n, k, q.data(), scale.data(), sum.data());
        std::vector<float> got(size_t(m) * n), exact(size_t(m) * n), fp32(size_t(m) * n);
        LinearInt8(x.data(), q.data(), scale.data(), sum.data(), b.data(), got.data(), m, k, n);
        LinearRef(x.data(), w.data(), b.data(), fp32.data(), m, k, n);
        for (int i = 0; i < m; ++i) {
          const float* xi = x.data() + size_t(i) * k;
          double max_abs = 0;
          for (int p = 0; p < k; ++p) max_abs = std::max(max_abs, double(std::abs(xi[p])));
          const float row_scale = max_abs > 0 ? static_cast<float>(max_abs) / levels : 1.0f;
          const float inv = max_abs > 0 ? levels / static_cast<float>(max_abs) : 0.0f;
          for (int j = 0; j < n; ++j) {
            int64_t acc = 0;
            for (int p = 0; p < k; ++p) {
              acc += int64_t(std::nearbyint(std::clamp(xi[p] * inv, -float(levels), float(levels)))) *
                     q[size_t(j) * k + p];
            }
            exact[size_t(i) * n + j] = static_cast<float>(double(row_scale) * scale[j] * double(acc) + b[j]);
          }
        }
        ASSERT_LT(MaxRelError(got, exact), 1e-5) << "m=" << m << " k=" << k << " n=" << n;
        // Added to y (the residual), and activated, in the same pass.
        std::vector<float> added = fp32, activated(got.size()), want_activated = got;
        LinearInt8(x.data(), q.data(), scale.data(), sum.data(), b.data(), added.data(), m, k, n, Int8Result::kAdd);
        for (size_t i = 0; i < got.size(); ++i) ASSERT_NEAR(added[i], fp32[i] + got[i], 1e-5 * (1 + std::abs(got[i])));
        LinearInt8(x.data(), q.data(), scale.data(), sum.data(), b.data(), activated.data(), m, k, n,
                   Int8Result::kActivate, Activation::kGeluTanh);
        GeluTanh(want_activated.data(), static_cast<int64_t>(want_activated.size()));
        ASSERT_EQ(activated, want_activated);
        if (m * n >= 64 && k >= 33) {  // close to fp32 where there are enough values to say so
          double dot = 0, ng = 0, nf = 0;
          for (size_t i = 0; i < got.size(); ++i) {
            dot += double(got[i]) * fp32[i];
            ng += double(got[i]) * got[i];
            nf += double(fp32[i]) * fp32[i];
          }
          EXPECT_GT(dot / std::sqrt(ng * nf), 0.999) << "m=" << m << " k=" << k << " n=" << n;
        }
      }
    }
  }
}

// Weights packed once for the GEMM give what the same weights in rows give, in every form and with
// every epilogue (the sums may be ordered differently: fp32 and bf16 agree to rounding; int8 sums
// exactly).
TEST(Kernels, PackedWeightsGiveWhatTheirRowsGive) {
  std::mt19937 rng(12);
  int packed_shapes = 0;
  for (auto [m, k, n] :
       {std::tuple{1, 64, 48}, std::tuple{37, 768, 96}, std::tuple{50, 33, 7}, std::tuple{7, 512, 1536}}) {
    SCOPED_TRACE("m=" + std::to_string(m) + " k=" + std::to_string(k) + " n=" + std::to_string(n));
    auto x = Random(size_t(m) * k, &rng), w = Random(size_t(n) * k, &rng, 0.1f), b = Random(n, &rng);
    auto pack = [&](WeightType type, const void* rows) {
      std::vector<std::byte> packed(PackedWeightBytes(type, k, n));
      if (!packed.empty()) PackWeights(type, rows, k, n, packed.data());
      return packed;
    };
    auto close = [](const std::vector<float>& a, const std::vector<float>& b, double tolerance) {
      return MaxRelError(a, b) < tolerance;
    };
    const size_t out = size_t(m) * n;

    const std::vector<std::byte> w_packed = pack(WeightType::kF32, w.data());
    if (!w_packed.empty()) {
      ++packed_shapes;
      const auto* wp = reinterpret_cast<const float*>(w_packed.data());
      std::vector<float> rows(out), packed(out);
      Linear(x.data(), w.data(), b.data(), rows.data(), m, k, n);
      Linear(x.data(), wp, b.data(), packed.data(), m, k, n, Layout::kPacked);
      EXPECT_TRUE(close(packed, rows, 1e-5));
      auto residual = Random(out, &rng);
      std::vector<float> added_rows = residual, added_packed = residual;
      LinearAccumulate(x.data(), w.data(), b.data(), added_rows.data(), m, k, n);
      LinearAccumulate(x.data(), wp, b.data(), added_packed.data(), m, k, n, Layout::kPacked);
      EXPECT_TRUE(close(added_packed, added_rows, 1e-5));
      LinearActivate(x.data(), w.data(), b.data(), rows.data(), m, k, n, Activation::kGeluTanh);
      LinearActivate(x.data(), wp, b.data(), packed.data(), m, k, n, Activation::kGeluTanh, Layout::kPacked);
      EXPECT_TRUE(close(packed, rows, 1e-5));
    }

    std::vector<int8_t> q(w.size());
    std::vector<float> scale(n);
    std::vector<int32_t> sum(n);
    QuantizeInt8(w.data(), n, k, q.data(), scale.data(), sum.data());
    const std::vector<std::byte> q_packed = pack(WeightType::kS8, q.data());
    if (!q_packed.empty()) {
      const auto* qp = reinterpret_cast<const int8_t*>(q_packed.data());
      std::vector<float> rows(out), packed(out);
      LinearInt8(x.data(), q.data(), scale.data(), sum.data(), b.data(), rows.data(), m, k, n, Int8Result::kActivate,
                 Activation::kQuickGelu);
      LinearInt8(x.data(), qp, scale.data(), sum.data(), b.data(), packed.data(), m, k, n, Int8Result::kActivate,
                 Activation::kQuickGelu, Layout::kPacked);
      EXPECT_EQ(packed, rows);
    }

    if (!NativeBf16()) continue;
    std::vector<uint16_t> x16(x.size()), w16(w.size());
    ToBf16(x.data(), x16.data(), static_cast<int64_t>(x.size()));
    ToBf16(w.data(), w16.data(), static_cast<int64_t>(w.size()));
    const std::vector<std::byte> w16_packed = pack(WeightType::kBf16, w16.data());
    if (!w16_packed.empty()) {
      const auto* wp = reinterpret_cast<const uint16_t*>(w16_packed.data());
      std::vector<float> rows(out), packed(out);
      LinearBf16(x.data(), w16.data(), b.data(), rows.data(), m, k, n);
      LinearBf16(x.data(), wp, b.data(), packed.data(), m, k, n, Layout::kPacked);
      EXPECT_TRUE(close(packed, rows, 1e-5));
      auto residual = Random(out, &rng);
      std::vector<float> added_rows = residual, added_packed = residual;
      LinearAccumulate(x16.data(), w16.data(), b.data(), added_rows.data(), m, k, n);
      LinearAccumulate(x16.data(), wp, b.data(), added_packed.data(), m, k, n, Layout::kPacked);
      EXPECT_TRUE(close(added_packed, added_rows, 1e-5));
      std::vector<uint16_t> act_rows(out), act_packed(out);
      LinearActivate(x16.data(), w16.data(), b.data(), act_rows.data(), m, k, n, Activation::kQuickGelu);
      LinearActivate(x16.data(), wp, b.data(), act_packed.data(), m, k, n, Activation::kQuickGelu, Layout::kPacked);
      int apart = 0;  // bfloat16 results: at most one step apart
      for (size_t i = 0; i < out; ++i) apart = std::max(apart, std::abs(int(act_rows[i]) - int(act_packed[i])));
      EXPECT_LE(apart, 1);
    }
  }
  // oneDNN's AVX-512 kernels read blocked weights; its AVX2 GEMM reads plain ones (nothing packed).
  std::printf("packed fp32 weights for %d of 4 shapes (%s)\n", packed_shapes, DescribeIsa().c_str());
  if (DescribeIsa().find("avx512") != std::string::npos) {
    EXPECT_GT(packed_shapes, 0);
  }
}

TEST(Kernels, QuantizeInt8KeepsEachFeaturesScale) {
  const std::vector<float> w = {0.5f, -1.0f, 0.25f, 0.0f, 0.0f, 0.0f, 3.0f, 1.5f, -3.0f};
  std::vector<int8_t> q(w.size());
  std::vector<float> scale(3);
  std::vector<int32_t> sum(3);
  QuantizeInt8(w.data(), 3, 3, q.data(), scale.data(), sum.data());
  EXPECT_EQ(std::vector<int8_t>(q.begin(), q.begin() + 3), (std::vector<int8_t>{64, -127, 32}));
  EXPECT_FLOAT_EQ(scale[0], 1.0f / 127);
  EXPECT_EQ(sum[0], 64 - 127 + 32);
  EXPECT_EQ(std::vector<int8_t>(q.begin() + 3, q.begin() + 6), (std::vector<int8_t>{0, 0, 0}));  // all zero: scale 1
  EXPECT_FLOAT_EQ(scale[1], 1.0f);
  EXPECT_EQ(std::vector<int8_t>(q.begin() + 6, q.end()), (std::vector<int8_t>{127, 64, -127}));  // 63.5 to even
  EXPECT_FLOAT_EQ(scale[2], 3.0f / 127);
}

TEST(Kernels, ResizeFloatsIsTorchAntialiasedBilinear) {
  constexpr int kChannels = 3;
  std::mt19937 rng(5);
  std::uniform_real_distribution<float> u(-1, 1);
  std::vector<float> grid(8 * 8 * kChannels);
  for (float& v : grid) v = u(rng);
  // The same size: the input itself.
  std::vector<float> same(grid.size());
  ResizeFloats(grid.data(), 8, 8, kChannels, 8, 8, ResampleKernel::kTriangle, same.data());
  for (size_t i = 0; i < grid.size(); ++i) EXPECT_NEAR(same[i], grid[i], 1e-6);
  // Upscaling: plain bilinear with align_corners=False (source x = (x + 0.5) · in / out − 0.5,
  // clamped at the edges), per channel.
  constexpr int kOutH = 13, kOutW = 21;
  std::vector<float> up(kOutH * kOutW * kChannels);
  ResizeFloats(grid.data(), 8, 8, kChannels, kOutH, kOutW, ResampleKernel::kTriangle, up.data());
  auto source = [](int i, int in, int out) { return std::clamp((i + 0.5) * in / out - 0.5, 0.0, in - 1.0); };
  for (int y = 0; y < kOutH; ++y) {
    for (int x = 0; x < kOutW; ++x) {
      const double sy = source(y, 8, kOutH), sx = source(x, 8, kOutW);
      const int y0 = static_cast<int>(sy), x0 = static_cast<int>(sx);
      const int y1 = std::min(y0 + 1, 7), x1 = std::min(x0 + 1, 7);
      const double fy = sy - y0, fx = sx - x0;
      for (int c = 0; c < kChannels; ++c) {
        auto at = [&](int yy, int xx) { return grid[(yy * 8 + xx) * kChannels + c]; };
        const double want =
            (1 - fy) * ((1 - fx) * at(y0, x0) + fx * at(y0, x1)) + fy * ((1 - fx) * at(y1, x0) + fx * at(y1, x1));
        EXPECT_NEAR(up[(y * kOutW + x) * kChannels + c], want, 1e-5) << y << "," << x;
      }
    }
  }
  // Downscaling by 2 averages with a widened triangle: weights 1/8, 3/8, 3/8, 1/8 inside.
  std::vector<float> down(4 * 4 * kChannels);
  ResizeFloats(grid.data(), 8, 8, kChannels, 4, 4, ResampleKernel::kTriangle, down.data());
  auto row_weights = [](int o) {
    std::vector<double> w(8, 0.0);
    const double center = (o + 0.5) * 2;
    double sum = 0;
    for (int i = 0; i < 8; ++i) sum += w[i] = std::max(0.0, 1 - std::abs(i + 0.5 - center) / 2);
    for (double& v : w) v /= sum;
    return w;
  };
  for (int y = 0; y < 4; ++y) {
    for (int x = 0; x < 4; ++x) {
      const std::vector<double> wy = row_weights(y), wx = row_weights(x);
      double want = 0;
      for (int i = 0; i < 8; ++i) {
        for (int j = 0; j < 8; ++j) want += wy[i] * wx[j] * grid[(i * 8 + j) * kChannels + 1];
      }
      EXPECT_NEAR(down[(y * 4 + x) * kChannels + 1], want, 1e-5);
    }
  }
}

}  // namespace
}  // namespace imgsearch::kernels
