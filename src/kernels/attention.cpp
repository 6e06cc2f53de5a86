// attention_bf16 (include/monoquant/attention.hpp): the argument checks, and
// the choice between the AMX-BF16 tiles and AVX-512 BF16 vdpbf16ps, which
// follows the linear kernel set in use (MONOQUANT_AMX=0 or
// use_linear_kernel_set("avx512_vnni") moves attention off the tiles too).
#include "monoquant/attention.hpp"

#include <string>

#include "kernels/attention_variants.hpp"
#include "monoquant/cpu_features.hpp"
#include "monoquant/error.hpp"
#include "monoquant/linear.hpp"

namespace monoquant {
namespace {

constexpr int64_t kPairK = 32;    // keys per step of the P x V product
constexpr int64_t kMaxKv = 4096;  // score rows stay in L2: 16 x 4096 float32 = 256 KB

}  // namespace

std::string_view attention_bf16_kernel() {
  const std::string_view set = linear_kernel_name();
  if (set == "amx" && amx_bf16_available()) return "amx_bf16";
  if ((set == "amx" || set == "avx512_vnni") && cpu_features().avx512_bf16) return "avx512_bf16";
  return "";
}

bool attention_bf16_supported(int64_t head_dim, int64_t kv_len) {
  return !attention_bf16_kernel().empty() && (head_dim == 32 || head_dim == 64) && kv_len >= 1 && kv_len <= kMaxKv;
}

void attention_bf16(const AttentionArgs& a) {
  if (!attention_bf16_supported(a.head_dim, a.kv_len)) {
    throw_unsupported("attention_bf16 needs AMX-BF16 or AVX-512 BF16, head_dim 32 or 64 and 1 to " +
                      std::to_string(kMaxKv) + " keys; got head_dim " + std::to_string(a.head_dim) + ", " +
                      std::to_string(a.kv_len) + " keys" +
                      (attention_bf16_kernel().empty()
                           ? " with linear kernel set " + std::string(linear_kernel_name()) +
                                 " (no AMX-BF16 or AVX-512 BF16 in use)"
                           : ""));
  }
  if (!a.q || !a.k || !a.v || !a.out || a.batch < 0 || a.heads < 0 || a.q_len < 0) {
    throw_invalid_argument("attention_bf16: null tensor or negative size");
  }
  if (a.k_strides[2] % 2 != 0) {  // the keys are gathered as 32-bit pairs
    throw_invalid_argument("attention_bf16: the key row stride must be even, got " + std::to_string(a.k_strides[2]));
  }
  const int64_t kvp = (a.kv_len + kPairK - 1) / kPairK * kPairK;
  if (attention_bf16_kernel() == "amx_bf16") {
    attention_bf16_amx(a, kvp);
  } else {
    attention_bf16_avx512(a, kvp);
  }
}

}  // namespace monoquant
