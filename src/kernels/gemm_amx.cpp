// W8A8 on AMX int8 tiles (Sapphire Rapids and later): TDPBSSD multiplies a
// 16 x 64 tile of signed activation codes by a 64 x 8 tile of weight codes
// into 16 x 8 exact int32 sums. The packed int8 layout needs no repacking: a
// block's 16 consecutive k-quads ([16][8 columns][4 k], 512 contiguous bytes)
// are exactly a B tile with a 32-byte row stride.
//
// Bits: the sums are exact, acc = sum q*w - zero_point * sum w equals the
// reference's sum (q - zero_point) * w (no int32 overflow for K <= 65536), and
// the epilogue is the reference's fma(float(acc), row_scale * col_scale, bias),
// lane for lane. Everything but gemm_i8 at M >= kAmxMinRows comes from the
// avx512_vnni table (AMX needs AVX-512 anyway).
#include <immintrin.h>

#include <algorithm>
#include <cstddef>
#include <utility>
#include <cstring>
#include <vector>

#include "kernels/amx_tile_config.hpp"
#include "kernels/bf16_panels.hpp"
#include "kernels/gemm.hpp"
#include "monoquant/linear.hpp"

namespace monoquant::kernels {
namespace {

constexpr int64_t B = kLinearBlockN;
constexpr int64_t kTileRows = 16;  // rows of A and C, k-quads of B
constexpr int64_t kTileK = 64;     // bytes of an A row: k values per step
// Below this many rows a 16-row tile is mostly padding and the 512-bit
// vpdpbusd kernel, which reads the prepared (unsigned) activations, is faster.
constexpr int64_t kAmxMinRows = 16;
// From this many rows W8A8 uses the wide (16-column) tiles, whose panels cost
// a copy of the weights per call; below, the 8-column tiles read them in place.
constexpr int64_t kWideMinRows = 64;

// The tiles: C00..C11 = 16 x 8 int32 (rows m0 / m0+16 x blocks nb / nb+1),
// A0, A1 = 16 x 64 int8, B0, B1 = 16 k-quads x 8 columns x 4 k. Macros, not
// constants: the tile intrinsics paste their argument into the instruction.
#define C00 0
#define C01 1
#define C10 2
#define C11 3
#define A0 4
#define A1 5
#define B0 6
#define B1 7

void configure_tiles() {
  TileConfig c{};
  c.palette_id = 1;
  for (int t = C00; t <= C11; ++t) c.rows[t] = kTileRows, c.colsb[t] = B * 4;
  for (int t = A0; t <= A1; ++t) c.rows[t] = kTileRows, c.colsb[t] = kTileK;
  for (int t = B0; t <= B1; ++t) c.rows[t] = kTileRows, c.colsb[t] = B * 4;
  _tile_loadconfig(&c);
}

// y[m0 + r][nb*8 + c] for the valid rows and columns of one 16 x 8 result.
void epilogue(const IntGemmArgs& a, const int32_t* acc, int64_t m0, int64_t nb) {
  const PackedLinearWeightView& w = *a.w;
  const int64_t n0 = nb * B, cols = std::min<int64_t>(B, w.n - n0);
  const __mmask8 mask = static_cast<__mmask8>((1u << cols) - 1u);
  const __m256 col_scale = _mm256_maskz_loadu_ps(mask, w.scales + n0);
  const __m256 bias = a.bias ? _mm256_maskz_loadu_ps(mask, a.bias + n0) : _mm256_setzero_ps();
  const __m256i zp_sums =
      _mm256_mullo_epi32(_mm256_set1_epi32(a.zero_point), _mm256_maskz_loadu_epi32(mask, w.sums + n0));
  const int64_t rows = std::min<int64_t>(kTileRows, a.m - m0);
  for (int64_t r = 0; r < rows; ++r) {
    const __m256i dot = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(acc + r * B));
    const __m256 f = _mm256_cvtepi32_ps(_mm256_sub_epi32(dot, zp_sums));
    const __m256 s = _mm256_mul_ps(_mm256_set1_ps(a.row_scales[m0 + r]), col_scale);
    const __m256 y = _mm256_fmadd_ps(f, s, bias);
    if (a.yb) {
      _mm_mask_storeu_epi16(a.yb + (m0 + r) * a.ldy + n0, mask, (__m128i)_mm256_cvtneps_pbh(y));
    } else {
      _mm256_mask_storeu_ps(a.y + (m0 + r) * a.ldy + n0, mask, y);
    }
  }
}

// Activation codes as A-tile rows: the codes themselves
// (row stride kp), except the last row tile when it is short or K is not a
// whole number of 64-byte steps: that one is copied, zero-padded, to this
// thread's buffer. rows(m0) gives the tile's first row and its stride.
class CodeRows {
 public:
  CodeRows(const IntGemmArgs& a, int64_t kp, int64_t steps)
      : q_(reinterpret_cast<const std::byte*>(a.q)), kp_(kp), tail_ld_(steps * kTileK),
        tail_m0_((a.m % kTileRows != 0 || kp % kTileK != 0) ? (a.m - 1) / kTileRows * kTileRows : a.m) {
    thread_local std::vector<std::byte> tail;
    if (tail_m0_ < a.m) {
      tail.assign(static_cast<std::size_t>(kTileRows * tail_ld_), std::byte{0});
      for (int64_t r = tail_m0_; r < a.m; ++r) {
        std::memcpy(tail.data() + (r - tail_m0_) * tail_ld_, a.q + r * kp, static_cast<std::size_t>(kp));
      }
    }
    tail_ = tail.data();
  }
  std::pair<const std::byte*, int64_t> operator()(int64_t m0) const {
    if (m0 >= tail_m0_) return {tail_ + (m0 - tail_m0_) * tail_ld_, tail_ld_};
    return {q_ + m0 * kp_, kp_};
  }

