// The integer linear kernels on 256-bit vpdpbusd, written once and compiled
// twice (the float kernels are the plain AVX2 ones):
//   gemm_avx2_vnni.cpp      the VEX encoding (AVX-VNNI: Alder Lake, Sapphire
//                           Rapids, Zen 5), functions avx2_vnni_*;
//   gemm_avx512_vnni256.cpp the EVEX encoding (AVX-512 VNNI + VL: Cascade
//                           Lake, Ice Lake, Zen 4, which lack AVX-VNNI),
//                           functions avx512_vnni256_*, which the AVX-512 set
//                           uses for what its 512-bit tiles leave.
// The including file defines MONOQUANT_VNNI256_EVEX (0 or 1) first. Everything
// but the exported functions has internal linkage.
//
// vpdpbusd multiplies unsigned by signed bytes and adds groups of four
// products straight into int32, with no int16 stage, so nothing saturates.
// W8A8: activations go in as u = q + 128 in [0, 255]; the offset is removed
// with the packed column sums: sum (q - zp) w = sum u w - (128 + zp) sum w.
// W4A8: the weight nibble u = q + 8 is the unsigned operand, activations the
// signed one; sum q_w q_a = sum u q_a - 8 sum q_a.
// All int32 arithmetic wraps, so the result is exact whenever the true sum
// fits in int32 (|sum| <= 255 * 128 * K; linear_into caps K at 65536).
#pragma once

#include "kernels/gemm_avx2_common.hpp"

#if MONOQUANT_VNNI256_EVEX
#define MONOQUANT_VNNI256_NAME(x) avx512_vnni256_##x
#else
#define MONOQUANT_VNNI256_NAME(x) avx2_vnni_##x
#endif

namespace monoquant::kernels {

void avx2_gemm_float(const FloatGemmArgs& a, int64_t nb_begin, int64_t nb_end);

namespace {

using namespace avx2;

// acc += u8(a) . s8(b) (groups of four products, int32, no saturation).
// (The intrinsic here: an in-place asm form, which helps the 512-bit tile,
// measured no better on these 256-bit tiles and slower for W4A8.)
inline void dpbusd(__m256i& acc, __m256i a, __m256i b) {
#if MONOQUANT_VNNI256_EVEX
  acc = _mm256_dpbusd_epi32(acc, a, b);
#else
  acc = _mm256_dpbusd_avx_epi32(acc, a, b);
#endif
}

template <int MR>
void i8_tile(const IntGemmArgs& a, int64_t m0, int64_t nb) {
  const PackedLinearWeightView& w = *a.w;
  const int64_t kp = w.k_padded(), chunks = kp / 4;
  const auto* block = static_cast<const int8_t*>(w.data) + nb * B * kp;
  const auto* act = static_cast<const uint8_t*>(a.prepared) + m0 * kp;
  __m256i acc[MR];
  #pragma GCC unroll 8
  for (int r = 0; r < MR; ++r) acc[r] = _mm256_setzero_si256();
  for (int64_t ch = 0; ch < chunks; ++ch) {
    const __m256i wv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(block + ch * 32));
    #pragma GCC unroll 8
    for (int r = 0; r < MR; ++r) {
      dpbusd(acc[r], _mm256_set1_epi32(load_i32(act + r * kp + ch * 4)), wv);
    }
  }
  store_offset_rows<MR>(a, m0, nb, acc);
}

// Two blocks at once: each broadcast of activations feeds two vpdpbusd.
template <int MR>
void i8_tile2(const IntGemmArgs& a, int64_t m0, int64_t nb) {
  const PackedLinearWeightView& w = *a.w;
  const int64_t kp = w.k_padded(), chunks = kp / 4;
  const auto* b0 = static_cast<const int8_t*>(w.data) + nb * B * kp;
  const auto* b1 = b0 + B * kp;
  const auto* act = static_cast<const uint8_t*>(a.prepared) + m0 * kp;
  __m256i acc0[MR], acc1[MR];
  #pragma GCC unroll 8
  for (int r = 0; r < MR; ++r) acc0[r] = acc1[r] = _mm256_setzero_si256();
  for (int64_t ch = 0; ch < chunks; ++ch) {
    const __m256i w0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b0 + ch * 32));
    const __m256i w1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b1 + ch * 32));
    #pragma GCC unroll 8
    for (int r = 0; r < MR; ++r) {
      const __m256i av = _mm256_set1_epi32(load_i32(act + r * kp + ch * 4));
      dpbusd(acc0[r], av, w0);
      dpbusd(acc1[r], av, w1);
    }
  }
  store_offset_rows<MR>(a, m0, nb, acc0);
  store_offset_rows<MR>(a, m0, nb + 1, acc1);
}

