// Pieces shared by the AVX2 linear kernel files (gemm_avx2.cpp,
// gemm_avx2_vnni.cpp, gemm_avx512_vnni.cpp). Include only from files compiled
// with at least -mavx2 -mfma. Everything here has internal linkage (an
// anonymous namespace): those files are compiled with different -m flags, and
// an inline function with external linkage would let the linker keep one
// copy — possibly the AVX-512-encoded one — for all of them.
#pragma once

#include <immintrin.h>

#include <algorithm>
#include <cstdint>
#include <cstring>

#include "kernels/gemm.hpp"

namespace monoquant::kernels::avx2 {
namespace {

inline constexpr int64_t B = kLinearBlockN;

// Loads the 8 values of block nb from v (length n), zero beyond n.
inline __m256 load_cols(const float* v, int64_t nb, int64_t n) {
  if (v == nullptr) return _mm256_setzero_ps();
  const int64_t c0 = nb * B;
  if (c0 + B <= n) return _mm256_loadu_ps(v + c0);
  alignas(32) float t[B] = {};
  std::memcpy(t, v + c0, static_cast<std::size_t>(n - c0) * sizeof(float));
  return _mm256_load_ps(t);
}

inline __m256i load_cols_i32(const int32_t* v, int64_t nb) {
  return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(v + nb * B));
}

// Stores the 8 columns of block nb into row y (length n).
inline void store_cols(float* y, int64_t nb, int64_t n, __m256 v) {
  const int64_t c0 = nb * B;
  if (c0 + B <= n) {
    _mm256_storeu_ps(y + c0, v);
    return;
  }
  alignas(32) float t[B];
  _mm256_store_ps(t, v);
  std::memcpy(y + c0, t, static_cast<std::size_t>(n - c0) * sizeof(float));
}

// Lanes of an accumulator hold [column a: k%4 = 0..3 | column b: k%4 = 0..3];
// four of them cover a block. Folds them to the 8 column sums.
inline __m256 reduce_partials(const __m256 acc[4]) {
  const __m256 h1 = _mm256_hadd_ps(acc[0], acc[1]);  // c0 c0 c2 c2 | c1 c1 c3 c3
  const __m256 h2 = _mm256_hadd_ps(acc[2], acc[3]);  // c4 c4 c6 c6 | c5 c5 c7 c7
  const __m256 h = _mm256_hadd_ps(h1, h2);           // c0 c2 c4 c6 | c1 c3 c5 c7
  return _mm256_permutevar8x32_ps(h, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

// From this many rows on, the AVX2 float-activation kernel decodes weights
// into an L1 tile shared by all rows (gemm_avx2.cpp, "many rows").
inline constexpr int64_t kAvx2PanelMinRows = 4;

// Blocks processed together per row tile so that their weights stay in L2
// while every row tile of the activations passes over them.
// int4 x int8 (W4A8): the packed nibbles are q_w + 8, so a group's integer
// sum is sum (q_w + 8) q_a; removing 8 * sum q_a leaves sum q_w q_a, which is
// scaled by the group's column scales and added to the float accumulator.
inline __m256 i4_fold_group(__m256i acc, int32_t act_group_sum, __m256 group_scales, __m256 f) {
  const __m256i exact = _mm256_sub_epi32(acc, _mm256_set1_epi32(8 * act_group_sum));
  return _mm256_fmadd_ps(_mm256_cvtepi32_ps(exact), group_scales, f);
}

// W8A8 with activation groups: one group's exact int32 dot products of 8
// columns folded into the float accumulator, the reference's roundings:
// f = fma(float(dot), act_scale * col_scales, f).
inline __m256 i8g_fold_group(__m256i dot, float act_scale, __m256 col_scales, __m256 f) {
  return _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot), _mm256_mul_ps(_mm256_set1_ps(act_scale), col_scales), f);
}

// Output row `row` of block nb: y = f * (the row's activation scale) + bias.
inline void store_row_scaled(const IntGemmArgs& a, int64_t row, int64_t nb, __m256 f, __m256 bias) {
  store_cols(a.y + row * a.ldy, nb, a.w->n, _mm256_fmadd_ps(f, _mm256_set1_ps(a.row_scales[row]), bias));
}

inline int64_t blocks_per_pass(std::size_t block_bytes, std::size_t pass_bytes = 512u << 10) {
  return std::max<int64_t>(1, static_cast<int64_t>(pass_bytes / std::max<std::size_t>(block_bytes, 1)));
}

// W8A8 epilogue: y = fma(float(acc), row_scale * col_scale, bias), the
// reference's exact sequence of roundings.
inline __m256 epilogue_i8(__m256i acc, float row_scale, __m256 col_scales, __m256 bias) {
  return _mm256_fmadd_ps(_mm256_cvtepi32_ps(acc), _mm256_mul_ps(_mm256_set1_ps(row_scale), col_scales), bias);
}

inline int32_t load_i32(const void* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

inline int64_t load_i64(const void* p) {
  int64_t v;
  std::memcpy(&v, p, 8);
  return v;
}

// The W8A8 epilogue of rows m0 .. m0 + MR - 1 of block nb whose int32 sums
// took the activations as u = q + 128: (128 + zp) times the column sums
// comes off first.
template <int MR>
inline void store_offset_rows(const IntGemmArgs& a, int64_t m0, int64_t nb, const __m256i* acc) {
  const PackedLinearWeightView& w = *a.w;
  const __m256i offset = _mm256_mullo_epi32(_mm256_set1_epi32(128 + a.zero_point), load_cols_i32(w.sums, nb));
  const __m256 bias = load_cols(a.bias, nb, w.n);
  const __m256 cs = load_cols(w.scales, nb, w.n);
  #pragma GCC unroll 8
  for (int r = 0; r < MR; ++r) {
    store_cols(a.y + (m0 + r) * a.ldy, nb, w.n,
               epilogue_i8(_mm256_sub_epi32(acc[r], offset), a.row_scales[m0 + r], cs, bias));
  }
}

// The unsigned form of n activation codes, u = q + 128 (the operand of
// vpdpbusd, and of vpmaddubsw on narrow weights); the zero point goes with
// the column sums.
inline void prepare_u8(const int8_t* q, int64_t n, int32_t, void* prepared) {
  auto* out = static_cast<uint8_t*>(prepared);
  const __m256i flip = _mm256_set1_epi8(static_cast<char>(0x80));
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(q + i));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + i), _mm256_xor_si256(v, flip));
  }
  for (; i < n; ++i) out[i] = static_cast<uint8_t>(q[i] + 128);
}

// Drives a W8A8-style row-tile kernel over blocks [nb_begin, nb_end):
// tile(m0, rows, nb) for row tiles of at most MR rows.
template <int MR, class Tile>
void for_tiles(int64_t m, int64_t nb_begin, int64_t nb_end, std::size_t block_bytes, const Tile& tile,
               std::size_t pass_bytes = 512u << 10) {
  const int64_t pass = blocks_per_pass(block_bytes, pass_bytes);
  for (int64_t p0 = nb_begin; p0 < nb_end; p0 += pass) {
    const int64_t p1 = std::min(nb_end, p0 + pass);
    for (int64_t m0 = 0; m0 < m; m0 += MR) {
      const int rows = static_cast<int>(std::min<int64_t>(MR, m - m0));
      for (int64_t nb = p0; nb < p1; ++nb) tile(m0, rows, nb);
    }
  }
}

}  // namespace
}  // namespace monoquant::kernels::avx2