 private:
  const std::byte* q_;
  const std::byte* tail_ = nullptr;
  int64_t kp_, tail_ld_, tail_m0_;
};

// Where the narrow tiles of one call read from. A: CodeRows. B: the packed
// block, except a last step shorter than 16 k-quads, copied, zero-padded, to
// `b_tail` (a full tile read would run past the block; the zero weights make
// the garbage activation bytes past kp harmless).
struct Operands {
  int64_t kp, steps;
  const CodeRows* rows;
  const int8_t* w;
  const int8_t* b_tail;  // [blocks of the call][512], or nullptr
  int64_t b_tail_nb0;
  const std::byte* a_rows(int64_t m0) const { return (*rows)(m0).first; }
  int64_t a_stride(int64_t m0) const { return (*rows)(m0).second; }
  const int8_t* b_step(int64_t nb, int64_t s) const {
    if (b_tail && s == steps - 1) return b_tail + (nb - b_tail_nb0) * kTileRows * B * 4;
    return w + nb * B * kp + s * kTileRows * B * 4;
  }
};

template <int MB, int NB>
void tile_block(const IntGemmArgs& a, const Operands& o, int64_t m0, int64_t nb) {
  _tile_zero(C00);
  if constexpr (NB == 2) _tile_zero(C01);
  if constexpr (MB == 2) _tile_zero(C10);
  if constexpr (MB == 2 && NB == 2) _tile_zero(C11);
  const std::byte* a0 = o.a_rows(m0);
  const int64_t lda0 = o.a_stride(m0);
  const std::byte* a1 = MB == 2 ? o.a_rows(m0 + kTileRows) : nullptr;
  const int64_t lda1 = MB == 2 ? o.a_stride(m0 + kTileRows) : 0;
  for (int64_t s = 0; s < o.steps; ++s) {
    _tile_loadd(A0, a0 + s * kTileK, lda0);
    _tile_loadd(B0, o.b_step(nb, s), B * 4);
    _tile_dpbssd(C00, A0, B0);
    if constexpr (NB == 2) {
      _tile_loadd(B1, o.b_step(nb + 1, s), B * 4);
      _tile_dpbssd(C01, A0, B1);
    }
    if constexpr (MB == 2) {
      _tile_loadd(A1, a1 + s * kTileK, lda1);
      _tile_dpbssd(C10, A1, B0);
      if constexpr (NB == 2) _tile_dpbssd(C11, A1, B1);
    }
  }
  alignas(64) int32_t acc[kTileRows * B];
  _tile_stored(C00, acc, B * 4);
  epilogue(a, acc, m0, nb);
  if constexpr (NB == 2) {
    _tile_stored(C01, acc, B * 4);
    epilogue(a, acc, m0, nb + 1);
  }
  if constexpr (MB == 2) {
    _tile_stored(C10, acc, B * 4);
    epilogue(a, acc, m0 + kTileRows, nb);
    if constexpr (NB == 2) {
      _tile_stored(C11, acc, B * 4);
      epilogue(a, acc, m0 + kTileRows, nb + 1);
    }
  }
}

void gemm_i8_wide(const IntGemmArgs& a, int64_t nb_begin, int64_t nb_end);

void gemm_i8(const IntGemmArgs& a, int64_t nb_begin, int64_t nb_end) {
  if (a.m < kAmxMinRows) {
    avx512_vnni_linear_kernels().gemm_i8(a, nb_begin, nb_end);
    return;
  }
  if (a.m >= kWideMinRows) {
    gemm_i8_wide(a, nb_begin, nb_end);
    return;
  }
  const PackedLinearWeightView& w = *a.w;
  Operands o{};
  o.kp = w.k_padded();
  o.steps = (o.kp + kTileK - 1) / kTileK;
  o.w = static_cast<const int8_t*>(w.data);
  const int64_t tail_bytes = o.kp % kTileK;
  const CodeRows rows(a, o.kp, o.steps);
  o.rows = &rows;
  thread_local std::vector<int8_t> b_tail;
  if (tail_bytes != 0) {
    const int64_t tile_bytes = kTileRows * B * 4, used = tail_bytes / 4 * B * 4;
    b_tail.assign(static_cast<std::size_t>((nb_end - nb_begin) * tile_bytes), 0);
    for (int64_t nb = nb_begin; nb < nb_end; ++nb) {
      std::memcpy(b_tail.data() + (nb - nb_begin) * tile_bytes, o.w + nb * B * o.kp + (o.steps - 1) * tile_bytes,
                  static_cast<std::size_t>(used));
    }
    o.b_tail = b_tail.data();
    o.b_tail_nb0 = nb_begin;
  }
  configure_tiles();
  // Row tiles outer: a pair of A tiles (32 x K) stays in L1 / L2 while the
  // thread's weight blocks stream past it.
  for (int64_t m0 = 0; m0 < a.m; m0 += 2 * kTileRows) {
    const bool two_rows = m0 + kTileRows < a.m;
    int64_t nb = nb_begin;
    for (; nb + 2 <= nb_end; nb += 2) {
      if (two_rows) tile_block<2, 2>(a, o, m0, nb);
      else tile_block<1, 2>(a, o, m0, nb);
    }
    if (nb < nb_end) {
      if (two_rows) tile_block<2, 1>(a, o, m0, nb);
      else tile_block<1, 1>(a, o, m0, nb);
    }
  }
  _tile_release();
}

// ------------------------------------------------ wide tiles: 16 columns
// A 16-column B tile does twice the work of an 8-column one per instruction
// (the TMUL's time depends on the rows of A, not the columns of B), so the
// paths for many rows interleave two packed blocks into one panel per call:
//   int8  [k-quads][16 columns][4]   (block nb's 32 bytes, then nb+1's)
//   bf16  [k-pairs][16 columns][2]
// 64 bytes a row, 16 rows a B tile, zero-padded past K to whole steps.
// All of a thread's panels are built first, then row chunks of up to
// kRowChunk rows (their activations stay in L2) sweep over them.
constexpr int64_t kRowChunk = 256;
constexpr int64_t kBf16TileK = 32;     // bf16 k per A row (64 bytes)
// From 8 rows a (half empty) 16-row bf16 tile beats the AVX-512 kernels: the
// weights are decoded once and the tile's products are nearly free. Below, the
// one-to-three-row kernels that read the weights in place win (measured at
// M = 4 to 8 on the MiniLM and 4096 shapes).
constexpr int64_t kBf16MinRows = 8;
constexpr int64_t kWide = 2 * B;       // columns of a wide tile
constexpr int64_t kPanelStep = 1024;   // bytes of one B tile: 16 rows x 64

void configure_wide_tiles() {
  TileConfig c{};
  c.palette_id = 1;
  for (int t = C00; t <= B1; ++t) c.rows[t] = kTileRows, c.colsb[t] = 64;
  _tile_loadconfig(&c);
}

// Columns of the tile at block nb that this call owns and the layer has.
int64_t wide_cols(const PackedLinearWeightView& w, int64_t nb, int64_t nb_end) {
  return std::min({kWide, (nb_end - nb) * B, w.n - nb * B});
}

// 16 results at element offset `at`: float32 into y, or rounded to bf16
// (vcvtneps2bf16: nearest even, NaN stays NaN) into yb.
inline void store_row(float* y, uint16_t* yb, int64_t at, __mmask16 mask, __m512 v) {
  if (yb) {
    _mm256_mask_storeu_epi16(yb + at, mask, (__m256i)_mm512_cvtneps_pbh(v));
  } else {
    _mm512_mask_storeu_ps(y + at, mask, v);
  }
}

// y = fma(float(acc - zp * sum w), row_scale * col_scale, bias): gemm_i8's epilogue, 16 columns.
void wide_i8_epilogue(const IntGemmArgs& a, const int32_t* acc, int64_t m0, int64_t nb, int64_t cols) {
  const PackedLinearWeightView& w = *a.w;
  const int64_t n0 = nb * B;
  const __mmask16 mask = static_cast<__mmask16>((1u << cols) - 1u);
  const __m512 col_scale = _mm512_maskz_loadu_ps(mask, w.scales + n0);
  const __m512 bias = a.bias ? _mm512_maskz_loadu_ps(mask, a.bias + n0) : _mm512_setzero_ps();
  const __m512i zp_sums = _mm512_mullo_epi32(_mm512_set1_epi32(a.zero_point), _mm512_maskz_loadu_epi32(mask, w.sums + n0));
  const int64_t rows = std::min<int64_t>(kTileRows, a.m - m0);
  for (int64_t r = 0; r < rows; ++r) {
    const __m512 f = _mm512_cvtepi32_ps(_mm512_sub_epi32(_mm512_load_si512(acc + r * kWide), zp_sums));
    const __m512 sc = _mm512_mul_ps(_mm512_set1_ps(a.row_scales[m0 + r]), col_scale);
    store_row(a.y, a.yb, (m0 + r) * a.ldy + n0, mask, _mm512_fmadd_ps(f, sc, bias));
  }
}

// wide_i8_epilogue for two full neighbouring tiles (32 columns from block nb)
// with bf16 output: a row's two halves rounded by one vcvtne2ps2bf16 (the same
// nearest-even rounding lane for lane) and written as one 64-byte store.
void wide_i8_epilogue_bf16_pair(const IntGemmArgs& a, const int32_t* acc0, const int32_t* acc1, int64_t m0,
                                int64_t nb) {
  const PackedLinearWeightView& w = *a.w;
  const int64_t n0 = nb * B;
  const __m512 cs0 = _mm512_loadu_ps(w.scales + n0), cs1 = _mm512_loadu_ps(w.scales + n0 + kWide);
  const __m512 b0 = a.bias ? _mm512_loadu_ps(a.bias + n0) : _mm512_setzero_ps();
  const __m512 b1 = a.bias ? _mm512_loadu_ps(a.bias + n0 + kWide) : _mm512_setzero_ps();
  const __m512i zp = _mm512_set1_epi32(a.zero_point);
  const __m512i z0 = _mm512_mullo_epi32(zp, _mm512_loadu_si512(w.sums + n0));
  const __m512i z1 = _mm512_mullo_epi32(zp, _mm512_loadu_si512(w.sums + n0 + kWide));
  const int64_t rows = std::min<int64_t>(kTileRows, a.m - m0);
  for (int64_t r = 0; r < rows; ++r) {
    const __m512 rs = _mm512_set1_ps(a.row_scales[m0 + r]);
    const __m512 f0 = _mm512_cvtepi32_ps(_mm512_sub_epi32(_mm512_load_si512(acc0 + r * kWide), z0));
    const __m512 f1 = _mm512_cvtepi32_ps(_mm512_sub_epi32(_mm512_load_si512(acc1 + r * kWide), z1));
    const __m512 y0 = _mm512_fmadd_ps(f0, _mm512_mul_ps(rs, cs0), b0);
    const __m512 y1 = _mm512_fmadd_ps(f1, _mm512_mul_ps(rs, cs1), b1);
    _mm512_storeu_si512(a.yb + (m0 + r) * a.ldy + n0, (__m512i)_mm512_cvtne2ps_pbh(y1, y0));
  }
}

// y = sum * (int8: column scale) + bias: the float reference's epilogue, 16 columns.
void wide_float_epilogue(const FloatGemmArgs& a, const float* acc, int64_t m0, int64_t nb, int64_t cols) {
  const PackedLinearWeightView& w = *a.w;
  const int64_t n0 = nb * B;
  const __mmask16 mask = static_cast<__mmask16>((1u << cols) - 1u);
  const __m512 scale = w.format == WeightFormat::int8 ? _mm512_maskz_loadu_ps(mask, w.scales + n0) : _mm512_set1_ps(1.0f);
  const __m512 bias = a.bias ? _mm512_maskz_loadu_ps(mask, a.bias + n0) : _mm512_setzero_ps();
  const int64_t rows = std::min<int64_t>(kTileRows, a.m - m0);
  for (int64_t r = 0; r < rows; ++r) {
    const __m512 sum = _mm512_load_ps(acc + r * kWide);
    store_row(a.y, a.yb, (m0 + r) * a.ldy + n0, mask, _mm512_add_ps(_mm512_mul_ps(sum, scale), bias));
  }
}

// C[rows m0.., m0+16..] x [panels p0, p1] over `steps` K steps. a_rows(m) and
// lda: activation tile rows. Bf16 picks tdpbf16ps, else tdpbssd.
template <bool Bf16, int MB, int NB, class Store>
void wide_tile_block(const std::byte* a0, const std::byte* a1, int64_t lda, const std::byte* p0, const std::byte* p1,
                     int64_t steps, const Store& store) {
  _tile_zero(C00);
  if constexpr (NB == 2) _tile_zero(C01);
  if constexpr (MB == 2) _tile_zero(C10);
  if constexpr (MB == 2 && NB == 2) _tile_zero(C11);
  for (int64_t s = 0; s < steps; ++s) {
    _tile_loadd(A0, a0 + s * 64, lda);
    _tile_loadd(B0, p0 + s * kPanelStep, 64);
    if constexpr (Bf16) _tile_dpbf16ps(C00, A0, B0);
    else _tile_dpbssd(C00, A0, B0);
    if constexpr (NB == 2) {
      _tile_loadd(B1, p1 + s * kPanelStep, 64);
      if constexpr (Bf16) _tile_dpbf16ps(C01, A0, B1);
      else _tile_dpbssd(C01, A0, B1);
    }
    if constexpr (MB == 2) {
      _tile_loadd(A1, a1 + s * 64, lda);
      if constexpr (Bf16) _tile_dpbf16ps(C10, A1, B0);
      else _tile_dpbssd(C10, A1, B0);
      if constexpr (NB == 2) {
        if constexpr (Bf16) _tile_dpbf16ps(C11, A1, B1);
        else _tile_dpbssd(C11, A1, B1);
      }
    }
  }
  // store(acc0, acc1, mi): row tile mi's sums for the first panel and (NB == 2) the second, else nullptr.
  alignas(64) int32_t acc[2][kTileRows * kWide];
  _tile_stored(C00, acc[0], 64);
  if constexpr (NB == 2) _tile_stored(C01, acc[1], 64);
  store(acc[0], NB == 2 ? acc[1] : nullptr, 0);
  if constexpr (MB == 2) {
    _tile_stored(C10, acc[0], 64);
    if constexpr (NB == 2) _tile_stored(C11, acc[1], 64);
    store(acc[0], NB == 2 ? acc[1] : nullptr, 1);
  }
}

// The sweep shared by both wide paths. Panels are built a group at a time
// (about kPanelGroupBytes, so that they stay in L2 beside a row chunk), then
// row chunks outer, the group's panel pairs inner, row tile pairs innermost.
// build(first_pair, end_pair, out) fills those pairs' panels.
constexpr int64_t kPanelGroupBytes = 256 * 1024;

// A wide sweep's unit of work: Block::run<MB, NB>(a0, a1, lda, p0, p1, m0,
// pair) computes MB row tiles from m0 by NB panel pairs from `pair`.
// PlainBlock: every K step into one accumulator, then store(acc0, acc1, m0,
// pair) per row tile: panels pair and pair + 1 (acc1 nullptr: only the first).
template <bool Bf16, class Store>
struct PlainBlock {
  int64_t steps;
  const Store& store;
  template <int MB, int NB>
  void run(const std::byte* a0, const std::byte* a1, int64_t lda, const std::byte* p0, const std::byte* p1,
           int64_t m0, int64_t pair) const {
    wide_tile_block<Bf16, MB, NB>(a0, a1, lda, p0, p1, steps, [&](const int32_t* acc0, const int32_t* acc1, int mi) {
      store(acc0, acc1, m0 + mi * kTileRows, pair);
    });
  }
};

template <class Build, class ARows, class Block>
void wide_sweep(int64_t m, int64_t pairs, int64_t steps, const Build& build, const ARows& a_rows, const Block& block) {
  const int64_t panel_bytes = steps * kPanelStep;
  const int64_t group = std::max<int64_t>(2, kPanelGroupBytes / panel_bytes / 2 * 2);
  thread_local std::vector<std::byte> panels;
  panels.resize(static_cast<std::size_t>(std::min(group, pairs) * panel_bytes));
  configure_wide_tiles();
  for (int64_t g0 = 0; g0 < pairs; g0 += group) {
    const int64_t g1 = std::min(pairs, g0 + group);
    build(g0, g1, panels.data());
    for (int64_t c0 = 0; c0 < m; c0 += kRowChunk) {
      const int64_t c1 = std::min(m, c0 + kRowChunk);
      for (int64_t p = g0; p < g1; p += 2) {
        const std::byte* p0 = panels.data() + (p - g0) * panel_bytes;
        const std::byte* p1 = p0 + panel_bytes;
        for (int64_t m0 = c0; m0 < c1; m0 += 2 * kTileRows) {
          const auto [a0, lda0] = a_rows(m0);
          const auto [a1, lda1] = a_rows(m0 + kTileRows);
          const bool second = m0 + kTileRows < c1;
          const bool two_rows = second && lda0 == lda1;  // one stride for both tiles
          if (p + 1 < g1) {
            if (two_rows) {
              block.template run<2, 2>(a0, a1, lda0, p0, p1, m0, p);
            } else {
              block.template run<1, 2>(a0, a0, lda0, p0, p1, m0, p);
              if (second) block.template run<1, 2>(a1, a1, lda1, p0, p1, m0 + kTileRows, p);
            }
          } else if (two_rows) {
            block.template run<2, 1>(a0, a1, lda0, p0, p1, m0, p);
          } else {
            block.template run<1, 1>(a0, a0, lda0, p0, p1, m0, p);
            if (second) block.template run<1, 1>(a1, a1, lda1, p0, p1, m0 + kTileRows, p);
          }
        }
      }
    }
  }
  _tile_release();
}

// int8 panels for pairs [p0, p1) of the blocks from nb_begin: row q of a
// pair's panel = its first block's k-quad q ++ its second's (zeros past nb_end).
void build_i8_panels(const PackedLinearWeightView& w, int64_t nb_begin, int64_t nb_end, int64_t steps, int64_t p0,
                     int64_t p1, std::byte* out) {
  const int64_t kp = w.k_padded(), quads = kp / 4;
  const auto* d = static_cast<const std::byte*>(w.data);
  for (int64_t p = p0; p < p1; ++p) {
    const int64_t nb = nb_begin + 2 * p;
    std::byte* panel = out + (p - p0) * steps * kPanelStep;
    const std::byte* b0 = d + nb * B * kp;
    const std::byte* b1 = nb + 1 < nb_end ? b0 + B * kp : nullptr;
    for (int64_t q = 0; q < quads; ++q) {
      const __m256i lo = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b0 + q * 32));
      const __m256i hi = b1 ? _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b1 + q * 32)) : _mm256_setzero_si256();
      _mm512_storeu_si512(panel + q * 64, _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1));
    }
    std::memset(panel + quads * 64, 0, static_cast<std::size_t>(steps * kPanelStep - quads * 64));
  }
}

