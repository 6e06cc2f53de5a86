// A histogram seen as a density: unit-width bins over [0, bins), the mass of
// each bin spread uniformly inside it. Prefix sums of the mass and of its
// first two moments make the squared error of any uniform quantizer an
// O(levels) computation instead of O(bins), which is what makes the range
// searches below cheap.
#pragma once

#include <cstdint>
#include <vector>

#include "monoquant/observer.hpp"

namespace monoquant::observe {

class HistogramModel {
 public:
  // counts[0 .. bins): non-negative, finite.
  HistogramModel(const double* counts, int64_t bins);
  HistogramModel(const uint64_t* counts, int64_t bins);

  int64_t bins() const { return bins_; }
  double total() const { return p0_.back(); }
  // Mass below position u (inclusive prefix of the bins before u, plus the part of u's bin).
  double mass_below(double u) const;
  // The position below which `mass` lies (0 <= mass <= total).
  double position_of_mass(double mass) const;
  // Squared error of a quantizer with `levels` levels at origin + j * step
  // (j = 0 .. levels - 1) that sends each value to the nearest level, the
  // outer levels taking everything beyond them (clipping).
  double quantizer_error(double origin, double step, int64_t levels) const;
  // Inclusive cumulative mass of bin i (torch's cSum).
  double cumulative(int64_t i) const { return p0_[static_cast<std::size_t>(i + 1)]; }

 private:
  struct Moments {
    double m0 = 0, m1 = 0, m2 = 0;
  };
  Moments below(double u) const;
  void build();

  int64_t bins_ = 0;
  std::vector<double> h_, p0_, p1_, p2_;
};

// torch.ao HistogramObserver._non_linear_param_search on this histogram,
// quantizing onto dst_bins bins: first and last bins kept.
BinRange torch_greedy_search(const HistogramModel& model, int64_t dst_bins);
// torch's error model E(start, end) for that search.
double torch_search_error(const HistogramModel& model, int64_t start, int64_t end, int64_t dst_bins);

}  // namespace monoquant::observe
