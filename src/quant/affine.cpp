// Integer affine quantization of whole tensors: the loops over rows, groups
// and threads around the per-span kernels of kernels.hpp.
#include <algorithm>
#include <atomic>
#include <bit>
#include <cfloat>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <optional>
#include <string>
#include <vector>

#include "monoquant/error.hpp"
#include "monoquant/quantize.hpp"
#include "monoquant/thread_pool.hpp"
#include "quant/kernels.hpp"
#include "quant/layout.hpp"

namespace monoquant {

RowLayout row_layout(const Shape& shape) {
  const int64_t k = shape.empty() ? 1 : shape.back();
  int64_t rows = 1;
  for (std::size_t i = 0; i + 1 < shape.size(); ++i) rows *= shape[i];
  return {rows, k};
}

namespace detail {

ScaleLayout make_scale_layout(const Shape& shape, const QuantSpec& spec) {
  ScaleLayout L;
  const RowLayout rl = row_layout(shape);
  L.rows = rl.rows;
  L.row_length = rl.row_length;
  const int64_t k = rl.row_length;
  switch (spec.granularity) {
    case Granularity::per_tensor:
      L.group = std::max<int64_t>(k, 1);
      L.scale_shape = {};
      break;
    case Granularity::per_group:
      if (shape.empty()) {
        throw_invalid_argument("per_group quantization needs a tensor with at least 1 dimension, got a 0-d tensor");
      }
      L.group = spec.group_size;
      L.groups_per_row = (k + spec.group_size - 1) / spec.group_size;
      L.row_div = 1;
      L.row_mod = std::numeric_limits<int64_t>::max();
      L.row_mul = L.groups_per_row;
      L.group_step = 1;
      L.scale_shape = {L.rows, L.groups_per_row};
      break;
    case Granularity::per_channel: {
      const int64_t nd = static_cast<int64_t>(shape.size());
      const int64_t axis = spec.axis < 0 ? spec.axis + nd : spec.axis;
      if (nd == 0 || axis < 0 || axis >= nd) {
        throw_invalid_argument("per_channel axis " + std::to_string(spec.axis) + " is out of range for a tensor of shape " +
                               shape_to_string(shape));
      }
      const int64_t channels = shape[static_cast<std::size_t>(axis)];
      L.scale_shape = {channels};
      if (axis == nd - 1) {
        // Channels run along the row: every element of a row has its own scale.
        L.group = 1;
        L.group_step = 1;
      } else {
        // Channels own whole rows: rows [c * inner_rows, (c + 1) * inner_rows) of each outer block.
        int64_t inner_rows = 1;
        for (int64_t d = axis + 1; d < nd - 1; ++d) inner_rows *= shape[static_cast<std::size_t>(d)];
        L.group = std::max<int64_t>(k, 1);
        L.row_div = std::max<int64_t>(inner_rows, 1);
        L.row_mod = std::max<int64_t>(channels, 1);
        L.row_mul = 1;
      }
      break;
    }
  }
  L.groups_per_row = k == 0 ? 0 : (k + L.group - 1) / L.group;
  L.scale_count = numel_of(L.scale_shape);
  return L;
}

void throw_nonfinite(const float* x, int64_t n, const Shape& shape, const char* what) {
  for (int64_t i = 0; i < n; ++i) {
    if (!std::isfinite(x[i])) {
      throw_invalid_argument(std::string(what) + ": input of shape " + shape_to_string(shape) + " contains " +
                             (std::isnan(x[i]) ? "NaN" : "Inf") + " at flat index " + std::to_string(i) +
                             "; quantization needs finite values (clean or mask the tensor first)");
    }
  }
  throw_invalid_argument(std::string(what) + ": input contains non-finite values");
}

}  // namespace detail

namespace {

using detail::ScaleLayout;

// A float32 contiguous copy only when the input is not one already.
struct ContiguousF32 {
  std::optional<Tensor> owned;
  const float* data = nullptr;

