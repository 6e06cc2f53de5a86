// Quantized linear kernels: every kernel set against an oracle written here
// from the unpacked weights (integer modes: bit-exact; float modes: within a
// documented tolerance), odd shapes, thread counts, constructed worst cases
// for int16 saturation, and argument errors.
//
// Tolerances (float-activation modes, where summation order differs):
//   |y - y_oracle| <= 2e-5 * sum_k |x_k * w_k| + 1e-6   (w dequantized, oracle in double)
// Integer modes (W8A8 dynamic/static, W4A8) must match the oracle exactly:
// their int32 sums are exact and the float epilogue is specified.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "monoquant/half.hpp"
#include "monoquant/linear.hpp"
#include "test_util.hpp"

namespace {

using monoquant::DType;
using monoquant::LinearMode;
using monoquant::LinearOptions;
using monoquant::PackedLinearWeight;
using monoquant::TensorView;
using monoquant::WeightFormat;

// Every kernel set this CPU runs, from the library's registry.
struct KernelSet {
  std::string name;
};

std::vector<KernelSet> kernel_sets() {
  std::vector<KernelSet> v;
  for (const std::string& name : monoquant::available_linear_kernel_sets()) v.push_back({name});
  return v;
}

void use(const KernelSet& ks) {
  monoquant::use_linear_kernel_set(ks.name);
  ASSERT_EQ(monoquant::linear_kernel_name(), ks.name);
}

struct VnniGuard {
  ~VnniGuard() { monoquant::use_linear_kernel_set("best"); }
};

struct Shape3 {
  int64_t m, k, n;
};

const std::vector<Shape3>& odd_shapes() {
  static const std::vector<Shape3> s{{1, 1, 1},    {1, 7, 9},     {2, 13, 17},  {3, 33, 8},   {4, 64, 16},
                                     {5, 100, 33}, {7, 129, 65},  {17, 383, 31}, {1, 1000, 41}, {64, 67, 23},
                                     {129, 35, 19}, {512, 29, 13}, {1100, 37, 40},  // > 1024 rows: AVX-512 panel in parts
                                     {16, 64, 16}, {32, 256, 40}, {48, 1536, 24}, {33, 320, 9},   // whole AMX tiles and tails
                                     {100, 384, 40}, {256, 64, 48}, {80, 1536, 57}};  // AMX wide tiles
  return s;
}

std::vector<float> randn(std::mt19937& gen, std::size_t n, float sd = 1.0f) { return mqtest::normal_floats(gen, n, sd); }

std::vector<int8_t> rand_codes(std::mt19937& gen, std::size_t n, int lo, int hi) {
  std::uniform_int_distribution<int> d(lo, hi);
  std::vector<int8_t> v(n);
  for (auto& x : v) x = static_cast<int8_t>(d(gen));
  return v;
}

std::vector<float> rand_scales(std::mt19937& gen, std::size_t n) {
  std::uniform_real_distribution<float> d(0.001f, 0.05f);
  std::vector<float> v(n);
  for (auto& x : v) x = d(gen);
  return v;
}

PackedLinearWeight pack_i8(const std::vector<int8_t>& codes, const std::vector<float>& scales, int64_t n, int64_t k) {
  return monoquant::pack_linear_int8(TensorView(codes.data(), DType::i8, {n, k}), TensorView(scales.data(), DType::f32, {n}));
}

// int4 codes in [-8, 7] -> the library's row layout (low nibble first, q + 8).
std::vector<uint8_t> pack_nibbles(const std::vector<int8_t>& q, int64_t n, int64_t k) {
  const int64_t rb = (k + 1) / 2;
  std::vector<uint8_t> p(static_cast<std::size_t>(n * rb), 0);
  for (int64_t r = 0; r < n; ++r)
    for (int64_t i = 0; i < k; ++i) {
      const auto nib = static_cast<uint8_t>(q[r * k + i] + 8);
      p[r * rb + i / 2] |= (i % 2) ? static_cast<uint8_t>(nib << 4) : nib;
    }
  return p;
}

PackedLinearWeight pack_i4(const std::vector<int8_t>& q, const std::vector<float>& scales, int64_t n, int64_t k,
                           int64_t g) {
  const auto bytes = pack_nibbles(q, n, k);
  const int64_t groups = (k + g - 1) / g;
  return monoquant::pack_linear_int4(TensorView(bytes.data(), DType::u8, {n, (k + 1) / 2}), k,
                                     TensorView(scales.data(), DType::f32, {n, groups}), g);
}

std::vector<float> run(const PackedLinearWeight& w, const std::vector<float>& x, int64_t m, const float* bias,
                       const LinearOptions& o) {
  std::vector<float> y(static_cast<std::size_t>(m * w.n), -12345.0f);
  monoquant::linear_into(x.data(), m, w.k, w.view(), bias, o, y.data(), w.n);
  return y;
}

// ---- oracles written from the unpacked weights ----------------------------

// Per-row symmetric int8 activation codes, the documented rule:
// s = absmax / 127, q = clamp(nearbyint(x * (1 / s)), -127, 127).
void oracle_quantize_rows(const std::vector<float>& x, int64_t m, int64_t k, std::vector<int32_t>& q,
                          std::vector<float>& s) {
  q.assign(static_cast<std::size_t>(m * k), 0);
  s.assign(static_cast<std::size_t>(m), 0.0f);
  for (int64_t r = 0; r < m; ++r) {
    float amax = 0.0f;
    for (int64_t i = 0; i < k; ++i) amax = std::max(amax, std::fabs(x[r * k + i]));
    s[r] = amax / 127.0f;
    if (s[r] == 0.0f) continue;
    const float inv = 1.0f / s[r];
    for (int64_t i = 0; i < k; ++i) {
      q[r * k + i] = static_cast<int32_t>(std::clamp(std::nearbyint(x[r * k + i] * inv), -127.0f, 127.0f));
    }
  }
}

std::vector<float> oracle_w8a8(const std::vector<int32_t>& q, const std::vector<float>& rs, int32_t zp,
                               const std::vector<int8_t>& w, const std::vector<float>& ws, const float* bias, int64_t m,
                               int64_t k, int64_t n) {
  std::vector<float> y(static_cast<std::size_t>(m * n));
  for (int64_t r = 0; r < m; ++r)
    for (int64_t c = 0; c < n; ++c) {
      int64_t acc = 0;
      for (int64_t i = 0; i < k; ++i) acc += int64_t{q[r * k + i] - zp} * w[c * k + i];
      y[r * n + c] = std::fma(static_cast<float>(acc), rs[r] * ws[c], bias ? bias[c] : 0.0f);
    }
  return y;
}

std::vector<float> oracle_w4a8(const std::vector<int32_t>& q, const std::vector<float>& rs, const std::vector<int8_t>& w,
                               const std::vector<float>& ws, const float* bias, int64_t m, int64_t k, int64_t n,
                               int64_t g) {
  const int64_t groups = (k + g - 1) / g;
  std::vector<float> y(static_cast<std::size_t>(m * n));
  for (int64_t r = 0; r < m; ++r)
    for (int64_t c = 0; c < n; ++c) {
      float f = 0.0f;
      for (int64_t gi = 0; gi < groups; ++gi) {
        int64_t acc = 0;
        for (int64_t i = gi * g; i < std::min(k, (gi + 1) * g); ++i) acc += int64_t{q[r * k + i]} * w[c * k + i];
        f = std::fma(static_cast<float>(acc), ws[c * groups + gi], f);
      }
      y[r * n + c] = std::fma(f, rs[r], bias ? bias[c] : 0.0f);
    }
  return y;
}

// Float oracle in double: y = sum x * wdeq + bias, plus the per-element
// tolerance bound 2e-5 * sum |x * wdeq| + 1e-6.
void oracle_float(const std::vector<float>& x, const std::vector<double>& wdeq, const float* bias, int64_t m, int64_t k,
                  int64_t n, std::vector<double>& y, std::vector<double>& tol) {
  y.assign(static_cast<std::size_t>(m * n), 0.0);
  tol.assign(static_cast<std::size_t>(m * n), 0.0);
  for (int64_t r = 0; r < m; ++r)
    for (int64_t c = 0; c < n; ++c) {
      double acc = 0, mag = 0;
      for (int64_t i = 0; i < k; ++i) {
        acc += double{x[r * k + i]} * wdeq[c * k + i];
        mag += std::fabs(double{x[r * k + i]} * wdeq[c * k + i]);
      }
      y[r * n + c] = acc + (bias ? bias[c] : 0.0);
      tol[r * n + c] = 2e-5 * mag + 1e-6;
    }
}

void expect_bits_equal(const std::vector<float>& got, const std::vector<float>& want, const std::string& what) {
  ASSERT_EQ(got.size(), want.size());
  for (std::size_t i = 0; i < got.size(); ++i) {
    ASSERT_EQ(mqtest::bits_of_float(got[i]), mqtest::bits_of_float(want[i]))
        << what << " element " << i << ": " << got[i] << " vs " << want[i];
  }
}

void expect_close(const std::vector<float>& got, const std::vector<double>& want, const std::vector<double>& tol,
                  const std::string& what) {
  ASSERT_EQ(got.size(), want.size());
  for (std::size_t i = 0; i < got.size(); ++i) {
    ASSERT_LE(std::fabs(got[i] - want[i]), tol[i]) << what << " element " << i << ": " << got[i] << " vs " << want[i];
  }
}

// The tolerance a set promises for weight-only layers of m rows: oracle_float's
// bound, except on bf16 hardware (AMX-BF16 tiles on the amx set, vdpbf16ps on
// the avx512_vnni set where the CPU has AVX-512 BF16; from the set's
// bf16_weight_only_min_rows()), where the activations (and int4 / f16 weights)
// are rounded to bf16, 2^-9 relative each: the bound becomes
// 2^-7 * sum |x * wdeq| + 1e-6. ks must be the set in use.
std::vector<double> tolerance_for(const KernelSet& ks, int64_t m, std::vector<double> tol) {
  EXPECT_EQ(monoquant::linear_kernel_name(), ks.name);
  const int64_t from = monoquant::bf16_weight_only_min_rows();
  if (from == 0 || m < from) return tol;
  for (double& t : tol) t = (t - 1e-6) / 2e-5 * 0x1p-7 + 1e-6;
  return tol;
}

std::string label(const KernelSet& ks, const Shape3& s) {
  return std::string(ks.name) + " m=" + std::to_string(s.m) + " k=" + std::to_string(s.k) + " n=" + std::to_string(s.n);
}

// ---- W8A8 -----------------------------------------------------------------

TEST(Linear, DynamicInt8MatchesOracleBitExactOnOddShapes) {
  mqtest::StateGuard guard;
  VnniGuard vg;
  std::mt19937 gen(mqtest::kSeed);
  for (const Shape3& s : odd_shapes()) {
    const auto x = randn(gen, static_cast<std::size_t>(s.m * s.k));
    const auto w = rand_codes(gen, static_cast<std::size_t>(s.n * s.k), -128, 127);
    const auto ws = rand_scales(gen, static_cast<std::size_t>(s.n));
    const auto bias = randn(gen, static_cast<std::size_t>(s.n));
    const PackedLinearWeight p = pack_i8(w, ws, s.n, s.k);
    std::vector<int32_t> q;
    std::vector<float> rs;
    oracle_quantize_rows(x, s.m, s.k, q, rs);
    const auto want = oracle_w8a8(q, rs, 0, w, ws, bias.data(), s.m, s.k, s.n);
    for (const KernelSet& ks : kernel_sets()) {
      use(ks);
      for (int threads : {1, 2}) {
        monoquant::set_num_threads(threads);
        expect_bits_equal(run(p, x, s.m, bias.data(), {LinearMode::dynamic_int8}), want, label(ks, s));
      }
    }
  }
}

TEST(Linear, StaticInt8MatchesOracleBitExact) {
  mqtest::StateGuard guard;
  VnniGuard vg;
  std::mt19937 gen(mqtest::kSeed + 1);
  for (const Shape3& s : odd_shapes()) {
    const auto x = randn(gen, static_cast<std::size_t>(s.m * s.k));
    const auto w = rand_codes(gen, static_cast<std::size_t>(s.n * s.k), -127, 127);
    const auto ws = rand_scales(gen, static_cast<std::size_t>(s.n));
    for (const int32_t zp : {0, -128, 37, 127}) {
      const float act_scale = 0.02f;
      // Static codes: clamp(nearbyint(x * (1/s)) + zp, -128, 127); some clip.
      std::vector<int32_t> q(x.size());
      for (std::size_t i = 0; i < x.size(); ++i) {
        q[i] = static_cast<int32_t>(std::clamp(std::nearbyint(x[i] * (1.0f / act_scale)) + static_cast<float>(zp), -128.0f, 127.0f));
      }
      std::vector<float> rs(static_cast<std::size_t>(s.m), act_scale);
      const auto want = oracle_w8a8(q, rs, zp, w, ws, nullptr, s.m, s.k, s.n);
      const PackedLinearWeight p = pack_i8(w, ws, s.n, s.k);
      for (const KernelSet& ks : kernel_sets()) {
        use(ks);
        LinearOptions o{LinearMode::static_int8, act_scale, zp};
        expect_bits_equal(run(p, x, s.m, nullptr, o), want, label(ks, s) + " zp=" + std::to_string(zp));
      }
    }
  }
}

// vpmaddubsw on a + 128 would saturate here: every pair sum is 2 * 127 * 128
// (dynamic) or 2 * 255 * 128 (static, zp = -128 and x at the top of the
// range). Dynamic rows also meet the AVX2 sign trick at its bound: |w| = 128
// (w = -128) times |a| = 127, 32512 per pair.
TEST(Linear, Int8WorstCaseInputsDoNotSaturate) {
  mqtest::StateGuard guard;
  VnniGuard vg;
  const int64_t m = 3, k = 1027, n = 11;
  std::vector<float> x(static_cast<std::size_t>(m * k));
  for (int64_t i = 0; i < k; ++i) {
    x[i] = 1.0f;                  // row 0: all q = +127
    x[k + i] = -1.0f;             // row 1: all q = -127
    x[2 * k + i] = (i % 2) ? 1.0f : -1.0f;
  }
  std::vector<int8_t> w(static_cast<std::size_t>(n * k));
  for (int64_t c = 0; c < n; ++c)
    for (int64_t i = 0; i < k; ++i) w[c * k + i] = c % 3 == 0 ? -128 : (c % 3 == 1 ? 127 : ((i % 2) ? 127 : -128));
  const std::vector<float> ws(static_cast<std::size_t>(n), 1.0f);
  const PackedLinearWeight p = pack_i8(w, ws, n, k);
  std::vector<int32_t> q;
  std::vector<float> rs;
  oracle_quantize_rows(x, m, k, q, rs);
  const auto want = oracle_w8a8(q, rs, 0, w, ws, nullptr, m, k, n);
  // Magnitude check on the oracle itself: row 0 x column 0 is 127 * -128 * k.
  ASSERT_FLOAT_EQ(want[0], static_cast<float>(-127.0 * 128.0 * k) * rs[0]);
  for (const KernelSet& ks : kernel_sets()) {
    use(ks);
    expect_bits_equal(run(p, x, m, nullptr, {LinearMode::dynamic_int8}), want, std::string(ks.name) + " dynamic");
  }
  // Static: scale 1/127 with zp -128 puts x = 1 at code 127 -> q - zp = 255.
  const float act_scale = 1.0f / 127.0f;
  std::vector<int32_t> qs(x.size());
  for (std::size_t i = 0; i < x.size(); ++i) {
    qs[i] = static_cast<int32_t>(std::clamp(std::nearbyint(x[i] * (1.0f / act_scale)) - 128.0f, -128.0f, 127.0f));
  }
  const std::vector<float> rss(static_cast<std::size_t>(m), act_scale);
  const auto want_s = oracle_w8a8(qs, rss, -128, w, ws, nullptr, m, k, n);
  for (const KernelSet& ks : kernel_sets()) {
    use(ks);
    expect_bits_equal(run(p, x, m, nullptr, {LinearMode::static_int8, act_scale, -128}), want_s,
                      std::string(ks.name) + " static");
  }
  // Narrow (7-bit) weights at their bound, +-64: the u8-activation kernels'
  // pair sums reach 2 * 255 * 64 = 32640 with the static codes above.
  std::vector<int8_t> w7(w.size());
  for (std::size_t i = 0; i < w.size(); ++i) w7[i] = w[i] < 0 ? -monoquant::kNarrowCodeMax : monoquant::kNarrowCodeMax;
  const PackedLinearWeight p7 = pack_i8(w7, ws, n, k);
  ASSERT_TRUE(p7.view().narrow_codes());
  const auto want7 = oracle_w8a8(q, rs, 0, w7, ws, nullptr, m, k, n);
  const auto want7_s = oracle_w8a8(qs, rss, -128, w7, ws, nullptr, m, k, n);
  for (const KernelSet& ks : kernel_sets()) {
    use(ks);
    expect_bits_equal(run(p7, x, m, nullptr, {LinearMode::dynamic_int8}), want7, std::string(ks.name) + " 7-bit dynamic");
    expect_bits_equal(run(p7, x, m, nullptr, {LinearMode::static_int8, act_scale, -128}), want7_s,
                      std::string(ks.name) + " 7-bit static");
  }
}

// ---- int4 -------------------------------------------------------------------

struct Int4Case {
  Shape3 s;
  int64_t g;
};

const std::vector<Int4Case>& int4_cases() {
  static const std::vector<Int4Case> c{{{1, 8, 3}, 32},      {{1, 100, 9}, 32},    {{2, 200, 17}, 64},
                                       {{3, 300, 33}, 128},  {{5, 33, 8}, 32},     {{1, 4096, 16}, 128},
                                       {{13, 130, 24}, 64},  {{64, 77, 5}, 32},    {{512, 40, 7}, 32},
                                       {{129, 257, 12}, 128}, {{4, 64, 10}, 8},  {{37, 300, 40}, 64},
                                       {{6, 520, 70}, 32},   {{64, 384, 40}, 128}, {{100, 1536, 24}, 64},
                                       {{48, 200, 9}, 128}};  // the last three: AMX W4A8 (whole, partial groups)
  return c;
}

TEST(Linear, Int4DynamicW4A8MatchesOracleBitExact) {
  mqtest::StateGuard guard;
  VnniGuard vg;
  std::mt19937 gen(mqtest::kSeed + 2);
  for (const Int4Case& c : int4_cases()) {
    const Shape3& s = c.s;
    const int64_t groups = (s.k + c.g - 1) / c.g;
    const auto x = randn(gen, static_cast<std::size_t>(s.m * s.k));
    const auto w = rand_codes(gen, static_cast<std::size_t>(s.n * s.k), -8, 7);
    const auto ws = rand_scales(gen, static_cast<std::size_t>(s.n * groups));
    const auto bias = randn(gen, static_cast<std::size_t>(s.n));
    const PackedLinearWeight p = pack_i4(w, ws, s.n, s.k, c.g);
    std::vector<int32_t> q;
    std::vector<float> rs;
    oracle_quantize_rows(x, s.m, s.k, q, rs);
    const auto want = oracle_w4a8(q, rs, w, ws, bias.data(), s.m, s.k, s.n, c.g);
    for (const KernelSet& ks : kernel_sets()) {
      use(ks);
      for (int threads : {1, 2}) {
        monoquant::set_num_threads(threads);
        expect_bits_equal(run(p, x, s.m, bias.data(), {LinearMode::dynamic_int8}), want,
                          label(ks, s) + " g=" + std::to_string(c.g));
      }
    }
  }
}

// Static W4A8: codes clamp(nearbyint(x * (1/s)), -128, 127) with one
// calibrated scale, zero point 0 (the int4 kernels take symmetric codes).
TEST(Linear, Int4StaticW4A8MatchesOracleBitExact) {
  mqtest::StateGuard guard;
  VnniGuard vg;
  std::mt19937 gen(mqtest::kSeed + 20);
  for (const Int4Case& c : int4_cases()) {
    const Shape3& s = c.s;
    const int64_t groups = (s.k + c.g - 1) / c.g;
    const auto x = randn(gen, static_cast<std::size_t>(s.m * s.k));
    const auto w = rand_codes(gen, static_cast<std::size_t>(s.n * s.k), -8, 7);
    const auto ws = rand_scales(gen, static_cast<std::size_t>(s.n * groups));
    const float act_scale = 0.015f;  // |x| > 1.9 clips to -128 / 127
    std::vector<int32_t> q(x.size());
    for (std::size_t i = 0; i < x.size(); ++i) {
      q[i] = static_cast<int32_t>(std::clamp(std::nearbyint(x[i] * (1.0f / act_scale)), -128.0f, 127.0f));
    }
    const std::vector<float> rs(static_cast<std::size_t>(s.m), act_scale);
    const auto want = oracle_w4a8(q, rs, w, ws, nullptr, s.m, s.k, s.n, c.g);
    const PackedLinearWeight p = pack_i4(w, ws, s.n, s.k, c.g);
    for (const KernelSet& ks : kernel_sets()) {
      use(ks);
      for (int threads : {1, 2}) {
        monoquant::set_num_threads(threads);
        expect_bits_equal(run(p, x, s.m, nullptr, {LinearMode::static_int8, act_scale, 0}), want,
                          label(ks, s) + " g=" + std::to_string(c.g));
      }
    }
  }
  const std::vector<float> x(64, 0.5f);
  const auto w = rand_codes(gen, 8 * 64, -8, 7);
  const PackedLinearWeight p = pack_i4(w, std::vector<float>(8, 0.01f), 8, 64, 64);
  std::vector<float> y(8);
  try {
    monoquant::linear_into(x.data(), 1, 64, p.view(), nullptr, {LinearMode::static_int8, 0.01f, 3}, y.data(), 8);
    FAIL() << "a zero point with int4 weights must be refused";
  } catch (const monoquant::Error& e) {
    EXPECT_EQ(e.kind(), monoquant::ErrorKind::unsupported);
    EXPECT_NE(std::string(e.what()).find("symmetric"), std::string::npos) << e.what();
  }
}

// unpack_linear gives back exactly what was packed, for every format and odd
// shapes (N not a multiple of 8, K not a multiple of the chunk, odd K).
TEST(Linear, UnpackInvertsPack) {
  std::mt19937 gen(mqtest::kSeed + 21);
  for (const Shape3& s : odd_shapes()) {
    const int64_t n = s.n, k = s.k;
    const auto w8 = rand_codes(gen, static_cast<std::size_t>(n * k), -128, 127);
    const auto s8 = rand_scales(gen, static_cast<std::size_t>(n));
    const auto u8 = monoquant::unpack_linear(pack_i8(w8, s8, n, k).view());
    ASSERT_EQ(u8.codes.shape(), (monoquant::Shape{n, k}));
    ASSERT_EQ(u8.scales.shape(), (monoquant::Shape{n, 1}));
    ASSERT_EQ(0, std::memcmp(u8.codes.data(), w8.data(), w8.size())) << "int8 " + label(kernel_sets()[0], s);
    ASSERT_EQ(0, std::memcmp(u8.scales.data(), s8.data(), s8.size() * 4));

    const int64_t g = 8 * (1 + k % 3);
    const int64_t groups = (k + g - 1) / g;
    const auto w4 = rand_codes(gen, static_cast<std::size_t>(n * k), -8, 7);
    const auto s4 = rand_scales(gen, static_cast<std::size_t>(n * groups));
    const auto bytes = pack_nibbles(w4, n, k);
    const auto u4 = monoquant::unpack_linear(pack_i4(w4, s4, n, k, g).view());
    ASSERT_EQ(u4.codes.shape(), (monoquant::Shape{n, (k + 1) / 2}));
    ASSERT_EQ(u4.scales.shape(), (monoquant::Shape{n, groups}));
    ASSERT_EQ(0, std::memcmp(u4.codes.data(), bytes.data(), bytes.size())) << "int4 " + label(kernel_sets()[0], s);
    ASSERT_EQ(0, std::memcmp(u4.scales.data(), s4.data(), s4.size() * 4));

    std::vector<uint16_t> h(static_cast<std::size_t>(n * k));
    for (auto& v : h) v = static_cast<uint16_t>(gen());
    for (const DType dt : {DType::f16, DType::bf16}) {
      const auto uh = monoquant::unpack_linear(monoquant::pack_linear_half(TensorView(h.data(), dt, {n, k})).view());
      ASSERT_EQ(uh.codes.dtype(), dt);
      ASSERT_EQ(0, std::memcmp(uh.codes.data(), h.data(), h.size() * 2)) << "half " + label(kernel_sets()[0], s);
    }
  }
}

// Largest int16 partial sums of the vpmaddubsw path: nibble 15 (q = 7) or 0
// (q = -8) against activations +-127 over whole groups of 128.
TEST(Linear, Int4WorstCaseInputsDoNotSaturate) {
  mqtest::StateGuard guard;
  VnniGuard vg;
  const int64_t m = 2, k = 256, n = 4, g = 128;
  std::vector<float> x(static_cast<std::size_t>(m * k));
  for (int64_t i = 0; i < k; ++i) {
    x[i] = 3.0f;
    x[k + i] = -3.0f;
  }
  std::vector<int8_t> w(static_cast<std::size_t>(n * k));
  for (int64_t c = 0; c < n; ++c)
    for (int64_t i = 0; i < k; ++i) w[c * k + i] = c == 0 ? 7 : (c == 1 ? -8 : (c == 2 ? ((i % 2) ? 7 : -8) : 0));
  const std::vector<float> ws(static_cast<std::size_t>(n * 2), 1.0f);
  const PackedLinearWeight p = pack_i4(w, ws, n, k, g);
  std::vector<int32_t> q;
  std::vector<float> rs;
  oracle_quantize_rows(x, m, k, q, rs);
  const auto want = oracle_w4a8(q, rs, w, ws, nullptr, m, k, n, g);
  ASSERT_FLOAT_EQ(want[0], static_cast<float>(127.0 * 7 * k) * rs[0]);
  for (const KernelSet& ks : kernel_sets()) {
    use(ks);
    expect_bits_equal(run(p, x, m, nullptr, {LinearMode::dynamic_int8}), want, ks.name);
  }
}

TEST(Linear, Int4WeightOnlyMatchesFloatOracle) {
  mqtest::StateGuard guard;
  VnniGuard vg;
  std::mt19937 gen(mqtest::kSeed + 3);
  for (const Int4Case& c : int4_cases()) {
    const Shape3& s = c.s;
    const int64_t groups = (s.k + c.g - 1) / c.g;
    const auto x = randn(gen, static_cast<std::size_t>(s.m * s.k));
    const auto w = rand_codes(gen, static_cast<std::size_t>(s.n * s.k), -8, 7);
    const auto ws = rand_scales(gen, static_cast<std::size_t>(s.n * groups));
    const auto bias = randn(gen, static_cast<std::size_t>(s.n));
    std::vector<double> wdeq(w.size());
    for (int64_t r = 0; r < s.n; ++r)
      for (int64_t i = 0; i < s.k; ++i) wdeq[r * s.k + i] = static_cast<double>(w[r * s.k + i]) * ws[r * groups + i / c.g];
    std::vector<double> want, tol;
    oracle_float(x, wdeq, bias.data(), s.m, s.k, s.n, want, tol);
    const PackedLinearWeight p = pack_i4(w, ws, s.n, s.k, c.g);
    for (const KernelSet& ks : kernel_sets()) {
      use(ks);
      for (int threads : {1, 2}) {
        monoquant::set_num_threads(threads);
        expect_close(run(p, x, s.m, bias.data(), {}), want, tolerance_for(ks, s.m, tol),
                     label(ks, s) + " g=" + std::to_string(c.g));
      }
    }
  }
}

// ---- weight-only int8 and half ------------------------------------------------

TEST(Linear, Int8WeightOnlyMatchesFloatOracle) {
  mqtest::StateGuard guard;
  VnniGuard vg;
  std::mt19937 gen(mqtest::kSeed + 4);
  for (const Shape3& s : odd_shapes()) {
    const auto x = randn(gen, static_cast<std::size_t>(s.m * s.k));
    const auto w = rand_codes(gen, static_cast<std::size_t>(s.n * s.k), -128, 127);
    const auto ws = rand_scales(gen, static_cast<std::size_t>(s.n));
    const auto bias = randn(gen, static_cast<std::size_t>(s.n));
    std::vector<double> wdeq(w.size());
    for (int64_t r = 0; r < s.n; ++r)
      for (int64_t i = 0; i < s.k; ++i) wdeq[r * s.k + i] = static_cast<double>(w[r * s.k + i]) * ws[r];
    std::vector<double> want, tol;
    oracle_float(x, wdeq, bias.data(), s.m, s.k, s.n, want, tol);
    const PackedLinearWeight p = pack_i8(w, ws, s.n, s.k);
    for (const KernelSet& ks : kernel_sets()) {
      use(ks);
      expect_close(run(p, x, s.m, bias.data(), {}), want, tolerance_for(ks, s.m, tol), label(ks, s));
    }
  }
}

TEST(Linear, HalfWeightsMatchFloatOracle) {
  mqtest::StateGuard guard;
  VnniGuard vg;
  std::mt19937 gen(mqtest::kSeed + 5);
  for (const bool bf16 : {false, true}) {
    for (const Shape3& s : odd_shapes()) {
      const auto x = randn(gen, static_cast<std::size_t>(s.m * s.k));
      const auto wf = randn(gen, static_cast<std::size_t>(s.n * s.k), 0.1f);
      std::vector<uint16_t> h(wf.size());
      std::vector<double> wdeq(wf.size());
      for (std::size_t i = 0; i < wf.size(); ++i) {
        h[i] = bf16 ? monoquant::f32_to_bf16_bits(wf[i]) : monoquant::f32_to_f16_bits(wf[i]);
        wdeq[i] = bf16 ? monoquant::bf16_bits_to_f32(h[i]) : monoquant::f16_bits_to_f32(h[i]);
      }
      std::vector<double> want, tol;
      oracle_float(x, wdeq, nullptr, s.m, s.k, s.n, want, tol);
      const PackedLinearWeight p =
          monoquant::pack_linear_half(TensorView(h.data(), bf16 ? DType::bf16 : DType::f16, {s.n, s.k}));
      for (const KernelSet& ks : kernel_sets()) {
        use(ks);
        expect_close(run(p, x, s.m, nullptr, {}), want, tolerance_for(ks, s.m, tol),
                     label(ks, s) + (bf16 ? " bf16" : " f16"));
      }
    }
  }
}

// ---- behaviour ------------------------------------------------------------------

TEST(Linear, StridedInputRowsAndLeadingDims) {
  mqtest::StateGuard guard;
  std::mt19937 gen(mqtest::kSeed + 6);
  const int64_t m = 6, k = 21, n = 10, ld = 32;
  const auto xs = randn(gen, static_cast<std::size_t>(m * ld));
  std::vector<float> packed_x(static_cast<std::size_t>(m * k));
  for (int64_t r = 0; r < m; ++r) std::memcpy(&packed_x[r * k], &xs[r * ld], k * sizeof(float));
  const auto w = rand_codes(gen, static_cast<std::size_t>(n * k), -127, 127);
  const auto ws = rand_scales(gen, static_cast<std::size_t>(n));
  const PackedLinearWeight p = pack_i8(w, ws, n, k);
  for (const LinearMode mode : {LinearMode::weight_only, LinearMode::dynamic_int8}) {
    const auto want = run(p, packed_x, m, nullptr, {mode});
    const monoquant::Tensor strided =
        monoquant::linear(TensorView(xs.data(), DType::f32, {m, k}, {ld, 1}), p.view(), nullptr, {mode});
    ASSERT_EQ(strided.shape(), (monoquant::Shape{m, n}));
    const monoquant::Tensor three_d =
        monoquant::linear(TensorView(packed_x.data(), DType::f32, {2, 3, k}), p.view(), nullptr, {mode});
    ASSERT_EQ(three_d.shape(), (monoquant::Shape{2, 3, n}));
    for (int64_t i = 0; i < m * n; ++i) {
      ASSERT_EQ(strided.as<float>()[i], want[i]);
      ASSERT_EQ(three_d.as<float>()[i], want[i]);
    }
  }
}

// Rows of x with a stride: the float kernels must not read past K, even in a
// chunk that K ends inside (the packed weight is zero there, but NaN times
// zero is NaN). The gaps between rows hold NaN to catch any such read.
TEST(Linear, WeightOnlyKernelsIgnoreMemoryPastK) {
  mqtest::StateGuard guard;
  VnniGuard vg;
  std::mt19937 gen(mqtest::kSeed + 11);
  for (const int64_t m : {1, 2, 3, 5}) {
    const int64_t k = 101, n = 40, ld = 112, g = 32, groups = (k + g - 1) / g;  // K ends inside a chunk
    std::vector<float> xs(static_cast<std::size_t>(m * ld), std::numeric_limits<float>::quiet_NaN());
    const auto x = randn(gen, static_cast<std::size_t>(m * k));
    for (int64_t r = 0; r < m; ++r) std::memcpy(&xs[r * ld], &x[r * k], k * sizeof(float));
    const auto w4 = rand_codes(gen, static_cast<std::size_t>(n * k), -8, 7);
    const auto w8 = rand_codes(gen, static_cast<std::size_t>(n * k), -127, 127);
    const PackedLinearWeight p4 = pack_i4(w4, rand_scales(gen, static_cast<std::size_t>(n * groups)), n, k, g);
    const PackedLinearWeight p8 = pack_i8(w8, rand_scales(gen, static_cast<std::size_t>(n)), n, k);
    std::vector<uint16_t> h(static_cast<std::size_t>(n * k));
    for (auto& v : h) v = static_cast<uint16_t>(0x3000 + gen() % 0x800);  // f16 in [0.125, 0.5)
    const PackedLinearWeight p16 = monoquant::pack_linear_half(TensorView(h.data(), DType::f16, {n, k}));
    for (const PackedLinearWeight* p : {&p4, &p8, &p16}) {
      for (const KernelSet& ks : kernel_sets()) {
        use(ks);
        const auto want = run(*p, x, m, nullptr, {});
        std::vector<float> y(static_cast<std::size_t>(m * n));
        monoquant::linear_into(xs.data(), m, ld, p->view(), nullptr, {}, y.data(), n);
        for (std::size_t i = 0; i < y.size(); ++i) {
          ASSERT_TRUE(std::isfinite(y[i])) << ks.name << " m=" << m << " i=" << i;
          ASSERT_EQ(y[i], want[i]) << ks.name << " m=" << m << " i=" << i;
        }
      }
    }
  }
}

TEST(Linear, NonFiniteRowGivesNaNRowOthersUnaffected) {
  mqtest::StateGuard guard;
  VnniGuard vg;
  const int64_t m = 3, k = 40, n = 9;
  std::vector<float> x(static_cast<std::size_t>(m * k), 0.5f);
  x[k + 7] = std::numeric_limits<float>::infinity();
  std::vector<int8_t> w(static_cast<std::size_t>(n * k), 3);
  const std::vector<float> ws(static_cast<std::size_t>(n), 0.1f);
  const PackedLinearWeight p = pack_i8(w, ws, n, k);
  for (const KernelSet& ks : kernel_sets()) {
    use(ks);
    const auto y = run(p, x, m, nullptr, {LinearMode::dynamic_int8});
    for (int64_t c = 0; c < n; ++c) {
      EXPECT_TRUE(std::isnan(y[k * 0 + n + c])) << ks.name;
      EXPECT_NEAR(y[c], 0.5 * 3 * 0.1 * k, 0.05) << ks.name;
      EXPECT_EQ(y[c], y[2 * n + c]);
    }
  }
}

TEST(Linear, ZeroRowGivesBias) {
  const int64_t k = 16, n = 3;
  std::vector<float> x(static_cast<std::size_t>(k), 0.0f);
  std::vector<int8_t> w(static_cast<std::size_t>(n * k), 5);
  const std::vector<float> ws(static_cast<std::size_t>(n), 0.1f);
  const std::vector<float> bias{1.0f, -2.0f, 3.5f};
  const PackedLinearWeight p = pack_i8(w, ws, n, k);
  const auto y = run(p, x, 1, bias.data(), {LinearMode::dynamic_int8});
  EXPECT_EQ(y, bias);
}

TEST(Linear, RejectsBadArguments) {
  std::vector<int8_t> w(12, 1);
  std::vector<float> s(3, 0.1f);
  const PackedLinearWeight p = pack_i8(w, s, 3, 4);
  std::vector<float> x(4, 1.0f), y(3);
  using monoquant::Error;
  EXPECT_THROW(monoquant::linear_into(x.data(), 1, 4, p.view(), nullptr, {LinearMode::static_int8, 0.0f, 0}, y.data(), 3),
               Error);
  EXPECT_THROW(monoquant::linear_into(x.data(), 1, 4, p.view(), nullptr, {LinearMode::static_int8, 0.1f, 200}, y.data(), 3),
               Error);
  std::vector<float> bad_scales{0.1f, -1.0f, 0.1f};
  EXPECT_THROW(pack_i8(w, bad_scales, 3, 4), Error);
  // int4: group not a multiple of 8; scales of the wrong shape.
  std::vector<int8_t> q(3 * 20, 0);
  std::vector<float> gs(3, 0.1f);
  EXPECT_THROW(pack_i4(q, gs, 3, 20, 12), Error);
  const auto bytes = pack_nibbles(q, 3, 20);
  EXPECT_THROW(monoquant::pack_linear_int4(TensorView(bytes.data(), DType::u8, {3, 10}), 20,
                                           TensorView(gs.data(), DType::f32, {3, 1}), 8),
               Error);
  // Half weights: weight-only only.
  std::vector<uint16_t> h(12, 0);
  const PackedLinearWeight ph = monoquant::pack_linear_half(TensorView(h.data(), DType::f16, {3, 4}));
  EXPECT_THROW(monoquant::linear_into(x.data(), 1, 4, ph.view(), nullptr, {LinearMode::dynamic_int8}, y.data(), 3), Error);
  EXPECT_THROW(monoquant::linear(TensorView(x.data(), DType::f32, {1, 3}), p.view(), nullptr, {}), Error);
  // A largest |code| outside [0, 128] (the last entry of sums) is a corrupt weight.
  std::vector<int32_t> sums(p.sums.as<int32_t>(), p.sums.as<int32_t>() + p.sums.numel());
  EXPECT_EQ(sums.back(), 1);
  sums.back() = 129;
  monoquant::PackedLinearWeightView bad = p.view();
  bad.sums = sums.data();
  try {
    monoquant::linear_into(x.data(), 1, 4, bad, nullptr, {LinearMode::dynamic_int8}, y.data(), 3);
    ADD_FAILURE() << "a corrupt largest |code| was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("largest |code|"), std::string::npos) << e.what();
  }
}

// act_smooth (SmoothQuant's factors) is x * smooth quantized: the bits of the
// same call on the multiplied rows, on every kernel set, per-row (dynamic,
// static, narrow 7-bit weights) and per activation group; weight-only refuses it.
TEST(Linear, ActSmoothIsTheMultipliedInput) {
  mqtest::StateGuard guard;
  VnniGuard vg;
  std::mt19937 gen(mqtest::kSeed + 77);
  for (const Shape3& s : {Shape3{1, 96, 40}, Shape3{37, 384, 24}, Shape3{130, 64, 48}}) {
    const auto x = randn(gen, static_cast<std::size_t>(s.m * s.k), 2.0f);
    std::vector<float> smooth(static_cast<std::size_t>(s.k));
    std::uniform_real_distribution<float> f(0.05f, 4.0f);
    for (auto& v : smooth) v = f(gen);
    std::vector<float> xs(x.size());
    for (int64_t r = 0; r < s.m; ++r)
      for (int64_t i = 0; i < s.k; ++i) xs[r * s.k + i] = x[r * s.k + i] * smooth[i];
    const auto ws = rand_scales(gen, static_cast<std::size_t>(s.n));
    const PackedLinearWeight w8 = pack_i8(rand_codes(gen, static_cast<std::size_t>(s.n * s.k), -127, 127), ws, s.n, s.k);
    const PackedLinearWeight w7 = pack_i8(rand_codes(gen, static_cast<std::size_t>(s.n * s.k), -63, 63), ws, s.n, s.k);
    const int64_t g = 32, groups = s.k / g;
    const auto gs = rand_scales(gen, static_cast<std::size_t>(s.n * groups));
    const auto gc = rand_codes(gen, static_cast<std::size_t>(s.n * s.k), -127, 127);
    const PackedLinearWeight wg = monoquant::pack_linear_int8_grouped(
        TensorView(gc.data(), DType::i8, {s.n, s.k}), TensorView(gs.data(), DType::f32, {s.n, groups}), g);
    LinearOptions dyn{LinearMode::dynamic_int8}, stat{LinearMode::static_int8, 0.03f, -11}, grp{LinearMode::dynamic_int8};
    grp.act_group_size = g;
    const std::vector<std::pair<const PackedLinearWeight*, LinearOptions>> cases{
        {&w8, dyn}, {&w8, stat}, {&w7, dyn}, {&w7, stat}, {&wg, grp}};
    for (const KernelSet& ks : kernel_sets()) {
      use(ks);
      for (const auto& [w, o] : cases) {
        const auto want = run(*w, xs, s.m, nullptr, o);
        LinearOptions with = o;
        with.act_smooth = smooth.data();
        expect_bits_equal(run(*w, x, s.m, nullptr, with), want,
                          ks.name + " m=" + std::to_string(s.m) + " k=" + std::to_string(s.k) + " mode " +
                              std::string(monoquant::name_of(o.mode)) + (o.act_group_size ? " groups" : ""));
      }
    }
    LinearOptions wo{LinearMode::weight_only};
    wo.act_smooth = smooth.data();
    EXPECT_THROW(run(w8, x, s.m, nullptr, wo), monoquant::Error);
  }
}

// ---- conv2d -----------------------------------------------------------------------

TEST(Linear, Conv2dMatchesDirectConvolution) {
  mqtest::StateGuard guard;
  VnniGuard vg;
  std::mt19937 gen(mqtest::kSeed + 7);
  const int64_t b = 2, c = 3, h = 9, wd = 7, o = 5, kh = 3, kw = 2;
  monoquant::Conv2dGeometry geo;
  geo.kernel_h = kh;
  geo.kernel_w = kw;
  geo.stride_h = 2;
  geo.stride_w = 1;
  geo.pad_h = 1;
  geo.pad_w = 1;
  geo.dilation_h = 1;
  geo.dilation_w = 2;
  const int64_t ho = (h + 2 - 2 - 1) / 2 + 1, wo = (wd + 2 - 2 - 1) / 1 + 1;
  const auto x = randn(gen, static_cast<std::size_t>(b * c * h * wd));
  const int64_t k = c * kh * kw;
  const auto w = rand_codes(gen, static_cast<std::size_t>(o * k), -127, 127);
  const auto ws = rand_scales(gen, static_cast<std::size_t>(o));
  const auto bias = randn(gen, static_cast<std::size_t>(o));
  const PackedLinearWeight p = pack_i8(w, ws, o, k);
  for (const KernelSet& ks : kernel_sets()) {
    use(ks);
    const monoquant::Tensor y =
        monoquant::conv2d(TensorView(x.data(), DType::f32, {b, c, h, wd}), p.view(), bias.data(), geo, {});
    ASSERT_EQ(y.shape(), (monoquant::Shape{b, o, ho, wo}));
    for (int64_t bi = 0; bi < b; ++bi)
      for (int64_t oc = 0; oc < o; ++oc)
        for (int64_t oy = 0; oy < ho; ++oy)
          for (int64_t ox = 0; ox < wo; ++ox) {
            double acc = bias[oc], mag = 0;
            for (int64_t ci = 0; ci < c; ++ci)
              for (int64_t i = 0; i < kh; ++i)
                for (int64_t j = 0; j < kw; ++j) {
                  const int64_t iy = oy * 2 - 1 + i, ix = ox - 1 + j * 2;
                  if (iy < 0 || iy >= h || ix < 0 || ix >= wd) continue;
                  const double t = double{x[((bi * c + ci) * h + iy) * wd + ix]} * w[oc * k + (ci * kh + i) * kw + j] * ws[oc];
                  acc += t;
                  mag += std::fabs(t);
                }
            const float got = y.as<float>()[((bi * o + oc) * ho + oy) * wo + ox];
            // bf16 hardware (ho * wo = 40 rows per image): bf16-rounded activations.
            const int64_t from = monoquant::bf16_weight_only_min_rows();
            const double rel = from && ho * wo >= from ? 0x1p-7 : 2e-5;
            ASSERT_NEAR(got, acc, rel * mag + 1e-5) << ks.name;
          }
  }
}

}  // namespace
