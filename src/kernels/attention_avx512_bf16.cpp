// softmax(q k^T * scale + mask) v on AVX-512 BF16 (vdpbf16ps), for CPUs with
// bf16 dot products but no AMX tiles (Zen 4, Cooper Lake). The packing, the
// softmax and the driver are attention_bf16_impl.hpp's, as on AMX; only the
// two products differ: one vdpbf16ps multiplies 16 lanes by a broadcast
// bf16 pair and adds both products into float32, so the sums and roundings
// are those of the AMX tiles up to summation order (same tolerance).
//   scores   8 query rows x 32 keys at a time (16 accumulators), one d-pair
//            a step: two K^T tile rows, 8 broadcast q pairs;
//   P x V    8 rows x 32 columns (head_dim 32) or 4 rows x 64 (head_dim 64),
//            one key pair a step: the V tile rows of that pair, broadcast P pairs.
// On Zen 4 torch's float32 CPU flash attention was a fifth of a W8A8 MiniLM's
// time, its bf16 one a quarter (bench/README.md).
#include <immintrin.h>

#include <cstring>

#include "kernels/attention_bf16_impl.hpp"
#include "kernels/attention_variants.hpp"
#include "monoquant/thread_pool.hpp"

namespace monoquant {
namespace {

inline __m512bh pair_at(const uint16_t* p) {
  int32_t bits;
  std::memcpy(&bits, p, sizeof bits);
  return (__m512bh)_mm512_set1_epi32(bits);
}

struct Avx512Products {
  // S[16][kvp] = Q[16][D] K^T for the block (rows past the last real one are
  // zeros in qrows, so their scores are 0 and the softmax drops them).
  template <class H>
  static void scores(H& head, const uint16_t* qrows, int64_t q_stride_bytes) {
    const int64_t D = head.a.head_dim, dsteps = D / kPairK, blocks = head.kvp / kRows, kvp = head.kvp;
    const int64_t qs = q_stride_bytes / 2;
    const uint16_t* kt = head.w.kt.data();
    float* s = head.w.s.data();
    for (int64_t j = 0; j < blocks; j += 2) {  // kvp is whole 32-key steps: blocks is even
      for (int64_t r0 = 0; r0 < kRows; r0 += 8) {
        __m512 acc0[8], acc1[8];
        #pragma GCC unroll 8
        for (int r = 0; r < 8; ++r) acc0[r] = acc1[r] = _mm512_setzero_ps();
        for (int64_t dp = 0; dp < D / 2; ++dp) {
          const int64_t at = (dp / 16) * kTile + (dp % 16) * 32;
          const __m512bh k0 = (__m512bh)_mm512_loadu_si512(kt + j * dsteps * kTile + at);
          const __m512bh k1 = (__m512bh)_mm512_loadu_si512(kt + (j + 1) * dsteps * kTile + at);
          #pragma GCC unroll 8
          for (int r = 0; r < 8; ++r) {
            const __m512bh x = pair_at(qrows + (r0 + r) * qs + 2 * dp);
            acc0[r] = _mm512_dpbf16_ps(acc0[r], x, k0);
            acc1[r] = _mm512_dpbf16_ps(acc1[r], x, k1);
          }
        }
        #pragma GCC unroll 8
        for (int r = 0; r < 8; ++r) {
          _mm512_storeu_ps(s + (r0 + r) * kvp + j * kRows, acc0[r]);
          _mm512_storeu_ps(s + (r0 + r) * kvp + (j + 1) * kRows, acc1[r]);
        }
      }
    }
  }

  // O[16][D] = P[16][kvp] V, R rows x DT column tiles of 16 at a time.
  template <int DT, int R, class H>
  static void products_pv(H& head) {
    const int64_t kvp = head.kvp, D = head.a.head_dim;
    const uint16_t* vt = head.w.vt.data();
    const uint16_t* p = head.w.p.data();
    float* o = head.w.o.data();
    for (int64_t r0 = 0; r0 < kRows; r0 += R) {
      __m512 acc[R][DT];
      #pragma GCC unroll 16
      for (int r = 0; r < R; ++r)
        #pragma GCC unroll 4
        for (int t = 0; t < DT; ++t) acc[r][t] = _mm512_setzero_ps();
      for (int64_t kp = 0; kp < kvp / 2; ++kp) {
        const uint16_t* rows = vt + (kp / 16) * DT * kTile + (kp % 16) * 32;
        __m512bh v[DT];
        #pragma GCC unroll 4
        for (int t = 0; t < DT; ++t) v[t] = (__m512bh)_mm512_loadu_si512(rows + t * kTile);
        #pragma GCC unroll 16
        for (int r = 0; r < R; ++r) {
          const __m512bh x = pair_at(p + (r0 + r) * kvp + 2 * kp);
          #pragma GCC unroll 4
          for (int t = 0; t < DT; ++t) acc[r][t] = _mm512_dpbf16_ps(acc[r][t], x, v[t]);
        }
      }
      #pragma GCC unroll 16
      for (int r = 0; r < R; ++r)
        #pragma GCC unroll 4
        for (int t = 0; t < DT; ++t) _mm512_storeu_ps(o + (r0 + r) * D + 16 * t, acc[r][t]);
    }
  }

  template <class H>
  static void weighted_values(H& head) {
    if (head.a.head_dim == 64) {
      products_pv<4, 4>(head);
    } else {
      products_pv<2, 8>(head);
    }
  }
};

}  // namespace

void attention_bf16_avx512(const AttentionArgs& a, int64_t kvp) {
  parallel_for(a.batch * a.heads, 1, [&](int64_t i0, int64_t i1) {
    thread_local Scratch scratch;
    Head<Avx512Products> head{a, kvp, scratch};
    for (int64_t i = i0; i < i1; ++i) {
      if (i + 1 < i1) head.prefetch((i + 1) / a.heads, (i + 1) % a.heads);
      head.run(i / a.heads, i % a.heads);
    }
  });
}

}  // namespace monoquant
