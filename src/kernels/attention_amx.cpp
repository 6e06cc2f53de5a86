// softmax(q k^T * scale + mask) v on AMX-BF16 tiles (include/monoquant/attention.hpp).
// One (batch, head) at a time, per block of 16 query rows:
//   scores  S[16][kv] = Q[16][D] x K^T, tdpbf16ps over D in steps of 32, K
//           transposed once per head into B tiles (16 d-pairs x 16 keys);
//   softmax per row in float32 on AVX-512, P rounded to bf16 [16][kv];
//   output  O[16][D] = P x V, tdpbf16ps over the keys in steps of 32, V
//           interleaved once per head into B tiles (16 key pairs x 16 columns);
//   O / row sum, rounded to bf16, into out[b][row][h][:].
// Every tile is 16 rows x 64 bytes, so one configuration serves both products.
// Compiled with the AMX and AVX-512 BF16 flags (this file only); run only
// where amx_bf16_available().
#include "monoquant/attention.hpp"

#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "kernels/amx_tile_config.hpp"
#include "monoquant/error.hpp"
#include "monoquant/linear.hpp"
#include "monoquant/thread_pool.hpp"

#include "kernels/attention_bf16_impl.hpp"

namespace monoquant {
namespace {

// Tiles 0..3 accumulate, 4 holds A, 5..7 B (macro-free: literal arguments).
void configure_tiles() {
  kernels::TileConfig c{};
  c.palette_id = 1;
  for (int t = 0; t < 8; ++t) c.rows[t] = kRows, c.colsb[t] = 64;
  _tile_loadconfig(&c);
}

struct AmxProducts {
  // Scores of rows [q0, q0 + 16) into w.s ([16][kvp] float32), four key
  // blocks at a time so that four tile products are in flight, then two. (One
  // template for both loops measured 0.89x: 4.43 against 3.93 ms at [32, 12,
  // 128, 32], so the two stay written out.)
  template <class H>
  static void scores(H& head, const uint16_t* qrows, int64_t q_stride_bytes) {
    const AttentionArgs& a = head.a;
    auto& w = head.w;
    const int64_t kvp = head.kvp;
    const int64_t dsteps = a.head_dim / kPairK, blocks = kvp / kRows, ld = kvp * 4;
    const auto kt = [&](int64_t j, int64_t ds) { return w.kt.data() + (j * dsteps + ds) * kTile; };
    int64_t j = 0;
    for (; j + 4 <= blocks; j += 4) {
      _tile_zero(0);
      _tile_zero(1);
      _tile_zero(2);
      _tile_zero(3);
      for (int64_t ds = 0; ds < dsteps; ++ds) {
        _tile_loadd(4, qrows + ds * kPairK, q_stride_bytes);
        _tile_loadd(5, kt(j, ds), 64);
        _tile_loadd(6, kt(j + 1, ds), 64);
        _tile_loadd(7, kt(j + 2, ds), 64);
        _tile_dpbf16ps(0, 4, 5);
        _tile_dpbf16ps(1, 4, 6);
        _tile_dpbf16ps(2, 4, 7);
        _tile_loadd(5, kt(j + 3, ds), 64);
        _tile_dpbf16ps(3, 4, 5);
      }
      _tile_stored(0, w.s.data() + j * kRows, ld);
      _tile_stored(1, w.s.data() + (j + 1) * kRows, ld);
      _tile_stored(2, w.s.data() + (j + 2) * kRows, ld);
      _tile_stored(3, w.s.data() + (j + 3) * kRows, ld);
    }
    for (; j < blocks; j += 2) {  // kvp is whole 32-key steps: blocks is even
      _tile_zero(0);
      _tile_zero(1);
      for (int64_t ds = 0; ds < dsteps; ++ds) {
        _tile_loadd(4, qrows + ds * kPairK, q_stride_bytes);
        _tile_loadd(5, kt(j, ds), 64);
        _tile_loadd(6, kt(j + 1, ds), 64);
        _tile_dpbf16ps(0, 4, 5);
        _tile_dpbf16ps(1, 4, 6);
      }
      _tile_stored(0, w.s.data() + j * kRows, ld);
      _tile_stored(1, w.s.data() + (j + 1) * kRows, ld);
    }
  }


  // O = P x V for the block into w.o ([16][D] float32).
  template <int Tiles, class H>
  static void weighted_values_of(H& head) {
    const AttentionArgs& a = head.a;
    auto& w = head.w;
    const int64_t kvp = head.kvp;
    const int64_t steps = kvp / kPairK;
    _tile_zero(0);
    _tile_zero(1);
    if constexpr (Tiles == 4) {
      _tile_zero(2);
      _tile_zero(3);
    }
    for (int64_t kb = 0; kb < steps; ++kb) {
      _tile_loadd(4, w.p.data() + kb * kPairK, kvp * 2);
      const uint16_t* vt = w.vt.data() + kb * Tiles * kTile;
      _tile_loadd(5, vt, 64);
      _tile_loadd(6, vt + kTile, 64);
      _tile_dpbf16ps(0, 4, 5);
      _tile_dpbf16ps(1, 4, 6);
      if constexpr (Tiles == 4) {
        _tile_loadd(7, vt + 2 * kTile, 64);
        _tile_loadd(5, vt + 3 * kTile, 64);
        _tile_dpbf16ps(2, 4, 7);
        _tile_dpbf16ps(3, 4, 5);
      }
    }
    const int64_t ld = a.head_dim * 4;
    _tile_stored(0, w.o.data(), ld);
    _tile_stored(1, w.o.data() + 16, ld);
    if constexpr (Tiles == 4) {
      _tile_stored(2, w.o.data() + 32, ld);
      _tile_stored(3, w.o.data() + 48, ld);
    }
  }


  template <class H>
  static void weighted_values(H& head) {
    if (head.a.head_dim == 64) {
      weighted_values_of<4>(head);
    } else {
      weighted_values_of<2>(head);
    }
  }
};

}  // namespace

void attention_bf16_amx(const AttentionArgs& a, int64_t kvp) {
  parallel_for(a.batch * a.heads, 1, [&](int64_t i0, int64_t i1) {
    thread_local Scratch scratch;
    configure_tiles();
    Head<AmxProducts> head{a, kvp, scratch};
    for (int64_t i = i0; i < i1; ++i) {
      if (i + 1 < i1) head.prefetch((i + 1) / a.heads, (i + 1) % a.heads);
      head.run(i / a.heads, i % a.heads);
    }
    _tile_release();
  });
}

}  // namespace monoquant
