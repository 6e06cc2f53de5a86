// Activation quantization for the AVX-512 linear sets (avx512_vnni and amx):
// a row's absmax and its int8 codes read straight from the caller's float32 or
// bf16 activations, 16 or 32 lanes at a time with masked tails. The portable
// path widens a bf16 row into a float32 buffer first and then makes two more
// passes over it with the AVX2 quant table; on a MiniLM layer at M = 4096
// (AMX, 1 thread) that preparation was a third of the call.
//
// Bits: the same as the quant table's absmax_bits and quantize_i8 on the
// widened row (kernels/gemm.hpp). A bf16 value widens exactly to the float32
// with its bits in the high half, so
//   - the absmax of |bf16| bit patterns, shifted up 16, is the float32 one
//     (|x| is monotonic in the bits, NaN and Inf stay >= 0x7f800000);
//   - the codes are the reference's: the product x * inv_scale rounded once,
//     clamped in float (so a huge product saturates, never wraps), rounded
//     nearest-even to an integer, plus the zero point (see
//     avx512_row_quantize_i8 for why that order gives the same bits).
// Compiled with -mavx512f -mavx512bw -mavx512vl (this file only); called only
// from the tables of CPUs that have them.
#include <immintrin.h>

#include <algorithm>
#include <cstdint>

#include "kernels/gemm.hpp"

namespace monoquant::kernels {
namespace {

__mmask16 tail16(int64_t n) { return static_cast<__mmask16>((1u << n) - 1u); }
__mmask32 tail32(int64_t n) { return static_cast<__mmask32>((uint64_t{1} << n) - 1u); }

// Largest of 16 u32 lanes (by halves: GCC 12's _mm512_reduce_max_epu32 warns
// of an uninitialized operand in its own header).
uint32_t hmax_epu32(__m512i v) {
  __m256i m = _mm256_max_epu32(_mm512_castsi512_si256(v), _mm512_extracti64x4_epi64(v, 1));
  __m128i h = _mm_max_epu32(_mm256_castsi256_si128(m), _mm256_extracti128_si256(m, 1));
  h = _mm_max_epu32(h, _mm_shuffle_epi32(h, _MM_SHUFFLE(1, 0, 3, 2)));
  h = _mm_max_epu32(h, _mm_shuffle_epi32(h, _MM_SHUFFLE(2, 3, 0, 1)));
  return static_cast<uint32_t>(_mm_cvtsi128_si32(h));
}

// 16 activations from x + i as float32 (lanes outside `mask` are 0).
__m512 load16(const void* x, bool bf16, int64_t i, __mmask16 mask) {
  if (bf16) {
    const __m256i h = _mm256_maskz_loadu_epi16(mask, static_cast<const uint16_t*>(x) + i);
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
  }
  return _mm512_maskz_loadu_ps(mask, static_cast<const float*>(x) + i);
}

uint32_t absmax_bits_f32(const float* x, int64_t n) {
  const __m512i magnitude = _mm512_set1_epi32(0x7fffffff);
  __m512i m0 = _mm512_setzero_si512(), m1 = m0;
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    m0 = _mm512_max_epu32(m0, _mm512_and_si512(_mm512_loadu_si512(x + i), magnitude));
    m1 = _mm512_max_epu32(m1, _mm512_and_si512(_mm512_loadu_si512(x + i + 16), magnitude));
  }
  for (; i < n; i += 16) {
    const __m512i v = _mm512_maskz_loadu_epi32(tail16(std::min<int64_t>(16, n - i)), x + i);
    m0 = _mm512_max_epu32(m0, _mm512_and_si512(v, magnitude));
  }
  return hmax_epu32(_mm512_max_epu32(m0, m1));
}

uint32_t absmax_bits_bf16(const uint16_t* x, int64_t n) {
  const __m512i magnitude = _mm512_set1_epi16(0x7fff);
  __m512i m0 = _mm512_setzero_si512(), m1 = m0;
  int64_t i = 0;
  for (; i + 64 <= n; i += 64) {
    m0 = _mm512_max_epu16(m0, _mm512_and_si512(_mm512_loadu_si512(x + i), magnitude));
    m1 = _mm512_max_epu16(m1, _mm512_and_si512(_mm512_loadu_si512(x + i + 32), magnitude));
  }
  for (; i < n; i += 32) {
    const __m512i v = _mm512_maskz_loadu_epi16(tail32(std::min<int64_t>(32, n - i)), x + i);
    m0 = _mm512_max_epu16(m0, _mm512_and_si512(v, magnitude));
  }
  // 32 u16 lanes -> 16 u32 lanes (the low and high halves of each dword) -> one.
  const __m512i m = _mm512_max_epu16(m0, m1);
  const __m512i wide = _mm512_max_epu32(_mm512_and_si512(m, _mm512_set1_epi32(0xffff)), _mm512_srli_epi32(m, 16));
  return hmax_epu32(wide) << 16;
}

// q[0 .. n) = codes(x) as int8, 64 at a time, then 16 with masked tails;
// codes(v) gives 16 int32 codes already inside [-128, 127]. vpackssdw /
// vpacksswb work within 128-bit lanes: lane L holds dwords a[4L..], b[4L..],
// c[4L..], d[4L..] of the four 16-code vectors; the permutation puts a, b, c,
// d back in order.
template <class Codes>
void store_codes(const void* x, bool bf16, int64_t n, int8_t* q, const Codes& codes) {
  const __m512i order = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
  int64_t i = 0;
  for (; i + 64 <= n; i += 64) {
    const __m512i ab = _mm512_packs_epi32(codes(load16(x, bf16, i, 0xffff)), codes(load16(x, bf16, i + 16, 0xffff)));
    const __m512i cd =
        _mm512_packs_epi32(codes(load16(x, bf16, i + 32, 0xffff)), codes(load16(x, bf16, i + 48, 0xffff)));
    _mm512_storeu_si512(q + i, _mm512_permutexvar_epi32(order, _mm512_packs_epi16(ab, cd)));
  }
  for (; i < n; i += 16) {
    const __mmask16 mask = tail16(std::min<int64_t>(16, n - i));
    _mm512_mask_cvtsepi32_storeu_epi8(q + i, mask, codes(load16(x, bf16, i, mask)));
  }
}

}  // namespace

