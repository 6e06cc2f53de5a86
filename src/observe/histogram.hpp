// HistogramObserver (and PercentileObserver, which reads the same histogram
// differently).
//
// The histogram is a window of W = 2 * bins + 1 bins of width 2^e whose edges
// are integer multiples of 2^e: bin i covers [(offset + i) 2^e, (offset + i + 1) 2^e).
// e is the smallest exponent for which [min, max] fits the window, so the
// observed range always spans more than `bins` bins. When the range grows, e
// grows and every old bin falls entirely inside one new bin (floor division
// of its index by a power of two): re-binning moves whole counts and loses
// nothing. The grid depends only on the range, and assigning a value to a bin
// is exact arithmetic, so the counts are a function of the data alone:
// merge(A, B), observing A then B and observing B then A give the same
// histogram, bit for bit.
#pragma once

#include <cstdint>
#include <vector>

#include "observe/histogram_model.hpp"
#include "observe/observer_base.hpp"

namespace monoquant::observe {

struct Grid {
  int exponent = 0;    // bin width 2^exponent
  int64_t offset = 0;  // bin i starts at (offset + i) * 2^exponent
  bool operator==(const Grid&) const = default;
};

int64_t window_bins(int64_t bins);
// The grid for a finite range lo <= hi (see above).
Grid grid_for(float lo, float hi, int64_t window);

struct HistogramChannel {
  Grid grid;
  std::vector<uint64_t> counts;  // window_bins(bins) entries once the channel has data
};

class HistogramObserver : public ObserverBase {
 public:
  explicit HistogramObserver(const ObserverOptions& options, std::string_view kind = "histogram");

  // For tests and tools: the window and grid of channel c.
  const HistogramChannel& channel(int64_t c) const { return hist_[static_cast<std::size_t>(c)]; }

 protected:
  std::unique_ptr<ObserverBase> copy() const override { return std::make_unique<HistogramObserver>(*this); }
  void on_resize(int64_t channels) override;
  void on_batch(const ChannelBatch& b, const BatchStats& s) override;
  bool observe_fused(const ChannelBatch& b, BatchStats& s) override;
  void on_merge(const ObserverBase& other) override;
  Range channel_range(int64_t c, int bits, Scheme scheme) const override;
  void write_options(json& j) const override;
  void write_channel(int64_t c, json& j) const override;
  void read_channel(int64_t c, const json& j, const std::string& where) override;
  bool parallel_ranges() const override { return true; }

  // The histogram of channel c between its first and last non-empty bins, as a model.
  struct ChannelModel {
    HistogramModel model;
    double base = 0;   // value at model position 0
    double width = 1;  // bin width
    float min = 0, max = 0;
    double position(double x) const { return (x - base) / width; }
    double value(double u) const { return base + u * width; }
  };
  ChannelModel channel_model(int64_t c) const;

  int64_t window_ = 0;
  std::vector<HistogramChannel> hist_;
  // observe_fused's private 32-bit counts, one window per chunk, kept zero
  // between calls: each call clears only the bins it counted into, instead of
  // allocating and zeroing whole windows (a call's fixed cost on small batches).
  // Copies of the observer start without them (they hold no statistics).
  struct Scratch {
    std::vector<std::vector<uint32_t>> chunks;
    Scratch() = default;
    Scratch(const Scratch&) {}
    Scratch& operator=(const Scratch&) { return *this; }
  };
  Scratch scratch_;
};

}  // namespace monoquant::observe
