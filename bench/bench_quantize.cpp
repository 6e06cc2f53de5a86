// Quantization throughput on one 4096 x 4096 float32 matrix (64 MiB), against
// a plain memcpy of the same bytes (the bandwidth ceiling).
//
//   ./build/python/bench_quantize --benchmark_repetitions=9 --benchmark_min_time=0.1
//       --benchmark_enable_random_interleaving=true --benchmark_report_aggregates_only=true
//
// (one command line; see bench/README.md).
//
// Every benchmark is named <op>/<isa>/threads:<n>; threads is
// monoquant::set_num_threads (the library's pool), not Google Benchmark's
// own threads. Times are wall-clock (UseRealTime): the work runs on the pool.
//
// Counters (see bench/README.md):
//   bytes_per_second  the 64 MiB float32 matrix per second, for every op: the
//                     input of quantize / cast / memcpy, the output of the
//                     dequantizers. Same numerator everywhere, so two rates
//                     divide into a speed ratio.
//   traffic           (bytes read + bytes written) per second, counting the
//                     input once and the output (codes + scales) once; memcpy
//                     moves 2 x 64 MiB. traffic / traffic(memcpy) is the
//                     "fraction of memcpy bandwidth".
//
// After the usual table a summary prints, per op, the median time and the two
// ratios against memcpy at the same thread count, all from this run.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <map>
#include <random>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include <unistd.h>

#include "monoquant/cpu_features.hpp"
#include "monoquant/float_cast.hpp"
#include "monoquant/quantize.hpp"
#include "monoquant/tensor.hpp"
#include "monoquant/thread_pool.hpp"

namespace mq = monoquant;

namespace {

constexpr int64_t kRows = 4096;
constexpr int64_t kCols = 4096;
constexpr int64_t kElems = kRows * kCols;
constexpr double kF32Bytes = static_cast<double>(kElems) * 4.0;  // 64 MiB
// Untimed calls before each benchmark's timed loop (first-touch of buffers,
// thread pool start, allocator warm-up).
constexpr int kWarmup = 2;

// The matrix every benchmark reads: N(0, 1) with a fixed seed, so that runs
// are comparable. Made once, on first use.
const mq::Tensor& input() {
  static const mq::Tensor x = [] {
    mq::Tensor t(mq::DType::f32, {kRows, kCols});
    std::mt19937 rng(20240611);
    std::normal_distribution<float> dist(0.0f, 1.0f);
    float* p = t.as<float>();
    for (int64_t i = 0; i < kElems; ++i) p[i] = dist(rng);
    return t;
  }();
  return x;
}

mq::QuantSpec int8_per_channel() {
  mq::QuantSpec s;
  s.bits = 8;
  s.scheme = mq::Scheme::symmetric;
  s.granularity = mq::Granularity::per_channel;
  s.axis = 0;
  return s;
}

mq::QuantSpec int4_g128() {
  mq::QuantSpec s;
  s.bits = 4;
  s.scheme = mq::Scheme::symmetric;
  s.granularity = mq::Granularity::per_group;
  s.group_size = 128;
  return s;
}

// Bytes a quantized copy of the matrix occupies (codes + scales).
double int8_pc_bytes() { return static_cast<double>(kElems) + kRows * 4.0; }
double int4_g128_bytes() { return static_cast<double>(kElems) / 2 + kRows * (kCols / 128) * 4.0; }
double f16_bytes() { return static_cast<double>(kElems) * 2; }

// Pins thread count and ISA for one benchmark; false (and the benchmark
// marked as skipped with an error) when the ISA is not available.
bool setup(benchmark::State& state, int threads, mq::Isa isa) {
  mq::set_num_threads(threads);
  try {
    mq::set_isa(isa);
  } catch (const std::exception& e) {
    state.SkipWithError(e.what());
    return false;
  }
  (void)input();
  return true;
}

void set_rates(benchmark::State& state, double moved_bytes) {
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * static_cast<int64_t>(kF32Bytes));
  state.counters["traffic"] = benchmark::Counter(static_cast<double>(state.iterations()) * moved_bytes,
                                                 benchmark::Counter::kIsRate, benchmark::Counter::OneK::kIs1024);
}