  explicit ContiguousF32(const TensorView& input) {
    // Views may start at any byte; only a float-aligned one is read in place.
    const bool aligned = reinterpret_cast<std::uintptr_t>(input.data) % alignof(float) == 0;
    if (input.dtype == DType::f32 && input.is_contiguous() && aligned) {
      data = reinterpret_cast<const float*>(input.data);
    } else {
      if (!is_floating(input.dtype)) {
        throw_invalid_argument("quantize expects a floating-point tensor, got " + std::string(name_of(input.dtype)));
      }
      owned = to_contiguous_f32(input);
      data = owned->as<float>();
    }
  }
};

// Running statistics of one scale cell.
struct Stats {
  uint32_t absmax_bits = 0;
  float min = std::numeric_limits<float>::infinity();
  float max = -std::numeric_limits<float>::infinity();

  void add_span(const kernels::QuantKernels& k, const float* x, int64_t n, bool need_minmax) {
    if (n <= 0) return;
    const uint32_t a = k.absmax_bits(x, n);
    absmax_bits = std::max(absmax_bits, a);
    if (need_minmax && a < 0x7f800000u) {
      float lo, hi;
      k.minmax(x, n, &lo, &hi);
      min = std::min(min, lo);
      max = std::max(max, hi);
    }
  }
  void merge(const Stats& o) {
    absmax_bits = std::max(absmax_bits, o.absmax_bits);
    min = std::min(min, o.min);
    max = std::max(max, o.max);
  }
  bool finite() const { return absmax_bits < 0x7f800000u; }
};

constexpr int64_t kElementsPerTask = 1 << 15;

std::vector<Stats> gather_stats(const float* x, const Shape& shape, const ScaleLayout& L, bool need_minmax) {
  const auto& k = kernels::active_kernels();
  std::vector<Stats> cells(static_cast<std::size_t>(L.scale_count));
  const int64_t n = L.rows * L.row_length;
  if (n == 0) return cells;
  const int64_t K = L.row_length;

  if (L.scale_count == 1) {
    // One cell: split the flat tensor, reduce the partials.
    const int64_t chunks = std::max<int64_t>(1, std::min<int64_t>(256, n / kElementsPerTask));
    std::vector<Stats> part(static_cast<std::size_t>(chunks));
    const int64_t per = (n + chunks - 1) / chunks;
    parallel_for(chunks, 1, [&](int64_t b, int64_t e) {
      for (int64_t c = b; c < e; ++c) {
        const int64_t s = c * per;
        part[static_cast<std::size_t>(c)].add_span(k, x + s, std::min(per, n - s), need_minmax);
      }
    });
    for (const auto& p : part) cells[0].merge(p);
  } else if (L.group == 1 && L.group_step == 1 && L.row_mul == 0) {
    // Channel axis is the last one: a column-wise reduction, split by columns.
    // (row_mul == 0 keeps per_group with group_size 1 out: its cells are per row.)
    parallel_for(K, std::max<int64_t>(1, kElementsPerTask / std::max<int64_t>(L.rows, 1)), [&](int64_t c0, int64_t c1) {
      for (int64_t r = 0; r < L.rows; ++r) {
        const float* row = x + r * K;
        for (int64_t c = c0; c < c1; ++c) cells[static_cast<std::size_t>(c)].add_span(k, row + c, 1, need_minmax);
      }
    });
  } else if (L.row_mul == 1 && L.group_step == 0 && L.row_div == 1 && L.row_mod == L.rows) {
    // One scale per row (per_channel on axis 0 of a 2-D weight): rows are independent.
    parallel_for(L.rows, std::max<int64_t>(1, kElementsPerTask / std::max<int64_t>(K, 1)), [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) cells[static_cast<std::size_t>(r)].add_span(k, x + r * K, K, need_minmax);
    });
  } else if (L.group_step == 1 && L.row_mul == L.groups_per_row) {
    // per_group: every (row, group) is its own cell.
    parallel_for(L.rows, std::max<int64_t>(1, kElementsPerTask / std::max<int64_t>(K, 1)), [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) {
        for (int64_t j = 0; j < L.groups_per_row; ++j) {
          const int64_t s = j * L.group;
          cells[static_cast<std::size_t>(L.scale_index(r, j))].add_span(k, x + r * K + s, std::min(L.group, K - s),
                                                                        need_minmax);
        }
      }
    });
  } else {
    // per_channel on an inner axis of an N-d tensor: rows of a channel are
    // scattered; reduce rows in parallel, then fold them into channels.
    std::vector<Stats> row_stats(static_cast<std::size_t>(L.rows));
    parallel_for(L.rows, std::max<int64_t>(1, kElementsPerTask / std::max<int64_t>(K, 1)), [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) row_stats[static_cast<std::size_t>(r)].add_span(k, x + r * K, K, need_minmax);
    });
    for (int64_t r = 0; r < L.rows; ++r) {
      cells[static_cast<std::size_t>(L.scale_index(r, 0))].merge(row_stats[static_cast<std::size_t>(r)]);
    }
  }
  for (const auto& c : cells) {
    if (!c.finite()) detail::throw_nonfinite(x, n, shape, "quantize");
  }
  return cells;
}

