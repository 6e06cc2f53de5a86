// AVX-512 kernels: W8A8 on 512-bit vpdpbusd, and the float-activation
// (weight-only) kernels for few rows. Compiled with
// -mavx512f -mavx512bw -mavx512vl -mavx512vnni (this file only) and chosen at
// run time only where the CPU has them. On CPUs such as Sapphire Rapids one
// 512-bit vpdpbusd does the work of two 256-bit ones in the same slot, which
// is what the compute-bound shapes (M >= 8) need. Everything else (other
// float activations, W4A8, single rows, remainder blocks) is the AVX2 code and
// the 256-bit VNNI code in its EVEX encoding (gemm_avx512_vnni256.cpp). Exactness is the same argument as gemm_avx2_vnni.cpp: u8 x s8
// products summed in int32 without an int16 stage, offset removed with the
// packed column sums.
#include <algorithm>
#include <vector>

#include "kernels/bf16_panels.hpp"
#include "kernels/gemm_avx2_common.hpp"
#include "monoquant/cpu_features.hpp"

namespace monoquant::kernels {

void avx2_gemm_float(const FloatGemmArgs& a, int64_t nb_begin, int64_t nb_end);
void avx2_decode_tile(const PackedLinearWeightView& w, int64_t nb, int64_t k0, int64_t len, float* tile, int64_t ld);
// gemm_avx512_vnni256.cpp: the 256-bit kernels in the EVEX encoding, so that
// this set needs AVX-512 VNNI only, not AVX-VNNI as well.
void avx512_vnni256_gemm_i8(const IntGemmArgs& a, int64_t nb_begin, int64_t nb_end);
void avx512_vnni256_gemm_i4(const IntGemmArgs& a, int64_t nb_begin, int64_t nb_end);
void avx512_vnni256_prepare_u8(const int8_t* q, int64_t n, int32_t zp, void* out);
void avx512_vnni256_gemm_i8g(const IntGemmArgs& a, int64_t nb_begin, int64_t nb_end);
// gemm_avx512_bf16.cpp: weight-only on vdpbf16ps, reading FloatGemmArgs::xb.
void avx512_bf16_gemm_float(const FloatGemmArgs& a, int64_t nb_begin, int64_t nb_end);

namespace {

using namespace avx2;

// acc += u8(a) . s8(b). Written as asm with acc tied in place: with the
// intrinsic, GCC 12 copies every accumulator to a new register on each
// iteration of the unrolled tile and spills some to the stack.
inline void dpbusd(__m512i& acc, __m512i a, __m512i b) {
#if defined(__GNUC__) && !defined(__clang__)
  asm("vpdpbusd %2, %1, %0" : "+v"(acc) : "v"(a), "v"(b));
#else
  acc = _mm512_dpbusd_epi32(acc, a, b);
#endif
}

// Rows [m0, m0 + MR) x blocks [nb, nb + 4): each zmm of weights holds chunk
// ch of two neighbouring blocks (lanes 0-7 and 8-15).
template <int MR>
void i8_tile4(const IntGemmArgs& a, int64_t m0, int64_t nb) {
  const PackedLinearWeightView& w = *a.w;
  const int64_t kp = w.k_padded(), chunks = kp / 4, stride = B * kp;
  const auto* b0 = static_cast<const int8_t*>(w.data) + nb * stride;
  const auto* act = static_cast<const uint8_t*>(a.prepared) + m0 * kp;
  __m512i acc0[MR], acc1[MR];
#pragma GCC unroll 8
  for (int r = 0; r < MR; ++r) acc0[r] = acc1[r] = _mm512_setzero_si512();
  for (int64_t ch = 0; ch < chunks; ++ch) {
    const int8_t* p = b0 + ch * 32;
    const __m512i w01 = _mm512_inserti64x4(
        _mm512_castsi256_si512(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p))),
        _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + stride)), 1);
    const __m512i w23 = _mm512_inserti64x4(
        _mm512_castsi256_si512(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + 2 * stride))),
        _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + 3 * stride)), 1);
#pragma GCC unroll 8
    for (int r = 0; r < MR; ++r) {
      const __m512i av = _mm512_set1_epi32(load_i32(act + r * kp + ch * 4));
      dpbusd(acc0[r], av, w01);
      dpbusd(acc1[r], av, w23);
    }
  }
