#include "observe/histogram_model.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>

#include "monoquant/error.hpp"

namespace monoquant::observe {

HistogramModel::HistogramModel(const double* counts, int64_t bins) : bins_(bins), h_(counts, counts + bins) { build(); }

HistogramModel::HistogramModel(const uint64_t* counts, int64_t bins) : bins_(bins), h_(static_cast<std::size_t>(bins)) {
  for (int64_t i = 0; i < bins; ++i) h_[static_cast<std::size_t>(i)] = static_cast<double>(counts[i]);
  build();
}

void HistogramModel::build() {
  const std::size_t n = static_cast<std::size_t>(bins_);
  p0_.assign(n + 1, 0.0);
  p1_.assign(n + 1, 0.0);
  p2_.assign(n + 1, 0.0);
  for (std::size_t i = 0; i < n; ++i) {
    const double h = h_[i], k = static_cast<double>(i);
    p0_[i + 1] = p0_[i] + h;
    p1_[i + 1] = p1_[i] + h * (k + 0.5);                   // integral of u over [k, k+1)
    p2_[i + 1] = p2_[i] + h * (k * k + k + 1.0 / 3.0);     // integral of u^2 over [k, k+1)
  }
}

HistogramModel::Moments HistogramModel::below(double u) const {
  if (!(u > 0)) return {};
  const std::size_t n = static_cast<std::size_t>(bins_);
  if (u >= static_cast<double>(bins_)) return {p0_[n], p1_[n], p2_[n]};
  const std::size_t k = static_cast<std::size_t>(u);
  const double kd = static_cast<double>(k), f = u - kd, h = h_[k];
  return {p0_[k] + h * f, p1_[k] + h * f * (kd + 0.5 * f), p2_[k] + h * f * (kd * kd + kd * f + f * f / 3.0)};
}

double HistogramModel::mass_below(double u) const { return below(u).m0; }

double HistogramModel::position_of_mass(double mass) const {
  if (!(mass > 0)) {
    // The start of the first bin holding mass.
    for (int64_t i = 0; i < bins_; ++i) {
      if (h_[static_cast<std::size_t>(i)] > 0) return static_cast<double>(i);
    }
    return 0.0;
  }
  if (mass >= total()) {
    for (int64_t i = bins_ - 1; i >= 0; --i) {
      if (h_[static_cast<std::size_t>(i)] > 0) return static_cast<double>(i + 1);
    }
    return static_cast<double>(bins_);
  }
  // First bin whose inclusive prefix reaches `mass`.
  const auto it = std::lower_bound(p0_.begin() + 1, p0_.end(), mass);
  const std::size_t k = static_cast<std::size_t>(it - p0_.begin()) - 1;
  const double h = h_[k];
  const double f = h > 0 ? std::clamp((mass - p0_[k]) / h, 0.0, 1.0) : 0.0;
  return static_cast<double>(k) + f;
}

double HistogramModel::quantizer_error(double origin, double step, int64_t levels) const {
  const Moments all = below(std::numeric_limits<double>::infinity());
  if (levels <= 0 || all.m0 == 0) return 0.0;
  if (!(step > 0) || levels == 1) {
    const double v = origin;
    return std::max(0.0, all.m2 - 2 * v * all.m1 + v * v * all.m0);
  }
  const double last = static_cast<double>(levels - 1);
  const auto level_at = [&](double u) { return std::clamp(std::floor((u - origin) / step + 0.5), 0.0, last); };
  // Only the levels whose cells meet [0, bins) see any mass.
  const int64_t j0 = static_cast<int64_t>(level_at(0.0));
  const int64_t j1 = static_cast<int64_t>(level_at(static_cast<double>(bins_)));
  double err = 0;
  Moments prev;
  for (int64_t j = j0; j <= j1; ++j) {
    const double v = origin + static_cast<double>(j) * step;
    const Moments next = j == j1 ? all : below(v + 0.5 * step);
    const double d0 = next.m0 - prev.m0, d1 = next.m1 - prev.m1, d2 = next.m2 - prev.m2;
    err += std::max(0.0, d2 - 2 * v * d1 + v * v * d0);
    prev = next;
  }
  return err;
}

double torch_search_error(const HistogramModel& model, int64_t start, int64_t end, int64_t dst_bins) {
  // torch: dst bins of width (end - start + 1) * bin_width / dst_nbins from
  // the start of bin `start`, every source bin (clipped ones too) sent to the
  // centre of the dst bin each of its points falls in.
  const double w = static_cast<double>(end - start + 1) / static_cast<double>(dst_bins);
  if (w == 0.0) return 0.0;
  return model.quantizer_error(static_cast<double>(start) + 0.5 * w, w, dst_bins);
}

BinRange torch_greedy_search(const HistogramModel& model, int64_t dst_bins) {
  const int64_t B = model.bins();
  const double total = model.total();
  const double stepsize = 1e-5;
  double alpha = 0.0, beta = 1.0;
  int64_t start = 0, end = B - 1;
  double norm_min = std::numeric_limits<double>::infinity();
  // torch rescans from start / end on every step; since the quantile bounds
  // only move inwards, two pointers that only move forward give the same l
  // and r in amortized O(1): l = clamp(first bin with cSum >= a * total),
  // r = clamp(last bin with cSum <= b * total).
  int64_t first_at_least = 0, last_at_most = B - 1;
  while (alpha < beta) {
    const double next_alpha = alpha + stepsize;
    const double next_beta = beta - stepsize;
    while (first_at_least < B && model.cumulative(first_at_least) < next_alpha * total) ++first_at_least;
    while (last_at_most >= 0 && model.cumulative(last_at_most) > next_beta * total) --last_at_most;
    const int64_t l = std::clamp(first_at_least, start, end);
    const int64_t r = std::clamp(last_at_most, start, end);
    int64_t next_start = start, next_end = end;
    if (l - start > end - r) {
      next_start = l;
      alpha = next_alpha;
    } else {
      next_end = r;
      beta = next_beta;
    }
    if (next_start == start && next_end == end) continue;
    const double norm = torch_search_error(model, next_start, next_end, dst_bins);
    if (norm > norm_min) break;
    norm_min = norm;
    start = next_start;
    end = next_end;
  }
  return {start, end};
}

}  // namespace monoquant::observe

namespace monoquant {

BinRange torch_histogram_search(std::span<const double> histogram, int64_t dst_bins) {
  if (histogram.empty()) throw_invalid_argument("torch_histogram_search needs at least one bin");
  if (dst_bins < 1) throw_invalid_argument("dst_bins must be at least 1, got " + std::to_string(dst_bins));
  for (double h : histogram) {
    if (!(std::isfinite(h) && h >= 0)) throw_invalid_argument("histogram counts must be finite and non-negative");
  }
  const observe::HistogramModel model(histogram.data(), static_cast<int64_t>(histogram.size()));
  return observe::torch_greedy_search(model, dst_bins);
}

}  // namespace monoquant
