// The AVX2 kernel table against the scalar reference table, bit for bit, and
// the reference table against independent plain computations.
#include <gtest/gtest.h>

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "monoquant/half.hpp"
#include "quant/kernels.hpp"
#include "test_util.hpp"

using namespace monoquant;
using kernels::QuantKernels;
using mqtest::bits_of_float;
using mqtest::float_of_bits;

namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();
constexpr float kBf16Max = 0x1.fep127f;

std::vector<int64_t> test_lengths() {
  std::vector<int64_t> v;
  for (int64_t n = 0; n <= 70; ++n) v.push_back(n);
  for (int64_t n : {127, 128, 129, 1001, 4099}) v.push_back(n);
  return v;
}

// Guard elements after the last output element: a kernel writing past n
// changes them, and both tables start from the same sentinel.
constexpr int64_t kGuard = 40;

#define SKIP_WITHOUT_AVX2()                                                        \
  do {                                                                             \
    if (!mqtest::have_avx2()) GTEST_SKIP() << "CPU lacks AVX2/FMA/F16C";           \
  } while (0)

const QuantKernels& ref() { return kernels::reference_kernels(); }
const QuantKernels& simd() { return kernels::avx2_kernels(); }

// Mixed data: normal values at several scales, exact zeros of both signs,
// subnormals, and a few large values.
std::vector<float> mixed_floats(std::mt19937& gen, std::size_t n) {
  std::vector<float> v(n);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::uniform_int_distribution<int> kind(0, 9);
  for (auto& x : v) {
    switch (kind(gen)) {
      case 0: x = 0.0f; break;
      case 1: x = -0.0f; break;
      case 2: x = nd(gen) * 1e-39f; break;  // subnormal
      case 3: x = nd(gen) * 1e4f; break;
      case 4: x = mqtest::random_finite_float(gen); break;
      default: x = nd(gen); break;
    }
  }
  return v;
}

// Round half to even computed from floor, without nearbyint.
double round_half_even(double v) {
  const double f = std::floor(v);
  const double diff = v - f;
  if (diff < 0.5) return f;
  if (diff > 0.5) return f + 1;
  return std::fmod(f, 2.0) == 0.0 ? f : f + 1;
}

}  // namespace

// ------------------------------------------------------------ absmax / minmax

TEST(Kernels, AbsmaxBitsMatchesReference) {
  SKIP_WITHOUT_AVX2();
  std::mt19937 gen(mqtest::kSeed);
  for (int64_t n : test_lengths()) {
    for (int off = 0; off < 4; ++off) {
      std::vector<float> buf(static_cast<std::size_t>(n + off));
      auto data = mixed_floats(gen, static_cast<std::size_t>(n));
      std::copy(data.begin(), data.end(), buf.begin() + off);
      const float* x = buf.data() + off;
      EXPECT_EQ(simd().absmax_bits(x, n), ref().absmax_bits(x, n)) << "n=" << n << " off=" << off;
      // Independent oracle: the largest |x| (bit patterns of finite floats order like values).
      uint32_t expected = 0;
      for (int64_t i = 0; i < n; ++i) expected = std::max(expected, bits_of_float(std::fabs(x[i])));
      EXPECT_EQ(ref().absmax_bits(x, n), expected) << "n=" << n;
    }
  }
}

TEST(Kernels, AbsmaxBitsFlagsNonFinite) {
  SKIP_WITHOUT_AVX2();
  std::mt19937 gen(mqtest::kSeed + 1);
  const float specials[] = {kInf, -kInf, std::numeric_limits<float>::quiet_NaN(), -std::numeric_limits<float>::quiet_NaN(),
                            float_of_bits(0x7f800001u), float_of_bits(0xffc01234u)};
  for (int64_t n : test_lengths()) {
    if (n == 0) continue;
    for (float s : specials) {
      auto v = mixed_floats(gen, static_cast<std::size_t>(n));
      const auto pos = static_cast<std::size_t>(gen() % static_cast<uint32_t>(n));
      v[pos] = s;
      const uint32_t a = simd().absmax_bits(v.data(), n);
      const uint32_t r = ref().absmax_bits(v.data(), n);
      EXPECT_EQ(a, r) << "n=" << n << " pos=" << pos;
      EXPECT_GE(r, 0x7f800000u);
      EXPECT_EQ(r, bits_of_float(s) & 0x7fffffffu);  // finite values are all below any Inf/NaN
    }
  }
}

