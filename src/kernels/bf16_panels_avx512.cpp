// See bf16_panels.hpp.
#include "kernels/bf16_panels.hpp"

#include <immintrin.h>

namespace monoquant::kernels {

void to_bf16_row(const float* x, int64_t k, int64_t k_padded, uint16_t* out) {
  int64_t i = 0;
  for (; i + 16 <= k; i += 16) {
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + i), (__m256i)_mm512_cvtneps_pbh(_mm512_loadu_ps(x + i)));
  }
  if (i < k) {
    const __mmask16 mask = static_cast<__mmask16>((1u << (k - i)) - 1u);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + i),
                        (__m256i)_mm512_cvtneps_pbh(_mm512_maskz_loadu_ps(mask, x + i)));
    i += 16;
  }
  for (; i < k_padded; ++i) out[i] = 0;
}

namespace {

constexpr int64_t B = kLinearBlockN;

// 32 bf16 in [column][4 k] order (one k-quad of a block) -> two panel rows'
// halves [column][2] for k-pairs 2q and 2q + 1: 32-bit unit c*2 + h moves to h*8 + c.
inline __m512i quad_to_pairs(__m512i v) {
  const __m512i idx = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 1, 3, 5, 7, 9, 11, 13, 15);
  return _mm512_permutexvar_epi32(idx, v);
}

inline __m512i pack_bf16(__m512 lo, __m512 hi) { return (__m512i)_mm512_cvtne2ps_pbh(hi, lo); }

}  // namespace

void decode_bf16_half(const PackedLinearWeightView& w, int64_t nb, std::byte* panel) {
  const int64_t kp = w.k_padded();
  const int64_t quads = kp / 4;
  const auto put = [&](int64_t q, __m512i pairs) {  // k-pairs 2q, 2q + 1
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(panel + (2 * q) * 64), _mm512_castsi512_si256(pairs));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(panel + (2 * q + 1) * 64), _mm512_extracti64x4_epi64(pairs, 1));
  };
  switch (w.format) {
    case WeightFormat::int8: {
      const auto* d = static_cast<const int8_t*>(w.data) + nb * B * kp;
      for (int64_t q = 0; q < quads; ++q) {
        const __m512 f0 = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(d + q * 32))));
        const __m512 f1 = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(d + q * 32 + 16))));
        put(q, quad_to_pairs(pack_bf16(f0, f1)));
      }
      break;
    }
    case WeightFormat::int4: {
      // Chunk t: [8 columns][4 bytes], byte j: k = 8t + j (low), 8t + 4 + j (high).
      const auto* d = static_cast<const uint8_t*>(w.data) + nb * B * kp / 2;
      const int64_t groups = w.groups();
      const __m512i cols_lo = _mm512_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3);
      const __m512i cols_hi = _mm512_add_epi32(cols_lo, _mm512_set1_epi32(4));
      const __m512i eight = _mm512_set1_epi32(8), nibble = _mm512_set1_epi32(0xf);
      for (int64_t t = 0; t < kp / 8; ++t) {
        const __m512 sc = _mm512_castps256_ps512(_mm256_loadu_ps(w.scales + (nb * groups + (t * 8) / w.group_size) * B));
        const __m512 s_lo = _mm512_permutexvar_ps(cols_lo, sc), s_hi = _mm512_permutexvar_ps(cols_hi, sc);
        const __m512i b0 = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(d + t * 32)));
        const __m512i b1 = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(d + t * 32 + 16)));
        const auto value = [&](__m512i bytes, int shift, __m512 scale) {
          const __m512i code = _mm512_sub_epi32(_mm512_and_si512(_mm512_srli_epi32(bytes, shift), nibble), eight);
          return _mm512_mul_ps(_mm512_cvtepi32_ps(code), scale);
        };
        put(2 * t, quad_to_pairs(pack_bf16(value(b0, 0, s_lo), value(b1, 0, s_hi))));
        put(2 * t + 1, quad_to_pairs(pack_bf16(value(b0, 4, s_lo), value(b1, 4, s_hi))));
      }
      break;
    }
    case WeightFormat::f16: {
      const auto* d = static_cast<const uint16_t*>(w.data) + nb * B * kp;
      for (int64_t q = 0; q < quads; ++q) {
        const __m512 f0 = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(d + q * 32)));
        const __m512 f1 = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(d + q * 32 + 16)));
        put(q, quad_to_pairs(pack_bf16(f0, f1)));
      }
      break;
    }
    case WeightFormat::bf16: {
      const auto* d = static_cast<const uint16_t*>(w.data) + nb * B * kp;
      for (int64_t q = 0; q < quads; ++q) put(q, quad_to_pairs(_mm512_loadu_si512(d + q * 32)));
      break;
    }
  }
}

}  // namespace monoquant::kernels
