// Crossing the Python boundary without copies: torch tensors come in as
// DLPack views (TensorView over torch's memory) and go out as torch tensors
// that own the C++ buffer through a capsule.
#pragma once

#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>

#include "monoquant/tensor.hpp"

namespace monoquant::python {

namespace nb = nanobind;

// Any CPU array-like that speaks DLPack (torch.Tensor, numpy.ndarray).
using AnyArray = nb::ndarray<nb::ro, nb::device::cpu>;

// A view of the array's memory; valid while the array is alive.
TensorView to_view(const AnyArray& array, const char* what);

// Hands the tensor's buffer to a new torch.Tensor (no copy). int4_packed
// becomes uint8 of shape [rows, ceil(K / 2)], the bytes as they are.
nb::object to_torch(Tensor tensor);

}  // namespace monoquant::python
