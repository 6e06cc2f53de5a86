// One description of how a layer is quantized, from which the kernel mode,
// the file format and the report's label all follow. The Python LayerScheme
// (python/monoquant/schemes.py) is the same record.
//
//   {int8, dynamic}            W8A8: int8 weights per output channel, int8 activations per token
//   {int8, static}             W8A8 with one calibrated activation scale (and zero point) per tensor
//   {int8, weight_only}        W8A16
//   {int4, weight_only, g}     W4A16: int4 in groups of g along K
//   {int4, dynamic|static, g}  W4A8
//   {int8, dynamic, g}         W8A8 with activation groups: int8 weights in groups of g
//                              along K, activations per token and per group of g
//   {f16|bf16, weight_only}    FP16 / BF16 weights
// int8 weights have int8_bits 8 (codes [-127, 127]) or 7 (codes [-63, 63],
// stored as int8: W7A8, which runs the narrow-code kernels on CPUs without
// VNNI; compressed-tensors num_bits 7).
// Weights are symmetric unless weight_symmetric is false: weight-only int4
// groups or int8 channels with a zero point each (codes [-8, 7] / [-128, 127],
// dequantized (q - z) s). act_symmetric is the scheme of static activations.
#pragma once

#include <cstdint>
#include <string>

#include "monoquant/linear.hpp"
#include "monoquant/weight_quantizer.hpp"

namespace monoquant::pipeline {

struct LayerScheme {
  WeightFormat format = WeightFormat::int8;
  LinearMode mode = LinearMode::dynamic_int8;
  int64_t group_size = 0;  // int4; int8 dynamic with activation groups; else 0
  ScaleMethod scale_method = ScaleMethod::absmax;
  bool act_symmetric = true;
  // int4 weights (also those an override turns to int4) in compressed-tensors'
  // full range [-8, 7], scale absmax / 7.5; false: [-7, 7], absmax / 7.
  bool full_range = true;
  // false: weight-only asymmetric weights (a zero point per group / channel).
  bool weight_symmetric = true;
  int int8_bits = 8;  // int8 format only: 8 or 7

  int bits() const;  // 8 (or int8_bits), 4 or 16
  // Scales per row of K: K / group_size when grouped, else 1.
  int64_t scale_groups(int64_t k) const { return group_size > 0 ? k / group_size : 1; }
  bool is_half() const { return format == WeightFormat::f16 || format == WeightFormat::bf16; }
  // "W8A8-dynamic", "W4A16-g128", "FP16", ...
  std::string label() const;
  // compressed-tensors format: "int-quantized" (W8A8), "pack-quantized"
  // (weight-only int and every int4), "" for float16/bfloat16 weights.
  std::string ct_format() const;
  // The weight's QuantSpec (int formats only).
  QuantSpec weight_spec() const;
  // Throws invalid_argument (a bad combination) or unsupported (static int4
  // with asymmetric activations, asymmetric weights with int8 activations).
  void validate() const;
};

}  // namespace monoquant::pipeline
