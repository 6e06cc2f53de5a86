// AVX2 + FMA + F16C linear kernels. Compiled with -mavx2 -mfma -mf16c (this
// file only); reached through the dispatch table after a CPU check.
//
// int8 x int8 (W8A8) static uses vpmaddwd on sign-extended int16: every
// product and every pair sum is exact in int32, so no input can saturate
// (vpmaddubsw's int16 pair sums could: 2 * 255 * 127 > 32767). Dynamic
// activations are in [-127, 127], which lets vpmaddubsw run exactly on
// |w| and a * sign(w) (the sign trick, below): twice the peak rate on Zen 3.
// int4 x int8 (W4A8) uses vpmaddubsw with the weight nibble u = q + 8 in
// [0, 15] as the unsigned operand and activations in [-127, 127]: a pair sum
// is at most 2 * 15 * 127 = 3810 and at most 8 pair sums (4 chunks of 8 k)
// are added in int16 before widening: 8 * 3810 = 30480 < 32767.
#include <unistd.h>

#include "kernels/gemm_avx2_common.hpp"

namespace monoquant::kernels {
namespace {

using namespace avx2;

// ------------------------------------------------------------ float activations
// x[k0 .. k0+3] in both 128-bit halves; zero past k.
inline __m256 load_x4(const float* x, int64_t k0, int64_t k) {
  if (k0 + 4 <= k) return _mm256_broadcast_ps(reinterpret_cast<const __m128*>(x + k0));
  if (k0 >= k) return _mm256_setzero_ps();
  const int64_t valid = k - k0;
  const __m128i mask = _mm_setr_epi32(valid > 0 ? -1 : 0, valid > 1 ? -1 : 0, valid > 2 ? -1 : 0, 0);
  const __m128 v = _mm_maskload_ps(x + k0, mask);
  return _mm256_set_m128(v, v);
}

// The weight streams are read once per call, sequentially, block after block
// (the next block follows in memory): a software prefetch this far ahead keeps
// DRAM busy where the hardware prefetcher alone did not. At M = 1 on 4096 x 4096
// and 4096 x 11008 (weights cold, Zen 3, 1 thread) it made int8 weight-only
// and W8A8 1.2x-1.7x faster, int4 about 1.1x (A/B, three rounds each); past
// the end of the weights it is harmless. Distance: 128 chunks of one block.
constexpr int64_t kPrefetchChunks = 128;

// Integer arithmetic: the address may lie past the end of the weights.
inline void prefetch_ahead(const void* p, int64_t bytes) {
  _mm_prefetch(reinterpret_cast<const char*>(reinterpret_cast<uintptr_t>(p) + static_cast<uintptr_t>(bytes)),
               _MM_HINT_T0);
}

// Decoders: the four float vectors (column pairs 01, 23, 45, 67) of chunk ch
// of one block, each lane [column a: 4 k | column b: 4 k].
struct DecodeI8 {
  const int8_t* block;
  void operator()(int64_t ch, __m256 w[4]) const {
    const int8_t* p = block + ch * 32;
    #pragma GCC unroll 8
    for (int j = 0; j < 4; ++j) {
      w[j] = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p + 8 * j))));
    }
  }
};

struct DecodeF16 {
  const uint16_t* block;
  void operator()(int64_t ch, __m256 w[4]) const {
    const uint16_t* p = block + ch * 32;
    #pragma GCC unroll 8
    for (int j = 0; j < 4; ++j) w[j] = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 8 * j)));
  }
};

struct DecodeBF16 {
  const uint16_t* block;
  void operator()(int64_t ch, __m256 w[4]) const {
    const uint16_t* p = block + ch * 32;
    #pragma GCC unroll 8
    for (int j = 0; j < 4; ++j) {
      const __m256i v = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 8 * j)));
      w[j] = _mm256_castsi256_ps(_mm256_slli_epi32(v, 16));
    }
  }
};

// int8 / f16 / bf16: chunks of 4 k; MR rows share each decoded vector.
template <int MR, class Decode>
void float_tile4(const FloatGemmArgs& a, int64_t m0, int64_t nb, const Decode& decode) {
  const PackedLinearWeightView& w = *a.w;
  const int64_t k = w.k, full = k / 4, chunks = w.k_padded() / 4;
  __m256 acc[MR][4];
  #pragma GCC unroll 8
  for (int r = 0; r < MR; ++r)
    #pragma GCC unroll 8
    for (int j = 0; j < 4; ++j) acc[r][j] = _mm256_setzero_ps();
  const float* x = a.x + m0 * a.ldx;
  int64_t ch = 0;
  for (; ch < full; ++ch) {
    __m256 wv[4];
    prefetch_ahead(decode.block + ch * 32, kPrefetchChunks * 32 * static_cast<int64_t>(sizeof(*decode.block)));
    decode(ch, wv);
    #pragma GCC unroll 8
    for (int r = 0; r < MR; ++r) {
      const __m256 xv = _mm256_broadcast_ps(reinterpret_cast<const __m128*>(x + r * a.ldx + ch * 4));
      #pragma GCC unroll 8
      for (int j = 0; j < 4; ++j) acc[r][j] = _mm256_fmadd_ps(xv, wv[j], acc[r][j]);
    }
  }
  for (; ch < chunks; ++ch) {
    __m256 wv[4];
    decode(ch, wv);
    #pragma GCC unroll 8
    for (int r = 0; r < MR; ++r) {
      const __m256 xv = load_x4(x + r * a.ldx, ch * 4, k);
      #pragma GCC unroll 8
      for (int j = 0; j < 4; ++j) acc[r][j] = _mm256_fmadd_ps(xv, wv[j], acc[r][j]);
    }
  }
  const __m256 bias = load_cols(a.bias, nb, w.n);
  const __m256 scale = w.format == WeightFormat::int8 ? load_cols(w.scales, nb, w.n) : _mm256_set1_ps(1.0f);
  #pragma GCC unroll 8
  for (int r = 0; r < MR; ++r) {
    __m256 s = reduce_partials(acc[r]);
    // The reference rounds the scaled sum and then adds the bias: no fma here.
    if (w.format == WeightFormat::int8) s = _mm256_mul_ps(s, scale);
    store_cols(a.y + (m0 + r) * a.ldy, nb, w.n, _mm256_add_ps(s, bias));
  }
}