// One row (M = 1, or the last row of a tile): the weights stream once and
// vpdpbusd's latency, not its throughput, would bound one chain per block;
// NB blocks with split even/odd chunk accumulators keep 2 * NB chains busy.
template <int NB>
void i8_row1(const IntGemmArgs& a, int64_t m0, int64_t nb) {
  const PackedLinearWeightView& w = *a.w;
  const int64_t kp = w.k_padded(), chunks = kp / 4;
  const auto* b0 = static_cast<const int8_t*>(w.data) + nb * B * kp;
  const auto* act = static_cast<const uint8_t*>(a.prepared) + m0 * kp;
  __m256i even[NB], odd[NB];
#pragma GCC unroll 8
  for (int b = 0; b < NB; ++b) even[b] = odd[b] = _mm256_setzero_si256();
  int64_t ch = 0;
  for (; ch + 2 <= chunks; ch += 2) {
    const __m256i ae = _mm256_set1_epi32(load_i32(act + ch * 4));
    const __m256i ao = _mm256_set1_epi32(load_i32(act + ch * 4 + 4));
#pragma GCC unroll 8
    for (int b = 0; b < NB; ++b) {
      const int8_t* p = b0 + b * B * kp + ch * 32;
      dpbusd(even[b], ae, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
      dpbusd(odd[b], ao, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + 32)));
    }
  }
  if (ch < chunks) {
    const __m256i ae = _mm256_set1_epi32(load_i32(act + ch * 4));
#pragma GCC unroll 8
    for (int b = 0; b < NB; ++b) {
      const int8_t* p = b0 + b * B * kp + ch * 32;
      dpbusd(even[b], ae, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
    }
  }
#pragma GCC unroll 8
  for (int b = 0; b < NB; ++b) {
    const int64_t blk = nb + b;
    const __m256i offset = _mm256_mullo_epi32(_mm256_set1_epi32(128 + a.zero_point), load_cols_i32(w.sums, blk));
    const __m256i acc = _mm256_sub_epi32(_mm256_add_epi32(even[b], odd[b]), offset);
    store_cols(a.y + m0 * a.ldy, blk, w.n,
               epilogue_i8(acc, a.row_scales[m0], load_cols(w.scales, blk, w.n), load_cols(a.bias, blk, w.n)));
  }
}

template <int MR>
void i8_rows(const IntGemmArgs& a, int64_t m0, int64_t nb, bool pair) {
  if (pair) i8_tile2<MR>(a, m0, nb);
  else i8_tile<MR>(a, m0, nb);
}

void gemm_i8(const IntGemmArgs& a, int64_t nb_begin, int64_t nb_end) {
  const std::size_t block_bytes = a.w->data_bytes() / static_cast<std::size_t>(a.w->n_blocks());
  const int64_t pass = blocks_per_pass(block_bytes);
  for (int64_t p0 = nb_begin; p0 < nb_end; p0 += pass) {
    const int64_t p1 = std::min(nb_end, p0 + pass);
    for (int64_t m0 = 0; m0 < a.m; m0 += 4) {
      const int rows = static_cast<int>(std::min<int64_t>(4, a.m - m0));
      if (rows == 1) {
        int64_t nb = p0;
        for (; nb + 4 <= p1; nb += 4) i8_row1<4>(a, m0, nb);
        for (; nb < p1; ++nb) i8_row1<1>(a, m0, nb);
        continue;
      }
      for (int64_t nb = p0; nb < p1;) {
        const bool pair = nb + 1 < p1;
        switch (rows) {
          case 4: i8_rows<4>(a, m0, nb, pair); break;
          case 3: i8_rows<3>(a, m0, nb, pair); break;
          case 2: i8_rows<2>(a, m0, nb, pair); break;
          default: i8_rows<1>(a, m0, nb, pair); break;
        }
        nb += pair ? 2 : 1;
      }
    }
  }
}

