#include "monoquant/metrics.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <optional>
#include <vector>

#include "monoquant/error.hpp"
#include "monoquant/thread_pool.hpp"

namespace monoquant {
namespace {

struct Sums {
  double xx = 0, yy = 0, xy = 0, ee = 0, max_abs = 0;
};

const float* as_f32(const TensorView& v, std::optional<Tensor>& owned) {
  // Views may start at any byte; only a float-aligned one is read in place.
  if (v.dtype == DType::f32 && v.is_contiguous() && reinterpret_cast<std::uintptr_t>(v.data) % alignof(float) == 0) {
    return reinterpret_cast<const float*>(v.data);
  }
  owned = to_contiguous_f32(v);
  return owned->as<float>();
}

}  // namespace

ErrorMetrics compare(const TensorView& reference, const TensorView& approximation) {
  reference.validate("compare");
  approximation.validate("compare");
  if (reference.shape != approximation.shape) {
    throw_invalid_argument("compare: shapes differ, " + shape_to_string(reference.shape) + " vs " +
                           shape_to_string(approximation.shape));
  }
  std::optional<Tensor> ox, oy;
  const float* x = as_f32(reference, ox);
  const float* y = as_f32(approximation, oy);
  const int64_t n = reference.numel();
  constexpr int64_t chunk = 1 << 16;
  const int64_t chunks = (n + chunk - 1) / chunk;
  std::vector<Sums> part(static_cast<std::size_t>(chunks));
  parallel_for(chunks, 1, [&](int64_t c0, int64_t c1) {
    for (int64_t c = c0; c < c1; ++c) {
      Sums s;
      for (int64_t i = c * chunk, e = std::min(n, (c + 1) * chunk); i < e; ++i) {
        const double a = x[i], b = y[i], d = a - b;
        s.xx += a * a;
        s.yy += b * b;
        s.xy += a * b;
        s.ee += d * d;
        s.max_abs = std::max(s.max_abs, std::fabs(d));
      }
      part[static_cast<std::size_t>(c)] = s;
    }
  });
  Sums t;
  for (const auto& s : part) {
    t.xx += s.xx;
    t.yy += s.yy;
    t.xy += s.xy;
    t.ee += s.ee;
    t.max_abs = std::max(t.max_abs, s.max_abs);
  }
  ErrorMetrics m;
  constexpr double inf = std::numeric_limits<double>::infinity();
  m.reference_energy = t.xx;
  m.error_energy = t.ee;
  m.mse = n ? t.ee / static_cast<double>(n) : 0.0;
  m.max_abs_error = t.max_abs;
  if (t.ee == 0) m.sqnr_db = inf;
  else if (t.xx == 0) m.sqnr_db = -inf;
  else m.sqnr_db = 10.0 * std::log10(t.xx / t.ee);
  if (t.xx == 0 && t.yy == 0) m.cosine_similarity = 1.0;
  else if (t.xx == 0 || t.yy == 0) m.cosine_similarity = 0.0;
  else m.cosine_similarity = t.xy / std::sqrt(t.xx * t.yy);
  return m;
}

}  // namespace monoquant
