// Scalar float16 / bfloat16 conversions against an independent oracle built
// from ldexp and a table of representable values, and the tensor-level casts
// (cast_to_half, half_to_f32) against the scalar bit functions.
#include <gtest/gtest.h>

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "monoquant/float_cast.hpp"
#include "monoquant/half.hpp"
#include "monoquant/tensor.hpp"
#include "test_util.hpp"

using namespace monoquant;
using mqtest::bits_of_float;
using mqtest::float_of_bits;

namespace {

constexpr double kInfD = std::numeric_limits<double>::infinity();

// IEEE binary16 decoded from its fields.
double decode_f16(uint16_t h) {
  const int sign = h >> 15, exp = (h >> 10) & 0x1f, mant = h & 0x3ff;
  double v;
  if (exp == 0) v = std::ldexp(static_cast<double>(mant), -24);
  else if (exp == 31) v = mant == 0 ? kInfD : std::numeric_limits<double>::quiet_NaN();
  else v = std::ldexp(static_cast<double>(1024 + mant), exp - 25);
  return sign ? -v : v;
}

// bfloat16: 8 exponent bits (bias 127), 7 mantissa bits.
double decode_bf16(uint16_t b) {
  const int sign = b >> 15, exp = (b >> 7) & 0xff, mant = b & 0x7f;
  double v;
  if (exp == 0) v = std::ldexp(static_cast<double>(mant), -133);
  else if (exp == 255) v = mant == 0 ? kInfD : std::numeric_limits<double>::quiet_NaN();
  else v = std::ldexp(static_cast<double>(128 + mant), exp - 134);
  return sign ? -v : v;
}

// Round-to-nearest-even to a format given by its sorted non-negative finite
// values (index = bit pattern). One extra entry past the largest finite value
// stands for the next power of two, i.e. where Inf lives: reaching it means
// overflow.
struct RneOracle {
  std::vector<double> values;  // values[i] is the value of bit pattern i
  uint16_t inf_bits;

  uint16_t round(float xf) const {
    const double x = xf;
    const uint16_t sign = std::signbit(xf) ? 0x8000 : 0;
    const double a = std::fabs(x);
    // First entry > a; the lower neighbour is the one before it.
    const auto it = std::upper_bound(values.begin(), values.end(), a);
    if (it == values.end()) return sign | inf_bits;  // at or beyond the Inf stand-in
    const std::size_t hi = static_cast<std::size_t>(it - values.begin());
    const std::size_t lo = hi - 1;  // values[0] == 0 <= a
    const double dlo = a - values[lo], dhi = values[hi] - a;
    std::size_t pick;
    if (dlo < dhi) pick = lo;
    else if (dhi < dlo) pick = hi;
    else pick = (lo % 2 == 0) ? lo : hi;  // tie: even mantissa (even bit pattern)
    return static_cast<uint16_t>(sign | pick);
  }
};

const RneOracle& f16_oracle() {
  static const RneOracle o = [] {
    RneOracle r;
    for (uint32_t h = 0; h <= 0x7bff; ++h) r.values.push_back(decode_f16(static_cast<uint16_t>(h)));
    r.values.push_back(65536.0);  // 0x7c00: Inf
    r.inf_bits = 0x7c00;
    return r;
  }();
  return o;
}

const RneOracle& bf16_oracle() {
  static const RneOracle o = [] {
    RneOracle r;
    for (uint32_t b = 0; b <= 0x7f7f; ++b) r.values.push_back(decode_bf16(static_cast<uint16_t>(b)));
    r.values.push_back(std::ldexp(1.0, 128));  // 0x7f80: Inf
    r.inf_bits = 0x7f80;
    return r;
  }();
  return o;
}

// Floats spread over every scale that matters for 16-bit formats.
std::vector<float> probe_floats(std::mt19937& gen, std::size_t n) {
  std::vector<float> v;
  v.reserve(n);
  std::uniform_int_distribution<int> exp(-30, 18);
  std::uniform_real_distribution<double> mant(1.0, 2.0);
  std::uniform_int_distribution<int> kind(0, 5);
  while (v.size() < n) {
    const float s = gen() & 1 ? 1.0f : -1.0f;
    switch (kind(gen)) {
      case 0: v.push_back(mqtest::random_finite_float(gen)); break;
      case 1: {  // midpoint of two adjacent f16 values, and its float neighbours
        const uint16_t h = static_cast<uint16_t>(gen() % 0x7c00u);
        const float m = static_cast<float>((decode_f16(h) + decode_f16(static_cast<uint16_t>(h + 1))) / 2);
        v.push_back(s * m);
        v.push_back(s * std::nextafter(m, 0.0f));
        v.push_back(s * std::nextafter(m, FLT_MAX));
        break;
      }
      case 2: {  // midpoint of two adjacent bf16 values (exact in float)
        const uint16_t b = static_cast<uint16_t>(gen() % 0x7f80u);
        const float m = static_cast<float>((decode_bf16(b) + decode_bf16(static_cast<uint16_t>(b + 1))) / 2);
        v.push_back(s * m);
        v.push_back(s * std::nextafter(m, 0.0f));
        v.push_back(s * std::nextafter(m, FLT_MAX));
        break;
      }
      default: v.push_back(s * static_cast<float>(std::ldexp(mant(gen), exp(gen)))); break;
    }
  }
  const float fixed[] = {0.0f, -0.0f, 65504.0f, 65505.0f, 65519.0f, std::nextafter(65520.0f, 0.0f), 65520.0f,
                         65536.0f, 1e9f, FLT_MAX, FLT_MIN, 0x1p-149f, 0x1p-24f, 0x1p-25f, std::nextafter(0x1p-25f, 1.0f),
                         0x1.8p-24f, 0x1p-14f, std::nextafter(0x1p-14f, 0.0f), float_of_bits(0x7f7f7fffu),
                         float_of_bits(0x7f7f8000u), float_of_bits(0x7f7f8001u), std::numeric_limits<float>::infinity()};
  for (float f : fixed) {
    v.push_back(f);
    v.push_back(-f);
  }
  return v;
}

}  // namespace

