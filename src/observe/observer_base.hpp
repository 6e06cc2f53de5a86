// What every observer shares: argument checks, the view of a batch as
// [outer, channels, inner] float32, per-channel finite min / max / count, the
// lock, merge checks and the JSON state envelope. Each kind adds its own
// statistics through the hooks of ObserverBase.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "monoquant/observer.hpp"

namespace monoquant::observe {

using json = nlohmann::ordered_json;

inline constexpr int kStateVersion = 1;

// A contiguous float32 batch seen as [outer, channels, inner]; channel c owns
// the spans x[(o * channels + c) * inner, + inner) for every o.
struct ChannelBatch {
  const float* x = nullptr;
  int64_t outer = 1;
  int64_t channels = 1;
  int64_t inner = 0;
};

// Per-channel statistics of the finite values of one batch.
struct BatchStats {
  std::vector<float> min, max;
  std::vector<int64_t> count;
  int64_t nonfinite = 0;
};

BatchStats gather_batch_stats(const ChannelBatch& b);

// Finite min / max / count of one span, NaN and Inf skipped and counted.
struct SpanStats {
  float min = 0, max = 0;
  int64_t count = 0, nonfinite = 0;
  void add(const float* x, int64_t n);
  void merge(const SpanStats& o);
};

class ObserverBase : public Observer {
 public:
  ObserverBase(std::string_view kind, const ObserverOptions& options);
  ObserverBase& operator=(const ObserverBase&) = delete;

  std::string_view kind() const final { return kind_; }
  const ObserverOptions& options() const final { return options_; }
  void observe(const TensorView& x) final;
  void merge(const Observer& other) final;
  void reset() final;
  std::vector<Range> ranges(int bits, Scheme scheme) const final;
  int64_t channels() const final;
  int64_t count() const final;
  int64_t nonfinite_count() const final;
  std::vector<float> min_values() const final;
  std::vector<float> max_values() const final;
  std::string save_state() const final;
  std::unique_ptr<Observer> clone() const final;

  // Creates the kind-specific state for the initial channel count; the
  // factory calls it once, right after construction.
  void initialize();

  json to_json() const;
  // Replaces the state with `state` (an object from to_json()); throws
  // format_error naming `where` when it is malformed or inconsistent.
  void restore(const json& state, const std::string& where);

 protected:
  // Everything but the lock; the caller holds other's lock (copy() below).
  ObserverBase(const ObserverBase& other);
  // A copy of this observer, called with the lock held: clone() is a plain
  // memberwise copy, not a round trip through the JSON state (which cost
  // about 100 us per histogram, paid for every shared input in calibrate).
  virtual std::unique_ptr<ObserverBase> copy() const = 0;
  // Hooks, all called with the lock held. Common statistics (count_, min_,
  // max_) are updated after on_batch / on_merge return, so those hooks see
  // the old values beside the new ones.
  virtual void on_resize(int64_t channels) = 0;  // (re)create empty per-channel state
  virtual void on_batch(const ChannelBatch& b, const BatchStats& s) = 0;
  // A kind may take the whole batch in one pass when that is faster: fill s
  // and return true. false (the default) means gather_batch_stats then on_batch.
  virtual bool observe_fused(const ChannelBatch&, BatchStats&) { return false; }
  virtual void on_merge(const ObserverBase& other) = 0;
  // Only called for channels with count_[c] > 0; must be safe to call for
  // several channels at once from different threads.
  virtual Range channel_range(int64_t c, int bits, Scheme scheme) const = 0;
  // Kind-specific options and per-channel state.
  virtual void write_options(json& j) const = 0;
  virtual void write_channel(int64_t c, json& j) const = 0;
  virtual void read_channel(int64_t c, const json& j, const std::string& where) = 0;
  // Whether channel_range is costly enough to spread channels over threads.
  virtual bool parallel_ranges() const { return false; }

  void resize_all(int64_t channels);
  // Resets the options a kind does not use to their defaults, so that
  // observers of one kind compare equal whatever else was passed.
  void keep_options(bool averaging_constant, bool bins, bool refine, bool percentile);

  std::string kind_;
  ObserverOptions options_;
  int64_t channels_ = 0;
  std::vector<int64_t> count_;
  std::vector<float> min_, max_;
  int64_t nonfinite_ = 0;
  mutable std::mutex mutex_;
};

// Factories of the concrete kinds (options already validated).
std::unique_ptr<ObserverBase> make_minmax_observer(const ObserverOptions& options);
std::unique_ptr<ObserverBase> make_moving_average_observer(const ObserverOptions& options);
std::unique_ptr<ObserverBase> make_histogram_observer(const ObserverOptions& options);
std::unique_ptr<ObserverBase> make_percentile_observer(const ObserverOptions& options);
std::unique_ptr<ObserverBase> make_observer(std::string_view kind, const ObserverOptions& options);
std::unique_ptr<ObserverBase> observer_from_json(const json& state, const std::string& where);

// JSON readers that throw format_error naming `where` and the key.
const json& require(const json& j, const char* key, const std::string& where);
double read_double(const json& j, const char* key, const std::string& where);
int64_t read_int(const json& j, const char* key, const std::string& where);
uint64_t read_uint(const json& j, const char* key, const std::string& where);
bool read_bool(const json& j, const char* key, const std::string& where);
std::string read_string(const json& j, const char* key, const std::string& where);

}  // namespace monoquant::observe