void gemm_i8_wide(const IntGemmArgs& a, int64_t nb_begin, int64_t nb_end) {
  const PackedLinearWeightView& w = *a.w;
  const int64_t kp = w.k_padded(), steps = (kp + kTileK - 1) / kTileK, pairs = (nb_end - nb_begin + 1) / 2;
  const CodeRows a_rows(a, kp, steps);
  const auto store = [&](const int32_t* acc0, const int32_t* acc1, int64_t m0, int64_t pair) {
    const int64_t nb = nb_begin + 2 * pair, cols0 = wide_cols(w, nb, nb_end);
    const int64_t cols1 = acc1 ? wide_cols(w, nb + 2, nb_end) : 0;
    if (a.yb && cols0 == kWide && cols1 == kWide) {
      wide_i8_epilogue_bf16_pair(a, acc0, acc1, m0, nb);
      return;
    }
    wide_i8_epilogue(a, acc0, m0, nb, cols0);
    if (acc1) wide_i8_epilogue(a, acc1, m0, nb + 2, cols1);
  };
  const auto build = [&](int64_t p0, int64_t p1, std::byte* out) {
    build_i8_panels(w, nb_begin, nb_end, steps, p0, p1, out);
  };
  wide_sweep(a.m, pairs, steps, build, a_rows, PlainBlock<false, decltype(store)>{steps, store});
}

