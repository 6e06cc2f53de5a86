// Quantized linear / conv2d kernels. Packed weights cross as three torch
// tensors (data uint8, scales float32, sums int32) plus integers; each call
// wraps them in a PackedLinearWeightView without copying.
#include <nanobind/stl/optional.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>

#include <string>

#include "convert.hpp"
#include "monoquant/attention.hpp"
#include "monoquant/error.hpp"
#include "monoquant/linear.hpp"
#include "monoquant/norm.hpp"

namespace monoquant::python {
namespace {

nb::dict to_dict(PackedLinearWeight p) {
  nb::dict d;
  d["data"] = to_torch(std::move(p.data));
  d["scales"] = to_torch(std::move(p.scales));
  d["sums"] = to_torch(std::move(p.sums));
  return d;
}

void check_array(const TensorView& v, DType dtype, std::size_t count, const char* what) {
  if (v.dtype != dtype || !v.is_contiguous() || static_cast<std::size_t>(v.numel()) != count) {
    throw_invalid_argument(std::string("packed weight ") + what + " must be a contiguous " +
                           std::string(name_of(dtype)) + " tensor of " + std::to_string(count) + " elements, got " +
                           std::string(name_of(v.dtype)) + " " + shape_to_string(v.shape));
  }
}

PackedLinearWeightView make_view(const AnyArray& data, const AnyArray& scales, const AnyArray& sums,
                                 const std::string& format, int64_t n, int64_t k, int64_t group_size) {
  PackedLinearWeightView w;
  w.format = parse_weight_format(format);
  w.n = n;
  w.k = k;
  // int4: the group size; int8: 0 (per channel) or g > 0 (grouped); half: unused.
  w.group_size = w.format == WeightFormat::int4 || w.format == WeightFormat::int8 ? group_size : 0;
  if (n <= 0 || k <= 0) throw_invalid_argument("out_features and in_features must be > 0");
  if (w.format == WeightFormat::int4 && (group_size <= 0 || group_size % 8 != 0)) {
    throw_invalid_argument("int4 group_size must be a positive multiple of 8, got " + std::to_string(group_size));
  }
  const TensorView d = to_view(data, "packed weight data");
  const TensorView s = to_view(scales, "packed weight scales");
  const TensorView c = to_view(sums, "packed weight sums");
  check_array(d, DType::u8, w.data_bytes(), "data");
  check_array(s, DType::f32, w.scales_count(), "scales");
  check_array(c, DType::i32, w.sums_count(), "sums");
  w.data = d.data;
  w.scales = w.scales_count() ? reinterpret_cast<const float*>(s.data) : nullptr;
  w.sums = w.sums_count() ? reinterpret_cast<const int32_t*>(c.data) : nullptr;
  w.validate();
  return w;
}

LinearOptions make_options(const std::string& mode, double act_scale, int64_t act_zero_point,
                           int64_t act_group_size) {
  LinearOptions o;
  o.mode = parse_linear_mode(mode);
  o.act_scale = static_cast<float>(act_scale);
  o.act_zero_point = static_cast<int32_t>(act_zero_point);
  o.act_group_size = act_group_size;
  return o;
}

const float* bias_ptr(const std::optional<AnyArray>& bias, int64_t n) {
  if (!bias) return nullptr;
  const TensorView b = to_view(*bias, "bias");
  if (b.dtype != DType::f32 || !b.is_contiguous() || b.numel() != n) {
    throw_invalid_argument("bias must be a contiguous float32 tensor of out_features = " + std::to_string(n) +
                           " elements");
  }
  return reinterpret_cast<const float*>(b.data);
}

}  // namespace

void bind_linear(nb::module_& m) {
  m.def(
      "pack_linear_int8",
      [](const AnyArray& codes, const AnyArray& scales) {
        const TensorView c = to_view(codes, "codes");
        const TensorView s = to_view(scales, "scales");
        PackedLinearWeight p;
        {
          nb::gil_scoped_release release;
          p = pack_linear_int8(c, s);
        }
        return to_dict(std::move(p));
      },
      nb::arg("codes"), nb::arg("scales"));
  m.def(
      "pack_linear_int4",
      [](const AnyArray& packed, int64_t k, const AnyArray& scales, int64_t group_size) {
        const TensorView c = to_view(packed, "codes");
        const TensorView s = to_view(scales, "scales");
        PackedLinearWeight p;
        {
          nb::gil_scoped_release release;
          p = pack_linear_int4(c, k, s, group_size);
        }
        return to_dict(std::move(p));
      },
      nb::arg("packed"), nb::arg("in_features"), nb::arg("scales"), nb::arg("group_size"));
  m.def(
      "pack_linear_int8_grouped",
      [](const AnyArray& codes, const AnyArray& scales, int64_t group_size) {
        const TensorView c = to_view(codes, "codes");
        const TensorView s = to_view(scales, "scales");
        PackedLinearWeight p;
        {
          nb::gil_scoped_release release;
          p = pack_linear_int8_grouped(c, s, group_size);
        }
        return to_dict(std::move(p));
      },
      nb::arg("codes"), nb::arg("scales"), nb::arg("group_size"),
      "Grouped int8: codes int8 [N, K], scales float32 [N, K/group_size], group_size a multiple of 8 dividing K. "
      "The packed weight has format 'int8' with this group_size; it runs in mode 'dynamic' with "
      "act_group_size = group_size.");
  m.def(
      "pack_linear_half",
      [](const AnyArray& weight) {
        const TensorView v = to_view(weight, "weight");
        PackedLinearWeight p;
        {
          nb::gil_scoped_release release;
          p = pack_linear_half(v);
        }
        return to_dict(std::move(p));
      },
      nb::arg("weight"));
  m.def(
      "unpack_linear",
      [](const AnyArray& data, const AnyArray& scales, const AnyArray& sums, const std::string& format, int64_t n,
         int64_t k, int64_t group_size) {
        const PackedLinearWeightView w = make_view(data, scales, sums, format, n, k, group_size);
        UnpackedLinearWeight u;
        {
          nb::gil_scoped_release release;
          u = unpack_linear(w);
        }
        nb::dict d;
        d["codes"] = to_torch(std::move(u.codes));
        d["scales"] = to_torch(std::move(u.scales));
        return d;
      },
      nb::arg("data"), nb::arg("scales"), nb::arg("sums"), nb::arg("format"), nb::arg("out_features"),
      nb::arg("in_features"), nb::arg("group_size"),
      "The codes and scales a packed weight was built from (the inverse of pack_linear_*).");
  m.def(
      "linear",
      [](const AnyArray& x, const AnyArray& data, const AnyArray& scales, const AnyArray& sums,
         std::optional<AnyArray> bias, const std::string& format, int64_t n, int64_t k, int64_t group_size,
         const std::string& mode, double act_scale, int64_t act_zero_point, int64_t act_group_size) {
        const PackedLinearWeightView w = make_view(data, scales, sums, format, n, k, group_size);
        const LinearOptions o = make_options(mode, act_scale, act_zero_point, act_group_size);
        const TensorView xv = to_view(x, "x");
        const float* b = bias_ptr(bias, n);
        Tensor out;
        {
          nb::gil_scoped_release release;
          out = linear(xv, w, b, o);
        }
        return to_torch(std::move(out));
      },
      nb::arg("x"), nb::arg("data"), nb::arg("scales"), nb::arg("sums"), nb::arg("bias").none(), nb::arg("format"),
      nb::arg("out_features"), nb::arg("in_features"), nb::arg("group_size"), nb::arg("mode"), nb::arg("act_scale"),
      nb::arg("act_zero_point"), nb::arg("act_group_size") = 0);
  m.def(
      "conv2d",
      [](const AnyArray& x, const AnyArray& data, const AnyArray& scales, const AnyArray& sums,
         std::optional<AnyArray> bias, const std::string& format, int64_t n, int64_t k, int64_t group_size,
         const std::string& mode, double act_scale, int64_t act_zero_point, int64_t kernel_h, int64_t kernel_w,
         int64_t stride_h, int64_t stride_w, int64_t pad_h, int64_t pad_w, int64_t dilation_h, int64_t dilation_w,
         int64_t act_group_size) {
        const PackedLinearWeightView w = make_view(data, scales, sums, format, n, k, group_size);
        const LinearOptions o = make_options(mode, act_scale, act_zero_point, act_group_size);
        const TensorView xv = to_view(x, "x");
        const float* b = bias_ptr(bias, n);
        Conv2dGeometry g{kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w, dilation_h, dilation_w};
        Tensor out;
        {
          nb::gil_scoped_release release;
          out = conv2d(xv, w, b, g, o);
        }
        return to_torch(std::move(out));
      },
      nb::arg("x"), nb::arg("data"), nb::arg("scales"), nb::arg("sums"), nb::arg("bias").none(), nb::arg("format"),
      nb::arg("out_features"), nb::arg("in_features"), nb::arg("group_size"), nb::arg("mode"), nb::arg("act_scale"),
      nb::arg("act_zero_point"), nb::arg("kernel_h"), nb::arg("kernel_w"), nb::arg("stride_h"), nb::arg("stride_w"),
      nb::arg("pad_h"), nb::arg("pad_w"), nb::arg("dilation_h"), nb::arg("dilation_w"), nb::arg("act_group_size") = 0);
  // The per-call path of monoquant.ops: tensors arrive as addresses that the
  // Python side has already checked (dtype, device, contiguity, sizes), which
  // saves the DLPack round trips (~2 us per tensor) on small layers.
  m.def(
      "linear_raw",
      [](uintptr_t x, int64_t m, uintptr_t y, uintptr_t data, uintptr_t scales, uintptr_t sums, uintptr_t bias,
         const std::string& format, int64_t n, int64_t k, int64_t group_size, const std::string& mode,
         double act_scale, int64_t act_zero_point, int64_t act_group_size, const std::string& x_dtype,
         const std::string& y_dtype, uintptr_t act_smooth) {
        PackedLinearWeightView w;
        w.format = parse_weight_format(format);
        w.n = n;
        w.k = k;
        w.group_size = w.format == WeightFormat::int4 || w.format == WeightFormat::int8 ? group_size : 0;
        w.data = reinterpret_cast<const void*>(data);
        w.scales = w.scales_count() ? reinterpret_cast<const float*>(scales) : nullptr;
        w.sums = w.sums_count() ? reinterpret_cast<const int32_t*>(sums) : nullptr;
        w.validate();
        LinearOptions o = make_options(mode, act_scale, act_zero_point, act_group_size);
        o.act_smooth = reinterpret_cast<const float*>(act_smooth);  // 0: none; else K float32 factors
        if (x == 0 || y == 0) throw_invalid_argument("linear_raw: null input or output");
        const DType xt = parse_dtype(x_dtype), yt = parse_dtype(y_dtype);
        nb::gil_scoped_release release;
        linear_into(reinterpret_cast<const void*>(x), xt, m, k, w, reinterpret_cast<const float*>(bias), o,
                    reinterpret_cast<void*>(y), yt, n);
      },
      nb::arg("x"), nb::arg("m"), nb::arg("y"), nb::arg("data"), nb::arg("scales"), nb::arg("sums"), nb::arg("bias"),
      nb::arg("format"), nb::arg("out_features"), nb::arg("in_features"), nb::arg("group_size"), nb::arg("mode"),
      nb::arg("act_scale"), nb::arg("act_zero_point"), nb::arg("act_group_size") = 0,
      nb::arg("x_dtype") = "float32", nb::arg("y_dtype") = "float32", nb::arg("act_smooth") = 0);
  m.def("attention_bf16_supported", &attention_bf16_supported, nb::arg("head_dim"), nb::arg("kv_len"));
  m.def("attention_bf16_kernel", [] { return std::string(attention_bf16_kernel()); },
        "\"amx_bf16\", \"avx512_bf16\" or \"\": what attention_bf16 runs on here (monoquant/attention.hpp).");
  m.def(
      "attention_bf16_raw",
      [](uintptr_t q, uintptr_t k, uintptr_t v, uintptr_t out, uintptr_t mask, const std::vector<int64_t>& sizes,
         const std::vector<int64_t>& q_strides, const std::vector<int64_t>& k_strides,
         const std::vector<int64_t>& v_strides, const std::vector<int64_t>& mask_strides, double scale) {
        if (sizes.size() != 5 || q_strides.size() != 3 || k_strides.size() != 3 || v_strides.size() != 3 ||
            mask_strides.size() != 4) {
          throw_invalid_argument("attention_bf16_raw: sizes has 5 entries, q/k/v strides 3, mask strides 4");
        }
        AttentionArgs a;
        a.q = reinterpret_cast<const uint16_t*>(q);
        a.k = reinterpret_cast<const uint16_t*>(k);
        a.v = reinterpret_cast<const uint16_t*>(v);
        a.out = reinterpret_cast<uint16_t*>(out);
        a.mask = reinterpret_cast<const bool*>(mask);
        a.batch = sizes[0], a.heads = sizes[1], a.q_len = sizes[2], a.kv_len = sizes[3], a.head_dim = sizes[4];
        for (int i = 0; i < 3; ++i) a.q_strides[i] = q_strides[i], a.k_strides[i] = k_strides[i], a.v_strides[i] = v_strides[i];
        for (int i = 0; i < 4; ++i) a.mask_strides[i] = mask_strides[i];
        a.scale = static_cast<float>(scale);
        nb::gil_scoped_release release;
        attention_bf16(a);
      },
      nb::arg("q"), nb::arg("k"), nb::arg("v"), nb::arg("out"), nb::arg("mask"), nb::arg("sizes"),
      nb::arg("q_strides"), nb::arg("k_strides"), nb::arg("v_strides"), nb::arg("mask_strides"), nb::arg("scale"),
      "softmax(q k^T scale + mask) v on AMX-BF16 (monoquant/attention.hpp); pointers from torch tensors' data_ptr().");
  m.def("layer_norm_bf16_available", &layer_norm_bf16_available);
  m.def(
      "layer_norm_bf16_raw",
      [](uintptr_t x, int64_t rows, int64_t n, int64_t ldx, uintptr_t weight, uintptr_t bias, double eps, uintptr_t y,
         int64_t ldy) {
        nb::gil_scoped_release release;
        layer_norm_bf16(reinterpret_cast<const uint16_t*>(x), rows, n, ldx, reinterpret_cast<const uint16_t*>(weight),
                        reinterpret_cast<const uint16_t*>(bias), static_cast<float>(eps), reinterpret_cast<uint16_t*>(y),
                        ldy);
      },
      nb::arg("x"), nb::arg("rows"), nb::arg("n"), nb::arg("ldx"), nb::arg("weight"), nb::arg("bias"), nb::arg("eps"),
      nb::arg("y"), nb::arg("ldy"), "LayerNorm over bf16 rows (monoquant/norm.hpp); pointers from data_ptr(), 0 for none.");
  m.def("linear_kernel_name", [] { return std::string(linear_kernel_name()); });
  m.def("linear_kernel_reason", [] { return linear_kernel_reason(); });
  m.def("vnni_available", &vnni_available);
  m.def("set_vnni_enabled", &set_vnni_enabled, nb::arg("enabled"));
  m.def("avx512_vnni_available", &avx512_vnni_available);
  m.def("set_avx512_enabled", &set_avx512_enabled, nb::arg("enabled"));
  m.def("amx_int8_available", &amx_int8_available);
  m.def("amx_bf16_available", &amx_bf16_available);
  m.def("bf16_weight_only_min_rows", &bf16_weight_only_min_rows);
  m.def("set_bf16_weight_only_enabled", &set_bf16_weight_only_enabled, nb::arg("enabled"));
  m.def("set_amx_enabled", &set_amx_enabled, nb::arg("enabled"));
  m.def("available_linear_kernel_sets", &available_linear_kernel_sets);
  m.def("use_linear_kernel_set", [](const std::string& name) { use_linear_kernel_set(name); }, nb::arg("name"));
}

}  // namespace monoquant::python
