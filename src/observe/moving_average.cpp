// MovingAverageMinMaxObserver: torch.ao's rule. The first batch sets the
// range; every later batch moves it by m <- m + c * (batch - m), min and max
// separately, per channel.
//
// Merging is exact (up to rounding): besides the averages, each channel keeps
// its batch count k and its first batch's min and max b1. Observing A's
// batches and then B's gives m = m_B + (1 - c)^k_B * (m_A - b1_B), because
// B's first batch set its average to b1_B where a continuing A would have
// moved it by c * (b1_B - m_A) from m_A.
#include <cmath>
#include <vector>

#include "monoquant/error.hpp"
#include "observe/observer_base.hpp"

namespace monoquant::observe {
namespace {

struct Ema {
  double min = 0, max = 0;              // the moving averages
  double first_min = 0, first_max = 0;  // the first batch's min and max
  int64_t batches = 0;
};

class MovingAverageObserver final : public ObserverBase {
 public:
  explicit MovingAverageObserver(const ObserverOptions& options) : ObserverBase("moving_average_minmax", options) {
    keep_options(true, false, false, false);
  }

 protected:
  std::unique_ptr<ObserverBase> copy() const override { return std::make_unique<MovingAverageObserver>(*this); }
  void on_resize(int64_t channels) override { ema_.assign(static_cast<std::size_t>(channels), Ema{}); }

  void on_batch(const ChannelBatch&, const BatchStats& s) override {
    const double c = options_.averaging_constant;
    for (std::size_t i = 0; i < ema_.size(); ++i) {
      if (s.count[i] == 0) continue;  // nothing finite for this channel in this batch
      Ema& e = ema_[i];
      const double lo = s.min[i], hi = s.max[i];
      if (e.batches == 0) {
        e.min = e.first_min = lo;
        e.max = e.first_max = hi;
      } else {
        e.min += c * (lo - e.min);
        e.max += c * (hi - e.max);
      }
      ++e.batches;
    }
  }

  void on_merge(const ObserverBase& other_base) override {
    const auto& other = static_cast<const MovingAverageObserver&>(other_base);
    const double keep = 1.0 - options_.averaging_constant;
    for (std::size_t i = 0; i < ema_.size(); ++i) {
      const Ema& b = other.ema_[i];
      Ema& a = ema_[i];
      if (b.batches == 0) continue;
      if (a.batches == 0) {
        a = b;
        continue;
      }
      const double f = std::pow(keep, static_cast<double>(b.batches));
      a.min = b.min + f * (a.min - b.first_min);
      a.max = b.max + f * (a.max - b.first_max);
      a.batches += b.batches;
    }
  }

  Range channel_range(int64_t c, int, Scheme) const override {
    const Ema& e = ema_[static_cast<std::size_t>(c)];
    return {static_cast<float>(e.min), static_cast<float>(e.max)};
  }

  void write_options(json& j) const override { j["averaging_constant"] = options_.averaging_constant; }

  void write_channel(int64_t c, json& j) const override {
    const Ema& e = ema_[static_cast<std::size_t>(c)];
    j["ema_min"] = e.min;
    j["ema_max"] = e.max;
    j["first_min"] = e.first_min;
    j["first_max"] = e.first_max;
    j["batches"] = e.batches;
  }

  void read_channel(int64_t c, const json& j, const std::string& where) override {
    Ema e;
    e.min = read_double(j, "ema_min", where);
    e.max = read_double(j, "ema_max", where);
    e.first_min = read_double(j, "first_min", where);
    e.first_max = read_double(j, "first_max", where);
    e.batches = read_int(j, "batches", where);
    if (e.batches < 1) throw_format_error(where + ": 'batches' must be at least 1 when 'count' is positive");
    for (double v : {e.min, e.max, e.first_min, e.first_max}) {
      if (!std::isfinite(v)) throw_format_error(where + ": moving averages must be finite");
    }
    if (e.min > e.max || e.first_min > e.first_max) throw_format_error(where + ": a moving-average min exceeds its max");
    ema_[static_cast<std::size_t>(c)] = e;
  }

 private:
  std::vector<Ema> ema_;
};

}  // namespace

std::unique_ptr<ObserverBase> make_moving_average_observer(const ObserverOptions& options) {
  return std::make_unique<MovingAverageObserver>(options);
}

}  // namespace monoquant::observe
