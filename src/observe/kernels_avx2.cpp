// The observer kernels for AVX2 (this file alone is compiled with -mavx2
// -mfma). Same results as kernels_reference.cpp.
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "observe/kernels.hpp"

namespace monoquant::observe {
namespace {

float hmin(__m256 v) {
  alignas(32) float l[8];
  _mm256_store_ps(l, v);
  return *std::min_element(l, l + 8);
}

float hmax(__m256 v) {
  alignas(32) float l[8];
  _mm256_store_ps(l, v);
  return *std::max_element(l, l + 8);
}

// min / max lanes that ignore NaN (min_ps returns its second operand when
// either is NaN), and a lane mask that records any NaN; +-Inf shows in min / max.
struct Summarizer {
  __m256 lo, hi, nan = _mm256_setzero_ps();
  explicit Summarizer(float first) : lo(_mm256_set1_ps(first)), hi(_mm256_set1_ps(first)) {}
  void add(__m256 v) {
    lo = _mm256_min_ps(v, lo);
    hi = _mm256_max_ps(v, hi);
    nan = _mm256_or_ps(nan, _mm256_cmp_ps(v, v, _CMP_UNORD_Q));
  }
  SpanSummary finish(const float* tail, int64_t n) const {
    SpanSummary s;
    s.min = hmin(lo);
    s.max = hmax(hi);
    bool bad = _mm256_movemask_ps(nan) != 0;
    for (int64_t i = 0; i < n; ++i) {
      bad |= std::isnan(tail[i]);
      s.min = std::min(s.min, tail[i]);
      s.max = std::max(s.max, tail[i]);
    }
    s.all_finite = !bad && std::isfinite(s.min) && std::isfinite(s.max);
    return s;
  }
};

SpanSummary minmax(const float* x, int64_t n) {
  // Four independent accumulators: min / max latency, not throughput, would
  // otherwise bound the loop.
  Summarizer s0(x[0]), s1(x[0]), s2(x[0]), s3(x[0]);
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    s0.add(_mm256_loadu_ps(x + i));
    s1.add(_mm256_loadu_ps(x + i + 8));
    s2.add(_mm256_loadu_ps(x + i + 16));
    s3.add(_mm256_loadu_ps(x + i + 24));
  }
  for (; i + 8 <= n; i += 8) s0.add(_mm256_loadu_ps(x + i));
  s0.lo = _mm256_min_ps(_mm256_min_ps(s0.lo, s1.lo), _mm256_min_ps(s2.lo, s3.lo));
  s0.hi = _mm256_max_ps(_mm256_max_ps(s0.hi, s1.hi), _mm256_max_ps(s2.hi, s3.hi));
  s0.nan = _mm256_or_ps(_mm256_or_ps(s0.nan, s1.nan), _mm256_or_ps(s2.nan, s3.nan));
  return s0.finish(x + i, n - i);
}

// Bins in two phases per block of 512: eight indices at a time into a small
// buffer (plus the min / max / NaN summary when asked), then scalar
// increments. The increments go round robin to four 32-bit copies of the
// histogram: a run of equal bins, common in peaked data (ReLU zeros), then
// does not serialize on one counter. 32-bit, not 16-bit, counters: on Zen 3
// the 16-bit read-modify-write made the whole pass 1.6x slower (0.92 against
// 0.58 ns a value on Gaussian data, 1.16 against 0.81 with half zeros), and
// only the few lines of the bins in use need to stay in L1. The copies are
// added into `counts` before any can overflow.
template <bool kSummarize>
SpanSummary bin_impl(const float* x, int64_t n, float inv_width, float offset, int32_t last, uint32_t* counts) {
  const int64_t bins = int64_t{last} + 1;
  const __m256 inv = _mm256_set1_ps(inv_width), off = _mm256_set1_ps(offset);
  const __m256 zero = _mm256_setzero_ps(), minus_one = _mm256_set1_ps(-1.0f);
  const __m256 top = _mm256_set1_ps(static_cast<float>(last));
  const auto indices = [&](__m256 v) {
    __m256 f = _mm256_floor_ps(_mm256_mul_ps(v, inv));
    // x * inv underflowing to -0 for a tiny negative x: that is bin -1.
    const __m256 fix = _mm256_and_ps(_mm256_cmp_ps(f, zero, _CMP_EQ_OQ), _mm256_cmp_ps(v, zero, _CMP_LT_OQ));
    f = _mm256_blendv_ps(f, minus_one, fix);
    return _mm256_cvttps_epi32(_mm256_min_ps(_mm256_max_ps(_mm256_sub_ps(f, off), zero), top));
  };
  if (n < 32768) {
    // Short runs: the copies would cost more than they save; the indices
    // are still computed eight at a time (the scalar floor branches on data).
    const SpanSummary s = kSummarize ? minmax(x, n) : SpanSummary{};
    if (!s.all_finite) return s;
    alignas(32) int32_t idx[8];
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
      _mm256_store_si256(reinterpret_cast<__m256i*>(idx), indices(_mm256_loadu_ps(x + i)));
      for (int j = 0; j < 8; ++j) ++counts[idx[j]];
    }
    for (; i < n; ++i) ++counts[bin_index(x[i], inv_width, offset, last)];
    return s;
  }
  const int64_t stride = (bins + 31) / 32 * 32;
  // Every flush leaves the copies zero, so they are only zeroed when they grow.
  thread_local std::vector<uint32_t> copies;
  if (copies.size() < static_cast<std::size_t>(4 * stride)) copies.assign(static_cast<std::size_t>(4 * stride), 0);
  uint32_t* c0 = copies.data();
  uint32_t* c1 = c0 + stride;
  uint32_t* c2 = c1 + stride;
  uint32_t* c3 = c2 + stride;
  // Adds bins [lo, hi] of the copies into `counts` and zeroes them: the
  // copies are all zero outside the bins this call has counted into.
  const auto flush_bins = [&](int64_t lo, int64_t hi) {
    for (int64_t k = lo; k <= hi; ++k) {
      counts[k] += c0[k] + c1[k] + c2[k] + c3[k];
      c0[k] = c1[k] = c2[k] = c3[k] = 0;
    }
  };
  const auto flush = [&] { flush_bins(0, bins - 1); };
  constexpr int64_t kBlock = 512;
  // Each copy takes a quarter of the values, and `counts` itself is 32-bit:
  // flushing every 2^30 values keeps every sum below 2^32 for the caller's
  // spans (observe_fused takes at most 2^31 values a call).
  constexpr int64_t kFlushEvery = (int64_t{1} << 30) / kBlock * kBlock;
  alignas(32) int32_t idx[kBlock];
  Summarizer s(x[0]);
  const int64_t whole = n / kBlock * kBlock;
  int64_t since_flush = 0;
  for (int64_t b = 0; b < whole; b += kBlock) {
    for (int64_t i = 0; i < kBlock; i += 8) {
      const __m256 v = _mm256_loadu_ps(x + b + i);
      if constexpr (kSummarize) s.add(v);
      _mm256_store_si256(reinterpret_cast<__m256i*>(idx + i), indices(v));
    }
    for (int64_t i = 0; i < kBlock; i += 4) {
      ++c0[idx[i]];
      ++c1[idx[i + 1]];
      ++c2[idx[i + 2]];
      ++c3[idx[i + 3]];
    }
    since_flush += kBlock;
    if (since_flush == kFlushEvery) {
      flush();
      since_flush = 0;
    }
  }
  const SpanSummary out = kSummarize ? s.finish(x + whole, n - whole) : SpanSummary{};
  if (kSummarize && out.all_finite) {
    // Every value's bin lies between those of the minimum and the maximum
    // (bin_index is monotone): only those bins need the final flush, which
    // on a wide window and a batch of a few hundred thousand values was a
    // tenth of the call.
    flush_bins(bin_index(out.min, inv_width, offset, last), bin_index(out.max, inv_width, offset, last));
  } else {
    flush();
  }
  for (int64_t i = whole; i < n; ++i) ++counts[bin_index(x[i], inv_width, offset, last)];
  return out;
}

