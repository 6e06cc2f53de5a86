// quantize / dequantize against an independent scalar implementation of the
// formula documented in quantize.hpp and quant_spec.hpp:
//
//   symmetric:  range [-(2^(b-1) - 1), 2^(b-1) - 1], scale = absmax / qmax, zp = 0
//   asymmetric: range [-2^(b-1), 2^(b-1) - 1],
//               scale = (max(max, 0) - min(min, 0)) / (qmax - qmin),
//               zp = clamp(qmin - nearbyint(min(min, 0) / scale), qmin, qmax)
//   a zero range gets scale 1; q = clamp(nearbyint(x * (1 / scale)) + zp, qmin, qmax)
//   x' = (q - zp) * scale
#include <gtest/gtest.h>

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "monoquant/half.hpp"
#include "monoquant/quantize.hpp"
#include "monoquant/tensor.hpp"
#include "test_util.hpp"

using namespace monoquant;
using mqtest::bits_of_float;

namespace {

// ------------------------------------------------------------ the oracle

struct Expected {
  Shape scale_shape;
  std::vector<float> scales;
  std::vector<int32_t> zero_points;  // empty when symmetric
  std::vector<int64_t> cell;         // scale index of every element
  std::vector<int8_t> q;             // code of every element, row-major
};

double kInf() { return std::numeric_limits<double>::infinity(); }

int64_t product(const Shape& s, std::size_t from, std::size_t to) {
  int64_t p = 1;
  for (std::size_t i = from; i < to; ++i) p *= s[i];
  return p;
}

int oracle_qmin(const QuantSpec& s) { return s.scheme == Scheme::symmetric ? -(1 << (s.bits - 1)) + 1 : -(1 << (s.bits - 1)); }
int oracle_qmax(const QuantSpec& s) { return (1 << (s.bits - 1)) - 1; }

// Scale index of every element and the scale tensor's shape, from the
// documented granularities.
void assign_cells(const Shape& shape, const QuantSpec& spec, Expected& e) {
  const int64_t n = product(shape, 0, shape.size());
  e.cell.assign(static_cast<std::size_t>(n), 0);
  switch (spec.granularity) {
    case Granularity::per_tensor:
      e.scale_shape = {};
      break;
    case Granularity::per_channel: {
      const int64_t nd = static_cast<int64_t>(shape.size());
      const int64_t a = spec.axis < 0 ? spec.axis + nd : spec.axis;
      const int64_t channels = shape[static_cast<std::size_t>(a)];
      const int64_t inner = product(shape, static_cast<std::size_t>(a + 1), shape.size());
      e.scale_shape = {channels};
      for (int64_t i = 0; i < n; ++i) e.cell[static_cast<std::size_t>(i)] = (i / inner) % channels;
      break;
    }
    case Granularity::per_group: {
      const int64_t k = shape.back();
      const int64_t rows = product(shape, 0, shape.size() - 1);
      const int64_t groups = (k + spec.group_size - 1) / spec.group_size;
      e.scale_shape = {rows, groups};
      for (int64_t i = 0; i < n; ++i) e.cell[static_cast<std::size_t>(i)] = (i / k) * groups + (i % k) / spec.group_size;
      break;
    }
  }
}

Expected oracle_params(const std::vector<float>& x, const Shape& shape, const QuantSpec& spec) {
  Expected e;
  assign_cells(shape, spec, e);
  const int64_t cells = product(e.scale_shape, 0, e.scale_shape.size());
  std::vector<double> absmax(static_cast<std::size_t>(cells), 0.0);
  std::vector<double> mn(static_cast<std::size_t>(cells), kInf()), mx(static_cast<std::size_t>(cells), -kInf());
  for (std::size_t i = 0; i < x.size(); ++i) {
    const auto c = static_cast<std::size_t>(e.cell[i]);
    absmax[c] = std::max(absmax[c], std::fabs(static_cast<double>(x[i])));
    mn[c] = std::min(mn[c], static_cast<double>(x[i]));
    mx[c] = std::max(mx[c], static_cast<double>(x[i]));
  }
  const int qmin = oracle_qmin(spec), qmax = oracle_qmax(spec);
  for (int64_t c = 0; c < cells; ++c) {
    const auto ci = static_cast<std::size_t>(c);
    double sc, lo = 0;
    if (spec.scheme == Scheme::symmetric) {
      sc = absmax[ci] / qmax;
    } else {
      lo = std::min(0.0, mn[ci]);
      const double hi = std::max(0.0, mx[ci]);
      sc = (hi - lo) / (qmax - qmin);
    }
    float s = sc == 0.0 ? 1.0f : static_cast<float>(sc);
    s = std::max(s, FLT_MIN);  // documented in affine.cpp: 1 / scale must stay finite
    e.scales.push_back(s);
    if (spec.scheme == Scheme::asymmetric) {
      const double z = qmin - std::nearbyint(lo / static_cast<double>(s));
      e.zero_points.push_back(static_cast<int32_t>(std::clamp(z, double(qmin), double(qmax))));
    }
  }
  return e;
}

void oracle_codes(const std::vector<float>& x, const QuantSpec& spec, Expected& e) {
  const int qmin = oracle_qmin(spec), qmax = oracle_qmax(spec);
  e.q.resize(x.size());
  for (std::size_t i = 0; i < x.size(); ++i) {
    const auto c = static_cast<std::size_t>(e.cell[i]);
    const float inv = 1.0f / e.scales[c];
    const float product = x[i] * inv;  // float multiply by the float reciprocal
    const double zp = e.zero_points.empty() ? 0 : e.zero_points[c];
    const double v = std::clamp(std::nearbyint(static_cast<double>(product)) + zp, double(qmin), double(qmax));
    e.q[i] = static_cast<int8_t>(v);
  }
}

Expected oracle(const std::vector<float>& x, const Shape& shape, const QuantSpec& spec) {
  Expected e = oracle_params(x, shape, spec);
  oracle_codes(x, spec, e);
  return e;
}

// ------------------------------------------------------------ checks

// Reads back the codes of a QuantizedTensor, unpacking int4 by hand.
std::vector<int8_t> read_codes(const QuantizedTensor& q) {
  const int64_t n = numel_of(q.shape);
  std::vector<int8_t> out(static_cast<std::size_t>(n));
  if (q.spec.bits == 8) {
    if (n) std::memcpy(out.data(), q.codes.data(), static_cast<std::size_t>(n));
    return out;
  }
  const int64_t k = q.shape.empty() ? 1 : q.shape.back();
  const int64_t row_bytes = (k + 1) / 2;
  const auto* p = q.codes.as<uint8_t>();
  for (int64_t i = 0; i < n; ++i) {
    const int64_t r = i / k, c = i % k;
    const uint8_t byte = p[r * row_bytes + c / 2];
    const int nibble = (c % 2 == 0) ? (byte & 0xf) : (byte >> 4);
    out[static_cast<std::size_t>(i)] = static_cast<int8_t>(nibble - 8);
  }
  return out;
}

::testing::AssertionResult matches(const QuantizedTensor& q, const Expected& e, const Shape& shape, const QuantSpec& spec) {
  using ::testing::AssertionFailure;
  const int64_t n = product(shape, 0, shape.size());
  if (q.shape != shape) return AssertionFailure() << "shape " << shape_to_string(q.shape);
  if (q.spec.bits != spec.bits || q.spec.scheme != spec.scheme || q.spec.granularity != spec.granularity)
    return AssertionFailure() << "spec not carried over";
  if (q.codes.shape() != shape) return AssertionFailure() << "codes shape " << shape_to_string(q.codes.shape());
  if (spec.bits == 8) {
    if (q.codes.dtype() != DType::i8) return AssertionFailure() << "codes dtype " << name_of(q.codes.dtype());
    if (q.codes.nbytes() != static_cast<std::size_t>(n)) return AssertionFailure() << "codes bytes " << q.codes.nbytes();
  } else {
    if (q.codes.dtype() != DType::int4_packed) return AssertionFailure() << "codes dtype " << name_of(q.codes.dtype());
    const int64_t k = shape.empty() ? 1 : shape.back();
    const int64_t rows = k == 0 ? 0 : n / k;
    if (q.codes.nbytes() != static_cast<std::size_t>(rows * ((k + 1) / 2)))
      return AssertionFailure() << "packed bytes " << q.codes.nbytes() << " for shape " << shape_to_string(shape);
    if (k % 2 == 1) {
      for (int64_t r = 0; r < rows; ++r) {
        const uint8_t last = q.codes.as<uint8_t>()[r * ((k + 1) / 2) + k / 2];
        if (last >> 4) return AssertionFailure() << "odd K: high nibble of the last byte of row " << r << " is not 0";
      }
    }
  }
  if (q.scales.dtype() != DType::f32 || q.scales.shape() != e.scale_shape)
    return AssertionFailure() << "scales " << name_of(q.scales.dtype()) << " " << shape_to_string(q.scales.shape())
                              << ", expected float32 " << shape_to_string(e.scale_shape);
  for (std::size_t i = 0; i < e.scales.size(); ++i) {
    if (bits_of_float(q.scales.as<float>()[i]) != bits_of_float(e.scales[i]))
      return AssertionFailure() << "scale " << i << " is " << q.scales.as<float>()[i] << ", expected " << e.scales[i];
  }
  if (q.has_zero_points() != (spec.scheme == Scheme::asymmetric)) return AssertionFailure() << "has_zero_points";
  if (q.zero_points.dtype() != DType::i32) return AssertionFailure() << "zero points dtype";
  if (spec.scheme == Scheme::asymmetric) {
    if (q.zero_points.shape() != e.scale_shape) return AssertionFailure() << "zero points shape " << shape_to_string(q.zero_points.shape());
    for (std::size_t i = 0; i < e.zero_points.size(); ++i) {
      if (q.zero_points.as<int32_t>()[i] != e.zero_points[i])
        return AssertionFailure() << "zero point " << i << " is " << q.zero_points.as<int32_t>()[i] << ", expected " << e.zero_points[i];
    }
  } else if (q.zero_points.shape() != Shape{0}) {
    return AssertionFailure() << "symmetric zero points should have shape [0], got " << shape_to_string(q.zero_points.shape());
  }
  const auto codes = read_codes(q);
  for (int64_t i = 0; i < n; ++i) {
    if (codes[static_cast<std::size_t>(i)] != e.q[static_cast<std::size_t>(i)])
      return AssertionFailure() << "code at flat index " << i << " is " << int(codes[static_cast<std::size_t>(i)]) << ", expected "
                                << int(e.q[static_cast<std::size_t>(i)]);
  }
  // dequantize: (q - zp) * scale, one float rounding of an exact product.
  const Tensor y = dequantize(q);
  if (y.dtype() != DType::f32 || y.shape() != shape) return AssertionFailure() << "dequantized shape/dtype";
  for (int64_t i = 0; i < n; ++i) {
    const auto c = static_cast<std::size_t>(e.cell[static_cast<std::size_t>(i)]);
    const int32_t zp = e.zero_points.empty() ? 0 : e.zero_points[c];
    const float want = static_cast<float>(static_cast<double>(e.q[static_cast<std::size_t>(i)] - zp) * e.scales[c]);
    if (bits_of_float(y.as<float>()[i]) != bits_of_float(want))
      return AssertionFailure() << "dequantized[" << i << "] = " << y.as<float>()[i] << ", expected " << want;
  }
  return ::testing::AssertionSuccess();
}

bool same_tensor(const Tensor& a, const Tensor& b) {
  return a.dtype() == b.dtype() && a.shape() == b.shape() && a.nbytes() == b.nbytes() &&
         (a.nbytes() == 0 || std::memcmp(a.data(), b.data(), a.nbytes()) == 0);
}

bool same_quantized(const QuantizedTensor& a, const QuantizedTensor& b) {
  return a.shape == b.shape && same_tensor(a.codes, b.codes) && same_tensor(a.scales, b.scales) &&
         same_tensor(a.zero_points, b.zero_points);
}

QuantSpec make_spec(int bits, Scheme scheme, Granularity g, int axis = 0, int64_t group = 128) {
  QuantSpec s;
  s.bits = bits;
  s.scheme = scheme;
  s.granularity = g;
  s.axis = axis;
  s.group_size = group;
  return s;
}

std::string describe(const Shape& shape, const QuantSpec& spec) { return shape_to_string(shape) + " " + spec.to_string(); }

// Normal data whose magnitude changes every few elements (so channels and
// groups get different scales), shifted off zero, with exact zeros of both signs.
std::vector<float> test_data(std::mt19937& gen, int64_t n) {
  std::vector<float> v(static_cast<std::size_t>(n));
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::uniform_real_distribution<float> logscale(-3.0f, 3.0f);
  float factor = 1.0f, shift = 0.0f;
  for (int64_t i = 0; i < n; ++i) {
    if (i % 23 == 0) {
      factor = std::exp(logscale(gen));
      shift = (gen() % 3 == 0) ? factor * 1.5f : 0.0f;
    }
    const uint32_t r = gen() % 64;
    float& x = v[static_cast<std::size_t>(i)];
    if (r == 0) x = 0.0f;
    else if (r == 1) x = -0.0f;
    else x = nd(gen) * factor + shift;
  }
  return v;
}

// Quantizes under every ISA and with 1 and 3 threads; checks each result
// against the oracle and that all of them are byte-identical.
void check_case(const std::vector<float>& x, const Shape& shape, const QuantSpec& spec) {
  SCOPED_TRACE(describe(shape, spec));
  mqtest::StateGuard guard;
  const Expected e = oracle(x, shape, spec);
  const TensorView view(x.data(), DType::f32, shape);
  std::vector<QuantizedTensor> results;
  for (Isa isa : mqtest::available_isas()) {
    for (int threads : {1, 3}) {
      set_isa(isa);
      set_num_threads(threads);
      results.push_back(quantize(view, spec));
      ASSERT_TRUE(matches(results.back(), e, shape, spec)) << "isa=" << name_of(isa) << " threads=" << threads;
      // choose_qparams reports the same scales quantize used.
      Tensor s, z;
      choose_qparams(view, spec, s, z);
      ASSERT_TRUE(same_tensor(s, results.back().scales));
      ASSERT_TRUE(same_tensor(z, results.back().zero_points));
    }
  }
  for (std::size_t i = 1; i < results.size(); ++i) {
    ASSERT_TRUE(same_quantized(results[0], results[i])) << "run " << i << " differs from run 0";
  }
}

struct Case {
  Shape shape;
  Granularity granularity;
  int axis = 0;
  int64_t group = 128;
};

void run_cases(const std::vector<Case>& cases, uint32_t seed) {
  std::mt19937 gen(seed);
  for (const Case& c : cases) {
    const auto x = test_data(gen, numel_of(c.shape));
    for (int bits : {8, 4}) {
      for (Scheme scheme : {Scheme::symmetric, Scheme::asymmetric}) {
        check_case(x, c.shape, make_spec(bits, scheme, c.granularity, c.axis, c.group));
        if (::testing::Test::HasFatalFailure()) return;
      }
    }
  }
}

double sqnr_db(const std::vector<float>& x, const Tensor& y) {
  double xx = 0, ee = 0;
  for (std::size_t i = 0; i < x.size(); ++i) {
    const double d = static_cast<double>(x[i]) - y.as<float>()[i];
    xx += static_cast<double>(x[i]) * x[i];
    ee += d * d;
  }
  return 20.0 * std::log10(std::sqrt(xx) / std::sqrt(ee));
}

}  // namespace

