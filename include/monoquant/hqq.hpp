// HQQ-style calibration-free scales (Badri & Shaji, "Half-Quadratic
// Quantization", mobiusml/hqq): per scale cell, minimise the l_p error
// sum |x - dequantize(quantize(x))|^p with p < 1 (default 0.7), which cares
// less about a few outliers than the squared error does, by half-quadratic
// splitting. Each iteration, from the current parameters:
//
//   q   = the codes (the quantizer's own arithmetic)
//   e   = s shrink_p((x - x'(q)) / s, beta)   the sparse part of the error:
//         shrink_p(v) = sign(v) max(|v| - |v|^(p-1) / beta, 0), applied in
//         units of the step s so that beta means the same at any weight scale
//         (HQQ normalises by the inverse-step scale the same way)
//   symmetric:  scale = <x - e, q> / <q, q>             (least squares, codes fixed)
//   asymmetric: zero point = round(mean(q - (x - e) / scale)), scale fixed (HQQ's own update)
//   beta *= kappa
//
// The absmax / minmax parameters of choose_qparams are the first candidate,
// and a cell keeps the candidate with the smallest l_p error it has seen, so
// no cell ends worse than absmax; the loop stops after three iterations that fail to
// improve. monoquant's zero points are integers (int32, as the kernels and
// compressed-tensors store them), so the asymmetric update is rounded.
#pragma once

#include "monoquant/quant_spec.hpp"
#include "monoquant/tensor.hpp"

namespace monoquant {

struct HqqOptions {
  double lp_norm = 0.7;  // p in (0, 2]
  double beta = 10.0;    // initial penalty
  double kappa = 1.01;   // penalty growth per iteration (> 1)
  int iterations = 20;   // >= 1

  void validate() const;
};

// Same contract and output shapes as choose_qparams (quantize.hpp) for
// per_tensor, per_group, and per_channel along axis 0. Throws
// invalid_argument on NaN/Inf input or another per_channel axis.
void choose_qparams_hqq(const TensorView& input, const QuantSpec& spec, Tensor& scales, Tensor& zero_points,
                        const HqqOptions& options = {});

// The objective: sum over the cell of |x - (clamp(round(x / s) + z) - z) s|^p.
double hqq_lp_error(const float* x, int64_t n, float scale, int32_t zero_point, const QuantSpec& spec, double p);

}  // namespace monoquant