uint32_t avx512_row_absmax_bits(const void* x, bool bf16, int64_t n) {
  return bf16 ? absmax_bits_bf16(static_cast<const uint16_t*>(x), n) : absmax_bits_f32(static_cast<const float*>(x), n);
}

void avx512_row_quantize_i8(const void* x, bool bf16, int64_t n, float inv_scale, int32_t zero_point, int32_t qmin,
                            int32_t qmax, int8_t* q) {
  // clamp(nearbyint(p) + zp, qmin, qmax) == nearbyint(clamp(p, qmin - zp, qmax - zp)) + zp for integer
  // bounds (nearbyint is monotonic and keeps integers), and vcvtps2dq rounds to nearest even: one
  // rounding instruction fewer, the zero point added in int32.
  const __m512 inv = _mm512_set1_ps(inv_scale);
  const __m512 lo = _mm512_set1_ps(static_cast<float>(qmin - zero_point));
  const __m512 hi = _mm512_set1_ps(static_cast<float>(qmax - zero_point));
  const __m512i zp = _mm512_set1_epi32(zero_point);
  store_codes(x, bf16, n, q, [&](__m512 v) {
    return _mm512_add_epi32(_mm512_cvtps_epi32(_mm512_min_ps(_mm512_max_ps(_mm512_mul_ps(v, inv), lo), hi)), zp);
  });
}

void avx512_row_smooth(const void* x, bool bf16, int64_t n, const float* smooth, float* out) {
  // out = x * smooth in float32; for bf16 rows each product rounded to bf16 (nearest even, by the bits:
  // + 0x7fff + lsb, then the low half cleared; NaN left as it is), as the portable Rows::row does.
  const __m512i magnitude = _mm512_set1_epi32(0x7fffffff), inf = _mm512_set1_epi32(0x7f800000);
  const __m512i bias = _mm512_set1_epi32(0x7fff), one = _mm512_set1_epi32(1), high = _mm512_set1_epi32(int(0xffff0000u));
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 mask = n - i >= 16 ? __mmask16{0xffff} : tail16(n - i);
    const __m512 p = _mm512_mul_ps(load16(x, bf16, i, mask), _mm512_maskz_loadu_ps(mask, smooth + i));
    if (!bf16) {
      _mm512_mask_storeu_ps(out + i, mask, p);
      continue;
    }
    __m512i u = _mm512_castps_si512(p);
    const __mmask16 finite = _mm512_cmple_epu32_mask(_mm512_and_si512(u, magnitude), inf);
    const __m512i up = _mm512_add_epi32(bias, _mm512_and_si512(_mm512_srli_epi32(u, 16), one));
    u = _mm512_and_si512(_mm512_mask_add_epi32(u, finite, u, up), high);
    _mm512_mask_storeu_ps(out + i, mask, _mm512_castsi512_ps(u));
  }
}

void avx512_row_quantize_i8_symmetric(const void* x, bool bf16, int64_t n, float inv_scale, int8_t* q) {
  // inv_scale = 1 / (absmax / 127) of this very span: |x * inv_scale| <= 127 (1 + 3 * 2^-24), which
  // rounds to at most 127, so the reference's clamp to [-127, 127] never acts and is left out.
  const __m512 inv = _mm512_set1_ps(inv_scale);
  store_codes(x, bf16, n, q, [&](__m512 v) { return _mm512_cvtps_epi32(_mm512_mul_ps(v, inv)); });
}

}  // namespace monoquant::kernels