#pragma GCC unroll 4
  for (int b = 0; b < 4; ++b) {
    const int64_t blk = nb + b;
    const __m256i offset = _mm256_mullo_epi32(_mm256_set1_epi32(128 + a.zero_point), load_cols_i32(w.sums, blk));
    const __m256 bias = load_cols(a.bias, blk, w.n);
    const __m256 cs = load_cols(w.scales, blk, w.n);
#pragma GCC unroll 8
    for (int r = 0; r < MR; ++r) {
      const __m512i both = b < 2 ? acc0[r] : acc1[r];
      const __m256i acc = (b % 2) ? _mm512_extracti64x4_epi64(both, 1) : _mm512_castsi512_si256(both);
      store_cols(a.y + (m0 + r) * a.ldy, blk, w.n,
                 epilogue_i8(_mm256_sub_epi32(acc, offset), a.row_scales[m0 + r], cs, bias));
    }
  }
}

// ------------------------------------------------------------ W4 weight-only, few rows
// Two neighbouring blocks side by side in one zmm: lane c (0-15) is column
// c of the pair, and its 32-bit word holds that column's 8 nibbles of a
// chunk (byte j: k = 8ch + j low, k = 8ch + 4 + j high). Nibble i is
// brought to the bottom of the lane by a shift, and vpermps, which reads
// only the low 4 bits of each index, maps it to the float u - 8 through a
// 16-entry table: decoding 16 weights costs one shift and one permute, with
// no masking and no int-to-float conversion. The products with x are summed
// per group and scaled once per group: y = sum_g s_g * sum_k x_k (u_k - 8).
// (AVX2's vpermps has 8 entries, which is why this path is 512-bit only.)
// 256-bit halves of a zmm of floats (AVX-512F only: the 32x8 forms need DQ).
inline __m512 join(__m256 lo, __m256 hi) {
  return _mm512_castpd_ps(_mm512_insertf64x4(_mm512_castpd256_pd512(_mm256_castps_pd(lo)), _mm256_castps_pd(hi), 1));
}
inline __m256 high_half(__m512 v) { return _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)); }

constexpr int kI4Shift[8] = {0, 8, 16, 24, 4, 12, 20, 28};  // nibble of k = 8ch + i

template <int MR>
void float_i4_pair(const FloatGemmArgs& a, int64_t m0, int64_t nb) {
  const PackedLinearWeightView& w = *a.w;
  const int64_t k = w.k, kp = w.k_padded(), groups = w.groups(), stride = B * kp / 2;
  const auto* block = static_cast<const uint8_t*>(w.data) + nb * stride;
  const float* s0 = w.scales + nb * groups * B;
  const float* s1 = s0 + groups * B;
  const __m512 lut = _mm512_setr_ps(-8, -7, -6, -5, -4, -3, -2, -1, 0, 1, 2, 3, 4, 5, 6, 7);
  // Independent FMA chains: a single row needs several to hide the latency.
  constexpr int A = MR == 1 ? 4 : 2;
  __m512 out[MR];
  #pragma GCC unroll 4
  for (int r = 0; r < MR; ++r) out[r] = _mm512_setzero_ps();
  const float* x = a.x + m0 * a.ldx;
  alignas(64) float tail[MR][8];  // the last chunk's x, zero past K
  for (int64_t g = 0; g < groups; ++g) {
    const int64_t c0 = g * w.group_size / 8, c1 = std::min(kp, (g + 1) * w.group_size) / 8;
    __m512 acc[MR][A];
    #pragma GCC unroll 4
    for (int r = 0; r < MR; ++r)
      #pragma GCC unroll 4
      for (int j = 0; j < A; ++j) acc[r][j] = _mm512_setzero_ps();
    for (int64_t ch = c0; ch < c1; ++ch) {
      const uint8_t* p = block + ch * 32;
      const __m512i v = _mm512_inserti64x4(
          _mm512_castsi256_si512(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p))),
          _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + stride)), 1);
      const float* xr[MR];
      if (ch * 8 + 8 <= k) {
        #pragma GCC unroll 4
        for (int r = 0; r < MR; ++r) xr[r] = x + r * a.ldx + ch * 8;
      } else {
        #pragma GCC unroll 4
        for (int r = 0; r < MR; ++r) {
          for (int i = 0; i < 8; ++i) tail[r][i] = ch * 8 + i < k ? x[r * a.ldx + ch * 8 + i] : 0.0f;
          xr[r] = tail[r];
        }
      }
      #pragma GCC unroll 8
      for (int i = 0; i < 8; ++i) {
        const __m512 wv = _mm512_permutexvar_ps(i == 0 ? v : _mm512_srli_epi32(v, kI4Shift[i]), lut);
        #pragma GCC unroll 4
        for (int r = 0; r < MR; ++r) acc[r][i % A] = _mm512_fmadd_ps(_mm512_set1_ps(xr[r][i]), wv, acc[r][i % A]);
      }
    }
    const __m512 sg = join(_mm256_loadu_ps(s0 + g * B), _mm256_loadu_ps(s1 + g * B));
    #pragma GCC unroll 4
    for (int r = 0; r < MR; ++r) {
      __m512 sum = acc[r][0];
      #pragma GCC unroll 4
      for (int j = 1; j < A; ++j) sum = _mm512_add_ps(sum, acc[r][j]);
      out[r] = _mm512_fmadd_ps(sum, sg, out[r]);
    }
  }
  const __m256 bias0 = load_cols(a.bias, nb, w.n), bias1 = load_cols(a.bias, nb + 1, w.n);
  #pragma GCC unroll 4
  for (int r = 0; r < MR; ++r) {
    float* y = a.y + (m0 + r) * a.ldy;
    store_cols(y, nb, w.n, _mm256_add_ps(_mm512_castps512_ps256(out[r]), bias0));
    store_cols(y, nb + 1, w.n, _mm256_add_ps(high_half(out[r]), bias1));
  }
}