// ------------------------------------------------------------ spec

TEST(QuantSpec, RangesAndValidation) {
  for (int bits : {8, 4}) {
    QuantSpec s = make_spec(bits, Scheme::symmetric, Granularity::per_tensor);
    EXPECT_EQ(s.qmax(), (1 << (bits - 1)) - 1);
    EXPECT_EQ(s.qmin(), -s.qmax());
    s.scheme = Scheme::asymmetric;
    EXPECT_EQ(s.qmin(), -(1 << (bits - 1)));
    EXPECT_EQ(s.qmax(), (1 << (bits - 1)) - 1);
    EXPECT_NO_THROW(s.validate());
  }
  for (int bad : {0, 1, 3, 16, -8}) {
    QuantSpec s;
    s.bits = bad;
    EXPECT_TRUE(mqtest::throws_error([&] { s.validate(); }, ErrorKind::invalid_argument, {"bits=" + std::to_string(bad)}));
  }
  QuantSpec g = make_spec(8, Scheme::symmetric, Granularity::per_group, 0, 0);
  EXPECT_TRUE(mqtest::throws_error([&] { g.validate(); }, ErrorKind::invalid_argument, {"group_size"}));
  for (Scheme s : {Scheme::symmetric, Scheme::asymmetric}) EXPECT_EQ(parse_scheme(name_of(s)), s);
  for (Granularity g2 : {Granularity::per_tensor, Granularity::per_channel, Granularity::per_group})
    EXPECT_EQ(parse_granularity(name_of(g2)), g2);
  EXPECT_TRUE(mqtest::throws_error([] { parse_scheme("skew"); }, ErrorKind::invalid_argument, {"skew"}));
  EXPECT_TRUE(mqtest::throws_error([] { parse_granularity("per_row"); }, ErrorKind::invalid_argument, {"per_row"}));
  EXPECT_NE(g.to_string().find("group_size=0"), std::string::npos);
}