// ------------------------------------------------ W4A8 on AMX int8 tiles
// The int4 codes are unpacked to int8 (nibble - 8) into the same wide int8
// panels; groups are whole 64-k steps (group_size a multiple of 64, else the
// avx512_vnni kernel runs). Per group the exact int32 sums are folded into
// float accumulators, f = fma(float(acc_g), s_g, f) in group order, and then
// y = fma(f, row_scale, bias): the reference's roundings, lane for lane.
void build_i4_panels(const PackedLinearWeightView& w, int64_t nb_begin, int64_t nb_end, int64_t steps, int64_t p0,
                     int64_t p1, std::byte* out) {
  const int64_t kp = w.k_padded(), chunks = kp / 8;
  const auto* d = static_cast<const std::byte*>(w.data);
  const __m256i low = _mm256_set1_epi8(0x0f), eight = _mm256_set1_epi8(8);
  const auto codes = [&](const std::byte* block, int64_t t, int shift) {
    const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(block + t * 32));
    return _mm256_sub_epi8(_mm256_and_si256(shift ? _mm256_srli_epi16(v, 4) : v, low), eight);
  };
  for (int64_t p = p0; p < p1; ++p) {
    const int64_t nb = nb_begin + 2 * p;
    std::byte* panel = out + (p - p0) * steps * kPanelStep;
    const std::byte* b0 = d + nb * B * kp / 2;
    const std::byte* b1 = nb + 1 < nb_end ? b0 + B * kp / 2 : nullptr;
    for (int64_t t = 0; t < chunks; ++t) {  // chunk t: k-quads 2t (low nibbles) and 2t + 1 (high)
      for (int h = 0; h < 2; ++h) {
        const __m256i lo = codes(b0, t, h * 4);
        const __m256i hi = b1 ? codes(b1, t, h * 4) : _mm256_setzero_si256();
        _mm512_storeu_si512(panel + (2 * t + h) * 64, _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1));
      }
    }
    std::memset(panel + chunks * 128, 0, static_cast<std::size_t>(steps * kPanelStep - chunks * 128));
  }
}