// ------------------------------------------------------------ int8 / f16 / bf16 weight-only, few rows
// A block's chunk of 4 k is 32 weights (8 columns x 4 k): two zmm of 16
// floats, lanes [column c: k%4 = 0..3] for columns 0-3 and 4-7, each met by
// x[4ch .. 4ch+3] repeated four times (one vbroadcastf32x4). Decoding 16
// weights is one widening load plus, for int8, one conversion; two blocks
// per call give four accumulators per row. Lane partials are folded with
// the AVX2 reduce_partials at the end.
struct DecodeI8x16 {
  static __m512 at(const void* p) {
    return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(static_cast<const __m128i*>(p))));
  }
  static constexpr int bytes = 1;
};
struct DecodeF16x16 {
  static __m512 at(const void* p) { return _mm512_cvtph_ps(_mm256_loadu_si256(static_cast<const __m256i*>(p))); }
  static constexpr int bytes = 2;
};
struct DecodeBF16x16 {
  static __m512 at(const void* p) {
    const __m512i v = _mm512_cvtepu16_epi32(_mm256_loadu_si256(static_cast<const __m256i*>(p)));
    return _mm512_castsi512_ps(_mm512_slli_epi32(v, 16));
  }
  static constexpr int bytes = 2;
};

// x[k0 .. k0+3] in all four 128-bit lanes; zero past k.
inline __m512 load_x4x4(const float* x, int64_t k0, int64_t k) {
  const int64_t valid = std::clamp<int64_t>(k - k0, 0, 4);
  const __m128 v = valid == 4 ? _mm_loadu_ps(x + k0) : _mm_maskz_loadu_ps(static_cast<__mmask8>((1u << valid) - 1), x + k0);
  return _mm512_broadcast_f32x4(v);
}

