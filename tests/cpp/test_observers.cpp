// Observers, the histogram search, the MSE clipping search and calibration
// files. Oracles are written here: plain loops over the raw data (min, max,
// moving averages, exact bin assignment, sorted quantiles), a line-by-line
// port of torch.ao's greedy L2 search, choose_qparams for the qparams rule,
// and quantize / dequantize for actual quantization errors.
#include <gtest/gtest.h>

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "monoquant/calibration_stats.hpp"
#include "monoquant/mse_search.hpp"
#include "monoquant/observer.hpp"
#include "monoquant/quantize.hpp"
#include "observe/histogram.hpp"
#include "observe/kernels.hpp"
#include "test_util.hpp"

using namespace monoquant;
using mqtest::StateGuard;
using mqtest::throws_error;

namespace {

using json = nlohmann::json;

const char* const kKinds[] = {"minmax", "moving_average_minmax", "histogram", "percentile"};

TensorView view1d(const std::vector<float>& v) { return TensorView(v.data(), DType::f32, {static_cast<int64_t>(v.size())}); }

std::vector<float> laplace(std::mt19937& g, std::size_t n, float b = 1.0f) {
  std::exponential_distribution<float> e(1.0f / b);
  std::bernoulli_distribution s(0.5);
  std::vector<float> v(n);
  for (auto& x : v) x = s(g) ? e(g) : -e(g);
  return v;
}

std::vector<float> student_t3(std::mt19937& g, std::size_t n) {
  std::student_t_distribution<float> d(3.0f);
  std::vector<float> v(n);
  for (auto& x : v) x = d(g);
  return v;
}

std::vector<float> concat(const std::vector<std::vector<float>>& parts) {
  std::vector<float> all;
  for (const auto& p : parts) all.insert(all.end(), p.begin(), p.end());
  return all;
}

std::unique_ptr<Observer> make(const char* kind, Granularity g = Granularity::per_tensor, int axis = 0) {
  ObserverOptions o;
  o.granularity = g;
  o.axis = axis;
  return create_observer(kind, o);
}

// Mean squared error of quantizing x per tensor with (scale, zp), through the
// library's own quantize_with_qparams / dequantize.
double quantization_mse(const std::vector<float>& x, int bits, Scheme scheme, float scale, int32_t zp) {
  QuantSpec spec;
  spec.bits = bits;
  spec.scheme = scheme;
  spec.granularity = Granularity::per_tensor;
  Tensor s(DType::f32, {});
  s.as<float>()[0] = scale;
  Tensor z = scheme == Scheme::asymmetric ? Tensor(DType::i32, {}) : Tensor(DType::i32, {0});
  if (scheme == Scheme::asymmetric) z.as<int32_t>()[0] = zp;
  const QuantizedTensor q = quantize_with_qparams(view1d(x), spec, std::move(s), std::move(z));
  const Tensor y = dequantize(q);
  double e = 0;
  for (std::size_t i = 0; i < x.size(); ++i) {
    const double d = static_cast<double>(x[i]) - y.as<float>()[i];
    e += d * d;
  }
  return e / static_cast<double>(x.size());
}

double observer_mse(const Observer& o, const std::vector<float>& x, int bits, Scheme scheme) {
  Tensor s, z;
  o.calculate_qparams(bits, scheme, s, z);
  return quantization_mse(x, bits, scheme, s.as<float>()[0], scheme == Scheme::asymmetric ? z.as<int32_t>()[0] : 0);
}

double range_mse(const std::vector<float>& x, int bits, Scheme scheme, float lo, float hi) {
  float s = 1;
  int32_t z = 0;
  qparams_from_range(lo, hi, bits, scheme, &s, &z);
  return quantization_mse(x, bits, scheme, s, z);
}

}  // namespace

// ------------------------------------------------------------ qparams rule

TEST(QparamsFromRange, MatchesChooseQparamsOnDataWithThatRange) {
  const std::vector<std::pair<float, float>> ranges = {
      {-1.5f, 2.25f}, {0.5f, 3.0f}, {-4.0f, -0.25f}, {0.0f, 0.0f}, {-3e38f, 3e38f}, {1e-30f, 2e-30f}, {-7.0f, 7.0f}};
  for (const auto& [lo, hi] : ranges) {
    const std::vector<float> data = {lo, hi, 0.5f * lo + 0.5f * hi};
    for (int bits : {8, 4}) {
      for (Scheme scheme : {Scheme::symmetric, Scheme::asymmetric}) {
        QuantSpec spec;
        spec.bits = bits;
        spec.scheme = scheme;
        spec.granularity = Granularity::per_tensor;
        Tensor s, z;
        choose_qparams(view1d(data), spec, s, z);
        float scale = 0;
        int32_t zp = 99;
        qparams_from_range(lo, hi, bits, scheme, &scale, &zp);
        EXPECT_EQ(mqtest::bits_of_float(scale), mqtest::bits_of_float(s.as<float>()[0])) << lo << " " << hi;
        EXPECT_EQ(zp, scheme == Scheme::asymmetric ? z.as<int32_t>()[0] : 0) << lo << " " << hi;
      }
    }
  }
}

// ------------------------------------------------------------ MinMax

TEST(MinMaxObserver, TracksMinAndMaxOfAllBatchesAndMatchesChooseQparams) {
  std::mt19937 g(mqtest::kSeed);
  std::vector<std::vector<float>> batches;
  for (int i = 0; i < 5; ++i) batches.push_back(mqtest::normal_floats(g, 1000 + 3000 * i, 1.0f + i));
  auto o = make("minmax");
  for (const auto& b : batches) o->observe(view1d(b));
  const auto all = concat(batches);
  EXPECT_EQ(o->min_values()[0], *std::min_element(all.begin(), all.end()));
  EXPECT_EQ(o->max_values()[0], *std::max_element(all.begin(), all.end()));
  EXPECT_EQ(o->count(), static_cast<int64_t>(all.size()));
  for (Scheme scheme : {Scheme::symmetric, Scheme::asymmetric}) {
    Tensor s, z, rs, rz;
    o->calculate_qparams(8, scheme, s, z);
    QuantSpec spec = o->spec(8, scheme);
    choose_qparams(view1d(all), spec, rs, rz);
    EXPECT_EQ(s.as<float>()[0], rs.as<float>()[0]);
    EXPECT_EQ(s.shape(), rs.shape());
    EXPECT_EQ(z.numel(), rz.numel());
    if (scheme == Scheme::asymmetric) EXPECT_EQ(z.as<int32_t>()[0], rz.as<int32_t>()[0]);
  }
}