// int4: chunks of 8 k (two 4-k halves per byte); the group scale is folded
// into the decode, w = u * s - 8 s (one rounding, equal to (u - 8) * s).
template <int MR>
void float_tile_i4(const FloatGemmArgs& a, int64_t m0, int64_t nb) {
  const PackedLinearWeightView& w = *a.w;
  const int64_t k = w.k, kp = w.k_padded(), groups = w.groups();
  const auto* block = static_cast<const uint8_t*>(w.data) + nb * B * kp / 2;
  const float* scales = w.scales + nb * groups * B;
  const __m256i low = _mm256_set1_epi32(0xf);
  __m256 acc[MR][4];
  #pragma GCC unroll 8
  for (int r = 0; r < MR; ++r)
    #pragma GCC unroll 8
    for (int j = 0; j < 4; ++j) acc[r][j] = _mm256_setzero_ps();
  const float* x = a.x + m0 * a.ldx;
  for (int64_t g = 0; g < groups; ++g) {
    const __m256 s8 = _mm256_loadu_ps(scales + g * B);
    alignas(32) float sv[4][8], mv[4][8];
    #pragma GCC unroll 8
    for (int j = 0; j < 4; ++j) {
      const __m256 s = _mm256_permutevar8x32_ps(s8, _mm256_setr_epi32(2 * j, 2 * j, 2 * j, 2 * j, 2 * j + 1, 2 * j + 1,
                                                                       2 * j + 1, 2 * j + 1));
      _mm256_store_ps(sv[j], s);
      _mm256_store_ps(mv[j], _mm256_mul_ps(s, _mm256_set1_ps(-8.0f)));
    }
    const int64_t c0 = g * w.group_size / 8, c1 = std::min(kp, (g + 1) * w.group_size) / 8;
    for (int64_t ch = c0; ch < c1; ++ch) {
      const int64_t kb = ch * 8;
      __m256 xl[MR], xh[MR];
      if (kb + 8 <= k) {
        #pragma GCC unroll 8
        for (int r = 0; r < MR; ++r) {
          xl[r] = _mm256_broadcast_ps(reinterpret_cast<const __m128*>(x + r * a.ldx + kb));
          xh[r] = _mm256_broadcast_ps(reinterpret_cast<const __m128*>(x + r * a.ldx + kb + 4));
        }
      } else {
        #pragma GCC unroll 8
        for (int r = 0; r < MR; ++r) {
          xl[r] = load_x4(x + r * a.ldx, kb, k);
          xh[r] = load_x4(x + r * a.ldx, kb + 4, k);
        }
      }
      const uint8_t* p = block + ch * 32;
      prefetch_ahead(p, kPrefetchChunks * 32);
      #pragma GCC unroll 8
      for (int j = 0; j < 4; ++j) {
        const __m256i v = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p + 8 * j)));
        const __m256 s = _mm256_load_ps(sv[j]), ms = _mm256_load_ps(mv[j]);
        const __m256 wl = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_and_si256(v, low)), s, ms);
        const __m256 wh = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_srli_epi32(v, 4)), s, ms);
        #pragma GCC unroll 8
        for (int r = 0; r < MR; ++r) {
          acc[r][j] = _mm256_fmadd_ps(xl[r], wl, acc[r][j]);
          acc[r][j] = _mm256_fmadd_ps(xh[r], wh, acc[r][j]);
        }
      }
    }
  }
  const __m256 bias = load_cols(a.bias, nb, w.n);
  #pragma GCC unroll 8
  for (int r = 0; r < MR; ++r) store_cols(a.y + (m0 + r) * a.ldy, nb, w.n, _mm256_add_ps(reduce_partials(acc[r]), bias));
}

template <class Decode>
void float_rows4(const FloatGemmArgs& a, int64_t m0, int rows, int64_t nb, const Decode& d) {
  switch (rows) {
    case 3: float_tile4<3>(a, m0, nb, d); break;
    case 2: float_tile4<2>(a, m0, nb, d); break;
    default: float_tile4<1>(a, m0, nb, d); break;
  }
}

