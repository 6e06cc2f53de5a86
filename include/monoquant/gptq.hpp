// GPTQ (Frantar et al., arXiv 2210.17323): quantize a linear layer's weight
// column by column, feeding each column's rounding error forward into the
// columns not yet quantized, weighted by the inverse Hessian of the layer's
// output error, H = X^T X over the calibration inputs X.
//
//   HessianAccumulator  H += X^T X, batch by batch, as calibration inputs
//                       stream through (no activations are kept); a
//                       symmetric rank-k update split into tiles over the
//                       library's threads (OpenBLAS, single-threaded, per tile).
//   gptq_quantize       dead inputs (H_ii = 0) zeroed; dampening
//                       H += damp * mean(diag H) * I; U = chol(H^-1) (upper);
//                       blocks of `block_size` columns: inside a block every
//                       column's error updates the rest of the block at once,
//                       the columns after it get the block's errors in one GEMM
//                       (the "lazy batch" update). Rows are independent given
//                       U, so threads split the output rows.
//
// Scales: per channel (int8) they come from the original weight, before the
// sweep. Per group (int4) each group's scales are chosen by `scale_method`
// from the error-updated weights when the sweep reaches the group's first
// column, and rounded up to `scale_dtype`, so the result is ordinary codes and
// scales that every reader dequantizes as q * s.
//
// Activation order (act_order): columns are swept in order of decreasing H_ii
// (the inputs with the most energy first). With groups, a group is
// `group_size` consecutive columns of that order, so groups are no longer
// contiguous in the weight: g_idx[k] names the group of input column k (the
// `weight_g_idx` of compressed-tensors) and codes stay in the original order.
// With static_groups the groups stay the original contiguous runs of K, their
// scales chosen before the sweep, and the sweep order alone changes (no g_idx).
#pragma once

#include <cstdint>
#include <vector>

#include "monoquant/quantize.hpp"
#include "monoquant/weight_quantizer.hpp"

namespace monoquant {

class HessianAccumulator {
 public:
  explicit HessianAccumulator(int64_t features);

  // x: contiguous float32 [rows, features] (any rows >= 0). Throws
  // invalid_argument on a shape that does not fit or a NaN/Inf input.
  void add(const TensorView& x);

  int64_t features() const { return k_; }
  int64_t rows() const { return rows_; }
  // float64 [features, features], symmetric: sum of x^T x over all rows added.
  Tensor hessian() const;

 private:
  int64_t k_;
  int64_t rows_ = 0;
  std::vector<float> upper_;  // row-major, upper triangle filled
};

struct GptqOptions {
  double dampening = 0.01;     // fraction of mean(diag H) added to the diagonal
  int64_t block_size = 128;    // columns per lazy update (rounded to a multiple of the group)
  bool act_order = false;
  // Group scales from the original weight, before the sweep, in the original
  // column order: with act_order the groups stay contiguous (no g_idx).
  bool static_groups = false;
  ScaleMethod scale_method = ScaleMethod::absmax;
  DType scale_dtype = DType::f32;

  void validate() const;  // throws invalid_argument naming the bad field
};

struct GptqResult {
  QuantizedTensor weight;     // codes in the original column order
  std::vector<int32_t> g_idx; // per input column, its group; empty unless act_order with groups, not static
  double dampening = 0.0;     // the dampening that made H positive definite (raised if needed)
  // sum over rows of (w - q)^T H (w - q) for the result, and for plain
  // round-to-nearest with the same scale method: the output error GPTQ minimizes.
  double error = 0.0;
  double rtn_error = 0.0;
};

// weight: [N, K] any float dtype; hessian: float64 [K, K] symmetric (from
// HessianAccumulator, or any positive semi-definite matrix). spec: int8
// per_channel (axis 0) or int4 per_group, symmetric or asymmetric (codes in
// the full signed range with an int32 zero point per scale, in
// weight.zero_points; the error fed back is w - (q - z) s). Throws invalid_argument
// on NaN/Inf, shapes that do not fit, or a Hessian that stays indefinite
// after raising the dampening 100-fold.
GptqResult gptq_quantize(const TensorView& weight, const TensorView& hessian, const QuantSpec& spec,
                         const GptqOptions& options);

// sum over rows of (w - w')^T H (w - w') for two [N, K] float32 weights.
double hessian_error(const TensorView& weight, const TensorView& approx, const TensorView& hessian);

}  // namespace monoquant