TEST(Kernels, MinmaxMatchesReference) {
  SKIP_WITHOUT_AVX2();
  std::mt19937 gen(mqtest::kSeed + 2);
  for (int64_t n : test_lengths()) {
    if (n == 0) continue;  // minmax needs a non-empty span
    for (int off = 0; off < 4; ++off) {
      std::vector<float> buf(static_cast<std::size_t>(n + off));
      auto data = mixed_floats(gen, static_cast<std::size_t>(n));
      std::copy(data.begin(), data.end(), buf.begin() + off);
      const float* x = buf.data() + off;
      float amin, amax, rmin, rmax;
      simd().minmax(x, n, &amin, &amax);
      ref().minmax(x, n, &rmin, &rmax);
      // Independent oracle, in double.
      double emin = x[0], emax = x[0];
      for (int64_t i = 1; i < n; ++i) {
        emin = std::min<double>(emin, x[i]);
        emax = std::max<double>(emax, x[i]);
      }
      EXPECT_EQ(rmin, emin);
      EXPECT_EQ(rmax, emax);
      // Compared as values: when the extreme is zero and the span holds both
      // +0 and -0, which of the two is returned depends on visiting order.
      // Callers only use min(min, 0) / max(max, 0), where the sign of a zero
      // does not matter (the affine tests check the codes agree).
      EXPECT_EQ(amin, rmin) << "n=" << n << " off=" << off;
      EXPECT_EQ(amax, rmax) << "n=" << n << " off=" << off;
    }
  }
}

TEST(Kernels, MinmaxBitExactWithoutSignedZeroTies) {
  SKIP_WITHOUT_AVX2();
  std::mt19937 gen(mqtest::kSeed + 3);
  for (int64_t n : test_lengths()) {
    if (n == 0) continue;
    for (int rep = 0; rep < 3; ++rep) {
      auto x = mqtest::normal_floats(gen, static_cast<std::size_t>(n), rep == 0 ? 1.0f : 1e-3f);
      if (rep == 2) {
        for (auto& v : x) v = std::fabs(v) + 1.0f;  // all positive, min is not 0
      }
      float amin, amax, rmin, rmax;
      simd().minmax(x.data(), n, &amin, &amax);
      ref().minmax(x.data(), n, &rmin, &rmax);
      EXPECT_EQ(bits_of_float(amin), bits_of_float(rmin)) << "n=" << n;
      EXPECT_EQ(bits_of_float(amax), bits_of_float(rmax)) << "n=" << n;
    }
  }
}

// ------------------------------------------------------------ quantize_i8

