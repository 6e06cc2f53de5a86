// Tensors handed from Python to the C++ writers as (name, torch dtype name,
// shape, bytes) tuples, bytes = a uint8 view of the contiguous tensor's
// memory (no copy; `keep` holds the views alive).
#pragma once

#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>

#include <vector>

#include "monoquant/io/checkpoint.hpp"

namespace monoquant::io {

using Bytes = nanobind::ndarray<nanobind::ro, uint8_t, nanobind::device::cpu, nanobind::c_contig>;

struct InputTensors {
  std::vector<TensorToWrite> tensors;
  std::vector<Bytes> keep;
};

InputTensors input_tensors(const nanobind::list& items);

}  // namespace monoquant::io