TEST(Affine, RowLayout) {
  EXPECT_EQ(row_layout({}).rows, 1);
  EXPECT_EQ(row_layout({}).row_length, 1);
  EXPECT_EQ(row_layout({3, 5, 7}).rows, 15);
  EXPECT_EQ(row_layout({3, 5, 7}).row_length, 7);
  EXPECT_EQ(row_layout({4, 0}).rows, 4);
  EXPECT_EQ(row_layout({4, 0}).row_length, 0);
  EXPECT_EQ(row_layout({9}).rows, 1);
}

// ------------------------------------------------------------ against the oracle

TEST(Affine, PerTensor) {
  run_cases({{{}, Granularity::per_tensor},
             {{1}, Granularity::per_tensor},
             {{37}, Granularity::per_tensor},
             {{13, 70}, Granularity::per_tensor},
             {{3, 5, 7}, Granularity::per_tensor},
             {{2, 3, 4, 5}, Granularity::per_tensor},
             {{200003}, Granularity::per_tensor}},
            mqtest::kSeed + 30);
}

TEST(Affine, PerChannel) {
  run_cases({{{13, 70}, Granularity::per_channel, 0},
             {{13, 70}, Granularity::per_channel, 1},
             {{13, 70}, Granularity::per_channel, -1},
             {{13, 70}, Granularity::per_channel, -2},
             {{37}, Granularity::per_channel, 0},
             {{1, 50}, Granularity::per_channel, 0},
             {{4, 1, 6}, Granularity::per_channel, 1},
             {{3, 5, 7}, Granularity::per_channel, 0},
             {{3, 5, 7}, Granularity::per_channel, 1},
             {{3, 5, 7}, Granularity::per_channel, 2},
             {{3, 5, 7}, Granularity::per_channel, -1},
             {{3, 5, 7}, Granularity::per_channel, -3},
             {{2, 3, 4, 5}, Granularity::per_channel, 0},
             {{2, 3, 4, 5}, Granularity::per_channel, 1},
             {{2, 3, 4, 5}, Granularity::per_channel, 2},
             {{2, 3, 4, 5}, Granularity::per_channel, -1},
             {{6, 2, 3, 9}, Granularity::per_channel, -3},
             {{64, 301}, Granularity::per_channel, -1}},
            mqtest::kSeed + 31);
}

