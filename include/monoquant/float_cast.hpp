// float32 -> float16 / bfloat16 storage and back.
#pragma once

#include <string_view>

#include "monoquant/tensor.hpp"

namespace monoquant {

// What to do with finite values too large for the target type (|x| >= 65520
// rounds to Inf in float16; bfloat16 overflows only near FLT_MAX).
enum class OverflowPolicy {
  error,     // throw invalid_argument naming the first such element (default)
  saturate,  // clamp to the largest finite value of the target type
  infinity,  // IEEE behaviour: becomes +-Inf
};

std::string_view name_of(OverflowPolicy policy);
OverflowPolicy parse_overflow_policy(std::string_view name);

// target is DType::f16 or DType::bf16. NaN/Inf input always throws
// invalid_argument: a weight that is not finite is a bug upstream.
Tensor cast_to_half(const TensorView& input, DType target,
                    OverflowPolicy policy = OverflowPolicy::error);

// f16 or bf16 (contiguous or not) back to float32.
Tensor half_to_f32(const TensorView& input);

// A quantization scale as it will be stored in `dtype` (f32, f16 or bf16):
// rounded *up* to that dtype, and to at least its smallest normal, so codes
// computed with the result agree with the stored scale and no value clips
// because of the rounding. f32 returns s. Throws invalid_argument when the
// scale does not fit (above 65504 for f16).
float round_scale_up(float s, DType dtype);

}  // namespace monoquant
