// The two implementations of attention_bf16 (attention.cpp checks the
// arguments and picks one): kvp is kv_len rounded up to whole 32-key steps.
#pragma once

#include <cstdint>

#include "monoquant/attention.hpp"

namespace monoquant {

// AMX-BF16 tiles (attention_amx.cpp); only where amx_bf16_available().
void attention_bf16_amx(const AttentionArgs& a, int64_t kvp);
// AVX-512 BF16 vdpbf16ps (attention_avx512_bf16.cpp); only where the CPU has AVX-512 BF16.
void attention_bf16_avx512(const AttentionArgs& a, int64_t kvp);

}  // namespace monoquant
