/*
 * The algorithms benchmark: concur_executor_parallel_for over 1,000,000
 * items of about 100 ns with no chunk size, against the sequential loop,
 * OpenMP `parallel for` and OpenMP `task` per item (gcc -fopenmp), and one
 * concur task per item (fire-and-forget into a task group); and
 * concur_executor_map over 1,000 items of about 1 ms against the sequential
 * loop. Every parallel contender uses 2 threads (concur: a thread pool of
 * 2 workers, the calling thread taking part where the algorithm lets it).
 * Prints one Markdown table. Never run as a test; see README.md.
 *
 * Usage: bench_algo [repeats]   (best of `repeats` runs, default 5)
 */
#include "concur/executor.h"
#include "concur/thread_pool.h"

#include <omp.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define LOOP_ITEMS 1000000
#define MAP_ITEMS 1000
#define THREADS 2

static int64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* A dependent chain of xorshift steps: CPU work the compiler cannot drop. */
static inline uint64_t spin(uint64_t x, uint64_t steps) {
  for (uint64_t i = 0; i < steps; i++) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
  }
  return x;
}

static uint64_t steps_per_100ns;
static _Atomic uint64_t sink;

static void calibrate(void) {
  uint64_t steps = 20000000;
  int64_t best = INT64_MAX;
  for (int r = 0; r < 3; r++) {
    int64_t t0 = now_ns();
    atomic_fetch_add(&sink, spin(88172645463325252ULL, steps));
    int64_t dt = now_ns() - t0;
    if (dt < best) {
      best = dt;
    }
  }
  steps_per_100ns = (uint64_t)(100.0 * (double)steps / (double)best);
  if (steps_per_100ns == 0) {
    steps_per_100ns = 1;
  }
}

static uint64_t item(int64_t i, uint64_t steps) {
  return spin((uint64_t)i * 0x9E3779B97F4A7C15ULL | 1, steps);
}

static int loop_body(void *arg, int64_t lo, int64_t hi) {
  (void)arg;
  uint64_t acc = 0;
  for (int64_t i = lo; i < hi; i++) {
    acc += item(i, steps_per_100ns);
  }
  atomic_fetch_add_explicit(&sink, acc, memory_order_relaxed);
  return 0;
}

static int one_item_task(void *arg, void **result) {
  (void)result;
  atomic_fetch_add_explicit(&sink,
                            item((int64_t)(intptr_t)arg, steps_per_100ns),
                            memory_order_relaxed);
  return 0;
}

static int ms_item_task(void *arg, void **result) {
  *result =
      (void *)(uintptr_t)item((int64_t)(intptr_t)arg, steps_per_100ns * 10000);
  return 0;
}

/* Prints each row as soon as it is measured, so a long run shows progress. */
static void add_row(const char *name, int64_t ns, int64_t base_ns) {
  printf("| %s | %.1f ms | %.2fx |\n", name, (double)ns / 1e6,
         (double)base_ns / (double)ns);
  fflush(stdout);
}

static concur_executor *pool;
static void *map_args[MAP_ITEMS], *map_results[MAP_ITEMS];

/* The best (smallest) time of `repeats` runs of fn. */
static int64_t best_of(int repeats, void (*fn)(void)) {
  int64_t best = INT64_MAX;
  for (int r = 0; r < repeats; r++) {
    int64_t t0 = now_ns();
    fn();
    int64_t dt = now_ns() - t0;
    if (dt < best) {
      best = dt;
    }
  }
  return best;
}

/* The sequential runs call the very functions the parallel ones run,
 * through pointers the compiler cannot see through: inlined, the same loop
 * could be unrolled and interleaved differently and time something else. */
static int (*volatile sequential_body)(void *, int64_t, int64_t) = loop_body;
static int (*volatile sequential_item)(void *, void **) = ms_item_task;

static void run_sequential(void) {
  (void)sequential_body(NULL, 0, LOOP_ITEMS);
}

static void run_parallel_for(void) {
  if (concur_executor_parallel_for(pool, 0, LOOP_ITEMS, loop_body, NULL,
                                   NULL) != 0) {
    abort();
  }
}

static void run_omp_for(void) {
  uint64_t acc = 0;
#pragma omp parallel for num_threads(THREADS) reduction(+ : acc)
  for (int64_t i = 0; i < LOOP_ITEMS; i++) {
    acc += item(i, steps_per_100ns);
  }
  atomic_fetch_add(&sink, acc);
}

static void run_omp_task(void) {
#pragma omp parallel num_threads(THREADS)
#pragma omp single
  for (int64_t i = 0; i < LOOP_ITEMS; i++) {
#pragma omp task firstprivate(i)
    atomic_fetch_add_explicit(&sink, item(i, steps_per_100ns),
                              memory_order_relaxed);
  }
}

static void run_task_per_item(void) {
  concur_task_group *g = NULL;
  if (concur_task_group_new(&g, pool) != 0) {
    abort();
  }
  for (int64_t i = 0; i < LOOP_ITEMS; i++) {
    if (concur_task_group_submit(g, one_item_task, (void *)(intptr_t)i) != 0) {
      abort();
    }
  }
  if (concur_task_group_wait(g, CONCUR_FOREVER, NULL) != 0) {
    abort();
  }
  concur_task_group_free(g);
}

static void run_map_sequential(void) {
  for (int i = 0; i < MAP_ITEMS; i++) {
    if (sequential_item(map_args[i], &map_results[i]) != 0) {
      abort();
    }
  }
}

static void run_map(void) {
  if (concur_executor_map(pool, ms_item_task, map_args, MAP_ITEMS, map_results,
                          NULL, NULL) != 0) {
    abort();
  }
}

int main(int argc, char **argv) {
  int repeats = argc > 1 ? atoi(argv[1]) : 5;
  if (repeats < 1) {
    repeats = 1;
  }
  calibrate();
  concur_thread_pool_options o = CONCUR_THREAD_POOL_OPTIONS_INIT;
  o.max_workers = THREADS;
  o.prestart = true;
  if (concur_thread_pool_new(&pool, &o) != 0) {
    fprintf(stderr, "bench_algo: no thread pool\n");
    return 1;
  }

  printf("| contender (%d threads, best of %d) | time | speedup vs "
         "sequential |\n|---|---:|---:|\n",
         THREADS, repeats);
  int64_t seq = best_of(repeats, run_sequential);
  add_row("sequential loop, 1M x 100 ns", seq, seq);
  add_row("concur parallel_for (no chunk size)",
          best_of(repeats, run_parallel_for), seq);
  add_row("OpenMP parallel for", best_of(repeats, run_omp_for), seq);
  add_row("OpenMP task per item", best_of(repeats, run_omp_task), seq);
  add_row("concur task per item (task group)",
          best_of(repeats, run_task_per_item), seq);

  for (intptr_t i = 0; i < MAP_ITEMS; i++) {
    map_args[i] = (void *)i;
  }
  int map_repeats = repeats > 2 ? 2 : repeats;
  int64_t map_seq = best_of(map_repeats, run_map_sequential);
  add_row("sequential loop, 1,000 x 1 ms", map_seq, map_seq);
  add_row("concur map, 1,000 x 1 ms", best_of(map_repeats, run_map), map_seq);
  concur_executor_free(pool);

  printf("\n(one item: %lu xorshift steps, about 100 ns; checksum %lu)\n",
         (unsigned long)steps_per_100ns, (unsigned long)atomic_load(&sink));
  return 0;
}
