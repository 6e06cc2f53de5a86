// AVX-512 VNNI (512-bit vpdpbusd) W8A8 kernel. Compiled with
// -mavx512f -mavx512bw -mavx512vl -mavx512vnni (this file only) and chosen at
// run time only where the CPU has them. On CPUs such as Sapphire Rapids one
// 512-bit vpdpbusd does the work of two 256-bit ones in the same slot, which
// is what the compute-bound shapes (M >= 8) need. Everything else (float
// activations, W4A8, single rows, remainder blocks) is the AVX2 / AVX-VNNI
// code. Exactness is the same argument as gemm_avx2_vnni.cpp: u8 x s8
// products summed in int32 without an int16 stage, offset removed with the
// packed column sums.
#include "kernels/gemm_avx2_common.hpp"

namespace monoquant::kernels {

void avx2_gemm_float(const FloatGemmArgs& a, int64_t nb_begin, int64_t nb_end);
void avx2_vnni_gemm_i8(const IntGemmArgs& a, int64_t nb_begin, int64_t nb_end);
void avx2_vnni_gemm_i4(const IntGemmArgs& a, int64_t nb_begin, int64_t nb_end);
void avx2_vnni_prepare_u8(const int8_t* q, int64_t n, int32_t zp, void* out);

namespace {

using namespace avx2;

inline void dpbusd(__m512i& acc, __m512i a, __m512i b) { acc = _mm512_dpbusd_epi32(acc, a, b); }

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

void gemm_i8(const IntGemmArgs& a, int64_t nb_begin, int64_t nb_end) {
  const int64_t groups_end = nb_begin + (nb_end - nb_begin) / 4 * 4;
  if (a.m < 2 || groups_end == nb_begin) {
    avx2_vnni_gemm_i8(a, nb_begin, nb_end);
    return;
  }
  const std::size_t block_bytes = a.w->data_bytes() / static_cast<std::size_t>(a.w->n_blocks());
  const int64_t pass = std::max<int64_t>(4, blocks_per_pass(block_bytes) / 4 * 4);
  for (int64_t p0 = nb_begin; p0 < groups_end; p0 += pass) {
    const int64_t p1 = std::min(groups_end, p0 + pass);
    for (int64_t m0 = 0; m0 < a.m; m0 += 4) {
      const int rows = static_cast<int>(std::min<int64_t>(4, a.m - m0));
      for (int64_t nb = p0; nb < p1; nb += 4) {
        switch (rows) {
          case 4: i8_tile4<4>(a, m0, nb); break;
          case 3: i8_tile4<3>(a, m0, nb); break;
          case 2: i8_tile4<2>(a, m0, nb); break;
          default: i8_tile4<1>(a, m0, nb); break;
        }
      }
    }
  }
  if (groups_end < nb_end) avx2_vnni_gemm_i8(a, groups_end, nb_end);
}

}  // namespace

const LinearKernels& avx512_vnni_linear_kernels() {
  static const LinearKernels table{"avx512_vnni", avx2_gemm_float, gemm_i8, avx2_vnni_gemm_i4, 1,
                                   avx2_vnni_prepare_u8};
  return table;
}

}  // namespace monoquant::kernels
