// The library's own small thread pool. monoquant does not use OpenMP: torch's
// wheel ships its own OpenMP runtime and two runtimes in one process fight.
#pragma once

#include <cstdint>
#include <functional>

namespace monoquant {

// Number of threads parallel work uses (the calling thread included).
// Default: MONOQUANT_NUM_THREADS if set, else the hardware concurrency.
int num_threads();
// n >= 1. Takes effect for the next parallel call.
void set_num_threads(int n);

// Splits [0, n) into contiguous chunks of at least `grain` items and runs
// fn(begin, end) on them in parallel; returns when all are done. The first
// exception thrown by fn is rethrown in the caller. Nested calls run serially.
void parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn);

}  // namespace monoquant