namespace {

struct QParams {
  float inv_scale;
  int32_t zero_point, qmin, qmax;
};

std::vector<QParams> qparam_cases() {
  std::vector<QParams> v;
  const float invs[] = {1.0f / 0.0173f, 4.0f, 127.0f / 3.1f, 0.5f, 7.0f / 2.5f, 1e30f};
  const int32_t ranges[][2] = {{-127, 127}, {-128, 127}, {-7, 7}, {-8, 7}};
  for (float inv : invs) {
    for (auto& r : ranges) {
      for (int32_t zp : {0, r[0], r[1], r[0] / 2 + 1, 3}) v.push_back({inv, zp, r[0], r[1]});
    }
  }
  return v;
}

// Data whose product with inv_scale lands exactly on k + 0.5 (inv_scale is a
// power of two there), plus random values and extremes that must clamp.
std::vector<float> quantize_inputs(std::mt19937& gen, std::size_t n, float inv_scale) {
  std::vector<float> v(n);
  std::uniform_int_distribution<int> kind(0, 7);
  std::uniform_int_distribution<int> k(-140, 140);
  std::normal_distribution<float> nd(0.0f, 60.0f);
  for (auto& x : v) {
    switch (kind(gen)) {
      case 0: x = (static_cast<float>(k(gen)) + 0.5f) / inv_scale; break;  // tie (exact when inv is 2^k)
      case 1: x = static_cast<float>(k(gen)) / inv_scale; break;
      case 2: x = (gen() & 1 ? 1.0f : -1.0f) * (gen() & 2 ? FLT_MAX : 1e30f); break;  // clamps
      case 3: x = gen() & 1 ? 0.0f : -0.0f; break;
      default: x = nd(gen) / inv_scale; break;
    }
  }
  return v;
}

}  // namespace

TEST(Kernels, QuantizeI8MatchesReference) {
  SKIP_WITHOUT_AVX2();
  std::mt19937 gen(mqtest::kSeed + 4);
  const auto cases = qparam_cases();
  for (int64_t n : test_lengths()) {
    for (int xo = 0; xo < 4; ++xo) {
      const int qo = (xo * 3 + static_cast<int>(n)) % 4;  // output byte offset
      const QParams& p = cases[gen() % cases.size()];
      std::vector<float> buf(static_cast<std::size_t>(n + xo));
      auto data = quantize_inputs(gen, static_cast<std::size_t>(n), p.inv_scale);
      std::copy(data.begin(), data.end(), buf.begin() + xo);
      const float* x = buf.data() + xo;
      std::vector<int8_t> a(static_cast<std::size_t>(n + qo + kGuard), int8_t{0x5a});
      std::vector<int8_t> r = a;
      simd().quantize_i8(x, n, p.inv_scale, p.zero_point, p.qmin, p.qmax, a.data() + qo);
      ref().quantize_i8(x, n, p.inv_scale, p.zero_point, p.qmin, p.qmax, r.data() + qo);
      ASSERT_EQ(a, r) << "n=" << n << " xo=" << xo << " qo=" << qo << " inv=" << p.inv_scale << " zp=" << p.zero_point
                      << " range=[" << p.qmin << ", " << p.qmax << "]";
    }
  }
}

TEST(Kernels, QuantizeI8AllParamsLongSpans) {
  SKIP_WITHOUT_AVX2();
  std::mt19937 gen(mqtest::kSeed + 5);
  for (const QParams& p : qparam_cases()) {
    for (int64_t n : {int64_t{97}, int64_t{1001}}) {
      auto x = quantize_inputs(gen, static_cast<std::size_t>(n), p.inv_scale);
      std::vector<int8_t> a(static_cast<std::size_t>(n)), r(static_cast<std::size_t>(n));
      simd().quantize_i8(x.data(), n, p.inv_scale, p.zero_point, p.qmin, p.qmax, a.data());
      ref().quantize_i8(x.data(), n, p.inv_scale, p.zero_point, p.qmin, p.qmax, r.data());
      ASSERT_EQ(a, r) << "inv=" << p.inv_scale << " zp=" << p.zero_point << " [" << p.qmin << ", " << p.qmax << "]";
    }
  }
}

