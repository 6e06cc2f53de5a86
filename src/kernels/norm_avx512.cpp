// LayerNorm over bf16 rows (include/monoquant/norm.hpp), AVX-512 with
// AVX-512 BF16 (this file only is compiled with those flags; called only
// where layer_norm_bf16_available()). A row at a time: it stays in L1 for
// the three passes.
#include "monoquant/norm.hpp"

#include <immintrin.h>

#include <algorithm>
#include <cmath>

#include "monoquant/cpu_features.hpp"
#include "monoquant/error.hpp"
#include "monoquant/linear.hpp"
#include "monoquant/thread_pool.hpp"

namespace monoquant {
namespace {

__mmask16 first(int64_t n) { return n >= 16 ? __mmask16{0xffff} : static_cast<__mmask16>((1u << n) - 1u); }

// 16 bf16 values from p (lanes outside m are 0) as float32.
__m512 load_bf16(const uint16_t* p, __mmask16 m) {
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, p)), 16));
}

void row(const uint16_t* x, int64_t n, const uint16_t* weight, const uint16_t* bias, float eps, uint16_t* y) {
  __m512 s0 = _mm512_setzero_ps(), s1 = s0;
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    s0 = _mm512_add_ps(s0, load_bf16(x + i, 0xffff));
    s1 = _mm512_add_ps(s1, load_bf16(x + i + 16, 0xffff));
  }
  for (; i < n; i += 16) s0 = _mm512_add_ps(s0, load_bf16(x + i, first(n - i)));
  const float mean = _mm512_reduce_add_ps(_mm512_add_ps(s0, s1)) / static_cast<float>(n);
  const __m512 vmean = _mm512_set1_ps(mean);
  __m512 q0 = _mm512_setzero_ps(), q1 = q0;
  for (i = 0; i + 32 <= n; i += 32) {
    const __m512 d0 = _mm512_sub_ps(load_bf16(x + i, 0xffff), vmean);
    const __m512 d1 = _mm512_sub_ps(load_bf16(x + i + 16, 0xffff), vmean);
    q0 = _mm512_fmadd_ps(d0, d0, q0);
    q1 = _mm512_fmadd_ps(d1, d1, q1);
  }
  for (; i < n; i += 16) {
    const __mmask16 m = first(n - i);
    const __m512 d = _mm512_maskz_sub_ps(m, load_bf16(x + i, m), vmean);
    q0 = _mm512_fmadd_ps(d, d, q0);
  }
  const float var = _mm512_reduce_add_ps(_mm512_add_ps(q0, q1)) / static_cast<float>(n);
  const __m512 rstd = _mm512_set1_ps(1.0f / std::sqrt(var + eps));
  for (i = 0; i < n; i += 16) {
    const __mmask16 m = first(n - i);
    __m512 v = _mm512_mul_ps(_mm512_sub_ps(load_bf16(x + i, m), vmean), rstd);
    if (weight) v = _mm512_mul_ps(v, load_bf16(weight + i, m));
    if (bias) v = _mm512_add_ps(v, load_bf16(bias + i, m));
    _mm256_mask_storeu_epi16(y + i, m, (__m256i)_mm512_cvtneps_pbh(v));
  }
}

}  // namespace

bool layer_norm_bf16_available() { return avx512_vnni_available() && cpu_features().avx512_bf16; }

void layer_norm_bf16(const uint16_t* x, int64_t rows, int64_t n, int64_t ldx, const uint16_t* weight,
                     const uint16_t* bias, float eps, uint16_t* y, int64_t ldy) {
  if (!layer_norm_bf16_available()) throw_unsupported("layer_norm_bf16 needs AVX-512 (F, BW, VL) with AVX-512 BF16");
  if (rows < 0 || n < 1 || ldx < n || ldy < n || !x || !y || !(eps >= 0.0f)) {
    throw_invalid_argument("layer_norm_bf16: needs rows >= 0, n >= 1, row strides >= n, eps >= 0 and data");
  }
  parallel_for(rows, std::max<int64_t>(1, 16384 / n), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) row(x + r * ldx, n, weight, bias, eps, y + r * ldy);
  });
}

}  // namespace monoquant
