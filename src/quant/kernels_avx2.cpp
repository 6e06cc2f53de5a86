// AVX2 + FMA + F16C kernels. Compiled with -mavx2 -mfma -mf16c (this file
// only) and reached only through the dispatch table after a CPU check.
// Each produces the same bits as its reference in kernels_reference.cpp;
// the tails go to the reference so that there is one definition of the edge.
#include <immintrin.h>

#include <limits>

#include <algorithm>
#include <bit>

#include "quant/kernels.hpp"

namespace monoquant::kernels {
namespace {

const QuantKernels& ref() { return reference_kernels(); }

uint32_t hmax_epu32(__m256i v) {
  __m128i m = _mm_max_epu32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  m = _mm_max_epu32(m, _mm_shuffle_epi32(m, _MM_SHUFFLE(1, 0, 3, 2)));
  m = _mm_max_epu32(m, _mm_shuffle_epi32(m, _MM_SHUFFLE(2, 3, 0, 1)));
  return static_cast<uint32_t>(_mm_cvtsi128_si32(m));
}

// |x| as integers orders like |x| as floats, and NaN patterns sort above Inf:
// one unsigned integer max finds the absmax and detects non-finite values.
uint32_t absmax_bits(const float* x, int64_t n) {
  const __m256i mask = _mm256_set1_epi32(0x7fffffff);
  __m256i m0 = _mm256_setzero_si256(), m1 = _mm256_setzero_si256();
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    m0 = _mm256_max_epu32(m0, _mm256_and_si256(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(x + i)), mask));
    m1 = _mm256_max_epu32(m1, _mm256_and_si256(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(x + i + 8)), mask));
  }
  for (; i + 8 <= n; i += 8) {
    m0 = _mm256_max_epu32(m0, _mm256_and_si256(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(x + i)), mask));
  }
  return std::max(hmax_epu32(_mm256_max_epu32(m0, m1)), ref().absmax_bits(x + i, n - i));
}

void minmax(const float* x, int64_t n, float* min, float* max) {
  if (n < 8) {
    ref().minmax(x, n, min, max);
    return;
  }
  __m256 lo = _mm256_loadu_ps(x), hi = lo;
  int64_t i = 8;
  for (; i + 8 <= n; i += 8) {
    const __m256 v = _mm256_loadu_ps(x + i);
    lo = _mm256_min_ps(lo, v);
    hi = _mm256_max_ps(hi, v);
  }
  alignas(32) float l[8], h[8];
  _mm256_store_ps(l, lo);
  _mm256_store_ps(h, hi);
  float mn = *std::min_element(l, l + 8), mx = *std::max_element(h, h + 8);
  if (i < n) {
    float tl, th;
    ref().minmax(x + i, n - i, &tl, &th);
    mn = std::min(mn, tl);
    mx = std::max(mx, th);
  }
  *min = mn;
  *max = mx;
}

// 8 floats -> 8 int32 codes, clamped; exact same arithmetic as the reference.
inline __m256i quantize8(__m256 x, __m256 inv, __m256 zp, __m256 lo, __m256 hi) {
  __m256 v = _mm256_round_ps(_mm256_mul_ps(x, inv), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  v = _mm256_add_ps(v, zp);
  v = _mm256_min_ps(_mm256_max_ps(v, lo), hi);
  return _mm256_cvtps_epi32(v);
}

void quantize_i8(const float* x, int64_t n, float inv_scale, int32_t zero_point, int32_t qmin, int32_t qmax,
                 int8_t* q) {
  const __m256 inv = _mm256_set1_ps(inv_scale);
  const __m256 zp = _mm256_set1_ps(static_cast<float>(zero_point));
  const __m256 lo = _mm256_set1_ps(static_cast<float>(qmin));
  const __m256 hi = _mm256_set1_ps(static_cast<float>(qmax));
  // packs_epi32/packs_epi16 interleave 128-bit lanes; this permutation undoes it.
  const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    const __m256i a = quantize8(_mm256_loadu_ps(x + i), inv, zp, lo, hi);
    const __m256i b = quantize8(_mm256_loadu_ps(x + i + 8), inv, zp, lo, hi);
    const __m256i c = quantize8(_mm256_loadu_ps(x + i + 16), inv, zp, lo, hi);
    const __m256i d = quantize8(_mm256_loadu_ps(x + i + 24), inv, zp, lo, hi);
    const __m256i ab = _mm256_packs_epi32(a, b);
    const __m256i cd = _mm256_packs_epi32(c, d);
    const __m256i abcd = _mm256_permutevar8x32_epi32(_mm256_packs_epi16(ab, cd), order);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(q + i), abcd);
  }
  for (; i + 8 <= n; i += 8) {
    const __m256i a = quantize8(_mm256_loadu_ps(x + i), inv, zp, lo, hi);
    const __m128i w = _mm_packs_epi32(_mm256_castsi256_si128(a), _mm256_extracti128_si256(a, 1));
    _mm_storel_epi64(reinterpret_cast<__m128i*>(q + i), _mm_packs_epi16(w, w));
  }
  ref().quantize_i8(x + i, n - i, inv_scale, zero_point, qmin, qmax, q + i);
}