// The reference itself against the documented formula, with round-half-even
// computed independently of nearbyint.
TEST(Kernels, ReferenceQuantizeRoundsHalfToEvenAndClamps) {
  std::mt19937 gen(mqtest::kSeed + 6);
  for (const QParams& p : qparam_cases()) {
    const int64_t n = 513;
    auto x = quantize_inputs(gen, static_cast<std::size_t>(n), p.inv_scale);
    std::vector<int8_t> q(static_cast<std::size_t>(n));
    ref().quantize_i8(x.data(), n, p.inv_scale, p.zero_point, p.qmin, p.qmax, q.data());
    for (int64_t i = 0; i < n; ++i) {
      const float product = x[i] * p.inv_scale;
      double e = round_half_even(static_cast<double>(product)) + p.zero_point;
      e = std::clamp<double>(e, p.qmin, p.qmax);
      ASSERT_EQ(q[i], static_cast<int8_t>(e)) << "x=" << x[i] << " inv=" << p.inv_scale << " zp=" << p.zero_point;
    }
  }
  // Exact ties: 0.5 -> 0, 1.5 -> 2, 2.5 -> 2, -0.5 -> 0, -1.5 -> -2, -2.5 -> -2.
  const float ties[] = {0.5f, 1.5f, 2.5f, 3.5f, -0.5f, -1.5f, -2.5f, -3.5f, 126.5f, -126.5f};
  const float inv = 0.25f;  // x * inv == tie exactly
  std::vector<float> x;
  for (float t : ties) x.push_back(t / inv);
  std::vector<int8_t> r(x.size()), a(x.size());
  ref().quantize_i8(x.data(), static_cast<int64_t>(x.size()), inv, 0, -128, 127, r.data());
  for (std::size_t i = 0; i < x.size(); ++i) {
    const double v = ties[i];
    const double expect = std::fmod(std::floor(v), 2.0) == 0.0 ? std::floor(v) : std::ceil(v);
    EXPECT_EQ(r[i], static_cast<int8_t>(expect)) << "tie " << v;
  }
  if (mqtest::have_avx2()) {
    // Long enough for the vector loop to handle them, not the tail.
    std::vector<float> xl;
    for (int rep = 0; rep < 8; ++rep) xl.insert(xl.end(), x.begin(), x.end());
    std::vector<int8_t> rl(xl.size()), al(xl.size());
    ref().quantize_i8(xl.data(), static_cast<int64_t>(xl.size()), inv, 0, -128, 127, rl.data());
    simd().quantize_i8(xl.data(), static_cast<int64_t>(xl.size()), inv, 0, -128, 127, al.data());
    EXPECT_EQ(al, rl);
  }
}

// ------------------------------------------------------------ dequantize_i8

TEST(Kernels, DequantizeI8MatchesReferenceAndFormula) {
  std::mt19937 gen(mqtest::kSeed + 7);
  const float scales[] = {0.0173f, 1.0f, 3.1f / 127.0f, 1e-30f, 1e30f, FLT_MIN};
  for (int64_t n : test_lengths()) {
    for (int off = 0; off < 4; ++off) {
      const float scale = scales[gen() % std::size(scales)];
      const int32_t zp = static_cast<int32_t>(gen() % 256) - 128;
      std::vector<int8_t> qbuf(static_cast<std::size_t>(n + off));
      for (auto& v : qbuf) v = static_cast<int8_t>(gen());
      const int8_t* q = qbuf.data() + off;
      std::vector<float> r(static_cast<std::size_t>(n + off + kGuard), -7.0f), a = r;
      ref().dequantize_i8(q, n, scale, zp, r.data() + off);
      for (int64_t i = 0; i < n; ++i) {
        // (q - zp) * scale is exact in double; rounding it to float is the single rounding.
        const float expect = static_cast<float>(static_cast<double>(q[i] - zp) * scale);
        ASSERT_EQ(bits_of_float(r[static_cast<std::size_t>(off + i)]), bits_of_float(expect));
      }
      if (mqtest::have_avx2()) {
        simd().dequantize_i8(q, n, scale, zp, a.data() + off);
        for (std::size_t i = 0; i < a.size(); ++i) {
          ASSERT_EQ(bits_of_float(a[i]), bits_of_float(r[i])) << "n=" << n << " off=" << off << " i=" << i;
        }
      }
    }
  }
}