// Tile blocks whose exact int32 sums are folded into float accumulators one
// weight group at a time, in group order (W4A8, and W8A8 with activation
// groups). Per group j of kstep-k steps [j * steps_per_group, ...):
//   W4A8 (act_groups false): f = fma(float(acc_j), s_w[n][j], f), then
//       y = fma(f, s_row[m], bias)
//   activation groups (true): f = fma(float(dot_j), s_a[m][j] * s_w[n][j], f),
//       then y = f + bias
// the reference's roundings, lane for lane.
struct GroupFolds {
  const IntGemmArgs& a;
  int64_t nb_begin, nb_end, groups, kstep, steps_per_group, steps;
  bool act_groups;

  // Weight scales of group j for the 16 columns of the pair at block nb (zeros past nb_end).
  __m512 weight_scales(int64_t nb, int64_t j) const {
    const float* s = a.w->scales + (nb * groups + j) * B;
    const __m256 lo = _mm256_loadu_ps(s);
    const __m256 hi = nb + 1 < nb_end ? _mm256_loadu_ps(s + groups * B) : _mm256_setzero_ps();
    return _mm512_castpd_ps(_mm512_insertf64x4(_mm512_castps_pd(_mm512_castps256_ps512(lo)), _mm256_castps_pd(hi), 1));
  }

