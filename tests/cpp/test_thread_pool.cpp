#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <mutex>
#include <stdexcept>
#include <thread>
#include <utility>
#include <vector>

#include "monoquant/error.hpp"
#include "monoquant/thread_pool.hpp"
#include "test_util.hpp"

using namespace monoquant;
using mqtest::StateGuard;

namespace {

struct Coverage {
  std::vector<std::atomic<int>> hits;
  std::mutex m;
  std::vector<std::pair<int64_t, int64_t>> chunks;
  explicit Coverage(int64_t n) : hits(static_cast<std::size_t>(n)) {}
};

// Runs parallel_for and checks that it calls fn on disjoint, non-empty,
// in-range chunks that together cover [0, n) exactly once, each of at least
// `grain` items (when n >= grain; otherwise one chunk of everything).
void check_cover(int64_t n, int64_t grain) {
  Coverage cov(std::max<int64_t>(n, 0));
  std::atomic<bool> bad_range{false};
  parallel_for(n, grain, [&](int64_t b, int64_t e) {
    if (!(0 <= b && b < e && e <= n)) {
      bad_range = true;
      return;
    }
    for (int64_t i = b; i < e; ++i) cov.hits[static_cast<std::size_t>(i)].fetch_add(1);
    std::lock_guard lock(cov.m);
    cov.chunks.emplace_back(b, e);
  });
  ASSERT_FALSE(bad_range) << "n=" << n << " grain=" << grain;
  for (int64_t i = 0; i < n; ++i) {
    ASSERT_EQ(cov.hits[static_cast<std::size_t>(i)].load(), 1)
        << "index " << i << " n=" << n << " grain=" << grain << " threads=" << num_threads();
  }
  if (n <= 0) {
    EXPECT_TRUE(cov.chunks.empty());
    return;
  }
  const int64_t g = std::max<int64_t>(grain, 1);
  for (const auto& [b, e] : cov.chunks) {
    if (n >= g) {
      EXPECT_GE(e - b, g) << "chunk [" << b << ", " << e << ") of n=" << n << " is smaller than grain " << g;
    } else {
      EXPECT_EQ(e - b, n);
    }
  }
}

}  // namespace

TEST(ThreadPool, CoversEveryIndexExactlyOnce) {
  StateGuard guard;
  const int64_t sizes[] = {-3, 0, 1, 2, 3, 7, 9, 10, 31, 64, 65, 1000, 4097, 100003};
  const int64_t grains[] = {-1, 0, 1, 3, 4, 64, 1000, int64_t{1} << 40};
  for (int threads : {1, 2, 3, 4, 8}) {
    set_num_threads(threads);
    ASSERT_EQ(num_threads(), threads);
    for (int64_t n : sizes) {
      for (int64_t grain : grains) {
        SCOPED_TRACE(testing::Message() << "threads=" << threads << " n=" << n << " grain=" << grain);
        mqtest::run_with_deadline([&] { check_cover(n, grain); }, 60, "parallel_for");
      }
    }
  }
}

TEST(ThreadPool, SingleThreadRunsOnCallerInOneChunk) {
  StateGuard guard;
  set_num_threads(1);
  const auto caller = std::this_thread::get_id();
  int calls = 0;
  parallel_for(1000, 1, [&](int64_t b, int64_t e) {
    ++calls;
    EXPECT_EQ(std::this_thread::get_id(), caller);
    EXPECT_EQ(b, 0);
    EXPECT_EQ(e, 1000);
  });
  EXPECT_EQ(calls, 1);
}

TEST(ThreadPool, UsesMoreThanOneThreadWhenAsked) {
  StateGuard guard;
  set_num_threads(4);
  std::mutex m;
  std::vector<std::thread::id> ids;
  mqtest::run_with_deadline(
      [&] {
        // Each chunk waits a little so that one thread cannot take them all.
        parallel_for(64, 1, [&](int64_t, int64_t) {
          std::this_thread::sleep_for(std::chrono::milliseconds(2));
          std::lock_guard lock(m);
          ids.push_back(std::this_thread::get_id());
        });
      },
      60, "parallel_for");
  std::sort(ids.begin(), ids.end());
  const auto distinct = std::unique(ids.begin(), ids.end()) - ids.begin();
  EXPECT_GT(distinct, 1);
  EXPECT_LE(distinct, 4);
}

// Changing the thread count between calls grows and shrinks the pool; new
// workers must still take part in the very next call (no lost wake-ups).
TEST(ThreadPool, ResizingBetweenCallsDoesNotDeadlock) {
  StateGuard guard;
  mqtest::run_with_deadline(
      [] {
        std::mt19937 gen(mqtest::kSeed);
        for (int it = 0; it < 300; ++it) {
          set_num_threads(1 + static_cast<int>(gen() % 6));
          std::atomic<int64_t> sum{0};
          parallel_for(100, 1, [&](int64_t b, int64_t e) {
            for (int64_t i = b; i < e; ++i) sum += i;
          });
          ASSERT_EQ(sum.load(), 99 * 100 / 2) << "iteration " << it;
        }
      },
      60, "resizing parallel_for");
}

