// Quantizing a weight for storage: the one rule that every face (the Python
// modules, save, the checkpoint writer) uses, so that what a layer runs and
// what a file holds are the same codes and scales.
//
//   1. scales (and zero points) by `method`: absmax/minmax (choose_qparams)
//      the MSE clipping search (choose_qparams_mse) or HQQ's l_p
//      half-quadratic solver (choose_qparams_hqq);
//   2. each scale rounded up to `scale_dtype` (round_scale_up), the dtype the
//      file stores it in;
//   3. quantize_with_qparams with exactly those scales.
#pragma once

#include <string_view>

#include "monoquant/quantize.hpp"

namespace monoquant {

enum class ScaleMethod { absmax, mse, hqq };

std::string_view name_of(ScaleMethod method);
ScaleMethod parse_scale_method(std::string_view name);  // "absmax", "mse" or "hqq"

// scale_dtype: f32, f16 or bf16. Throws invalid_argument on NaN/Inf input
// (naming the flat index) or on a scale that does not fit scale_dtype.
QuantizedTensor quantize_weight(const TensorView& weight, const QuantSpec& spec, ScaleMethod method, DType scale_dtype);

}  // namespace monoquant
