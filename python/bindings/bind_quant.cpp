#include <nanobind/stl/optional.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>

#include <cstring>

#include "convert.hpp"
#include "monoquant/error.hpp"
#include "monoquant/float_cast.hpp"
#include "monoquant/metrics.hpp"
#include "monoquant/quantize.hpp"
#include "monoquant/weight_quantizer.hpp"

namespace monoquant::python {

namespace {

QuantSpec make_spec(int bits, const std::string& scheme, const std::string& granularity, int axis, int64_t group_size) {
  QuantSpec spec;
  spec.bits = bits;
  spec.scheme = parse_scheme(scheme);
  spec.granularity = parse_granularity(granularity);
  spec.axis = axis;
  spec.group_size = group_size;
  spec.validate();
  return spec;
}

nb::dict to_dict(QuantizedTensor q) {
  nb::dict d;
  const bool asym = q.has_zero_points();
  d["codes"] = to_torch(std::move(q.codes));
  d["scales"] = to_torch(std::move(q.scales));
  d["zero_points"] = asym ? to_torch(std::move(q.zero_points)) : nb::none();
  return d;
}

}  // namespace

void bind_quant(nb::module_& m) {
  m.def(
      "quantize",
      [](const AnyArray& x, int bits, const std::string& scheme, const std::string& granularity, int axis,
         int64_t group_size) {
        const QuantSpec spec = make_spec(bits, scheme, granularity, axis, group_size);
        const TensorView v = to_view(x, "quantize");
        QuantizedTensor q;
        {
          nb::gil_scoped_release release;
          q = quantize(v, spec);
        }
        return to_dict(std::move(q));
      },
      nb::arg("x"), nb::arg("bits"), nb::arg("scheme"), nb::arg("granularity"), nb::arg("axis"), nb::arg("group_size"),
      "Quantize a float tensor; returns {'codes', 'scales', 'zero_points'} as torch tensors.");

  m.def(
      "quantize_weight",
      [](const AnyArray& x, int bits, const std::string& scheme, const std::string& granularity, int axis,
         int64_t group_size, const std::string& scale_method, const std::string& scale_dtype, bool full_range) {
        QuantSpec spec = make_spec(bits, scheme, granularity, axis, group_size);
        spec.full_range = full_range;
        spec.validate();
        const ScaleMethod method = parse_scale_method(scale_method);
        const DType sd = parse_dtype(scale_dtype);
        const TensorView v = to_view(x, "quantize_weight");
        QuantizedTensor q;
        {
          nb::gil_scoped_release release;
          q = quantize_weight(v, spec, method, sd);
        }
        return to_dict(std::move(q));
      },
      nb::arg("x"), nb::arg("bits"), nb::arg("scheme"), nb::arg("granularity"), nb::arg("axis"), nb::arg("group_size"),
      nb::arg("scale_method"), nb::arg("scale_dtype"), nb::arg("full_range") = false,
      "Quantize a weight for storage: scales by scale_method, rounded up to scale_dtype, then the codes.");

  m.def(
      "quantize_with_qparams",
      [](const AnyArray& x, int bits, const std::string& scheme, const std::string& granularity, int axis,
         int64_t group_size, const AnyArray& scales, std::optional<AnyArray> zero_points) {
        const QuantSpec spec = make_spec(bits, scheme, granularity, axis, group_size);
        const TensorView v = to_view(x, "quantize");
        // The qparams are small: copy them into owned tensors of the canonical dtype.
        Tensor s = to_contiguous_f32(to_view(scales, "scales"));
        Tensor z(DType::i32, {0});
        if (spec.scheme == Scheme::asymmetric) {
          if (!zero_points) throw_invalid_argument("asymmetric quantization needs zero_points");
          const TensorView zv = to_view(*zero_points, "zero_points");
          if (zv.dtype != DType::i32 || !zv.is_contiguous()) {
            throw_invalid_argument("zero_points must be a contiguous int32 tensor");
          }
          z = Tensor(DType::i32, zv.shape);
          if (z.nbytes()) std::memcpy(z.data(), zv.data, z.nbytes());
        }
        QuantizedTensor q;
        {
          nb::gil_scoped_release release;
          q = quantize_with_qparams(v, spec, std::move(s), std::move(z));
        }
        return to_dict(std::move(q));
      },
      nb::arg("x"), nb::arg("bits"), nb::arg("scheme"), nb::arg("granularity"), nb::arg("axis"), nb::arg("group_size"),
      nb::arg("scales"), nb::arg("zero_points").none());

  m.def(
      "dequantize",
      [](const AnyArray& codes, const AnyArray& scales, std::optional<AnyArray> zero_points, std::vector<int64_t> shape,
         int bits, const std::string& scheme, const std::string& granularity, int axis, int64_t group_size) {
        QuantizedTensorView q;
        q.spec = make_spec(bits, scheme, granularity, axis, group_size);
        q.shape = shape;
        q.codes = to_view(codes, "codes");
        if (bits == 4) {
          // Packed bytes arrive as uint8 [rows, ceil(K/2)]; reinterpret them.
          const RowLayout rl = row_layout(shape);
          const int64_t expected = rl.rows * ((rl.row_length + 1) / 2);
          if (q.codes.dtype != DType::u8 || !q.codes.is_contiguous() || q.codes.numel() != expected) {
            throw_invalid_argument("int4 codes must be contiguous uint8 with " + std::to_string(expected) +
                                   " bytes for shape " + shape_to_string(shape));
          }
          q.codes = TensorView(q.codes.data, DType::int4_packed, shape);
        }
        q.scales = to_view(scales, "scales");
        if (q.spec.scheme == Scheme::asymmetric) {
          if (!zero_points) throw_invalid_argument("asymmetric dequantize needs zero_points");
          q.zero_points = to_view(*zero_points, "zero_points");
        }
        Tensor out;
        {
          nb::gil_scoped_release release;
          out = dequantize(q);
        }
        return to_torch(std::move(out));
      },
      nb::arg("codes"), nb::arg("scales"), nb::arg("zero_points").none(), nb::arg("shape"), nb::arg("bits"),
      nb::arg("scheme"), nb::arg("granularity"), nb::arg("axis"), nb::arg("group_size"));

  m.def(
      "unpack_int4",
      [](const AnyArray& packed, std::vector<int64_t> shape) {
        const TensorView p = to_view(packed, "codes");
        const RowLayout rl = row_layout(shape);
        const int64_t expected = rl.rows * ((rl.row_length + 1) / 2);
        if (p.dtype != DType::u8 || !p.is_contiguous() || p.numel() != expected) {
          throw_invalid_argument("int4 codes must be contiguous uint8 with " + std::to_string(expected) +
                                 " bytes for shape " + shape_to_string(shape));
        }
        return to_torch(unpack_int4(TensorView(p.data, DType::int4_packed, shape)));
      },
      nb::arg("packed"), nb::arg("shape"));

  m.def(
      "cast_to_half",
      [](const AnyArray& x, const std::string& dtype, const std::string& overflow) {
        const DType target = parse_dtype(dtype);
        const OverflowPolicy policy = parse_overflow_policy(overflow);
        const TensorView v = to_view(x, "cast_to_half");
        Tensor out;
        {
          nb::gil_scoped_release release;
          out = cast_to_half(v, target, policy);
        }
        return to_torch(std::move(out));
      },
      nb::arg("x"), nb::arg("dtype"), nb::arg("overflow") = "error");

  m.def(
      "round_scales_up",
      [](const AnyArray& scales, const std::string& dtype) {
        const TensorView v = to_view(scales, "scales");
        if (v.dtype != DType::f32 || !v.is_contiguous()) throw_invalid_argument("scales must be contiguous float32");
        const DType target = parse_dtype(dtype);
        Tensor out(DType::f32, v.shape);
        const auto* in = reinterpret_cast<const float*>(v.data);
        for (int64_t i = 0; i < v.numel(); ++i) out.as<float>()[i] = round_scale_up(in[i], target);
        return to_torch(std::move(out));
      },
      nb::arg("scales"), nb::arg("dtype"),
      "Each scale rounded up to what `dtype` (float32, float16, bfloat16) stores, as float32.");

  m.def(
      "half_to_float",
      [](const AnyArray& x) {
        const TensorView v = to_view(x, "half_to_float");
        Tensor out;
        {
          nb::gil_scoped_release release;
          out = half_to_f32(v);
        }
        return to_torch(std::move(out));
      },
      nb::arg("x"));

  m.def(
      "compare",
      [](const AnyArray& reference, const AnyArray& approximation) {
        const TensorView x = to_view(reference, "reference");
        const TensorView y = to_view(approximation, "approximation");
        ErrorMetrics e;
        {
          nb::gil_scoped_release release;
          e = compare(x, y);
        }
        nb::dict d;
        d["sqnr_db"] = e.sqnr_db;
        d["mse"] = e.mse;
        d["max_abs_error"] = e.max_abs_error;
        d["cosine_similarity"] = e.cosine_similarity;
        d["reference_energy"] = e.reference_energy;
        d["error_energy"] = e.error_energy;
        return d;
      },
      nb::arg("reference"), nb::arg("approximation"));
}

}  // namespace monoquant::python