TEST(MinMaxObserver, PerChannelOnEveryAxisMatchesPerChannelChooseQparams) {
  std::mt19937 g(mqtest::kSeed + 1);
  const Shape shape = {3, 5, 7};
  for (int axis : {0, 1, 2, -1}) {
    auto o = make("minmax", Granularity::per_channel, axis);
    std::vector<std::vector<float>> batches;
    for (int i = 0; i < 3; ++i) {
      batches.push_back(mqtest::normal_floats(g, 105, 1.0f + i));
      o->observe(TensorView(batches.back().data(), DType::f32, shape));
    }
    const int ax = axis < 0 ? axis + 3 : axis;
    const int64_t C = shape[static_cast<std::size_t>(ax)];
    ASSERT_EQ(o->channels(), C);
    // Oracle: per-channel min / max over every batch by index arithmetic.
    std::vector<float> lo(C, INFINITY), hi(C, -INFINITY);
    for (const auto& b : batches) {
      for (int64_t i = 0; i < 3; ++i)
        for (int64_t j = 0; j < 5; ++j)
          for (int64_t k = 0; k < 7; ++k) {
            const int64_t idx[3] = {i, j, k};
            const float v = b[static_cast<std::size_t>((i * 5 + j) * 7 + k)];
            lo[idx[ax]] = std::min(lo[idx[ax]], v);
            hi[idx[ax]] = std::max(hi[idx[ax]], v);
          }
    }
    EXPECT_EQ(o->min_values(), lo);
    EXPECT_EQ(o->max_values(), hi);
    // calculate_qparams plugs into quantize_with_qparams with spec().
    Tensor s, z;
    o->calculate_qparams(8, Scheme::asymmetric, s, z);
    EXPECT_EQ(s.shape(), Shape{C});
    const QuantizedTensor q = quantize_with_qparams(TensorView(batches[0].data(), DType::f32, shape),
                                                    o->spec(8, Scheme::asymmetric), std::move(s), std::move(z));
    EXPECT_EQ(q.codes.numel(), 105);
  }
}

TEST(MinMaxObserver, PerChannelRejectsAChangedChannelCount) {
  auto o = make("minmax", Granularity::per_channel, -1);
  std::vector<float> a(12, 1.0f);
  o->observe(TensorView(a.data(), DType::f32, {3, 4}));
  EXPECT_TRUE(throws_error([&] { o->observe(TensorView(a.data(), DType::f32, {4, 3})); }, ErrorKind::invalid_argument,
                           {"4 channels", "3 on axis -1"}));
}

// ------------------------------------------------------------ moving average

TEST(MovingAverageObserver, FollowsTorchsRule) {
  std::mt19937 g(mqtest::kSeed + 2);
  ObserverOptions opt;
  opt.averaging_constant = 0.1;
  auto o = create_observer("moving_average_minmax", opt);
  double m_lo = 0, m_hi = 0;
  for (int i = 0; i < 20; ++i) {
    const auto b = mqtest::normal_floats(g, 500, 1.0f + 0.2f * i);
    o->observe(view1d(b));
    const double lo = *std::min_element(b.begin(), b.end()), hi = *std::max_element(b.begin(), b.end());
    if (i == 0) {
      m_lo = lo;
      m_hi = hi;
    } else {
      m_lo += 0.1 * (lo - m_lo);
      m_hi += 0.1 * (hi - m_hi);
    }
  }
  const auto r = o->ranges(8, Scheme::asymmetric);
  EXPECT_NEAR(r[0].lo, m_lo, 1e-5 * std::fabs(m_lo));
  EXPECT_NEAR(r[0].hi, m_hi, 1e-5 * std::fabs(m_hi));
}

// ------------------------------------------------------------ merge, order, state

TEST(Observers, MergeEqualsObservingBothInOrder) {
  std::mt19937 g(mqtest::kSeed + 3);
  const auto a1 = mqtest::normal_floats(g, 3000), a2 = laplace(g, 2000, 3.0f);
  const auto b1 = laplace(g, 5000, 0.5f), b2 = mqtest::normal_floats(g, 100, 20.0f);
  for (const char* kind : kKinds) {
    for (Granularity gr : {Granularity::per_tensor, Granularity::per_channel}) {
      const auto v = [&](const std::vector<float>& x) {
        return gr == Granularity::per_tensor ? view1d(x)
                                             : TensorView(x.data(), DType::f32, {static_cast<int64_t>(x.size()) / 4, 4});
      };
      auto seq = make(kind, gr, 1), a = make(kind, gr, 1), b = make(kind, gr, 1);
      for (const auto* x : {&a1, &a2}) {
        seq->observe(v(*x));
        a->observe(v(*x));
      }
      for (const auto* x : {&b1, &b2}) {
        seq->observe(v(*x));
        b->observe(v(*x));
      }
      a->merge(*b);
      EXPECT_EQ(a->count(), seq->count()) << kind;
      EXPECT_EQ(a->min_values(), seq->min_values()) << kind;
      EXPECT_EQ(a->max_values(), seq->max_values()) << kind;
      if (std::string(kind) == "moving_average_minmax") {
        const auto ra = a->ranges(8, Scheme::asymmetric), rs = seq->ranges(8, Scheme::asymmetric);
        for (std::size_t c = 0; c < ra.size(); ++c) {
          EXPECT_NEAR(ra[c].lo, rs[c].lo, 1e-5 * std::fabs(rs[c].lo)) << kind;
          EXPECT_NEAR(ra[c].hi, rs[c].hi, 1e-5 * std::fabs(rs[c].hi)) << kind;
        }
      } else {
        // Exact: the whole state, histograms included, is the same.
        EXPECT_EQ(a->save_state(), seq->save_state()) << kind;
      }
    }
  }
}

TEST(HistogramObserver, CountsDoNotDependOnBatchOrderOrSplitOrThreads) {
  StateGuard guard;
  std::mt19937 g(mqtest::kSeed + 4);
  std::vector<std::vector<float>> batches;
  for (int i = 0; i < 6; ++i) batches.push_back(laplace(g, 40000 + 1000 * i, 0.3f * (i + 1)));
  set_num_threads(1);
  auto forward = make("histogram");
  for (const auto& b : batches) forward->observe(view1d(b));
  set_num_threads(4);
  auto backward = make("histogram");
  for (auto it = batches.rbegin(); it != batches.rend(); ++it) backward->observe(view1d(*it));
  auto whole = make("histogram");
  const auto all = concat(batches);
  whole->observe(view1d(all));
  EXPECT_EQ(forward->save_state(), backward->save_state());
  EXPECT_EQ(forward->save_state(), whole->save_state());
}