void bin(const float* x, int64_t n, float inv_width, float offset, int32_t last, uint32_t* counts) {
  bin_impl<false>(x, n, inv_width, offset, last, counts);
}

SpanSummary bin_and_summarize(const float* x, int64_t n, float inv_width, float offset, int32_t last,
                              uint32_t* counts) {
  return bin_impl<true>(x, n, inv_width, offset, last, counts);
}

double squared_error(const float* x, int64_t n, float scale, float inv, int32_t zero_point, int32_t qmin,
                     int32_t qmax) {
  const __m256 vinv = _mm256_set1_ps(inv);
  const __m256 vs = _mm256_set1_ps(scale);
  const __m256 vzp = _mm256_set1_ps(static_cast<float>(zero_point));
  const __m256 lo = _mm256_set1_ps(static_cast<float>(qmin));
  const __m256 hi = _mm256_set1_ps(static_cast<float>(qmax));
  double total = 0;
  int64_t i = 0;
  // float lanes over a block, then into double: accurate for any n.
  constexpr int64_t kBlock = 1024;
  while (i + 16 <= n) {
    const int64_t end = i + std::min<int64_t>(kBlock, (n - i) / 16 * 16);
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    for (; i < end; i += 16) {
      const __m256 x0 = _mm256_loadu_ps(x + i), x1 = _mm256_loadu_ps(x + i + 8);
      __m256 q0 = _mm256_round_ps(_mm256_mul_ps(x0, vinv), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
      __m256 q1 = _mm256_round_ps(_mm256_mul_ps(x1, vinv), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
      q0 = _mm256_min_ps(_mm256_max_ps(_mm256_add_ps(q0, vzp), lo), hi);
      q1 = _mm256_min_ps(_mm256_max_ps(_mm256_add_ps(q1, vzp), lo), hi);
      const __m256 d0 = _mm256_sub_ps(x0, _mm256_mul_ps(_mm256_sub_ps(q0, vzp), vs));
      const __m256 d1 = _mm256_sub_ps(x1, _mm256_mul_ps(_mm256_sub_ps(q1, vzp), vs));
      acc0 = _mm256_fmadd_ps(d0, d0, acc0);
      acc1 = _mm256_fmadd_ps(d1, d1, acc1);
    }
    alignas(32) float lanes[8];
    _mm256_store_ps(lanes, _mm256_add_ps(acc0, acc1));
    for (float v : lanes) total += v;
  }
  return total + reference_observe_kernels().squared_error(x + i, n - i, scale, inv, zero_point, qmin, qmax);
}

}  // namespace

const ObserveKernels& avx2_observe_kernels() {
  static const ObserveKernels table{minmax, bin, bin_and_summarize, squared_error};
  return table;
}

}  // namespace monoquant::observe
