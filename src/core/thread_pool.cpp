#include "monoquant/thread_pool.hpp"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <exception>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "monoquant/error.hpp"

namespace monoquant {
namespace {

// Spin for a moment before sleeping: a layer's parallel_for usually follows
// the previous one within microseconds, and waking a sleeping thread (a
// futex, and in a VM an interrupt to an idle virtual CPU) costs tens of
// microseconds, more than the work of a small layer. OpenMP runtimes do the
// same. The spin is bounded in time, so an idle pool sleeps.
constexpr auto kSpin = std::chrono::microseconds(200);

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}

// Spins until done() or kSpin has passed; true when done() became true.
template <class Done>
bool spin_until(const Done& done) {
  const auto deadline = std::chrono::steady_clock::now() + kSpin;
  for (;;) {
    for (int i = 0; i < 64; ++i) {
      if (done()) return true;
      cpu_relax();
    }
    if (std::chrono::steady_clock::now() >= deadline) return done();
  }
}

// One parallel region's work: chunk indices handed out through an atomic
// counter, so a slow thread never holds up the others by more than one chunk.
// Every thread of the region (pool workers, or a runtime's team) calls work().
struct ChunkQueue {
  const std::function<void(int64_t)>* task = nullptr;
  int64_t chunks = 0;
  std::atomic<int64_t> next{0};
  std::mutex error_mutex;
  std::exception_ptr error;

  void work() {
    for (int64_t i = next.fetch_add(1); i < chunks; i = next.fetch_add(1)) {
      try {
        (*task)(i);
      } catch (...) {
        std::lock_guard lock(error_mutex);
        if (!error) error = std::current_exception();
        next.store(chunks);  // stop handing out work
      }
    }
  }
};

// A fixed set of workers that run one parallel_for at a time.
class ThreadPool {
 public:
  ~ThreadPool() { resize(0); }

  void run(int threads, int64_t chunks, const std::function<void(int64_t)>& task) {
    std::lock_guard run_lock(run_mutex_);  // one parallel region at a time
    resize(threads - 1);
    queue_.task = &task;
    queue_.chunks = chunks;
    queue_.next.store(0);
    queue_.error = nullptr;
    pending_workers_.store(static_cast<int>(workers_.size()));
    {
      // Under the mutex, so that a worker about to sleep cannot miss it.
      std::lock_guard lock(mutex_);
      generation_.fetch_add(1, std::memory_order_release);
    }
    wake_.notify_all();
    queue_.work();  // the caller is a worker too
    const auto all_done = [&] { return pending_workers_.load(std::memory_order_acquire) == 0; };
    if (!spin_until(all_done)) {
      std::unique_lock lock(mutex_);
      done_.wait(lock, all_done);
    }
    queue_.task = nullptr;
    if (queue_.error) std::rethrow_exception(queue_.error);
  }

 private:
  void resize(int workers) {
    if (static_cast<int>(workers_.size()) == workers) return;
    {
      std::lock_guard lock(mutex_);
      stop_.store(true);
    }
    wake_.notify_all();
    for (auto& t : workers_) t.join();
    workers_.clear();
    stop_.store(false);
    // The generation is read here, before run() bumps it for the next region:
    // a worker that read it itself could start after the bump, miss the work
    // and leave run() waiting for it forever.
    const uint64_t generation = generation_.load();
    for (int i = 0; i < workers; ++i) workers_.emplace_back([this, generation] { worker_loop(generation); });
  }

  void worker_loop(uint64_t seen) {
    for (;;) {
      const auto called = [&] { return stop_.load() || generation_.load(std::memory_order_acquire) != seen; };
      if (!spin_until(called)) {
        std::unique_lock lock(mutex_);
        wake_.wait(lock, called);
      }
      if (stop_.load()) return;
      seen = generation_.load(std::memory_order_acquire);
      queue_.work();
      if (pending_workers_.fetch_sub(1, std::memory_order_acq_rel) == 1) {
        std::lock_guard lock(mutex_);  // pairs with run()'s predicate check
        done_.notify_one();
      }
    }
  }

  std::mutex run_mutex_;
  std::mutex mutex_;
  std::condition_variable wake_;
  std::condition_variable done_;
  std::vector<std::thread> workers_;
  ChunkQueue queue_;
  std::atomic<int> pending_workers_{0};
  std::atomic<uint64_t> generation_{0};
  std::atomic<bool> stop_{false};
};

// 0: not chosen (MONOQUANT_NUM_THREADS or set_num_threads choose it).
std::atomic<int> g_threads{0};
std::atomic<const ParallelRuntime*> g_runtime{nullptr};

int env_threads() {
  if (const char* env = std::getenv("MONOQUANT_NUM_THREADS")) {
    const int n = std::atoi(env);
    if (n >= 1) return n;
  }
  return 0;
}
thread_local bool t_inside_parallel = false;

ThreadPool& pool() {
  static ThreadPool instance;
  return instance;
}

}  // namespace

int num_threads() {
  if (const int n = g_threads.load()) return n;
  static const int from_env = env_threads();
  if (from_env) return from_env;
  if (const ParallelRuntime* rt = g_runtime.load()) return std::max(1, rt->max_threads());
  return static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
}

void set_parallel_runtime(const ParallelRuntime* runtime) { g_runtime.store(runtime); }

const char* parallel_runtime_name() {
  const ParallelRuntime* rt = g_runtime.load();
  return rt ? rt->name : "monoquant pool";
}

void set_num_threads(int n) {
  if (n < 1) throw_invalid_argument("thread count must be at least 1, got " + std::to_string(n));
  g_threads.store(n);
}

void parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn) {
  if (n <= 0) return;
  grain = std::max<int64_t>(grain, 1);
  const int threads = num_threads();
  const ParallelRuntime* runtime = g_runtime.load();
  // At most n / grain chunks, so that every chunk holds at least grain items.
  const int64_t max_chunks = std::max<int64_t>(1, n / grain);
  if (threads == 1 || max_chunks == 1 || t_inside_parallel || (runtime && runtime->in_parallel())) {
    fn(0, n);
    return;
  }
  // A few chunks per thread balance uneven work without much overhead.
  const int64_t chunks = std::min<int64_t>(max_chunks, static_cast<int64_t>(threads) * 4);
  // Balanced split: the first n % chunks chunks get one item more.
  const int64_t per_chunk = n / chunks, extra = n % chunks;
  const std::function<void(int64_t)> task = [&](int64_t chunk) {
    const int64_t begin = chunk * per_chunk + std::min(chunk, extra);
    const int64_t end = begin + per_chunk + (chunk < extra ? 1 : 0);
    if (begin >= end) return;
    const bool outer = t_inside_parallel;
    t_inside_parallel = true;
    try {
      fn(begin, end);
    } catch (...) {
      t_inside_parallel = outer;
      throw;
    }
    t_inside_parallel = outer;
  };
  const int team = static_cast<int>(std::min<int64_t>(threads, chunks));
  if (runtime) {
    ChunkQueue queue;
    queue.task = &task;
    queue.chunks = chunks;
    runtime->run([](void* q) { static_cast<ChunkQueue*>(q)->work(); }, &queue, static_cast<unsigned>(team));
    if (queue.error) std::rethrow_exception(queue.error);
    return;
  }
  pool().run(team, chunks, task);
}

}  // namespace monoquant