// ------------------------------------------------------------ float16

TEST(Half, F16DecodeAllPatterns) {
  for (uint32_t i = 0; i < 65536; ++i) {
    const uint16_t h = static_cast<uint16_t>(i);
    const float got = f16_bits_to_f32(h);
    const double want = decode_f16(h);
    if (std::isnan(want)) {
      ASSERT_TRUE(std::isnan(got)) << std::hex << i;
      ASSERT_EQ(std::signbit(got), (i & 0x8000) != 0) << std::hex << i;
    } else {
      ASSERT_EQ(static_cast<double>(got), want) << std::hex << i;
      ASSERT_EQ(std::signbit(got), (i & 0x8000) != 0) << std::hex << i;  // -0 stays -0
    }
  }
}

TEST(Half, F16RoundTripAllPatterns) {
  for (uint32_t i = 0; i < 65536; ++i) {
    const uint16_t h = static_cast<uint16_t>(i);
    const uint16_t back = f32_to_f16_bits(f16_bits_to_f32(h));
    if ((h & 0x7c00) == 0x7c00 && (h & 0x3ff) != 0) {
      // NaN comes back as a quiet NaN of the same sign.
      ASSERT_EQ(back & 0x7c00, 0x7c00) << std::hex << i;
      ASSERT_NE(back & 0x3ff, 0) << std::hex << i;
      ASSERT_NE(back & 0x200, 0) << "not quiet: " << std::hex << back;
      ASSERT_EQ(back & 0x8000, h & 0x8000);
    } else {
      ASSERT_EQ(back, h) << std::hex << i;
    }
  }
}

TEST(Half, F32ToF16RoundsToNearestEven) {
  std::mt19937 gen(mqtest::kSeed + 20);
  const auto xs = probe_floats(gen, 300000);
  const RneOracle& o = f16_oracle();
  for (float x : xs) {
    ASSERT_EQ(f32_to_f16_bits(x), o.round(x)) << std::hexfloat << x;
  }
  // Exhaustive over the f16 subnormal / small-normal band, where the code
  // takes a different path: every float32 in [2^-26, 2^-13) with a stride.
  for (uint32_t b = bits_of_float(0x1p-26f); b < bits_of_float(0x1p-13f); b += 97) {
    const float x = float_of_bits(b);
    ASSERT_EQ(f32_to_f16_bits(x), o.round(x)) << std::hexfloat << x;
    ASSERT_EQ(f32_to_f16_bits(-x), o.round(-x)) << std::hexfloat << -x;
  }
}