// ------------------------------------------------------------ quantizers

void BM_quantize(benchmark::State& state, int threads, mq::Isa isa, mq::QuantSpec spec, double out_bytes) {
  if (!setup(state, threads, isa)) return;
  const mq::TensorView x = input().view();
  for (int i = 0; i < kWarmup; ++i) benchmark::DoNotOptimize(mq::quantize(x, spec).codes.data());
  for (auto _ : state) {
    mq::QuantizedTensor q = mq::quantize(x, spec);
    benchmark::DoNotOptimize(q.codes.data());
    benchmark::ClobberMemory();
  }
  set_rates(state, kF32Bytes + out_bytes);
}

void BM_cast_f16(benchmark::State& state, int threads, mq::Isa isa) {
  if (!setup(state, threads, isa)) return;
  const mq::TensorView x = input().view();
  for (int i = 0; i < kWarmup; ++i) benchmark::DoNotOptimize(mq::cast_to_half(x, mq::DType::f16).data());
  for (auto _ : state) {
    mq::Tensor h = mq::cast_to_half(x, mq::DType::f16);
    benchmark::DoNotOptimize(h.data());
    benchmark::ClobberMemory();
  }
  set_rates(state, kF32Bytes + f16_bytes());
}

// ------------------------------------------------------------ dequantizers

void BM_dequantize(benchmark::State& state, int threads, mq::Isa isa, mq::QuantSpec spec, double in_bytes) {
  if (!setup(state, threads, isa)) return;
  // The codes are made once, outside the timed loop (with the same ISA: the
  // bits are the same either way).
  const mq::QuantizedTensor q = mq::quantize(input().view(), spec);
  for (int i = 0; i < kWarmup; ++i) benchmark::DoNotOptimize(mq::dequantize(q).data());
  for (auto _ : state) {
    mq::Tensor y = mq::dequantize(q);
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  }
  set_rates(state, in_bytes + kF32Bytes);
}

void BM_half_to_f32(benchmark::State& state, int threads, mq::Isa isa) {
  if (!setup(state, threads, isa)) return;
  const mq::Tensor h = mq::cast_to_half(input().view(), mq::DType::f16);
  for (int i = 0; i < kWarmup; ++i) benchmark::DoNotOptimize(mq::half_to_f32(h.view()).data());
  for (auto _ : state) {
    mq::Tensor y = mq::half_to_f32(h.view());
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  }
  set_rates(state, f16_bytes() + kF32Bytes);
}

// ------------------------------------------------------------ the ceiling

// The same split as monoquant._core.copy_bytes: parallel_for over the bytes
// with a 1 MiB grain, one std::memcpy per chunk, into a buffer allocated (and
// touched) once, outside the timed loop.
void BM_memcpy(benchmark::State& state, int threads) {
  mq::set_num_threads(threads);
  const mq::Tensor& x = input();
  mq::Tensor dst = mq::Tensor::zeros(mq::DType::f32, {kRows, kCols});
  const std::byte* s = x.data();
  std::byte* d = dst.data();
  const auto copy = [&] {
    mq::parallel_for(static_cast<int64_t>(x.nbytes()), int64_t{1} << 20, [&](int64_t b, int64_t e) {
      std::memcpy(d + b, s + b, static_cast<std::size_t>(e - b));
    });
  };
  for (int i = 0; i < kWarmup; ++i) copy();
  for (auto _ : state) {
    copy();
    benchmark::DoNotOptimize(d);
    benchmark::ClobberMemory();
  }
  set_rates(state, 2 * kF32Bytes);
}

// ------------------------------------------------------------ registration

// Bytes each op reads + writes once (the "traffic" counter's numerator).
double moved_bytes(std::string_view op) {
  if (op == "quantize_int8_per_channel" || op == "dequantize_int8_per_channel") return kF32Bytes + int8_pc_bytes();
  if (op == "quantize_int4_g128" || op == "dequantize_int4_g128") return kF32Bytes + int4_g128_bytes();
  if (op == "cast_fp16" || op == "cast_fp16_to_f32") return kF32Bytes + f16_bytes();
  return 2 * kF32Bytes;  // memcpy
}