// The SQNR energies: the reference against a double oracle, the AVX2 table
// against the reference (float sums in another order: relative 1e-5).
TEST(Kernels, ErrorEnergyI8MatchesOracle) {
  std::mt19937 gen(mqtest::kSeed + 17);
  for (int64_t n : test_lengths()) {
    for (int off = 0; off < 3; ++off) {
      const float scale = 0.013f;
      const int32_t zp = static_cast<int32_t>(gen() % 21) - 10;
      std::vector<int8_t> qbuf(static_cast<std::size_t>(n + off));
      for (auto& v : qbuf) v = static_cast<int8_t>(gen());
      const auto xs = mqtest::normal_floats(gen, static_cast<std::size_t>(n + off));
      const int8_t* q = qbuf.data() + off;
      const float* x = xs.data() + off;
      double want_x = 0, want_e = 0;
      for (int64_t i = 0; i < n; ++i) {
        const double d = double{x[i]} - double(q[i] - zp) * scale;
        want_x += double{x[i]} * x[i];
        want_e += d * d;
      }
      double rx = 1.5, re = 2.5;  // accumulates onto what is there
      ref().error_energy_i8(x, q, n, scale, zp, &rx, &re);
      ASSERT_NEAR(rx - 1.5, want_x, 1e-5 * want_x + 1e-9) << n;
      ASSERT_NEAR(re - 2.5, want_e, 1e-5 * want_e + 1e-9) << n;
      if (mqtest::have_avx2()) {
        double ax = 1.5, ae = 2.5;
        simd().error_energy_i8(x, q, n, scale, zp, &ax, &ae);
        ASSERT_NEAR(ax, rx, 1e-5 * rx) << "n=" << n << " off=" << off;
        ASSERT_NEAR(ae, re, 1e-5 * re) << "n=" << n << " off=" << off;
      }
    }
  }
}

// ------------------------------------------------------------ int4 packing

TEST(Kernels, PackUnpackI4MatchReferenceAndLayout) {
  std::mt19937 gen(mqtest::kSeed + 8);
  for (int64_t n : test_lengths()) {
    for (int off = 0; off < 4; ++off) {
      std::vector<int8_t> qbuf(static_cast<std::size_t>(n + off));
      for (auto& v : qbuf) v = static_cast<int8_t>(static_cast<int>(gen() % 16) - 8);
      const int8_t* q = qbuf.data() + off;
      const std::size_t bytes = static_cast<std::size_t>((n + 1) / 2);
      std::vector<uint8_t> r(bytes + off + kGuard, 0xa5), a = r;
      ref().pack_i4(q, n, r.data() + off);
      // Layout: low nibble first, nibble = q + 8, odd n leaves the last high nibble 0.
      for (int64_t i = 0; i < n; ++i) {
        const uint8_t byte = r[static_cast<std::size_t>(off + i / 2)];
        const int nib = (i % 2 == 0) ? (byte & 0xf) : (byte >> 4);
        ASSERT_EQ(nib, q[i] + 8) << "n=" << n << " i=" << i;
      }
      if (n % 2) {
        EXPECT_EQ(r[off + bytes - 1] >> 4, 0) << "n=" << n;
      }
      for (std::size_t i = 0; i < r.size(); ++i) {
        if (i < static_cast<std::size_t>(off) || i >= off + bytes) {
          ASSERT_EQ(r[i], 0xa5) << "reference wrote byte " << i;
        }
      }
      // Round trip through the reference.
      std::vector<int8_t> back(static_cast<std::size_t>(n + off + kGuard), 99), back_a = back;
      ref().unpack_i4(r.data() + off, n, back.data() + off);
      for (int64_t i = 0; i < n; ++i) ASSERT_EQ(back[static_cast<std::size_t>(off + i)], q[i]);

      if (mqtest::have_avx2()) {
        simd().pack_i4(q, n, a.data() + off);
        ASSERT_EQ(a, r) << "pack n=" << n << " off=" << off;
        simd().unpack_i4(r.data() + off, n, back_a.data() + off);
        ASSERT_EQ(back_a, back) << "unpack n=" << n << " off=" << off;
      }
    }
  }
}

