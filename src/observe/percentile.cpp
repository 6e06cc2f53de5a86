// PercentileObserver: the histogram of histogram.hpp, read as a distribution.
// Asymmetric: [quantile(1 - p), quantile(p)]. Symmetric: [-a, a] with a the
// p-th percentile of |x| (as ONNX Runtime's percentile calibrator does).
// Quantiles interpolate inside a bin (uniform density), so they are within
// one bin width (< (max - min) / bins) of the data's own.
#include <algorithm>
#include <cmath>

#include "observe/histogram.hpp"

namespace monoquant::observe {
namespace {

class PercentileObserver final : public HistogramObserver {
 public:
  explicit PercentileObserver(const ObserverOptions& options) : HistogramObserver(options, "percentile") {
    keep_options(false, true, false, true);
  }

 protected:
  std::unique_ptr<ObserverBase> copy() const override { return std::make_unique<PercentileObserver>(*this); }
  Range channel_range(int64_t c, int, Scheme scheme) const override {
    const float mn = min_[static_cast<std::size_t>(c)], mx = max_[static_cast<std::size_t>(c)];
    if (mn == mx || options_.percentile >= 100.0) return {mn, mx};
    const ChannelModel cm = channel_model(c);
    const double total = cm.model.total();
    const double q = options_.percentile / 100.0;
    const auto clip = [&](double v) {
      return static_cast<float>(std::clamp(v, static_cast<double>(mn), static_cast<double>(mx)));
    };
    if (scheme == Scheme::asymmetric) {
      return {clip(cm.value(cm.model.position_of_mass((1.0 - q) * total))),
              clip(cm.value(cm.model.position_of_mass(q * total)))};
    }
    // Smallest a with mass(|x| <= a) >= q * total, by bisection on a.
    const auto inside = [&](double a) {
      return cm.model.mass_below(cm.position(a)) - cm.model.mass_below(cm.position(-a));
    };
    double lo = 0.0, hi = std::max(std::fabs(static_cast<double>(mn)), std::fabs(static_cast<double>(mx)));
    for (int it = 0; it < 200 && lo < hi; ++it) {
      const double mid = 0.5 * (lo + hi);
      if (mid <= lo || mid >= hi) break;
      if (inside(mid) >= q * total) hi = mid;
      else lo = mid;
    }
    const float a = static_cast<float>(hi);
    return {std::max(mn, -a), std::min(mx, a)};
  }

  void write_options(json& j) const override {
    j["bins"] = options_.bins;
    j["percentile"] = options_.percentile;
  }
};

}  // namespace

std::unique_ptr<ObserverBase> make_percentile_observer(const ObserverOptions& options) {
  return std::make_unique<PercentileObserver>(options);
}

}  // namespace monoquant::observe