// ------------------------------------------------------------ W8A8 with activation groups
// Activations as u = q + 128 (prepare_u8); per group the offset is removed
// with that group's packed column sums, dot_g = sum u w - 128 sum_g w, and
// folded in float: f = fma(float(dot_g), s_act * s_w, f); y = f + bias.
// Rows [m0, m0 + MR) x blocks [nb, nb + NB).
template <int MR, int NB>
void i8g_tile(const IntGemmArgs& a, int64_t m0, int64_t nb) {
  const PackedLinearWeightView& w = *a.w;
  const int64_t kp = w.k_padded(), groups = w.groups(), per_group = w.group_size / 4;
  const auto* b0 = static_cast<const int8_t*>(w.data) + nb * B * kp;
  const auto* act = static_cast<const uint8_t*>(a.prepared) + m0 * kp;
  const float* as = a.row_scales + m0 * groups;
  __m256 f[MR][NB];
  #pragma GCC unroll 8
  for (int r = 0; r < MR; ++r)
    #pragma GCC unroll 4
    for (int b = 0; b < NB; ++b) f[r][b] = _mm256_setzero_ps();
  for (int64_t g = 0; g < groups; ++g) {
    __m256i acc[MR][NB];
    #pragma GCC unroll 8
    for (int r = 0; r < MR; ++r)
      #pragma GCC unroll 4
      for (int b = 0; b < NB; ++b) acc[r][b] = _mm256_setzero_si256();
    for (int64_t ch = g * per_group; ch < (g + 1) * per_group; ++ch) {
      __m256i wv[NB];
      #pragma GCC unroll 4
      for (int b = 0; b < NB; ++b) wv[b] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b0 + b * B * kp + ch * 32));
      #pragma GCC unroll 8
      for (int r = 0; r < MR; ++r) {
        const __m256i av = _mm256_set1_epi32(load_i32(act + r * kp + ch * 4));
        #pragma GCC unroll 4
        for (int b = 0; b < NB; ++b) dpbusd(acc[r][b], av, wv[b]);
      }
    }
    #pragma GCC unroll 4
    for (int b = 0; b < NB; ++b) {
      const int64_t at = ((nb + b) * groups + g) * B;
      const __m256i offset = _mm256_slli_epi32(load_cols_i32(w.sums + at, 0), 7);
      const __m256 sw = _mm256_loadu_ps(w.scales + at);
      #pragma GCC unroll 8
      for (int r = 0; r < MR; ++r) {
        f[r][b] = i8g_fold_group(_mm256_sub_epi32(acc[r][b], offset), as[r * groups + g], sw, f[r][b]);
      }
    }
  }
  #pragma GCC unroll 4
  for (int b = 0; b < NB; ++b) {
    const __m256 bias = load_cols(a.bias, nb + b, w.n);
    #pragma GCC unroll 8
    for (int r = 0; r < MR; ++r) store_cols(a.y + (m0 + r) * a.ldy, nb + b, w.n, _mm256_add_ps(f[r][b], bias));
  }
}

