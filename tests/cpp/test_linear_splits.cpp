// The microkernel tester: every linear kernel set of the registry x every
// mode x odd shapes x inputs that are misaligned and strided x thread splits
// that really split the work. The thread count must never change a bit (each
// output column is computed by one thread, whole), and the integer modes must
// give the scalar reference's bits on every set. A stand-in parallel runtime
// records each region's team size, so the test knows the work was split
// rather than run as one chunk; chunks are forced small for that
// (set_linear_min_chunk_macs), otherwise these shapes would fit in one.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <cmath>
#include <iostream>
#include <limits>
#include <memory>
#include <random>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "monoquant/error.hpp"
#include "monoquant/linear.hpp"
#include "monoquant/thread_pool.hpp"
#include "test_util.hpp"

namespace {

using monoquant::DType;
using monoquant::kNarrowCodeMax;
using monoquant::LinearMode;
using monoquant::LinearOptions;
using monoquant::PackedLinearWeight;
using monoquant::TensorView;

std::atomic<int> g_widest_team{0};

// GOMP_parallel's contract with std::threads, recording the widest team.
void counting_run(void (*body)(void*), void* ctx, unsigned threads) {
  g_widest_team.store(std::max<int>(g_widest_team.load(), static_cast<int>(threads)));
  std::vector<std::thread> team;
  for (unsigned i = 1; i < threads; ++i) team.emplace_back([=] { body(ctx); });
  body(ctx);
  for (auto& t : team) t.join();
}

thread_local bool t_never = false;
const monoquant::ParallelRuntime kCounting{"counting runtime", [] { return 3; }, [] { return t_never; }, counting_run};

struct SplitGuard {
  SplitGuard() {
    monoquant::set_parallel_runtime(&kCounting);
    monoquant::set_linear_min_chunk_macs(1);
  }
  ~SplitGuard() {
    monoquant::set_linear_min_chunk_macs(0);
    monoquant::set_parallel_runtime(nullptr);
    monoquant::use_linear_kernel_set("best");
  }
};

struct Case {
  std::string name;
  std::shared_ptr<const PackedLinearWeight> w;  // packed weights are move-only; cases share them
  LinearOptions options;
  bool integer;  // bit-exact against the scalar reference
};

std::vector<Case> cases(std::mt19937& gen, int64_t k, int64_t n) {
  std::uniform_int_distribution<int> i8(-128, 127), i4(-8, 7);
  std::uniform_real_distribution<float> sc(0.001f, 0.05f);
  std::vector<int8_t> codes(static_cast<std::size_t>(n * k)), nib(static_cast<std::size_t>(n * k));
  for (auto& c : codes) c = static_cast<int8_t>(i8(gen));
  for (auto& c : nib) c = static_cast<int8_t>(i4(gen));
  std::vector<float> scales(static_cast<std::size_t>(n));
  for (auto& s : scales) s = sc(gen);
  // int4 groups of 64 (whole AMX steps: the AMX W4A8 path), activation groups of 32.
  const int64_t g4 = 64, g = 32, groups = (k + g4 - 1) / g4, rb = (k + 1) / 2;
  std::vector<float> gscales(static_cast<std::size_t>(n * groups));
  for (auto& s : gscales) s = sc(gen);
  std::vector<uint8_t> packed(static_cast<std::size_t>(n * rb), 0);
  for (int64_t r = 0; r < n; ++r)
    for (int64_t i = 0; i < k; ++i) {
      const auto v = static_cast<uint8_t>(nib[r * k + i] + 8);
      packed[r * rb + i / 2] |= (i % 2) ? static_cast<uint8_t>(v << 4) : v;
    }
  std::vector<uint16_t> half(static_cast<std::size_t>(n * k));
  for (std::size_t i = 0; i < half.size(); ++i) half[i] = static_cast<uint16_t>(0x3c00 + (codes[i] & 0x3ff));
  const auto i8w = std::make_shared<const PackedLinearWeight>(monoquant::pack_linear_int8(TensorView(codes.data(), DType::i8, {n, k}),
                                               TensorView(scales.data(), DType::f32, {n})));
  const auto i4w = std::make_shared<const PackedLinearWeight>(monoquant::pack_linear_int4(TensorView(packed.data(), DType::u8, {n, rb}), k,
                                               TensorView(gscales.data(), DType::f32, {n, groups}), g4));
  std::vector<Case> out;
  out.push_back({"w8 weight-only", i8w, {LinearMode::weight_only}, false});
  out.push_back({"w4 weight-only", i4w, {LinearMode::weight_only}, false});
  out.push_back({"f16 weight-only",
                 std::make_shared<const PackedLinearWeight>(
                     monoquant::pack_linear_half(TensorView(half.data(), DType::f16, {n, k}))),
                 {LinearMode::weight_only}, false});
  out.push_back({"w8a8 dynamic", i8w, {LinearMode::dynamic_int8}, true});
  out.push_back({"w8a8 static", i8w, {LinearMode::static_int8, 0.02f, -37}, true});
  out.push_back({"w4a8 dynamic", i4w, {LinearMode::dynamic_int8}, true});
  out.push_back({"w4a8 static", i4w, {LinearMode::static_int8, 0.02f, 0}, true});
  // 7-bit weights with both extremes +-64 present: the narrow-code kernels
  // (u8 activations on vpmaddubsw) where a table has them.
  std::vector<int8_t> codes7(codes.size());
  std::uniform_int_distribution<int> i7(-kNarrowCodeMax, kNarrowCodeMax);
  for (auto& c : codes7) c = static_cast<int8_t>(i7(gen));
  codes7[0] = kNarrowCodeMax;
  codes7.back() = -kNarrowCodeMax;
  const auto i7w = std::make_shared<const PackedLinearWeight>(monoquant::pack_linear_int8(
      TensorView(codes7.data(), DType::i8, {n, k}), TensorView(scales.data(), DType::f32, {n})));
  if (!i7w->view().narrow_codes()) throw std::logic_error("7-bit weights did not pack as narrow codes");
  out.push_back({"w7a8 dynamic", i7w, {LinearMode::dynamic_int8}, true});
  out.push_back({"w7a8 static", i7w, {LinearMode::static_int8, 0.02f, -37}, true});
  if (k % g == 0) {
    std::vector<float> gs8(static_cast<std::size_t>(n * (k / g)));
    for (auto& s : gs8) s = sc(gen);
    LinearOptions o{LinearMode::dynamic_int8};
    o.act_group_size = g;
    out.push_back({"w8a8 act groups",
                   std::make_shared<const PackedLinearWeight>(monoquant::pack_linear_int8_grouped(
                       TensorView(codes.data(), DType::i8, {n, k}), TensorView(gs8.data(), DType::f32, {n, k / g}), g)),
                   o, true});
  }
  return out;
}

// y for m rows read from x + offset with row stride ldx.
std::vector<float> run(const Case& c, const std::vector<float>& x, int64_t offset, int64_t m, int64_t ldx,
                       const float* bias) {
  std::vector<float> y(static_cast<std::size_t>(m * c.w->n));
  monoquant::linear_into(x.data() + offset, m, ldx, c.w->view(), bias, c.options, y.data(), c.w->n);
  return y;
}

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

TEST(LinearSplits, EverySetModeAndSplitAgrees) {
  mqtest::StateGuard guard;
  SplitGuard split;
  std::mt19937 gen(mqtest::kSeed + 41);
  struct Shape {
    int64_t m, k, n;
  };
  // N of 5 to 20 blocks (several 4-block units to hand out), odd K and M, AMX tile edges.
  const std::vector<Shape> shapes{{1, 96, 40}, {3, 37, 100}, {17, 130, 65}, {64, 128, 160}, {70, 200, 41},
                                  {1100, 64, 40}};  // the last: AMX splits rows from 1024
  for (const Shape& s : shapes) {
    const int64_t ldx = s.k + 3, offset = 1;  // rows 4-byte aligned only, and strided
    std::vector<float> x(static_cast<std::size_t>(offset + s.m * ldx));
    std::normal_distribution<float> nd(0.0f, 1.0f);
    for (auto& v : x) v = nd(gen);
    std::vector<float> bias(static_cast<std::size_t>(s.n));
    for (auto& v : bias) v = nd(gen);
    for (const Case& c : cases(gen, s.k, s.n)) {
      const std::string at = c.name + " m=" + std::to_string(s.m) + " k=" + std::to_string(s.k) +
                             " n=" + std::to_string(s.n);
      monoquant::use_linear_kernel_set("scalar");
      monoquant::set_num_threads(1);
      const auto reference = run(c, x, offset, s.m, ldx, bias.data());
      for (const std::string& set : monoquant::available_linear_kernel_sets()) {
        monoquant::use_linear_kernel_set(set);
        monoquant::set_num_threads(1);
        const auto one = run(c, x, offset, s.m, ldx, bias.data());
        if (c.integer) EXPECT_TRUE(same_bits(one, reference)) << set << " " << at;
        for (int threads : {2, 3}) {
          monoquant::set_num_threads(threads);
          g_widest_team = 0;
          const auto split_y = run(c, x, offset, s.m, ldx, bias.data());
          EXPECT_GE(g_widest_team.load(), 2) << "not split: " << set << " " << at;
          EXPECT_TRUE(same_bits(split_y, one)) << set << " " << threads << " threads " << at;
        }
      }
    }
  }
}

// The activation quantizers read float32 and bf16 rows as the caller holds
// them (the AVX-512 sets without widening bf16 first): every set must give
// the reference's bits for both, including a zero row, a row with NaN, one
// with Inf, and huge values that saturate the static codes.
TEST(LinearSplits, ActivationDtypesAndSpecialRowsGiveTheReferenceBits) {
  mqtest::StateGuard guard;
  SplitGuard split;
  std::mt19937 gen(mqtest::kSeed + 43);
  struct Shape {
    int64_t m, k, n;
  };
  // K with tails of every loop (16, 32 and 64 lanes), rows below and above the AMX tile, and
  // from 64 rows the AMX wide tiles (bf16 out: pairs of full 16-column tiles, and a ragged last one).
  const std::vector<Shape> shapes{{5, 37, 40}, {19, 130, 65}, {40, 200, 48}, {33, 64, 24}, {70, 96, 64},
                                  {130, 64, 100}};
  for (const Shape& s : shapes) {
    const int64_t ldx = s.k + 5, offset = 3;  // bf16 rows 2-byte aligned only, and strided
    std::vector<float> x(static_cast<std::size_t>(offset + s.m * ldx));
    std::normal_distribution<float> nd(0.0f, 2.0f);
    for (auto& v : x) v = nd(gen);
    const auto row = [&](int64_t r) { return x.data() + offset + r * ldx; };
    std::fill(row(0), row(0) + s.k, 0.0f);
    row(1)[s.k / 2] = std::numeric_limits<float>::quiet_NaN();
    row(2)[s.k - 1] = -std::numeric_limits<float>::infinity();
    for (int64_t i = 0; i < s.k; i += 3) row(3)[i] = (i % 2 ? 1e30f : -3e9f);
    std::vector<uint16_t> xb(x.size());
    for (std::size_t i = 0; i < x.size(); ++i) {  // bf16 by truncation: any bf16 value will do
      uint32_t bits;
      std::memcpy(&bits, &x[i], 4);
      xb[i] = static_cast<uint16_t>(bits >> 16);
    }
    std::vector<float> bias(static_cast<std::size_t>(s.n));
    for (auto& v : bias) v = nd(gen);
    for (const Case& c : cases(gen, s.k, s.n)) {
      if (!c.integer) continue;
      for (const bool bf16 : {false, true}) {
        const std::string at = c.name + (bf16 ? " bf16" : " f32") + " m=" + std::to_string(s.m) +
                               " k=" + std::to_string(s.k) + " n=" + std::to_string(s.n);
        const void* in = bf16 ? static_cast<const void*>(xb.data() + offset) : x.data() + offset;
        const auto go = [&](DType out_dtype) {
          std::vector<float> y(static_cast<std::size_t>(s.m * c.w->n));  // bf16 results use the first half
          monoquant::linear_into(in, bf16 ? DType::bf16 : DType::f32, s.m, ldx, c.w->view(), bias.data(),
                                 c.options, y.data(), out_dtype, c.w->n);
          return y;
        };
        monoquant::use_linear_kernel_set("scalar");
        monoquant::set_num_threads(1);
        const auto reference = go(DType::f32), reference_b = go(DType::bf16);
        EXPECT_TRUE(std::isnan(reference[static_cast<std::size_t>(c.w->n)])) << at;  // the NaN row
        for (const std::string& set : monoquant::available_linear_kernel_sets()) {
          monoquant::use_linear_kernel_set(set);
          for (int threads : {1, 2}) {
            monoquant::set_num_threads(threads);
            EXPECT_TRUE(same_bits(go(DType::f32), reference)) << set << " " << threads << " threads " << at;
            EXPECT_TRUE(same_bits(go(DType::bf16), reference_b)) << set << " " << threads << " threads bf16 out " << at;
          }
        }
      }
    }
  }
}

}  // namespace

