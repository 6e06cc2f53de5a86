// The inner loops of quantization, one table per instruction set. Every entry
// works on one contiguous span with one scale; the callers in affine.cpp and
// float_cast.cpp own the loops over rows, groups and threads. The scalar table
// (kernels_reference.cpp) is the oracle: the AVX2 table must produce the same
// bits for the same input (tests/cpp/test_kernels.cpp holds it to that).
#pragma once

#include <cstdint>

#include "monoquant/cpu_features.hpp"

namespace monoquant::kernels {

struct QuantKernels {
  // Largest |x| as a bit pattern: a value >= 0x7f800000 means the span holds
  // Inf or NaN, otherwise std::bit_cast<float>(result) is max |x| (0 if n == 0).
  uint32_t (*absmax_bits)(const float* x, int64_t n);
  // min and max of a finite, non-empty span.
  void (*minmax)(const float* x, int64_t n, float* min, float* max);
  // q = clamp(nearbyint(x * inv_scale) + zero_point, qmin, qmax)
  void (*quantize_i8)(const float* x, int64_t n, float inv_scale, int32_t zero_point, int32_t qmin,
                      int32_t qmax, int8_t* q);
  // x = float(q - zero_point) * scale
  void (*dequantize_i8)(const int8_t* q, int64_t n, float scale, int32_t zero_point, float* x);
  // Packs n int4 codes (int8 values in [-8, 7]) two per byte, first in the low
  // nibble, each stored as q + 8. An odd n leaves the last high nibble 0.
  void (*pack_i4)(const int8_t* q, int64_t n, uint8_t* packed);
  void (*unpack_i4)(const uint8_t* packed, int64_t n, int8_t* q);
  // Round-to-nearest-even casts. x is first clamped to [-clamp, clamp]
  // (pass +Inf for no clamp); input is finite, except that f32_to_bf16 with
  // clamp +Inf passes Inf and NaN (made quiet) through.
  void (*f32_to_f16)(const float* x, int64_t n, float clamp, uint16_t* h);
  void (*f16_to_f32)(const uint16_t* h, int64_t n, float* x);
  void (*f32_to_bf16)(const float* x, int64_t n, float clamp, uint16_t* b);
  void (*bf16_to_f32)(const uint16_t* b, int64_t n, float* x);
  // The energies behind a weight's SQNR without materializing the
  // dequantized span: xx += sum x^2, ee += sum (x - (q - zero_point) * scale)^2.
  // Summed in float within the span (optimized tables may sum in another
  // order: equal to the reference within float rounding, not bit for bit).
  void (*error_energy_i8)(const float* x, const int8_t* q, int64_t n, float scale, int32_t zero_point, double* xx,
                          double* ee);
};

const QuantKernels& reference_kernels();
const QuantKernels& avx2_kernels();
// The table for active_isa().
const QuantKernels& active_kernels();
const QuantKernels& kernels_for(Isa isa);

}  // namespace monoquant::kernels
