// A small fixed thread pool whose call operator is a parallel_for for
// pdrop's overloads: pool(n, fn) runs fn(0..n-1) on the pool's threads and
// the caller's, and returns when all have finished. Started once; a call
// allocates nothing.
#ifndef PDROP_BENCH_THREAD_POOL_HPP
#define PDROP_BENCH_THREAD_POOL_HPP

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <thread>
#include <type_traits>
#include <vector>

namespace pdrop_bench {

class ThreadPool {
 public:
  // `threads` in all, the caller included.
  explicit ThreadPool(int threads) {
    for (int i = 1; i < threads; ++i) workers_.emplace_back([this] { work(); });
  }
  ~ThreadPool() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stop_ = true;
    }
    wake_.notify_all();
    for (auto& t : workers_) t.join();
  }
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int threads() const { return static_cast<int>(workers_.size()) + 1; }

  template <class F>
  void operator()(std::int64_t n, F&& fn) {
    if (workers_.empty() || n <= 1) {
      for (std::int64_t i = 0; i < n; ++i) fn(i);
      return;
    }
    using Fn = std::remove_reference_t<F>;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      call_ = [](void* ctx, std::int64_t i) { (*static_cast<Fn*>(ctx))(i); };
      ctx_ = const_cast<void*>(static_cast<const void*>(&fn));
      n_ = n;
      next_.store(0);
      busy_ = static_cast<int>(workers_.size());
      ++generation_;
    }
    wake_.notify_all();
    run();
    std::unique_lock<std::mutex> lock(mutex_);
    done_.wait(lock, [this] { return busy_ == 0; });
  }

 private:
  void run() {
    for (std::int64_t i = next_.fetch_add(1); i < n_; i = next_.fetch_add(1)) call_(ctx_, i);
  }
  void work() {
    std::uint64_t seen = 0;
    for (;;) {
      {
        std::unique_lock<std::mutex> lock(mutex_);
        wake_.wait(lock, [&] { return stop_ || generation_ != seen; });
        if (stop_) return;
        seen = generation_;
      }
      run();
      {
        std::lock_guard<std::mutex> lock(mutex_);
        --busy_;
      }
      done_.notify_one();
    }
  }

  std::vector<std::thread> workers_;
  std::mutex mutex_;
  std::condition_variable wake_, done_;
  void (*call_)(void*, std::int64_t) = nullptr;
  void* ctx_ = nullptr;
  std::int64_t n_ = 0;
  std::atomic<std::int64_t> next_{0};
  int busy_ = 0;
  std::uint64_t generation_ = 0;
  bool stop_ = false;
};

}  // namespace pdrop_bench

#endif  // PDROP_BENCH_THREAD_POOL_HPP