TEST(Affine, PerGroup) {
  run_cases({{{6, 512}, Granularity::per_group, 0, 32},
             {{6, 512}, Granularity::per_group, 0, 64},
             {{6, 512}, Granularity::per_group, 0, 128},
             {{6, 1024}, Granularity::per_group, 0, 256},
             {{5, 288}, Granularity::per_group, 0, 96},   // non-power-of-two divisor
             {{5, 300}, Granularity::per_group, 0, 100},
             {{5, 300}, Granularity::per_group, 0, 128},  // ragged last group (44)
             {{7, 77}, Granularity::per_group, 0, 32},    // odd K, ragged
             {{4, 1000}, Granularity::per_group, 0, 256},
             {{3, 50}, Granularity::per_group, 0, 128},   // group larger than K
             {{3, 9}, Granularity::per_group, 0, 1},      // one scale per element
             {{2, 3, 200}, Granularity::per_group, 0, 64},
             {{2, 2, 3, 96}, Granularity::per_group, 0, 32},
             {{129}, Granularity::per_group, 0, 32}},
            mqtest::kSeed + 32);
}

// Rows longer than the library's internal tile, odd K for int4, and tensors
// big enough for every statistics path to be split across threads.
TEST(Affine, LongRows) {
  run_cases({{{3, 40000}, Granularity::per_group, 0, 128},
             {{4, 300, 64}, Granularity::per_channel, 1},
             {{2000, 40}, Granularity::per_channel, -1},
             {{3, 40000}, Granularity::per_channel, 0},
             {{3, 40000}, Granularity::per_tensor},
             {{2, 33001}, Granularity::per_group, 0, 100},
             {{2, 33001}, Granularity::per_channel, 0}},
            mqtest::kSeed + 33);
}

TEST(Affine, RoundTripSqnr) {
  mqtest::StateGuard guard;
  std::mt19937 gen(mqtest::kSeed + 34);
  const auto x = mqtest::normal_floats(gen, 256 * 1024);
  const TensorView v(x.data(), DType::f32, {256, 1024});
  for (Isa isa : mqtest::available_isas()) {
    set_isa(isa);
    for (Scheme s : {Scheme::symmetric, Scheme::asymmetric}) {
      const double db8 = sqnr_db(x, dequantize(quantize(v, make_spec(8, s, Granularity::per_channel, 0))));
      EXPECT_GE(db8, 40.0) << name_of(s);
    }
    const double db4 = sqnr_db(x, dequantize(quantize(v, make_spec(4, Scheme::symmetric, Granularity::per_group, 0, 128))));
    EXPECT_GE(db4, 18.0);
    // Finer granularity can only help on this data.
    const double db4_tensor = sqnr_db(x, dequantize(quantize(v, make_spec(4, Scheme::symmetric, Granularity::per_tensor))));
    EXPECT_GT(db4, db4_tensor);
  }
}

// ------------------------------------------------------------ edge cases

