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

namespace monoquant {
namespace {

constexpr int64_t kRows = 16;     // query rows per block; keys per score tile
constexpr int64_t kPairK = 32;    // bf16 values along k in one tile row (64 bytes)
constexpr int64_t kTile = 512;    // uint16 elements of one 16 x 64-byte tile
constexpr int64_t kMaxKv = 4096;  // score rows stay in L2: 16 x 4096 float32 = 256 KB

// Tiles 0..3 accumulate, 4 holds A, 5..7 B (macro-free: literal arguments).
void configure_tiles() {
  kernels::TileConfig c{};
  c.palette_id = 1;
  for (int t = 0; t < 8; ++t) c.rows[t] = kRows, c.colsb[t] = 64;
  _tile_loadconfig(&c);
}

// 2^t for t <= 0 (t = (x - max) log2(e), so 2^t = e^(x - max)): t = n + f with
// |f| <= 1/2, 2^t = 2^n 2^f, 2^f by its Taylor series (coefficients
// ln(2)^k / k!) to degree 5: relative error below 2.5e-6, far inside the bf16
// rounding of the probabilities. Very negative t gives 0 (vscalefps).
inline __m512 exp2_nonpositive(__m512 t) {
  const __m512 n = _mm512_roundscale_ps(t, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  const __m512 f = _mm512_sub_ps(t, n);
  __m512 p = _mm512_set1_ps(1.3333558146428441e-3f);
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(9.618129107628477e-3f));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(5.5504108664821576e-2f));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(0.2402265069591007f));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(0.6931471805599453f));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(1.0f));
  return _mm512_scalef_ps(p, n);
}

__mmask16 first(int64_t n) { return n >= 16 ? __mmask16{0xffff} : static_cast<__mmask16>((1u << n) - 1u); }

struct Scratch {
  std::vector<uint16_t> kt, vt, qpad, p;
  std::vector<float> s, o;
  std::vector<__mmask16> allowed;  // [16 rows][16 keys at a time]: the keys the mask allows
};

struct Head {
  const AttentionArgs& a;
  int64_t kvp;     // kv_len rounded up to whole 32-key steps
  Scratch& w;

