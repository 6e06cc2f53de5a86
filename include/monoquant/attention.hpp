// Scaled dot-product attention on AMX-BF16 tiles or AVX-512 BF16, for the float part of a
// model run in bf16 (compute_dtype=torch.bfloat16): softmax(q k^T * scale +
// mask) v, one (batch, head) at a time, the score rows kept in cache. On
// MiniLM at batch 32 x 128 tokens, torch's own bf16 attention was a third of
// the quantized model's time.
//
// Numerics: q k^T summed in float32 (bf16 products are exact),
// softmax in float32 (exp to about 2e-7 relative), the probabilities rounded
// to bf16 for the second product (as torch's CPU flash attention does), the
// result divided by the float32 row sum and rounded to bf16: within bf16
// tolerance of torch's scaled_dot_product_attention, not bit-identical.
#pragma once

#include <cstdint>
#include <string_view>

namespace monoquant {

struct AttentionArgs {
  // bf16 [batch, heads, len, head_dim] with element strides {batch, head, row};
  // the last dimension is contiguous, and k's row stride is even.
  const uint16_t* q = nullptr;
  const uint16_t* k = nullptr;
  const uint16_t* v = nullptr;
  int64_t q_strides[3] = {}, k_strides[3] = {}, v_strides[3] = {};
  int64_t batch = 0, heads = 0, q_len = 0, kv_len = 0, head_dim = 0;
  // nullptr, or bool [batch, heads, q_len, kv_len] (true: attend) with
  // element strides {batch, head, row, column}; 0 broadcasts.
  const bool* mask = nullptr;
  int64_t mask_strides[4] = {};
  float scale = 1.0f;
  // bf16 [batch, q_len, heads, head_dim], contiguous (what a transformers
  // attention function returns before its output projection).
  uint16_t* out = nullptr;
};

// The implementation attention_bf16 runs here: "amx_bf16" (AMX-BF16 tiles,
// with the amx linear kernel set), "avx512_bf16" (vdpbf16ps, with the
// avx512_vnni set, or amx without AMX-BF16, where the CPU has AVX-512 BF16),
// or "" (none: attention_bf16 refuses).
std::string_view attention_bf16_kernel();
// Whether attention_bf16 runs these shapes here: a kernel above,
// head_dim 32 or 64, 1 <= kv_len <= 4096.
bool attention_bf16_supported(int64_t head_dim, int64_t kv_len);
// Throws unsupported where attention_bf16_supported is false. A query row
// whose mask allows no key gives zeros.
void attention_bf16(const AttentionArgs& args);

}  // namespace monoquant
