// Scalar IEEE half and bfloat16 conversions: the reference the SIMD paths are
// held to. Round-to-nearest-even; NaN stays NaN (quiet), Inf stays Inf.
#pragma once

#include <cstdint>

namespace monoquant {

uint16_t f32_to_f16_bits(float x);
float f16_bits_to_f32(uint16_t h);
uint16_t f32_to_bf16_bits(float x);
float bf16_bits_to_f32(uint16_t b);

inline constexpr float f16_max = 65504.0f;
// Smallest magnitude that rounds to infinity in f16 under round-to-nearest-even.
inline constexpr float f16_overflow_threshold = 65520.0f;

}  // namespace monoquant