  // K^T tiles, [key block j][d step ds]: row p, column n = the d-pair
  // (32 ds + 2p, +1) of key 16 j + n (zero past kv_len): a 16 x 16 transpose
  // of 32-bit pairs, one gather per tile row.
  void pack_keys(const uint16_t* k) {
    const int64_t D = a.head_dim, dsteps = D / kPairK, blocks = kvp / kRows;
    w.kt.resize(static_cast<std::size_t>(blocks * dsteps * kTile));
    const __m512i rows = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                                            _mm512_set1_epi32(static_cast<int32_t>(a.k_strides[2] / 2)));
    for (int64_t j = 0; j < blocks; ++j) {
      const __mmask16 keys = first(std::max<int64_t>(0, a.kv_len - j * kRows));
      const auto* base = reinterpret_cast<const int32_t*>(k + std::min(j * kRows, a.kv_len - 1) * a.k_strides[2]);
      for (int64_t ds = 0; ds < dsteps; ++ds) {
        uint16_t* tile = w.kt.data() + (j * dsteps + ds) * kTile;
        for (int64_t p = 0; p < 16; ++p) {
          const __m512i v = _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), keys, rows, base + ds * 16 + p, 4);
          _mm512_storeu_si512(tile + p * 32, v);
        }
      }
    }
  }

  // V tiles, [key step kb][column tile dt]: row p holds keys 32 kb + 2p and
  // +1 interleaved, columns 16 dt .. +15 (zero past kv_len).
  void pack_values(const uint16_t* v) {
    const int64_t D = a.head_dim, dtiles = D / 16, steps = kvp / kPairK;
    w.vt.resize(static_cast<std::size_t>(steps * dtiles * kTile));
    const auto column_tile = [&](int64_t key, int64_t dt) {
      return key < a.kv_len
                 ? _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(v + key * a.v_strides[2] + dt * 16)))
                 : _mm512_setzero_si512();
    };
    for (int64_t kb = 0; kb < steps; ++kb) {
      for (int64_t dt = 0; dt < dtiles; ++dt) {
        uint16_t* tile = w.vt.data() + (kb * dtiles + dt) * kTile;
        for (int64_t p = 0; p < 16; ++p) {
          const int64_t key = kb * kPairK + 2 * p;
          const __m512i lo = column_tile(key, dt), hi = column_tile(key + 1, dt);
          _mm512_storeu_si512(tile + p * 32, _mm512_or_si512(lo, _mm512_slli_epi32(hi, 16)));
        }
      }
    }
  }

  // Scores of rows [q0, q0 + 16) into w.s ([16][kvp] float32), four key
  // blocks at a time so that four tile products are in flight, then two. (One
  // template for both loops measured 0.89x: 4.43 against 3.93 ms at [32, 12,
  // 128, 32], so the two stay written out.)
  void scores(const uint16_t* qrows, int64_t q_stride_bytes) {
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

  // Rows [0, rows) of the block: P = exp(s * scale - max) over the keys the
  // mask allows, rounded to bf16 into w.p (rows past `rows`, and keys past
  // kv_len, zero); sums[r] = the float32 sum (0: no key allowed). Phase by
  // phase over all rows (masks, maxima, exponentials), so that the rows'
  // independent reductions overlap instead of each row waiting for its own.
  // max(s * scale) is max(s) * scale (rounding is monotonic, scale > 0), and
  // the exponent is computed in log2 units in one fmsub.
  void softmax_block(int64_t rows, const bool* mask_rows, float* sums) {
    const int64_t chunks = (a.kv_len + 15) / 16;
    for (int64_t r = 0; r < rows; ++r) {
      const bool* mask_row = mask_rows ? mask_rows + r * a.mask_strides[2] : nullptr;
      __mmask16* allowed = w.allowed.data() + r * chunks;
      for (int64_t c = 0; c < chunks; ++c) {
        const __mmask16 in_range = first(a.kv_len - c * 16);
        __mmask16 m = in_range;
        if (mask_row && a.mask_strides[3] == 1) {
          m = _mm_mask_cmpneq_epi8_mask(in_range, _mm_maskz_loadu_epi8(in_range, mask_row + c * 16),
                                        _mm_setzero_si128());
        } else if (mask_row) {
          m = 0;
          for (int i = 0; i < 16; ++i) {
            if ((in_range >> i) & 1 && mask_row[(c * 16 + i) * a.mask_strides[3]]) m |= static_cast<__mmask16>(1u << i);
          }
        }
        allowed[c] = m;
      }
    }
    float top[kRows];
    for (int64_t r = 0; r < rows; ++r) {
      const float* s = w.s.data() + r * kvp;
      const __mmask16* allowed = w.allowed.data() + r * chunks;
      __m512 vmax = _mm512_set1_ps(-INFINITY);
      for (int64_t c = 0; c < chunks; ++c) vmax = _mm512_mask_max_ps(vmax, allowed[c], vmax, _mm512_loadu_ps(s + c * 16));
      top[r] = _mm512_reduce_max_ps(vmax);
    }
    constexpr float kLog2e = 1.4426950408889634f;
    const __m512 c1 = _mm512_set1_ps(a.scale * kLog2e);
    for (int64_t r = 0; r < kRows; ++r) {
      uint16_t* p = w.p.data() + r * kvp;
      if (r >= rows || top[r] == -INFINITY) {  // padding rows, and rows the mask allows no key
        std::memset(p, 0, static_cast<std::size_t>(kvp) * 2);
        sums[r] = 0.0f;
        continue;
      }
      const float* s = w.s.data() + r * kvp;
      const __mmask16* allowed = w.allowed.data() + r * chunks;
      const __m512 c0 = _mm512_set1_ps(top[r] * a.scale * kLog2e);
      __m512 sum = _mm512_setzero_ps();
      for (int64_t c = 0; c < chunks; ++c) {
        const __m512 e = _mm512_maskz_mov_ps(allowed[c], exp2_nonpositive(_mm512_fmsub_ps(_mm512_loadu_ps(s + c * 16), c1, c0)));
        sum = _mm512_add_ps(sum, e);
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(p + c * 16), (__m256i)_mm512_cvtneps_pbh(e));
      }
      for (int64_t k0 = chunks * 16; k0 < kvp; k0 += 16) {
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(p + k0), _mm256_setzero_si256());
      }
      sums[r] = _mm512_reduce_add_ps(sum);
    }
  }

  // O = P x V for the block into w.o ([16][D] float32).
  template <int Tiles>
  void weighted_values() {
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

  // The rows of q, k and v of head (b, h) towards L2: they are strided (one
  // cache line a row at head_dim 32) and, fetched on demand, their misses
  // stall the tile loads and the key gathers of that head.
  void prefetch(int64_t b, int64_t h) const {
    const int64_t bytes = a.head_dim * 2;
    const auto rows = [&](const uint16_t* base, const int64_t* st, int64_t n) {
      const auto* p = reinterpret_cast<const char*>(base + b * st[0] + h * st[1]);
      for (int64_t r = 0; r < n; ++r) {
        for (int64_t c = 0; c < bytes; c += 64) _mm_prefetch(p + r * st[2] * 2 + c, _MM_HINT_T1);
      }
    };
    rows(a.q, a.q_strides, a.q_len);
    rows(a.k, a.k_strides, a.kv_len);
    rows(a.v, a.v_strides, a.kv_len);
  }

  void run(int64_t b, int64_t h) {
    const int64_t D = a.head_dim;
    const uint16_t* q = a.q + b * a.q_strides[0] + h * a.q_strides[1];
    pack_keys(a.k + b * a.k_strides[0] + h * a.k_strides[1]);
    pack_values(a.v + b * a.v_strides[0] + h * a.v_strides[1]);
    w.s.resize(static_cast<std::size_t>(kRows * kvp));
    w.p.resize(static_cast<std::size_t>(kRows * kvp));
    w.o.resize(static_cast<std::size_t>(kRows * D));
    w.allowed.resize(static_cast<std::size_t>(kRows * kvp / 16));
    const bool* mask = a.mask ? a.mask + b * a.mask_strides[0] + h * a.mask_strides[1] : nullptr;
    float sums[kRows];
    for (int64_t q0 = 0; q0 < a.q_len; q0 += kRows) {
      const int64_t rows = std::min(kRows, a.q_len - q0);
      if (rows == kRows) {
        scores(q + q0 * a.q_strides[2], a.q_strides[2] * 2);
      } else {  // a short last block: zero-padded, so the tile never reads past q
        w.qpad.assign(static_cast<std::size_t>(kRows * D), 0);
        for (int64_t r = 0; r < rows; ++r) {
          std::memcpy(w.qpad.data() + r * D, q + (q0 + r) * a.q_strides[2], static_cast<std::size_t>(D) * 2);
        }
        scores(w.qpad.data(), D * 2);
      }
      softmax_block(rows, mask ? mask + q0 * a.mask_strides[2] : nullptr, sums);
      if (D == 64) {
        weighted_values<4>();
      } else {
        weighted_values<2>();
      }
      for (int64_t r = 0; r < rows; ++r) {
        const __m512 inv = _mm512_set1_ps(sums[r] > 0.0f ? 1.0f / sums[r] : 0.0f);
        uint16_t* dst = a.out + ((b * a.q_len + q0 + r) * a.heads + h) * D;
        for (int64_t c = 0; c < D; c += 16) {
          const __m512 o = _mm512_mul_ps(_mm512_loadu_ps(w.o.data() + r * D + c), inv);
          _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + c), (__m256i)_mm512_cvtneps_pbh(o));
        }
      }
    }
  }
};

}  // namespace

