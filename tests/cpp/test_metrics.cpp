// compare() against plain double-precision sums written here.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "monoquant/half.hpp"
#include "monoquant/metrics.hpp"
#include "monoquant/tensor.hpp"
#include "test_util.hpp"

using namespace monoquant;

namespace {

struct Plain {
  double sqnr, mse, max_abs, cosine;
};

Plain plain_metrics(const std::vector<float>& x, const std::vector<float>& y) {
  double xx = 0, yy = 0, xy = 0, ee = 0, mx = 0;
  for (std::size_t i = 0; i < x.size(); ++i) {
    const double a = x[i], b = y[i];
    xx += a * a;
    yy += b * b;
    xy += a * b;
    ee += (a - b) * (a - b);
    mx = std::max(mx, std::fabs(a - b));
  }
  Plain p;
  p.sqnr = 20.0 * std::log10(std::sqrt(xx) / std::sqrt(ee));
  p.mse = ee / static_cast<double>(x.size());
  p.max_abs = mx;
  p.cosine = xy / (std::sqrt(xx) * std::sqrt(yy));
  return p;
}

constexpr double kInf = std::numeric_limits<double>::infinity();

}  // namespace

TEST(Metrics, MatchesPlainDoubleComputation) {
  mqtest::StateGuard guard;
  std::mt19937 gen(mqtest::kSeed + 50);
  for (int64_t n : {int64_t{1}, int64_t{10}, int64_t{1000}, int64_t{200001}}) {
    const auto x = mqtest::normal_floats(gen, static_cast<std::size_t>(n), 3.0f);
    auto y = x;
    std::normal_distribution<float> noise(0.0f, 0.01f);
    for (auto& v : y) v += noise(gen);
    const Plain p = plain_metrics(x, y);
    for (int threads : {1, 3}) {
      set_num_threads(threads);
      const ErrorMetrics m = compare(TensorView(x.data(), DType::f32, {n}), TensorView(y.data(), DType::f32, {n}));
      EXPECT_NEAR(m.sqnr_db, p.sqnr, 1e-9 * std::fabs(p.sqnr) + 1e-9) << "n=" << n;
      EXPECT_NEAR(m.mse, p.mse, 1e-9 * p.mse) << "n=" << n;
      EXPECT_DOUBLE_EQ(m.max_abs_error, p.max_abs) << "n=" << n;
      EXPECT_NEAR(m.cosine_similarity, p.cosine, 1e-12) << "n=" << n;
      // Sanity of the scale: noise of 0.01 on signal of 3 is about 49.5 dB.
      if (n >= 1000) {
        EXPECT_NEAR(m.sqnr_db, 20 * std::log10(3.0 / 0.01), 1.0);
      }
    }
  }
}

TEST(Metrics, AnticorrelatedAndScaled) {
  std::mt19937 gen(mqtest::kSeed + 51);
  const auto x = mqtest::normal_floats(gen, 777);
  std::vector<float> neg(x.size()), half(x.size());
  for (std::size_t i = 0; i < x.size(); ++i) {
    neg[i] = -x[i];
    half[i] = x[i] * 0.5f;
  }
  const TensorView vx(x.data(), DType::f32, {777});
  const ErrorMetrics mn = compare(vx, TensorView(neg.data(), DType::f32, {777}));
  EXPECT_NEAR(mn.cosine_similarity, -1.0, 1e-12);
  EXPECT_NEAR(mn.sqnr_db, 20 * std::log10(0.5), 1e-9);  // ||x|| / ||2x||
  const ErrorMetrics mh = compare(vx, TensorView(half.data(), DType::f32, {777}));
  EXPECT_NEAR(mh.cosine_similarity, 1.0, 1e-12);
  EXPECT_NEAR(mh.sqnr_db, 20 * std::log10(2.0), 1e-9);
  const Plain p = plain_metrics(x, half);
  EXPECT_NEAR(mh.mse, p.mse, 1e-12 * p.mse);
  EXPECT_DOUBLE_EQ(mh.max_abs_error, p.max_abs);
}