TEST(Kernels, UnpackI4ArbitraryBytes) {
  SKIP_WITHOUT_AVX2();
  std::mt19937 gen(mqtest::kSeed + 9);
  for (int64_t n : test_lengths()) {
    for (int off = 0; off < 4; ++off) {
      std::vector<uint8_t> p(static_cast<std::size_t>((n + 1) / 2 + off));
      for (auto& b : p) b = static_cast<uint8_t>(gen());
      std::vector<int8_t> r(static_cast<std::size_t>(n + off + kGuard), 77), a = r;
      ref().unpack_i4(p.data() + off, n, r.data() + off);
      simd().unpack_i4(p.data() + off, n, a.data() + off);
      ASSERT_EQ(a, r) << "n=" << n << " off=" << off;
      for (int64_t i = 0; i < n; ++i) {
        const uint8_t byte = p[static_cast<std::size_t>(off + i / 2)];
        const int nib = (i % 2 == 0) ? (byte & 0xf) : (byte >> 4);
        ASSERT_EQ(r[static_cast<std::size_t>(off + i)], nib - 8);
      }
    }
  }
}

// ------------------------------------------------------------ float16 / bfloat16

namespace {

std::vector<float> half_inputs(std::mt19937& gen, std::size_t n) {
  std::vector<float> v(n);
  std::uniform_int_distribution<int> kind(0, 9);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  const float near_limits[] = {65504.0f, 65505.0f, 65519.0f, 65519.996f, 65520.0f, 65520.004f, 65535.0f, 65536.0f,
                               1e6f, FLT_MAX, 0x1.fep127f, std::nextafter(0x1.fep127f, kInf),
                               float_of_bits(0x7f7f7fffu), float_of_bits(0x7f7f8000u),
                               0x1p-14f, 0x1p-24f, 0x1p-25f, 0x1.8p-25f, 0x1p-26f, 0x1.ffcp-15f};
  for (auto& x : v) {
    switch (kind(gen)) {
      case 0: x = u(gen) * 0x1p-14f; break;   // f16 subnormal range
      case 1: x = u(gen) * 0x1p-24f; break;   // below the f16 subnormal LSB
      case 2: x = u(gen) * 1e-39f; break;     // f32 subnormal
      case 3: x = near_limits[gen() % std::size(near_limits)] * (gen() & 1 ? 1.0f : -1.0f); break;
      case 4: x = mqtest::random_finite_float(gen); break;
      case 5: {  // exact f16 midpoints: an f16 value plus half its ulp
        const uint16_t h = static_cast<uint16_t>(gen() % 0x7c00u);
        const float lo = f16_bits_to_f32(h), hi = f16_bits_to_f32(static_cast<uint16_t>(h + 1));
        x = static_cast<float>((static_cast<double>(lo) + hi) / 2) * (gen() & 1 ? 1.0f : -1.0f);
        break;
      }
      case 6: {  // exact bf16 midpoints
        const uint32_t b = (gen() % 0x7f80u) << 16;
        x = float_of_bits(b | 0x8000u | (gen() & 0x80000000u));
        break;
      }
      default: x = u(gen) * 70000.0f; break;
    }
  }
  return v;
}

}  // namespace

TEST(Kernels, F32ToF16MatchesReference) {
  SKIP_WITHOUT_AVX2();
  std::mt19937 gen(mqtest::kSeed + 10);
  for (float clamp : {kInf, f16_max, 1000.0f}) {
    for (int64_t n : test_lengths()) {
      for (int off = 0; off < 4; ++off) {
        std::vector<float> buf(static_cast<std::size_t>(n + off));
        auto data = half_inputs(gen, static_cast<std::size_t>(n));
        std::copy(data.begin(), data.end(), buf.begin() + off);
        const int ho = 3 - off;
        std::vector<uint16_t> r(static_cast<std::size_t>(n + ho + kGuard), 0xbeef), a = r;
        ref().f32_to_f16(buf.data() + off, n, clamp, r.data() + ho);
        simd().f32_to_f16(buf.data() + off, n, clamp, a.data() + ho);
        ASSERT_EQ(a, r) << "n=" << n << " off=" << off << " clamp=" << clamp;
      }
    }
  }
}

