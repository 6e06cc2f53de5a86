// How a quantization spec maps the elements of a contiguous float tensor,
// seen as rows of its last dimension, to scale entries. Shared by quantize,
// dequantize and the scale search so they cannot disagree.
#pragma once

#include <cstdint>

#include "monoquant/quantize.hpp"

namespace monoquant::detail {

struct ScaleLayout {
  int64_t rows = 0;        // numel / K
  int64_t row_length = 0;  // K, the last dimension (1 for a 0-d tensor)
  int64_t group = 1;       // consecutive elements of a row that share a scale
  int64_t groups_per_row = 0;
  // Scale index of group j of row r: ((r / row_div) % row_mod) * row_mul + j * group_step.
  int64_t row_div = 1, row_mod = 1, row_mul = 0, group_step = 0;
  Shape scale_shape;       // shape of the scales / zero_points tensors
  int64_t scale_count = 1;

  int64_t scale_index(int64_t row, int64_t group_index) const {
    return ((row / row_div) % row_mod) * row_mul + group_index * group_step;
  }
};

ScaleLayout make_scale_layout(const Shape& shape, const QuantSpec& spec);

// Finds the first NaN/Inf of x and throws invalid_argument naming it.
[[noreturn]] void throw_nonfinite(const float* x, int64_t n, const Shape& shape, const char* what);

}  // namespace monoquant::detail