// Turns the statistics of one cell into (scale, zero_point).
void qparams_from_stats(const Stats& s, const QuantSpec& spec, float* scale, int32_t* zero_point) {
  const int qmin = spec.qmin(), qmax = spec.qmax();
  double sc;
  int32_t zp = 0;
  if (spec.scheme == Scheme::symmetric) {
    sc = static_cast<double>(std::bit_cast<float>(s.absmax_bits)) / spec.symmetric_levels();
  } else {
    // The float range always includes 0 so that 0 is exactly representable.
    const double lo = std::min(0.0, static_cast<double>(s.min));
    const double hi = std::max(0.0, static_cast<double>(s.max));
    sc = (hi - lo) / (qmax - qmin);
  }
  // A zero range (all zeros, or an empty tensor) gets scale 1: every code is
  // then the zero point and dequantizes to exactly 0. Tiny scales are raised
  // to FLT_MIN so that 1 / scale stays finite.
  float scale_f = sc == 0.0 ? 1.0f : static_cast<float>(sc);
  scale_f = std::max(scale_f, FLT_MIN);
  if (spec.scheme == Scheme::asymmetric) {
    const double lo = std::min(0.0, static_cast<double>(s.min == std::numeric_limits<float>::infinity() ? 0.0f : s.min));
    const double z = qmin - std::nearbyint(lo / scale_f);
    zp = static_cast<int32_t>(std::clamp(z, static_cast<double>(qmin), static_cast<double>(qmax)));
  }
  *scale = scale_f;
  *zero_point = zp;
}

void compute_qparams(const float* x, const Shape& shape, const QuantSpec& spec, const ScaleLayout& L, Tensor& scales,
                     Tensor& zero_points) {
  const bool asymmetric = spec.scheme == Scheme::asymmetric;
  const std::vector<Stats> cells = gather_stats(x, shape, L, asymmetric);
  scales = Tensor(DType::f32, L.scale_shape);
  zero_points = asymmetric ? Tensor(DType::i32, L.scale_shape) : Tensor(DType::i32, {0});
  int32_t zp_unused = 0;
  for (int64_t i = 0; i < L.scale_count; ++i) {
    int32_t* zp = asymmetric ? zero_points.as<int32_t>() + i : &zp_unused;
    qparams_from_stats(cells[static_cast<std::size_t>(i)], spec, scales.as<float>() + i, zp);
  }
}

