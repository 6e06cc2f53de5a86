// The inner loops of the observers and of the MSE search, one table per
// instruction set like quant/kernels.hpp. kernels_reference.cpp is the
// oracle; the AVX2 table must give the same results (bit for bit for counts,
// min and max; to rounding for the float sums of squared_error), which
// tests/cpp/test_observers.cpp checks.
#pragma once

#include <cstdint>

namespace monoquant::observe {

struct SpanSummary {
  float min = 0, max = 0;
  bool all_finite = true;  // false: x holds NaN or +-Inf, and min / max mean nothing
};

struct ObserveKernels {
  // min and max of x[0 .. n), n > 0.
  SpanSummary (*minmax)(const float* x, int64_t n);
  // For finite x: ++counts[clamp(floor(x * inv_width) - offset, 0, last)],
  // exactly (inv_width a power of two; a tiny negative x whose product
  // underflows to -0 still counts in bin -1 before the clamp).
  void (*bin)(const float* x, int64_t n, float inv_width, float offset, int32_t last, uint32_t* counts);
  // bin() and minmax() in one pass over x (n > 0). When the summary is not
  // all_finite the counts are meaningless (NaN lands in some bin).
  SpanSummary (*bin_and_summarize)(const float* x, int64_t n, float inv_width, float offset, int32_t last,
                                   uint32_t* counts);
  // sum over x of (x - (q - zp) * scale)^2 with q = clamp(nearbyint(x * inv) + zp, qmin, qmax):
  // the quantizer's own arithmetic (quant/kernels.hpp), summed in double.
  double (*squared_error)(const float* x, int64_t n, float scale, float inv, int32_t zero_point, int32_t qmin,
                          int32_t qmax);
};

const ObserveKernels& reference_observe_kernels();
const ObserveKernels& avx2_observe_kernels();
// The table for active_isa().
const ObserveKernels& observe_kernels();

// The helpers below are used by files compiled with different -m flags:
// internal linkage, so that the linker can never hand an AVX2-compiled copy
// to the baseline build (or the other way round).
namespace {

// floor(y) for any finite float without libm (baseline x86-64 has no
// rounding instruction).
inline float floor_exact(float y) {
  if (!(y > -8388608.0f && y < 8388608.0f)) return y;  // |y| >= 2^23 is an integer already
  const float t = static_cast<float>(static_cast<int32_t>(y));
  return t > y ? t - 1.0f : t;
}

// The bin of one finite value; the scalar definition every kernel matches.
// NaN and +-Inf still give an index inside [0, last] (never read out of
// bounds), though not a meaningful one.
inline int32_t bin_index(float x, float inv_width, float offset, int32_t last) {
  float f = floor_exact(x * inv_width);
  if (f == 0.0f && x < 0.0f) f = -1.0f;  // x * inv underflowed to -0
  const float t = f - offset;
  return !(t > 0.0f) ? 0 : (t >= static_cast<float>(last) ? last : static_cast<int32_t>(t));
}

}  // namespace
}  // namespace monoquant::observe