const char* const kOps[] = {"quantize_int8_per_channel", "quantize_int4_g128",  "cast_fp16",
                            "dequantize_int8_per_channel", "dequantize_int4_g128", "cast_fp16_to_f32"};

void configure(benchmark::internal::Benchmark* b) {
  b->UseRealTime()->Unit(benchmark::kMillisecond);
}

void register_all() {
  for (int threads : {1, 2}) {
    const std::string t = "/threads:" + std::to_string(threads);
    for (mq::Isa isa : {mq::Isa::scalar, mq::Isa::avx2}) {
      const std::string i = "/" + std::string(mq::name_of(isa));
      for (std::string_view op : kOps) {
        const std::string name = std::string(op) + i + t;
        benchmark::internal::Benchmark* b = nullptr;
        if (op == "quantize_int8_per_channel") {
          b = benchmark::RegisterBenchmark(name.c_str(), BM_quantize, threads, isa, int8_per_channel(), int8_pc_bytes());
        } else if (op == "quantize_int4_g128") {
          b = benchmark::RegisterBenchmark(name.c_str(), BM_quantize, threads, isa, int4_g128(), int4_g128_bytes());
        } else if (op == "cast_fp16") {
          b = benchmark::RegisterBenchmark(name.c_str(), BM_cast_f16, threads, isa);
        } else if (op == "dequantize_int8_per_channel") {
          b = benchmark::RegisterBenchmark(name.c_str(), BM_dequantize, threads, isa, int8_per_channel(),
                                           int8_pc_bytes());
        } else if (op == "dequantize_int4_g128") {
          b = benchmark::RegisterBenchmark(name.c_str(), BM_dequantize, threads, isa, int4_g128(), int4_g128_bytes());
        } else {
          b = benchmark::RegisterBenchmark(name.c_str(), BM_half_to_f32, threads, isa);
        }
        configure(b);
      }
    }
    configure(benchmark::RegisterBenchmark(("memcpy" + t).c_str(), BM_memcpy, threads));
  }
}

// ------------------------------------------------------------ summary

// The console table as usual, then one summary of ratios computed from the
// median wall time of each benchmark in this run (the median aggregate when
// repetitions > 1, else the median of the runs reported).
class SummaryReporter : public benchmark::ConsoleReporter {
 public:
  using ConsoleReporter::ConsoleReporter;

  void ReportRuns(const std::vector<Run>& reports) override {
    ConsoleReporter::ReportRuns(reports);
    for (const Run& r : reports) {
      if (r.error_occurred) continue;
      const std::string name = r.run_name.function_name;
      const double seconds = r.GetAdjustedRealTime() / benchmark::GetTimeUnitMultiplier(r.time_unit);
      if (r.run_type == Run::RT_Aggregate) {
        if (r.aggregate_name == "median") median_[name] = seconds;
        // The coefficient of variation is unitless: the accumulated "time" holds the ratio.
        if (r.aggregate_name == "cv") cv_[name] = r.real_accumulated_time;
      } else {
        runs_[name].push_back(seconds);
      }
    }
  }