template <int MR, class Decode>
void float_pair4(const FloatGemmArgs& a, int64_t m0, int64_t nb) {
  const PackedLinearWeightView& w = *a.w;
  const int64_t k = w.k, chunks = w.k_padded() / 4, full = k / 4, stride = B * w.k_padded() * Decode::bytes;
  const auto* block = static_cast<const uint8_t*>(w.data) + nb * stride;
  __m512 acc[MR][4];
  #pragma GCC unroll 4
  for (int r = 0; r < MR; ++r)
    #pragma GCC unroll 4
    for (int j = 0; j < 4; ++j) acc[r][j] = _mm512_setzero_ps();
  const float* x = a.x + m0 * a.ldx;
  for (int64_t ch = 0; ch < chunks; ++ch) {
    const uint8_t* p = block + ch * 32 * Decode::bytes;
    __m512 wv[4];
    #pragma GCC unroll 4
    for (int j = 0; j < 4; ++j) wv[j] = Decode::at(p + (j / 2) * stride + (j % 2) * 16 * Decode::bytes);
    #pragma GCC unroll 4
    for (int r = 0; r < MR; ++r) {
      const __m512 xv = ch < full ? _mm512_broadcast_f32x4(_mm_loadu_ps(x + r * a.ldx + ch * 4))
                                  : load_x4x4(x + r * a.ldx, ch * 4, k);
      #pragma GCC unroll 4
      for (int j = 0; j < 4; ++j) acc[r][j] = _mm512_fmadd_ps(xv, wv[j], acc[r][j]);
    }
  }
  #pragma GCC unroll 2
  for (int b = 0; b < 2; ++b) {
    const __m256 bias = load_cols(a.bias, nb + b, w.n);
    const __m256 scale = w.format == WeightFormat::int8 ? load_cols(w.scales, nb + b, w.n) : _mm256_set1_ps(1.0f);
    #pragma GCC unroll 4
    for (int r = 0; r < MR; ++r) {
      const __m256 parts[4] = {_mm512_castps512_ps256(acc[r][2 * b]), high_half(acc[r][2 * b]),
                               _mm512_castps512_ps256(acc[r][2 * b + 1]), high_half(acc[r][2 * b + 1])};
      __m256 s = reduce_partials(parts);
      // The reference rounds the scaled sum and then adds the bias: no fma.
      if (w.format == WeightFormat::int8) s = _mm256_mul_ps(s, scale);
      store_cols(a.y + (m0 + r) * a.ldy, nb + b, w.n, _mm256_add_ps(s, bias));
    }
  }
}

template <int MR>
void float_pair(const FloatGemmArgs& a, int64_t m0, int64_t nb) {
  switch (a.w->format) {
    case WeightFormat::int4: float_i4_pair<MR>(a, m0, nb); break;
    case WeightFormat::int8: float_pair4<MR, DecodeI8x16>(a, m0, nb); break;
    case WeightFormat::f16: float_pair4<MR, DecodeF16x16>(a, m0, nb); break;
    case WeightFormat::bf16: float_pair4<MR, DecodeBF16x16>(a, m0, nb); break;
  }
}

// ------------------------------------------------------------ float activations, many rows
// As the AVX2 panel (gemm_avx2.cpp): weights decoded once per slice of K
// into an L1 tile that every row tile reads, partial sums waiting in y
// between slices, but 4 blocks (32 columns) per tile, stored as two
// 16-column halves (ld = 16) so that each k is two zmm loads. Row tiles of
// up to 6 rows: 12 accumulators, 12 FMAs per 2 loads and 6 broadcasts. (8
// or 12 rows would be better on paper; GCC 12 kept their accumulators on
// the stack, allocating only zmm0-15 here, whatever the source shape.)
// The slice of x is first copied per row tile as xp[k][rows], so that the
// broadcasts are constant offsets from one pointer.
constexpr int64_t kPanelK = 256;
constexpr int kPanelRows = 6;

// Panel column order (0 2 4 6 1 3 5 7 in each half) -> natural order.
// A function, not a namespace-scope constant: that would be built by a static
// initializer running AVX-512 at program start on every CPU.
inline __m512i from_panel() { return _mm512_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7, 8, 12, 9, 13, 10, 14, 11, 15); }

// acc += a * b, as asm with acc tied in place for the reason given at
// dpbusd (with the intrinsic GCC 12 spilled more of this kernel).
inline void fma_in_place(__m512& acc, __m512 a, __m512 b) {
#if defined(__GNUC__) && !defined(__clang__)
  asm("vfmadd231ps %2, %1, %0" : "+v"(acc) : "v"(a), "v"(b));
#else
  acc = _mm512_fmadd_ps(a, b, acc);
#endif
}