  template <int MB, int NB>
  void run(const std::byte* a0, const std::byte* a1, int64_t lda, const std::byte* p0, const std::byte* p1,
           int64_t m0, int64_t pair) const {
    alignas(64) float f[MB * NB][kTileRows * kWide] = {};
    alignas(64) int32_t acc[kTileRows * kWide];
    const int64_t step_bytes = kstep / 4 * 64;  // B rows of one step in the panel
    const auto fold = [&](int tile, int64_t rows_from, int64_t nb, int64_t j) {
      const __m512 sw = weight_scales(nb, j);
      const int64_t rows = std::min<int64_t>(kTileRows, a.m - rows_from);
      for (int64_t r = 0; r < rows; ++r) {
        const __m512 s = act_groups ? _mm512_mul_ps(_mm512_set1_ps(a.row_scales[(rows_from + r) * groups + j]), sw) : sw;
        const __m512 sum = _mm512_cvtepi32_ps(_mm512_load_si512(acc + r * kWide));
        _mm512_store_ps(f[tile] + r * kWide, _mm512_fmadd_ps(sum, s, _mm512_load_ps(f[tile] + r * kWide)));
      }
    };
    const int64_t nb0 = nb_begin + 2 * pair, nb1 = nb0 + 2;
    for (int64_t j = 0; j < groups; ++j) {
      _tile_zero(C00);
      if constexpr (NB == 2) _tile_zero(C01);
      if constexpr (MB == 2) _tile_zero(C10);
      if constexpr (MB == 2 && NB == 2) _tile_zero(C11);
      for (int64_t s = j * steps_per_group; s < std::min(steps, (j + 1) * steps_per_group); ++s) {
        _tile_loadd(A0, a0 + s * kstep, lda);
        _tile_loadd(B0, p0 + s * step_bytes, 64);
        _tile_dpbssd(C00, A0, B0);
        if constexpr (NB == 2) {
          _tile_loadd(B1, p1 + s * step_bytes, 64);
          _tile_dpbssd(C01, A0, B1);
        }
        if constexpr (MB == 2) {
          _tile_loadd(A1, a1 + s * kstep, lda);
          _tile_dpbssd(C10, A1, B0);
          if constexpr (NB == 2) _tile_dpbssd(C11, A1, B1);
        }
      }
      _tile_stored(C00, acc, 64);
      fold(0, m0, nb0, j);
      if constexpr (NB == 2) {
        _tile_stored(C01, acc, 64);
        fold(1, m0, nb1, j);
      }
      if constexpr (MB == 2) {
        _tile_stored(C10, acc, 64);
        fold(NB, m0 + kTileRows, nb0, j);
        if constexpr (NB == 2) {
          _tile_stored(C11, acc, 64);
          fold(3, m0 + kTileRows, nb1, j);
        }
      }
    }
    for (int mi = 0; mi < MB; ++mi) {
      for (int pi = 0; pi < NB; ++pi) finish(f[mi * NB + pi], m0 + mi * kTileRows, nb0 + 2 * pi);
    }
  }

