// The bf16 forms that weight-only layers take on bf16 dot-product hardware
// (AMX-BF16 tiles in gemm_amx.cpp, AVX-512 BF16 vdpbf16ps in
// gemm_avx512_bf16.cpp): activation rows rounded to bf16, and weight blocks
// decoded into "wide panels" of 64-byte rows, one row per k-pair, each row
// [16 columns][2 k] bf16 (block nb in bytes 0-31, block nb + 1 in 32-63) --
// the B-tile layout of tdpbf16ps and the lane layout of vdpbf16ps alike.
//
// Compiled with AVX-512 BF16 (bf16_panels_avx512.cpp); call only where the CPU has it.
#pragma once

#include <cstddef>
#include <cstdint>

#include "monoquant/linear.hpp"

namespace monoquant::kernels {

// x[0, k) rounded to bf16 (nearest even, vcvtneps2bf16), zeros in [k, k_padded).
void to_bf16_row(const float* x, int64_t k, int64_t k_padded, uint16_t* out);

// Block nb's weights as bf16 into one half of a wide panel (panel: bytes 0-31
// of each row; panel + 32: the other half), rows 0 .. w.k_padded() / 2 - 1:
// int8 codes exactly (the column scale belongs to the epilogue, as in the
// reference), int4 as bf16(code * group scale), f16 rounded to bf16, bf16 as stored.
void decode_bf16_half(const PackedLinearWeightView& w, int64_t nb, std::byte* panel);

}  // namespace monoquant::kernels
