// Error metrics between a reference tensor x and an approximation y, both
// float32 of the same shape. Accumulated in double.
#pragma once

#include "monoquant/tensor.hpp"

namespace monoquant {

struct ErrorMetrics {
  // 20 * log10(||x|| / ||x - y||), the definition torch.ao, torchao and ONNX
  // Runtime share; +inf when y == x exactly, -inf when x is all zeros and y is not.
  double sqnr_db = 0;
  double mse = 0;
  double max_abs_error = 0;
  // x.y / (|x| |y|); 1 when both are all zeros, 0 when only one is.
  double cosine_similarity = 0;
  // The sums behind the ratios, so that figures over many tensors can be
  // aggregated exactly: sum x^2 and sum (x - y)^2.
  double reference_energy = 0;
  double error_energy = 0;
};

ErrorMetrics compare(const TensorView& reference, const TensorView& approximation);

}  // namespace monoquant