void check_qparams(const ScaleLayout& L, const QuantSpec& spec, const TensorView& scales, const TensorView& zero_points) {
  if (scales.dtype != DType::f32) throw_invalid_argument("scales must be float32, got " + std::string(name_of(scales.dtype)));
  if (scales.numel() != L.scale_count) {
    throw_invalid_argument("expected " + std::to_string(L.scale_count) + " scales (shape " + shape_to_string(L.scale_shape) +
                           ") for " + spec.to_string() + ", got shape " + shape_to_string(scales.shape));
  }
  if (!scales.is_contiguous()) throw_invalid_argument("scales must be contiguous");
  const auto* s = reinterpret_cast<const float*>(scales.data);
  for (int64_t i = 0; i < L.scale_count; ++i) {
    if (!(std::isfinite(s[i]) && s[i] >= FLT_MIN)) {
      throw_invalid_argument("scale " + std::to_string(i) + " is " + std::to_string(s[i]) +
                             "; scales must be finite and at least FLT_MIN (1.18e-38)");
    }
  }
  if (spec.scheme == Scheme::asymmetric) {
    if (zero_points.dtype != DType::i32) {
      throw_invalid_argument("zero points must be int32, got " + std::string(name_of(zero_points.dtype)));
    }
    if (zero_points.numel() != L.scale_count) {
      throw_invalid_argument("expected " + std::to_string(L.scale_count) + " zero points, got shape " +
                             shape_to_string(zero_points.shape));
    }
    if (!zero_points.is_contiguous()) throw_invalid_argument("zero points must be contiguous");
    const auto* z = reinterpret_cast<const int32_t*>(zero_points.data);
    for (int64_t i = 0; i < L.scale_count; ++i) {
      if (z[i] < spec.qmin() || z[i] > spec.qmax()) {
        throw_invalid_argument("zero point " + std::to_string(i) + " is " + std::to_string(z[i]) + ", outside [" +
                               std::to_string(spec.qmin()) + ", " + std::to_string(spec.qmax()) + "]");
      }
    }
  }
}

// Work is split into tiles of one row each, at most kTile columns wide.
// Tiles start at even columns so int4 tiles start on a byte boundary.
constexpr int64_t kTile = 1 << 14;

template <class Fn>
void for_each_tile(const ScaleLayout& L, Fn&& fn) {
  const int64_t K = L.row_length;
  if (L.rows == 0 || K == 0) return;
  const int64_t tiles_per_row = (K + kTile - 1) / kTile;
  const int64_t tiles = L.rows * tiles_per_row;
  const int64_t tile_elems = std::min(K, kTile);
  parallel_for(tiles, std::max<int64_t>(1, kElementsPerTask / tile_elems), [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t r = t / tiles_per_row;
      const int64_t c0 = (t % tiles_per_row) * kTile;
      fn(r, c0, std::min(K, c0 + kTile));
    }
  });
}

// Visits the runs of columns [c0, c1) of row r that share one scale.
template <class Fn>
void for_each_run(const ScaleLayout& L, int64_t r, int64_t c0, int64_t c1, Fn&& fn) {
  for (int64_t c = c0; c < c1;) {
    const int64_t j = c / L.group;
    const int64_t end = std::min(c1, (j + 1) * L.group);
    fn(L.scale_index(r, j), c, end);
    c = end;
  }
}

}  // namespace

