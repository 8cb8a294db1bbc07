// Fast paths against scalar references on odd shapes. Run a second time by ctest with
// IMGSEARCH_MAX_ISA=avx2 so the AVX2 kernels are checked on AVX-512 machines too.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
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
  std::mt19937 rng(3);
  for (int n : {1, 3, 17, 50}) {
    for (int n_head : {1, 2, 4}) {
      for (bool causal : {false, true}) {
        const int width = 32 * n_head;
        auto qkv = Random(size_t(n) * 3 * width, &rng);
        std::vector<float> out(size_t(n) * width), scratch(n);
        Attention(qkv.data(), out.data(), n, width, n_head, causal, scratch.data());
        EXPECT_LT(MaxRelError(out, AttentionRef(qkv, n, width, n_head, causal)), 1e-5)
            << "n=" << n << " heads=" << n_head << " causal=" << causal;
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
      std::vector<float> out(width), scratch(n);
      AttendOne(qkv.data(), kv.data(), out.data(), n, width, n_head, scratch.data());
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
  std::vector<float> batched(size_t(n_seqs) * seq_len * width), single(batched.size()), scratch(seq_len);
  AttentionBatch(qkv.data(), batched.data(), n_seqs, seq_len, width, n_head, false);
  for (int s = 0; s < n_seqs; ++s) {
    Attention(qkv.data() + size_t(s) * seq_len * 3 * width, single.data() + size_t(s) * seq_len * width, seq_len, width,
              n_head, false, scratch.data());
  }
  EXPECT_EQ(batched, single);
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
  }
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