// Rows [m0, m0 + MR) x blocks [nb, nb + 4) over k in [k0, k0 + len); xp is
// this row tile's copy of x, xp[i * MR + r] = x[m0 + r][k0 + i].
// noinline: inlined into gemm_float_panel with all its siblings, GCC 12
// kept the accumulators on the stack.
template <int MR>
__attribute__((noinline)) void panel_kernel(const FloatGemmArgs& a, int64_t m0, int64_t nb, int64_t len, bool first,
                                            bool last, const float* tile, const float* xp) {
  const PackedLinearWeightView& w = *a.w;
  // Two arrays of MR, not one [MR][2]: GCC scalarizes arrays into registers
  // only up to a size, and 24 zmm in one array stayed on the stack.
  __m512 acc0[MR], acc1[MR];
  #pragma GCC unroll 16
  for (int r = 0; r < MR; ++r) acc0[r] = acc1[r] = _mm512_setzero_ps();
  for (int64_t i = 0; i < len; ++i) {
    const __m512 t0 = _mm512_load_ps(tile + i * 16);
    const __m512 t1 = _mm512_load_ps(tile + (kPanelK + i) * 16);
    const float* xi = xp + i * MR;
    #pragma GCC unroll 16
    for (int r = 0; r < MR; ++r) {
      const __m512 xv = _mm512_set1_ps(xi[r]);
      fma_in_place(acc0[r], xv, t0);
      fma_in_place(acc1[r], xv, t1);
    }
  }
  #pragma GCC unroll 4
  for (int b = 0; b < 4; ++b) {
    const __m256 bias = last ? load_cols(a.bias, nb + b, w.n) : _mm256_setzero_ps();
    const __m256 scale =
        last && w.format == WeightFormat::int8 ? load_cols(w.scales, nb + b, w.n) : _mm256_set1_ps(1.0f);
    #pragma GCC unroll 16
    for (int r = 0; r < MR; ++r) {
      const __m512 v = _mm512_permutexvar_ps(from_panel(), b < 2 ? acc0[r] : acc1[r]);
      __m256 s = b % 2 ? high_half(v) : _mm512_castps512_ps256(v);
      float* y = a.y + (m0 + r) * a.ldy;
      if (!first) s = _mm256_add_ps(s, load_cols(y, nb + b, w.n));  // earlier slices of K
      if (last) {
        // The reference rounds the scaled sum and then adds the bias: no fma.
        if (w.format == WeightFormat::int8) s = _mm256_mul_ps(s, scale);
        s = _mm256_add_ps(s, bias);
      }
      store_cols(y, nb + b, w.n, s);
    }
  }
}

// Row tiles of at most kPanelRows rows, evened out as in the AVX2 panel;
// calls fn(m0, rows) for each.
template <class Fn>
void for_row_tiles(int64_t m, const Fn& fn) {
  int64_t tiles = (m + kPanelRows - 1) / kPanelRows;
  for (int64_t m0 = 0, rows = 0; m0 < m; m0 += rows, --tiles) {
    rows = (m - m0 + tiles - 1) / tiles;
    fn(m0, static_cast<int>(rows));
  }
}

template <int MR>
void panel_tile(const FloatGemmArgs& a, int64_t m0, int rows, int64_t nb, int64_t len, bool first, bool last,
                const float* tile, const float* xp) {
  if constexpr (MR > 1) {
    if (rows < MR) return panel_tile<MR - 1>(a, m0, rows, nb, len, first, last, tile, xp);
  }
  panel_kernel<MR>(a, m0, nb, len, first, last, tile, xp);
}

// Blocks [nb_begin, nb_end) in groups of 4 (the caller sends the rest to
// AVX2): per slice of K, x is copied once, then each group of blocks is
// decoded and every row tile passes over it.
void gemm_float_panel_rows(const FloatGemmArgs& a, int64_t nb_begin, int64_t nb_end, float* xp) {
  const PackedLinearWeightView& w = *a.w;
  alignas(64) float tile[2 * kPanelK * 16];  // 32 KB: [half][k][16]
  for (int64_t k0 = 0; k0 < w.k; k0 += kPanelK) {
    const int64_t len = std::min(kPanelK, w.k - k0);
    for_row_tiles(a.m, [&](int64_t m0, int rows) {
      float* dst = xp + m0 * len;
      for (int r = 0; r < rows; ++r) {
        const float* src = a.x + (m0 + r) * a.ldx + k0;
        for (int64_t i = 0; i < len; ++i) dst[i * rows + r] = src[i];
      }
    });
    const int64_t step = w.k_chunk(), decode_len = (len + step - 1) / step * step;
    const bool first = k0 == 0, last = k0 + kPanelK >= w.k;
    for (int64_t nb = nb_begin; nb + 4 <= nb_end; nb += 4) {
      #pragma GCC unroll 4
      for (int b = 0; b < 4; ++b) {
        avx2_decode_tile(w, nb + b, k0, decode_len, tile + (b / 2) * kPanelK * 16 + (b % 2) * 8, 16);
      }
      for_row_tiles(a.m, [&](int64_t m0, int rows) {
        panel_tile<kPanelRows>(a, m0, rows, nb, len, first, last, tile, xp + m0 * len);
      });
    }
  }
}

