// choose_qparams_mse: the MSE-optimal clipping search of mse_search.hpp.
#include "monoquant/mse_search.hpp"

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "monoquant/error.hpp"
#include "monoquant/observer.hpp"
#include "monoquant/thread_pool.hpp"
#include "observe/kernels.hpp"
#include "quant/kernels.hpp"
#include "quant/layout.hpp"

namespace monoquant {

void MseSearchOptions::validate() const {
  if (!(min_ratio > 0.0 && min_ratio <= 1.0)) {
    throw_invalid_argument("min_ratio must be in (0, 1], got " + std::to_string(min_ratio));
  }
  if (steps < 1 || steps > 10000) throw_invalid_argument("steps must be in [1, 10000], got " + std::to_string(steps));
  if (refine_steps < 0 || refine_steps > 30) {
    throw_invalid_argument("refine_steps must be in [0, 30], got " + std::to_string(refine_steps));
  }
  if (lsq_iterations < 0 || lsq_iterations > 100) {
    throw_invalid_argument("lsq_iterations must be in [0, 100], got " + std::to_string(lsq_iterations));
  }
}

namespace {

struct Candidate {
  float scale = 1;
  int32_t zero_point = 0;
  double error = std::numeric_limits<double>::infinity();
};

// One scale cell, contiguous.
class CellSearch {
 public:
  CellSearch(const float* x, int64_t n, const QuantSpec& spec, const MseSearchOptions& options)
      : x_(x), n_(n), spec_(spec), options_(options), error_fn_(observe::observe_kernels().squared_error) {}

  Candidate run() {
    float lo = 0, hi = 0;
    if (n_ > 0) kernels::active_kernels().minmax(x_, n_, &lo, &hi);
    lo_ = lo;
    hi_ = hi;
    Candidate best = at_ratio(1.0);  // choose_qparams' own scale
    if (n_ == 0 || best.error == 0) return best;
    // 1. the grid of ratios
    const double step = (1.0 - options_.min_ratio) / options_.steps;
    double best_r = 1.0;
    for (int k = 1; k <= options_.steps; ++k) {
      const double r = 1.0 - k * step;
      if (r <= 0) break;
      if (keep(best, at_ratio(r))) best_r = r;
    }
    // 2. finer around the best ratio
    double h = step;
    for (int i = 0; i < options_.refine_steps; ++i) {
      h *= 0.5;
      const double center = best_r;
      for (const double r : {center - h, center + h}) {
        if (r > 0 && r <= 1.0 && keep(best, at_ratio(r))) best_r = r;
      }
    }
    // 3. least-squares refits of the scale (and zero point) to the codes
    for (int i = 0; i < options_.lsq_iterations; ++i) {
      if (!keep(best, refit(best))) break;
    }
    return best;
  }

 private:
  static bool keep(Candidate& best, const Candidate& c) {
    if (c.error < best.error) {
      best = c;
      return true;
    }
    return false;
  }

  double error_of(float scale, int32_t zp) const {
    const float inv = 1.0f / scale;
    const int32_t qmin = spec_.qmin(), qmax = spec_.qmax();
    // One big cell (per tensor) is summed over threads; small ones are not
    // worth the hand-off (and run inside a parallel loop over cells anyway).
    constexpr int64_t kParallel = int64_t{1} << 17;
    if (n_ < kParallel) return error_fn_(x_, n_, scale, inv, zp, qmin, qmax);
    const int64_t chunks = std::min<int64_t>(64, n_ / (kParallel / 4));
    std::vector<double> part(static_cast<std::size_t>(chunks), 0.0);
    const int64_t per = (n_ + chunks - 1) / chunks;
    parallel_for(chunks, 1, [&](int64_t c0, int64_t c1) {
      for (int64_t c = c0; c < c1; ++c) {
        const int64_t s = c * per;
        if (s < n_) part[static_cast<std::size_t>(c)] = error_fn_(x_ + s, std::min(per, n_ - s), scale, inv, zp, qmin, qmax);
      }
    });
    double total = 0;
    for (double p : part) total += p;
    return total;
  }

  Candidate evaluate(float scale, int32_t zp) const {
    Candidate c;
    if (!(std::isfinite(scale) && scale >= FLT_MIN)) return c;
    c.scale = scale;
    c.zero_point = std::clamp<int32_t>(zp, spec_.qmin(), spec_.qmax());
    c.error = error_of(c.scale, c.zero_point);
    return c;
  }

  // The qparams of the range [r * lo, r * hi] (the library's rule).
  Candidate at_ratio(double r) const {
    float s = 1;
    int32_t zp = 0;
    qparams_from_range(static_cast<float>(r * lo_), static_cast<float>(r * hi_), spec_, &s, &zp);
    return evaluate(s, zp);
  }