TEST(Affine, NonFiniteInputThrowsNamingTheIndex) {
  mqtest::StateGuard guard;
  std::mt19937 gen(mqtest::kSeed + 35);
  const Shape shape{6, 70};
  const std::vector<QuantSpec> specs = {
      make_spec(8, Scheme::symmetric, Granularity::per_tensor),
      make_spec(8, Scheme::asymmetric, Granularity::per_channel, 0),
      make_spec(4, Scheme::symmetric, Granularity::per_channel, -1),
      make_spec(4, Scheme::asymmetric, Granularity::per_group, 0, 32),
  };
  for (Isa isa : mqtest::available_isas()) {
    set_isa(isa);
    for (const QuantSpec& spec : specs) {
      for (int64_t pos : {int64_t{0}, int64_t{137}, int64_t{419}}) {
        struct Bad {
          float value;
          const char* name;
        };
        for (Bad bad : {Bad{std::numeric_limits<float>::quiet_NaN(), "NaN"}, Bad{std::numeric_limits<float>::infinity(), "Inf"},
                        Bad{-std::numeric_limits<float>::infinity(), "Inf"}}) {
          auto x = mqtest::normal_floats(gen, 420);
          x[static_cast<std::size_t>(pos)] = bad.value;
          const TensorView v(x.data(), DType::f32, shape);
          const std::string idx = "index " + std::to_string(pos);
          EXPECT_TRUE(mqtest::throws_error([&] { quantize(v, spec); }, ErrorKind::invalid_argument, {bad.name, idx}))
              << spec.to_string() << " isa=" << name_of(isa);
          Tensor s, z;
          EXPECT_TRUE(mqtest::throws_error([&] { choose_qparams(v, spec, s, z); }, ErrorKind::invalid_argument, {bad.name, idx}));
          // quantize_with_qparams applies the same policy.
          Tensor scales(DType::f32, spec.granularity == Granularity::per_tensor ? Shape{}
                                    : spec.granularity == Granularity::per_group ? Shape{6, 3}
                                    : Shape{spec.axis == 0 ? 6 : 70});
          for (int64_t i = 0; i < scales.numel(); ++i) scales.as<float>()[i] = 0.05f;
          Tensor zps = Tensor::zeros(DType::i32, scales.shape());
          EXPECT_TRUE(mqtest::throws_error([&] { quantize_with_qparams(v, spec, std::move(scales), std::move(zps)); },
                                           ErrorKind::invalid_argument, {bad.name, idx}));
        }
      }
    }
  }
  // The first non-finite value is named when there are several.
  auto x = mqtest::normal_floats(gen, 420);
  x[300] = std::numeric_limits<float>::quiet_NaN();
  x[200] = std::numeric_limits<float>::infinity();
  EXPECT_TRUE(mqtest::throws_error([&] { quantize(TensorView(x.data(), DType::f32, shape), specs[1]); },
                                   ErrorKind::invalid_argument, {"Inf", "index 200"}));
  // For a strided view the index is the logical (row-major) one: a
  // transposed [70, 6] view of the [6, 70] buffer, NaN at buffer (2, 9),
  // that is view element (9, 2), flat index 9 * 6 + 2.
  x = mqtest::normal_floats(gen, 420);
  x[2 * 70 + 9] = std::numeric_limits<float>::quiet_NaN();
  EXPECT_TRUE(mqtest::throws_error([&] { quantize(TensorView(x.data(), DType::f32, {70, 6}, {1, 70}), specs[0]); },
                                   ErrorKind::invalid_argument, {"NaN", "index " + std::to_string(9 * 6 + 2)}));
}

TEST(Affine, ZeroAndConstantChannels) {
  std::mt19937 gen(mqtest::kSeed + 36);
  const int64_t k = 45;
  auto x = test_data(gen, 5 * k);
  for (int64_t j = 0; j < k; ++j) {
    x[static_cast<std::size_t>(1 * k + j)] = 0.0f;              // all-zero channel
    x[static_cast<std::size_t>(2 * k + j)] = 0.37f;             // positive constant
    x[static_cast<std::size_t>(3 * k + j)] = -2.5f;             // negative constant
    x[static_cast<std::size_t>(4 * k + j)] = j % 2 ? -0.0f : 0.0f;  // signed zeros only
  }
  const Shape shape{5, k};
  for (int bits : {8, 4}) {
    for (Scheme scheme : {Scheme::symmetric, Scheme::asymmetric}) {
      const QuantSpec spec = make_spec(bits, scheme, Granularity::per_channel, 0);
      check_case(x, shape, spec);
      const QuantizedTensor q = quantize(TensorView(x.data(), DType::f32, shape), spec);
      EXPECT_EQ(q.scales.as<float>()[1], 1.0f);
      EXPECT_EQ(q.scales.as<float>()[4], 1.0f);
      const Tensor y = dequantize(q);
      for (int64_t j = 0; j < k; ++j) {
        EXPECT_EQ(y.as<float>()[1 * k + j], 0.0f);
        EXPECT_EQ(y.as<float>()[4 * k + j], 0.0f);
        // A constant channel is reproduced to within float rounding.
        EXPECT_NEAR(y.as<float>()[2 * k + j], 0.37f, 0.37f * 1e-6f);
        EXPECT_NEAR(y.as<float>()[3 * k + j], -2.5f, 2.5f * 1e-6f);
      }
    }
  }
}

TEST(Affine, ZeroDimTensor) {
  const std::vector<float> x{-3.7f};
  for (int bits : {8, 4}) {
    for (Scheme scheme : {Scheme::symmetric, Scheme::asymmetric}) {
      const QuantSpec spec = make_spec(bits, scheme, Granularity::per_tensor);
      check_case(x, {}, spec);
      const QuantizedTensor q = quantize(TensorView(x.data(), DType::f32, {}), spec);
      EXPECT_EQ(q.codes.nbytes(), 1u);
      EXPECT_NEAR(dequantize(q).as<float>()[0], -3.7f, 1e-6f);
    }
  }
  // No channel axis or last dimension to speak of.
  const TensorView v(x.data(), DType::f32, {});
  EXPECT_TRUE(mqtest::throws_error([&] { quantize(v, make_spec(8, Scheme::symmetric, Granularity::per_channel, 0)); },
                                   ErrorKind::invalid_argument, {"axis"}));
  EXPECT_TRUE(mqtest::throws_error([&] { quantize(v, make_spec(8, Scheme::symmetric, Granularity::per_group, 0, 32)); },
                                   ErrorKind::invalid_argument));
}