namespace {

QuantizedTensor quantize_contiguous(const float* x, const Shape& shape, const QuantSpec& spec, const ScaleLayout& L,
                                    Tensor scales, Tensor zero_points) {
  QuantizedTensor q;
  q.spec = spec;
  q.shape = shape;
  q.codes = Tensor(spec.int8_codes() ? DType::i8 : DType::int4_packed, shape);
  q.scales = std::move(scales);
  q.zero_points = std::move(zero_points);
  const auto& k = kernels::active_kernels();
  const int64_t K = L.row_length;
  std::vector<float> inv(static_cast<std::size_t>(L.scale_count));
  for (int64_t i = 0; i < L.scale_count; ++i) inv[static_cast<std::size_t>(i)] = 1.0f / q.scales.as<float>()[i];
  const int32_t* zps = q.has_zero_points() ? q.zero_points.as<int32_t>() : nullptr;
  const int qmin = spec.qmin(), qmax = spec.qmax();

  if (spec.int8_codes()) {
    int8_t* out = q.codes.as<int8_t>();
    for_each_tile(L, [&](int64_t r, int64_t c0, int64_t c1) {
      for_each_run(L, r, c0, c1, [&](int64_t si, int64_t b, int64_t e) {
        k.quantize_i8(x + r * K + b, e - b, inv[static_cast<std::size_t>(si)], zps ? zps[si] : 0, qmin, qmax,
                      out + r * K + b);
      });
    });
  } else {
    uint8_t* out = q.codes.as<uint8_t>();
    const int64_t row_bytes = (K + 1) / 2;
    for_each_tile(L, [&](int64_t r, int64_t c0, int64_t c1) {
      thread_local std::vector<int8_t> codes;
      codes.resize(static_cast<std::size_t>(c1 - c0));
      for_each_run(L, r, c0, c1, [&](int64_t si, int64_t b, int64_t e) {
        k.quantize_i8(x + r * K + b, e - b, inv[static_cast<std::size_t>(si)], zps ? zps[si] : 0, qmin, qmax,
                      codes.data() + (b - c0));
      });
      k.pack_i4(codes.data(), c1 - c0, out + r * row_bytes + c0 / 2);
    });
  }
  return q;
}

// Rows up to this many elements (256 KiB of float32) are quantized in one
// pass: statistics, then codes, while the row is still in L1/L2.
constexpr int64_t kFusedMaxRow = 1 << 16;

// True when every scale cell lies inside one row and no cell is shared
// between rows (per_channel on axis 0 of a 2-D tensor, per_group), so that a
// row's scales are known as soon as the row has been read once. These are
// exactly the layouts gather_stats reduces per row / per (row, group).
bool row_private_cells(const ScaleLayout& L) {
  if (L.rows <= 0 || L.row_length <= 0 || L.row_length > kFusedMaxRow || L.scale_count <= 1) return false;
  const bool one_per_row = L.row_mul == 1 && L.group_step == 0 && L.row_div == 1 && L.row_mod == L.rows;
  const bool per_group = L.group_step == 1 && L.row_mul == L.groups_per_row && L.row_div == 1 &&
                         L.row_mod == std::numeric_limits<int64_t>::max();
  return one_per_row || per_group;
}

// quantize() for row_private_cells layouts in one pass over the input instead
// of two (gather_stats over the whole tensor, then quantize_contiguous): the
// same per-cell statistics, qparams and kernels, so the same bits, but the
// second read of each row hits the cache instead of memory.
QuantizedTensor quantize_fused(const float* x, const Shape& shape, const QuantSpec& spec, const ScaleLayout& L) {
  const auto& k = kernels::active_kernels();
  const bool asymmetric = spec.scheme == Scheme::asymmetric;
  QuantizedTensor q;
  q.spec = spec;
  q.shape = shape;
  q.codes = Tensor(spec.int8_codes() ? DType::i8 : DType::int4_packed, shape);
  q.scales = Tensor(DType::f32, L.scale_shape);
  q.zero_points = asymmetric ? Tensor(DType::i32, L.scale_shape) : Tensor(DType::i32, {0});
  float* scales = q.scales.as<float>();
  int32_t* zps = asymmetric ? q.zero_points.as<int32_t>() : nullptr;
  const int64_t K = L.row_length;
  const int64_t row_bytes = (K + 1) / 2;
  const int qmin = spec.qmin(), qmax = spec.qmax();
  std::atomic<bool> nonfinite{false};

  parallel_for(L.rows, std::max<int64_t>(1, kElementsPerTask / K), [&](int64_t r0, int64_t r1) {
    thread_local std::vector<int8_t> codes;
    if (spec.bits == 4) codes.resize(static_cast<std::size_t>(K));
    for (int64_t r = r0; r < r1; ++r) {
      const float* row = x + r * K;
      int8_t* out = spec.int8_codes() ? q.codes.as<int8_t>() + r * K : codes.data();
      for (int64_t j = 0; j < L.groups_per_row; ++j) {
        const int64_t b = j * L.group, e = std::min(K, b + L.group);
        const int64_t si = L.scale_index(r, j);
        Stats st;
        st.add_span(k, row + b, e - b, asymmetric);
        if (!st.finite()) {
          nonfinite = true;  // reported below, naming the first bad element
          continue;
        }
        int32_t zp = 0;
        qparams_from_stats(st, spec, scales + si, &zp);
        if (zps) zps[si] = zp;
        k.quantize_i8(row + b, e - b, 1.0f / scales[si], zp, qmin, qmax, out + b);
      }
      if (spec.bits == 4) k.pack_i4(codes.data(), K, q.codes.as<uint8_t>() + r * row_bytes);
    }
  });
  if (nonfinite) detail::throw_nonfinite(x, L.rows * K, shape, "quantize");
  return q;
}

}  // namespace