TEST(HistogramObserver, BatchesThatWidenTheRangeALittleGiveTheSameCountsAsOneBatch) {
  // The window keeps spare bins on both sides of the range, so batches that
  // reach a little further (below the minimum too) are counted in the
  // window they find; the state and the ranges must not show it. Also at a
  // magnitude (2^20, with a range of about 9) where the bin indices pass
  // 2^24, so an offset moved off grid_for's would not be exact in float:
  // there the window stays anchored at the minimum.
  StateGuard guard;
  for (const float centre : {0.0f, 1048576.0f}) {
    for (int threads : {1, 3}) {
      set_num_threads(threads);
      std::mt19937 g(mqtest::kSeed + 41);
      std::vector<std::vector<float>> batches;
      for (int i = 0; i < 12; ++i) {
        auto b = mqtest::normal_floats(g, 70000, 1.0f);
        const float reach = 0.02f * static_cast<float>(i);  // a little more each time
        b[17] = -4.0f - reach;
        b[901] = 4.0f + reach;
        for (float& x : b) x += centre;
        batches.push_back(std::move(b));
      }
      auto seq = make("histogram");
      for (const auto& b : batches) seq->observe(view1d(b));
      auto whole = make("histogram");
      whole->observe(view1d(concat(batches)));
      EXPECT_EQ(seq->save_state(), whole->save_state()) << "centre " << centre << " threads " << threads;
      for (Scheme s : {Scheme::symmetric, Scheme::asymmetric}) {
        EXPECT_EQ(seq->ranges(8, s)[0].lo, whole->ranges(8, s)[0].lo);
        EXPECT_EQ(seq->ranges(8, s)[0].hi, whole->ranges(8, s)[0].hi);
      }
      // And merged in the other order, into an observer whose window sits elsewhere.
      auto merged = make("histogram");
      for (auto it = batches.rbegin(); it != batches.rend(); ++it) {
        auto one = make("histogram");
        one->observe(view1d(*it));
        merged->merge(*one);
      }
      EXPECT_EQ(merged->save_state(), whole->save_state()) << "centre " << centre;
    }
  }
}
TEST(HistogramObserver, PerChannelEqualsOneObserverPerChannel) {
  // Channels on the last, a middle and the first axis, with several tiles per
  // channel and a channel count that is not a multiple of the thread blocks.
  std::mt19937 g(mqtest::kSeed + 18);
  const Shape shape = {3, 2100, 19};
  const auto x = laplace(g, 3 * 2100 * 19, 2.0f);
  for (int axis : {2, 1, 0}) {
    auto pc = make("histogram", Granularity::per_channel, axis);
    pc->observe(TensorView(x.data(), DType::f32, shape));
    const int64_t C = shape[static_cast<std::size_t>(axis)];
    const json st = json::parse(pc->save_state());
    ASSERT_EQ(static_cast<int64_t>(st["channels"].size()), C);
    for (int64_t c = 0; c < C; ++c) {
      std::vector<float> mine;
      for (int64_t i = 0; i < 3; ++i)
        for (int64_t j = 0; j < 2100; ++j)
          for (int64_t k = 0; k < 19; ++k) {
            const int64_t idx[3] = {i, j, k};
            if (idx[axis] == c) mine.push_back(x[static_cast<std::size_t>((i * 2100 + j) * 19 + k)]);
          }
      auto one = make("histogram");
      one->observe(view1d(mine));
      EXPECT_EQ(st["channels"][static_cast<std::size_t>(c)], json::parse(one->save_state())["channels"][0])
          << "axis " << axis << " channel " << c;
    }
  }
}

TEST(HistogramObserver, CountsAreTheExactBinsOfTheRawData) {
  std::mt19937 g(mqtest::kSeed + 5);
  std::vector<std::vector<float>> batches = {mqtest::normal_floats(g, 20000, 0.01f), laplace(g, 30000, 2.0f),
                                             mqtest::normal_floats(g, 10000, 50.0f)};
  ObserverOptions opt;
  opt.bins = 256;
  auto o = create_observer("histogram", opt);
  for (const auto& b : batches) o->observe(view1d(b));
  const json st = json::parse(o->save_state());
  const json& ch = st["channels"][0];
  const int e = ch["exponent"].get<int>();
  const int64_t offset = ch["offset"].get<int64_t>(), first = ch["first_bin"].get<int64_t>();
  const auto counts = ch["counts"].get<std::vector<uint64_t>>();
  const auto all = concat(batches);
  const float lo = *std::min_element(all.begin(), all.end()), hi = *std::max_element(all.begin(), all.end());
  // The documented grid: width 2^e, window of 2 * bins + 1 bins, the
  // smallest e that holds [min, max]: so the range spans more than `bins` bins.
  const auto bin_of = [&](float x, int ex) { return static_cast<int64_t>(std::floor(std::ldexp(static_cast<double>(x), -ex))); };
  EXPECT_EQ(bin_of(lo, e), offset);
  EXPECT_LE(bin_of(hi, e) - offset, 2 * 256);
  EXPECT_GT(bin_of(hi, e - 1) - bin_of(lo, e - 1), 2 * 256);
  EXPECT_GT((static_cast<double>(hi) - lo) / std::ldexp(1.0, e), 256.0);
  std::vector<uint64_t> expected(2 * 256 + 1, 0);
  for (float x : all) ++expected[static_cast<std::size_t>(bin_of(x, e) - offset)];
  std::vector<uint64_t> got(2 * 256 + 1, 0);
  for (std::size_t i = 0; i < counts.size(); ++i) got[static_cast<std::size_t>(first) + i] = counts[i];
  EXPECT_EQ(got, expected);
}

TEST(Observers, StateRoundTripsAndKeepsWorking) {
  std::mt19937 g(mqtest::kSeed + 6);
  const auto a = laplace(g, 5000), b = mqtest::normal_floats(g, 3000, 4.0f);
  for (const char* kind : kKinds) {
    for (Granularity gr : {Granularity::per_tensor, Granularity::per_channel}) {
      auto o = make(kind, gr, 0);
      const auto v = [&](const std::vector<float>& x) {
        return gr == Granularity::per_tensor ? view1d(x)
                                             : TensorView(x.data(), DType::f32, {5, static_cast<int64_t>(x.size()) / 5});
      };
      o->observe(v(a));
      const std::string state = o->save_state();
      auto r = load_observer(state);
      EXPECT_EQ(r->kind(), o->kind());
      EXPECT_EQ(r->save_state(), state) << kind;
      for (Scheme s : {Scheme::symmetric, Scheme::asymmetric}) {
        const auto ro = o->ranges(8, s), rr = r->ranges(8, s);
        for (std::size_t c = 0; c < ro.size(); ++c) {
          EXPECT_EQ(ro[c].lo, rr[c].lo) << kind;
          EXPECT_EQ(ro[c].hi, rr[c].hi) << kind;
        }
      }
      o->observe(v(b));
      r->observe(v(b));
      EXPECT_EQ(r->save_state(), o->save_state()) << kind;
      auto c = o->clone();
      EXPECT_EQ(c->save_state(), o->save_state()) << kind;
    }
  }
}