TEST(Metrics, IdenticalAndZeroInputs) {
  std::mt19937 gen(mqtest::kSeed + 52);
  const auto x = mqtest::normal_floats(gen, 100);
  const TensorView vx(x.data(), DType::f32, {10, 10});
  const ErrorMetrics same = compare(vx, vx);
  EXPECT_EQ(same.sqnr_db, kInf);
  EXPECT_EQ(same.mse, 0.0);
  EXPECT_EQ(same.max_abs_error, 0.0);
  EXPECT_NEAR(same.cosine_similarity, 1.0, 1e-12);

  const std::vector<float> zeros(100, 0.0f);
  const TensorView vz(zeros.data(), DType::f32, {10, 10});
  const ErrorMetrics zz = compare(vz, vz);
  EXPECT_EQ(zz.sqnr_db, kInf);
  EXPECT_EQ(zz.cosine_similarity, 1.0);
  const ErrorMetrics zx = compare(vz, vx);  // reference all zero, approximation not
  EXPECT_EQ(zx.sqnr_db, -kInf);
  EXPECT_EQ(zx.cosine_similarity, 0.0);
  const ErrorMetrics xz = compare(vx, vz);  // approximation all zero: error == signal
  EXPECT_NEAR(xz.sqnr_db, 0.0, 1e-12);
  EXPECT_EQ(xz.cosine_similarity, 0.0);
  EXPECT_DOUBLE_EQ(xz.max_abs_error, std::fabs(static_cast<double>(*std::max_element(
                                         x.begin(), x.end(), [](float a, float b) { return std::fabs(a) < std::fabs(b); }))));

  const ErrorMetrics empty = compare(TensorView(nullptr, DType::f32, {0, 4}), TensorView(nullptr, DType::f32, {0, 4}));
  EXPECT_EQ(empty.mse, 0.0);
  EXPECT_EQ(empty.max_abs_error, 0.0);
}

TEST(Metrics, ShapeMismatchThrows) {
  std::vector<float> a(6, 1.0f), b(6, 1.0f);
  EXPECT_TRUE(mqtest::throws_error(
      [&] { compare(TensorView(a.data(), DType::f32, {2, 3}), TensorView(b.data(), DType::f32, {3, 2})); },
      ErrorKind::invalid_argument, {"[2, 3]", "[3, 2]"}));
  EXPECT_TRUE(mqtest::throws_error(
      [&] { compare(TensorView(a.data(), DType::f32, {6}), TensorView(b.data(), DType::f32, {5})); },
      ErrorKind::invalid_argument));
  EXPECT_TRUE(mqtest::throws_error(
      [&] { compare(TensorView(a.data(), DType::f32, {6}), TensorView(b.data(), DType::f32, {1, 6})); },
      ErrorKind::invalid_argument));
}

TEST(Metrics, StridedAndHalfInputsEqualContiguousF32) {
  std::mt19937 gen(mqtest::kSeed + 53);
  const int64_t r = 9, c = 14;
  const auto x = mqtest::normal_floats(gen, static_cast<std::size_t>(r * c));
  std::vector<uint16_t> h(x.size());
  std::vector<float> hf(x.size());
  for (std::size_t i = 0; i < x.size(); ++i) {
    h[i] = f32_to_f16_bits(x[i]);
    hf[i] = f16_bits_to_f32(h[i]);
  }
  // float16 approximation vs its float32 decode.
  const ErrorMetrics a = compare(TensorView(x.data(), DType::f32, {r, c}), TensorView(h.data(), DType::f16, {r, c}));
  const Plain p = plain_metrics(x, hf);
  EXPECT_NEAR(a.sqnr_db, p.sqnr, 1e-9);
  EXPECT_NEAR(a.mse, p.mse, 1e-12 * p.mse);
  EXPECT_DOUBLE_EQ(a.max_abs_error, p.max_abs);
  // Transposed views of both, against explicit transposed copies.
  std::vector<float> xt(x.size()), hft(x.size());
  for (int64_t i = 0; i < c; ++i) {
    for (int64_t j = 0; j < r; ++j) {
      xt[static_cast<std::size_t>(i * r + j)] = x[static_cast<std::size_t>(j * c + i)];
      hft[static_cast<std::size_t>(i * r + j)] = hf[static_cast<std::size_t>(j * c + i)];
    }
  }
  const ErrorMetrics t = compare(TensorView(x.data(), DType::f32, {c, r}, {1, c}), TensorView(h.data(), DType::f16, {c, r}, {1, c}));
  const Plain pt = plain_metrics(xt, hft);
  EXPECT_NEAR(t.sqnr_db, pt.sqnr, 1e-9);
  EXPECT_NEAR(t.cosine_similarity, pt.cosine, 1e-12);
  EXPECT_DOUBLE_EQ(t.max_abs_error, pt.max_abs);
}

// Views may start at any byte.
TEST(Metrics, ByteMisalignedInput) {
  std::mt19937 gen(mqtest::kSeed + 54);
  const auto x = mqtest::normal_floats(gen, 301);
  auto y = x;
  for (auto& v : y) v *= 1.001f;
  const Plain p = plain_metrics(x, y);
  std::vector<std::byte> bx(x.size() * 4 + 4), by(y.size() * 4 + 4);
  std::memcpy(bx.data() + 1, x.data(), x.size() * 4);
  std::memcpy(by.data() + 3, y.data(), y.size() * 4);
  const ErrorMetrics m = compare(TensorView(bx.data() + 1, DType::f32, {301}), TensorView(by.data() + 3, DType::f32, {301}));
  EXPECT_NEAR(m.sqnr_db, p.sqnr, 1e-9);
  EXPECT_DOUBLE_EQ(m.max_abs_error, p.max_abs);
}