TEST(ThreadPool, ExceptionPropagatesAndPoolStaysUsable) {
  StateGuard guard;
  for (int threads : {1, 3}) {
    set_num_threads(threads);
    mqtest::run_with_deadline(
        [&] {
          EXPECT_THROW(parallel_for(10000, 10,
                                    [](int64_t b, int64_t e) {
                                      if (b <= 4321 && 4321 < e) throw std::out_of_range("index 4321");
                                    }),
                       std::out_of_range);
          // monoquant::Error keeps its kind and message through the pool.
          EXPECT_TRUE(mqtest::throws_error(
              [] {
                parallel_for(5000, 1, [](int64_t b, int64_t) {
                  if (b == 0) throw_format_error("bad chunk zero");
                });
              },
              ErrorKind::format, {"bad chunk zero"}));
          // Every chunk throws: still exactly one exception reaches the caller.
          EXPECT_THROW(parallel_for(1000, 1, [](int64_t, int64_t) { throw std::logic_error("all"); }),
                       std::logic_error);
          // The pool keeps working afterwards.
          check_cover(5000, 7);
        },
        60, "parallel_for with exceptions");
  }
}

TEST(ThreadPool, NestedCallsComplete) {
  StateGuard guard;
  for (int threads : {1, 2, 4}) {
    set_num_threads(threads);
    const int64_t outer = 37, inner = 53;
    std::vector<std::atomic<int>> hits(static_cast<std::size_t>(outer * inner));
    mqtest::run_with_deadline(
        [&] {
          parallel_for(outer, 1, [&](int64_t b, int64_t e) {
            for (int64_t i = b; i < e; ++i) {
              parallel_for(inner, 1, [&](int64_t ib, int64_t ie) {
                for (int64_t j = ib; j < ie; ++j) hits[static_cast<std::size_t>(i * inner + j)]++;
              });
            }
          });
        },
        60, "nested parallel_for");
    for (std::size_t k = 0; k < hits.size(); ++k) ASSERT_EQ(hits[k].load(), 1) << "k=" << k;
  }
}

TEST(ThreadPool, ConcurrentCallersFromSeveralThreads) {
  StateGuard guard;
  set_num_threads(3);
  mqtest::run_with_deadline(
      [] {
        std::vector<std::thread> callers;
        std::atomic<int> failures{0};
        for (int t = 0; t < 4; ++t) {
          callers.emplace_back([&failures, t] {
            for (int rep = 0; rep < 20; ++rep) {
              const int64_t n = 1000 + t * 17 + rep;
              std::vector<std::atomic<int>> hits(static_cast<std::size_t>(n));
              parallel_for(n, 5, [&](int64_t b, int64_t e) {
                for (int64_t i = b; i < e; ++i) hits[static_cast<std::size_t>(i)]++;
              });
              for (auto& h : hits) {
                if (h.load() != 1) failures++;
              }
            }
          });
        }
        for (auto& c : callers) c.join();
        EXPECT_EQ(failures.load(), 0);
      },
      60, "concurrent parallel_for");
}

TEST(ThreadPool, SetNumThreadsValidates) {
  StateGuard guard;
  EXPECT_TRUE(mqtest::throws_error([] { set_num_threads(0); }, ErrorKind::invalid_argument, {"0"}));
  EXPECT_TRUE(mqtest::throws_error([] { set_num_threads(-2); }, ErrorKind::invalid_argument, {"-2"}));
  set_num_threads(5);
  EXPECT_EQ(num_threads(), 5);
  set_num_threads(1);
  EXPECT_EQ(num_threads(), 1);
  EXPECT_GE(num_threads(), 1);
}

namespace {

// A stand-in for torch's OpenMP runtime: each region is a team of fresh
// std::threads that all call body(ctx), as GOMP_parallel does.
std::atomic<int> g_fake_regions{0};
std::atomic<int> g_fake_team_max{0};
thread_local bool t_in_fake_region = false;

void fake_run(void (*body)(void*), void* ctx, unsigned threads) {
  g_fake_regions.fetch_add(1);
  g_fake_team_max.store(std::max<int>(g_fake_team_max.load(), static_cast<int>(threads)));
  std::vector<std::thread> team;
  for (unsigned i = 1; i < threads; ++i) {
    team.emplace_back([=] {
      t_in_fake_region = true;
      body(ctx);
    });
  }
  t_in_fake_region = true;
  body(ctx);
  t_in_fake_region = false;
  for (auto& t : team) t.join();
}

const ParallelRuntime kFake{"fake runtime", [] { return 3; }, [] { return t_in_fake_region; }, fake_run};

struct RuntimeGuard {
  ~RuntimeGuard() { set_parallel_runtime(nullptr); }
};

}  // namespace

TEST(ThreadPool, OutsideRuntimeRunsTheRegions) {
  StateGuard guard;
  RuntimeGuard runtime_guard;
  set_parallel_runtime(&kFake);
  EXPECT_STREQ(parallel_runtime_name(), "fake runtime");
  g_fake_regions = 0;
  g_fake_team_max = 0;
  set_num_threads(3);
  check_cover(10000, 7);
  check_cover(5, 1);
  EXPECT_GE(g_fake_regions.load(), 2);
  EXPECT_EQ(g_fake_team_max.load(), 3);
  // Errors come back through the runtime, and it stays usable.
  EXPECT_THROW(parallel_for(1000, 1, [](int64_t b, int64_t e) {
                 if (b <= 500 && 500 < e) throw std::out_of_range("index 500");
               }),
               std::out_of_range);
  check_cover(1000, 1);
  // Called from inside one of the runtime's own regions: serial, no new team.
  const int before = g_fake_regions.load();
  t_in_fake_region = true;
  int calls = 0;
  parallel_for(1000, 1, [&](int64_t b, int64_t e) { calls += (b == 0 && e == 1000); });
  t_in_fake_region = false;
  EXPECT_EQ(calls, 1);
  EXPECT_EQ(g_fake_regions.load(), before);
  set_parallel_runtime(nullptr);
  EXPECT_STREQ(parallel_runtime_name(), "monoquant pool");
  check_cover(1000, 1);
}
