#include "monoquant/pipeline/compressed_layout.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <cstring>

#include "monoquant/error.hpp"
#include "monoquant/float_cast.hpp"
#include "monoquant/half.hpp"
#include "monoquant/metrics.hpp"
#include "monoquant/thread_pool.hpp"
#include "monoquant/weight_quantizer.hpp"
#include "quant/kernels.hpp"

namespace monoquant::pipeline {
namespace {

using io::FileDType;

std::string prefix_of(const PlanEntry& e) { return e.module.empty() ? "" : e.module + "."; }

// A contiguous copy of a strided record (any element type, copied bytewise).
Tensor contiguous_bytes(const io::TensorRecord& r) {
  const std::size_t es = io::element_size(r.dtype);
  Tensor out(DType::u8, {static_cast<int64_t>(r.nbytes())});
  const int64_t n = r.numel();
  std::vector<int64_t> idx(r.shape.size(), 0);
  for (int64_t i = 0; i < n; ++i) {
    int64_t off = 0;
    for (std::size_t d = 0; d < idx.size(); ++d) off += idx[d] * r.strides[d];
    std::memcpy(out.data() + static_cast<std::size_t>(i) * es, r.data() + static_cast<std::size_t>(off) * es, es);
    for (std::size_t d = idx.size(); d-- > 0;) {
      if (++idx[d] < r.shape[d]) break;
      idx[d] = 0;
    }
  }
  return out;
}

// uint8 rows [n, b] -> int32 words [n, ceil(b/4)] (zero padding past b).
Tensor rows_to_words(const uint8_t* rows, int64_t n, int64_t b) {
  const int64_t words = (b + 3) / 4;
  Tensor out = Tensor::zeros(DType::i32, {n, words});
  if (words * 4 == b) {
    std::memcpy(out.data(), rows, static_cast<std::size_t>(n * b));
  } else {
    for (int64_t r = 0; r < n; ++r) std::memcpy(out.data() + r * words * 4, rows + r * b, static_cast<std::size_t>(b));
  }
  return out;
}

Tensor store_scales(const Tensor& s, FileDType dtype, Shape shape) {
  const auto* in = s.as<float>();
  if (dtype == FileDType::f32) {
    Tensor out(DType::f32, std::move(shape));
    std::memcpy(out.data(), in, out.nbytes());
    return out;
  }
  Tensor out(dtype == FileDType::f16 ? DType::f16 : DType::bf16, std::move(shape));
  auto* o = out.as<uint16_t>();
  for (int64_t i = 0; i < s.numel(); ++i) o[i] = dtype == FileDType::f16 ? f32_to_f16_bits(in[i]) : f32_to_bf16_bits(in[i]);
  return out;
}

}  // namespace

Tensor pack_zero_points(const int32_t* zero_points, int64_t n, int64_t groups, int bits) {
  const int64_t per = 32 / bits;
  Tensor out = Tensor::zeros(DType::i32, {(n + per - 1) / per, groups});
  auto* words = out.as<uint32_t>();
  const uint32_t mask = (1u << bits) - 1;
  const int32_t offset = 1 << (bits - 1);
  for (int64_t r = 0; r < n; ++r) {
    for (int64_t g = 0; g < groups; ++g) {
      const auto v = static_cast<uint32_t>(zero_points[r * groups + g] + offset) & mask;
      words[(r / per) * groups + g] |= v << (bits * (r % per));
    }
  }
  return out;
}

FileDType scale_dtype_for(FileDType weight_dtype) {
  return weight_dtype == FileDType::f16 || weight_dtype == FileDType::bf16 ? weight_dtype : FileDType::f32;
}

std::vector<io::TensorSpec> output_specs(const PlanEntry& e) {
  if (!e.quantize) return {io::TensorSpec{e.tensor, e.dtype, e.shape}};
  const std::string p = prefix_of(e);
  const LayerScheme& s = e.scheme;
  if (s.is_half()) return {io::TensorSpec{e.tensor, s.format == WeightFormat::f16 ? FileDType::f16 : FileDType::bf16, e.shape}};
  const int64_t n = e.rows(), k = e.cols();
  const FileDType sd = scale_dtype_for(e.dtype);
  std::vector<io::TensorSpec> out;
  const std::string fmt = s.ct_format();
  if (fmt == "int-quantized") {
    out.push_back({p + "weight", FileDType::i8, {n, k}});
    out.push_back({p + "weight_scale", sd, {n, s.scale_groups(k)}});
  } else {
    const int64_t per_word = 32 / s.bits();
    out.push_back({p + "weight_packed", FileDType::i32, {n, (k + per_word - 1) / per_word}});
    out.push_back({p + "weight_scale", sd, {n, s.scale_groups(k)}});
    out.push_back({p + "weight_shape", FileDType::i64, {2}});
    if (!s.weight_symmetric) {
      const int64_t per = 32 / s.bits();
      out.push_back({p + "weight_zero_point", FileDType::i32, {(n + per - 1) / per, s.scale_groups(k)}});
    }
  }
  if (s.mode == LinearMode::static_int8) {
    out.push_back({p + "input_scale", sd, {1}});
    if (!s.act_symmetric) out.push_back({p + "input_zero_point", FileDType::i8, {1}});
  }
  return out;
}

std::vector<Tensor> compressed_tensors_from_codes(const PlanEntry& e, const TensorView& codes, const TensorView& scales,
                                                  const TensorView& zero_points) {
  const LayerScheme& s = e.scheme;
  const int64_t n = e.rows(), k = e.cols();
  const FileDType sd = scale_dtype_for(e.dtype);
  const Shape scale_shape{n, s.scale_groups(k)};
  const int64_t row_bytes = s.format == WeightFormat::int4 ? (k + 1) / 2 : k;
  const int64_t code_count = codes.dtype == DType::int4_packed ? codes.numel() / k * row_bytes : codes.numel();
  if (!e.quantize || s.is_half() || code_count != n * row_bytes || scales.numel() != numel_of(scale_shape) ||
      scales.dtype != DType::f32 || !codes.is_contiguous() || !scales.is_contiguous() ||
      (codes.dtype != DType::i8 && codes.dtype != DType::u8 && codes.dtype != DType::int4_packed)) {
    throw_invalid_argument("layer '" + e.module + "': codes " + shape_to_string(codes.shape) + " and scales " +
                           shape_to_string(scales.shape) + " do not fit " + e.scheme.label() + " " +
                           shape_to_string(Shape{n, k}));
  }
  const bool zp_ok = s.weight_symmetric ? zero_points.data == nullptr
                                        : zero_points.data != nullptr && zero_points.dtype == DType::i32 && zero_points.is_contiguous() &&
                                              zero_points.numel() == numel_of(scale_shape);
  if (!zp_ok) {
    throw_invalid_argument("layer '" + e.module + "': " + e.scheme.label() +
                           (s.weight_symmetric ? " takes no zero points" : " needs int32 zero points " +
                                                                                shape_to_string(scale_shape) + ", got " +
                                                                                shape_to_string(zero_points.shape)));
  }
  const Tensor scales_f32 = to_contiguous_f32(scales);
  std::vector<Tensor> out;
  if (s.ct_format() == "int-quantized") {
    Tensor w(DType::i8, {n, k});
    std::memcpy(w.data(), codes.data, w.nbytes());
    out.push_back(std::move(w));
    out.push_back(store_scales(scales_f32, sd, scale_shape));
  } else {
    const auto* c = reinterpret_cast<const uint8_t*>(codes.data);
    if (s.format == WeightFormat::int4) {
      out.push_back(rows_to_words(c, n, row_bytes));
    } else {
      Tensor u(DType::u8, {n, k});
      auto* o = u.as<uint8_t>();
      for (int64_t i = 0; i < n * k; ++i) o[i] = static_cast<uint8_t>(static_cast<int8_t>(c[i]) + 128);
      out.push_back(rows_to_words(o, n, k));
    }
    out.push_back(store_scales(scales_f32, sd, scale_shape));
    Tensor shape(DType::i64, {2});
    shape.as<int64_t>()[0] = n;
    shape.as<int64_t>()[1] = k;
    out.push_back(std::move(shape));
    if (!s.weight_symmetric) {
      out.push_back(pack_zero_points(reinterpret_cast<const int32_t*>(zero_points.data), n, scale_shape[1], s.bits()));
    }
  }
  if (s.mode == LinearMode::static_int8) {
    Tensor a(DType::f32, {1});
    a.as<float>()[0] = round_scale_up(e.activation.scale, *io::to_core(sd));
    out.push_back(store_scales(a, sd, {1}));
    if (!s.act_symmetric) {
      Tensor z(DType::i8, {1});
      z.as<int8_t>()[0] = static_cast<int8_t>(e.activation.zero_point);
      out.push_back(std::move(z));
    }
  }
  return out;
}

namespace {

constexpr int64_t kBlockElements = int64_t{1} << 20;  // 4 MiB of float32 rows per block

// Rows [r0, r0 + rows) of the input as float32: in place for float32 input,
// else converted into scratch.
const float* float_rows(const io::TensorRecord& in, int64_t r0, int64_t rows, int64_t k, Scratch& scratch,
                        Tensor& strided_copy) {
  if (!in.is_contiguous()) {
    if (strided_copy.numel() == 0) strided_copy = to_contiguous_f32(in.view());
    return strided_copy.as<float>() + r0 * k;
  }
  if (in.dtype == FileDType::f32) return reinterpret_cast<const float*>(in.data()) + r0 * k;
  const int64_t n = rows * k;
  if (scratch.floats.size() < static_cast<std::size_t>(n) * 4) scratch.floats = Buffer(static_cast<std::size_t>(n) * 4);
  float* f = scratch.floats.as<float>();
  if (in.dtype == FileDType::f16 || in.dtype == FileDType::bf16) {
    const auto* h = reinterpret_cast<const uint16_t*>(in.data()) + r0 * k;
    const auto& kt = kernels::active_kernels();
    const bool f16 = in.dtype == FileDType::f16;
    parallel_for(n, int64_t{1} << 15, [&](int64_t b, int64_t e) {
      if (f16) kt.f16_to_f32(h + b, e - b, f + b);
      else kt.bf16_to_f32(h + b, e - b, f + b);
    });
  } else {  // float64
    const Tensor t = to_contiguous_f32(TensorView(in.data() + static_cast<std::size_t>(r0 * k) * 8, DType::f64, {rows, k}));
    std::memcpy(f, t.data(), t.nbytes());
  }
  return f;
}

std::byte* scratch_bytes(Scratch& s, std::size_t n) {
  if (s.bytes.size() < n) s.bytes = Buffer(n);
  return s.bytes.data();
}

double sqnr_from(double ref, double err) {
  if (err == 0) return std::numeric_limits<double>::infinity();
  if (ref == 0) return -std::numeric_limits<double>::infinity();
  return 10.0 * std::log10(ref / err);
}

}  // namespace

EntryStats stream_outputs(const PlanEntry& e, const io::TensorRecord& in, Scratch& scratch, const PartSink& sink) {
  EntryStats stats;
  if (!e.quantize) {
    if (in.is_contiguous()) {
      sink(0, 0, in.data(), in.nbytes());
    } else {
      const Tensor c = contiguous_bytes(in);
      sink(0, 0, c.data(), c.nbytes());
    }
    stats.weight_bytes = in.nbytes();
    return stats;
  }
  const LayerScheme& s = e.scheme;
  const int64_t n = e.rows(), k = e.cols();
  const int64_t block = std::max<int64_t>(1, kBlockElements / std::max<int64_t>(k, 1));
  const FileDType sd = scale_dtype_for(e.dtype);
  const DType sd_core = *io::to_core(sd);
  const auto& kt = kernels::active_kernels();
  Tensor strided_copy;
  double ref = 0, err = 0;
  try {
    if (s.is_half()) {
      const DType target = s.format == WeightFormat::f16 ? DType::f16 : DType::bf16;
      for (int64_t r0 = 0; r0 < n; r0 += block) {
        const int64_t rows = std::min(block, n - r0);
        const float* x = float_rows(in, r0, rows, k, scratch, strided_copy);
        const TensorView xv(x, DType::f32, {rows, k});
        const Tensor h = cast_to_half(xv, target, OverflowPolicy::error);
        const ErrorMetrics m = compare(xv, half_to_f32(h.view()).view());
        ref += m.reference_energy;
        err += m.error_energy;
        sink(0, static_cast<uint64_t>(r0 * k) * 2, h.data(), h.nbytes());
      }
      stats.sqnr_db = sqnr_from(ref, err);
      stats.weight_bytes = static_cast<uint64_t>(n * k) * 2;
      return stats;
    }
    const QuantSpec spec = s.weight_spec();
    const bool int4 = s.format == WeightFormat::int4;
    const int64_t groups = s.scale_groups(k);
    const bool packed = s.ct_format() == "pack-quantized";
    const int64_t per_word = 32 / s.bits();
    const int64_t words = (k + per_word - 1) / per_word;          // packed outputs: int32 words per row
    const int64_t row_out = packed ? words * 4 : k;                // bytes per row on disk
    Tensor scales(DType::f32, {n, groups});
    Tensor zero_points = Tensor::zeros(DType::i32, {s.weight_symmetric ? 0 : n, groups});
    std::vector<int8_t> unpacked(static_cast<std::size_t>(int4 ? k : 0));
    for (int64_t r0 = 0; r0 < n; r0 += block) {
      const int64_t rows = std::min(block, n - r0);
      const float* x = float_rows(in, r0, rows, k, scratch, strided_copy);
      const QuantizedTensor q = quantize_weight(TensorView(x, DType::f32, {rows, k}), spec, s.scale_method, sd_core);
      const float* qs = q.scales.as<float>();
      std::memcpy(scales.as<float>() + r0 * groups, qs, static_cast<std::size_t>(rows * groups) * 4);
      const int32_t* qz = s.weight_symmetric ? nullptr : q.zero_points.as<int32_t>();
      if (qz) std::memcpy(zero_points.as<int32_t>() + r0 * groups, qz, static_cast<std::size_t>(rows * groups) * 4);
      // Error energies, from the codes (no dequantized copy).
      for (int64_t r = 0; r < rows; ++r) {
        if (int4) {
          kt.unpack_i4(reinterpret_cast<const uint8_t*>(q.codes.data()) + r * ((k + 1) / 2), k, unpacked.data());
          for (int64_t g = 0; g < groups; ++g) {
            kt.error_energy_i8(x + r * k + g * s.group_size, unpacked.data() + g * s.group_size, s.group_size,
                               qs[r * groups + g], qz ? qz[r * groups + g] : 0, &ref, &err);
          }
        } else {
          const int64_t len = k / groups;
          for (int64_t g = 0; g < groups; ++g) {
            kt.error_energy_i8(x + r * k + g * len, q.codes.as<int8_t>() + r * k + g * len, len, qs[r * groups + g],
                               qz ? qz[r * groups + g] : 0, &ref, &err);
          }
        }
      }
      // The codes in their on-disk form.
      const auto* codes = reinterpret_cast<const uint8_t*>(q.codes.data());
      if (!packed) {
        sink(0, static_cast<uint64_t>(r0 * k), codes, static_cast<std::size_t>(rows * k));
        continue;
      }
      std::byte* out = scratch_bytes(scratch, static_cast<std::size_t>(rows * row_out));
      std::memset(out, 0, static_cast<std::size_t>(rows * row_out));
      const int64_t row_in = int4 ? (k + 1) / 2 : k;
      for (int64_t r = 0; r < rows; ++r) {
        auto* dst = reinterpret_cast<uint8_t*>(out + r * row_out);
        const uint8_t* src = codes + r * row_in;
        if (int4) {
          std::memcpy(dst, src, static_cast<std::size_t>(row_in));  // two codes per byte, +8: the word's bit order
        } else {
          for (int64_t i = 0; i < k; ++i) dst[i] = static_cast<uint8_t>(static_cast<int8_t>(src[i]) + 128);
        }
      }
      sink(0, static_cast<uint64_t>(r0 * row_out), out, static_cast<std::size_t>(rows * row_out));
    }
    const Tensor stored = store_scales(scales, sd, {n, groups});
    sink(1, 0, stored.data(), stored.nbytes());
    std::size_t next = 2;
    if (packed) {
      const int64_t shape[2] = {n, k};
      sink(next++, 0, shape, sizeof shape);
      if (!s.weight_symmetric) {
        const Tensor z = pack_zero_points(zero_points.as<int32_t>(), n, groups, s.bits());
        sink(next++, 0, z.data(), z.nbytes());
      }
    }
    if (s.mode == LinearMode::static_int8) {
      Tensor a(DType::f32, {1});
      a.as<float>()[0] = round_scale_up(e.activation.scale, sd_core);
      const Tensor as = store_scales(a, sd, {1});
      sink(next++, 0, as.data(), as.nbytes());
      if (!s.act_symmetric) {
        const auto z = static_cast<int8_t>(e.activation.zero_point);
        sink(next++, 0, &z, 1);
      }
    }
    stats.sqnr_db = sqnr_from(ref, err);
    stats.weight_bytes = static_cast<uint64_t>(n) * static_cast<uint64_t>(int4 ? (k + 1) / 2 : k) +
                         static_cast<uint64_t>(n * groups) * io::element_size(sd) +
                         (s.weight_symmetric ? 0 : static_cast<uint64_t>(n * groups * s.bits() + 7) / 8);
  } catch (const Error& er) {
    if (er.kind() == ErrorKind::invalid_argument) throw_invalid_argument("tensor '" + e.tensor + "': " + er.what());
    throw;
  }
  return stats;
}

EntryOutputs produce_outputs(const PlanEntry& e, const io::TensorRecord& in) {
  Scratch scratch;
  return produce_outputs(e, in, scratch);
}

EntryOutputs produce_outputs(const PlanEntry& e, const io::TensorRecord& in, Scratch& scratch) {
  EntryOutputs out;
  if (!e.quantize && in.is_contiguous()) {  // the input's own bytes, no copy
    out.bytes.emplace_back(in.data(), in.nbytes());
    out.weight_bytes = in.nbytes();
    return out;
  }
  for (const auto& spec : output_specs(e)) {
    const auto core = io::to_core(spec.dtype);
    out.owned.push_back(core ? Tensor(*core, spec.shape)
                             : Tensor(DType::u8, {static_cast<int64_t>(io::checked_nbytes(spec.dtype, spec.shape, spec.name))}));
    out.bytes.emplace_back(out.owned.back().data(), out.owned.back().nbytes());
  }
  const EntryStats st = stream_outputs(e, in, scratch, [&](std::size_t j, uint64_t offset, const void* data, std::size_t size) {
    std::memcpy(static_cast<std::byte*>(const_cast<void*>(out.bytes[j].first)) + offset, data, size);
  });
  out.sqnr_db = st.sqnr_db;
  out.weight_bytes = st.weight_bytes;
  return out;
}

}  // namespace monoquant::pipeline