void dequantize_i8(const int8_t* q, int64_t n, float scale, int32_t zero_point, float* x) {
  const __m256 s = _mm256_set1_ps(scale);
  const __m256i zp = _mm256_set1_epi32(zero_point);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256i v = _mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(q + i)));
    _mm256_storeu_ps(x + i, _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(v, zp)), s));
  }
  ref().dequantize_i8(q + i, n - i, scale, zero_point, x + i);
}

void pack_i4(const int8_t* q, int64_t n, uint8_t* packed) {
  const __m256i eight = _mm256_set1_epi8(8);
  const __m256i low_nibble = _mm256_set1_epi16(0x000f);
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    // As 16-bit lanes, each holds (odd << 8) | even; fold the odd byte down.
    const __m256i v = _mm256_add_epi8(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(q + i)), eight);
    const __m256i even = _mm256_and_si256(v, low_nibble);
    const __m256i odd = _mm256_and_si256(_mm256_srli_epi16(v, 8), low_nibble);
    const __m256i bytes = _mm256_or_si256(even, _mm256_slli_epi16(odd, 4));  // 16 results, one per 16-bit lane
    const __m128i packed16 = _mm_packus_epi16(_mm256_castsi256_si128(bytes), _mm256_extracti128_si256(bytes, 1));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(packed + i / 2), packed16);
  }
  ref().pack_i4(q + i, n - i, packed + i / 2);
}

void unpack_i4(const uint8_t* packed, int64_t n, int8_t* q) {
  const __m128i mask = _mm_set1_epi8(0x0f);
  const __m128i eight = _mm_set1_epi8(8);
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    const __m128i p = _mm_loadu_si128(reinterpret_cast<const __m128i*>(packed + i / 2));
    const __m128i lo = _mm_sub_epi8(_mm_and_si128(p, mask), eight);
    const __m128i hi = _mm_sub_epi8(_mm_and_si128(_mm_srli_epi16(p, 4), mask), eight);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(q + i), _mm_unpacklo_epi8(lo, hi));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(q + i + 16), _mm_unpackhi_epi8(lo, hi));
  }
  ref().unpack_i4(packed + i / 2, n - i, q + i);
}

void f32_to_f16(const float* x, int64_t n, float clamp, uint16_t* h) {
  const __m256 hi = _mm256_set1_ps(clamp), lo = _mm256_set1_ps(-clamp);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 v = _mm256_min_ps(_mm256_max_ps(_mm256_loadu_ps(x + i), lo), hi);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(h + i), _mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT));
  }
  ref().f32_to_f16(x + i, n - i, clamp, h + i);
}

void f16_to_f32(const uint16_t* h, int64_t n, float* x) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    _mm256_storeu_ps(x + i, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(h + i))));
  }
  ref().f16_to_f32(h + i, n - i, x + i);
}