TEST(Half, F16OverflowThreshold) {
  EXPECT_EQ(f16_max, static_cast<float>(decode_f16(0x7bff)));
  // The documented threshold is the midpoint between 65504 and 2^16.
  EXPECT_EQ(static_cast<double>(f16_overflow_threshold), (decode_f16(0x7bff) + 65536.0) / 2);
  EXPECT_EQ(f32_to_f16_bits(65519.0f), 0x7bff);
  EXPECT_EQ(f32_to_f16_bits(std::nextafter(65520.0f, 0.0f)), 0x7bff);
  EXPECT_EQ(f32_to_f16_bits(65520.0f), 0x7c00);
  EXPECT_EQ(f32_to_f16_bits(-65520.0f), 0xfc00);
  EXPECT_EQ(f32_to_f16_bits(std::numeric_limits<float>::infinity()), 0x7c00);
  EXPECT_EQ(f32_to_f16_bits(-std::numeric_limits<float>::infinity()), 0xfc00);
}

TEST(Half, F16NaNIsQuietAndKeepsSign) {
  for (uint32_t nan : {0x7fc00000u, 0x7f800001u, 0xffc00000u, 0xff812345u, 0x7fffffffu}) {
    const uint16_t h = f32_to_f16_bits(float_of_bits(nan));
    EXPECT_EQ(h & 0x7c00, 0x7c00) << std::hex << nan;
    EXPECT_NE(h & 0x200, 0) << std::hex << nan;
    EXPECT_EQ((h & 0x8000) != 0, (nan & 0x80000000u) != 0);
  }
}

// ------------------------------------------------------------ bfloat16

TEST(Half, Bf16DecodeAllPatterns) {
  for (uint32_t i = 0; i < 65536; ++i) {
    const uint16_t b = static_cast<uint16_t>(i);
    const float got = bf16_bits_to_f32(b);
    const double want = decode_bf16(b);
    if (std::isnan(want)) {
      ASSERT_TRUE(std::isnan(got)) << std::hex << i;
    } else {
      ASSERT_EQ(static_cast<double>(got), want) << std::hex << i;
    }
    ASSERT_EQ(std::signbit(got), (i & 0x8000) != 0) << std::hex << i;
  }
}

TEST(Half, Bf16RoundTripAllPatterns) {
  for (uint32_t i = 0; i < 65536; ++i) {
    const uint16_t b = static_cast<uint16_t>(i);
    const uint16_t back = f32_to_bf16_bits(bf16_bits_to_f32(b));
    if ((b & 0x7f80) == 0x7f80 && (b & 0x7f) != 0) {
      ASSERT_EQ(back & 0x7f80, 0x7f80);
      ASSERT_NE(back & 0x40, 0) << "not quiet: " << std::hex << back;
      ASSERT_EQ(back & 0x8000, b & 0x8000);
    } else {
      ASSERT_EQ(back, b) << std::hex << i;
    }
  }
}

TEST(Half, F32ToBf16RoundsToNearestEven) {
  std::mt19937 gen(mqtest::kSeed + 21);
  const auto xs = probe_floats(gen, 300000);
  const RneOracle& o = bf16_oracle();
  for (float x : xs) {
    ASSERT_EQ(f32_to_bf16_bits(x), o.round(x)) << std::hexfloat << x;
  }
  // Near FLT_MAX: the largest finite bf16 is 0x1.fep127, the midpoint to 2^128
  // is 0x1.ffp127 (ties to even: Inf).
  EXPECT_EQ(f32_to_bf16_bits(0x1.fep127f), 0x7f7f);
  EXPECT_EQ(f32_to_bf16_bits(float_of_bits(0x7f7f7fffu)), 0x7f7f);
  EXPECT_EQ(f32_to_bf16_bits(float_of_bits(0x7f7f8000u)), 0x7f80);
  EXPECT_EQ(f32_to_bf16_bits(FLT_MAX), 0x7f80);
  EXPECT_EQ(f32_to_bf16_bits(-FLT_MAX), 0xff80);
  for (uint32_t nan : {0x7fc00000u, 0x7f800001u, 0xff800001u}) {
    const uint16_t b = f32_to_bf16_bits(float_of_bits(nan));
    EXPECT_TRUE(std::isnan(bf16_bits_to_f32(b))) << std::hex << nan;
    EXPECT_NE(b & 0x40, 0);
    EXPECT_EQ((b & 0x8000) != 0, (nan & 0x80000000u) != 0);
  }
}

// ------------------------------------------------------------ cast_to_half / half_to_f32