// At most this many rows at a time (conv2d's im2col can bring tens of
// thousands): bounds the x copy at 1 MB per thread.
constexpr int64_t kPanelMaxRows = 1024;

void gemm_float_panel(const FloatGemmArgs& a, int64_t nb_begin, int64_t nb_end) {
  thread_local std::vector<float> xp;
  xp.resize(static_cast<std::size_t>(std::min(a.m, kPanelMaxRows) * kPanelK));
  for (int64_t r0 = 0; r0 < a.m; r0 += kPanelMaxRows) {
    FloatGemmArgs part = a;
    part.x = a.x + r0 * a.ldx;
    part.y = a.y + r0 * a.ldy;
    part.m = std::min(kPanelMaxRows, a.m - r0);
    gemm_float_panel_rows(part, nb_begin, nb_end, xp.data());
  }
}

// Float activations: fewer rows than the panel takes (M < 4) go through the
// block-pair kernels above, more rows through the 512-bit panel; a remainder
// of blocks goes to the AVX2 code.
// Below this many rows the lane-partial kernels (3 rows per pass over
// weights that stay in cache) beat the panel: measured at M = 4 to 7.
constexpr int64_t kPanelMinRows = 8;

void gemm_float(const FloatGemmArgs& a, int64_t nb_begin, int64_t nb_end) {
  if (a.m >= kPanelMinRows) {
    const int64_t quads_end = nb_begin + (nb_end - nb_begin) / 4 * 4;
    gemm_float_panel(a, nb_begin, quads_end);
    if (quads_end < nb_end) avx2_gemm_float(a, quads_end, nb_end);
    return;
  }
  if (nb_end - nb_begin < 2) {
    avx2_gemm_float(a, nb_begin, nb_end);
    return;
  }
  const int64_t pairs_end = nb_begin + (nb_end - nb_begin) / 2 * 2;
  const std::size_t block_bytes = a.w->data_bytes() / static_cast<std::size_t>(a.w->n_blocks());
  const int64_t pass = std::max<int64_t>(2, blocks_per_pass(block_bytes) / 2 * 2);
  for (int64_t p0 = nb_begin; p0 < pairs_end; p0 += pass) {
    const int64_t p1 = std::min(pairs_end, p0 + pass);
    for (int64_t m0 = 0; m0 < a.m; m0 += 3) {
      const int rows = static_cast<int>(std::min<int64_t>(3, a.m - m0));
      for (int64_t nb = p0; nb < p1; nb += 2) {
        switch (rows) {
          case 3: float_pair<3>(a, m0, nb); break;
          case 2: float_pair<2>(a, m0, nb); break;
          default: float_pair<1>(a, m0, nb); break;
        }
      }
    }
  }
  if (pairs_end < nb_end) avx2_gemm_float(a, pairs_end, nb_end);
}