bool attention_bf16_supported(int64_t head_dim, int64_t kv_len) {
  return amx_bf16_available() && (head_dim == 32 || head_dim == 64) && kv_len >= 1 && kv_len <= kMaxKv;
}

void attention_bf16(const AttentionArgs& a) {
  if (!attention_bf16_supported(a.head_dim, a.kv_len)) {
    throw_unsupported("attention_bf16 needs AMX-BF16, head_dim 32 or 64 and 1 to " + std::to_string(kMaxKv) +
                      " keys; got head_dim " + std::to_string(a.head_dim) + ", " + std::to_string(a.kv_len) + " keys" +
                      (amx_bf16_available() ? "" : " on a CPU without AMX-BF16"));
  }
  if (!a.q || !a.k || !a.v || !a.out || a.batch < 0 || a.heads < 0 || a.q_len < 0) {
    throw_invalid_argument("attention_bf16: null tensor or negative size");
  }
  if (a.k_strides[2] % 2 != 0) {  // the keys are gathered as 32-bit pairs
    throw_invalid_argument("attention_bf16: the key row stride must be even, got " + std::to_string(a.k_strides[2]));
  }
  const int64_t kvp = (a.kv_len + kPairK - 1) / kPairK * kPairK;
  parallel_for(a.batch * a.heads, 1, [&](int64_t i0, int64_t i1) {
    thread_local Scratch scratch;
    configure_tiles();
    Head head{a, kvp, scratch};
    for (int64_t i = i0; i < i1; ++i) {
      if (i + 1 < i1) head.prefetch((i + 1) / a.heads, (i + 1) % a.heads);
      head.run(i / a.heads, i % a.heads);
    }
    _tile_release();
  });
}

}  // namespace monoquant