// ------------------------------------------------------------ float activations, many rows
// From kPanelMinRows rows on, the weights of two blocks (16 columns) are
// decoded once per slice of kPanelK inputs into a small tile (16 KB, in L1)
// that every row tile then reads: the decode cost is shared by all rows and
// the inner loop is a plain broadcast-FMA GEMM. The full float weight never
// exists; the tile holds 16 x 256 values at a time.
constexpr int64_t kPanelMinRows = kAvx2PanelMinRows;
constexpr int64_t kPanelK = 256;
constexpr int kPanelRows = 6;

// The 4 lane-partial vectors of a 4-k chunk -> 4 vectors, one per k, with
// the columns in the order 0 2 4 6 1 3 5 7, stored ld floats apart.
inline void transpose_chunk(const __m256 w[4], float* dst, int64_t ld) {
  const __m256 a = _mm256_unpacklo_ps(w[0], w[1]);
  const __m256 b = _mm256_unpackhi_ps(w[0], w[1]);
  const __m256 c = _mm256_unpacklo_ps(w[2], w[3]);
  const __m256 d = _mm256_unpackhi_ps(w[2], w[3]);
  _mm256_store_ps(dst, _mm256_shuffle_ps(a, c, _MM_SHUFFLE(1, 0, 1, 0)));
  _mm256_store_ps(dst + ld, _mm256_shuffle_ps(a, c, _MM_SHUFFLE(3, 2, 3, 2)));
  _mm256_store_ps(dst + 2 * ld, _mm256_shuffle_ps(b, d, _MM_SHUFFLE(1, 0, 1, 0)));
  _mm256_store_ps(dst + 3 * ld, _mm256_shuffle_ps(b, d, _MM_SHUFFLE(3, 2, 3, 2)));
}

}  // namespace

// Decodes inputs [k0, k0 + len) of block nb into tile[len][ld] (8 columns
// per row, in the order 0 2 4 6 1 3 5 7; len and k0 multiples of 8; values
// past K are the zero padding of the packed layout). ld = 8 packs one
// block's tile; the AVX-512 panel puts two blocks side by side with ld = 16.
void avx2_decode_tile(const PackedLinearWeightView& w, int64_t nb, int64_t k0, int64_t len, float* tile, int64_t ld) {
  const int64_t kp = w.k_padded();
  __m256 v[4];
  switch (w.format) {
    case WeightFormat::int8: {
      const DecodeI8 d{static_cast<const int8_t*>(w.data) + nb * B * kp};
      for (int64_t k = 0; k < len; k += 4) d((k0 + k) / 4, v), transpose_chunk(v, tile + k * ld, ld);
      break;
    }
    case WeightFormat::f16: {
      const DecodeF16 d{static_cast<const uint16_t*>(w.data) + nb * B * kp};
      for (int64_t k = 0; k < len; k += 4) d((k0 + k) / 4, v), transpose_chunk(v, tile + k * ld, ld);
      break;
    }
    case WeightFormat::bf16: {
      const DecodeBF16 d{static_cast<const uint16_t*>(w.data) + nb * B * kp};
      for (int64_t k = 0; k < len; k += 4) d((k0 + k) / 4, v), transpose_chunk(v, tile + k * ld, ld);
      break;
    }
    case WeightFormat::int4: {
      const auto* block = static_cast<const uint8_t*>(w.data) + nb * B * kp / 2;
      const int64_t groups = w.groups();
      const __m256i low = _mm256_set1_epi32(0xf);
      int64_t g_cur = -1;
      __m256 sv[4] = {}, mv[4] = {}, hv[4];
      for (int64_t k = 0; k < len; k += 8) {
        const int64_t kk = k0 + k, g = kk / w.group_size;
        if (g != g_cur) {
          g_cur = g;
          const __m256 s8 = _mm256_loadu_ps(w.scales + (nb * groups + g) * B);
          #pragma GCC unroll 8
          for (int j = 0; j < 4; ++j) {
            sv[j] = _mm256_permutevar8x32_ps(
                s8, _mm256_setr_epi32(2 * j, 2 * j, 2 * j, 2 * j, 2 * j + 1, 2 * j + 1, 2 * j + 1, 2 * j + 1));
            mv[j] = _mm256_mul_ps(sv[j], _mm256_set1_ps(-8.0f));
          }
        }
        const uint8_t* p = block + (kk / 8) * 32;
        #pragma GCC unroll 8
        for (int j = 0; j < 4; ++j) {
          const __m256i q = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p + 8 * j)));
          v[j] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_and_si256(q, low)), sv[j], mv[j]);
          hv[j] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_srli_epi32(q, 4)), sv[j], mv[j]);
        }
        transpose_chunk(v, tile + k * ld, ld);
        transpose_chunk(hv, tile + (k + 4) * ld, ld);
      }
      break;
    }
  }
}

namespace {

// Functions, not namespace-scope constants: a vector constant at namespace
// scope is built by a static initializer, which runs this file's instruction
// set at program start on every CPU (tests/cpp/check_no_isa_initializers.cmake).
inline __m256i from_panel_order() { return _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7); }
inline __m256i to_panel_order() { return _mm256_setr_epi32(0, 2, 4, 6, 1, 3, 5, 7); }