TEST(Observers, LoadRejectsMalformedState) {
  std::mt19937 g(mqtest::kSeed + 7);
  const auto x = laplace(g, 1000);
  auto o = make("histogram");
  o->observe(view1d(x));
  const json good = json::parse(o->save_state());
  const auto expect_format = [&](const json& j, const char* needle) {
    EXPECT_TRUE(throws_error([&] { load_observer(j.dump()); }, ErrorKind::format, {needle})) << j.dump().substr(0, 200);
  };
  EXPECT_TRUE(throws_error([&] { load_observer("{not json"); }, ErrorKind::format, {"not valid JSON"}));
  json j = good;
  j["kind"] = "nonsense";
  expect_format(j, "unknown observer");
  j = good;
  j["channels"][0]["counts"][0] = j["channels"][0]["counts"][0].get<uint64_t>() + 1;
  expect_format(j, "add up to");
  j = good;
  j["channels"][0]["max"] = 1048576.0;
  expect_format(j, "grid");
  j = good;
  j["channels"][0]["min"] = j["channels"][0]["max"].get<double>() + 1;
  expect_format(j, "min <= max");
  j = good;
  j["options"]["bins"] = 3;
  expect_format(j, "bins");
  j = good;
  j["channels"].push_back(j["channels"][0]);
  expect_format(j, "exactly 1 channel");
  j = good;
  j["channels"][0].erase("counts");
  expect_format(j, "missing 'counts'");
  j = good;
  j["version"] = 99;
  EXPECT_TRUE(throws_error([&] { load_observer(j.dump()); }, ErrorKind::unsupported, {"version 99"}));
}

TEST(Observers, MergeRejectsOtherKindsAndOptions) {
  auto h = make("histogram"), m = make("minmax");
  EXPECT_TRUE(throws_error([&] { h->merge(*m); }, ErrorKind::invalid_argument, {"same kind"}));
  ObserverOptions o;
  o.bins = 512;
  auto h2 = create_observer("histogram", o);
  EXPECT_TRUE(throws_error([&] { h->merge(*h2); }, ErrorKind::invalid_argument, {"different options"}));
  // Options a kind does not use do not matter.
  auto m2 = create_observer("minmax", o);
  EXPECT_NO_THROW(m->merge(*m2));
  // Merging with itself doubles the counts, as observing the data twice would.
  std::vector<float> x = {1, 2, 3};
  h->observe(view1d(x));
  h->merge(*h);
  EXPECT_EQ(h->count(), 6);
}

TEST(Observers, OptionsAreValidated) {
  ObserverOptions o;
  o.bins = 3;
  EXPECT_TRUE(throws_error([&] { create_observer("histogram", o); }, ErrorKind::invalid_argument, {"bins"}));
  o = {};
  o.percentile = 0;
  EXPECT_TRUE(throws_error([&] { create_observer("percentile", o); }, ErrorKind::invalid_argument, {"percentile"}));
  o = {};
  o.averaging_constant = 1.5;
  EXPECT_TRUE(throws_error([&] { create_observer("moving_average_minmax", o); }, ErrorKind::invalid_argument,
                           {"averaging_constant"}));
  o = {};
  o.granularity = Granularity::per_group;
  EXPECT_TRUE(throws_error([&] { create_observer("minmax", o); }, ErrorKind::invalid_argument, {"per_group"}));
  EXPECT_TRUE(throws_error([&] { create_observer("kl", {}); }, ErrorKind::invalid_argument, {"unknown observer"}));
  o = {};
  EXPECT_EQ(create_observer("auto", o)->kind(), "histogram");
  o.granularity = Granularity::per_channel;
  EXPECT_EQ(create_observer("auto", o)->kind(), "minmax");
  auto m = create_observer("minmax");
  std::vector<float> x = {1};
  m->observe(view1d(x));
  EXPECT_TRUE(throws_error([&] { m->ranges(3, Scheme::symmetric); }, ErrorKind::invalid_argument, {"bits"}));
}

// ------------------------------------------------------------ edge cases

// The one-pass path counts into per-chunk scratch windows that must be zero
// again after every call, whether the call kept its counts, met NaN / Inf,
// or left the window and was counted again on a new grid; the Python
// calibration path runs exactly such sequences on many observers.
TEST(HistogramObserver, OnePassScratchLeavesNoCountsBehind) {
  StateGuard guard;
  for (int threads : {1, 3}) {
    set_num_threads(threads);
    std::mt19937 g(mqtest::kSeed + 43);
    std::vector<std::vector<float>> batches;
    for (int i = 0; i < 6; ++i) batches.push_back(mqtest::normal_floats(g, 100000, 1.0f));
    batches[2][77] = NAN;                 // a batch the one-pass path gives up on
    batches[2][99000] = INFINITY;
    for (float& x : batches[3]) x *= 0.5f;  // a batch well inside the window: it keeps its counts
    for (float& x : batches[4]) x *= 3;     // a batch that leaves the window
    auto seq = make("histogram");
    std::vector<float> finite;
    for (const auto& b : batches) {
      seq->observe(view1d(b));
      for (float x : b) {
        if (std::isfinite(x)) finite.push_back(x);
      }
    }
    auto whole = make("histogram");
    whole->observe(view1d(finite));
    const auto& a = dynamic_cast<const observe::HistogramObserver&>(*seq).channel(0);
    const auto& b = dynamic_cast<const observe::HistogramObserver&>(*whole).channel(0);
    EXPECT_EQ(a.counts, b.counts) << "threads " << threads;
    EXPECT_EQ(a.grid, b.grid) << "threads " << threads;
  }
}

TEST(Observers, NonFiniteValuesAreIgnoredAndCounted) {
  std::mt19937 g(mqtest::kSeed + 8);
  auto x = mqtest::normal_floats(g, 50000);
  std::vector<float> clean;
  int bad = 0;
  for (std::size_t i = 0; i < x.size(); ++i) {
    if (i % 997 == 3) {
      x[i] = (i % 3 == 0) ? NAN : (i % 3 == 1 ? INFINITY : -INFINITY);
      ++bad;
    } else {
      clean.push_back(x[i]);
    }
  }
  for (const char* kind : kKinds) {
    auto dirty = make(kind), ref = make(kind);
    dirty->observe(view1d(x));
    ref->observe(view1d(clean));
    // A second batch, so the histogram's one-pass path meets the NaNs too.
    dirty->observe(view1d(x));
    ref->observe(view1d(clean));
    EXPECT_EQ(dirty->nonfinite_count(), 2 * bad) << kind;
    EXPECT_EQ(dirty->count(), ref->count()) << kind;
    for (Scheme s : {Scheme::symmetric, Scheme::asymmetric}) {
      EXPECT_EQ(dirty->ranges(8, s)[0].lo, ref->ranges(8, s)[0].lo) << kind;
      EXPECT_EQ(dirty->ranges(8, s)[0].hi, ref->ranges(8, s)[0].hi) << kind;
    }
  }
}