TEST(Affine, EmptyTensors) {
  const std::vector<Case> cases = {
      {{0}, Granularity::per_tensor},       {{0, 16}, Granularity::per_tensor},   {{4, 0}, Granularity::per_tensor},
      {{0}, Granularity::per_channel, 0},   {{0, 16}, Granularity::per_channel, 0}, {{0, 16}, Granularity::per_channel, 1},
      {{4, 0}, Granularity::per_channel, 0}, {{4, 0}, Granularity::per_channel, -1}, {{0, 16}, Granularity::per_group, 0, 32},
      {{4, 0}, Granularity::per_group, 0, 32}, {{2, 0, 5}, Granularity::per_channel, 2},
  };
  const std::vector<float> none;
  for (const Case& c : cases) {
    for (int bits : {8, 4}) {
      for (Scheme scheme : {Scheme::symmetric, Scheme::asymmetric}) {
        const QuantSpec spec = make_spec(bits, scheme, c.granularity, c.axis, c.group);
        check_case(none, c.shape, spec);
        // A null data pointer is fine for an empty tensor.
        const QuantizedTensor q = quantize(TensorView(nullptr, DType::f32, c.shape), spec);
        EXPECT_EQ(q.codes.nbytes(), 0u);
        EXPECT_EQ(dequantize(q).shape(), c.shape);
      }
    }
  }
}

TEST(Affine, StridedAndNonF32InputEqualsContiguousF32) {
  mqtest::StateGuard guard;
  std::mt19937 gen(mqtest::kSeed + 37);
  const int64_t a = 24, b = 70;
  const auto base = test_data(gen, a * b);
  // Transposed view: shape [b, a], strides [1, b].
  const TensorView t(base.data(), DType::f32, {b, a}, {1, b});
  ASSERT_FALSE(t.is_contiguous());
  std::vector<float> tc(static_cast<std::size_t>(a * b));
  for (int64_t i = 0; i < b; ++i)
    for (int64_t j = 0; j < a; ++j) tc[static_cast<std::size_t>(i * a + j)] = base[static_cast<std::size_t>(j * b + i)];
  // Half precision and double copies of the same values.
  std::vector<uint16_t> f16(base.size()), bf16(base.size());
  std::vector<double> f64(base.size());
  std::vector<float> f16f(base.size()), bf16f(base.size()), f64f(base.size());
  for (std::size_t i = 0; i < base.size(); ++i) {
    f16[i] = f32_to_f16_bits(base[i]);
    bf16[i] = f32_to_bf16_bits(base[i]);
    f64[i] = static_cast<double>(base[i]) * (1.0 + 1e-12);  // not exactly a float
    f16f[i] = f16_bits_to_f32(f16[i]);
    bf16f[i] = bf16_bits_to_f32(bf16[i]);
    f64f[i] = static_cast<float>(f64[i]);
  }
  const std::vector<QuantSpec> specs = {
      make_spec(8, Scheme::symmetric, Granularity::per_channel, 0),
      make_spec(8, Scheme::asymmetric, Granularity::per_channel, 1),
      make_spec(4, Scheme::symmetric, Granularity::per_group, 0, 16),
      make_spec(4, Scheme::asymmetric, Granularity::per_tensor),
  };
  for (Isa isa : mqtest::available_isas()) {
    set_isa(isa);
    for (const QuantSpec& spec : specs) {
      SCOPED_TRACE(spec.to_string());
      EXPECT_TRUE(same_quantized(quantize(t, spec), quantize(TensorView(tc.data(), DType::f32, {b, a}), spec)));
      const Shape s{a, b};
      EXPECT_TRUE(same_quantized(quantize(TensorView(f16.data(), DType::f16, s), spec),
                                 quantize(TensorView(f16f.data(), DType::f32, s), spec)));
      EXPECT_TRUE(same_quantized(quantize(TensorView(bf16.data(), DType::bf16, s), spec),
                                 quantize(TensorView(bf16f.data(), DType::f32, s), spec)));
      EXPECT_TRUE(same_quantized(quantize(TensorView(f64.data(), DType::f64, s), spec),
                                 quantize(TensorView(f64f.data(), DType::f32, s), spec)));
      // A transposed float16 view too.
      EXPECT_TRUE(same_quantized(quantize(TensorView(f16.data(), DType::f16, {b, a}, {1, b}), spec),
                                 quantize(TensorView(f16f.data(), DType::f32, {b, a}, {1, b}), spec)));
    }
  }
  std::vector<int32_t> ints(12, 3);
  EXPECT_TRUE(mqtest::throws_error(
      [&] { quantize(TensorView(ints.data(), DType::i32, {3, 4}), make_spec(8, Scheme::symmetric, Granularity::per_tensor)); },
      ErrorKind::invalid_argument, {"int32"}));
}

