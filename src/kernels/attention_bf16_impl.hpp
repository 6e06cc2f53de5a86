// The parts of bf16 attention (include/monoquant/attention.hpp) that do not
// depend on how the two products are multiplied: packing K and V once per
// head into 16 x 64-byte tiles, the float32 softmax, prefetching, and the
// per-block driver. Included by attention_amx.cpp (AMX-BF16 tiles) and
// attention_avx512_bf16.cpp (vdpbf16ps), each compiled with its own flags:
// everything here is in an anonymous namespace, so that neither object's
// copy can be linked into the other's callers.
//
// Tile layouts (both variants read them):
//   K^T  [key block j][d step ds], 16 rows x 16 32-bit lanes: row p, lane n =
//        the d-pair (32 ds + 2p, +1) of key 16 j + n (zero past kv_len);
//   V    [key step kb][column tile dt]: row p = keys 32 kb + 2p and +1
//        interleaved, lanes = columns 16 dt .. +15 (zero past kv_len);
//   P    [16 rows][kvp] bf16, S [16][kvp] float32, O [16][head_dim] float32.
#pragma once

#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "monoquant/attention.hpp"

namespace monoquant {
namespace {

constexpr int64_t kRows = 16;     // query rows per block; keys per score tile
constexpr int64_t kPairK = 32;    // bf16 values along k in one tile row (64 bytes)
constexpr int64_t kTile = 512;    // uint16 elements of one 16 x 64-byte tile

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

// One (batch, head) at a time; Products supplies the two matrix products
// (static scores(head, q rows, row stride in bytes) into w.s and
// weighted_values(head) into w.o), on AMX tiles or on vdpbf16ps.
template <class Products>
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
        Products::scores(*this, q + q0 * a.q_strides[2], a.q_strides[2] * 2);
      } else {  // a short last block: zero-padded, so the tile never reads past q
        w.qpad.assign(static_cast<std::size_t>(kRows * D), 0);
        for (int64_t r = 0; r < rows; ++r) {
          std::memcpy(w.qpad.data() + r * D, q + (q0 + r) * a.q_strides[2], static_cast<std::size_t>(D) * 2);
        }
        Products::scores(*this, w.qpad.data(), D * 2);
      }
      softmax_block(rows, mask ? mask + q0 * a.mask_strides[2] : nullptr, sums);
      Products::weighted_values(*this);
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
}  // namespace monoquant
