// The parts every observer shares (observer_base.hpp), the factory, the
// qparams rule and the JSON state envelope.
#include <algorithm>
#include <bit>
#include <cfloat>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <optional>
#include <string>

#include "monoquant/error.hpp"
#include "monoquant/thread_pool.hpp"
#include "observe/observer_base.hpp"
#include "observe/kernels.hpp"

namespace monoquant {

void ObserverOptions::validate() const {
  if (granularity == Granularity::per_group) {
    throw_invalid_argument("observers are per_tensor or per_channel; per_group ranges come from the weights "
                           "themselves (choose_qparams or choose_qparams_mse)");
  }
  if (!(averaging_constant > 0.0 && averaging_constant <= 1.0)) {
    throw_invalid_argument("averaging_constant must be in (0, 1], got " + std::to_string(averaging_constant));
  }
  if (bins < 16 || bins > (int64_t{1} << 20)) {
    throw_invalid_argument("bins must be in [16, 1048576], got " + std::to_string(bins));
  }
  if (!(percentile > 0.0 && percentile <= 100.0)) {
    throw_invalid_argument("percentile must be in (0, 100], got " + std::to_string(percentile));
  }
}

void qparams_from_range(float lo_f, float hi_f, int bits, Scheme scheme, float* scale, int32_t* zero_point) {
  QuantSpec spec;
  spec.bits = bits;
  spec.scheme = scheme;
  qparams_from_range(lo_f, hi_f, spec, scale, zero_point);
}

void qparams_from_range(float lo_f, float hi_f, const QuantSpec& spec, float* scale, int32_t* zero_point) {
  spec.validate();
  const Scheme scheme = spec.scheme;
  const int qmin = spec.qmin(), qmax = spec.qmax();
  // Same arithmetic as choose_qparams (src/quant/affine.cpp): the range
  // always includes 0, computed in double, rounded to float once.
  const double lo = std::min(0.0, static_cast<double>(lo_f));
  const double hi = std::max(0.0, static_cast<double>(hi_f));
  const double sc = scheme == Scheme::symmetric ? std::max(-lo, hi) / spec.symmetric_levels() : (hi - lo) / (qmax - qmin);
  float s = sc == 0.0 ? 1.0f : static_cast<float>(sc);
  s = std::max(s, FLT_MIN);
  int32_t zp = 0;
  if (scheme == Scheme::asymmetric) {
    const double z = qmin - std::nearbyint(lo / s);
    zp = static_cast<int32_t>(std::clamp(z, static_cast<double>(qmin), static_cast<double>(qmax)));
  }
  *scale = s;
  *zero_point = zp;
}

QuantSpec Observer::spec(int bits, Scheme scheme) const {
  QuantSpec s;
  s.bits = bits;
  s.scheme = scheme;
  s.granularity = options().granularity;
  s.axis = options().axis;
  return s;
}

void Observer::calculate_qparams(int bits, Scheme scheme, Tensor& scales, Tensor& zero_points) const {
  const std::vector<Range> r = ranges(bits, scheme);
  const bool per_tensor = options().granularity == Granularity::per_tensor;
  const Shape shape = per_tensor ? Shape{} : Shape{static_cast<int64_t>(r.size())};
  scales = Tensor(DType::f32, shape);
  const bool asymmetric = scheme == Scheme::asymmetric;
  zero_points = asymmetric ? Tensor(DType::i32, shape) : Tensor(DType::i32, {0});
  for (std::size_t c = 0; c < r.size(); ++c) {
    int32_t zp = 0;
    qparams_from_range(r[c].lo, r[c].hi, bits, scheme, scales.as<float>() + c, &zp);
    if (asymmetric) zero_points.as<int32_t>()[c] = zp;
  }
}

namespace observe {

// ------------------------------------------------------------ batch statistics

void SpanStats::add(const float* x, int64_t n) {
  const auto& k = observe_kernels();
  constexpr int64_t kBlock = 1 << 14;
  for (int64_t b = 0; b < n; b += kBlock) {
    const int64_t len = std::min(kBlock, n - b);
    const float* p = x + b;
    SpanStats part;
    const SpanSummary sum = k.minmax(p, len);
    if (sum.all_finite) {
      part.min = sum.min;
      part.max = sum.max;
      part.count = len;
    } else {
      // Rare: a block holding NaN or Inf; skip those elements one by one.
      float lo = std::numeric_limits<float>::infinity(), hi = -lo;
      for (int64_t i = 0; i < len; ++i) {
        if (std::isfinite(p[i])) {
          lo = std::min(lo, p[i]);
          hi = std::max(hi, p[i]);
          ++part.count;
        } else {
          ++part.nonfinite;
        }
      }
      part.min = lo;
      part.max = hi;
    }
    merge(part);
  }
}

void SpanStats::merge(const SpanStats& o) {
  if (o.count > 0) {
    if (count == 0) {
      min = o.min;
      max = o.max;
    } else {
      min = std::min(min, o.min);
      max = std::max(max, o.max);
    }
  }
  count += o.count;
  nonfinite += o.nonfinite;
}

BatchStats gather_batch_stats(const ChannelBatch& b) {
  const int64_t C = b.channels;
  std::vector<SpanStats> st(static_cast<std::size_t>(C));
  const int64_t per_channel = b.outer * b.inner;
  if (C == 1) {
    // One cell: split the flat batch, reduce the partial results.
    const int64_t n = per_channel;
    constexpr int64_t kChunk = 1 << 16;
    const int64_t chunks = std::max<int64_t>(1, std::min<int64_t>(256, n / kChunk));
    std::vector<SpanStats> part(static_cast<std::size_t>(chunks));
    const int64_t per = (n + chunks - 1) / chunks;
    parallel_for(chunks, 1, [&](int64_t c0, int64_t c1) {
      for (int64_t c = c0; c < c1; ++c) {
        const int64_t s = c * per;
        if (s < n) part[static_cast<std::size_t>(c)].add(b.x + s, std::min(per, n - s));
      }
    });
    for (const auto& p : part) st[0].merge(p);
  } else if (b.inner >= 16) {
    // Each channel is `outer` spans of `inner` contiguous floats.
    parallel_for(C, std::max<int64_t>(1, (1 << 15) / std::max<int64_t>(per_channel, 1)), [&](int64_t c0, int64_t c1) {
      for (int64_t c = c0; c < c1; ++c) {
        for (int64_t o = 0; o < b.outer; ++o) st[static_cast<std::size_t>(c)].add(b.x + (o * C + c) * b.inner, b.inner);
      }
    });
  } else {
    // Channels interleave (channel axis last or nearly): walk rows, each
    // thread owning a block of channels.
    parallel_for(C, std::max<int64_t>(1, (1 << 15) / std::max<int64_t>(per_channel, 1)), [&](int64_t c0, int64_t c1) {
      const float inf = std::numeric_limits<float>::infinity();
      std::vector<float> lo(static_cast<std::size_t>(c1 - c0), inf), hi(static_cast<std::size_t>(c1 - c0), -inf);
      std::vector<int64_t> cnt(static_cast<std::size_t>(c1 - c0), 0), bad(static_cast<std::size_t>(c1 - c0), 0);
      const int64_t n_c = c1 - c0;
      float* lo_p = lo.data();
      float* hi_p = hi.data();
      int64_t* cnt_p = cnt.data();
      for (int64_t o = 0; o < b.outer; ++o) {
        for (int64_t i = 0; i < b.inner; ++i) {
          const float* p = b.x + (o * C + c0) * b.inner + i;
          // Branch-free over a row's channels, so that it vectorizes.
          for (int64_t j = 0; j < n_c; ++j) {
            const float v = p[j * b.inner];
            const bool finite = (std::bit_cast<uint32_t>(v) & 0x7f800000u) != 0x7f800000u;
            lo_p[j] = finite && v < lo_p[j] ? v : lo_p[j];
            hi_p[j] = finite && v > hi_p[j] ? v : hi_p[j];
            cnt_p[j] += finite;
          }
        }
      }
      for (int64_t c = c0; c < c1; ++c) {
        const std::size_t j = static_cast<std::size_t>(c - c0);
        bad[j] = b.outer * b.inner - cnt[j];
      }
      for (int64_t c = c0; c < c1; ++c) {
        const std::size_t j = static_cast<std::size_t>(c - c0);
        auto& s = st[static_cast<std::size_t>(c)];
        s.min = lo[j];
        s.max = hi[j];
        s.count = cnt[j];
        s.nonfinite = bad[j];
      }
    });
  }
  BatchStats out;
  out.min.resize(static_cast<std::size_t>(C));
  out.max.resize(static_cast<std::size_t>(C));
  out.count.resize(static_cast<std::size_t>(C));
  for (int64_t c = 0; c < C; ++c) {
    const auto& s = st[static_cast<std::size_t>(c)];
    out.min[static_cast<std::size_t>(c)] = s.min;
    out.max[static_cast<std::size_t>(c)] = s.max;
    out.count[static_cast<std::size_t>(c)] = s.count;
    out.nonfinite += s.nonfinite;
  }
  return out;
}

// ------------------------------------------------------------ ObserverBase

ObserverBase::ObserverBase(std::string_view kind, const ObserverOptions& options) : kind_(kind), options_(options) {
  options_.validate();
  if (options_.granularity == Granularity::per_tensor) {
    options_.axis = 0;
    resize_all(1);
  }
}

void ObserverBase::keep_options(bool averaging_constant, bool bins, bool refine, bool percentile) {
  const ObserverOptions d;
  if (!averaging_constant) options_.averaging_constant = d.averaging_constant;
  if (!bins) options_.bins = d.bins;
  if (!refine) options_.refine = d.refine;
  if (!percentile) options_.percentile = d.percentile;
}

void ObserverBase::initialize() {
  std::lock_guard lock(mutex_);
  on_resize(channels_);
}

void ObserverBase::resize_all(int64_t channels) {
  channels_ = channels;
  count_.assign(static_cast<std::size_t>(channels), 0);
  min_.assign(static_cast<std::size_t>(channels), std::numeric_limits<float>::quiet_NaN());
  max_.assign(static_cast<std::size_t>(channels), std::numeric_limits<float>::quiet_NaN());
}

void ObserverBase::observe(const TensorView& input) {
  input.validate("observe");
  if (!is_floating(input.dtype)) {
    throw_invalid_argument("observers take floating-point tensors, got " + std::string(name_of(input.dtype)));
  }
  const int64_t n = input.numel();
  if (n == 0) return;

  ChannelBatch b;
  b.inner = n;
  if (options_.granularity == Granularity::per_channel) {
    const int64_t nd = input.dim();
    const int64_t axis = options_.axis < 0 ? options_.axis + nd : options_.axis;
    if (nd == 0 || axis < 0 || axis >= nd) {
      throw_invalid_argument("per_channel observer axis " + std::to_string(options_.axis) +
                             " is out of range for a tensor of shape " + shape_to_string(input.shape));
    }
    b.outer = 1;
    b.inner = 1;
    for (int64_t d = 0; d < axis; ++d) b.outer *= input.shape[static_cast<std::size_t>(d)];
    for (int64_t d = axis + 1; d < nd; ++d) b.inner *= input.shape[static_cast<std::size_t>(d)];
    b.channels = input.shape[static_cast<std::size_t>(axis)];
  }

  // Read float32 contiguous input in place; copy anything else once.
  std::optional<Tensor> owned;
  const bool aligned = reinterpret_cast<std::uintptr_t>(input.data) % alignof(float) == 0;
  if (input.dtype == DType::f32 && input.is_contiguous() && aligned) {
    b.x = reinterpret_cast<const float*>(input.data);
  } else {
    owned = to_contiguous_f32(input);
    b.x = owned->as<float>();
  }

  std::lock_guard lock(mutex_);
  if (channels_ == 0) {
    resize_all(b.channels);
    on_resize(b.channels);
  } else if (channels_ != b.channels) {
    throw_invalid_argument("this per_channel observer has " + std::to_string(channels_) +
                           " channels (from its first batch) but got a batch of shape " +
                           shape_to_string(input.shape) + " with " + std::to_string(b.channels) + " on axis " +
                           std::to_string(options_.axis));
  }
  BatchStats s;
  if (!observe_fused(b, s)) {
    s = gather_batch_stats(b);
    on_batch(b, s);
  }
  for (int64_t c = 0; c < channels_; ++c) {
    const std::size_t i = static_cast<std::size_t>(c);
    if (s.count[i] == 0) continue;
    if (count_[i] == 0) {
      min_[i] = s.min[i];
      max_[i] = s.max[i];
    } else {
      min_[i] = std::min(min_[i], s.min[i]);
      max_[i] = std::max(max_[i], s.max[i]);
    }
    count_[i] += s.count[i];
  }
  nonfinite_ += s.nonfinite;
}

void ObserverBase::merge(const Observer& other_observer) {
  const auto* other = dynamic_cast<const ObserverBase*>(&other_observer);
  if (other == nullptr || other->kind_ != kind_) {
    throw_invalid_argument("cannot merge a " + std::string(other_observer.kind()) + " observer into a " + kind_ +
                           " observer; merge observers of the same kind");
  }
  if (other == this) {
    // Merging with itself counts everything twice; work on a snapshot.
    const auto snapshot = clone();
    merge(*snapshot);
    return;
  }
  json mine, theirs;
  write_options(mine);
  other->write_options(theirs);
  if (mine != theirs || options_.granularity != other->options_.granularity || options_.axis != other->options_.axis) {
    throw_invalid_argument("cannot merge " + kind_ + " observers with different options (" + theirs.dump() + " into " +
                           mine.dump() + ", " + std::string(name_of(other->options_.granularity)) + " into " +
                           std::string(name_of(options_.granularity)) + ")");
  }
  std::scoped_lock lock(mutex_, other->mutex_);
  if (other->channels_ == 0) {
    nonfinite_ += other->nonfinite_;
    return;
  }
  if (channels_ == 0) {
    resize_all(other->channels_);
    on_resize(other->channels_);
  } else if (channels_ != other->channels_) {
    throw_invalid_argument("cannot merge a per_channel observer of " + std::to_string(other->channels_) +
                           " channels into one of " + std::to_string(channels_));
  }
  on_merge(*other);
  for (int64_t c = 0; c < channels_; ++c) {
    const std::size_t i = static_cast<std::size_t>(c);
    if (other->count_[i] == 0) continue;
    if (count_[i] == 0) {
      min_[i] = other->min_[i];
      max_[i] = other->max_[i];
    } else {
      min_[i] = std::min(min_[i], other->min_[i]);
      max_[i] = std::max(max_[i], other->max_[i]);
    }
    count_[i] += other->count_[i];
  }
  nonfinite_ += other->nonfinite_;
}

void ObserverBase::reset() {
  std::lock_guard lock(mutex_);
  nonfinite_ = 0;
  const int64_t c = options_.granularity == Granularity::per_tensor ? 1 : 0;
  resize_all(c);
  on_resize(c);
}

std::vector<Range> ObserverBase::ranges(int bits, Scheme scheme) const {
  QuantSpec spec;
  spec.bits = bits;
  spec.scheme = scheme;
  spec.validate();
  std::lock_guard lock(mutex_);
  int64_t total = 0;
  for (int64_t c : count_) total += c;
  if (total == 0) {
    throw_invalid_argument("this " + kind_ + " observer has seen no finite values (" + std::to_string(nonfinite_) +
                           " NaN/Inf ignored); run calibration data through it before asking for quantization "
                           "parameters");
  }
  std::vector<Range> out(static_cast<std::size_t>(channels_));
  const auto one = [&](int64_t c) {
    out[static_cast<std::size_t>(c)] = count_[static_cast<std::size_t>(c)] ? channel_range(c, bits, scheme) : Range{};
  };
  if (parallel_ranges() && channels_ > 1) {
    parallel_for(channels_, 1, [&](int64_t c0, int64_t c1) {
      for (int64_t c = c0; c < c1; ++c) one(c);
    });
  } else {
    for (int64_t c = 0; c < channels_; ++c) one(c);
  }
  return out;
}

int64_t ObserverBase::channels() const {
  std::lock_guard lock(mutex_);
  return channels_;
}

int64_t ObserverBase::count() const {
  std::lock_guard lock(mutex_);
  int64_t total = 0;
  for (int64_t c : count_) total += c;
  return total;
}

int64_t ObserverBase::nonfinite_count() const {
  std::lock_guard lock(mutex_);
  return nonfinite_;
}

std::vector<float> ObserverBase::min_values() const {
  std::lock_guard lock(mutex_);
  return min_;
}

std::vector<float> ObserverBase::max_values() const {
  std::lock_guard lock(mutex_);
  return max_;
}

json ObserverBase::to_json() const {
  std::lock_guard lock(mutex_);
  json j;
  j["format"] = "monoquant.observer";
  j["version"] = kStateVersion;
  j["kind"] = kind_;
  json opts;
  opts["granularity"] = std::string(name_of(options_.granularity));
  if (options_.granularity == Granularity::per_channel) opts["axis"] = options_.axis;
  write_options(opts);
  j["options"] = std::move(opts);
  j["nonfinite"] = nonfinite_;
  json chans = json::array();
  for (int64_t c = 0; c < channels_; ++c) {
    const std::size_t i = static_cast<std::size_t>(c);
    json ch;
    ch["count"] = count_[i];
    if (count_[i] > 0) {
      ch["min"] = min_[i];
      ch["max"] = max_[i];
      write_channel(c, ch);
    } else {
      ch["min"] = nullptr;
      ch["max"] = nullptr;
    }
    chans.push_back(std::move(ch));
  }
  j["channels"] = std::move(chans);
  return j;
}

void ObserverBase::restore(const json& state, const std::string& where) {
  std::lock_guard lock(mutex_);
  nonfinite_ = read_int(state, "nonfinite", where);
  if (nonfinite_ < 0) throw_format_error(where + ": 'nonfinite' is negative");
  const json& chans = require(state, "channels", where);
  if (!chans.is_array()) throw_format_error(where + ": 'channels' must be an array");
  const int64_t n = static_cast<int64_t>(chans.size());
  if (options_.granularity == Granularity::per_tensor && n != 1) {
    throw_format_error(where + ": a per_tensor observer has exactly 1 channel entry, found " + std::to_string(n));
  }
  if (n > (int64_t{1} << 24)) throw_format_error(where + ": too many channels (" + std::to_string(n) + ")");
  resize_all(n);
  on_resize(n);
  for (int64_t c = 0; c < n; ++c) {
    const std::string w = where + ": channel " + std::to_string(c);
    const json& ch = chans[static_cast<std::size_t>(c)];
    if (!ch.is_object()) throw_format_error(w + " must be an object");
    const int64_t cnt = read_int(ch, "count", w);
    if (cnt < 0) throw_format_error(w + ": 'count' is negative");
    const std::size_t i = static_cast<std::size_t>(c);
    count_[i] = cnt;
    if (cnt == 0) continue;
    const double lo = read_double(ch, "min", w), hi = read_double(ch, "max", w);
    const float lo_f = static_cast<float>(lo), hi_f = static_cast<float>(hi);
    if (!(std::isfinite(lo_f) && std::isfinite(hi_f) && lo_f <= hi_f && lo_f == lo && hi_f == hi)) {
      throw_format_error(w + ": 'min' and 'max' must be float32 values with min <= max");
    }
    min_[i] = lo_f;
    max_[i] = hi_f;
    read_channel(c, ch, w);
  }
}

std::string ObserverBase::save_state() const { return to_json().dump(); }

ObserverBase::ObserverBase(const ObserverBase& other)
    : Observer(other),
      kind_(other.kind_),
      options_(other.options_),
      channels_(other.channels_),
      count_(other.count_),
      min_(other.min_),
      max_(other.max_),
      nonfinite_(other.nonfinite_) {}

std::unique_ptr<Observer> ObserverBase::clone() const {
  std::lock_guard lock(mutex_);
  return copy();
}

// ------------------------------------------------------------ JSON readers

const json& require(const json& j, const char* key, const std::string& where) {
  if (!j.is_object()) throw_format_error(where + ": expected a JSON object");
  const auto it = j.find(key);
  if (it == j.end()) throw_format_error(where + ": missing '" + key + "'");
  return *it;
}

double read_double(const json& j, const char* key, const std::string& where) {
  const json& v = require(j, key, where);
  if (!v.is_number()) throw_format_error(where + ": '" + key + "' must be a number");
  return v.get<double>();
}

int64_t read_int(const json& j, const char* key, const std::string& where) {
  const json& v = require(j, key, where);
  if (v.is_number_unsigned()) {
    const uint64_t u = v.get<uint64_t>();
    if (u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
      throw_format_error(where + ": '" + key + "' is too large");
    }
    return static_cast<int64_t>(u);
  }
  if (!v.is_number_integer()) throw_format_error(where + ": '" + key + "' must be an integer");
  return v.get<int64_t>();
}

uint64_t read_uint(const json& j, const char* key, const std::string& where) {
  const json& v = require(j, key, where);
  if (!v.is_number_unsigned() && !(v.is_number_integer() && v.get<int64_t>() >= 0)) {
    throw_format_error(where + ": '" + key + "' must be a non-negative integer");
  }
  return v.get<uint64_t>();
}

bool read_bool(const json& j, const char* key, const std::string& where) {
  const json& v = require(j, key, where);
  if (!v.is_boolean()) throw_format_error(where + ": '" + key + "' must be true or false");
  return v.get<bool>();
}

std::string read_string(const json& j, const char* key, const std::string& where) {
  const json& v = require(j, key, where);
  if (!v.is_string()) throw_format_error(where + ": '" + key + "' must be a string");
  return v.get<std::string>();
}

// ------------------------------------------------------------ factory

std::unique_ptr<ObserverBase> make_observer(std::string_view kind, const ObserverOptions& options) {
  std::unique_ptr<ObserverBase> obs;
  if (kind == "minmax") obs = make_minmax_observer(options);
  else if (kind == "moving_average_minmax") obs = make_moving_average_observer(options);
  else if (kind == "histogram") obs = make_histogram_observer(options);
  else if (kind == "percentile") obs = make_percentile_observer(options);
  else if (kind == "auto") return make_observer(resolve_auto_observer(options), options);
  if (obs) {
    obs->initialize();
    return obs;
  }
  throw_invalid_argument("unknown observer '" + std::string(kind) +
                         "'; expected 'minmax', 'moving_average_minmax', 'histogram', 'percentile' or 'auto'");
}

std::unique_ptr<ObserverBase> observer_from_json(const json& state, const std::string& where) {
  if (!state.is_object()) throw_format_error(where + ": observer state must be a JSON object");
  if (read_string(state, "format", where) != "monoquant.observer") {
    throw_format_error(where + ": 'format' is not \"monoquant.observer\"");
  }
  const int64_t version = read_int(state, "version", where);
  if (version > kStateVersion) {
    throw_unsupported(where + ": observer state version " + std::to_string(version) +
                      " is newer than this monoquant reads (" + std::to_string(kStateVersion) + "); upgrade monoquant");
  }
  if (version < 1) throw_format_error(where + ": bad observer state version " + std::to_string(version));
  const std::string kind = read_string(state, "kind", where);
  const json& o = require(state, "options", where);
  ObserverOptions opts;
  try {
    opts.granularity = parse_granularity(read_string(o, "granularity", where + ": options"));
    if (opts.granularity == Granularity::per_channel) opts.axis = static_cast<int>(read_int(o, "axis", where + ": options"));
    if (o.contains("averaging_constant")) opts.averaging_constant = read_double(o, "averaging_constant", where);
    if (o.contains("bins")) opts.bins = read_int(o, "bins", where);
    if (o.contains("refine")) opts.refine = read_bool(o, "refine", where);
    if (o.contains("percentile")) opts.percentile = read_double(o, "percentile", where);
    if (kind == "auto") throw_format_error(where + ": saved observers name their resolved kind, not 'auto'");
    auto obs = make_observer(kind, opts);
    obs->restore(state, where);
    return obs;
  } catch (const Error& e) {
    if (e.kind() == ErrorKind::invalid_argument) throw_format_error(where + ": " + e.what());
    throw;
  }
}

}  // namespace observe

std::string_view resolve_auto_observer(const ObserverOptions& options) {
  // Per tensor, one outlier stretches the range of everything: the histogram's
  // L2 search clips it. Per channel each range is already local, and a
  // histogram per channel would cost 16 * bins bytes per channel.
  return options.granularity == Granularity::per_channel ? "minmax" : "histogram";
}

std::unique_ptr<Observer> create_observer(std::string_view kind, const ObserverOptions& options) {
  return observe::make_observer(kind, options);
}

std::unique_ptr<Observer> load_observer(std::string_view state_json) {
  observe::json j;
  try {
    j = observe::json::parse(state_json.begin(), state_json.end());
  } catch (const std::exception& e) {
    throw_format_error(std::string("observer state is not valid JSON: ") + e.what());
  }
  return observe::observer_from_json(j, "observer state");
}

}  // namespace monoquant
