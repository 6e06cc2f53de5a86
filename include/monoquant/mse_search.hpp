// MSE-optimal clipping for weights: per scale cell (tensor, channel or group)
// search the clipping ratio r whose scale minimizes the actual quantization
// error sum (x - dequantize(quantize(x)))^2, in the spirit of llama.cpp's
// make_qx_quants and of HQQ-style solvers.
//
//   1. ratios r = 1, 1 - step, ..., min_ratio of the absmax range (symmetric)
//      or of both ends of [min(min, 0), max(max, 0)] (asymmetric);
//   2. a finer search around the best ratio (halving the step `refine_steps`
//      times on each side);
//   3. least-squares refits: with the codes of the best scale fixed, the scale
//      (symmetric: sum x q / sum q^2) or scale and zero point (asymmetric:
//      x ~ s (q - z)) that fit them best, kept only if the error drops.
//
// r = 1 is the absmax / minmax scale of choose_qparams and is always a
// candidate, so every cell's error is at most absmax's. The error of each
// candidate is computed with the quantizer's own arithmetic, so the figure the
// search minimizes is exactly what quantize_with_qparams then produces.
#pragma once

#include "monoquant/quant_spec.hpp"
#include "monoquant/tensor.hpp"

namespace monoquant {

struct MseSearchOptions {
  double min_ratio = 0.5;  // smallest clipping ratio of the grid, in (0, 1]
  int steps = 25;          // grid intervals between 1 and min_ratio (>= 1)
  int refine_steps = 3;    // halvings of the grid step around the best ratio (>= 0)
  int lsq_iterations = 2;  // least-squares refits (>= 0)

  void validate() const;
};

// Same contract and output shapes as choose_qparams (quantize.hpp): throws
// invalid_argument on NaN/Inf input or a bad spec.
void choose_qparams_mse(const TensorView& input, const QuantSpec& spec, Tensor& scales, Tensor& zero_points,
                        const MseSearchOptions& options = {});

}  // namespace monoquant
