// Google Benchmark for the quantized linear kernels: one family per mode
// (w7a8: 7-bit weight codes, the narrow-code kernels),
// over the shapes (M in {1, 8, 32, 128}; (K, N) in {(384, 384),
// (384, 1536), (1536, 384), (4096, 4096), (4096, 11008)}) and 1 / 2 threads.
// Counters: GMAC/s (multiply-adds) and weight GB/s (packed bytes read).
//
//   build/python/bench_linear --benchmark_filter='w8a8/.*/4096/4096'
//   MONOQUANT_ISA=scalar / MONOQUANT_VNNI=0 pin a kernel set.
#include <benchmark/benchmark.h>

#include <cstdint>
#include <random>
#include <vector>

#include "monoquant/linear.hpp"
#include "monoquant/thread_pool.hpp"

namespace {

using namespace monoquant;

enum Kind { kW8A8, kW8A8Static, kW7A8, kW7A8Static, kW8, kW4, kW4A8, kF16, kBF16 };

PackedLinearWeight make_weight(Kind kind, int64_t n, int64_t k) {
  std::mt19937 gen(7);
  if (kind == kW4 || kind == kW4A8) {
    const int64_t g = 128, groups = (k + g - 1) / g;
    std::vector<uint8_t> bytes(static_cast<std::size_t>(n * ((k + 1) / 2)));
    for (auto& b : bytes) b = static_cast<uint8_t>(gen());
    std::vector<float> s(static_cast<std::size_t>(n * groups), 0.01f);
    return pack_linear_int4(TensorView(bytes.data(), DType::u8, {n, (k + 1) / 2}), k,
                            TensorView(s.data(), DType::f32, {n, groups}), g);
  }
  if (kind == kF16 || kind == kBF16) {
    std::vector<uint16_t> h(static_cast<std::size_t>(n * k));
    for (auto& v : h) v = static_cast<uint16_t>(kind == kF16 ? 0x2000 + gen() % 0x1000 : 0x3c00 + gen() % 0x100);
    return pack_linear_half(TensorView(h.data(), kind == kF16 ? DType::f16 : DType::bf16, {n, k}));
  }
  // 7-bit weights (codes in [-63, 63]) run the narrow-code kernels where a set has them.
  const int levels = kind == kW7A8 || kind == kW7A8Static ? 63 : 127;
  std::vector<int8_t> q(static_cast<std::size_t>(n * k));
  for (auto& v : q) v = static_cast<int8_t>(static_cast<int>(gen() % (2 * levels + 1)) - levels);
  std::vector<float> s(static_cast<std::size_t>(n), 0.01f);
  return pack_linear_int8(TensorView(q.data(), DType::i8, {n, k}), TensorView(s.data(), DType::f32, {n}));
}

void run_linear(benchmark::State& state, Kind kind) {
  const int64_t m = state.range(0), k = state.range(1), n = state.range(2);
  set_num_threads(static_cast<int>(state.range(3)));
  const PackedLinearWeight w = make_weight(kind, n, k);
  std::mt19937 gen(3);
  std::normal_distribution<float> d;
  std::vector<float> x(static_cast<std::size_t>(m * k)), y(static_cast<std::size_t>(m * n)), bias(static_cast<std::size_t>(n), 0.5f);
  for (auto& v : x) v = d(gen);
  LinearOptions o;
  if (kind == kW8A8 || kind == kW7A8 || kind == kW4A8) o.mode = LinearMode::dynamic_int8;
  if (kind == kW8A8Static || kind == kW7A8Static) o = {LinearMode::static_int8, 0.03f, 3};
  for (auto _ : state) {
    linear_into(x.data(), m, k, w.view(), bias.data(), o, y.data(), n);
    benchmark::DoNotOptimize(y.data());
  }
  state.counters["GMAC/s"] = benchmark::Counter(static_cast<double>(m * n * k) * 1e-9 * static_cast<double>(state.iterations()),
                                                benchmark::Counter::kIsRate);
  state.counters["wGB/s"] = benchmark::Counter(
      static_cast<double>(w.data.nbytes()) * 1e-9 * static_cast<double>(state.iterations()), benchmark::Counter::kIsRate);
  state.SetLabel(std::string(linear_kernel_name()));
}

void shapes(benchmark::internal::Benchmark* b) {
  b->ArgNames({"M", "K", "N", "threads"});
  for (const int64_t t : {1, 2})
    for (const auto& kn : std::vector<std::pair<int64_t, int64_t>>{{384, 384}, {384, 1536}, {1536, 384}, {4096, 4096}, {4096, 11008}})
      for (const int64_t m : {1, 8, 32, 128}) b->Args({m, kn.first, kn.second, t});
  b->Unit(benchmark::kMicrosecond)->UseRealTime();
}

BENCHMARK_CAPTURE(run_linear, w8a8, kW8A8)->Apply(shapes);
BENCHMARK_CAPTURE(run_linear, w8a8_static, kW8A8Static)->Apply(shapes);
BENCHMARK_CAPTURE(run_linear, w7a8, kW7A8)->Apply(shapes);
BENCHMARK_CAPTURE(run_linear, w7a8_static, kW7A8Static)->Apply(shapes);
BENCHMARK_CAPTURE(run_linear, w8, kW8)->Apply(shapes);
BENCHMARK_CAPTURE(run_linear, w4, kW4)->Apply(shapes);
BENCHMARK_CAPTURE(run_linear, w4a8, kW4A8)->Apply(shapes);
BENCHMARK_CAPTURE(run_linear, f16, kF16)->Apply(shapes);
BENCHMARK_CAPTURE(run_linear, bf16, kBF16)->Apply(shapes);

}  // namespace

BENCHMARK_MAIN();
