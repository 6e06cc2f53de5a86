#include "monoquant/thread_pool.hpp"

#include <algorithm>
#include <atomic>
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

int default_threads() {
  if (const char* env = std::getenv("MONOQUANT_NUM_THREADS")) {
    const int n = std::atoi(env);
    if (n >= 1) return n;
  }
  return std::max(1u, std::thread::hardware_concurrency());
}

// A fixed set of workers that run one parallel_for at a time. Work is handed
// out as chunk indices through an atomic counter, so a slow thread never
// holds up the others by more than one chunk.
class ThreadPool {
 public:
  ~ThreadPool() { resize(0); }

  void run(int threads, int64_t chunks, const std::function<void(int64_t)>& task) {
    std::lock_guard run_lock(run_mutex_);  // one parallel region at a time
    resize(threads - 1);
    {
      std::lock_guard lock(mutex_);
      task_ = &task;
      chunks_ = chunks;
      next_.store(0);
      pending_workers_ = static_cast<int>(workers_.size());
      error_ = nullptr;
      ++generation_;
    }
    wake_.notify_all();
    work();  // the caller is a worker too
    std::unique_lock lock(mutex_);
    done_.wait(lock, [&] { return pending_workers_ == 0; });
    task_ = nullptr;
    if (error_) std::rethrow_exception(error_);
  }

 private:
  void resize(int workers) {
    if (static_cast<int>(workers_.size()) == workers) return;
    {
      std::lock_guard lock(mutex_);
      stop_ = true;
    }
    wake_.notify_all();
    for (auto& t : workers_) t.join();
    workers_.clear();
    stop_ = false;
    // The generation is read here, before run() bumps it for the next region:
    // a worker that read it itself could start after the bump, miss the work
    // and leave run() waiting for it forever.
    uint64_t generation;
    {
      std::lock_guard lock(mutex_);
      generation = generation_;
    }
    for (int i = 0; i < workers; ++i) workers_.emplace_back([this, generation] { worker_loop(generation); });
  }

  void worker_loop(uint64_t seen) {
    for (;;) {
      {
        std::unique_lock lock(mutex_);
        wake_.wait(lock, [&] { return stop_ || generation_ != seen; });
        if (stop_) return;
        seen = generation_;
      }
      work();
      std::lock_guard lock(mutex_);
      if (--pending_workers_ == 0) done_.notify_one();
    }
  }

  void work() {
    for (int64_t i = next_.fetch_add(1); i < chunks_; i = next_.fetch_add(1)) {
      try {
        (*task_)(i);
      } catch (...) {
        std::lock_guard lock(mutex_);
        if (!error_) error_ = std::current_exception();
        next_.store(chunks_);  // stop handing out work
      }
    }
  }

  std::mutex run_mutex_;
  std::mutex mutex_;
  std::condition_variable wake_;
  std::condition_variable done_;
  std::vector<std::thread> workers_;
  const std::function<void(int64_t)>* task_ = nullptr;
  int64_t chunks_ = 0;
  std::atomic<int64_t> next_{0};
  int pending_workers_ = 0;
  uint64_t generation_ = 0;
  bool stop_ = false;
  std::exception_ptr error_;
};

std::atomic<int> g_threads{0};
thread_local bool t_inside_parallel = false;

ThreadPool& pool() {
  static ThreadPool instance;
  return instance;
}

}  // namespace

int num_threads() {
  int n = g_threads.load();
  if (n == 0) {
    n = default_threads();
    g_threads.store(n);
  }
  return n;
}

void set_num_threads(int n) {
  if (n < 1) throw_invalid_argument("thread count must be at least 1, got " + std::to_string(n));
  g_threads.store(n);
}

void parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn) {
  if (n <= 0) return;
  grain = std::max<int64_t>(grain, 1);
  const int threads = num_threads();
  // At most n / grain chunks, so that every chunk holds at least grain items.
  const int64_t max_chunks = std::max<int64_t>(1, n / grain);
  if (threads == 1 || max_chunks == 1 || t_inside_parallel) {
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
  pool().run(std::min<int64_t>(threads, chunks), chunks, task);
}

}  // namespace monoquant