TEST(Observers, NothingFiniteMeansNoQparams) {
  for (const char* kind : kKinds) {
    auto o = make(kind);
    Tensor s, z;
    EXPECT_TRUE(throws_error([&] { o->calculate_qparams(8, Scheme::symmetric, s, z); }, ErrorKind::invalid_argument,
                             {"no finite values"}))
        << kind;
    const std::vector<float> nan = {NAN, INFINITY, -INFINITY};
    o->observe(view1d(nan));
    EXPECT_EQ(o->nonfinite_count(), 3);
    EXPECT_TRUE(throws_error([&] { o->calculate_qparams(8, Scheme::symmetric, s, z); }, ErrorKind::invalid_argument,
                             {"3 NaN/Inf ignored"}))
        << kind;
    const std::vector<float> empty;
    o->observe(view1d(empty));
    EXPECT_EQ(o->count(), 0);
  }
}

TEST(Observers, ConstantSingleAndHugeDataGiveTheMinMaxRule) {
  const std::vector<std::vector<float>> cases = {
      std::vector<float>(1000, 2.5f), std::vector<float>(1000, -0.75f), std::vector<float>(77, 0.0f), {3.25f},
      {-3.0e38f, 3.0e38f, 1.0f, -2.0f}};
  for (const auto& x : cases) {
    for (const char* kind : kKinds) {
      auto o = make(kind);
      o->observe(view1d(x));
      for (int bits : {8, 4}) {
        for (Scheme scheme : {Scheme::symmetric, Scheme::asymmetric}) {
          Tensor s, z;
          o->calculate_qparams(bits, scheme, s, z);
          const float scale = s.as<float>()[0];
          EXPECT_TRUE(std::isfinite(scale) && scale >= FLT_MIN) << kind << " " << scale;
          const auto r = o->ranges(bits, scheme)[0];
          EXPECT_GE(r.lo, *std::min_element(x.begin(), x.end())) << kind;
          EXPECT_LE(r.hi, *std::max_element(x.begin(), x.end())) << kind;
          if (x.size() > 4 || x.size() == 1) {
            // One distinct value: every observer gives choose_qparams' answer.
            QuantSpec spec;
            spec.bits = bits;
            spec.scheme = scheme;
            spec.granularity = Granularity::per_tensor;
            Tensor rs, rz;
            choose_qparams(view1d(x), spec, rs, rz);
            EXPECT_EQ(scale, rs.as<float>()[0]) << kind;
          }
          // And the qparams work with the quantizer.
          EXPECT_NO_THROW(quantize_with_qparams(view1d(x), o->spec(bits, scheme), std::move(s), std::move(z)));
        }
      }
    }
  }
}

TEST(Observers, StridedAndHalfInputEqualsContiguousFloat) {
  std::mt19937 g(mqtest::kSeed + 9);
  const auto x = mqtest::normal_floats(g, 64 * 48);
  // The transpose of a [64, 48] matrix, as a strided view, and its copy.
  std::vector<float> t(x.size());
  for (int i = 0; i < 64; ++i)
    for (int j = 0; j < 48; ++j) t[static_cast<std::size_t>(j * 64 + i)] = x[static_cast<std::size_t>(i * 48 + j)];
  for (const char* kind : kKinds) {
    auto a = make(kind, Granularity::per_channel, 0), b = make(kind, Granularity::per_channel, 0);
    a->observe(TensorView(x.data(), DType::f32, {48, 64}, {1, 48}));
    b->observe(TensorView(t.data(), DType::f32, {48, 64}));
    EXPECT_EQ(a->save_state(), b->save_state()) << kind;
  }
}

// ------------------------------------------------------------ percentile

TEST(PercentileObserver, IsWithinOneBinOfTheSortedQuantile) {
  std::mt19937 g(mqtest::kSeed + 10);
  std::vector<std::vector<float>> batches = {laplace(g, 40000), laplace(g, 60000, 2.0f)};
  ObserverOptions opt;
  opt.percentile = 99.5;
  auto o = create_observer("percentile", opt);
  for (const auto& b : batches) o->observe(view1d(b));
  auto all = concat(batches);
  std::sort(all.begin(), all.end());
  const double n = static_cast<double>(all.size());
  const double width = (static_cast<double>(all.back()) - all.front()) / opt.bins;
  const auto quantile = [&](const std::vector<float>& v, double q) { return v[static_cast<std::size_t>(std::floor(q * (n - 1)))]; };
  const auto ra = o->ranges(8, Scheme::asymmetric)[0];
  EXPECT_NEAR(ra.lo, quantile(all, 0.005), 2 * width);
  EXPECT_NEAR(ra.hi, quantile(all, 0.995), 2 * width);
  std::vector<float> mag(all.size());
  for (std::size_t i = 0; i < all.size(); ++i) mag[i] = std::fabs(all[i]);
  std::sort(mag.begin(), mag.end());
  const auto rs = o->ranges(8, Scheme::symmetric)[0];
  EXPECT_NEAR(std::max(-rs.lo, rs.hi), quantile(mag, 0.995), 2 * width);
}

// ------------------------------------------------------------ torch's greedy search

