// Accuracy methods beyond round-to-nearest: GPTQ's Hessian accumulator and
// column sweep (gptq.hpp).
#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>

#include <cstring>

#include "convert.hpp"
#include "monoquant/dtype.hpp"
#include "monoquant/error.hpp"
#include "monoquant/gptq.hpp"

namespace monoquant::python {

void bind_methods(nb::module_& m) {
  nb::class_<HessianAccumulator>(m, "HessianAccumulator",
                                 "H = sum of x^T x over calibration inputs, accumulated batch by batch (GPTQ).")
      .def(nb::init<int64_t>(), nb::arg("features"))
      .def(
          "add",
          [](HessianAccumulator& h, const AnyArray& x) {
            const TensorView v = to_view(x, "x");
            nb::gil_scoped_release release;
            h.add(v);
          },
          nb::arg("x"), "Add a contiguous float32 [rows, features] batch of inputs.")
      .def_prop_ro("features", &HessianAccumulator::features)
      .def_prop_ro("rows", &HessianAccumulator::rows)
      .def("hessian", [](const HessianAccumulator& h) { return to_torch(h.hessian()); },
           "float64 [features, features], the sum of x^T x.");

  m.def(
      "gptq_quantize",
      [](const AnyArray& weight, const AnyArray& hessian, int bits, int64_t group_size, const std::string& scale_method,
         const std::string& scale_dtype, double dampening, int64_t block_size, bool act_order, bool static_groups, bool full_range,
         bool symmetric) {
        QuantSpec spec;
        spec.bits = bits;
        spec.scheme = symmetric ? Scheme::symmetric : Scheme::asymmetric;
        spec.granularity = group_size > 0 ? Granularity::per_group : Granularity::per_channel;
        spec.axis = 0;
        spec.group_size = group_size > 0 ? group_size : 128;
        spec.full_range = full_range;
        GptqOptions o;
        o.dampening = dampening;
        o.block_size = block_size;
        o.act_order = act_order;
        o.static_groups = static_groups;
        o.scale_method = parse_scale_method(scale_method);
        o.scale_dtype = parse_dtype(scale_dtype);
        const TensorView w = to_view(weight, "weight"), h = to_view(hessian, "hessian");
        GptqResult r;
        {
          nb::gil_scoped_release release;
          r = gptq_quantize(w, h, spec, o);
        }
        nb::dict d;
        d["codes"] = to_torch(std::move(r.weight.codes));
        d["scales"] = to_torch(std::move(r.weight.scales));
        if (symmetric) d["zero_points"] = nb::none();
        else d["zero_points"] = to_torch(std::move(r.weight.zero_points));
        if (r.g_idx.empty()) {
          d["g_idx"] = nb::none();
        } else {
          Tensor g(DType::i32, {static_cast<int64_t>(r.g_idx.size())});
          std::memcpy(g.data(), r.g_idx.data(), r.g_idx.size() * sizeof(int32_t));
          d["g_idx"] = to_torch(std::move(g));
        }
        d["dampening"] = r.dampening;
        d["error"] = r.error;
        d["rtn_error"] = r.rtn_error;
        return d;
      },
      nb::arg("weight"), nb::arg("hessian"), nb::arg("bits"), nb::arg("group_size"), nb::arg("scale_method"),
      nb::arg("scale_dtype"), nb::arg("dampening") = 0.01, nb::arg("block_size") = 128, nb::arg("act_order") = false,
      nb::arg("static_groups") = false, nb::arg("full_range") = false, nb::arg("symmetric") = true,
      "GPTQ: codes, scales, zero points (int32, asymmetric only; else None) (and g_idx with act_order and groups) of weight [N, K] under Hessian [K, K]. "
      "group_size 0 = int8 per output channel.");

  m.def(
      "hessian_error",
      [](const AnyArray& weight, const AnyArray& approx, const AnyArray& hessian) {
        const TensorView w = to_view(weight, "weight"), a = to_view(approx, "approx"), h = to_view(hessian, "hessian");
        nb::gil_scoped_release release;
        return hessian_error(w, a, h);
      },
      nb::arg("weight"), nb::arg("approx"), nb::arg("hessian"), "sum over rows of (w - a)^T H (w - a).");
}

}  // namespace monoquant::python
