// monoquant._core: the thin binding layer. Numerics live in the C++ library;
// this file only maps types, errors and the GIL.
#include <nanobind/nanobind.h>
#include <nanobind/stl/string.h>

#include <cstring>
#include <thread>

#include "convert.hpp"
#include "monoquant/cpu_features.hpp"
#include "monoquant/error.hpp"
#include "monoquant/thread_pool.hpp"
#include "monoquant/version.hpp"

namespace nb = nanobind;

namespace monoquant::python {
void bind_quant(nb::module_& m);
void bind_observe(nb::module_& m);
void bind_linear(nb::module_& m);
void bind_io(nb::module_& m);
void bind_pipeline(nb::module_& m);
void bind_methods(nb::module_& m);
std::string share_openmp_runtime();
void use_own_pool();
}

namespace {

// monoquant.errors defines the Python classes (they inherit from ValueError,
// OSError, ... as well); look them up when an error actually happens.
void translate_error(const std::exception_ptr& p, void*) {
  try {
    std::rethrow_exception(p);
  } catch (const monoquant::Error& e) {
    const char* name = "MonoquantError";
    switch (e.kind()) {
      case monoquant::ErrorKind::invalid_argument: name = "InvalidArgumentError"; break;
      case monoquant::ErrorKind::format: name = "FormatError"; break;
      case monoquant::ErrorKind::io: name = "MonoquantIOError"; break;
      case monoquant::ErrorKind::unsupported: name = "UnsupportedError"; break;
    }
    nb::object cls = nb::module_::import_("monoquant.errors").attr(name);
    PyErr_SetString(cls.ptr(), e.what());
  }
}

// A memcpy of `src` into `dst` split over the library's threads: the
// bandwidth ceiling that bench/ compares quantization throughput against.
void copy_bytes(nb::ndarray<nb::device::cpu, nb::c_contig> dst, nb::ndarray<nb::ro, nb::device::cpu, nb::c_contig> src) {
  if (dst.nbytes() != src.nbytes()) monoquant::throw_invalid_argument("copy_bytes: sizes differ");
  auto* d = static_cast<std::byte*>(dst.data());
  const auto* s = static_cast<const std::byte*>(src.data());
  const int64_t n = static_cast<int64_t>(src.nbytes());
  nb::gil_scoped_release release;
  monoquant::parallel_for(n, 1 << 20, [&](int64_t b, int64_t e) { std::memcpy(d + b, s + b, static_cast<size_t>(e - b)); });
}

}  // namespace

NB_MODULE(_core, m) {
  m.doc() = "monoquant C++ core";
  m.attr("__version__") = monoquant::version;
  nb::register_exception_translator(translate_error);

  m.def("num_threads", &monoquant::num_threads);
  m.def("set_num_threads", &monoquant::set_num_threads, nb::arg("n"));
  m.def("share_openmp_runtime", &monoquant::python::share_openmp_runtime,
        "Run parallel loops on the OpenMP runtime already loaded (torch's); returns its path, or '' if none.");
  m.def("use_own_pool", &monoquant::python::use_own_pool, "Back to the library's own thread pool.");
  m.def("parallel_runtime", [] { return std::string(monoquant::parallel_runtime_name()); });
  m.def("cpu_features", [] {
    const auto& f = monoquant::cpu_features();
    nb::dict d;
    d["avx2"] = f.avx2;
    d["fma"] = f.fma;
    d["f16c"] = f.f16c;
    d["avx512f"] = f.avx512f;
    d["avx512vnni"] = f.avx512vnni;
    d["avx_vnni"] = f.avx_vnni;
    d["avx512_bf16"] = f.avx512_bf16;
    d["amx_tile"] = f.amx_tile;
    d["amx_int8"] = f.amx_int8;
    d["amx_bf16"] = f.amx_bf16;
    return d;
  });
  m.def("active_isa", [] { return std::string(monoquant::name_of(monoquant::active_isa())); });
  m.def("set_isa", [](const std::string& name) {
    if (name == "scalar") monoquant::set_isa(monoquant::Isa::scalar);
    else if (name == "avx2") monoquant::set_isa(monoquant::Isa::avx2);
    else monoquant::throw_invalid_argument("unknown ISA '" + name + "'; expected 'scalar' or 'avx2'");
  });
  m.def("copy_bytes", &copy_bytes, nb::arg("dst"), nb::arg("src"));

  monoquant::python::bind_quant(m);
  monoquant::python::bind_observe(m);
  monoquant::python::bind_linear(m);
  monoquant::python::bind_io(m);
  monoquant::python::bind_pipeline(m);
  monoquant::python::bind_methods(m);
}