QuantizedTensor quantize(const TensorView& input, const QuantSpec& spec) {
  spec.validate();
  input.validate("quantize");
  const ScaleLayout L = detail::make_scale_layout(input.shape, spec);
  const ContiguousF32 x(input);
  if (row_private_cells(L)) return quantize_fused(x.data, input.shape, spec, L);
  Tensor scales, zero_points;
  compute_qparams(x.data, input.shape, spec, L, scales, zero_points);
  return quantize_contiguous(x.data, input.shape, spec, L, std::move(scales), std::move(zero_points));
}

void choose_qparams(const TensorView& input, const QuantSpec& spec, Tensor& scales, Tensor& zero_points) {
  spec.validate();
  input.validate("quantize");
  const ScaleLayout L = detail::make_scale_layout(input.shape, spec);
  const ContiguousF32 x(input);
  compute_qparams(x.data, input.shape, spec, L, scales, zero_points);
}

QuantizedTensor quantize_with_qparams(const TensorView& input, const QuantSpec& spec, Tensor scales,
                                      Tensor zero_points) {
  spec.validate();
  input.validate("quantize");
  const ScaleLayout L = detail::make_scale_layout(input.shape, spec);
  check_qparams(L, spec, scales.view(), zero_points.view());
  const ContiguousF32 x(input);
  const int64_t n = input.numel();
  const auto& k = kernels::active_kernels();
  // Same NaN/Inf policy as quantize(): clamping a NaN to a code would hide it.
  std::atomic<bool> bad{false};
  parallel_for(n, kElementsPerTask, [&](int64_t b, int64_t e) {
    if (k.absmax_bits(x.data + b, e - b) >= 0x7f800000u) bad = true;
  });
  if (bad) detail::throw_nonfinite(x.data, n, input.shape, "quantize");
  // Store the qparams with their canonical shape.
  Tensor s(DType::f32, L.scale_shape);
  if (L.scale_count) std::memcpy(s.data(), scales.data(), static_cast<std::size_t>(L.scale_count) * 4);
  Tensor z = Tensor(DType::i32, {0});
  if (spec.scheme == Scheme::asymmetric) {
    z = Tensor(DType::i32, L.scale_shape);
    if (L.scale_count) std::memcpy(z.data(), zero_points.data(), static_cast<std::size_t>(L.scale_count) * 4);
  }
  return quantize_contiguous(x.data, input.shape, spec, L, std::move(s), std::move(z));
}

Tensor unpack_int4(const TensorView& packed) {
  packed.validate("unpack_int4");
  if (packed.dtype != DType::int4_packed) {
    throw_invalid_argument("unpack_int4 expects int4 codes, got " + std::string(name_of(packed.dtype)));
  }
  Tensor out(DType::i8, packed.shape);
  const RowLayout rl = row_layout(packed.shape);
  const auto& k = kernels::active_kernels();
  const auto* p = reinterpret_cast<const uint8_t*>(packed.data);
  const int64_t row_bytes = (rl.row_length + 1) / 2;
  parallel_for(rl.rows, 64, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) k.unpack_i4(p + r * row_bytes, rl.row_length, out.as<int8_t>() + r * rl.row_length);
  });
  return out;
}