// One row: NB blocks with split even/odd chunk accumulators (2 * NB chains,
// for vpdpbusd's latency), as i8_row1.
template <int NB>
void i8g_row1(const IntGemmArgs& a, int64_t m0, int64_t nb) {
  const PackedLinearWeightView& w = *a.w;
  const int64_t kp = w.k_padded(), groups = w.groups(), per_group = w.group_size / 4;
  const auto* b0 = static_cast<const int8_t*>(w.data) + nb * B * kp;
  const auto* act = static_cast<const uint8_t*>(a.prepared) + m0 * kp;
  const float* as = a.row_scales + m0 * groups;
  __m256 f[NB];
#pragma GCC unroll 8
  for (int b = 0; b < NB; ++b) f[b] = _mm256_setzero_ps();
  for (int64_t g = 0; g < groups; ++g) {
    __m256i even[NB], odd[NB];
#pragma GCC unroll 8
    for (int b = 0; b < NB; ++b) even[b] = odd[b] = _mm256_setzero_si256();
    // per_group = g / 4 is even (g is a multiple of 8).
    for (int64_t ch = g * per_group; ch < (g + 1) * per_group; ch += 2) {
      const __m256i ae = _mm256_set1_epi32(load_i32(act + ch * 4));
      const __m256i ao = _mm256_set1_epi32(load_i32(act + ch * 4 + 4));
#pragma GCC unroll 8
      for (int b = 0; b < NB; ++b) {
        const int8_t* p = b0 + b * B * kp + ch * 32;
        dpbusd(even[b], ae, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
        dpbusd(odd[b], ao, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + 32)));
      }
    }
    const float sa = as[g];
#pragma GCC unroll 8
    for (int b = 0; b < NB; ++b) {
      const int64_t at = ((nb + b) * groups + g) * B;
      const __m256i offset = _mm256_slli_epi32(load_cols_i32(w.sums + at, 0), 7);
      const __m256i dot = _mm256_sub_epi32(_mm256_add_epi32(even[b], odd[b]), offset);
      f[b] = i8g_fold_group(dot, sa, _mm256_loadu_ps(w.scales + at), f[b]);
    }
  }
#pragma GCC unroll 8
  for (int b = 0; b < NB; ++b) {
    store_cols(a.y + m0 * a.ldy, nb + b, w.n, _mm256_add_ps(f[b], load_cols(a.bias, nb + b, w.n)));
  }
}

void gemm_i8g(const IntGemmArgs& a, int64_t nb_begin, int64_t nb_end) {
  const std::size_t block_bytes = a.w->data_bytes() / static_cast<std::size_t>(a.w->n_blocks());
  const int64_t pass = blocks_per_pass(block_bytes);
  for (int64_t p0 = nb_begin; p0 < nb_end; p0 += pass) {
    const int64_t p1 = std::min(nb_end, p0 + pass);
    for (int64_t m0 = 0; m0 < a.m; m0 += 4) {
      const int rows = static_cast<int>(std::min<int64_t>(4, a.m - m0));
      if (rows == 1) {
        int64_t nb = p0;
        for (; nb + 4 <= p1; nb += 4) i8g_row1<4>(a, m0, nb);
        for (; nb < p1; ++nb) i8g_row1<1>(a, m0, nb);
        continue;
      }
      for (int64_t nb = p0; nb < p1;) {
        const bool pair = nb + 1 < p1;
        switch (rows * 2 + (pair ? 1 : 0)) {
          case 9: i8g_tile<4, 2>(a, m0, nb); break;
          case 8: i8g_tile<4, 1>(a, m0, nb); break;
          case 7: i8g_tile<3, 2>(a, m0, nb); break;
          case 6: i8g_tile<3, 1>(a, m0, nb); break;
          case 5: i8g_tile<2, 2>(a, m0, nb); break;
          default: i8g_tile<2, 1>(a, m0, nb); break;
        }
        nb += pair ? 2 : 1;
      }
    }
  }
}