  void finish(const float* f, int64_t m0, int64_t nb) const {
    const int64_t n0 = nb * B, cols = wide_cols(*a.w, nb, nb_end);
    const __mmask16 mask = static_cast<__mmask16>((1u << cols) - 1u);
    const __m512 bias = a.bias ? _mm512_maskz_loadu_ps(mask, a.bias + n0) : _mm512_setzero_ps();
    const int64_t rows = std::min<int64_t>(kTileRows, a.m - m0);
    for (int64_t r = 0; r < rows; ++r) {
      const __m512 acc = _mm512_load_ps(f + r * kWide);
      const __m512 y = act_groups ? _mm512_add_ps(acc, bias) : _mm512_fmadd_ps(acc, _mm512_set1_ps(a.row_scales[m0 + r]), bias);
      store_row(a.y, a.yb, (m0 + r) * a.ldy + n0, mask, y);
    }
  }
};

void gemm_i4(const IntGemmArgs& a, int64_t nb_begin, int64_t nb_end) {
  const PackedLinearWeightView& w = *a.w;
  if (a.m < kAmxMinRows || w.group_size % kTileK != 0) {
    avx512_vnni_linear_kernels().gemm_i4(a, nb_begin, nb_end);
    return;
  }
  const int64_t kp = w.k_padded(), steps = (kp + kTileK - 1) / kTileK, pairs = (nb_end - nb_begin + 1) / 2;
  const CodeRows a_rows(a, kp, steps);
  const auto build = [&](int64_t p0, int64_t p1, std::byte* out) {
    build_i4_panels(w, nb_begin, nb_end, steps, p0, p1, out);
  };
  const GroupFolds block{a, nb_begin, nb_end, w.groups(), kTileK, w.group_size / kTileK, steps, false};
  wide_sweep(a.m, pairs, steps, build, a_rows, block);
}

// ------------------------------------------------ W8A8 with activation groups on AMX
// Grouped int8 weights have the int8 layout, so the wide int8 panels serve.
// A group of g inputs is g / kstep tile steps (kstep = 64; the tile shapes
// allow 32, A 16 x 32 bytes and B 8 k-quads, but see gemm_i8g). Per group j the exact dot
// products are folded as acc = fma(float(dot_j), sa[m][j] * sw[n][j], acc),
// then y = acc + bias: gemm_i8g's roundings, lane for lane.
void configure_group_tiles(int64_t kstep) {
  TileConfig c{};
  c.palette_id = 1;
  for (int t = C00; t <= C11; ++t) c.rows[t] = kTileRows, c.colsb[t] = 64;
  for (int t = A0; t <= A1; ++t) c.rows[t] = kTileRows, c.colsb[t] = static_cast<uint16_t>(kstep);
  for (int t = B0; t <= B1; ++t) c.rows[t] = static_cast<uint8_t>(kstep / 4), c.colsb[t] = 64;
  _tile_loadconfig(&c);
}