// Round-to-nearest-even on the bit pattern: add 0x7fff plus the lowest kept
// bit, keep the high half. Input is finite, so no NaN handling is needed here.
void f32_to_bf16(const float* x, int64_t n, float clamp, uint16_t* b) {
  const __m256 hi = _mm256_set1_ps(clamp), lo = _mm256_set1_ps(-clamp);
  const bool unclamped = clamp == std::numeric_limits<float>::infinity();
  const __m256i bias = _mm256_set1_epi32(0x7fff);
  const __m256i one = _mm256_set1_epi32(1);
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    __m256i r[2];
    for (int k = 0; k < 2; ++k) {
      const __m256 raw = _mm256_loadu_ps(x + i + 8 * k);
      // No clamp (+Inf): NaN and Inf pass through, NaN made quiet as in the reference.
      const __m256 v = unclamped ? raw : _mm256_min_ps(_mm256_max_ps(raw, lo), hi);
      const __m256i bits = _mm256_castps_si256(v);
      const __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(bits, 16), one);
      const __m256i rounded = _mm256_srli_epi32(_mm256_add_epi32(_mm256_add_epi32(bits, bias), lsb), 16);
      const __m256i quiet_nan = _mm256_or_si256(_mm256_srli_epi32(bits, 16), _mm256_set1_epi32(0x40));
      r[k] = _mm256_blendv_epi8(rounded, quiet_nan, _mm256_castps_si256(_mm256_cmp_ps(v, v, _CMP_UNORD_Q)));
    }
    const __m256i packed = _mm256_permute4x64_epi64(_mm256_packus_epi32(r[0], r[1]), _MM_SHUFFLE(3, 1, 2, 0));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(b + i), packed);
  }
  ref().f32_to_bf16(x + i, n - i, clamp, b + i);
}

void bf16_to_f32(const uint16_t* b, int64_t n, float* x) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256i v = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(b + i)));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(x + i), _mm256_slli_epi32(v, 16));
  }
  ref().bf16_to_f32(b + i, n - i, x + i);
}

// Two independent accumulators per energy, 8 lanes each, summed at the end.
void error_energy_i8(const float* x, const int8_t* q, int64_t n, float scale, int32_t zero_point, double* xx,
                     double* ee) {
  const __m256 s = _mm256_set1_ps(scale);
  const __m256i zp = _mm256_set1_epi32(zero_point);
  __m256 ax0 = _mm256_setzero_ps(), ax1 = _mm256_setzero_ps(), ae0 = _mm256_setzero_ps(), ae1 = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m128i qq = _mm_loadu_si128(reinterpret_cast<const __m128i*>(q + i));
    const __m256 w0 = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(_mm256_cvtepi8_epi32(qq), zp)), s);
    const __m256 w1 = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(_mm256_cvtepi8_epi32(_mm_srli_si128(qq, 8)), zp)), s);
    const __m256 x0 = _mm256_loadu_ps(x + i), x1 = _mm256_loadu_ps(x + i + 8);
    const __m256 d0 = _mm256_sub_ps(x0, w0), d1 = _mm256_sub_ps(x1, w1);
    ax0 = _mm256_fmadd_ps(x0, x0, ax0);
    ax1 = _mm256_fmadd_ps(x1, x1, ax1);
    ae0 = _mm256_fmadd_ps(d0, d0, ae0);
    ae1 = _mm256_fmadd_ps(d1, d1, ae1);
  }
  alignas(32) float lx[8], le[8];
  _mm256_store_ps(lx, _mm256_add_ps(ax0, ax1));
  _mm256_store_ps(le, _mm256_add_ps(ae0, ae1));
  double sx = 0, se = 0;
  for (int j = 0; j < 8; ++j) {
    sx += lx[j];
    se += le[j];
  }
  *xx += sx;
  *ee += se;
  ref().error_energy_i8(x + i, q + i, n - i, scale, zero_point, xx, ee);
}

}  // namespace

const QuantKernels& avx2_kernels() {
  static const QuantKernels table{absmax_bits, minmax,     quantize_i8, dequantize_i8, pack_i4,
                                  unpack_i4,   f32_to_f16, f16_to_f32,  f32_to_bf16,   bf16_to_f32,
                                  error_energy_i8};
  return table;
}

}  // namespace monoquant::kernels