QuantizedTensorView view_of(const QuantizedTensor& q) {
  return {q.spec, q.shape, q.codes.view(), q.scales.view(), q.zero_points.view()};
}

Tensor dequantize(const QuantizedTensor& q) { return dequantize(view_of(q)); }

Tensor dequantize(const QuantizedTensorView& view) {
  // Scales and zero points are read as float / int32: borrowed ones that are
  // not aligned for that (a view into a file) are copied first. They are small.
  QuantizedTensorView q = view;
  std::optional<Tensor> scales_copy, zero_points_copy;
  const auto aligned4 = [](const TensorView& v) { return reinterpret_cast<std::uintptr_t>(v.data) % 4 == 0; };
  if (q.scales.dtype == DType::f32 && !aligned4(q.scales)) {
    scales_copy = to_contiguous_f32(q.scales);
    q.scales = scales_copy->view();
  }
  if (q.spec.scheme == Scheme::asymmetric && q.zero_points.dtype == DType::i32 && !aligned4(q.zero_points)) {
    zero_points_copy = Tensor(q.zero_points.dtype, q.zero_points.shape);
    if (zero_points_copy->nbytes()) std::memcpy(zero_points_copy->data(), q.zero_points.data, zero_points_copy->nbytes());
    q.zero_points = zero_points_copy->view();
  }
  q.spec.validate();
  const ScaleLayout L = detail::make_scale_layout(q.shape, q.spec);
  check_qparams(L, q.spec, q.scales, q.zero_points);
  const DType expected = q.spec.int8_codes() ? DType::i8 : DType::int4_packed;
  if (q.codes.dtype != expected || q.codes.numel() != numel_of(q.shape) || !q.codes.is_contiguous()) {
    throw_invalid_argument("codes are " + std::string(name_of(q.codes.dtype)) + " " + shape_to_string(q.codes.shape) +
                           ", expected contiguous " + std::string(name_of(expected)) + " " + shape_to_string(q.shape));
  }
  Tensor out(DType::f32, q.shape);
  float* y = out.as<float>();
  const auto& k = kernels::active_kernels();
  const int64_t K = L.row_length;
  const auto* scales = reinterpret_cast<const float*>(q.scales.data);
  const auto* zps = q.spec.scheme == Scheme::asymmetric ? reinterpret_cast<const int32_t*>(q.zero_points.data) : nullptr;
  if (q.spec.int8_codes()) {
    const auto* codes = reinterpret_cast<const int8_t*>(q.codes.data);
    for_each_tile(L, [&](int64_t r, int64_t c0, int64_t c1) {
      for_each_run(L, r, c0, c1, [&](int64_t si, int64_t b, int64_t e) {
        k.dequantize_i8(codes + r * K + b, e - b, scales[si], zps ? zps[si] : 0, y + r * K + b);
      });
    });
  } else {
    const auto* packed = reinterpret_cast<const uint8_t*>(q.codes.data);
    const int64_t row_bytes = (K + 1) / 2;
    for_each_tile(L, [&](int64_t r, int64_t c0, int64_t c1) {
      thread_local std::vector<int8_t> codes;
      codes.resize(static_cast<std::size_t>(c1 - c0));
      k.unpack_i4(packed + r * row_bytes + c0 / 2, c1 - c0, codes.data());
      for_each_run(L, r, c0, c1, [&](int64_t si, int64_t b, int64_t e) {
        k.dequantize_i8(codes.data() + (b - c0), e - b, scales[si], zps ? zps[si] : 0, y + r * K + b);
      });
    });
  }
  return out;
}

}  // namespace monoquant
