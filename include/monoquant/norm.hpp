// LayerNorm over bf16 rows, for the float part of a model run in bf16
// (compute_dtype=torch.bfloat16). torch's bf16 LayerNorm took 0.47 ns an
// element on MiniLM's [4096, 384] rows (Sapphire Rapids, 1 thread), twice
// what reading and writing them costs; thirteen of them were 6% of a
// quantized MiniLM at batch 32.
//
// Numerics: mean and variance in float32, two passes over the row (no
// cancellation for rows far from zero mean), rstd = 1 / sqrt(var + eps),
// y = (x - mean) * rstd * weight + bias in float32, rounded to nearest even
// bf16: within bf16 rounding of torch.nn.functional.layer_norm, not
// bit-identical to it (torch sums in another order).
#pragma once

#include <cstdint>

namespace monoquant {

// AVX-512 (F, BW, VL) with AVX-512 BF16: where layer_norm_bf16 runs.
bool layer_norm_bf16_available();
// rows x n bf16 values, row strides ldx / ldy (elements); weight and bias:
// bf16 [n] or nullptr (1 and 0). Throws unsupported where
// layer_norm_bf16_available() is false.
void layer_norm_bf16(const uint16_t* x, int64_t rows, int64_t n, int64_t ldx, const uint16_t* weight,
                     const uint16_t* bias, float eps, uint16_t* y, int64_t ldy);

}  // namespace monoquant
