// Affine integer quantization (int8, packed int4) and its inverse.
//
//   q  = clamp(round_half_even(x * (1 / scale)) + zero_point, qmin, qmax)
//   x' = (q - zero_point) * scale
//
// Multiplying by the float reciprocal (rather than dividing) is what torch and
// FBGEMM do; with zero point 0 it makes int8 codes bit-identical to
// torch.quantize_per_channel. docs/FORMAT.md states where asymmetric ties differ.
#pragma once

#include "monoquant/quant_spec.hpp"
#include "monoquant/tensor.hpp"

namespace monoquant {

struct QuantizedTensor {
  QuantSpec spec;
  Shape shape;       // shape of the original float tensor
  // int8: DType::i8 with `shape`. int4: DType::int4_packed, one row of
  // ceil(K/2) bytes per row of the last dimension K (nibble = q + 8).
  Tensor codes;
  // float32. per_tensor: shape [] (one value); per_channel: [C];
  // per_group: [rows, ceil(K / group_size)] where rows = numel / K.
  Tensor scales;
  // int32, same shape as scales; empty (numel 0, dtype i32, shape [0]) when symmetric.
  Tensor zero_points;

  bool has_zero_points() const { return spec.scheme == Scheme::asymmetric; }
};

// The same content over borrowed memory (torch tensors, a mapped file), so
// that dequantizing needs no copy of the codes. Views must be contiguous.
struct QuantizedTensorView {
  QuantSpec spec;
  Shape shape;
  TensorView codes;
  TensorView scales;
  TensorView zero_points;  // ignored when symmetric
};

QuantizedTensorView view_of(const QuantizedTensor& q);

// Quantizes `input` (any float dtype, any strides). Throws invalid_argument on
// NaN/Inf input (naming the flat index of the first one), on an axis out of
// range, or on a per_group tensor with fewer than 1 dimension. A last group
// shorter than group_size (K not a multiple of it) gets its own scale from
// the elements it has.
QuantizedTensor quantize(const TensorView& input, const QuantSpec& spec);

// Computes the scales (and zero points) `quantize` would use, without
// quantizing. Exposed so that callers and tests can inspect or override them.
void choose_qparams(const TensorView& input, const QuantSpec& spec, Tensor& scales,
                    Tensor& zero_points);

// Quantizes with caller-given scales / zero points (shapes as in
// QuantizedTensor). Scales must be finite and > 0.
QuantizedTensor quantize_with_qparams(const TensorView& input, const QuantSpec& spec,
                                      Tensor scales, Tensor zero_points);

// Back to float32 with the original shape. Throws invalid_argument when the
// parts do not fit together (dtype, element counts, scale <= 0, zero point
// out of range).
Tensor dequantize(const QuantizedTensorView& q);
Tensor dequantize(const QuantizedTensor& q);

// Unpacks int4_packed codes (contiguous) to one int8 in [-8, 7] per element.
Tensor unpack_int4(const TensorView& packed);

// Number of rows and row length used by the int4 packed layout and by
// per_group granularity: K = last dimension (1 for 0-d), rows = numel / K.
struct RowLayout {
  int64_t rows;
  int64_t row_length;
};
RowLayout row_layout(const Shape& shape);

}  // namespace monoquant
