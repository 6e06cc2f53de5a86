// W8A8 with activation groups (grouped int8 weights, LinearOptions::act_group_size):
// every kernel set the CPU has against an oracle written here from the
// documented rule (bit for bit), and the scalar reference against the same
// oracle; packing and unpacking; argument errors; a float64 check of the
// formula and of the accuracy gain over per-token W8A8 on data with
// per-group outliers.
//
// The rule (include/monoquant/linear.hpp, LinearOptions::act_group_size):
//   sa[m][j] = absmax(x[m, jg .. jg+g)) / 127 (NaN if the group holds NaN/Inf),
//   q = clamp(nearbyint(x * (1 / sa)), -127, 127)   (0 where sa == 0),
//   acc = 0; for j ascending: acc = fma(float(dot_j), sa[m][j] * sw[n][j], acc);
//   y = acc + (bias ? bias[n] : 0).
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "monoquant/linear.hpp"
#include "test_util.hpp"

namespace {

using monoquant::DType;
using monoquant::ErrorKind;
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

PackedLinearWeight pack_g(const std::vector<int8_t>& codes, const std::vector<float>& scales, int64_t n, int64_t k,
                          int64_t g) {
  return monoquant::pack_linear_int8_grouped(TensorView(codes.data(), DType::i8, {n, k}),
                                             TensorView(scales.data(), DType::f32, {n, k / g}), g);
}

LinearOptions grouped(int64_t g) {
  LinearOptions o{LinearMode::dynamic_int8};
  o.act_group_size = g;
  return o;
}

// x is [m, k] with rows ldx apart; y is [m, n] with rows ldy apart (gaps
// keep a sentinel so that a write past N shows).
std::vector<float> run(const PackedLinearWeight& w, const std::vector<float>& x, int64_t m, int64_t ldx,
                       const float* bias, const LinearOptions& o, int64_t ldy) {
  std::vector<float> y(static_cast<std::size_t>(m * ldy), -12345.0f);
  monoquant::linear_into(x.data(), m, ldx, w.view(), bias, o, y.data(), ldy);
  return y;
}

// ---- the oracle, from the documented rule ---------------------------------------

void oracle_quantize_groups(const std::vector<float>& x, int64_t m, int64_t ldx, int64_t k, int64_t g,
                            std::vector<int32_t>& q, std::vector<float>& s) {
  const int64_t groups = k / g;
  q.assign(static_cast<std::size_t>(m * k), 0);
  s.assign(static_cast<std::size_t>(m * groups), 0.0f);
  for (int64_t r = 0; r < m; ++r)
    for (int64_t j = 0; j < groups; ++j) {
      float amax = 0.0f;
      bool finite = true;
      for (int64_t i = j * g; i < (j + 1) * g; ++i) {
        const float v = x[r * ldx + i];
        if (!std::isfinite(v)) finite = false;
        amax = std::max(amax, std::fabs(v));
      }
      float& sc = s[r * groups + j];
      if (!finite) {
        sc = std::numeric_limits<float>::quiet_NaN();
        continue;
      }
      sc = amax / 127.0f;
      if (sc == 0.0f) continue;
      const float inv = 1.0f / sc;
      for (int64_t i = j * g; i < (j + 1) * g; ++i) {
        q[r * k + i] = static_cast<int32_t>(std::clamp(std::nearbyint(x[r * ldx + i] * inv), -127.0f, 127.0f));
      }
    }
}

// y laid out [m, ldy] like run()'s, the gaps holding the same sentinel.
std::vector<float> oracle_y(const std::vector<int32_t>& q, const std::vector<float>& sa, const std::vector<int8_t>& w,
                            const std::vector<float>& sw, const float* bias, int64_t m, int64_t k, int64_t n, int64_t g,
                            int64_t ldy) {
  const int64_t groups = k / g;
  std::vector<float> y(static_cast<std::size_t>(m * ldy), -12345.0f);
  for (int64_t r = 0; r < m; ++r)
    for (int64_t c = 0; c < n; ++c) {
      float acc = 0.0f;
      for (int64_t j = 0; j < groups; ++j) {
        int32_t dot = 0;
        for (int64_t i = j * g; i < (j + 1) * g; ++i) dot += q[r * k + i] * w[c * k + i];
        const float s = sa[r * groups + j] * sw[c * groups + j];
        acc = std::fma(static_cast<float>(dot), s, acc);
      }
      y[r * ldy + c] = acc + (bias ? bias[c] : 0.0f);
    }
  return y;
}

// Bit-exact, except that any NaN equals any NaN.
void expect_same(const std::vector<float>& got, const std::vector<float>& want, const std::string& what) {
  ASSERT_EQ(got.size(), want.size());
  for (std::size_t i = 0; i < got.size(); ++i) {
    if (std::isnan(want[i])) {
      ASSERT_TRUE(std::isnan(got[i])) << what << " element " << i << ": " << got[i] << ", want NaN";
      continue;
    }
    ASSERT_EQ(mqtest::bits_of_float(got[i]), mqtest::bits_of_float(want[i]))
        << what << " element " << i << ": " << got[i] << " vs " << want[i];
  }
}

struct Case {
  int64_t m, n, k, g;
};

std::vector<Case> cases() {
  std::vector<Case> v;
  for (const int64_t k : {32, 96, 256, 384})
    for (const int64_t g : {32, 64, 128}) {
      if (k % g) continue;
      for (const int64_t m : {1, 3, 17, 64})
        for (const int64_t n : {1, 7, 9, 33}) v.push_back({m, n, k, g});
    }
  return v;
}

std::string label(const KernelSet& ks, const Case& c, int threads, bool bias, int64_t ldx) {
  return std::string(ks.name) + " m=" + std::to_string(c.m) + " n=" + std::to_string(c.n) + " k=" +
         std::to_string(c.k) + " g=" + std::to_string(c.g) + " threads=" + std::to_string(threads) +
         (bias ? " bias" : " no bias") + " ldx=" + std::to_string(ldx);
}

// x [m, ldx] ~ N(0, 1) with: row 1 all zeros, row 0's first group zeros, a
// NaN in row 2 (in its last group) and an Inf in row 5; the gaps past K
// hold NaN, which the kernels must not read.
std::vector<float> make_x(std::mt19937& gen, int64_t m, int64_t k, int64_t g, int64_t ldx) {
  std::vector<float> x(static_cast<std::size_t>(m * ldx), std::numeric_limits<float>::quiet_NaN());
  const auto v = mqtest::normal_floats(gen, static_cast<std::size_t>(m * k));
  for (int64_t r = 0; r < m; ++r) std::memcpy(&x[r * ldx], &v[r * k], static_cast<std::size_t>(k) * sizeof(float));
  if (m > 1) std::fill(x.begin() + ldx, x.begin() + ldx + k, 0.0f);
  if (k > g) std::fill(x.begin(), x.begin() + g, 0.0f);
  if (m > 2) x[2 * ldx + k - 3] = std::numeric_limits<float>::quiet_NaN();
  if (m > 5) x[5 * ldx + 1] = -std::numeric_limits<float>::infinity();
  return x;
}

// ---- bit-exactness -------------------------------------------------------------------

TEST(LinearActGroups, EveryKernelSetMatchesOracleBitExact) {
  mqtest::StateGuard guard;
  VnniGuard vg;
  std::mt19937 gen(mqtest::kSeed + 100);
  const auto sets = kernel_sets();
  int64_t runs = 0;
  for (const Case& c : cases()) {
    const int64_t groups = c.k / c.g;
    const auto w = rand_codes(gen, static_cast<std::size_t>(c.n * c.k), -128, 127);
    const auto sw = rand_scales(gen, static_cast<std::size_t>(c.n * groups));
    const auto bias = mqtest::normal_floats(gen, static_cast<std::size_t>(c.n));
    const PackedLinearWeight p = pack_g(w, sw, c.n, c.k, c.g);
    for (const int64_t ldx : {c.k, c.k + 5}) {
      const auto x = make_x(gen, c.m, c.k, c.g, ldx);
      std::vector<int32_t> q;
      std::vector<float> sa;
      oracle_quantize_groups(x, c.m, ldx, c.k, c.g, q, sa);
      for (const bool with_bias : {true, false}) {
        const float* b = with_bias ? bias.data() : nullptr;
        const int64_t ldy = c.n + (ldx == c.k ? 0 : 3);
        const auto want = oracle_y(q, sa, w, sw, b, c.m, c.k, c.n, c.g, ldy);
        std::vector<float> scalar;
        for (const KernelSet& ks : sets) {
          use(ks);
          for (const int threads : {1, 2}) {
            monoquant::set_num_threads(threads);
            const auto got = run(p, x, c.m, ldx, b, grouped(c.g), ldy);
            const std::string what = label(ks, c, threads, with_bias, ldx);
            expect_same(got, want, what);
            if (scalar.empty()) scalar = got;
            expect_same(got, scalar, what + " vs scalar");
            ++runs;
          }
        }
        // Row semantics: the NaN / Inf rows are NaN everywhere, the zero row is the bias.
        for (int64_t col = 0; col < c.n; ++col) {
          if (c.m > 2) ASSERT_TRUE(std::isnan(scalar[2 * ldy + col]));
          if (c.m > 5) ASSERT_TRUE(std::isnan(scalar[5 * ldy + col]));
          if (c.m > 1) ASSERT_EQ(scalar[ldy + col], with_bias ? bias[col] : 0.0f);
          ASSERT_TRUE(std::isfinite(scalar[col]));
        }
      }
    }
  }
  EXPECT_EQ(runs, static_cast<int64_t>(cases().size()) * 2 * 2 * static_cast<int64_t>(sets.size()) * 2);
}

// Large enough that two threads split the blocks: the integer grain is 2M
// multiply-adds, 64 * 384 * 8 per block, so 10 blocks (2 units of 4) per
// chunk, and N = 257 is 33 blocks (9 units): 5 chunks. Also N ending in a
// 1-column block, M splitting into uneven row tiles, and g = 8 (the smallest
// group: 2 chunks of 4 k).
TEST(LinearActGroups, TwoThreadsSplitTheWorkAndAgree) {
  mqtest::StateGuard guard;
  VnniGuard vg;
  std::mt19937 gen(mqtest::kSeed + 101);
  for (const Case& c : {Case{64, 257, 384, 64}, Case{37, 130, 512, 128}, Case{9, 41, 64, 8}, Case{200, 96, 1024, 32}}) {
    const int64_t groups = c.k / c.g;
    const auto w = rand_codes(gen, static_cast<std::size_t>(c.n * c.k), -128, 127);
    const auto sw = rand_scales(gen, static_cast<std::size_t>(c.n * groups));
    const auto bias = mqtest::normal_floats(gen, static_cast<std::size_t>(c.n));
    const PackedLinearWeight p = pack_g(w, sw, c.n, c.k, c.g);
    const auto x = make_x(gen, c.m, c.k, c.g, c.k);
    std::vector<int32_t> q;
    std::vector<float> sa;
    oracle_quantize_groups(x, c.m, c.k, c.k, c.g, q, sa);
    const auto want = oracle_y(q, sa, w, sw, bias.data(), c.m, c.k, c.n, c.g, c.n);
    for (const KernelSet& ks : kernel_sets()) {
      use(ks);
      for (const int threads : {1, 2}) {
        monoquant::set_num_threads(threads);
        expect_same(run(p, x, c.m, c.k, bias.data(), grouped(c.g), c.n), want, label(ks, c, threads, true, c.k));
      }
    }
  }
}

// The largest per-group sums: codes -128 / 127 against activations +-127
// (each group's absmax sits on every element).
TEST(LinearActGroups, ExtremeCodesAreExact) {
  mqtest::StateGuard guard;
  VnniGuard vg;
  const int64_t m = 3, k = 512, n = 12, g = 128;
  std::vector<float> x(static_cast<std::size_t>(m * k));
  for (int64_t i = 0; i < k; ++i) {
    x[i] = 1.0f;
    x[k + i] = -2.0f;
    x[2 * k + i] = (i % 2) ? 3.0f : -3.0f;
  }
  std::vector<int8_t> w(static_cast<std::size_t>(n * k));
  for (int64_t c = 0; c < n; ++c)
    for (int64_t i = 0; i < k; ++i) w[c * k + i] = c % 3 == 0 ? -128 : (c % 3 == 1 ? 127 : ((i % 2) ? 127 : -128));
  const std::vector<float> sw(static_cast<std::size_t>(n * k / g), 1.0f);
  const PackedLinearWeight p = pack_g(w, sw, n, k, g);
  std::vector<int32_t> q;
  std::vector<float> sa;
  oracle_quantize_groups(x, m, k, k, g, q, sa);
  const auto want = oracle_y(q, sa, w, sw, nullptr, m, k, n, g, n);
  ASSERT_FLOAT_EQ(want[0], static_cast<float>(-127.0 * 128.0 * k / 127.0));
  for (const KernelSet& ks : kernel_sets()) {
    use(ks);
    expect_same(run(p, x, m, k, nullptr, grouped(g), n), want, ks.name);
  }
}

// ---- float64: the formula, and the accuracy gain -----------------------------------------

// y equals sum_g sa * sw * dot (+ bias) in float64 within float rounding: each
// output is G fma steps and G products, so the error is at most about
// (2G + 1) * 2^-24 * sum_g |sa sw dot| (+ |bias| rounding).
TEST(LinearActGroups, MatchesFloat64FormulaWithinRounding) {
  mqtest::StateGuard guard;
  VnniGuard vg;
  std::mt19937 gen(mqtest::kSeed + 102);
  const int64_t m = 17, n = 33, k = 384, g = 32, groups = k / g;
  const auto x = mqtest::normal_floats(gen, static_cast<std::size_t>(m * k));
  const auto w = rand_codes(gen, static_cast<std::size_t>(n * k), -127, 127);
  const auto sw = rand_scales(gen, static_cast<std::size_t>(n * groups));
  const auto bias = mqtest::normal_floats(gen, static_cast<std::size_t>(n));
  const PackedLinearWeight p = pack_g(w, sw, n, k, g);
  std::vector<int32_t> q;
  std::vector<float> sa;
  oracle_quantize_groups(x, m, k, k, g, q, sa);
  for (const KernelSet& ks : kernel_sets()) {
    use(ks);
    const auto y = run(p, x, m, k, bias.data(), grouped(g), n);
    for (int64_t r = 0; r < m; ++r)
      for (int64_t c = 0; c < n; ++c) {
        double sum = bias[c], mag = 0;
        for (int64_t j = 0; j < groups; ++j) {
          int64_t dot = 0;
          for (int64_t i = j * g; i < (j + 1) * g; ++i) dot += int64_t{q[r * k + i]} * w[c * k + i];
          const double t = double{sa[r * groups + j]} * double{sw[c * groups + j]} * static_cast<double>(dot);
          sum += t;
          mag += std::fabs(t);
        }
        const double tol = (2.0 * groups + 2.0) * std::ldexp(1.0, -24) * (mag + std::fabs(bias[c]));
        ASSERT_LE(std::fabs(y[r * n + c] - sum), tol) << ks.name << " r=" << r << " c=" << c;
      }
  }
}

// With an outlier in one group of each row, per-token scales spend most of
// the int8 range on it; per-group scales keep the other groups precise.
// Weights from the same float matrix: per group (grouped) vs per channel.
TEST(LinearActGroups, MoreAccurateThanPerTokenOnPerGroupOutliers) {
  mqtest::StateGuard guard;
  std::mt19937 gen(mqtest::kSeed + 103);
  const int64_t m = 16, n = 40, k = 512, g = 64, groups = k / g;
  auto x = mqtest::normal_floats(gen, static_cast<std::size_t>(m * k));
  std::uniform_int_distribution<int64_t> pos(0, k - 1);
  for (int64_t r = 0; r < m; ++r) x[r * k + pos(gen)] = (r % 2 ? -1.0f : 1.0f) * 200.0f;
  const auto wf = mqtest::normal_floats(gen, static_cast<std::size_t>(n * k), 0.05f);
  // Weights: symmetric int8, scale = absmax / 127 per group / per channel.
  auto quantize = [&](int64_t span, std::vector<int8_t>& codes, std::vector<float>& scales) {
    codes.assign(wf.size(), 0);
    scales.assign(wf.size() / static_cast<std::size_t>(span), 0.0f);
    for (std::size_t s = 0; s < scales.size(); ++s) {
      float amax = 0;
      for (int64_t i = 0; i < span; ++i) amax = std::max(amax, std::fabs(wf[s * span + i]));
      scales[s] = amax / 127.0f;
      for (int64_t i = 0; i < span; ++i) {
        codes[s * span + i] = static_cast<int8_t>(std::clamp(std::nearbyint(wf[s * span + i] / scales[s]), -127.0f, 127.0f));
      }
    }
  };
  std::vector<int8_t> cg, cc;
  std::vector<float> sg, sc;
  quantize(g, cg, sg);
  quantize(k, cc, sc);
  const PackedLinearWeight pg = pack_g(cg, sg, n, k, g);
  const PackedLinearWeight pc = monoquant::pack_linear_int8(TensorView(cc.data(), DType::i8, {n, k}),
                                                            TensorView(sc.data(), DType::f32, {n}));
  const auto yg = run(pg, x, m, k, nullptr, grouped(g), n);
  const auto yc = run(pc, x, m, k, nullptr, {LinearMode::dynamic_int8}, n);
  double eg = 0, ec = 0, ref = 0;
  for (int64_t r = 0; r < m; ++r)
    for (int64_t c = 0; c < n; ++c) {
      double y = 0;
      for (int64_t i = 0; i < k; ++i) y += double{x[r * k + i]} * wf[c * k + i];
      eg += (yg[r * n + c] - y) * (yg[r * n + c] - y);
      ec += (yc[r * n + c] - y) * (yc[r * n + c] - y);
      ref += y * y;
    }
  const double rel_g = std::sqrt(eg / ref), rel_c = std::sqrt(ec / ref);
  RecordProperty("relative_error_grouped", std::to_string(rel_g));
  RecordProperty("relative_error_per_token", std::to_string(rel_c));
  EXPECT_LT(rel_g, rel_c);
  EXPECT_LT(rel_g, 0.5 * rel_c) << "grouped " << rel_g << " per-token " << rel_c << " (groups " << groups << ")";
}

// ---- packing ----------------------------------------------------------------------------

TEST(LinearActGroups, PackLayoutAndUnpackInverse) {
  std::mt19937 gen(mqtest::kSeed + 104);
  for (const Case& c : {Case{1, 1, 32, 32}, Case{1, 7, 96, 32}, Case{1, 9, 256, 128}, Case{1, 33, 384, 64},
                        Case{1, 16, 24, 8}}) {
    const int64_t n = c.n, k = c.k, g = c.g, groups = k / g, nb = (n + 7) / 8;
    const auto w = rand_codes(gen, static_cast<std::size_t>(n * k), -128, 127);
    const auto s = rand_scales(gen, static_cast<std::size_t>(n * groups));
    const PackedLinearWeight p = pack_g(w, s, n, k, g);
    const monoquant::PackedLinearWeightView v = p.view();
    EXPECT_EQ(p.format, WeightFormat::int8);
    EXPECT_EQ(p.group_size, g);
    EXPECT_TRUE(v.grouped_int8());
    EXPECT_EQ(v.groups(), groups);
    EXPECT_EQ(v.data_bytes(), static_cast<std::size_t>(nb * 8 * k));
    EXPECT_EQ(v.scales_count(), static_cast<std::size_t>(nb * groups * 8));
    // Column sums, then the largest |code|.
    EXPECT_EQ(v.sums_count(), static_cast<std::size_t>(nb * groups * 8 + 1));
    EXPECT_EQ(p.scales.numel(), nb * groups * 8);
    EXPECT_EQ(p.sums.numel(), nb * groups * 8 + 1);
    int32_t abs_max = 0;
    for (const int8_t q : w) abs_max = std::max(abs_max, std::abs(int32_t{q}));
    EXPECT_EQ(v.code_abs_max(), abs_max);
    EXPECT_FALSE(v.narrow_codes());  // grouped int8 runs its own kernels
    EXPECT_NO_THROW(v.validate());
    // Scales and per-group column sums at [block][group][column]; padding 0.
    for (int64_t r = 0; r < nb * 8; ++r)
      for (int64_t j = 0; j < groups; ++j) {
        const int64_t at = ((r / 8) * groups + j) * 8 + r % 8;
        int32_t sum = 0;
        for (int64_t i = j * g; r < n && i < (j + 1) * g; ++i) sum += w[r * k + i];
        EXPECT_EQ(v.sums[at], sum) << "r=" << r << " j=" << j;
        EXPECT_EQ(v.scales[at], r < n ? s[r * groups + j] : 0.0f);
      }
    const auto u = monoquant::unpack_linear(v);
    ASSERT_EQ(u.codes.shape(), (monoquant::Shape{n, k}));
    ASSERT_EQ(u.scales.shape(), (monoquant::Shape{n, groups}));
    ASSERT_EQ(0, std::memcmp(u.codes.data(), w.data(), w.size()));
    ASSERT_EQ(0, std::memcmp(u.scales.data(), s.data(), s.size() * 4));
    // Strided codes (a transposed view) and scales pack the same bytes.
    std::vector<int8_t> wt(w.size());
    for (int64_t r = 0; r < n; ++r)
      for (int64_t i = 0; i < k; ++i) wt[i * n + r] = w[r * k + i];
    std::vector<float> st(s.size());
    for (int64_t r = 0; r < n; ++r)
      for (int64_t j = 0; j < groups; ++j) st[j * n + r] = s[r * groups + j];
    const PackedLinearWeight pt = monoquant::pack_linear_int8_grouped(
        TensorView(wt.data(), DType::i8, {n, k}, {1, n}), TensorView(st.data(), DType::f32, {n, groups}, {1, n}), g);
    ASSERT_EQ(0, std::memcmp(pt.data.data(), p.data.data(), p.data.nbytes()));
    ASSERT_EQ(0, std::memcmp(pt.scales.data(), p.scales.data(), p.scales.nbytes()));
    ASSERT_EQ(0, std::memcmp(pt.sums.data(), p.sums.data(), p.sums.nbytes()));
  }
}

// Per-channel int8 (group_size 0) keeps its sizes and its [N, 1] scales.
TEST(LinearActGroups, PerChannelInt8Unchanged) {
  std::mt19937 gen(mqtest::kSeed + 105);
  const int64_t n = 13, k = 70;
  const auto w = rand_codes(gen, static_cast<std::size_t>(n * k), -128, 127);
  const auto s = rand_scales(gen, static_cast<std::size_t>(n));
  const PackedLinearWeight p =
      monoquant::pack_linear_int8(TensorView(w.data(), DType::i8, {n, k}), TensorView(s.data(), DType::f32, {n}));
  const auto v = p.view();
  EXPECT_EQ(p.group_size, 0);
  EXPECT_FALSE(v.grouped_int8());
  EXPECT_EQ(v.groups(), 1);
  EXPECT_EQ(v.scales_count(), 16u);
  EXPECT_EQ(v.sums_count(), 17u);
  const auto u = monoquant::unpack_linear(v);
  EXPECT_EQ(u.scales.shape(), (monoquant::Shape{n, 1}));
}

// ---- errors -------------------------------------------------------------------------------

TEST(LinearActGroups, RejectsBadPacking) {
  std::vector<int8_t> w(4 * 100, 1);
  std::vector<float> s(4 * 4, 0.1f);
  const auto pack = [&](int64_t k, int64_t groups, int64_t g) {
    return monoquant::pack_linear_int8_grouped(TensorView(w.data(), DType::i8, {4, k}),
                                               TensorView(s.data(), DType::f32, {4, groups}), g);
  };
  EXPECT_TRUE(mqtest::throws_error([&] { pack(100, 3, 32); }, ErrorKind::invalid_argument, {"K = 100", "group_size 32"}));
  EXPECT_TRUE(mqtest::throws_error([&] { pack(96, 1, 64); }, ErrorKind::invalid_argument, {"K = 96", "group_size 64"}));
  EXPECT_TRUE(mqtest::throws_error([&] { pack(96, 8, 12); }, ErrorKind::invalid_argument, {"multiple of 8", "12"}));
  EXPECT_TRUE(mqtest::throws_error([&] { pack(96, 3, 0); }, ErrorKind::invalid_argument, {"group_size"}));
  EXPECT_TRUE(mqtest::throws_error([&] { pack(96, 2, 32); }, ErrorKind::invalid_argument, {"[4, 3]"}));
  std::vector<float> bad(4 * 3, 0.1f);
  bad[5] = -1.0f;
  EXPECT_TRUE(mqtest::throws_error(
      [&] {
        monoquant::pack_linear_int8_grouped(TensorView(w.data(), DType::i8, {4, 96}),
                                            TensorView(bad.data(), DType::f32, {4, 3}), 32);
      },
      ErrorKind::invalid_argument, {"scale"}));
  // A view claiming grouped int8 with K not a multiple of g.
  const PackedLinearWeight p = pack(96, 3, 32);
  monoquant::PackedLinearWeightView v = p.view();
  v.k = 80;
  EXPECT_TRUE(mqtest::throws_error([&] { v.validate(); }, ErrorKind::invalid_argument, {"K = 80", "group_size 32"}));
}

TEST(LinearActGroups, RejectsMismatchedOptions) {
  const int64_t n = 4, k = 64;
  std::vector<int8_t> w(static_cast<std::size_t>(n * k), 1);
  std::vector<float> s(static_cast<std::size_t>(n * 2), 0.1f), s1(static_cast<std::size_t>(n), 0.1f);
  const PackedLinearWeight pg = pack_g(w, s, n, k, 32);
  const PackedLinearWeight pc =
      monoquant::pack_linear_int8(TensorView(w.data(), DType::i8, {n, k}), TensorView(s1.data(), DType::f32, {n}));
  std::vector<uint8_t> nib(static_cast<std::size_t>(n * k / 2), 0x88);
  const PackedLinearWeight p4 = monoquant::pack_linear_int4(TensorView(nib.data(), DType::u8, {n, k / 2}), k,
                                                            TensorView(s.data(), DType::f32, {n, 2}), 32);
  std::vector<uint16_t> h(static_cast<std::size_t>(n * k), 0);
  const PackedLinearWeight ph = monoquant::pack_linear_half(TensorView(h.data(), DType::f16, {n, k}));
  std::vector<float> x(static_cast<std::size_t>(k), 1.0f), y(static_cast<std::size_t>(n));
  const auto call = [&](const PackedLinearWeight& p, LinearOptions o) {
    monoquant::linear_into(x.data(), 1, k, p.view(), nullptr, o, y.data(), n);
  };
  LinearOptions o = grouped(32);
  EXPECT_NO_THROW(call(pg, o));
  o.mode = LinearMode::static_int8;
  o.act_scale = 0.1f;
  EXPECT_TRUE(mqtest::throws_error([&] { call(pg, o); }, ErrorKind::invalid_argument, {"act_group_size 32", "static"}));
  o.mode = LinearMode::weight_only;
  EXPECT_TRUE(mqtest::throws_error([&] { call(pg, o); }, ErrorKind::invalid_argument, {"act_group_size 32", "weight_only"}));
  EXPECT_TRUE(mqtest::throws_error([&] { call(pg, grouped(64)); }, ErrorKind::invalid_argument,
                                   {"act_group_size 64", "group_size 32"}));
  EXPECT_TRUE(mqtest::throws_error([&] { call(pc, grouped(32)); }, ErrorKind::invalid_argument,
                                   {"act_group_size 32", "per-channel int8"}));
  EXPECT_TRUE(mqtest::throws_error([&] { call(p4, grouped(32)); }, ErrorKind::invalid_argument,
                                   {"act_group_size 32", "int4"}));
  EXPECT_TRUE(mqtest::throws_error([&] { call(ph, grouped(32)); }, ErrorKind::invalid_argument,
                                   {"act_group_size 32", "float16"}));
  EXPECT_TRUE(mqtest::throws_error([&] { call(pg, grouped(-8)); }, ErrorKind::invalid_argument, {"act_group_size", "-8"}));
  // Grouped weights need the activation groups.
  EXPECT_TRUE(mqtest::throws_error([&] { call(pg, {LinearMode::dynamic_int8}); }, ErrorKind::invalid_argument,
                                   {"group_size 32", "act_group_size = 32"}));
  EXPECT_TRUE(mqtest::throws_error([&] { call(pg, {LinearMode::weight_only}); }, ErrorKind::unsupported,
                                   {"group_size 32", "weight_only"}));
  EXPECT_TRUE(mqtest::throws_error([&] { call(pg, {LinearMode::static_int8, 0.1f, 0}); }, ErrorKind::unsupported,
                                   {"group_size 32", "static"}));
  // The per-channel weights still run without groups.
  EXPECT_NO_THROW(call(pc, {LinearMode::dynamic_int8}));
}

// conv2d goes through the same driver: with act groups it equals linear on
// the im2col rows (here a 1x1 convolution: the rows are the pixels).
TEST(LinearActGroups, Conv2dUsesActivationGroups) {
  mqtest::StateGuard guard;
  std::mt19937 gen(mqtest::kSeed + 106);
  const int64_t b = 1, c = 64, h = 3, wd = 5, o = 9, g = 32;
  const auto x = mqtest::normal_floats(gen, static_cast<std::size_t>(b * c * h * wd));
  const auto w = rand_codes(gen, static_cast<std::size_t>(o * c), -127, 127);
  const auto s = rand_scales(gen, static_cast<std::size_t>(o * c / g));
  const PackedLinearWeight p = pack_g(w, s, o, c, g);
  const monoquant::Tensor y =
      monoquant::conv2d(TensorView(x.data(), DType::f32, {b, c, h, wd}), p.view(), nullptr, {}, grouped(g));
  std::vector<float> rows(static_cast<std::size_t>(h * wd * c));
  for (int64_t px = 0; px < h * wd; ++px)
    for (int64_t ci = 0; ci < c; ++ci) rows[px * c + ci] = x[ci * h * wd + px];
  const auto want = run(p, rows, h * wd, c, nullptr, grouped(g), o);
  for (int64_t oc = 0; oc < o; ++oc)
    for (int64_t px = 0; px < h * wd; ++px) {
      ASSERT_EQ(mqtest::bits_of_float(y.as<float>()[oc * h * wd + px]), mqtest::bits_of_float(want[px * o + oc]));
    }
}

}  // namespace