  // Keeps the codes of `c` and fits x ~ s * (q - z) to them by least squares:
  // symmetric s = sum(x q) / sum(q^2); asymmetric a line x ~ a q + b, s = a,
  // z = round(-b / a). Then re-quantizes with the new parameters.
  Candidate refit(const Candidate& c) const {
    const float inv = 1.0f / c.scale;
    const float zp = static_cast<float>(c.zero_point);
    const float qlo = static_cast<float>(spec_.qmin()), qhi = static_cast<float>(spec_.qmax());
    double sx = 0, sq = 0, sxq = 0, sqq = 0;
    for (int64_t i = 0; i < n_; ++i) {
      const double q = std::min(std::max(std::nearbyint(x_[i] * inv) + zp, qlo), qhi) - zp;
      sx += x_[i];
      sq += q;
      sxq += x_[i] * q;
      sqq += q * q;
    }
    if (spec_.scheme == Scheme::symmetric) {
      if (sqq <= 0) return {};
      return evaluate(static_cast<float>(sxq / sqq), 0);
    }
    // Fit x ~ a * q' + b with q' = q - zp; then x ~ a * (q - zp - (-b / a)).
    const double nn = static_cast<double>(n_);
    const double den = nn * sqq - sq * sq;
    if (!(den > 0)) return {};
    const double a = (nn * sxq - sx * sq) / den;
    const double b = (sx - a * sq) / nn;
    if (!(a > 0)) return {};
    const double z = c.zero_point + std::nearbyint(-b / a);
    return evaluate(static_cast<float>(a), static_cast<int32_t>(std::clamp(z, -1e9, 1e9)));
  }

  const float* x_;
  int64_t n_;
  QuantSpec spec_;
  MseSearchOptions options_;
  double (*error_fn_)(const float*, int64_t, float, float, int32_t, int32_t, int32_t);
  float lo_ = 0, hi_ = 0;
};

// The elements of each scale cell, contiguous: the input itself when cells
// follow each other in memory (per tensor, per group, per channel on axis 0),
// else a copy grouped by cell.
struct CellData {
  const float* base = nullptr;
  std::vector<int64_t> begin, length;
  std::vector<float> gathered;
};

CellData arrange_cells(const float* x, const detail::ScaleLayout& L) {
  CellData d;
  const std::size_t cells = static_cast<std::size_t>(L.scale_count);
  d.begin.assign(cells, 0);
  d.length.assign(cells, 0);
  const int64_t K = L.row_length;
  bool in_order = true;
  int64_t previous = -1;
  for (int64_t r = 0; r < L.rows; ++r) {
    for (int64_t j = 0; j < L.groups_per_row; ++j) {
      const int64_t ci = L.scale_index(r, j);
      const int64_t s = j * L.group, len = std::min(L.group, K - s);
      if (ci < previous) in_order = false;
      if (d.length[static_cast<std::size_t>(ci)] == 0) d.begin[static_cast<std::size_t>(ci)] = r * K + s;
      previous = ci;
      d.length[static_cast<std::size_t>(ci)] += len;
    }
  }
  if (in_order) {
    d.base = x;
    return d;
  }
  int64_t offset = 0;
  for (std::size_t c = 0; c < cells; ++c) {
    d.begin[c] = offset;
    offset += d.length[c];
  }
  d.gathered.resize(static_cast<std::size_t>(offset));
  std::vector<int64_t> fill(d.begin);
  for (int64_t r = 0; r < L.rows; ++r) {
    for (int64_t j = 0; j < L.groups_per_row; ++j) {
      const std::size_t ci = static_cast<std::size_t>(L.scale_index(r, j));
      const int64_t s = j * L.group, len = std::min(L.group, K - s);
      std::copy(x + r * K + s, x + r * K + s + len, d.gathered.begin() + fill[ci]);
      fill[ci] += len;
    }
  }
  d.base = d.gathered.data();
  return d;
}

}  // namespace

void choose_qparams_mse(const TensorView& input, const QuantSpec& spec, Tensor& scales, Tensor& zero_points,
                        const MseSearchOptions& options) {
  spec.validate();
  options.validate();
  input.validate("choose_qparams_mse");
  if (!is_floating(input.dtype)) {
    throw_invalid_argument("choose_qparams_mse expects a floating-point tensor, got " + std::string(name_of(input.dtype)));
  }
  const detail::ScaleLayout L = detail::make_scale_layout(input.shape, spec);
  Tensor owned;
  const float* x = nullptr;
  const bool aligned = reinterpret_cast<std::uintptr_t>(input.data) % alignof(float) == 0;
  if (input.dtype == DType::f32 && input.is_contiguous() && aligned) {
    x = reinterpret_cast<const float*>(input.data);
  } else {
    owned = to_contiguous_f32(input);
    x = owned.as<float>();
  }
  const int64_t n = input.numel();
  const auto& k = kernels::active_kernels();
  for (int64_t b = 0; b < n; b += 1 << 16) {
    if (k.absmax_bits(x + b, std::min<int64_t>(1 << 16, n - b)) >= 0x7f800000u) {
      detail::throw_nonfinite(x, n, input.shape, "choose_qparams_mse");
    }
  }

  const CellData cells = arrange_cells(x, L);
  const bool asymmetric = spec.scheme == Scheme::asymmetric;
  scales = Tensor(DType::f32, L.scale_shape);
  zero_points = asymmetric ? Tensor(DType::i32, L.scale_shape) : Tensor(DType::i32, {0});
  float* s = scales.as<float>();
  int32_t* z = asymmetric ? zero_points.as<int32_t>() : nullptr;
  const int64_t count = L.scale_count;
  const int64_t avg = count ? std::max<int64_t>(1, n / count) : 1;
  parallel_for(count, std::max<int64_t>(1, (1 << 14) / avg), [&](int64_t c0, int64_t c1) {
    for (int64_t c = c0; c < c1; ++c) {
      const std::size_t i = static_cast<std::size_t>(c);
      const Candidate best = CellSearch(cells.base + cells.begin[i], cells.length[i], spec, options).run();
      s[c] = best.scale;
      if (z) z[c] = best.zero_point;
    }
  });
}

}  // namespace monoquant
