// Parallel loops: the library's own small thread pool, or, inside a Python
// process, the OpenMP runtime that torch already runs (set_parallel_runtime).
// The core never links OpenMP itself: torch's wheel ships its own runtime, and
// two pools in one process spin for the same cores between layers (a 2-thread
// model ran slower than a 1-thread one). Borrowing torch's threads means a
// quantized layer runs on the very workers torch's next op will use.
#pragma once

#include <cstdint>
#include <functional>

namespace monoquant {

// Number of threads parallel work uses (the calling thread included).
// Default: MONOQUANT_NUM_THREADS if set, else the parallel runtime's own
// thread count (torch.get_num_threads() when torch's runtime is shared), else
// the hardware concurrency.
int num_threads();
// n >= 1. Takes effect for the next parallel call and overrides the default.
void set_num_threads(int n);

// An outside runtime that runs the library's parallel regions. run(body, ctx,
// threads) must call body(ctx) once on each of `threads` threads (the caller
// among them) and return when all calls have returned: GOMP_parallel's
// contract. body never throws.
struct ParallelRuntime {
  const char* name;                  // for `info` and diagnostics, e.g. "openmp (torch)"
  int (*max_threads)();              // the runtime's thread count now
  bool (*in_parallel)();             // called from inside one of its regions
  void (*run)(void (*body)(void*), void* ctx, unsigned threads);
};
// nullptr: back to the library's own pool. The runtime must outlive its use.
void set_parallel_runtime(const ParallelRuntime* runtime);
// "monoquant pool" or the runtime's name.
const char* parallel_runtime_name();

// Splits [0, n) into contiguous chunks of at least `grain` items and runs
// fn(begin, end) on them in parallel; returns when all are done. The first
// exception thrown by fn is rethrown in the caller. Nested calls run serially.
void parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn);

}  // namespace monoquant