template <int MR>
void i4_tile(const IntGemmArgs& a, int64_t m0, int64_t nb) {
  const PackedLinearWeightView& w = *a.w;
  const int64_t kp = w.k_padded(), groups = w.groups();
  const auto* block = static_cast<const uint8_t*>(w.data) + nb * B * kp / 2;
  const float* scales = w.scales + nb * groups * B;
  const int8_t* q = a.q + m0 * kp;
  const __m256i low = _mm256_set1_epi8(0xf);
  __m256 f[MR];
  #pragma GCC unroll 8
  for (int r = 0; r < MR; ++r) f[r] = _mm256_setzero_ps();
  for (int64_t g = 0; g < groups; ++g) {
    const int64_t c0 = g * w.group_size / 8, c1 = std::min(kp, (g + 1) * w.group_size) / 8;
    // Two chains per row (low / high nibbles) halve the latency bound.
    __m256i acc[MR], acc_h[MR];
    #pragma GCC unroll 8
    for (int r = 0; r < MR; ++r) acc[r] = acc_h[r] = _mm256_setzero_si256();
    for (int64_t ch = c0; ch < c1; ++ch) {
      const __m256i p = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(block + ch * 32));
      const __m256i wl = _mm256_and_si256(p, low);
      const __m256i wh = _mm256_and_si256(_mm256_srli_epi16(p, 4), low);
      #pragma GCC unroll 8
      for (int r = 0; r < MR; ++r) {
        dpbusd(acc[r], wl, _mm256_set1_epi32(load_i32(q + r * kp + ch * 8)));
        dpbusd(acc_h[r], wh, _mm256_set1_epi32(load_i32(q + r * kp + ch * 8 + 4)));
      }
    }
    const __m256 sg = _mm256_loadu_ps(scales + g * B);
    #pragma GCC unroll 8
    for (int r = 0; r < MR; ++r) {
      f[r] = i4_fold_group(_mm256_add_epi32(acc[r], acc_h[r]), a.group_sums[(m0 + r) * groups + g], sg, f[r]);
    }
  }
  const __m256 bias = load_cols(a.bias, nb, w.n);
  #pragma GCC unroll 8
  for (int r = 0; r < MR; ++r) store_row_scaled(a, m0 + r, nb, f[r], bias);
}

void gemm_i4(const IntGemmArgs& a, int64_t nb_begin, int64_t nb_end) {
  const std::size_t block_bytes = a.w->data_bytes() / static_cast<std::size_t>(a.w->n_blocks());
  for_tiles<4>(a.m, nb_begin, nb_end, block_bytes, [&](int64_t m0, int rows, int64_t nb) {
    switch (rows) {
      case 4: i4_tile<4>(a, m0, nb); break;
      case 3: i4_tile<3>(a, m0, nb); break;
      case 2: i4_tile<2>(a, m0, nb); break;
      default: i4_tile<1>(a, m0, nb); break;
    }
  });
}

}  // namespace

// The EVEX copies serve gemm_avx512_vnni.cpp (remainder blocks, single rows, W4A8).
void MONOQUANT_VNNI256_NAME(gemm_i8)(const IntGemmArgs& a, int64_t nb_begin, int64_t nb_end) {
  gemm_i8(a, nb_begin, nb_end);
}
void MONOQUANT_VNNI256_NAME(gemm_i4)(const IntGemmArgs& a, int64_t nb_begin, int64_t nb_end) {
  gemm_i4(a, nb_begin, nb_end);
}
void MONOQUANT_VNNI256_NAME(prepare_u8)(const int8_t* q, int64_t n, int32_t zp, void* out) {
  prepare_u8(q, n, zp, out);
}
void MONOQUANT_VNNI256_NAME(gemm_i8g)(const IntGemmArgs& a, int64_t nb_begin, int64_t nb_end) {
  gemm_i8g(a, nb_begin, nb_end);
}

#if !MONOQUANT_VNNI256_EVEX
const LinearKernels& avx2_vnni_linear_kernels() {
  static const LinearKernels table{"avx2_vnni", avx2_gemm_float, gemm_i8, gemm_i4, 1, prepare_u8, gemm_i8g};
  return table;
}
#endif

}  // namespace monoquant::kernels

#undef MONOQUANT_VNNI256_NAME
