// Weight-only layers on AVX-512 BF16 (vdpbf16ps), for CPUs that have it
// without AMX-BF16 tiles: Zen 4 and later, Cooper Lake; the avx512_vnni set
// takes it from kBf16MinRows rows (gemm_avx512_vnni.cpp).
//
// Why: at many rows a weight-only layer is a float GEMM whatever its weight
// format, and the float32 panel kernel (one vfmadd231ps, 16 products, per
// lane group) ran at 0.74x-0.87x torch's float32 GEMM from M = 128 on Zen 4.
// vdpbf16ps does 32 products in the same slot. The activations are rounded
// to bf16 once per call (linear_into: FloatGemmArgs::xb), the weights decoded
// to bf16 once per call and column group (bf16_panels.hpp) -- the same
// rounding as the amx set's AMX-BF16 tiles, so the same stated tolerance
// (2^-9 relative per product; docs/ARCHITECTURE.md, "Exactness and tolerances").
//
// Shape of the work: for each group of four blocks (32 columns, two wide
// panels) the panels are decoded for the whole K, then row tiles of kRows
// rows pass over them, 2 x kRows zmm accumulators, one k-pair a step: two
// panel loads, kRows broadcasts of an activation pair, 2 x kRows vdpbf16ps.
#include <immintrin.h>

#include <algorithm>
#include <cstddef>
#include <cstring>
#include <vector>

#include "kernels/bf16_panels.hpp"
#include "kernels/gemm.hpp"
#include "monoquant/linear.hpp"

namespace monoquant::kernels {
namespace {

constexpr int64_t B = kLinearBlockN;
constexpr int64_t kWide = 2 * B;  // columns of a wide panel
constexpr int kRows = 8;          // rows of a tile: linear_into pads xb to 16-row multiples with zeros

// Columns of the panel at block nb that this call owns and the layer has.
int64_t panel_cols(const PackedLinearWeightView& w, int64_t nb, int64_t nb_end) {
  return std::min({kWide, (nb_end - nb) * B, w.n - nb * B});
}

// y = sum * (int8: column scale) + bias, the float reference's epilogue (no fma);
// into yb rounded to bf16 where linear_into asks for it.
inline void store_row(const FloatGemmArgs& a, int64_t row, int64_t nb, int64_t cols, __m512 sum) {
  const PackedLinearWeightView& w = *a.w;
  const int64_t n0 = nb * B;
  const __mmask16 mask = static_cast<__mmask16>((1u << cols) - 1u);
  if (w.format == WeightFormat::int8) sum = _mm512_mul_ps(sum, _mm512_maskz_loadu_ps(mask, w.scales + n0));
  if (a.bias) sum = _mm512_add_ps(sum, _mm512_maskz_loadu_ps(mask, a.bias + n0));
  if (a.yb) {
    _mm256_mask_storeu_epi16(a.yb + row * a.ldy + n0, mask, (__m256i)_mm512_cvtneps_pbh(sum));
  } else {
    _mm512_mask_storeu_ps(a.y + row * a.ldy + n0, mask, sum);
  }
}

// Rows [m0, m0 + kRows) x NP panels from block nb over `pairs` k-pairs.
// noinline, like the float32 panel kernel: inlined into its caller GCC 12
// kept accumulators on the stack.
template <int NP>
__attribute__((noinline)) void row_tile(const FloatGemmArgs& a, int64_t kb, const std::byte* panels,
                                        int64_t panel_bytes, int64_t pairs, int64_t m0, int64_t nb, int64_t nb_end) {
  // Separate arrays per panel: GCC scalarizes arrays into registers only up to a size.
  __m512 acc0[kRows], acc1[kRows];
  #pragma GCC unroll 8
  for (int r = 0; r < kRows; ++r) acc0[r] = acc1[r] = _mm512_setzero_ps();
  const uint16_t* x = a.xb + m0 * kb;
  for (int64_t i = 0; i < pairs; ++i) {
    const __m512bh w0 = (__m512bh)_mm512_load_si512(panels + i * 64);
    __m512bh w1{};
    if constexpr (NP == 2) w1 = (__m512bh)_mm512_load_si512(panels + panel_bytes + i * 64);
    #pragma GCC unroll 8
    for (int r = 0; r < kRows; ++r) {
      int32_t pair;
      std::memcpy(&pair, x + r * kb + 2 * i, sizeof pair);
      const __m512bh xv = (__m512bh)_mm512_set1_epi32(pair);
      acc0[r] = _mm512_dpbf16_ps(acc0[r], xv, w0);
      if constexpr (NP == 2) acc1[r] = _mm512_dpbf16_ps(acc1[r], xv, w1);
    }
  }
  const int64_t rows = std::min<int64_t>(kRows, a.m - m0);
  const int64_t cols0 = panel_cols(*a.w, nb, nb_end);
  for (int64_t r = 0; r < rows; ++r) store_row(a, m0 + r, nb, cols0, acc0[r]);
  if constexpr (NP == 2) {
    const int64_t cols1 = panel_cols(*a.w, nb + 2, nb_end);
    for (int64_t r = 0; r < rows; ++r) store_row(a, m0 + r, nb + 2, cols1, acc1[r]);
  }
}

// Panel p of blocks nb, nb + 1 (the second half zero when nb + 1 is not ours),
// rows of k-pairs [0, pairs_padded), zero past the weights' own k_padded.
void build_panel(const PackedLinearWeightView& w, int64_t nb, int64_t nb_end, int64_t pairs_padded, std::byte* panel) {
  const int64_t decoded = w.k_padded() / 2;
  std::memset(panel + decoded * 64, 0, static_cast<std::size_t>((pairs_padded - decoded) * 64));
  decode_bf16_half(w, nb, panel);
  if (nb + 1 < nb_end) {
    decode_bf16_half(w, nb + 1, panel + 32);
  } else {
    for (int64_t r = 0; r < decoded; ++r) std::memset(panel + r * 64 + 32, 0, 32);
  }
}

}  // namespace

// a.xb: [round_up(m, 16)][kb] bf16 activations, kb = round_up(k, 32), zero-padded.
void avx512_bf16_gemm_float(const FloatGemmArgs& a, int64_t nb_begin, int64_t nb_end) {
  const PackedLinearWeightView& w = *a.w;
  const int64_t kb = (w.k + 31) / 32 * 32;
  // The x pairs past k are zeros; the panel covers them (and w.k_padded()) with zeros too.
  const int64_t pairs_padded = std::max(kb, w.k_padded()) / 2, pairs = (w.k + 1) / 2;
  const int64_t panel_bytes = pairs_padded * 64;
  thread_local std::vector<std::byte> storage;
  storage.resize(static_cast<std::size_t>(2 * panel_bytes + 64));
  auto* panels = reinterpret_cast<std::byte*>((reinterpret_cast<uintptr_t>(storage.data()) + 63) & ~uintptr_t{63});
  for (int64_t nb = nb_begin; nb < nb_end; nb += 4) {
    const bool two = nb + 2 < nb_end;
    build_panel(w, nb, nb_end, pairs_padded, panels);
    if (two) build_panel(w, nb + 2, nb_end, pairs_padded, panels + panel_bytes);
    for (int64_t m0 = 0; m0 < a.m; m0 += kRows) {
      if (two) {
        row_tile<2>(a, kb, panels, panel_bytes, pairs, m0, nb, nb_end);
      } else {
        row_tile<1>(a, kb, panels, panel_bytes, pairs, m0, nb, nb_end);
      }
    }
  }
}

}  // namespace monoquant::kernels