namespace {

// torch.ao.quantization.observer.HistogramObserver._compute_quantization_error
// and _non_linear_param_search, line by line, with unit-width bins.
double torch_norm(const std::vector<double>& h, int64_t start, int64_t end, int64_t dst_nbins) {
  const double bin_width = 1.0;
  const double dst_bin_width = bin_width * static_cast<double>(end - start + 1) / static_cast<double>(dst_nbins);
  if (dst_bin_width == 0.0) return 0.0;
  const auto get_norm = [](double begin, double e, double density) { return density * (e * e * e - begin * begin * begin) / 3; };
  double norm = 0;
  for (std::size_t i = 0; i < h.size(); ++i) {
    const double src_bin_begin = (static_cast<double>(i) - static_cast<double>(start)) * bin_width;
    const double src_bin_end = src_bin_begin + bin_width;
    const double last = static_cast<double>(dst_nbins - 1);
    const double dst_bin_of_begin = std::clamp(std::floor(src_bin_begin / dst_bin_width), 0.0, last);
    const double dst_bin_of_begin_center = (dst_bin_of_begin + 0.5) * dst_bin_width;
    const double dst_bin_of_end = std::clamp(std::floor(src_bin_end / dst_bin_width), 0.0, last);
    const double density = h[i] / bin_width;
    norm += get_norm(src_bin_begin - dst_bin_of_begin_center, dst_bin_width / 2, density);
    norm += (dst_bin_of_end - dst_bin_of_begin - 1) * get_norm(-dst_bin_width / 2, dst_bin_width / 2, density);
    const double dst_bin_of_end_center = dst_bin_of_end * dst_bin_width + dst_bin_width / 2;
    norm += get_norm(-dst_bin_width / 2, src_bin_end - dst_bin_of_end_center, density);
  }
  return norm;
}

BinRange torch_search(const std::vector<double>& h, int64_t dst_nbins) {
  const int64_t bins = static_cast<int64_t>(h.size());
  double total = 0;
  std::vector<double> csum(h.size());
  for (std::size_t i = 0; i < h.size(); ++i) csum[i] = (total += h[i]);
  const double stepsize = 1e-5;
  double alpha = 0.0, beta = 1.0;
  int64_t start_bin = 0, end_bin = bins - 1;
  double norm_min = INFINITY;
  while (alpha < beta) {
    const double next_alpha = alpha + stepsize, next_beta = beta - stepsize;
    int64_t l = start_bin, r = end_bin;
    while (l < end_bin && csum[static_cast<std::size_t>(l)] < next_alpha * total) l = l + 1;
    while (r > start_bin && csum[static_cast<std::size_t>(r)] > next_beta * total) r = r - 1;
    int64_t next_start_bin = start_bin, next_end_bin = end_bin;
    if ((l - start_bin) > (end_bin - r)) {
      next_start_bin = l;
      alpha = next_alpha;
    } else {
      next_end_bin = r;
      beta = next_beta;
    }
    if (next_start_bin == start_bin && next_end_bin == end_bin) continue;
    const double norm = torch_norm(h, next_start_bin, next_end_bin, dst_nbins);
    if (norm > norm_min) break;
    norm_min = norm;
    start_bin = next_start_bin;
    end_bin = next_end_bin;
  }
  return {start_bin, end_bin};
}

std::vector<double> histogram_of(const std::vector<float>& x, int bins) {
  const float lo = *std::min_element(x.begin(), x.end()), hi = *std::max_element(x.begin(), x.end());
  std::vector<double> h(static_cast<std::size_t>(bins), 0.0);
  for (float v : x) {
    const int b = std::min(bins - 1, static_cast<int>((static_cast<double>(v) - lo) / (static_cast<double>(hi) - lo) * bins));
    h[static_cast<std::size_t>(b)] += 1;
  }
  return h;
}

}  // namespace

TEST(TorchHistogramSearch, PicksTheSameBinsAsTorchsAlgorithm) {
  std::mt19937 g(mqtest::kSeed + 11);
  std::vector<std::vector<float>> data = {mqtest::normal_floats(g, 20000), laplace(g, 20000), student_t3(g, 20000)};
  {
    auto relu = mqtest::normal_floats(g, 20000);
    for (auto& v : relu) v = std::max(v, 0.0f);
    data.push_back(relu);
  }
  for (std::size_t d = 0; d < data.size(); ++d) {
    for (int bins : {256, 2048}) {
      const auto h = histogram_of(data[d], bins);
      for (int64_t dst : {256, 16}) {
        const BinRange want = torch_search(h, dst);
        const BinRange got = torch_histogram_search(h, dst);
        EXPECT_EQ(got.start, want.start) << "data " << d << " bins " << bins << " dst " << dst;
        EXPECT_EQ(got.end, want.end) << "data " << d << " bins " << bins << " dst " << dst;
      }
    }
  }
}

// ------------------------------------------------------------ histogram quality

TEST(HistogramObserver, RangeQuantizesNoWorseThanTorchsSearchAndBetterThanMinMax) {
  std::mt19937 g(mqtest::kSeed + 12);
  std::vector<std::pair<const char*, std::vector<float>>> data = {
      {"normal", mqtest::normal_floats(g, 200000)}, {"laplace", laplace(g, 200000)}, {"t3", student_t3(g, 200000)}};
  for (const auto& [name, x] : data) {
    ObserverOptions torch_only;
    torch_only.refine = false;
    auto greedy = create_observer("histogram", torch_only), refined = make("histogram"), minmax = make("minmax");
    for (std::size_t b = 0; b < x.size(); b += 50000) {
      const std::vector<float> part(x.begin() + static_cast<std::ptrdiff_t>(b), x.begin() + static_cast<std::ptrdiff_t>(b + 50000));
      greedy->observe(view1d(part));
      refined->observe(view1d(part));
      minmax->observe(view1d(part));
    }
    for (int bits : {8, 4}) {
      for (Scheme s : {Scheme::symmetric, Scheme::asymmetric}) {
        const double e_greedy = observer_mse(*greedy, x, bits, s);
        const double e_refined = observer_mse(*refined, x, bits, s);
        const double e_minmax = observer_mse(*minmax, x, bits, s);
        EXPECT_LE(e_refined, e_greedy * 1.001) << name << " bits " << bits;
        if (std::string(name) != "normal") EXPECT_LT(e_refined, e_minmax) << name << " bits " << bits;
      }
    }
    // The greedy range itself is torch's algorithm on this histogram: with a
    // histogram of the same data on the same bins, the same bins come out.
    const auto r = greedy->ranges(8, Scheme::asymmetric)[0];
    EXPECT_LT(r.hi - r.lo, minmax->max_values()[0] - minmax->min_values()[0]) << name;
  }
}

// ------------------------------------------------------------ kernels