// acc[r][b] += x[r][k0 + i] * tile[b][i] for i < len, columns in panel order.
template <int MR, int NB>
void panel_kernel(const FloatGemmArgs& a, int64_t m0, int64_t nb, int64_t k0, int64_t len, bool first, bool last,
                  const float* tile) {
  const PackedLinearWeightView& w = *a.w;
  __m256 acc[MR][NB];
  #pragma GCC unroll 8
  for (int r = 0; r < MR; ++r)
    #pragma GCC unroll 8
    for (int b = 0; b < NB; ++b) {
      if (first) {
        acc[r][b] = _mm256_setzero_ps();
      } else {
        // Partial sums wait in y (natural order) between slices of K.
        const __m256 y = load_cols(a.y + (m0 + r) * a.ldy, nb + b, w.n);
        acc[r][b] = _mm256_permutevar8x32_ps(y, to_panel_order());
      }
    }
  const float* x = a.x + m0 * a.ldx + k0;
  for (int64_t i = 0; i < len; ++i) {
    __m256 t[NB];
    #pragma GCC unroll 8
    for (int b = 0; b < NB; ++b) t[b] = _mm256_load_ps(tile + (b * kPanelK + i) * 8);
    #pragma GCC unroll 8
    for (int r = 0; r < MR; ++r) {
      const __m256 xv = _mm256_broadcast_ss(x + r * a.ldx + i);
      #pragma GCC unroll 8
      for (int b = 0; b < NB; ++b) acc[r][b] = _mm256_fmadd_ps(xv, t[b], acc[r][b]);
    }
  }
  #pragma GCC unroll 8
  for (int b = 0; b < NB; ++b) {
    const __m256 bias = last ? load_cols(a.bias, nb + b, w.n) : _mm256_setzero_ps();
    const __m256 scale =
        last && w.format == WeightFormat::int8 ? load_cols(w.scales, nb + b, w.n) : _mm256_set1_ps(1.0f);
    #pragma GCC unroll 8
    for (int r = 0; r < MR; ++r) {
      __m256 s = _mm256_permutevar8x32_ps(acc[r][b], from_panel_order());
      if (last) {
        if (w.format == WeightFormat::int8) s = _mm256_mul_ps(s, scale);
        s = _mm256_add_ps(s, bias);
      }
      store_cols(a.y + (m0 + r) * a.ldy, nb + b, w.n, s);
    }
  }
}

template <int NB>
void panel_rows(const FloatGemmArgs& a, int64_t nb, int64_t k0, int64_t len, bool first, bool last,
                const float* tile) {
  // Even row tiles (8 rows = 4 + 4, not 6 + 2): a short tile has too few
  // independent FMA chains to hide the FMA latency.
  int64_t tiles = (a.m + kPanelRows - 1) / kPanelRows;
  for (int64_t m0 = 0, rows = 0; m0 < a.m; m0 += rows, --tiles) {
    rows = (a.m - m0 + tiles - 1) / tiles;
    switch (rows) {
      case 6: panel_kernel<6, NB>(a, m0, nb, k0, len, first, last, tile); break;
      case 5: panel_kernel<5, NB>(a, m0, nb, k0, len, first, last, tile); break;
      case 4: panel_kernel<4, NB>(a, m0, nb, k0, len, first, last, tile); break;
      case 3: panel_kernel<3, NB>(a, m0, nb, k0, len, first, last, tile); break;
      case 2: panel_kernel<2, NB>(a, m0, nb, k0, len, first, last, tile); break;
      default: panel_kernel<1, NB>(a, m0, nb, k0, len, first, last, tile); break;
    }
  }
}

// Rows per pass over the column blocks: as many as keep the pass's
// activations (rows x K floats) within 256 KB, so that every column pair
// reads them from L2 rather than streaming a long activation matrix from L3
// again; at least 24, so that a tile's decode is shared by enough rows.
int64_t panel_pass_rows(int64_t k) {
  const int64_t rows = (int64_t{256} << 10) / (4 * std::max<int64_t>(k, 1));
  return std::max<int64_t>(24, rows / kPanelRows * kPanelRows);
}

void gemm_float_panel(const FloatGemmArgs& args, int64_t nb_begin, int64_t nb_end) {
  const PackedLinearWeightView& w = *args.w;
  alignas(64) float tile[2 * kPanelK * 8];
  const int64_t pass_rows = panel_pass_rows(w.k);
  for (int64_t m0 = 0; m0 < args.m; m0 += pass_rows) {
    FloatGemmArgs a = args;
    a.x += m0 * a.ldx;
    a.y += m0 * a.ldy;
    a.m = std::min(pass_rows, args.m - m0);
    for (int64_t nb = nb_begin; nb < nb_end; nb += 2) {
      const bool pair = nb + 1 < nb_end;
      for (int64_t k0 = 0; k0 < w.k; k0 += kPanelK) {
        const int64_t len = std::min(kPanelK, w.k - k0);
        const int64_t step = w.k_chunk(), decode_len = (len + step - 1) / step * step;
        avx2_decode_tile(w, nb, k0, decode_len, tile, 8);
        if (pair) avx2_decode_tile(w, nb + 1, k0, decode_len, tile + kPanelK * 8, 8);
        const bool first = k0 == 0, last = k0 + kPanelK >= w.k;
        if (pair) panel_rows<2>(a, nb, k0, len, first, last, tile);
        else panel_rows<1>(a, nb, k0, len, first, last, tile);
      }
    }
  }
}