void gemm_i8g(const IntGemmArgs& a, int64_t nb_begin, int64_t nb_end) {
  const PackedLinearWeightView& w = *a.w;
  const int64_t g = w.group_size;
  // Groups of 32: folding after every half step costs more than the tiles
  // save (measured: no faster than the avx512_vnni kernel), so g >= 64 only.
  if (a.m < kAmxMinRows || g % kTileK != 0) {
    avx512_vnni_linear_kernels().gemm_i8g(a, nb_begin, nb_end);
    return;
  }
  const int64_t kp = w.k_padded(), steps = (kp + kTileK - 1) / kTileK, pairs = (nb_end - nb_begin + 1) / 2;
  const int64_t kstep = std::min<int64_t>(g, kTileK);
  const CodeRows a_rows(a, kp, steps);  // g is a multiple of 64, so K is whole steps here too
  const auto build = [&](int64_t p0, int64_t p1, std::byte* out) {
    build_i8_panels(w, nb_begin, nb_end, steps, p0, p1, out);
    configure_group_tiles(kstep);  // wide_sweep configured the 64-k tiles
  };
  const GroupFolds block{a, nb_begin, nb_end, w.groups(), kstep, g / kstep, steps * kTileK / kstep, true};
  wide_sweep(a.m, pairs, steps, build, a_rows, block);
}

// ------------------------------------------------ weight-only on AMX-BF16
// tdpbf16ps: 16 rows x 32 bf16 activations times 32 k x 16 columns of bf16
// weights into float32 sums. Activations are rounded to bf16 once per call
// (linear_into, to_bf16_row: xb, zero-padded to whole tiles); weights are
// decoded once per call into the wide panels above (bf16_panels.hpp): int8 codes exactly (the
// column scale is applied to the float sum, as in the reference), int4 as
// bf16(code * group scale), f16 rounded to bf16, bf16 as stored. So the
// result differs from the float32 reference by the bf16 rounding of the
// activations (and of int4 / f16 weights): relative 2^-9 per product, the
// tolerance the tests state.
int64_t bf16_k_padded(int64_t k) { return (k + kBf16TileK - 1) / kBf16TileK * kBf16TileK; }

void gemm_float(const FloatGemmArgs& a, int64_t nb_begin, int64_t nb_end) {
  if (a.xb == nullptr) {
    avx512_vnni_linear_kernels().gemm_float(a, nb_begin, nb_end);
    return;
  }
  const PackedLinearWeightView& w = *a.w;
  const int64_t kb = bf16_k_padded(w.k), steps = kb / kBf16TileK, pairs = (nb_end - nb_begin + 1) / 2;
  const int64_t kp = w.k_padded();
  const auto build = [&](int64_t p0, int64_t p1, std::byte* out) {
    for (int64_t p = p0; p < p1; ++p) {
      std::byte* panel = out + (p - p0) * steps * kPanelStep;
      // Zeros: the k-pairs past kp, and the second half of a pair past nb_end.
      std::memset(panel + kp / 2 * 64, 0, static_cast<std::size_t>(steps * kPanelStep - kp / 2 * 64));
      const int64_t nb = nb_begin + 2 * p;
      decode_bf16_half(w, nb, panel);
      if (nb + 1 < nb_end) {
        decode_bf16_half(w, nb + 1, panel + 32);
      } else {
        for (int64_t r = 0; r < kp / 2; ++r) std::memset(panel + r * 64 + 32, 0, 32);
      }
    }
  };
  const auto* xb = reinterpret_cast<const std::byte*>(a.xb);
  const auto a_rows = [&](int64_t m0) { return std::pair<const std::byte*, int64_t>{xb + m0 * kb * 2, kb * 2}; };
  const auto store = [&](const int32_t* acc0, const int32_t* acc1, int64_t m0, int64_t pair) {
    const int64_t nb = nb_begin + 2 * pair;
    wide_float_epilogue(a, reinterpret_cast<const float*>(acc0), m0, nb, wide_cols(w, nb, nb_end));
    if (acc1) wide_float_epilogue(a, reinterpret_cast<const float*>(acc1), m0, nb + 2, wide_cols(w, nb + 2, nb_end));
  };
  wide_sweep(a.m, pairs, steps, build, a_rows, PlainBlock<true, decltype(store)>{steps, store});
}

#undef C00
#undef C01
#undef C10
#undef C11
#undef A0
#undef A1
#undef B0
#undef B1

}  // namespace

const LinearKernels& amx_linear_kernels() {
  static const LinearKernels table = [] {
    LinearKernels t = avx512_vnni_linear_kernels();
    t.name = "amx";
    t.gemm_i8 = gemm_i8;
    t.gemm_i4 = gemm_i4;
    t.gemm_i8g = gemm_i8g;
    t.prepared_max_m = kAmxMinRows - 1;
    t.bf16_out_min_m = amx_bf16_available() ? kAmxMinRows : 0;  // vcvtneps2bf16 needs AVX-512 BF16
    t.split_rows_from_m = 4 * kRowChunk;
    if (amx_bf16_available()) {
      t.gemm_float = gemm_float;
      t.bf16_min_m = kBf16MinRows;
      t.to_bf16_row = to_bf16_row;
    }
    return t;
  }();
  return table;
}

}  // namespace monoquant::kernels
