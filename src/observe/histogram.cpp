// HistogramObserver: an exactly mergeable histogram (see histogram.hpp) and
// the range search on it.
//
// The range comes from torch.ao's greedy L2 search (_non_linear_param_search,
// here in O(levels) per step on prefix sums, histogram_model.cpp). torch's
// error model quantizes onto 2^bits bins centred in the range, which is not
// the grid the range is then used with. With `refine`, the search goes on
// against the library's own grid: the modeled squared error of the actual
// scale and zero point that qparams_from_range gives for a candidate range,
// minimized over the clipping range (1-D for symmetric, coordinate descent
// over both ends for asymmetric) and compared with torch's choice, which is
// kept when nothing beats it.
#include "observe/histogram.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <mutex>
#include <string>
#include <utility>

#include "monoquant/error.hpp"
#include "monoquant/thread_pool.hpp"
#include "observe/kernels.hpp"

namespace monoquant::observe {

int64_t window_bins(int64_t bins) { return 2 * bins + 1; }

Grid grid_for(float lo, float hi, int64_t window) {
  const double dlo = lo, dhi = hi;
  const double a = std::max(std::fabs(dlo), std::fabs(dhi));
  // Bin indices stay below 2^41 in magnitude, and 2^-e stays a normal float.
  int e_floor = -126;
  if (a > 0) {
    int ea = 0;
    std::frexp(a, &ea);
    e_floor = std::max(ea - 41, -126);
  }
  int e = e_floor;
  const double span = dhi - dlo;
  if (span > 0) {
    int es = 0;
    std::frexp(span / static_cast<double>(window - 1), &es);
    e = std::max(e, es - 2);  // too fine to fit: the loop below only moves up
  }
  for (;; ++e) {
    const double inv = std::ldexp(1.0, -e);
    const double first = std::floor(dlo * inv), last = std::floor(dhi * inv);
    if (last - first <= static_cast<double>(window - 1)) return {e, static_cast<int64_t>(first)};
  }
}

namespace {

// The bin index of x on grids of exponent e: floor(x / 2^e), exact in double.
int64_t bin_of(float x, int e) { return static_cast<int64_t>(std::floor(std::ldexp(static_cast<double>(x), -e))); }

// Whether g's window holds every value of [lo, hi].
bool holds(const Grid& g, float lo, float hi, int64_t window) {
  return bin_of(lo, g.exponent) >= g.offset && bin_of(hi, g.exponent) - g.offset <= window - 1;
}

// The grid a channel that will hold [lo, hi] uses: its own while that has
// grid_for's exponent and still holds the range, else grid_for's with the
// range moved to the middle of the window. The spare bins on both sides let
// later batches that reach a little further either way be counted in the
// same single pass (observe_fused) instead of forcing a re-grid and a second
// pass: grid_for anchors the window at the minimum, so any new minimum did.
// Bins are multiples of 2^e whatever the offset, so the counts, the range
// search and the saved state (written on grid_for's grid) do not change.
Grid next_grid(const HistogramChannel& ch, float lo, float hi, int64_t window) {
  Grid g = grid_for(lo, hi, window);
  if (!ch.counts.empty() && ch.grid.exponent == g.exponent && holds(ch.grid, lo, hi, window)) return ch.grid;
  const int64_t spare = window - 1 - (bin_of(hi, g.exponent) - g.offset);
  // The kernels subtract the offset in float: it and every bin index in the
  // window must stay exact integers there (grid_for's own offset always is).
  constexpr int64_t kExact = int64_t{1} << 24;
  if (std::abs(g.offset) + 2 * window < kExact) g.offset -= spare / 2;
  return g;
}

// Moves every count of `ch` onto the coarser grid g (whole bins, no split).
void rebin(HistogramChannel& ch, const Grid& g, int64_t window) {
  if (ch.grid == g) return;
  const int d = g.exponent - ch.grid.exponent;
  if (d < 0) throw_invalid_argument("internal error: histogram grid would get finer on re-binning");
  std::vector<uint64_t> out(static_cast<std::size_t>(window), 0);
  for (int64_t i = 0; i < window; ++i) {
    const uint64_t c = ch.counts[static_cast<std::size_t>(i)];
    if (c == 0) continue;
    const int64_t src = ch.grid.offset + i;
    const int64_t coarse = d >= 63 ? (src < 0 ? -1 : 0) : (src >> d);  // floor division by 2^d
    out[static_cast<std::size_t>(std::clamp<int64_t>(coarse - g.offset, 0, window - 1))] += c;
  }
  ch.counts = std::move(out);
  ch.grid = g;
}

// Bins a flat, per-tensor batch: threads fill private 32-bit histograms and
// add them to the channel's at the end.
void bin_flat(const float* x, int64_t n, bool has_nonfinite, HistogramChannel& ch, int64_t window) {
  const float inv = std::ldexp(1.0f, -ch.grid.exponent);
  const float offset = static_cast<float>(ch.grid.offset);
  const int32_t last = static_cast<int32_t>(window - 1);
  const auto& k = observe_kernels();
  std::mutex m;
  parallel_for(n, 1 << 16, [&](int64_t s, int64_t e) {
    std::vector<uint32_t> local(static_cast<std::size_t>(window), 0);
    const auto flush = [&] {
      std::lock_guard lock(m);
      for (int64_t i = 0; i < window; ++i) ch.counts[static_cast<std::size_t>(i)] += local[static_cast<std::size_t>(i)];
      std::fill(local.begin(), local.end(), 0u);
    };
    constexpr int64_t kFlush = int64_t{1} << 30;  // keeps 32-bit counts from overflowing
    for (int64_t b = s; b < e; b += kFlush) {
      const int64_t len = std::min(kFlush, e - b);
      if (!has_nonfinite) {
        k.bin(x + b, len, inv, offset, last, local.data());
      } else {
        for (int64_t i = b; i < b + len; ++i) {
          if (std::isfinite(x[i])) ++local[static_cast<std::size_t>(bin_index(x[i], inv, offset, last))];
        }
      }
      if (b + len < e) flush();
    }
    flush();
  });
}

struct Minimum {
  double t = 1.0;
  double cost = std::numeric_limits<double>::infinity();
};

// Minimizes cost(t) over t in (0, 1]: a fixed grid (uniform steps, plus
// geometric ones down to 1e-6 for very heavy tails), then bisection towards
// the best point between its two grid neighbours. With `around` > 0 the grid
// is skipped and the bisection starts from `around` +- 1/16 of it (a local
// polish of a point found before).
template <class F>
Minimum minimize_fraction(F&& cost, double around = 0) {
  static const std::vector<double> grid = [] {
    std::vector<double> g;
    for (int i = 1; i <= 64; ++i) g.push_back(i / 64.0);
    for (int k = 13; k <= 40; ++k) g.push_back(std::exp2(-k / 2.0));
    std::sort(g.begin(), g.end());
    return g;
  }();
  Minimum best;
  double lo = 0, hi = 1;
  if (around > 0) {
    best = {around, cost(around)};
    lo = around * (1 - 1.0 / 16);
    hi = std::min(1.0, around * (1 + 1.0 / 16));
  } else {
    std::size_t bi = 0;
    for (std::size_t i = 0; i < grid.size(); ++i) {
      const double c = cost(grid[i]);
      if (c < best.cost) {
        best = {grid[i], c};
        bi = i;
      }
    }
    lo = bi > 0 ? grid[bi - 1] : grid[0] / 2;
    hi = bi + 1 < grid.size() ? grid[bi + 1] : 1.0;
  }
  for (int it = 0; it < 14; ++it) {
    const double m1 = 0.5 * (lo + best.t), m2 = 0.5 * (best.t + hi);
    const double c1 = cost(m1), c2 = cost(m2);
    if (c1 < best.cost && c1 <= c2) {
      hi = best.t;
      best = {m1, c1};
    } else if (c2 < best.cost) {
      lo = best.t;
      best = {m2, c2};
    } else {
      lo = m1;
      hi = m2;
    }
  }
  return best;
}

}  // namespace

HistogramObserver::HistogramObserver(const ObserverOptions& options, std::string_view kind)
    : ObserverBase(kind, options), window_(window_bins(options.bins)) {
  if (kind == "histogram") keep_options(false, true, true, false);
}

void HistogramObserver::on_resize(int64_t channels) { hist_.assign(static_cast<std::size_t>(channels), {}); }

void HistogramObserver::on_batch(const ChannelBatch& b, const BatchStats& s) {
  const int64_t C = b.channels;
  // Grow each channel's grid to the new range first, then count.
  for (int64_t c = 0; c < C; ++c) {
    const std::size_t i = static_cast<std::size_t>(c);
    if (s.count[i] == 0) continue;
    const float lo = count_[i] ? std::min(min_[i], s.min[i]) : s.min[i];
    const float hi = count_[i] ? std::max(max_[i], s.max[i]) : s.max[i];
    HistogramChannel& ch = hist_[i];
    const Grid g = next_grid(ch, lo, hi, window_);
    if (ch.counts.empty()) {
      ch.counts.assign(static_cast<std::size_t>(window_), 0);
      ch.grid = g;
    } else {
      rebin(ch, g, window_);
    }
  }
  if (C == 1) {
    if (s.count[0] > 0) bin_flat(b.x, b.outer * b.inner, s.nonfinite > 0, hist_[0], window_);
    return;
  }
  // Per channel: each thread owns a block of channels. A tile of each
  // channel's values is gathered into a contiguous run (reading whole rows
  // when channels interleave, i.e. a small `inner`) and counted into private
  // 32-bit histograms that stay in cache; the channels' own 64-bit counts, a
  // whole histogram each and cold by now, are then updated once, in order.
  const int32_t last = static_cast<int32_t>(window_ - 1);
  constexpr int64_t kTile = 4096;
  constexpr int64_t kStride = kTile + 16;  // not a multiple of 4 KiB: rows must not share cache sets
  constexpr int64_t kBlock = 16;
  const int64_t blocks = (C + kBlock - 1) / kBlock;
  const int64_t per_channel = b.outer * b.inner;
  const auto& kern = observe_kernels();
  parallel_for(blocks, 1, [&](int64_t b0, int64_t b1) {
    std::vector<float> tile(static_cast<std::size_t>(kBlock * kStride));
    std::vector<uint32_t> local(static_cast<std::size_t>(kBlock * window_));
    for (int64_t blk = b0; blk < b1; ++blk) {
      const int64_t c0 = blk * kBlock, c1 = std::min(C, c0 + kBlock);
      std::fill(local.begin(), local.end(), 0u);
      const auto flush = [&] {
        for (int64_t c = c0; c < c1; ++c) {
          uint64_t* counts = hist_[static_cast<std::size_t>(c)].counts.data();
          uint32_t* mine = local.data() + (c - c0) * window_;
          if (s.count[static_cast<std::size_t>(c)] == 0) continue;
          for (int64_t k = 0; k < window_; ++k) counts[k] += mine[k];
          std::fill(mine, mine + window_, 0u);
        }
      };
      int64_t since_flush = 0;
      for (int64_t start = 0; start < per_channel; start += kTile) {
        const int64_t len = std::min(kTile, per_channel - start);
        // Element k of channel c is x[((k / inner) * C + c) * inner + k % inner].
        int64_t o = start / b.inner, i = start % b.inner;
        for (int64_t k = 0; k < len; ++k) {
          const float* p = b.x + (o * C + c0) * b.inner + i;
          float* t = tile.data() + k;
          for (int64_t c = 0; c < c1 - c0; ++c) t[c * kStride] = p[c * b.inner];
          if (++i == b.inner) {
            i = 0;
            ++o;
          }
        }
        for (int64_t c = c0; c < c1; ++c) {
          if (s.count[static_cast<std::size_t>(c)] == 0) continue;
          const Grid& g = hist_[static_cast<std::size_t>(c)].grid;
          const float inv = std::ldexp(1.0f, -g.exponent);
          const float offset = static_cast<float>(g.offset);
          const float* run = tile.data() + (c - c0) * kStride;
          uint32_t* mine = local.data() + (c - c0) * window_;
          if (s.nonfinite == 0) {
            kern.bin(run, len, inv, offset, last, mine);
          } else {
            for (int64_t k = 0; k < len; ++k) {
              if (std::isfinite(run[k])) ++mine[bin_index(run[k], inv, offset, last)];
            }
          }
        }
        since_flush += len;
        if (since_flush >= (int64_t{1} << 31)) {  // before 32-bit counts could overflow
          flush();
          since_flush = 0;
        }
      }
      flush();
    }
  });
}

// Per tensor, once the grid exists, most batches fall inside it: bin and
// take min / max in the same pass, into private counts, and keep them only
// if the batch was finite and leaves the grid as it is. Otherwise the
// two-pass path (statistics, re-grid, bin) runs and the counts are dropped.
bool HistogramObserver::observe_fused(const ChannelBatch& b, BatchStats& s) {
  const int64_t n = b.outer * b.inner;
  if (b.channels != 1 || count_[0] == 0 || n > (int64_t{1} << 31)) return false;
  HistogramChannel& ch = hist_[0];
  const float inv = std::ldexp(1.0f, -ch.grid.exponent);
  const float offset = static_cast<float>(ch.grid.offset);
  const int32_t last = static_cast<int32_t>(window_ - 1);
  const auto& k = observe_kernels();
  const int64_t chunks = std::max<int64_t>(1, std::min<int64_t>(num_threads(), n / (1 << 15)));
  const int64_t per = (n + chunks - 1) / chunks;
  if (static_cast<int64_t>(scratch_.chunks.size()) < chunks) scratch_.chunks.resize(static_cast<std::size_t>(chunks));
  for (int64_t c = 0; c < chunks; ++c) {
    auto& counts = scratch_.chunks[static_cast<std::size_t>(c)];
    if (static_cast<int64_t>(counts.size()) != window_) counts.assign(static_cast<std::size_t>(window_), 0u);
  }
  std::vector<SpanSummary> sums(static_cast<std::size_t>(chunks));
  parallel_for(chunks, 1, [&](int64_t c0, int64_t c1) {
    for (int64_t c = c0; c < c1; ++c) {
      const int64_t start = c * per, len = std::min(per, n - start);
      uint32_t* counts = scratch_.chunks[static_cast<std::size_t>(c)].data();
      if (len > 0) sums[static_cast<std::size_t>(c)] = k.bin_and_summarize(b.x + start, len, inv, offset, last, counts);
      else sums[static_cast<std::size_t>(c)] = {std::numeric_limits<float>::infinity(), -std::numeric_limits<float>::infinity(), true};
    }
  });
  // The bins chunk c counted into: those of its minimum to its maximum when
  // it was finite (bin_index is monotone), else possibly any.
  const auto touched = [&](int64_t c) -> std::pair<int64_t, int64_t> {
    const SpanSummary& t = sums[static_cast<std::size_t>(c)];
    if (!t.all_finite) return {0, window_ - 1};
    if (t.min > t.max) return {1, 0};  // an empty chunk
    return {bin_index(t.min, inv, offset, last), bin_index(t.max, inv, offset, last)};
  };
  // Adds (or with keep = false only clears) each chunk's counts, leaving scratch_ zero.
  const auto drain = [&](bool keep) {
    for (int64_t c = 0; c < chunks; ++c) {
      uint32_t* counts = scratch_.chunks[static_cast<std::size_t>(c)].data();
      const auto [lo, hi] = touched(c);
      for (int64_t i = lo; i <= hi; ++i) {
        if (keep) ch.counts[static_cast<std::size_t>(i)] += counts[i];
        counts[i] = 0;
      }
    }
  };
  float lo = sums[0].min, hi = sums[0].max;
  for (const auto& t : sums) {
    if (!t.all_finite) {
      drain(false);
      return false;
    }
    lo = std::min(lo, t.min);
    hi = std::max(hi, t.max);
  }
  s.min = {lo};
  s.max = {hi};
  s.count = {n};
  s.nonfinite = 0;
  if (next_grid(ch, std::min(lo, min_[0]), std::max(hi, max_[0]), window_) == ch.grid) {
    drain(true);
  } else {
    drain(false);
    on_batch(b, s);  // the batch left the window: re-grid and count again (its statistics are known)
  }
  return true;
}

void HistogramObserver::on_merge(const ObserverBase& other_base) {
  const auto& other = static_cast<const HistogramObserver&>(other_base);
  for (int64_t c = 0; c < channels_; ++c) {
    const std::size_t i = static_cast<std::size_t>(c);
    if (other.count_[i] == 0) continue;
    const float lo = count_[i] ? std::min(min_[i], other.min_[i]) : other.min_[i];
    const float hi = count_[i] ? std::max(max_[i], other.max_[i]) : other.max_[i];
    HistogramChannel& mine = hist_[i];
    const Grid g = next_grid(mine, lo, hi, window_);
    HistogramChannel theirs = other.hist_[i];
    rebin(theirs, g, window_);
    if (mine.counts.empty()) {
      mine = std::move(theirs);
      continue;
    }
    rebin(mine, g, window_);
    for (int64_t k = 0; k < window_; ++k) mine.counts[static_cast<std::size_t>(k)] += theirs.counts[static_cast<std::size_t>(k)];
  }
}

HistogramObserver::ChannelModel HistogramObserver::channel_model(int64_t c) const {
  const HistogramChannel& ch = hist_[static_cast<std::size_t>(c)];
  int64_t first = 0, last = window_ - 1;
  while (first < last && ch.counts[static_cast<std::size_t>(first)] == 0) ++first;
  while (last > first && ch.counts[static_cast<std::size_t>(last)] == 0) --last;
  return ChannelModel{HistogramModel(ch.counts.data() + first, last - first + 1),
                      std::ldexp(static_cast<double>(ch.grid.offset + first), ch.grid.exponent),
                      std::ldexp(1.0, ch.grid.exponent), min_[static_cast<std::size_t>(c)],
                      max_[static_cast<std::size_t>(c)]};
}

namespace {

// Modeled squared error of quantizing the channel with the qparams the
// library derives from [lo, hi]: levels (q - zp) * scale for q in [qmin, qmax].
double grid_cost(const HistogramModel& model, double base, double width, float lo,
                 float hi, int bits, Scheme scheme) {
  float s = 1;
  int32_t zp = 0;
  qparams_from_range(lo, hi, bits, scheme, &s, &zp);
  QuantSpec spec;
  spec.bits = bits;
  spec.scheme = scheme;
  const int qmin = spec.qmin(), qmax = spec.qmax();
  const double origin = (static_cast<double>(qmin - zp) * s - base) / width;
  return model.quantizer_error(origin, static_cast<double>(s) / width, qmax - qmin + 1);
}

}  // namespace

Range HistogramObserver::channel_range(int64_t c, int bits, Scheme scheme) const {
  const float mn = min_[static_cast<std::size_t>(c)], mx = max_[static_cast<std::size_t>(c)];
  if (mn == mx) return {mn, mx};
  const ChannelModel cm = channel_model(c);
  const BinRange br = torch_greedy_search(cm.model, int64_t{1} << bits);
  const auto clip = [&](double v) { return static_cast<float>(std::clamp(v, static_cast<double>(mn), static_cast<double>(mx))); };
  Range best{clip(cm.value(static_cast<double>(br.start))), clip(cm.value(static_cast<double>(br.end + 1)))};
  if (!options_.refine) return best;

  const auto cost = [&](float lo, float hi) { return grid_cost(cm.model, cm.base, cm.width, lo, hi, bits, scheme); };
  double best_cost = cost(best.lo, best.hi);
  if (const double full = cost(mn, mx); full < best_cost) {
    best = {mn, mx};
    best_cost = full;
  }
  if (scheme == Scheme::symmetric) {
    const double amax = std::max(std::fabs(static_cast<double>(mn)), std::fabs(static_cast<double>(mx)));
    const auto m = minimize_fraction([&](double t) {
      const float a = static_cast<float>(t * amax);
      return cost(-a, a);
    });
    if (m.cost < best_cost) {
      const float a = static_cast<float>(m.t * amax);
      // Clipped to the data, max(|lo|, |hi|) is still a.
      best = {std::max(mn, -a), std::min(mx, a)};
    }
    return best;
  }
  // Asymmetric: first both ends shrunk together, then each end polished
  // locally in turn.
  {
    const auto m = minimize_fraction([&](double t) {
      return cost(static_cast<float>(t * std::min(mn, 0.0f)), static_cast<float>(t * std::max(mx, 0.0f)));
    });
    if (m.cost < best_cost) {
      best = {static_cast<float>(m.t * std::min(mn, 0.0f)), static_cast<float>(m.t * std::max(mx, 0.0f))};
      best_cost = m.cost;
    }
  }
  for (int round = 0; round < 3; ++round) {
    bool improved = false;
    if (mx > 0 && best.hi > 0) {
      const float lo = best.lo;
      const auto m = minimize_fraction([&](double t) { return cost(lo, static_cast<float>(t * mx)); }, best.hi / mx);
      if (m.cost < best_cost) {
        best.hi = static_cast<float>(m.t * mx);
        best_cost = m.cost;
        improved = true;
      }
    }
    if (mn < 0 && best.lo < 0) {
      const float hi = best.hi;
      const auto m = minimize_fraction([&](double t) { return cost(static_cast<float>(t * mn), hi); }, best.lo / mn);
      if (m.cost < best_cost) {
        best.lo = static_cast<float>(m.t * mn);
        best_cost = m.cost;
        improved = true;
      }
    }
    if (!improved) break;
  }
  return best;
}

void HistogramObserver::write_options(json& j) const {
  j["bins"] = options_.bins;
  j["refine"] = options_.refine;
}

void HistogramObserver::write_channel(int64_t c, json& j) const {
  const HistogramChannel& ch = hist_[static_cast<std::size_t>(c)];
  int64_t first = 0, last = window_ - 1;
  while (first < last && ch.counts[static_cast<std::size_t>(first)] == 0) ++first;
  while (last > first && ch.counts[static_cast<std::size_t>(last)] == 0) --last;
  // On grid_for's grid, which is a function of the range alone: the state
  // does not depend on where earlier batches left the window (next_grid).
  const Grid canonical = grid_for(min_[static_cast<std::size_t>(c)], max_[static_cast<std::size_t>(c)], window_);
  j["exponent"] = ch.grid.exponent;
  j["offset"] = canonical.offset;
  j["first_bin"] = first + (ch.grid.offset - canonical.offset);
  j["counts"] = std::vector<uint64_t>(ch.counts.begin() + first, ch.counts.begin() + last + 1);
}

void HistogramObserver::read_channel(int64_t c, const json& j, const std::string& where) {
  const std::size_t i = static_cast<std::size_t>(c);
  HistogramChannel ch;
  const int64_t e = read_int(j, "exponent", where);
  ch.grid.offset = read_int(j, "offset", where);
  const int64_t first = read_int(j, "first_bin", where);
  const json& counts = require(j, "counts", where);
  if (e < -126 || e > 128) throw_format_error(where + ": 'exponent' out of range");
  ch.grid.exponent = static_cast<int>(e);
  if (!counts.is_array() || counts.empty()) throw_format_error(where + ": 'counts' must be a non-empty array");
  const int64_t n = static_cast<int64_t>(counts.size());
  if (first < 0 || first > window_ - n) {
    throw_format_error(where + ": 'first_bin' + the number of counts exceeds the window of " + std::to_string(window_) + " bins");
  }
  // The grid is a function of the range; anything else would break merging.
  if (!(ch.grid == grid_for(min_[i], max_[i], window_))) {
    throw_format_error(where + ": the histogram grid does not match the channel's min and max");
  }
  ch.counts.assign(static_cast<std::size_t>(window_), 0);
  uint64_t sum = 0;
  for (int64_t k = 0; k < n; ++k) {
    const json& v = counts[static_cast<std::size_t>(k)];
    if (!v.is_number_unsigned() && !(v.is_number_integer() && v.get<int64_t>() >= 0)) {
      throw_format_error(where + ": counts must be non-negative integers");
    }
    const uint64_t x = v.get<uint64_t>();
    if (x > (uint64_t{1} << 62) || sum > (uint64_t{1} << 62)) throw_format_error(where + ": counts too large");
    sum += x;
    ch.counts[static_cast<std::size_t>(first + k)] = x;
  }
  if (sum != static_cast<uint64_t>(count_[i])) {
    throw_format_error(where + ": the counts add up to " + std::to_string(sum) + ", not to 'count' " + std::to_string(count_[i]));
  }
  const float inv = std::ldexp(1.0f, -ch.grid.exponent);
  const float off = static_cast<float>(ch.grid.offset);
  const int32_t last = static_cast<int32_t>(window_ - 1);
  if (ch.counts[static_cast<std::size_t>(bin_index(min_[i], inv, off, last))] == 0 ||
      ch.counts[static_cast<std::size_t>(bin_index(max_[i], inv, off, last))] == 0) {
    throw_format_error(where + ": the bins of 'min' and 'max' are empty");
  }
  hist_[i] = std::move(ch);
}

std::unique_ptr<ObserverBase> make_histogram_observer(const ObserverOptions& options) {
  return std::make_unique<HistogramObserver>(options);
}

}  // namespace monoquant::observe
