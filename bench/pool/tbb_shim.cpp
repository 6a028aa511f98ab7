// The oneTBB contender of bench_pool.c: a C interface over one
// oneapi::tbb::task_group, run in an arena of a fixed number of threads
// (the submitting thread included), so that the benchmark's C code can
// drive it like the other pools.
#include <oneapi/tbb/global_control.h>
#include <oneapi/tbb/task_group.h>

#include <memory>

namespace {
std::unique_ptr<oneapi::tbb::global_control> control;
std::unique_ptr<oneapi::tbb::task_group> group;
} // namespace

extern "C" void bench_tbb_init(int threads) {
  control = std::make_unique<oneapi::tbb::global_control>(
      oneapi::tbb::global_control::max_allowed_parallelism,
      static_cast<size_t>(threads));
  group = std::make_unique<oneapi::tbb::task_group>();
}

extern "C" void bench_tbb_run(void (*fn)(void *), void *arg) {
  group->run([fn, arg] { fn(arg); });
}

extern "C" void bench_tbb_run_plain(void (*fn)(void)) {
  group->run([fn] { fn(); });
}

extern "C" void bench_tbb_wait(void) {
  group->wait();
}