void gemm_float(const FloatGemmArgs& a, int64_t nb_begin, int64_t nb_end) {
  const PackedLinearWeightView& w = *a.w;
  if (a.m >= kPanelMinRows) {
    gemm_float_panel(a, nb_begin, nb_end);
    return;
  }
  const int64_t kp = w.k_padded();
  const std::size_t block_bytes = w.data_bytes() / static_cast<std::size_t>(w.n_blocks());
  switch (w.format) {
    case WeightFormat::int8:
      for_tiles<3>(a.m, nb_begin, nb_end, block_bytes, [&](int64_t m0, int rows, int64_t nb) {
        float_rows4(a, m0, rows, nb, DecodeI8{static_cast<const int8_t*>(w.data) + nb * B * kp});
      });
      break;
    case WeightFormat::f16:
      for_tiles<3>(a.m, nb_begin, nb_end, block_bytes, [&](int64_t m0, int rows, int64_t nb) {
        float_rows4(a, m0, rows, nb, DecodeF16{static_cast<const uint16_t*>(w.data) + nb * B * kp});
      });
      break;
    case WeightFormat::bf16:
      for_tiles<3>(a.m, nb_begin, nb_end, block_bytes, [&](int64_t m0, int rows, int64_t nb) {
        float_rows4(a, m0, rows, nb, DecodeBF16{static_cast<const uint16_t*>(w.data) + nb * B * kp});
      });
      break;
    case WeightFormat::int4:
      for_tiles<2>(a.m, nb_begin, nb_end, block_bytes, [&](int64_t m0, int rows, int64_t nb) {
        if (rows == 2) float_tile_i4<2>(a, m0, nb);
        else float_tile_i4<1>(a, m0, nb);
      });
      break;
  }
}

// ------------------------------------------------------------ W8A8 (vpmaddwd)
// Activations prepared as int16 (q - zero_point); per chunk of 4 k one
// 64-bit broadcast meets the block's 32 weights widened to two int16 vectors.
template <int MR>
void i8_tile(const IntGemmArgs& a, int64_t m0, int64_t nb) {
  const PackedLinearWeightView& w = *a.w;
  const int64_t kp = w.k_padded(), chunks = kp / 4;
  const auto* block = static_cast<const int8_t*>(w.data) + nb * B * kp;
  const auto* act = static_cast<const int16_t*>(a.prepared) + m0 * kp;
  __m256i lo[MR], hi[MR];
  #pragma GCC unroll 8
  for (int r = 0; r < MR; ++r) lo[r] = hi[r] = _mm256_setzero_si256();
  for (int64_t ch = 0; ch < chunks; ++ch) {
    const __m256i wv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(block + ch * 32));
    const __m256i wl = _mm256_cvtepi8_epi16(_mm256_castsi256_si128(wv));       // columns 0-3
    const __m256i wh = _mm256_cvtepi8_epi16(_mm256_extracti128_si256(wv, 1));  // columns 4-7
    #pragma GCC unroll 8
    for (int r = 0; r < MR; ++r) {
      const __m256i av = _mm256_set1_epi64x(load_i64(act + r * kp + ch * 4));
      lo[r] = _mm256_add_epi32(lo[r], _mm256_madd_epi16(wl, av));
      hi[r] = _mm256_add_epi32(hi[r], _mm256_madd_epi16(wh, av));
    }
  }
  const __m256 bias = load_cols(a.bias, nb, w.n);
  const __m256 cs = load_cols(w.scales, nb, w.n);
  #pragma GCC unroll 8
  for (int r = 0; r < MR; ++r) {
    // hadd gives c0 c1 c4 c5 | c2 c3 c6 c7; the 64-bit permute restores order.
    const __m256i acc = _mm256_permute4x64_epi64(_mm256_hadd_epi32(lo[r], hi[r]), 0xD8);
    store_cols(a.y + (m0 + r) * a.ldy, nb, w.n, epilogue_i8(acc, a.row_scales[m0 + r], cs, bias));
  }
}

void gemm_i8_symmetric(const IntGemmArgs& a, int64_t nb_begin, int64_t nb_end);  // below

void gemm_i8(const IntGemmArgs& a, int64_t nb_begin, int64_t nb_end) {
  if (a.symmetric_codes) {
    gemm_i8_symmetric(a, nb_begin, nb_end);
    return;
  }
  const std::size_t block_bytes = a.w->data_bytes() / static_cast<std::size_t>(a.w->n_blocks());
  for_tiles<4>(a.m, nb_begin, nb_end, block_bytes, [&](int64_t m0, int rows, int64_t nb) {
    switch (rows) {
      case 4: i8_tile<4>(a, m0, nb); break;
      case 3: i8_tile<3>(a, m0, nb); break;
      case 2: i8_tile<2>(a, m0, nb); break;
      default: i8_tile<1>(a, m0, nb); break;
    }
  });
}