TEST(ObserveKernels, Avx2MatchesTheReference) {
  if (!mqtest::have_avx2()) GTEST_SKIP() << "no AVX2";
  std::mt19937 g(mqtest::kSeed + 13);
  const auto& ref = observe::reference_observe_kernels();
  const auto& avx = observe::avx2_observe_kernels();
  for (int64_t n : {1, 7, 8, 33, 2047, 2048, 5000, 100003}) {
    auto x = laplace(g, static_cast<std::size_t>(n), 3.0f);
    if (n > 10) x[5] = -1e-30f;  // underflows to -0 when multiplied by 2^-12
    const auto a = ref.minmax(x.data(), n), b = avx.minmax(x.data(), n);
    ASSERT_TRUE(a.all_finite && b.all_finite);
    EXPECT_EQ(a.min, b.min);
    EXPECT_EQ(a.max, b.max);
    for (int e : {-8, -3, 0, 4, 12}) {
      const float inv = std::ldexp(1.0f, -e);
      const float offset = std::floor(a.min * inv);
      const int32_t last = 4096;
      std::vector<uint32_t> ca(4097, 0), cb(4097, 0), cc(4097, 0);
      ref.bin(x.data(), n, inv, offset, last, ca.data());
      avx.bin(x.data(), n, inv, offset, last, cb.data());
      const auto s = avx.bin_and_summarize(x.data(), n, inv, offset, last, cc.data());
      EXPECT_EQ(ca, cb) << n << " " << e;
      EXPECT_EQ(ca, cc) << n << " " << e;
      EXPECT_EQ(s.min, a.min);
      EXPECT_EQ(s.max, a.max);
    }
    for (float scale : {0.01f, 0.1f, 1.0f}) {
      for (int32_t zp : {0, -3, 5}) {
        const double ea = ref.squared_error(x.data(), n, scale, 1.0f / scale, zp, -8, 7);
        const double eb = avx.squared_error(x.data(), n, scale, 1.0f / scale, zp, -8, 7);
        EXPECT_NEAR(ea, eb, 1e-5 * ea + 1e-12);
      }
    }
    x[static_cast<std::size_t>(n / 2)] = NAN;
    EXPECT_FALSE(avx.minmax(x.data(), n).all_finite);
    EXPECT_FALSE(ref.minmax(x.data(), n).all_finite);
    x[static_cast<std::size_t>(n / 2)] = -INFINITY;
    EXPECT_FALSE(avx.minmax(x.data(), n).all_finite);
    std::vector<uint32_t> c(4097, 0);
    EXPECT_FALSE(avx.bin_and_summarize(x.data(), n, 1.0f, -100.0f, 4096, c.data()).all_finite);
    // Non-finite values anywhere (the vector body or the scalar tail) stay in bounds.
    for (const float bad : {NAN, INFINITY, -INFINITY}) {
      x[static_cast<std::size_t>(n - 1)] = bad;
      x[0] = bad;
      EXPECT_FALSE(avx.bin_and_summarize(x.data(), n, 1.0f, -100.0f, 4096, c.data()).all_finite);
      EXPECT_FALSE(ref.bin_and_summarize(x.data(), n, 1.0f, -100.0f, 4096, c.data()).all_finite);
    }
  }
}

// The AVX2 kernel keeps its per-thread copies of the histogram between calls
// and relies on each call leaving them zero: calls with windows that shrink
// and grow must still count like the reference, every time.
TEST(ObserveKernels, Avx2CountsAreFreshOnEveryCallWhateverTheWindow) {
  if (!mqtest::have_avx2()) GTEST_SKIP() << "no AVX2";
  std::mt19937 g(mqtest::kSeed + 15);
  const auto& ref = observe::reference_observe_kernels();
  const auto& avx = observe::avx2_observe_kernels();
  auto x = laplace(g, 200000, 3.0f);
  for (int i = 0; i < 50000; ++i) x[static_cast<std::size_t>(i)] = 0.0f;  // a run of one bin
  const auto range = ref.minmax(x.data(), static_cast<int64_t>(x.size()));
  for (const int32_t last : {4096, 300, 9000, 4096, 17, 9000}) {
    const float inv = static_cast<float>(last) / (range.max - range.min) / 2;
    const float offset = std::floor(range.min * inv) - 5;
    for (const int64_t n : {int64_t{200000}, int64_t{40000}}) {
      std::vector<uint32_t> ca(static_cast<std::size_t>(last) + 1, 0), cb = ca, cc = ca;
      ref.bin(x.data(), n, inv, offset, last, ca.data());
      avx.bin(x.data(), n, inv, offset, last, cb.data());
      avx.bin_and_summarize(x.data(), n, inv, offset, last, cc.data());
      EXPECT_EQ(ca, cb) << "last " << last << " n " << n;
      EXPECT_EQ(ca, cc) << "last " << last << " n " << n;
    }
  }
}

TEST(Observers, ScalarAndAvx2GiveTheSameState) {
  StateGuard guard;
  std::mt19937 g(mqtest::kSeed + 14);
  std::vector<std::vector<float>> batches = {laplace(g, 70000), mqtest::normal_floats(g, 90000, 3.0f), laplace(g, 50000, 0.1f)};
  for (const char* kind : kKinds) {
    std::vector<std::string> states;
    for (Isa isa : mqtest::available_isas()) {
      set_isa(isa);
      auto o = make(kind);
      for (const auto& b : batches) o->observe(view1d(b));
      states.push_back(o->save_state());
    }
    for (const auto& s : states) EXPECT_EQ(s, states[0]) << kind;
  }
}

// ------------------------------------------------------------ MSE search

namespace {

// Squared error of every scale cell, from quantize / dequantize.
std::vector<double> cell_errors(const std::vector<float>& w, const Shape& shape, const QuantSpec& spec, const Tensor& s,
                                const Tensor& z) {
  Tensor sc(DType::f32, s.shape());
  std::copy(s.as<float>(), s.as<float>() + s.numel(), sc.as<float>());
  Tensor zc(DType::i32, z.shape());
  std::copy(z.as<int32_t>(), z.as<int32_t>() + z.numel(), zc.as<int32_t>());
  const QuantizedTensor q = quantize_with_qparams(TensorView(w.data(), DType::f32, shape), spec, std::move(sc), std::move(zc));
  const Tensor y = dequantize(q);
  const int64_t K = shape.back(), rows = static_cast<int64_t>(w.size()) / K;
  std::vector<double> err(static_cast<std::size_t>(s.numel()), 0.0);
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t k = 0; k < K; ++k) {
      int64_t cell = 0;
      if (spec.granularity == Granularity::per_group) cell = r * ((K + spec.group_size - 1) / spec.group_size) + k / spec.group_size;
      else if (spec.granularity == Granularity::per_channel) cell = spec.axis == 0 ? r : k;
      const double d = static_cast<double>(w[static_cast<std::size_t>(r * K + k)]) - y.as<float>()[r * K + k];
      err[static_cast<std::size_t>(cell)] += d * d;
    }
  }
  return err;
}

}  // namespace

TEST(MseSearch, NeverWorseThanAbsmaxPerCellAndBetterOverall) {
  std::mt19937 g(mqtest::kSeed + 15);
  const Shape shape = {24, 300};  // 300 is not a multiple of 128: a short last group
  const auto w = student_t3(g, 24 * 300);
  struct Case {
    int bits;
    Scheme scheme;
    Granularity gran;
    int axis;
  };
  const Case cases[] = {{4, Scheme::symmetric, Granularity::per_group, 0},  {4, Scheme::asymmetric, Granularity::per_group, 0},
                        {8, Scheme::symmetric, Granularity::per_channel, 0}, {8, Scheme::asymmetric, Granularity::per_channel, 1},
                        {4, Scheme::symmetric, Granularity::per_tensor, 0}};
  for (const Case& c : cases) {
    QuantSpec spec;
    spec.bits = c.bits;
    spec.scheme = c.scheme;
    spec.granularity = c.gran;
    spec.axis = c.axis;
    spec.group_size = 128;
    Tensor s0, z0, s1, z1;
    const TensorView v(w.data(), DType::f32, shape);
    choose_qparams(v, spec, s0, z0);
    choose_qparams_mse(v, spec, s1, z1);
    ASSERT_EQ(s1.shape(), s0.shape());
    ASSERT_EQ(z1.shape(), z0.shape());
    const auto e0 = cell_errors(w, shape, spec, s0, z0), e1 = cell_errors(w, shape, spec, s1, z1);
    double t0 = 0, t1 = 0;
    for (std::size_t i = 0; i < e0.size(); ++i) {
      EXPECT_LE(e1[i], e0[i] * (1 + 1e-6)) << spec.to_string() << " cell " << i;
      t0 += e0[i];
      t1 += e1[i];
    }
    // Clipping pays most at 4 bits; at 8 it must still help on heavy tails.
    EXPECT_LT(t1, (c.bits == 4 ? 0.95 : 0.999) * t0) << spec.to_string();
  }
}