TEST(Kernels, F32ToBf16MatchesReference) {
  SKIP_WITHOUT_AVX2();
  std::mt19937 gen(mqtest::kSeed + 11);
  for (float clamp : {kInf, kBf16Max, 1000.0f}) {
    for (int64_t n : test_lengths()) {
      for (int off = 0; off < 4; ++off) {
        std::vector<float> buf(static_cast<std::size_t>(n + off));
        auto data = half_inputs(gen, static_cast<std::size_t>(n));
        std::copy(data.begin(), data.end(), buf.begin() + off);
        const int ho = (off + 1) % 4;
        std::vector<uint16_t> r(static_cast<std::size_t>(n + ho + kGuard), 0xbeef), a = r;
        ref().f32_to_bf16(buf.data() + off, n, clamp, r.data() + ho);
        simd().f32_to_bf16(buf.data() + off, n, clamp, a.data() + ho);
        ASSERT_EQ(a, r) << "n=" << n << " off=" << off << " clamp=" << clamp;
      }
    }
  }
}

// The reference cast clamps before rounding: check it against the scalar
// bit functions applied to the clamped value.
TEST(Kernels, ReferenceHalfCastsClampThenRound) {
  std::mt19937 gen(mqtest::kSeed + 12);
  const auto x = half_inputs(gen, 5000);
  for (float clamp : {kInf, f16_max, 1000.0f}) {
    std::vector<uint16_t> h(x.size()), b(x.size());
    ref().f32_to_f16(x.data(), static_cast<int64_t>(x.size()), clamp, h.data());
    ref().f32_to_bf16(x.data(), static_cast<int64_t>(x.size()), clamp, b.data());
    for (std::size_t i = 0; i < x.size(); ++i) {
      const float c = std::fabs(x[i]) > clamp ? std::copysign(clamp, x[i]) : x[i];
      ASSERT_EQ(h[i], f32_to_f16_bits(c)) << x[i];
      ASSERT_EQ(b[i], f32_to_bf16_bits(c)) << x[i];
    }
  }
  // Saturation limits: the largest finite values, never Inf.
  for (float s : {1.0f, -1.0f}) {
    for (float v : {65520.0f, 1e10f, FLT_MAX}) {
      const float in = v * s;
      uint16_t h;
      ref().f32_to_f16(&in, 1, f16_max, &h);
      EXPECT_EQ(f16_bits_to_f32(h), s * 65504.0f) << in;
    }
    for (float v : {float_of_bits(0x7f7f8000u), FLT_MAX}) {  // would round to Inf unclamped
      const float in = v * s;
      uint16_t b;
      ref().f32_to_bf16(&in, 1, kBf16Max, &b);
      EXPECT_EQ(bf16_bits_to_f32(b), s * kBf16Max) << in;
      ref().f32_to_bf16(&in, 1, kInf, &b);
      EXPECT_TRUE(std::isinf(bf16_bits_to_f32(b))) << in;
    }
  }
}