// ------------------------------------------------------------ W8A8 dynamic (vpmaddubsw, sign trick)
// Dynamic activation codes are symmetric, in [-127, 127]. With u = |w|
// (unsigned, at most 128) and s = a * sign(w) (vpsignb; |s| <= 127),
// vpmaddubsw(u, s) gives the pair sums u1 s1 + u2 s2 = w1 a1 + w2 a2 exactly,
// |.| <= 2 * 128 * 127 = 32512 < 32767: it never saturates. vpmaddwd with
// ones widens the pairs to each column's 4-k sum, already in column order.
// Both paths take four instructions per 32 multiply-adds, but the int16 path
// needs two vpmaddwd for them and this one a vpmaddubsw and a vpmaddwd, which
// issue side by side: on Zen 3, where vpmaddwd issues once a cycle, that is
// twice the peak (the int16 path only matched an fp32 FMA GEMM). The codes
// are read directly: no prepared form.
template <int MR>
void i8s_tile(const IntGemmArgs& a, int64_t m0, int64_t nb) {
  const PackedLinearWeightView& w = *a.w;
  const int64_t kp = w.k_padded(), chunks = kp / 4;
  const auto* block = static_cast<const int8_t*>(w.data) + nb * B * kp;
  const int8_t* q = a.q + m0 * kp;
  const __m256i ones = _mm256_set1_epi16(1);
  __m256i acc[MR];
  #pragma GCC unroll 8
  for (int r = 0; r < MR; ++r) acc[r] = _mm256_setzero_si256();
  for (int64_t ch = 0; ch < chunks; ++ch) {
    prefetch_ahead(block + ch * 32, kPrefetchChunks * 32);
    const __m256i wv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(block + ch * 32));
    const __m256i uv = _mm256_abs_epi8(wv);
    #pragma GCC unroll 8
    for (int r = 0; r < MR; ++r) {
      const __m256i av = _mm256_set1_epi32(load_i32(q + r * kp + ch * 4));
      const __m256i pairs = _mm256_maddubs_epi16(uv, _mm256_sign_epi8(av, wv));
      acc[r] = _mm256_add_epi32(acc[r], _mm256_madd_epi16(pairs, ones));
    }
  }
  const __m256 bias = load_cols(a.bias, nb, w.n);
  const __m256 cs = load_cols(w.scales, nb, w.n);
  #pragma GCC unroll 8
  for (int r = 0; r < MR; ++r)
    store_cols(a.y + (m0 + r) * a.ldy, nb, w.n, epilogue_i8(acc[r], a.row_scales[m0 + r], cs, bias));
}

// Weights per pass of all row tiles: half of L2, so that they stay there
// beside the activations (512 KB was a Zen 3 core's whole L2).
int64_t i8s_pass_bytes() {
  static const int64_t bytes = [] {
    const long l2 = sysconf(_SC_LEVEL2_CACHE_SIZE);
    return l2 > 0 ? std::clamp<int64_t>(l2 / 2, 128 << 10, 512 << 10) : int64_t{256} << 10;
  }();
  return bytes;
}

// Six rows per tile: the fastest of 3 to 6 rows x 1 or 2 blocks on Zen 3
// (two blocks run out of the 16 ymm registers from four rows on), for the
// sign trick and the narrow-weight tile alike. Tile::run<MR> is one tile.
template <class Tile>
void six_row_tiles(const IntGemmArgs& a, int64_t nb_begin, int64_t nb_end) {
  const std::size_t block_bytes = a.w->data_bytes() / static_cast<std::size_t>(a.w->n_blocks());
  const auto pass_bytes = static_cast<std::size_t>(i8s_pass_bytes());
  for_tiles<6>(a.m, nb_begin, nb_end, block_bytes, [&](int64_t m0, int rows, int64_t nb) {
    switch (rows) {
      case 6: Tile::template run<6>(a, m0, nb); break;
      case 5: Tile::template run<5>(a, m0, nb); break;
      case 4: Tile::template run<4>(a, m0, nb); break;
      case 3: Tile::template run<3>(a, m0, nb); break;
      case 2: Tile::template run<2>(a, m0, nb); break;
      default: Tile::template run<1>(a, m0, nb); break;
    }
  }, pass_bytes);
}

struct SignTrickTile {
  template <int MR>
  static void run(const IntGemmArgs& a, int64_t m0, int64_t nb) { i8s_tile<MR>(a, m0, nb); }
};

void gemm_i8_symmetric(const IntGemmArgs& a, int64_t nb_begin, int64_t nb_end) {
  six_row_tiles<SignTrickTile>(a, nb_begin, nb_end);
}