namespace {

std::vector<float> cast_inputs(std::mt19937& gen, std::size_t n) {
  std::vector<float> v(n);
  std::uniform_int_distribution<int> kind(0, 5);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  for (auto& x : v) {
    switch (kind(gen)) {
      case 0: x = u(gen) * 0x1p-14f; break;  // f16 subnormals
      case 1: x = u(gen) * 65519.0f; break;
      case 2: x = u(gen) * 1e-40f; break;  // f32 subnormals
      default: x = u(gen) * 10.0f; break;
    }
  }
  return v;
}

}  // namespace

TEST(FloatCast, MatchesScalarBitFunctionsOnEveryIsaAndThreadCount) {
  mqtest::StateGuard guard;
  std::mt19937 gen(mqtest::kSeed + 22);
  for (int64_t n : {int64_t{0}, int64_t{1}, int64_t{37}, int64_t{100003}}) {
    const auto x = cast_inputs(gen, static_cast<std::size_t>(n));
    const TensorView view(x.data(), DType::f32, {n});
    for (DType target : {DType::f16, DType::bf16}) {
      for (Isa isa : mqtest::available_isas()) {
        for (int threads : {1, 3}) {
          set_isa(isa);
          set_num_threads(threads);
          const Tensor h = cast_to_half(view, target);
          ASSERT_EQ(h.dtype(), target);
          ASSERT_EQ(h.shape(), Shape{n});
          const auto* bits = h.as<uint16_t>();
          for (int64_t i = 0; i < n; ++i) {
            const uint16_t want = target == DType::f16 ? f32_to_f16_bits(x[i]) : f32_to_bf16_bits(x[i]);
            ASSERT_EQ(bits[i], want) << "i=" << i << " x=" << x[i] << " isa=" << name_of(isa);
          }
          // And back: every value decodes to what the scalar decoder gives.
          const Tensor back = half_to_f32(h.view());
          ASSERT_EQ(back.dtype(), DType::f32);
          ASSERT_EQ(back.shape(), Shape{n});
          for (int64_t i = 0; i < n; ++i) {
            const float want = target == DType::f16 ? f16_bits_to_f32(bits[i]) : bf16_bits_to_f32(bits[i]);
            ASSERT_EQ(bits_of_float(back.as<float>()[i]), bits_of_float(want)) << i;
            // The round trip moves a value by at most half an ulp of the target.
            const double ax = std::fabs(static_cast<double>(x[i]));
            const double tol = target == DType::f16 ? std::max(std::ldexp(ax, -11), 0x1p-25)
                                                    : std::max(std::ldexp(ax, -8), 0x1p-134);
            ASSERT_LE(std::fabs(static_cast<double>(back.as<float>()[i]) - x[i]), tol) << x[i];
          }
        }
      }
    }
  }
}

