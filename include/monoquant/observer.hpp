// Observers: running statistics of activations (or weights) from which static
// quantization parameters are chosen.
//
// Every observer has the same life cycle: observe() batches (any float dtype,
// any strides), merge() another observer of the same kind and options, ask
// for calculate_qparams(bits, scheme), and save_state() / load_observer() it
// as versioned JSON. Kinds (create_observer names):
//
//   minmax                 running min and max
//   moving_average_minmax  exponential moving average of each batch's min and
//                          max (torch's MovingAverageMinMaxObserver; c = 0.01)
//   histogram              a histogram whose range grows with the data; the
//                          range is chosen by torch.ao's L2 search, then refined
//                          against the library's own quantization grid
//   percentile             the same histogram; the range is the given
//                          percentile of the data (of |x| when symmetric)
//   auto                   histogram per tensor, minmax per channel
//
// Non-finite values: NaN and +-Inf are ignored (a static range cannot hold
// them) and counted in nonfinite_count(); an observer that saw nothing finite
// refuses calculate_qparams. Quantization parameters follow quant_spec.hpp:
// the range always includes 0, symmetric uses [-qmax, qmax] with zero point 0,
// asymmetric [qmin, qmax] with a zero point, a zero range gets scale 1, and
// scales are at least FLT_MIN; they plug straight into quantize_with_qparams.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "monoquant/quant_spec.hpp"
#include "monoquant/tensor.hpp"

namespace monoquant {

struct ObserverOptions {
  // per_tensor or per_channel (one set of statistics per index of `axis`).
  Granularity granularity = Granularity::per_tensor;
  int axis = 0;  // per_channel only; negative counts from the end (-1: hidden size of activations)
  double averaging_constant = 0.01;  // moving_average_minmax: m <- m + c * (batch - m), 0 < c <= 1
  // histogram / percentile: resolution. The observed range always spans more
  // than `bins` bins: the histogram keeps a window of 2 * bins + 1 bins whose
  // width is a power of two (so that re-binning and merging are exact).
  int64_t bins = 2048;
  // histogram: after torch's greedy L2 search, search the clipping range that
  // minimizes the modeled error on the library's own grid and keep the better
  // one. false: exactly torch's search (on this observer's histogram).
  bool refine = true;
  double percentile = 99.99;  // percentile: in (0, 100]

  // Throws invalid_argument naming the bad field.
  void validate() const;
};

// A clipping range [lo, hi] for one channel, before the qparams rule widens
// it to include 0.
struct Range {
  float lo = 0;
  float hi = 0;
};

class Observer {
 public:
  virtual ~Observer() = default;

  // "minmax", "moving_average_minmax", "histogram" or "percentile".
  virtual std::string_view kind() const = 0;
  virtual const ObserverOptions& options() const = 0;

  // Adds a batch. per_channel: the channel count is fixed by the first batch
  // and every later batch must agree. Empty tensors are ignored.
  virtual void observe(const TensorView& x) = 0;
  // Adds another observer's statistics, as if this one had observed its
  // batches too. Kind and options must match (invalid_argument otherwise).
  virtual void merge(const Observer& other) = 0;
  virtual void reset() = 0;

  // The clipping range per channel for this bit width and scheme. Throws
  // invalid_argument when nothing finite has been observed.
  virtual std::vector<Range> ranges(int bits, Scheme scheme) const = 0;
  // Scales (float32) and zero points (int32; empty [0] when symmetric) of
  // shape [] per tensor or [C] per channel, for quantize_with_qparams with
  // spec(bits, scheme).
  void calculate_qparams(int bits, Scheme scheme, Tensor& scales, Tensor& zero_points) const;
  // The QuantSpec those qparams are for.
  QuantSpec spec(int bits, Scheme scheme) const;

  // 1 per tensor; per channel, 0 until the first non-empty batch.
  virtual int64_t channels() const = 0;
  // Finite elements observed, and NaN/Inf elements ignored.
  virtual int64_t count() const = 0;
  virtual int64_t nonfinite_count() const = 0;
  // Running min / max of the finite values per channel (NaN for a channel
  // that has seen none).
  virtual std::vector<float> min_values() const = 0;
  virtual std::vector<float> max_values() const = 0;

  // Kind, options and statistics as JSON text (see docs/FORMAT.md).
  virtual std::string save_state() const = 0;
  virtual std::unique_ptr<Observer> clone() const = 0;
};

// kind: a name from the list above. Throws invalid_argument for an unknown
// kind or bad options.
std::unique_ptr<Observer> create_observer(std::string_view kind, const ObserverOptions& options = {});
// The name `auto` resolves to for these options.
std::string_view resolve_auto_observer(const ObserverOptions& options);
// Restores an observer from save_state(). Throws format_error on malformed
// or inconsistent state, unsupported on a newer version.
std::unique_ptr<Observer> load_observer(std::string_view state_json);

// The library's rule (quant_spec.hpp) from a range to (scale, zero point);
// the same numbers choose_qparams computes for data with this min and max.
void qparams_from_range(float lo, float hi, int bits, Scheme scheme, float* scale, int32_t* zero_point);
void qparams_from_range(float lo, float hi, const QuantSpec& spec, float* scale, int32_t* zero_point);

// torch.ao HistogramObserver's greedy L2 search (_non_linear_param_search)
// over a histogram of equal-width bins, quantizing onto dst_bins bins.
// Returns the first and last bin kept. Exposed for tests and tools.
struct BinRange {
  int64_t start = 0;
  int64_t end = 0;
};
BinRange torch_histogram_search(std::span<const double> histogram, int64_t dst_bins);

}  // namespace monoquant