// ------------------------------------------------------------ W8A8 on narrow weights (vpmaddubsw, u8 activations)
// Weights with every |w| <= 64 (7-bit codes): the activations go in as the
// unsigned operand u = q + 128 in [0, 255] (prepare_u8), so that the pair sums
// u1 w1 + u2 w2 stay within 2 * 255 * 64 = 32640 and vpmaddubsw never
// saturates; sum (q - zp) w = sum u w - (128 + zp) sum w removes the offset.
// Three instructions per 32 multiply-adds against the sign trick's four
// (FBGEMM's mix, without its 7-bit activations): bench_avx2_ceiling.
// NB (1 or 2) blocks per tile: each broadcast feeds every block.
template <int MR, int NB = 1>
void i8n_tile(const IntGemmArgs& a, int64_t m0, int64_t nb) {
  const PackedLinearWeightView& w = *a.w;
  const int64_t kp = w.k_padded(), chunks = kp / 4;
  const auto* block = static_cast<const int8_t*>(w.data) + nb * B * kp;
  const auto* act = static_cast<const uint8_t*>(a.prepared) + m0 * kp;
  const __m256i ones = _mm256_set1_epi16(1);
  __m256i acc[NB][MR];
  #pragma GCC unroll 8
  for (int r = 0; r < MR; ++r)
    for (int b = 0; b < NB; ++b) acc[b][r] = _mm256_setzero_si256();
  for (int64_t ch = 0; ch < chunks; ++ch) {
    __m256i wv[NB];
    #pragma GCC unroll 2
    for (int b = 0; b < NB; ++b) {
      const int8_t* p = block + b * B * kp + ch * 32;
      prefetch_ahead(p, kPrefetchChunks * 32);
      wv[b] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
    }
    #pragma GCC unroll 8
    for (int r = 0; r < MR; ++r) {
      const __m256i av = _mm256_set1_epi32(load_i32(act + r * kp + ch * 4));
      #pragma GCC unroll 2
      for (int b = 0; b < NB; ++b) {
        acc[b][r] = _mm256_add_epi32(acc[b][r], _mm256_madd_epi16(_mm256_maddubs_epi16(av, wv[b]), ones));
      }
    }
  }
  #pragma GCC unroll 2
  for (int b = 0; b < NB; ++b) store_offset_rows<MR>(a, m0, nb + b, acc[b]);
}

struct NarrowTile {
  template <int MR>
  static void run(const IntGemmArgs& a, int64_t m0, int64_t nb) { i8n_tile<MR>(a, m0, nb); }
};

// One row (M = 1) streams the weights once: two blocks a step give the core
// two independent chains (SPR, avx2 set: 1.19x-1.25x at M = 1); from two rows
// on, the six-row tiles.
void gemm_i8_narrow(const IntGemmArgs& a, int64_t nb_begin, int64_t nb_end) {
  if (a.m != 1) {
    six_row_tiles<NarrowTile>(a, nb_begin, nb_end);
    return;
  }
  int64_t nb = nb_begin;
  for (; nb + 2 <= nb_end; nb += 2) i8n_tile<1, 2>(a, 0, nb);
  if (nb < nb_end) i8n_tile<1>(a, 0, nb);
}

// ------------------------------------------------------------ W8A8 with activation groups (vpmaddubsw, sign trick)
// As i8s_tile (grouped codes are dynamic, in [-127, 127]), with the int32 sums
// reset per group of g inputs (g / 4 chunks) and folded into a float
// accumulator per group: f = fma(float(dot_g), s_act(row, g) * s_w(columns, g), f);
// y = f + bias. Reads the codes themselves (grouped_reads_codes). On the avx2
// set of a Sapphire Rapids the int16 vpmaddwd form it replaces ran 1.3x-1.5x
// slower than per-token W8A8 on MiniLM's layers; this form 1.1x-1.2x (1 thread,
// M = 128 and 1024: 1.24x-1.66x faster than the int16 form).
template <int MR>
void i8g_tile(const IntGemmArgs& a, int64_t m0, int64_t nb) {
  const PackedLinearWeightView& w = *a.w;
  const int64_t kp = w.k_padded(), groups = w.groups(), per_group = w.group_size / 4;
  const auto* block = static_cast<const int8_t*>(w.data) + nb * B * kp;
  const int8_t* q = a.q + m0 * kp;
  const float* ws = w.scales + nb * groups * B;
  const float* as = a.row_scales + m0 * groups;
  const __m256i ones = _mm256_set1_epi16(1);
  __m256 f[MR];
  #pragma GCC unroll 8
  for (int r = 0; r < MR; ++r) f[r] = _mm256_setzero_ps();
  for (int64_t g = 0; g < groups; ++g) {
    __m256i acc[MR];
    #pragma GCC unroll 8
    for (int r = 0; r < MR; ++r) acc[r] = _mm256_setzero_si256();
    for (int64_t ch = g * per_group; ch < (g + 1) * per_group; ++ch) {
      const __m256i wv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(block + ch * 32));
      const __m256i uv = _mm256_abs_epi8(wv);
      #pragma GCC unroll 8
      for (int r = 0; r < MR; ++r) {
        const __m256i av = _mm256_set1_epi32(load_i32(q + r * kp + ch * 4));
        acc[r] = _mm256_add_epi32(acc[r], _mm256_madd_epi16(_mm256_maddubs_epi16(uv, _mm256_sign_epi8(av, wv)), ones));
      }
    }
    const __m256 sw = _mm256_loadu_ps(ws + g * B);
    #pragma GCC unroll 8
    for (int r = 0; r < MR; ++r) f[r] = i8g_fold_group(acc[r], as[r * groups + g], sw, f[r]);
  }
  const __m256 bias = load_cols(a.bias, nb, w.n);
  #pragma GCC unroll 8
  for (int r = 0; r < MR; ++r) store_cols(a.y + (m0 + r) * a.ldy, nb, w.n, _mm256_add_ps(f[r], bias));
}