TEST(MseSearch, BeatsEveryRatioOfItsGridFoundByBruteForce) {
  std::mt19937 g(mqtest::kSeed + 16);
  const auto w = laplace(g, 128);
  QuantSpec spec;
  spec.bits = 4;
  spec.granularity = Granularity::per_tensor;
  Tensor s, z;
  choose_qparams_mse(view1d(w), spec, s, z);
  const double mine = quantization_mse(w, 4, Scheme::symmetric, s.as<float>()[0], 0);
  const float amax = std::fabs(*std::max_element(w.begin(), w.end(), [](float a, float b) { return std::fabs(a) < std::fabs(b); }));
  for (int k = 0; k <= 25; ++k) {
    // The documented grid: the range [-r * amax, r * amax] under the qparams
    // rule (itself checked against choose_qparams above).
    const double r = 1.0 - k * 0.02;
    float scale = 0;
    int32_t zp = 0;
    qparams_from_range(static_cast<float>(-r * amax), static_cast<float>(r * amax), 4, Scheme::symmetric, &scale, &zp);
    EXPECT_LE(mine, quantization_mse(w, 4, Scheme::symmetric, scale, 0) * (1 + 1e-9)) << r;
  }
}

TEST(MseSearch, EdgeCases) {
  QuantSpec spec;
  spec.bits = 4;
  spec.granularity = Granularity::per_group;
  spec.group_size = 4;
  std::vector<float> w = {0, 0, 0, 0, 1, 2, 3, 4, 5, 5, 5, 5};
  Tensor s, z, rs, rz;
  choose_qparams_mse(view1d(w), spec, s, z);
  choose_qparams(view1d(w), spec, rs, rz);
  EXPECT_EQ(s.as<float>()[0], rs.as<float>()[0]);  // all-zero group: scale 1
  EXPECT_EQ(s.as<float>()[2], rs.as<float>()[2]);  // constant group: absmax is exact already
  w[6] = NAN;
  EXPECT_TRUE(throws_error([&] { choose_qparams_mse(view1d(w), spec, s, z); }, ErrorKind::invalid_argument, {"NaN"}));
  MseSearchOptions bad;
  bad.min_ratio = 0;
  w[6] = 1;
  EXPECT_TRUE(throws_error([&] { choose_qparams_mse(view1d(w), spec, s, z, bad); }, ErrorKind::invalid_argument, {"min_ratio"}));
  const std::vector<float> empty;
  EXPECT_NO_THROW(choose_qparams_mse(TensorView(empty.data(), DType::f32, {0, 8}), spec, s, z));
}

// ------------------------------------------------------------ calibration files

TEST(CalibrationFile, RoundTripsEveryKind) {
  std::mt19937 g(mqtest::kSeed + 17);
  const auto x = laplace(g, 4000);
  std::vector<std::unique_ptr<Observer>> observers;
  std::vector<CalibrationEntryView> entries;
  for (const char* kind : kKinds) {
    observers.push_back(make(kind, Granularity::per_channel, -1));
    observers.back()->observe(TensorView(x.data(), DType::f32, {1000, 4}));
    entries.push_back({std::string("layer.") + kind, "input", observers.back().get()});
  }
  auto unused = make("histogram");
  entries.push_back({"never.called", "output", unused.get()});
  const std::string path = testing::TempDir() + "/monoquant_calib_test.json";
  save_calibration(path, entries, {{"samples", "4000"}});
  const CalibrationStats st = load_calibration(path);
  EXPECT_EQ(st.metadata.at("samples"), "4000");
  ASSERT_EQ(st.entries.size(), entries.size());
  for (const auto& e : entries) {
    const Observer* o = st.find(e.module, e.tensor);
    ASSERT_NE(o, nullptr) << e.module;
    EXPECT_EQ(o->save_state(), e.observer->save_state());
  }
  EXPECT_EQ(st.find("layer.minmax", "output"), nullptr);
  // No temporary file is left behind.
  for (const auto& f : std::filesystem::directory_iterator(testing::TempDir())) {
    EXPECT_EQ(f.path().filename().string().find("monoquant_calib_test.json.tmp"), std::string::npos);
  }
  std::remove(path.c_str());
}

TEST(CalibrationFile, BadFilesGetOneClearError) {
  const std::string path = testing::TempDir() + "/monoquant_calib_bad.json";
  const auto write = [&](const std::string& text) {
    std::ofstream(path, std::ios::binary) << text;
  };
  write("{\"format\": \"monoquant.calibration\", \"version\": 1, \"modules\": {");
  EXPECT_TRUE(throws_error([&] { load_calibration(path); }, ErrorKind::format, {path, "not valid JSON"}));
  write("{\"format\": \"something.else\", \"version\": 1, \"modules\": {}}");
  EXPECT_TRUE(throws_error([&] { load_calibration(path); }, ErrorKind::format, {"not a monoquant calibration file"}));
  write("{\"format\": \"monoquant.calibration\", \"version\": 7, \"modules\": {}}");
  EXPECT_TRUE(throws_error([&] { load_calibration(path); }, ErrorKind::unsupported, {"version 7"}));
  write("{\"format\": \"monoquant.calibration\", \"version\": 1, \"modules\": {\"fc\": {\"input\": {\"kind\": 3}}}}");
  EXPECT_TRUE(throws_error([&] { load_calibration(path); }, ErrorKind::format, {"fc / input"}));
  write("[]");
  EXPECT_TRUE(throws_error([&] { load_calibration(path); }, ErrorKind::format, {"one JSON object"}));
  std::remove(path.c_str());
  EXPECT_TRUE(throws_error([&] { load_calibration(path); }, ErrorKind::io, {"cannot open"}));
  auto o = make("minmax");
  EXPECT_TRUE(throws_error([&] { save_calibration(path, {{"a", "input", o.get()}, {"a", "input", o.get()}}); },
                           ErrorKind::invalid_argument, {"twice"}));
  EXPECT_TRUE(throws_error([&] { save_calibration("/nonexistent-dir/x.json", {{"a", "input", o.get()}}); }, ErrorKind::io,
                           {"/nonexistent-dir/x.json"}));
}