TEST(FloatCast, OverflowPolicies) {
  mqtest::StateGuard guard;
  for (Isa isa : mqtest::available_isas()) {
    set_isa(isa);
    // 40 elements so that the vector path sees the big values too.
    std::vector<float> x(40, 1.0f);
    x[7] = 70000.0f;
    x[23] = -1e6f;
    const TensorView v(x.data(), DType::f32, {5, 8});
    EXPECT_TRUE(mqtest::throws_error([&] { cast_to_half(v, DType::f16); }, ErrorKind::invalid_argument,
                                     {"index 7", "float16"}));
    EXPECT_TRUE(mqtest::throws_error([&] { cast_to_half(v, DType::f16, OverflowPolicy::error); },
                                     ErrorKind::invalid_argument, {"index 7"}));
    const Tensor sat = cast_to_half(v, DType::f16, OverflowPolicy::saturate);
    EXPECT_EQ(f16_bits_to_f32(sat.as<uint16_t>()[7]), 65504.0f);
    EXPECT_EQ(f16_bits_to_f32(sat.as<uint16_t>()[23]), -65504.0f);
    EXPECT_EQ(f16_bits_to_f32(sat.as<uint16_t>()[0]), 1.0f);
    const Tensor inf = cast_to_half(v, DType::f16, OverflowPolicy::infinity);
    EXPECT_EQ(f16_bits_to_f32(inf.as<uint16_t>()[7]), std::numeric_limits<float>::infinity());
    EXPECT_EQ(f16_bits_to_f32(inf.as<uint16_t>()[23]), -std::numeric_limits<float>::infinity());
    EXPECT_EQ(f16_bits_to_f32(inf.as<uint16_t>()[1]), 1.0f);

    // 65519 rounds to 65504 without overflowing; 65520 overflows.
    std::vector<float> edge(20, 0.5f);
    edge[11] = 65519.0f;
    edge[12] = -65519.0f;
    const Tensor ok = cast_to_half(TensorView(edge.data(), DType::f32, {20}), DType::f16);
    EXPECT_EQ(f16_bits_to_f32(ok.as<uint16_t>()[11]), 65504.0f);
    EXPECT_EQ(f16_bits_to_f32(ok.as<uint16_t>()[12]), -65504.0f);
    edge[15] = -65520.0f;
    EXPECT_TRUE(mqtest::throws_error([&] { cast_to_half(TensorView(edge.data(), DType::f32, {20}), DType::f16); },
                                     ErrorKind::invalid_argument, {"index 15"}));
    // bfloat16 overflows only near FLT_MAX: 65520 is fine there.
    const Tensor bf = cast_to_half(TensorView(edge.data(), DType::f32, {20}), DType::bf16);
    EXPECT_EQ(bf.as<uint16_t>()[15], f32_to_bf16_bits(-65520.0f));
    std::vector<float> big(20, 2.0f);
    big[3] = float_of_bits(0x7f7f7fffu);  // rounds down to the largest finite bf16
    EXPECT_EQ(cast_to_half(TensorView(big.data(), DType::f32, {20}), DType::bf16).as<uint16_t>()[3], 0x7f7f);
    big[9] = -FLT_MAX;
    EXPECT_TRUE(mqtest::throws_error([&] { cast_to_half(TensorView(big.data(), DType::f32, {20}), DType::bf16); },
                                     ErrorKind::invalid_argument, {"index 9", "bfloat16"}));
    const Tensor bsat = cast_to_half(TensorView(big.data(), DType::f32, {20}), DType::bf16, OverflowPolicy::saturate);
    EXPECT_EQ(bf16_bits_to_f32(bsat.as<uint16_t>()[9]), -0x1.fep127f);
    const Tensor binf = cast_to_half(TensorView(big.data(), DType::f32, {20}), DType::bf16, OverflowPolicy::infinity);
    EXPECT_EQ(bf16_bits_to_f32(binf.as<uint16_t>()[9]), -std::numeric_limits<float>::infinity());
  }
}

TEST(FloatCast, NonFiniteInputThrowsUnderEveryPolicy) {
  mqtest::StateGuard guard;
  for (Isa isa : mqtest::available_isas()) {
    set_isa(isa);
    for (OverflowPolicy p : {OverflowPolicy::error, OverflowPolicy::saturate, OverflowPolicy::infinity}) {
      for (DType t : {DType::f16, DType::bf16}) {
        std::vector<float> x(50, 0.25f);
        x[31] = std::numeric_limits<float>::quiet_NaN();
        EXPECT_TRUE(mqtest::throws_error([&] { cast_to_half(TensorView(x.data(), DType::f32, {50}), t, p); },
                                         ErrorKind::invalid_argument, {"NaN", "31"}));
        x[31] = 0.0f;
        x[44] = -std::numeric_limits<float>::infinity();
        EXPECT_TRUE(mqtest::throws_error([&] { cast_to_half(TensorView(x.data(), DType::f32, {50}), t, p); },
                                         ErrorKind::invalid_argument, {"Inf", "44"}));
      }
    }
  }
}

TEST(FloatCast, StridedAndOtherFloatInputs) {
  std::mt19937 gen(mqtest::kSeed + 23);
  const auto base = cast_inputs(gen, 6 * 9);
  // Transposed view of a [6, 9] buffer: shape [9, 6].
  const TensorView t(base.data(), DType::f32, {9, 6}, {1, 9});
  const Tensor h = cast_to_half(t, DType::f16);
  ASSERT_EQ(h.shape(), (Shape{9, 6}));
  for (int64_t i = 0; i < 9; ++i) {
    for (int64_t j = 0; j < 6; ++j) {
      ASSERT_EQ(h.as<uint16_t>()[i * 6 + j], f32_to_f16_bits(base[static_cast<std::size_t>(j * 9 + i)]));
    }
  }
  // float64 input: rounded to float32 first (the documented f32 path).
  std::vector<double> d(33);
  for (auto& v : d) v = std::uniform_real_distribution<double>(-100, 100)(gen);
  const Tensor hd = cast_to_half(TensorView(d.data(), DType::f64, {33}), DType::bf16);
  for (std::size_t i = 0; i < d.size(); ++i) ASSERT_EQ(hd.as<uint16_t>()[i], f32_to_bf16_bits(static_cast<float>(d[i])));
  // Wrong target / wrong input type.
  EXPECT_TRUE(mqtest::throws_error([&] { cast_to_half(t, DType::i8); }, ErrorKind::invalid_argument, {"int8"}));
  std::vector<int32_t> ints(4, 1);
  EXPECT_TRUE(mqtest::throws_error([&] { cast_to_half(TensorView(ints.data(), DType::i32, {4}), DType::f16); },
                                   ErrorKind::invalid_argument, {"int32"}));
  EXPECT_TRUE(mqtest::throws_error([&] { half_to_f32(TensorView(ints.data(), DType::i32, {4})); },
                                   ErrorKind::invalid_argument));
}

