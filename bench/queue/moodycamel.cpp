// C entry points for moodycamel's BlockingConcurrentQueue, so that the
// benchmark's driver stays in C and calls every contender the same way.
#include <concurrentqueue/blockingconcurrentqueue.h>

#include <cstdio>
#include <cstdlib>

typedef moodycamel::BlockingConcurrentQueue<void *> mc_queue;

extern "C" {
void *bench_mc_create(void);
void bench_mc_destroy(void *q);
void bench_mc_put(void *q, void *item);
void *bench_mc_get(void *q);
}

void *bench_mc_create(void) {
  return new mc_queue();
}

void bench_mc_destroy(void *q) {
  delete static_cast<mc_queue *>(q);
}

void bench_mc_put(void *q, void *item) {
  if (!static_cast<mc_queue *>(q)->enqueue(item)) {
    std::fputs("moodycamel enqueue failed\n", stderr);
    std::abort();
  }
}

void *bench_mc_get(void *q) {
  void *item = nullptr;
  static_cast<mc_queue *>(q)->wait_dequeue(item);
  return item;
}
