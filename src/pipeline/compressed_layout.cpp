#include "monoquant/pipeline/compressed_layout.hpp"

#include <cmath>
#include <cstring>

#include "monoquant/error.hpp"
#include "monoquant/float_cast.hpp"
#include "monoquant/half.hpp"
#include "monoquant/metrics.hpp"
#include "monoquant/weight_quantizer.hpp"

namespace monoquant::pipeline {
namespace {

using io::FileDType;

DType core_of(FileDType d) {
  const auto c = io::to_core(d);
  if (!c) throw_unsupported("dtype " + std::string(io::torch_name(d)) + " cannot be quantized");
  return *c;
}

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
    out.push_back({p + "weight_scale", sd, {n, 1}});
  } else {
    const int64_t per_word = 32 / s.bits();
    out.push_back({p + "weight_packed", FileDType::i32, {n, (k + per_word - 1) / per_word}});
    out.push_back({p + "weight_scale", sd, {n, s.format == WeightFormat::int4 ? k / s.group_size : 1}});
    out.push_back({p + "weight_shape", FileDType::i64, {2}});
  }
  if (s.mode == LinearMode::static_int8) {
    out.push_back({p + "input_scale", sd, {1}});
    if (!s.act_symmetric) out.push_back({p + "input_zero_point", FileDType::i8, {1}});
  }
  return out;
}

std::vector<Tensor> compressed_tensors_from_codes(const PlanEntry& e, const TensorView& codes, const TensorView& scales) {
  const LayerScheme& s = e.scheme;
  const int64_t n = e.rows(), k = e.cols();
  const FileDType sd = scale_dtype_for(e.dtype);
  const Shape scale_shape{n, s.format == WeightFormat::int4 ? k / s.group_size : 1};
  const int64_t row_bytes = s.format == WeightFormat::int4 ? (k + 1) / 2 : k;
  const int64_t code_count = codes.dtype == DType::int4_packed ? codes.numel() / k * row_bytes : codes.numel();
  if (!e.quantize || s.is_half() || code_count != n * row_bytes || scales.numel() != numel_of(scale_shape) ||
      scales.dtype != DType::f32 || !codes.is_contiguous() || !scales.is_contiguous() ||
      (codes.dtype != DType::i8 && codes.dtype != DType::u8 && codes.dtype != DType::int4_packed)) {
    throw_invalid_argument("layer '" + e.module + "': codes " + shape_to_string(codes.shape) + " and scales " +
                           shape_to_string(scales.shape) + " do not fit " + e.scheme.label() + " " +
                           shape_to_string(Shape{n, k}));
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

EntryOutputs produce_outputs(const PlanEntry& e, const io::TensorRecord& in) {
  EntryOutputs out;
  auto own = [&](Tensor t) {
    out.owned.push_back(std::move(t));
    const Tensor& o = out.owned.back();
    out.bytes.emplace_back(o.data(), o.nbytes());
  };
  if (!e.quantize) {
    if (in.is_contiguous()) {
      out.bytes.emplace_back(in.data(), in.nbytes());
    } else {
      own(contiguous_bytes(in));
    }
    out.weight_bytes = in.nbytes();
    return out;
  }
  const LayerScheme& s = e.scheme;
  const int64_t n = e.rows(), k = e.cols();
  // The weight as the matrix [N, K] the kernels multiply (conv weights flattened).
  Tensor contiguous;
  TensorView w;
  if (in.is_contiguous()) {
    w = TensorView(in.data(), core_of(in.dtype), Shape{n, k});
  } else {
    contiguous = to_contiguous_f32(in.view());
    w = TensorView(contiguous.data(), DType::f32, Shape{n, k});
  }
  try {
    if (s.is_half()) {
      Tensor h = cast_to_half(TensorView(w.data, w.dtype, e.shape), s.format == WeightFormat::f16 ? DType::f16 : DType::bf16,
                              OverflowPolicy::error);
      const Tensor back = half_to_f32(h.view());
      out.sqnr_db = compare(w, TensorView(back.data(), DType::f32, Shape{n, k})).sqnr_db;
      out.weight_bytes = h.nbytes();
      own(std::move(h));
      return out;
    }
    const FileDType sd = scale_dtype_for(e.dtype);
    QuantizedTensor q = quantize_weight(w, s.weight_spec(), s.scale_method, *io::to_core(sd));
    out.sqnr_db = compare(w, dequantize(q).view()).sqnr_db;
    for (Tensor& t : compressed_tensors_from_codes(e, q.codes.view(), q.scales.view())) own(std::move(t));
    out.weight_bytes = q.codes.nbytes() + static_cast<uint64_t>(q.scales.numel()) * io::element_size(sd);
  } catch (const Error& err) {
    if (err.kind() == ErrorKind::invalid_argument) throw_invalid_argument("tensor '" + e.tensor + "': " + err.what());
    throw;
  }
  return out;
}

}  // namespace monoquant::pipeline