TEST(FloatCast, HalfToF32StridedAndMisaligned) {
  std::mt19937 gen(mqtest::kSeed + 24);
  for (DType dt : {DType::f16, DType::bf16}) {
    std::vector<uint16_t> bits(4 * 10 + 1);
    for (auto& b : bits) {
      do {
        b = static_cast<uint16_t>(gen());
      } while (dt == DType::f16 ? ((b & 0x7c00) == 0x7c00) : ((b & 0x7f80) == 0x7f80));
    }
    auto decode = [&](uint16_t b) { return static_cast<float>(dt == DType::f16 ? decode_f16(b) : decode_bf16(b)); };
    // Every other column of a [4, 10] buffer: shape [4, 5], strides [10, 2].
    const TensorView v(bits.data(), dt, {4, 5}, {10, 2});
    const Tensor f = half_to_f32(v);
    for (int64_t i = 0; i < 4; ++i) {
      for (int64_t j = 0; j < 5; ++j) ASSERT_EQ(f.as<float>()[i * 5 + j], decode(bits[static_cast<std::size_t>(i * 10 + j * 2)]));
    }
    // Contiguous, starting at an odd element (2-byte aligned, not 4).
    const TensorView c(bits.data() + 1, dt, {40});
    const Tensor g = half_to_f32(c);
    for (std::size_t i = 0; i < 40; ++i) ASSERT_EQ(g.as<float>()[i], decode(bits[i + 1]));
  }
}

// Views may start at any byte: the casts must not read through misaligned
// float / uint16_t pointers (UBSan checks this in the sanitizer build).
TEST(FloatCast, ByteMisalignedInput) {
  mqtest::StateGuard guard;
  std::mt19937 gen(mqtest::kSeed + 25);
  const auto x = cast_inputs(gen, 77);
  std::vector<std::byte> buf(x.size() * sizeof(float) + 8);
  for (Isa isa : mqtest::available_isas()) {
    set_isa(isa);
    for (std::size_t off : {1u, 2u, 3u}) {
      std::memcpy(buf.data() + off, x.data(), x.size() * sizeof(float));
      for (DType t : {DType::f16, DType::bf16}) {
        const Tensor h = cast_to_half(TensorView(buf.data() + off, DType::f32, {77}), t);
        for (std::size_t i = 0; i < x.size(); ++i) {
          ASSERT_EQ(h.as<uint16_t>()[i], t == DType::f16 ? f32_to_f16_bits(x[i]) : f32_to_bf16_bits(x[i])) << i;
        }
        // And the 16-bit values back from an odd address.
        std::vector<std::byte> hb(h.nbytes() + 4);
        std::memcpy(hb.data() + 1, h.data(), h.nbytes());
        const Tensor back = half_to_f32(TensorView(hb.data() + 1, t, {77}));
        for (std::size_t i = 0; i < x.size(); ++i) {
          const uint16_t b = h.as<uint16_t>()[i];
          ASSERT_EQ(back.as<float>()[i], t == DType::f16 ? f16_bits_to_f32(b) : bf16_bits_to_f32(b)) << i;
        }
      }
    }
  }
}

TEST(FloatCast, OverflowPolicyNames) {
  for (OverflowPolicy p : {OverflowPolicy::error, OverflowPolicy::saturate, OverflowPolicy::infinity}) {
    EXPECT_EQ(parse_overflow_policy(name_of(p)), p);
  }
  EXPECT_TRUE(mqtest::throws_error([] { parse_overflow_policy("wrap"); }, ErrorKind::invalid_argument, {"wrap"}));
}