void gemm_i8(const IntGemmArgs& a, int64_t nb_begin, int64_t nb_end) {
  const int64_t groups_end = nb_begin + (nb_end - nb_begin) / 4 * 4;
  if (a.m < 2 || groups_end == nb_begin) {
    avx512_vnni256_gemm_i8(a, nb_begin, nb_end);
    return;
  }
  const std::size_t block_bytes = a.w->data_bytes() / static_cast<std::size_t>(a.w->n_blocks());
  const int64_t pass = std::max<int64_t>(4, blocks_per_pass(block_bytes) / 4 * 4);
  for (int64_t p0 = nb_begin; p0 < groups_end; p0 += pass) {
    const int64_t p1 = std::min(groups_end, p0 + pass);
    // Row tiles of up to 8 rows: 16 accumulators, enough independent
    // vpdpbusd chains to cover its latency at two per cycle, and 16
    // vpdpbusd for every 2 weight inserts. Tiles are evened out (8 + 8 + 4
    // would leave a short last tile: 7 + 7 + 6 instead).
    int64_t tiles = (a.m + 7) / 8;
    for (int64_t m0 = 0, rows = 0; m0 < a.m; m0 += rows, --tiles) {
      rows = (a.m - m0 + tiles - 1) / tiles;
      for (int64_t nb = p0; nb < p1; nb += 4) {
        switch (rows) {
          case 8: i8_tile4<8>(a, m0, nb); break;
          case 7: i8_tile4<7>(a, m0, nb); break;
          case 6: i8_tile4<6>(a, m0, nb); break;
          case 5: i8_tile4<5>(a, m0, nb); break;
          case 4: i8_tile4<4>(a, m0, nb); break;
          case 3: i8_tile4<3>(a, m0, nb); break;
          case 2: i8_tile4<2>(a, m0, nb); break;
          default: i8_tile4<1>(a, m0, nb); break;
        }
      }
    }
  }
  if (groups_end < nb_end) avx512_vnni256_gemm_i8(a, groups_end, nb_end);
}

// ------------------------------------------------------------ W8A8 with activation groups
// As i8_tile4 (rows [m0, m0 + MR) x blocks [nb, nb + 4), two blocks per zmm),
// with the int32 sums reset per group and folded per group into float
// accumulators, 16 lanes at a time: dot_g = sum u w - 128 sum_g w,
// f = fma(float(dot_g), s_act * s_w, f); y = f + bias per 8-column half.
// Lane for lane the same roundings as the reference. At most 4 rows: 8 int
// and 8 float accumulators.
inline __m512i join_i32(const int32_t* lo, const int32_t* hi) {
  return _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(lo))),
                            _mm256_loadu_si256(reinterpret_cast<const __m256i*>(hi)), 1);
}

template <int MR>
void i8g_tile4(const IntGemmArgs& a, int64_t m0, int64_t nb) {
  const PackedLinearWeightView& w = *a.w;
  const int64_t kp = w.k_padded(), stride = B * kp, groups = w.groups(), per_group = w.group_size / 4;
  const auto* b0 = static_cast<const int8_t*>(w.data) + nb * stride;
  const auto* act = static_cast<const uint8_t*>(a.prepared) + m0 * kp;
  const float* as = a.row_scales + m0 * groups;
  const int64_t gs = groups * B;  // distance between one block's and the next block's group scales
  const float* ws = w.scales + nb * gs;
  const int32_t* sums = w.sums + nb * gs;
  __m512 f01[MR], f23[MR];
#pragma GCC unroll 8
  for (int r = 0; r < MR; ++r) f01[r] = f23[r] = _mm512_setzero_ps();
  for (int64_t g = 0; g < groups; ++g) {
    __m512i acc0[MR], acc1[MR];
#pragma GCC unroll 8
    for (int r = 0; r < MR; ++r) acc0[r] = acc1[r] = _mm512_setzero_si512();
    for (int64_t ch = g * per_group; ch < (g + 1) * per_group; ++ch) {
      const int8_t* p = b0 + ch * 32;
      const __m512i w01 = _mm512_inserti64x4(
          _mm512_castsi256_si512(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p))),
          _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + stride)), 1);
      const __m512i w23 = _mm512_inserti64x4(
          _mm512_castsi256_si512(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + 2 * stride))),
          _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + 3 * stride)), 1);
#pragma GCC unroll 8
      for (int r = 0; r < MR; ++r) {
        const __m512i av = _mm512_set1_epi32(load_i32(act + r * kp + ch * 4));
        dpbusd(acc0[r], av, w01);
        dpbusd(acc1[r], av, w23);
      }
    }
    const int64_t at = g * B;
    const __m512i off01 = _mm512_slli_epi32(join_i32(sums + at, sums + gs + at), 7);
    const __m512i off23 = _mm512_slli_epi32(join_i32(sums + 2 * gs + at, sums + 3 * gs + at), 7);
    const __m512 sw01 = join(_mm256_loadu_ps(ws + at), _mm256_loadu_ps(ws + gs + at));
    const __m512 sw23 = join(_mm256_loadu_ps(ws + 2 * gs + at), _mm256_loadu_ps(ws + 3 * gs + at));
