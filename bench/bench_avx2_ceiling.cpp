// The ceiling of the AVX2 int8 inner loops without VNNI, with the data in L1:
// the instruction mix of the W8A8 dynamic kernel (src/kernels/gemm_avx2.cpp,
// six rows x eight columns, the sign trick that keeps 8-bit activations
// exact) against the mix FBGEMM's u8 x s8 kernels run (no vpsignb, which is
// only exact with 7-bit activations or 7-bit weights). What a whole GEMM can
// reach is bounded by these; bench/README.md ("AVX2 only") quotes them.
//
//   ./build/python/bench_avx2_ceiling
//
// This file alone is compiled with -mavx2; main checks the CPU first.
#include <benchmark/benchmark.h>
#include <immintrin.h>

#include <cstdint>
#include <cstdio>

namespace {

constexpr int kRows = 6;
constexpr int64_t kSteps = 64;  // chunks of 4 k cycled through (weights 2 KB, activations 1.5 KB: L1)

template <bool kSignTrick>
__attribute__((noinline)) int64_t inner_loop(int64_t iters, const int8_t* a, const int8_t* w) {
  __m256i acc[kRows];
  for (auto& x : acc) x = _mm256_setzero_si256();
  const __m256i ones = _mm256_set1_epi16(1);
  for (int64_t it = 0; it < iters; ++it) {
    const int64_t ch = it & (kSteps - 1);
    const __m256i wv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + ch * 32));
    const __m256i uv = kSignTrick ? _mm256_abs_epi8(wv) : wv;
#pragma GCC unroll 6
    for (int r = 0; r < kRows; ++r) {
      int32_t four;
      __builtin_memcpy(&four, a + r * kSteps * 4 + ch * 4, 4);
      const __m256i av = _mm256_set1_epi32(four);
      const __m256i pairs = kSignTrick ? _mm256_maddubs_epi16(uv, _mm256_sign_epi8(av, wv))
                                       : _mm256_maddubs_epi16(av, wv);
      acc[r] = _mm256_add_epi32(acc[r], _mm256_madd_epi16(pairs, ones));
    }
  }
  int64_t s = 0;
  for (auto& x : acc) s += _mm256_extract_epi32(x, 0);
  return s;
}

template <bool kSignTrick>
void ceiling(benchmark::State& state) {
  alignas(64) int8_t a[kRows * kSteps * 4], w[kSteps * 32];
  for (int i = 0; i < kRows * kSteps * 4; ++i) a[i] = static_cast<int8_t>(i % 100);
  for (int i = 0; i < kSteps * 32; ++i) w[i] = static_cast<int8_t>(i % 120 - 60);
  constexpr int64_t kIters = 1 << 20;
  for (auto _ : state) benchmark::DoNotOptimize(inner_loop<kSignTrick>(kIters, a, w));
  // Each iteration: kRows rows x 8 columns x 4 k multiply-adds.
  state.counters["GMAC/s"] = benchmark::Counter(static_cast<double>(kIters) * kRows * 32 * 1e-9,
                                                benchmark::Counter::kIsIterationInvariantRate);
}

BENCHMARK(ceiling<true>)->Name("avx2_int8_ceiling/sign_trick_exact_8bit");
BENCHMARK(ceiling<false>)->Name("avx2_int8_ceiling/u8s8_fbgemm_mix");

}  // namespace

int main(int argc, char** argv) {
  if (!__builtin_cpu_supports("avx2")) {
    std::printf("this CPU has no AVX2: nothing to measure\n");
    return 0;
  }
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