  void Finalize() override {
    ConsoleReporter::Finalize();
    for (auto& [name, v] : runs_) {
      if (median_.count(name) || v.empty()) continue;
      std::sort(v.begin(), v.end());
      const std::size_t n = v.size();
      median_[name] = n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
      if (n > 1 && !cv_.count(name)) {
        double mean = 0, var = 0;
        for (double t : v) mean += t / static_cast<double>(n);
        for (double t : v) var += (t - mean) * (t - mean) / static_cast<double>(n - 1);
        cv_[name] = std::sqrt(var) / mean;
      }
    }
    if (median_.empty()) return;
    std::FILE* out = stdout;
    std::fflush(out);
    std::fprintf(out,
                 "\nSummary (median wall time per op; all ratios from this run)\n"
                 "  GiB/s    = 64 MiB float32 matrix / time (input of quantize, output of dequantize)\n"
                 "  traffic  = (bytes read + bytes written) / time, input and output counted once\n"
                 "  %%memcpy  = traffic / memcpy traffic at the same thread count (memcpy moves 2 x 64 MiB)\n"
                 "  vs scalar = scalar time / this time;  2t/1t = 1-thread time / 2-thread time\n"
                 "  cv       = stddev / mean of the repetitions' times: above ~20%% the machine was busy,\n"
                 "             and ratios involving that row are unreliable (rerun)\n\n");
    std::fprintf(out, "%-28s %-6s %3s %9s %5s %8s %9s %8s %9s %6s\n", "op", "isa", "thr", "ms", "cv", "GiB/s",
                 "traffic", "%memcpy", "vs scalar", "2t/1t");
    const double gib = 1024.0 * 1024.0 * 1024.0;
    auto lookup = [&](const std::string& name) -> double {
      auto it = median_.find(name);
      return it == median_.end() ? 0.0 : it->second;
    };
    for (int threads : {1, 2}) {
      const std::string t = "/threads:" + std::to_string(threads);
      const double memcpy_s = lookup("memcpy" + t);
      const double memcpy_traffic = memcpy_s > 0 ? 2 * kF32Bytes / memcpy_s : 0.0;
      if (memcpy_s > 0) {
        std::fprintf(out, "%-28s %-6s %3d %9.2f %5s %8.2f %9.2f %7.0f%% %9s %6s\n", "memcpy", "-", threads,
                     memcpy_s * 1e3, cv_of("memcpy" + t).c_str(), kF32Bytes / memcpy_s / gib, memcpy_traffic / gib,
                     100.0, "-", two_vs_one("memcpy", "", lookup).c_str());
      }
      for (std::string_view op : kOps) {
        for (const char* isa : {"scalar", "avx2"}) {
          const std::string name = std::string(op) + "/" + isa + t;
          const double s = lookup(name);
          if (s <= 0) continue;
          const double traffic = moved_bytes(op) / s;
          const double scalar_s = lookup(std::string(op) + "/scalar" + t);
          char frac[16] = "-", vs[16] = "-";
          if (memcpy_traffic > 0) std::snprintf(frac, sizeof frac, "%.0f%%", 100.0 * traffic / memcpy_traffic);
          if (scalar_s > 0) std::snprintf(vs, sizeof vs, "%.2fx", scalar_s / s);
          std::fprintf(out, "%-28s %-6s %3d %9.2f %5s %8.2f %9.2f %8s %9s %6s\n", std::string(op).c_str(), isa,
                       threads, s * 1e3, cv_of(name).c_str(), kF32Bytes / s / gib, traffic / gib, frac, vs,
                       two_vs_one(std::string(op), std::string("/") + isa, lookup).c_str());
        }
      }
    }
    std::fflush(out);
  }

 private:
  template <class Lookup>
  static std::string two_vs_one(const std::string& op, const std::string& isa, Lookup& lookup) {
    const double one = lookup(op + isa + "/threads:1"), two = lookup(op + isa + "/threads:2");
    if (one <= 0 || two <= 0) return "-";
    char buf[16];
    std::snprintf(buf, sizeof buf, "%.2fx", one / two);
    return buf;
  }

  std::string cv_of(const std::string& name) const {
    auto it = cv_.find(name);
    if (it == cv_.end()) return "-";
    char buf[16];
    std::snprintf(buf, sizeof buf, "%.0f%%", 100.0 * it->second);
    return buf;
  }

  std::map<std::string, std::vector<double>> runs_;
  std::map<std::string, double> median_;
  std::map<std::string, double> cv_;
};

}  // namespace

int main(int argc, char** argv) {
  // The summary rides on the console reporter; any other display format
  // (--benchmark_format=json|csv) gets the library's own reporter.
  bool console = true;
  for (int i = 1; i < argc; ++i) {
    const std::string_view a = argv[i];
    if (a.rfind("--benchmark_format=", 0) == 0 && a != "--benchmark_format=console") console = false;
  }
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  register_all();
  if (console) {
    SummaryReporter reporter(isatty(fileno(stdout)) ? benchmark::ConsoleReporter::OO_Color
                                                    : benchmark::ConsoleReporter::OO_None);
    benchmark::RunSpecifiedBenchmarks(&reporter);
  } else {
    benchmark::RunSpecifiedBenchmarks();
  }
  benchmark::Shutdown();
  return 0;
}
