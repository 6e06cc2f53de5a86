// Helpers shared by the C++ test files. Nothing here computes an expected
// result from library code: oracles live in the tests themselves.
#pragma once

#include <gtest/gtest.h>

#include <bit>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <initializer_list>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "monoquant/cpu_features.hpp"
#include "monoquant/error.hpp"
#include "monoquant/thread_pool.hpp"

namespace mqtest {

inline constexpr uint32_t kSeed = 20240611u;

inline uint32_t bits_of_float(float x) { return std::bit_cast<uint32_t>(x); }
inline float float_of_bits(uint32_t b) { return std::bit_cast<float>(b); }

// True when the AVX2 kernel table may run on this CPU.
inline bool have_avx2() {
  const auto& f = monoquant::cpu_features();
  return f.avx2 && f.fma && f.f16c;
}

// The ISAs a test should run under: always scalar, avx2 where the CPU has it.
inline std::vector<monoquant::Isa> available_isas() {
  std::vector<monoquant::Isa> v{monoquant::Isa::scalar};
  if (have_avx2()) v.push_back(monoquant::Isa::avx2);
  return v;
}

// Restores the active ISA and the thread count when a test leaves its scope.
class StateGuard {
 public:
  StateGuard() : isa_(monoquant::active_isa()), threads_(monoquant::num_threads()) {}
  ~StateGuard() {
    monoquant::set_isa(isa_);
    monoquant::set_num_threads(threads_);
  }
  StateGuard(const StateGuard&) = delete;
  StateGuard& operator=(const StateGuard&) = delete;

 private:
  monoquant::Isa isa_;
  int threads_;
};

// Runs f, and checks it throws monoquant::Error of `kind` whose message
// contains every string in `needles`.
template <class F>
::testing::AssertionResult throws_error(F&& f, monoquant::ErrorKind kind,
                                        std::initializer_list<std::string_view> needles = {}) {
  try {
    f();
  } catch (const monoquant::Error& e) {
    if (e.kind() != kind) {
      return ::testing::AssertionFailure()
             << "threw kind '" << monoquant::to_string(e.kind()) << "', expected '" << monoquant::to_string(kind)
             << "'; message: " << e.what();
    }
    const std::string msg = e.what();
    for (std::string_view n : needles) {
      if (msg.find(n) == std::string::npos) {
        return ::testing::AssertionFailure() << "message '" << msg << "' does not contain '" << n << "'";
      }
    }
    return ::testing::AssertionSuccess();
  } catch (const std::exception& e) {
    return ::testing::AssertionFailure() << "threw a non-monoquant exception: " << e.what();
  } catch (...) {
    return ::testing::AssertionFailure() << "threw something that is not a std::exception";
  }
  return ::testing::AssertionFailure() << "did not throw";
}

// Runs f on another thread and waits at most `seconds`. A deadlock in the
// library would otherwise hang the whole suite; here it fails loudly and
// aborts (the stuck thread cannot be reclaimed).
inline void run_with_deadline(const std::function<void()>& f, int seconds, const char* what) {
  struct State {
    std::mutex m;
    std::condition_variable cv;
    bool done = false;
    std::exception_ptr error;
  };
  auto state = std::make_shared<State>();
  std::thread t([state, f] {
    std::exception_ptr err;
    try {
      f();
    } catch (...) {
      err = std::current_exception();
    }
    std::lock_guard lock(state->m);
    state->error = err;
    state->done = true;
    state->cv.notify_all();
  });
  std::unique_lock lock(state->m);
  if (!state->cv.wait_for(lock, std::chrono::seconds(seconds), [&] { return state->done; })) {
    std::fprintf(stderr, "FATAL: %s did not finish within %d s (deadlock?)\n", what, seconds);
    std::fflush(stderr);
    std::abort();
  }
  lock.unlock();
  t.join();
  if (state->error) std::rethrow_exception(state->error);
}

// Floats drawn from N(0, 1).
inline std::vector<float> normal_floats(std::mt19937& gen, std::size_t n, float stddev = 1.0f) {
  std::normal_distribution<float> d(0.0f, stddev);
  std::vector<float> v(n);
  for (auto& x : v) x = d(gen);
  return v;
}

// A finite float with uniformly random bits (sign, exponent, mantissa).
inline float random_finite_float(std::mt19937& gen) {
  for (;;) {
    const uint32_t b = gen();
    if ((b & 0x7f800000u) != 0x7f800000u) return float_of_bits(b);
  }
}

}  // namespace mqtest