namespace {

// The registry holds exactly the sets the CPU (and OS) can run, scalar first,
// and names them in the order linear_into prefers them; AMX only where the
// CPU reports AMX-TILE + AMX-INT8 and the OS granted the tile state.
TEST(LinearKernelRegistry, MatchesTheCpu) {
  const auto sets = monoquant::available_linear_kernel_sets();
  ASSERT_FALSE(sets.empty());
  EXPECT_EQ(sets.front(), "scalar");
  const auto has = [&](const char* name) { return std::find(sets.begin(), sets.end(), name) != sets.end(); };
  EXPECT_EQ(has("avx2_vnni"), has("avx2") && monoquant::vnni_available());
  EXPECT_EQ(has("avx512_vnni"), has("avx2") && monoquant::avx512_vnni_available());
  EXPECT_EQ(has("amx"), has("avx2") && monoquant::amx_int8_available());
  if (!has("amx")) std::cout << "AMX absent on this CPU (or not granted by the OS): the amx set is not tested\n";
  // The default choice is the last set, and every listed set can be pinned.
  monoquant::use_linear_kernel_set("best");
  EXPECT_EQ(monoquant::linear_kernel_name(), sets.back());
  for (const std::string& s : sets) {
    monoquant::use_linear_kernel_set(s);
    EXPECT_EQ(monoquant::linear_kernel_name(), s);
  }
  monoquant::use_linear_kernel_set("best");
  EXPECT_THROW(monoquant::use_linear_kernel_set("no_such_set"), monoquant::Error);
}

}  // namespace