#pragma GCC unroll 8
    for (int r = 0; r < MR; ++r) {
      const __m512 sa = _mm512_set1_ps(as[r * groups + g]);
      f01[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(acc0[r], off01)), _mm512_mul_ps(sa, sw01), f01[r]);
      f23[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(acc1[r], off23)), _mm512_mul_ps(sa, sw23), f23[r]);
    }
  }
#pragma GCC unroll 4
  for (int b = 0; b < 4; ++b) {
    const int64_t blk = nb + b;
    const __m256 bias = load_cols(a.bias, blk, w.n);
#pragma GCC unroll 8
    for (int r = 0; r < MR; ++r) {
      const __m512 both = b < 2 ? f01[r] : f23[r];
      const __m256 f = (b % 2) ? high_half(both) : _mm512_castps512_ps256(both);
      store_cols(a.y + (m0 + r) * a.ldy, blk, w.n, _mm256_add_ps(f, bias));
    }
  }
}

void gemm_i8g(const IntGemmArgs& a, int64_t nb_begin, int64_t nb_end) {
  const int64_t groups_end = nb_begin + (nb_end - nb_begin) / 4 * 4;
  if (a.m < 2 || groups_end == nb_begin) {
    avx512_vnni256_gemm_i8g(a, nb_begin, nb_end);
    return;
  }
  const std::size_t block_bytes = a.w->data_bytes() / static_cast<std::size_t>(a.w->n_blocks());
  const int64_t pass = std::max<int64_t>(4, blocks_per_pass(block_bytes) / 4 * 4);
  for (int64_t p0 = nb_begin; p0 < groups_end; p0 += pass) {
    const int64_t p1 = std::min(groups_end, p0 + pass);
    // Row tiles of up to 4 rows, evened out (4 + 4 + 3 + 3 + 3 for 17 rows).
    int64_t tiles = (a.m + 3) / 4;
    for (int64_t m0 = 0, rows = 0; m0 < a.m; m0 += rows, --tiles) {
      rows = (a.m - m0 + tiles - 1) / tiles;
      for (int64_t nb = p0; nb < p1; nb += 4) {
        switch (rows) {
          case 4: i8g_tile4<4>(a, m0, nb); break;
          case 3: i8g_tile4<3>(a, m0, nb); break;
          case 2: i8g_tile4<2>(a, m0, nb); break;
          default: i8g_tile4<1>(a, m0, nb); break;
        }
      }
    }
  }
  if (groups_end < nb_end) avx512_vnni256_gemm_i8g(a, groups_end, nb_end);
}

// Weight-only where the CPU has AVX-512 BF16: bf16 activations (xb, from
// kBf16MinRows rows) on vdpbf16ps, fewer rows on the float32 kernels above.
void gemm_float_bf16_from_min_rows(const FloatGemmArgs& a, int64_t nb_begin, int64_t nb_end) {
  if (a.xb) {
    avx512_bf16_gemm_float(a, nb_begin, nb_end);
  } else {
    gemm_float(a, nb_begin, nb_end);
  }
}

// From 8 rows (measured on Zen 4, bench_linear: M = 8 to 128 on the MiniLM
// and 4096 shapes) the bf16 pass over x and the per-call weight decode are
// paid back; below, the float32 kernels read the weights in place.
constexpr int64_t kBf16MinRows = 8;

}  // namespace

const LinearKernels& avx512_vnni_linear_kernels() {
  static const LinearKernels table = [] {
    LinearKernels t{"avx512_vnni", gemm_float, gemm_i8, avx512_vnni256_gemm_i4, 1, avx512_vnni256_prepare_u8, gemm_i8g};
    t.row_absmax_bits = avx512_row_absmax_bits;
    t.row_quantize_i8 = avx512_row_quantize_i8;
    t.row_quantize_i8_symmetric = avx512_row_quantize_i8_symmetric;
    t.row_smooth = avx512_row_smooth;
    if (cpu_features().avx512_bf16) {
      t.gemm_float = gemm_float_bf16_from_min_rows;
      t.bf16_min_m = kBf16MinRows;
      t.to_bf16_row = to_bf16_row;
    }
    return t;
  }();
  return table;
}

}  // namespace monoquant::kernels