TEST(Kernels, F16ToF32AllBitPatterns) {
  SKIP_WITHOUT_AVX2();
  for (int off = 0; off < 4; ++off) {
    std::vector<uint16_t> h(65536 + off);
    for (uint32_t i = 0; i < 65536; ++i) h[off + i] = static_cast<uint16_t>(i);
    std::vector<float> r(65536 + off + kGuard, 3.0f), a = r;
    ref().f16_to_f32(h.data() + off, 65536, r.data() + off);
    simd().f16_to_f32(h.data() + off, 65536, a.data() + off);
    for (std::size_t i = 0; i < r.size(); ++i) {
      if (std::isnan(r[i])) {
        ASSERT_TRUE(std::isnan(a[i])) << "pattern " << i - off;
        ASSERT_EQ(std::signbit(a[i]), std::signbit(r[i]));
      } else {
        ASSERT_EQ(bits_of_float(a[i]), bits_of_float(r[i])) << "index " << i << " off " << off;
      }
    }
  }
  // Every short length and misalignment on a slice of patterns.
  std::mt19937 gen(mqtest::kSeed + 13);
  for (int64_t n : test_lengths()) {
    for (int off = 0; off < 4; ++off) {
      std::vector<uint16_t> h(static_cast<std::size_t>(n + off));
      for (auto& v : h) v = static_cast<uint16_t>(gen() & 0xffff);
      std::vector<float> r(static_cast<std::size_t>(n + kGuard + 4), 3.0f), a = r;
      const int xo = (off + 2) % 4;
      ref().f16_to_f32(h.data() + off, n, r.data() + xo);
      simd().f16_to_f32(h.data() + off, n, a.data() + xo);
      for (std::size_t i = 0; i < r.size(); ++i) {
        if (std::isnan(r[i])) {
          ASSERT_TRUE(std::isnan(a[i]));
        } else {
          ASSERT_EQ(bits_of_float(a[i]), bits_of_float(r[i])) << "n=" << n << " i=" << i;
        }
      }
    }
  }
}

TEST(Kernels, Bf16ToF32AllBitPatterns) {
  SKIP_WITHOUT_AVX2();
  for (int off = 0; off < 4; ++off) {
    std::vector<uint16_t> b(65536 + off);
    for (uint32_t i = 0; i < 65536; ++i) b[off + i] = static_cast<uint16_t>(i);
    std::vector<float> r(65536 + off + kGuard, 3.0f), a = r;
    ref().bf16_to_f32(b.data() + off, 65536, r.data() + off);
    simd().bf16_to_f32(b.data() + off, 65536, a.data() + off);
    for (std::size_t i = 0; i < r.size(); ++i) ASSERT_EQ(bits_of_float(a[i]), bits_of_float(r[i])) << i;
  }
  std::mt19937 gen(mqtest::kSeed + 14);
  for (int64_t n : test_lengths()) {
    for (int off = 0; off < 4; ++off) {
      std::vector<uint16_t> h(static_cast<std::size_t>(n + off));
      for (auto& v : h) v = static_cast<uint16_t>(gen() & 0xffff);
      std::vector<float> r(static_cast<std::size_t>(n + kGuard + 4), 3.0f), a = r;
      ref().bf16_to_f32(h.data() + off, n, r.data() + 3 - off);
      simd().bf16_to_f32(h.data() + off, n, a.data() + 3 - off);
      for (std::size_t i = 0; i < r.size(); ++i) ASSERT_EQ(bits_of_float(a[i]), bits_of_float(r[i])) << "n=" << n;
    }
  }
}

// ------------------------------------------------------------ dispatch

TEST(Kernels, DispatchFollowsActiveIsa) {
  mqtest::StateGuard guard;
  set_isa(Isa::scalar);
  EXPECT_EQ(active_isa(), Isa::scalar);
  EXPECT_EQ(&kernels::active_kernels(), &kernels::reference_kernels());
  EXPECT_EQ(&kernels::kernels_for(Isa::scalar), &kernels::reference_kernels());
  EXPECT_EQ(name_of(Isa::scalar), "scalar");
  EXPECT_EQ(name_of(Isa::avx2), "avx2");
  if (mqtest::have_avx2()) {
    set_isa(Isa::avx2);
    EXPECT_EQ(active_isa(), Isa::avx2);
    EXPECT_EQ(&kernels::active_kernels(), &kernels::avx2_kernels());
    EXPECT_EQ(&kernels::kernels_for(Isa::avx2), &kernels::avx2_kernels());
  } else {
    EXPECT_TRUE(mqtest::throws_error([] { set_isa(Isa::avx2); }, ErrorKind::unsupported));
    EXPECT_EQ(best_isa(), Isa::scalar);
  }
}