TEST(Affine, MisalignedInput) {
  mqtest::StateGuard guard;
  std::mt19937 gen(mqtest::kSeed + 38);
  const Shape shape{7, 45};
  const auto x = test_data(gen, 7 * 45);
  const std::size_t bytes = x.size() * sizeof(float);
  std::vector<std::byte> buf(bytes + 64);
  const QuantSpec spec = make_spec(8, Scheme::asymmetric, Granularity::per_channel, 0);
  const QuantSpec spec4 = make_spec(4, Scheme::symmetric, Granularity::per_group, 0, 16);
  const QuantizedTensor want = quantize(TensorView(x.data(), DType::f32, shape), spec);
  const QuantizedTensor want4 = quantize(TensorView(x.data(), DType::f32, shape), spec4);
  for (Isa isa : mqtest::available_isas()) {
    set_isa(isa);
    // Offsets of whole floats (4-byte aligned, not vector aligned) and of
    // single bytes (not even float aligned: views allow any alignment).
    for (std::size_t off : {4u, 8u, 12u, 1u, 2u, 3u}) {
      std::memcpy(buf.data() + off, x.data(), bytes);
      const TensorView v(buf.data() + off, DType::f32, shape);
      EXPECT_TRUE(same_quantized(quantize(v, spec), want)) << "offset " << off;
      EXPECT_TRUE(same_quantized(quantize(v, spec4), want4)) << "offset " << off;
    }
  }
}

TEST(Affine, InvalidArguments) {
  std::vector<float> x(6 * 8, 0.5f);
  const TensorView v(x.data(), DType::f32, {6, 8});
  for (int axis : {2, 5, -3, -10}) {
    EXPECT_TRUE(mqtest::throws_error([&] { quantize(v, make_spec(8, Scheme::symmetric, Granularity::per_channel, axis)); },
                                     ErrorKind::invalid_argument, {"axis", std::to_string(axis)}));
  }
  QuantSpec bits3 = make_spec(3, Scheme::symmetric, Granularity::per_tensor);
  EXPECT_TRUE(mqtest::throws_error([&] { quantize(v, bits3); }, ErrorKind::invalid_argument, {"bits=3"}));
  EXPECT_TRUE(mqtest::throws_error([&] { quantize(v, make_spec(8, Scheme::symmetric, Granularity::per_group, 0, 0)); },
                                   ErrorKind::invalid_argument, {"group_size"}));
  EXPECT_TRUE(mqtest::throws_error([&] { quantize(TensorView(x.data(), DType::f32, {6, 8}, {8}), bits3); },
                                   ErrorKind::invalid_argument));
}

// ------------------------------------------------------------ caller-given qparams

TEST(Affine, QuantizeWithQparamsMatchesFormula) {
  mqtest::StateGuard guard;
  std::mt19937 gen(mqtest::kSeed + 39);
  const Shape shape{5, 33};
  const auto x = test_data(gen, 5 * 33);
  std::uniform_real_distribution<float> sd(0.01f, 0.2f);
  for (Isa isa : mqtest::available_isas()) {
    set_isa(isa);
    for (int bits : {8, 4}) {
      for (Scheme scheme : {Scheme::symmetric, Scheme::asymmetric}) {
        const QuantSpec spec = make_spec(bits, scheme, Granularity::per_channel, 0);
        Expected e;
        assign_cells(shape, spec, e);
        for (int c = 0; c < 5; ++c) {
          e.scales.push_back(sd(gen));
          if (scheme == Scheme::asymmetric)
            e.zero_points.push_back(oracle_qmin(spec) + static_cast<int32_t>(gen() % (oracle_qmax(spec) - oracle_qmin(spec) + 1)));
        }
        oracle_codes(x, spec, e);
        // Scales may come in any shape with the right count; the result has the canonical one.
        Tensor s(DType::f32, {1, 5});
        std::memcpy(s.data(), e.scales.data(), 5 * sizeof(float));
        Tensor z(DType::i32, {5});
        if (scheme == Scheme::asymmetric) std::memcpy(z.data(), e.zero_points.data(), 5 * sizeof(int32_t));
        const QuantizedTensor q = quantize_with_qparams(TensorView(x.data(), DType::f32, shape), spec, std::move(s),
                                                        scheme == Scheme::asymmetric ? std::move(z) : Tensor(DType::i32, {0}));
        EXPECT_TRUE(matches(q, e, shape, spec)) << spec.to_string();
      }
    }
  }
  // choose_qparams + quantize_with_qparams == quantize.
  for (const QuantSpec& spec : {make_spec(8, Scheme::asymmetric, Granularity::per_group, 0, 8),
                                make_spec(4, Scheme::symmetric, Granularity::per_channel, 1)}) {
    const TensorView v(x.data(), DType::f32, shape);
    Tensor s, z;
    choose_qparams(v, spec, s, z);
    EXPECT_TRUE(same_quantized(quantize_with_qparams(v, spec, std::move(s), std::move(z)), quantize(v, spec)));
  }
}

