#include "engine/core/thread_pool.h"
#include "engine/core/option_checks.h"
#include <system_error>
#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <vector>
#include <exception>

namespace mdps {

namespace {
thread_local bool t_inside_parallel = false;

// How long a thread polls for the next job (a worker) or for the workers to
// finish (the caller) before it sleeps on a condition variable. A U-Net forward
// is a few hundred short parallel ops; waking a sleeping thread costs a futex
// call and, on a virtual machine, an interrupt to a halted virtual CPU: an
// empty 2-thread parallel_for took 53-78 us that way and 0.35 us polling
// (AMD EPYC VM). Polling briefly keeps the team awake between back-to-back
// ops; once the stream of jobs stops the threads sleep as before.
constexpr int kSpinIterations = 1 << 14;

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}
}  // namespace

struct ThreadPool::Impl {
  std::mutex mu;
  std::condition_variable work_cv, done_cv;
  std::vector<std::thread> workers;
  int nthreads = 1;
  // the job in flight
  const std::function<void(int64_t, int64_t)>* fn = nullptr;
  int64_t n = 0, chunk = 0;
  // Written under `mu`; read without it while polling.
  std::atomic<int64_t> generation{0};
  std::atomic<int> pending{0};
  bool stop = false;
  std::exception_ptr error;

  void run_chunk(int index) {
    int64_t b = int64_t(index) * chunk, e = std::min(n, b + chunk);
    if (b >= e) return;
    t_inside_parallel = true;
    try {
      (*fn)(b, e);
    } catch (...) {
      std::lock_guard<std::mutex> lock(mu);
      if (!error) error = std::current_exception();
    }
    t_inside_parallel = false;
  }

  // `seen` starts at the generation current when the worker was started, so a
  // restarted pool (set_threads) does not replay the last finished job.
  void worker_loop(int index, int64_t seen) {
    for (;;) {
      for (int i = 0; i < kSpinIterations && generation.load(std::memory_order_acquire) == seen; ++i) cpu_relax();
      {
        std::unique_lock<std::mutex> lock(mu);
        work_cv.wait(lock, [&] { return stop || generation.load() != seen; });
        if (stop) return;
        seen = generation.load();
      }
      run_chunk(index);
      if (pending.fetch_sub(1, std::memory_order_acq_rel) == 1) {
        // The caller may be asleep: notify under the lock so the wake is not lost.
        std::lock_guard<std::mutex> lock(mu);
        done_cv.notify_one();
      }
    }
  }

  void start(int n_threads) {
    shutdown();
    stop = false;
    nthreads = std::max(1, n_threads);
    const int64_t gen = generation;
    try {
      for (int i = 1; i < nthreads; ++i) workers.emplace_back([this, i, gen] { worker_loop(i, gen); });
    } catch (const std::system_error& e) {
      // The system refused a thread (limits, memory): back to one thread, and
      // say which setting asked for them.
      const size_t started = workers.size() + 1;
      shutdown();
      stop = false;
      nthreads = 1;
      throw Error(cat("--threads ", n_threads, ": the system refused to start more than ", started,
                      " threads (", e.what(), "); give fewer threads"));
    }
  }
  void shutdown() {
    {
      std::lock_guard<std::mutex> lock(mu);
      stop = true;
    }
    work_cv.notify_all();
    for (auto& w : workers) w.join();
    workers.clear();
  }
};

// The default: the CPUs of this process's affinity mask, not the machine's
// (hardware_concurrency), so taskset, cpusets and Slurm are not oversubscribed.
ThreadPool::ThreadPool() : impl_(new Impl) { impl_->start(available_cpus()); }
ThreadPool::~ThreadPool() {
  impl_->shutdown();
  delete impl_;
}
ThreadPool& ThreadPool::global() {
  static ThreadPool pool;
  return pool;
}
void ThreadPool::set_threads(int n) {
  if (n <= 0) n = available_cpus();
  if (n == impl_->nthreads) return;
  impl_->start(n);
}
int ThreadPool::threads() const { return impl_->nthreads; }

void ThreadPool::parallel_for(int64_t n, const std::function<void(int64_t, int64_t)>& f, int64_t grain) {
  if (n <= 0) return;
  grain = std::max<int64_t>(1, grain);
  int nt = impl_->nthreads;
  if (t_inside_parallel || nt == 1 || n <= grain) {
    f(0, n);
    return;
  }
  int64_t chunks = std::min<int64_t>(nt, (n + grain - 1) / grain);
  int64_t chunk = (n + chunks - 1) / chunks;
  // One job at a time: callers from different threads serialise here.
  static std::mutex job_mu;
  std::lock_guard<std::mutex> job_lock(job_mu);
  {
    std::lock_guard<std::mutex> lock(impl_->mu);
    impl_->fn = &f;
    impl_->n = n;
    impl_->chunk = chunk;
    impl_->pending = nt - 1;
    impl_->error = nullptr;
    ++impl_->generation;
  }
  impl_->work_cv.notify_all();
  impl_->run_chunk(0);
  for (int i = 0; i < kSpinIterations && impl_->pending.load(std::memory_order_acquire) != 0; ++i) cpu_relax();
  std::exception_ptr err;
  {
    std::unique_lock<std::mutex> lock(impl_->mu);
    impl_->done_cv.wait(lock, [&] { return impl_->pending.load() == 0; });
    err = impl_->error;
    impl_->fn = nullptr;
  }
  if (err) std::rethrow_exception(err);
}

}  // namespace mdps
