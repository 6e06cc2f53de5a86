// The scalar observer kernels: the oracle for kernels_avx2.cpp.
#include <algorithm>
#include <cmath>

#include "monoquant/cpu_features.hpp"
#include "observe/kernels.hpp"

namespace monoquant::observe {
namespace {

SpanSummary minmax(const float* x, int64_t n) {
  SpanSummary s;
  s.min = s.max = x[0];
  for (int64_t i = 0; i < n; ++i) {
    if (!std::isfinite(x[i])) s.all_finite = false;
    s.min = std::min(s.min, x[i]);
    s.max = std::max(s.max, x[i]);
  }
  return s;
}

void bin(const float* x, int64_t n, float inv_width, float offset, int32_t last, uint32_t* counts) {
  for (int64_t i = 0; i < n; ++i) ++counts[bin_index(x[i], inv_width, offset, last)];
}

SpanSummary bin_and_summarize(const float* x, int64_t n, float inv_width, float offset, int32_t last,
                              uint32_t* counts) {
  const SpanSummary s = minmax(x, n);
  if (s.all_finite) bin(x, n, inv_width, offset, last, counts);
  return s;
}

double squared_error(const float* x, int64_t n, float scale, float inv, int32_t zero_point, int32_t qmin,
                     int32_t qmax) {
  const float zp = static_cast<float>(zero_point), lo = static_cast<float>(qmin), hi = static_cast<float>(qmax);
  double total = 0;
  for (int64_t i = 0; i < n; ++i) {
    const float q = std::min(std::max(std::nearbyint(x[i] * inv) + zp, lo), hi);
    const float d = x[i] - (q - zp) * scale;
    total += static_cast<double>(d) * d;
  }
  return total;
}

}  // namespace

const ObserveKernels& reference_observe_kernels() {
  static const ObserveKernels table{minmax, bin, bin_and_summarize, squared_error};
  return table;
}

const ObserveKernels& observe_kernels() {
  return active_isa() == Isa::avx2 ? avx2_observe_kernels() : reference_observe_kernels();
}

}  // namespace monoquant::observe