void gemm_i8g(const IntGemmArgs& a, int64_t nb_begin, int64_t nb_end) {
  const std::size_t block_bytes = a.w->data_bytes() / static_cast<std::size_t>(a.w->n_blocks());
  for_tiles<4>(a.m, nb_begin, nb_end, block_bytes, [&](int64_t m0, int rows, int64_t nb) {
    switch (rows) {
      case 4: i8g_tile<4>(a, m0, nb); break;
      case 3: i8g_tile<3>(a, m0, nb); break;
      case 2: i8g_tile<2>(a, m0, nb); break;
      default: i8g_tile<1>(a, m0, nb); break;
    }
  });
}

void prepare_i8(const int8_t* q, int64_t n, int32_t zero_point, void* prepared) {
  auto* out = static_cast<int16_t*>(prepared);
  const __m256i zp = _mm256_set1_epi16(static_cast<int16_t>(zero_point));
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m256i v = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(q + i)));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + i), _mm256_sub_epi16(v, zp));
  }
  for (; i < n; ++i) out[i] = static_cast<int16_t>(q[i] - zero_point);
}

// ------------------------------------------------------------ W4A8 (vpmaddubsw)
template <int MR>
void i4_tile(const IntGemmArgs& a, int64_t m0, int64_t nb) {
  const PackedLinearWeightView& w = *a.w;
  const int64_t kp = w.k_padded(), groups = w.groups();
  const auto* block = static_cast<const uint8_t*>(w.data) + nb * B * kp / 2;
  const float* scales = w.scales + nb * groups * B;
  const int8_t* q = a.q + m0 * kp;
  const __m256i low = _mm256_set1_epi8(0xf);
  const __m256i ones = _mm256_set1_epi16(1);
  __m256 f[MR];
  #pragma GCC unroll 8
  for (int r = 0; r < MR; ++r) f[r] = _mm256_setzero_ps();
  for (int64_t g = 0; g < groups; ++g) {
    const int64_t c0 = g * w.group_size / 8, c1 = std::min(kp, (g + 1) * w.group_size) / 8;
    __m256i acc[MR];
    #pragma GCC unroll 8
    for (int r = 0; r < MR; ++r) acc[r] = _mm256_setzero_si256();
    for (int64_t cs = c0; cs < c1; cs += 4) {
      // At most 4 chunks (8 vpmaddubsw results, each |.| <= 3810) per int16 sum.
      __m256i s16[MR];
      #pragma GCC unroll 8
      for (int r = 0; r < MR; ++r) s16[r] = _mm256_setzero_si256();
      const int64_t ce = std::min(c1, cs + 4);
      for (int64_t ch = cs; ch < ce; ++ch) {
        const __m256i p = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(block + ch * 32));
        const __m256i wl = _mm256_and_si256(p, low);
        const __m256i wh = _mm256_and_si256(_mm256_srli_epi16(p, 4), low);
        #pragma GCC unroll 8
        for (int r = 0; r < MR; ++r) {
          const __m256i al = _mm256_set1_epi32(load_i32(q + r * kp + ch * 8));
          const __m256i ah = _mm256_set1_epi32(load_i32(q + r * kp + ch * 8 + 4));
          s16[r] = _mm256_add_epi16(s16[r], _mm256_add_epi16(_mm256_maddubs_epi16(wl, al), _mm256_maddubs_epi16(wh, ah)));
        }
      }
      #pragma GCC unroll 8
      for (int r = 0; r < MR; ++r) acc[r] = _mm256_add_epi32(acc[r], _mm256_madd_epi16(s16[r], ones));
    }
    const __m256 sg = _mm256_loadu_ps(scales + g * B);
    #pragma GCC unroll 8
    for (int r = 0; r < MR; ++r) f[r] = i4_fold_group(acc[r], a.group_sums[(m0 + r) * groups + g], sg, f[r]);
  }
  const __m256 bias = load_cols(a.bias, nb, w.n);
  #pragma GCC unroll 8
  for (int r = 0; r < MR; ++r) store_row_scaled(a, m0 + r, nb, f[r], bias);
}

void gemm_i4(const IntGemmArgs& a, int64_t nb_begin, int64_t nb_end) {
  const std::size_t block_bytes = a.w->data_bytes() / static_cast<std::size_t>(a.w->n_blocks());
  for_tiles<3>(a.m, nb_begin, nb_end, block_bytes, [&](int64_t m0, int rows, int64_t nb) {
    switch (rows) {
      case 3: i4_tile<3>(a, m0, nb); break;
      case 2: i4_tile<2>(a, m0, nb); break;
      default: i4_tile<1>(a, m0, nb); break;
    }
  });
}

}  // namespace

// Shared with gemm_avx2_vnni.cpp, which replaces only the integer kernels.
void avx2_gemm_float(const FloatGemmArgs& a, int64_t nb_begin, int64_t nb_end) { gemm_float(a, nb_begin, nb_end); }

const LinearKernels& avx2_linear_kernels() {
  static const LinearKernels table = [] {
    LinearKernels t{"avx2", gemm_float, gemm_i8, gemm_i4, 2, prepare_i8, gemm_i8g};
    t.symmetric_reads_codes = true;
    t.grouped_reads_codes = true;
    t.gemm_i8_narrow = gemm_i8_narrow;
    t.prepare_u8 = prepare_u8;
    return t;
  }();
  return table;
}

}  // namespace monoquant::kernels
