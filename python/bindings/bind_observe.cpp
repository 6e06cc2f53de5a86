// Observers, the MSE clipping search, HQQ scales and calibration statistics files.
#include <nanobind/stl/map.h>
#include <nanobind/stl/optional.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/tuple.h>
#include <nanobind/stl/unique_ptr.h>
#include <nanobind/stl/vector.h>

#include <memory>
#include <tuple>

#include "convert.hpp"
#include "monoquant/calibration_stats.hpp"
#include "monoquant/error.hpp"
#include "monoquant/hqq.hpp"
#include "monoquant/mse_search.hpp"
#include "monoquant/observer.hpp"
#include "monoquant/quantize.hpp"

namespace monoquant::python {

namespace {

ObserverOptions make_options(const std::string& granularity, int axis, double averaging_constant, int64_t bins,
                             bool refine, double percentile) {
  ObserverOptions o;
  o.granularity = parse_granularity(granularity);
  o.axis = axis;
  o.averaging_constant = averaging_constant;
  o.bins = bins;
  o.refine = refine;
  o.percentile = percentile;
  o.validate();
  return o;
}

nb::dict options_dict(const ObserverOptions& o) {
  nb::dict d;
  d["granularity"] = std::string(name_of(o.granularity));
  d["axis"] = o.axis;
  d["averaging_constant"] = o.averaging_constant;
  d["bins"] = o.bins;
  d["refine"] = o.refine;
  d["percentile"] = o.percentile;
  return d;
}

nb::dict qparams_dict(Tensor scales, Tensor zero_points, bool asymmetric) {
  nb::dict d;
  d["scales"] = to_torch(std::move(scales));
  d["zero_points"] = asymmetric ? to_torch(std::move(zero_points)) : nb::none();
  return d;
}

nb::object float_tensor(const std::vector<float>& v) {
  Tensor t(DType::f32, {static_cast<int64_t>(v.size())});
  for (std::size_t i = 0; i < v.size(); ++i) t.as<float>()[i] = v[i];
  return to_torch(std::move(t));
}

}  // namespace

void bind_observe(nb::module_& m) {
  nb::class_<Observer>(m, "Observer", "A C++ observer; create it with create_observer or load_observer.")
      .def_prop_ro("kind", [](const Observer& o) { return std::string(o.kind()); })
      .def_prop_ro("options", [](const Observer& o) { return options_dict(o.options()); })
      .def(
          "observe",
          [](Observer& o, const AnyArray& x) {
            const TensorView v = to_view(x, "observe");
            nb::gil_scoped_release release;
            o.observe(v);
          },
          nb::arg("x"))
      .def(
          "merge",
          [](Observer& o, const Observer& other) {
            nb::gil_scoped_release release;
            o.merge(other);
          },
          nb::arg("other"))
      .def("reset", &Observer::reset)
      .def(
          "ranges",
          [](const Observer& o, int bits, const std::string& scheme) {
            std::vector<Range> r;
            {
              nb::gil_scoped_release release;
              r = o.ranges(bits, parse_scheme(scheme));
            }
            std::vector<float> lo(r.size()), hi(r.size());
            for (std::size_t i = 0; i < r.size(); ++i) {
              lo[i] = r[i].lo;
              hi[i] = r[i].hi;
            }
            return nb::make_tuple(float_tensor(lo), float_tensor(hi));
          },
          nb::arg("bits"), nb::arg("scheme"))
      .def(
          "calculate_qparams",
          [](const Observer& o, int bits, const std::string& scheme) {
            const Scheme s = parse_scheme(scheme);
            Tensor scales, zero_points;
            {
              nb::gil_scoped_release release;
              o.calculate_qparams(bits, s, scales, zero_points);
            }
            return qparams_dict(std::move(scales), std::move(zero_points), s == Scheme::asymmetric);
          },
          nb::arg("bits"), nb::arg("scheme"))
      .def_prop_ro("channels", &Observer::channels)
      .def_prop_ro("count", &Observer::count)
      .def_prop_ro("nonfinite_count", &Observer::nonfinite_count)
      .def("min_values", [](const Observer& o) { return float_tensor(o.min_values()); })
      .def("max_values", [](const Observer& o) { return float_tensor(o.max_values()); })
      .def("save_state", &Observer::save_state)
      .def("clone", &Observer::clone);

  m.def(
      "create_observer",
      [](const std::string& kind, const std::string& granularity, int axis, double averaging_constant, int64_t bins,
         bool refine, double percentile) {
        return create_observer(kind, make_options(granularity, axis, averaging_constant, bins, refine, percentile));
      },
      nb::arg("kind"), nb::arg("granularity") = "per_tensor", nb::arg("axis") = 0,
      nb::arg("averaging_constant") = 0.01, nb::arg("bins") = 2048, nb::arg("refine") = true,
      nb::arg("percentile") = 99.99);
  m.def(
      "resolve_auto_observer",
      [](const std::string& granularity) {
        ObserverOptions o;
        o.granularity = parse_granularity(granularity);
        return std::string(resolve_auto_observer(o));
      },
      nb::arg("granularity"));
  m.def("load_observer", [](const std::string& state) { return load_observer(state); }, nb::arg("state"));
  m.def(
      "qparams_from_range",
      [](float lo, float hi, int bits, const std::string& scheme) {
        float s = 1;
        int32_t z = 0;
        qparams_from_range(lo, hi, bits, parse_scheme(scheme), &s, &z);
        return std::make_tuple(s, z);
      },
      nb::arg("lo"), nb::arg("hi"), nb::arg("bits"), nb::arg("scheme"));
  m.def(
      "torch_histogram_search",
      [](const AnyArray& histogram, int64_t dst_bins) {
        const TensorView hv = to_view(histogram, "histogram");
        std::vector<double> v;
        if (hv.dtype == DType::f64 && hv.is_contiguous()) {
          const auto* p = reinterpret_cast<const double*>(hv.data);
          v.assign(p, p + hv.numel());
        } else {
          const Tensor h = to_contiguous_f32(hv);
          v.assign(h.as<float>(), h.as<float>() + h.numel());
        }
        const BinRange r = torch_histogram_search(v, dst_bins);
        return std::make_tuple(r.start, r.end);
      },
      nb::arg("histogram"), nb::arg("dst_bins"));

  m.def(
      "choose_qparams_hqq",
      [](const AnyArray& x, int bits, const std::string& scheme, const std::string& granularity, int axis,
         int64_t group_size, int iterations, double lp_norm) {
        QuantSpec spec;
        spec.bits = bits;
        spec.scheme = parse_scheme(scheme);
        spec.granularity = parse_granularity(granularity);
        spec.axis = axis;
        spec.group_size = group_size;
        HqqOptions o;
        o.iterations = iterations;
        o.lp_norm = lp_norm;
        const TensorView v = to_view(x, "x");
        Tensor scales, zero_points;
        {
          nb::gil_scoped_release release;
          choose_qparams_hqq(v, spec, scales, zero_points, o);
        }
        return qparams_dict(std::move(scales), std::move(zero_points), spec.scheme == Scheme::asymmetric);
      },
      nb::arg("x"), nb::arg("bits"), nb::arg("scheme"), nb::arg("granularity"), nb::arg("axis"), nb::arg("group_size"),
      nb::arg("iterations") = 20, nb::arg("lp_norm") = 0.7,
      "HQQ scales (and zero points): the l_p half-quadratic solver, starting from absmax/minmax.");

  m.def(
      "choose_qparams_mse",
      [](const AnyArray& x, int bits, const std::string& scheme, const std::string& granularity, int axis,
         int64_t group_size, double min_ratio, int steps, int refine_steps, int lsq_iterations) {
        QuantSpec spec;
        spec.bits = bits;
        spec.scheme = parse_scheme(scheme);
        spec.granularity = parse_granularity(granularity);
        spec.axis = axis;
        spec.group_size = group_size;
        MseSearchOptions opts;
        opts.min_ratio = min_ratio;
        opts.steps = steps;
        opts.refine_steps = refine_steps;
        opts.lsq_iterations = lsq_iterations;
        const TensorView v = to_view(x, "choose_qparams_mse");
        Tensor scales, zero_points;
        {
          nb::gil_scoped_release release;
          choose_qparams_mse(v, spec, scales, zero_points, opts);
        }
        return qparams_dict(std::move(scales), std::move(zero_points), spec.scheme == Scheme::asymmetric);
      },
      nb::arg("x"), nb::arg("bits"), nb::arg("scheme"), nb::arg("granularity"), nb::arg("axis"),
      nb::arg("group_size"), nb::arg("min_ratio") = 0.5, nb::arg("steps") = 25, nb::arg("refine_steps") = 3,
      nb::arg("lsq_iterations") = 2);

  m.def(
      "save_calibration",
      [](const std::string& path, const std::vector<std::tuple<std::string, std::string, const Observer*>>& entries,
         const std::map<std::string, std::string>& metadata) {
        std::vector<CalibrationEntryView> views;
        for (const auto& [module, tensor, observer] : entries) views.push_back({module, tensor, observer});
        nb::gil_scoped_release release;
        save_calibration(path, views, metadata);
      },
      nb::arg("path"), nb::arg("entries"), nb::arg("metadata"));
  m.def(
      "load_calibration",
      [](const std::string& path) {
        CalibrationStats stats;
        {
          nb::gil_scoped_release release;
          stats = load_calibration(path);
        }
        nb::list entries;
        for (auto& e : stats.entries) entries.append(nb::make_tuple(e.module, e.tensor, nb::cast(std::move(e.observer))));
        return nb::make_tuple(entries, nb::cast(stats.metadata));
      },
      nb::arg("path"));
}

}  // namespace monoquant::python