TEST(Affine, QuantizeWithQparamsRejectsBadQparams) {
  std::vector<float> x(4 * 10, 0.25f);
  const TensorView v(x.data(), DType::f32, {4, 10});
  const QuantSpec sym = make_spec(8, Scheme::symmetric, Granularity::per_channel, 0);
  const QuantSpec asym = make_spec(4, Scheme::asymmetric, Granularity::per_channel, 0);
  auto scales = [](Shape shape, float value) {
    Tensor t(DType::f32, std::move(shape));
    for (int64_t i = 0; i < t.numel(); ++i) t.as<float>()[i] = value;
    return t;
  };
  auto zps = [](Shape shape, int32_t value) {
    Tensor t(DType::i32, std::move(shape));
    for (int64_t i = 0; i < t.numel(); ++i) t.as<int32_t>()[i] = value;
    return t;
  };
  using E = ErrorKind;
  EXPECT_TRUE(mqtest::throws_error([&] { quantize_with_qparams(v, sym, scales({3}, 0.1f), Tensor()); }, E::invalid_argument, {"scales"}));
  EXPECT_TRUE(mqtest::throws_error([&] { quantize_with_qparams(v, sym, scales({10}, 0.1f), Tensor()); }, E::invalid_argument));
  for (float bad : {0.0f, -0.1f, std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity(), 1e-40f}) {
    Tensor s = scales({4}, 0.1f);
    s.as<float>()[2] = bad;
    EXPECT_TRUE(mqtest::throws_error([&] { quantize_with_qparams(v, sym, std::move(s), Tensor()); }, E::invalid_argument, {"scale 2"}))
        << bad;
  }
  Tensor f64(DType::f64, {4});
  EXPECT_TRUE(mqtest::throws_error([&] { quantize_with_qparams(v, sym, std::move(f64), Tensor()); }, E::invalid_argument));
  EXPECT_TRUE(mqtest::throws_error([&] { quantize_with_qparams(v, asym, scales({4}, 0.1f), zps({3}, 0)); }, E::invalid_argument));
  EXPECT_TRUE(mqtest::throws_error([&] { quantize_with_qparams(v, asym, scales({4}, 0.1f), zps({4}, 8)); }, E::invalid_argument, {"zero point"}));
  EXPECT_TRUE(mqtest::throws_error([&] { quantize_with_qparams(v, asym, scales({4}, 0.1f), zps({4}, -9)); }, E::invalid_argument));
  EXPECT_NO_THROW(quantize_with_qparams(v, asym, scales({4}, 0.1f), zps({4}, -8)));
  Tensor zf(DType::f32, {4});
  EXPECT_TRUE(mqtest::throws_error([&] { quantize_with_qparams(v, asym, scales({4}, 0.1f), std::move(zf)); }, E::invalid_argument));
}

// ------------------------------------------------------------ int4 layout

TEST(Affine, Int4PackedLayoutOddK) {
  // Values chosen on the grid of the per-row scale so the codes are known
  // from the formula: row r holds multiples of s_r = absmax_r / 7.
  const int64_t rows = 3, k = 7;
  const int codes[rows][k] = {{-7, -3, 0, 1, 7, 2, -1}, {7, 6, 5, 4, 3, 2, 1}, {0, 0, 0, -7, 0, 0, 0}};
  const float absmax[rows] = {2.0f, 0.75f, 14.0f};
  std::vector<float> x;
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < k; ++c) x.push_back(static_cast<float>(codes[r][c]) * (absmax[r] / 7.0f));
  const QuantSpec spec = make_spec(4, Scheme::symmetric, Granularity::per_channel, 0);
  const QuantizedTensor q = quantize(TensorView(x.data(), DType::f32, {rows, k}), spec);
  ASSERT_EQ(q.codes.dtype(), DType::int4_packed);
  ASSERT_EQ(q.codes.nbytes(), static_cast<std::size_t>(rows * ((k + 1) / 2)));  // ceil(7 / 2) = 4 bytes per row
  const auto* p = q.codes.as<uint8_t>();
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < k; ++c) {
      const uint8_t byte = p[r * 4 + c / 2];
      const int nibble = c % 2 == 0 ? byte & 0xf : byte >> 4;  // low nibble first
      EXPECT_EQ(nibble, codes[r][c] + 8) << "row " << r << " col " << c;
    }
    EXPECT_EQ(p[r * 4 + 3] >> 4, 0) << "padding nibble of row " << r;
  }
  check_case(x, {rows, k}, spec);
}

TEST(Affine, DequantizeRejectsInconsistentInput) {
  std::vector<float> x(4 * 6, 0.5f);
  const QuantSpec spec = make_spec(8, Scheme::asymmetric, Granularity::per_channel, 0);
  QuantizedTensor q = quantize(TensorView(x.data(), DType::f32, {4, 6}), spec);
  QuantizedTensor bad_codes = quantize(TensorView(x.data(), DType::f32, {4, 6}), spec);
  bad_codes.codes = Tensor::zeros(DType::i8, {4, 5});
  EXPECT_TRUE(mqtest::throws_error([&] { dequantize(bad_codes); }, ErrorKind::invalid_argument));
  q.spec.bits = 4;  // codes are int8, spec says int4
  EXPECT_TRUE(mqtest::throws_error([&] { dequantize(q); }, ErrorKind::invalid_argument));
  QuantizedTensor bad_scales = quantize(TensorView(x.data(), DType::f32, {4, 6}), spec);
  bad_scales.scales.as<float>()[1] = 0.0f;
  EXPECT_TRUE(mqtest::throws_error([&] { dequantize(bad_scales); }, ErrorKind::invalid_argument));
}

// Borrowed qparams (e.g. tensors inside a mapped file) may sit at any byte.
TEST(Affine, DequantizeViewWithMisalignedQparams) {
  std::mt19937 rng(7);
  std::normal_distribution<float> nd;
  std::vector<float> x(16 * 40);
  for (auto& v : x) v = nd(rng);
  QuantSpec spec;
  spec.bits = 4;
  spec.scheme = Scheme::asymmetric;
  spec.granularity = Granularity::per_group;
  spec.group_size = 16;
  const QuantizedTensor q = quantize(TensorView(x.data(), DType::f32, {16, 40}), spec);
  const Tensor expected = dequantize(q);

  const std::size_t sb = q.scales.nbytes(), zb = q.zero_points.nbytes();
  std::vector<std::byte> raw(sb + zb + 8);
  std::memcpy(raw.data() + 1, q.scales.data(), sb);
  std::memcpy(raw.data() + 3 + sb, q.zero_points.data(), zb);
  QuantizedTensorView v = view_of(q);
  v.scales = TensorView(raw.data() + 1, DType::f32, q.scales.shape());
  v.zero_points = TensorView(raw.data() + 3 + sb, DType::i32, q.zero_points.shape());
  const Tensor got = dequantize(v);
  ASSERT_EQ(got.nbytes(), expected.nbytes());
  EXPECT_EQ(0, std::memcmp(got.data(), expected.data(), expected.nbytes()));
}
