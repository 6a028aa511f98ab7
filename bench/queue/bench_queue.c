/*
 * Queue benchmark: concur's bounded FIFO queue side by side with GLib's
 * GAsyncQueue, a textbook pthread mutex + condition variable ring,
 * moodycamel's BlockingConcurrentQueue and Concurrency Kit's ck_ring (a
 * spinning, non-blocking ring), in one run. See README.md.
 *
 * Each repetition moves N pointers (the values 1..N) from P producers to C
 * consumers through one queue; the producers split 1..N into ranges, and
 * each then puts C stop markers; a consumer stops at its P-th marker. (Stop
 * markers from one producer thread, not the main thread, because some
 * contenders keep FIFO order only per producer: moodycamel's does.) Every
 * consumer sums and counts what it got; the run fails unless the totals are
 * exactly N items with the sum and the sum of squares of 1..N (every item
 * exactly once). Repetitions are interleaved across contenders, so a noisy
 * moment of the shared machine hits all of them alike.
 */
#define _GNU_SOURCE
#include "concur/queue.h"

#include <ck_pr.h>
#include <ck_ring.h>
#include <glib.h>

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* The bound of every bounded contender (concur, the mutex ring, ck_ring):
 * --bound, a power of two because ck_ring needs one. */
static size_t bound = 8192;
/* The bound of the extra concur row, which shows a small bound's cost. */
#define SMALL_BOUND 1024
#define REPS 5
#define STOP ((void *)UINTPTR_MAX)

static _Noreturn void die(const char *what) {
  fprintf(stderr, "bench_queue: %s\n", what);
  exit(1);
}

static int64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

typedef struct contender {
  const char *name;
  bool blocking;
  void *(*create)(void);
  void (*destroy)(void *);
  void (*put)(void *, void *);
  void *(*get)(void *);
} contender;

/* ---- concur ---- */

static void *concur_make(int64_t maxsize, concur_queue_kind kind) {
  concur_queue *q;
  concur_queue_options o = CONCUR_QUEUE_OPTIONS_INIT;
  o.kind = kind;
  o.maxsize = maxsize;
  if (concur_queue_new(&q, &o) != 0) {
    die("concur_queue_new failed");
  }
  return q;
}

static void *concur_fifo_create(void) {
  return concur_make((int64_t)bound, CONCUR_QUEUE_FIFO);
}

static void *concur_fifo_small_create(void) {
  return concur_make(SMALL_BOUND, CONCUR_QUEUE_FIFO);
}

static void *concur_simple_create(void) {
  return concur_make(CONCUR_UNBOUNDED, CONCUR_QUEUE_SIMPLE);
}

static void concur_destroy(void *q) {
  concur_queue_free(q);
}

static void concur_put(void *q, void *item) {
  if (concur_queue_put(q, item, CONCUR_FOREVER) != 0) {
    die("concur_queue_put failed");
  }
}

static void *concur_get(void *q) {
  void *item;
  if (concur_queue_get(q, &item, CONCUR_FOREVER) != 0) {
    die("concur_queue_get failed");
  }
  return item;
}

/* ---- pthread mutex + condvar ring (the textbook bounded buffer) ---- */

typedef struct mring {
  pthread_mutex_t mutex;
  pthread_cond_t not_empty;
  pthread_cond_t not_full;
  size_t head;
  size_t tail;
  void **slots;
} mring;

static void *mring_create(void) {
  mring *r = calloc(1, sizeof *r);
  if (r == NULL || (r->slots = calloc(bound, sizeof(void *))) == NULL) {
    die("out of memory");
  }
  pthread_mutex_init(&r->mutex, NULL);
  pthread_cond_init(&r->not_empty, NULL);
  pthread_cond_init(&r->not_full, NULL);
  return r;
}

static void mring_destroy(void *p) {
  mring *r = p;
  pthread_mutex_destroy(&r->mutex);
  pthread_cond_destroy(&r->not_empty);
  pthread_cond_destroy(&r->not_full);
  free(r->slots);
  free(r);
}

static void mring_put(void *p, void *item) {
  mring *r = p;
  pthread_mutex_lock(&r->mutex);
  while (r->tail - r->head == bound) {
    pthread_cond_wait(&r->not_full, &r->mutex);
  }
  r->slots[r->tail % bound] = item;
  r->tail++;
  pthread_cond_signal(&r->not_empty);
  pthread_mutex_unlock(&r->mutex);
}

static void *mring_get(void *p) {
  mring *r = p;
  pthread_mutex_lock(&r->mutex);
  while (r->tail == r->head) {
    pthread_cond_wait(&r->not_empty, &r->mutex);
  }
  void *item = r->slots[r->head % bound];
  r->head++;
  pthread_cond_signal(&r->not_full);
  pthread_mutex_unlock(&r->mutex);
  return item;
}

/* ---- GLib GAsyncQueue (unbounded) ---- */

static void *gq_create(void) {
  return g_async_queue_new();
}
static void gq_destroy(void *q) {
  g_async_queue_unref(q);
}
static void gq_put(void *q, void *item) {
  g_async_queue_push(q, item);
}
static void *gq_get(void *q) {
  return g_async_queue_pop(q);
}

/* ---- moodycamel BlockingConcurrentQueue (C++: moodycamel.cpp) ---- */

void *bench_mc_create(void);
void bench_mc_destroy(void *q);
void bench_mc_put(void *q, void *item);
void *bench_mc_get(void *q);

/* ---- Concurrency Kit ck_ring, MPMC: spins while full or empty ---- */

typedef struct ckq {
  ck_ring_t ring;
  ck_ring_buffer_t *buffer;
} ckq;

static void *ckq_create(void) {
  ckq *r = calloc(1, sizeof *r);
  if (r == NULL || (r->buffer = calloc(bound, sizeof *r->buffer)) == NULL) {
    die("out of memory");
  }
  ck_ring_init(&r->ring, (unsigned)bound);
  return r;
}

static void ckq_destroy(void *p) {
  ckq *r = p;
  free(r->buffer);
  free(r);
}

static void ckq_put(void *p, void *item) {
  ckq *r = p;
  while (!ck_ring_enqueue_mpmc(&r->ring, r->buffer, item)) {
    ck_pr_stall();
  }
}

static void *ckq_get(void *p) {
  ckq *r = p;
  void *item;
  while (!ck_ring_dequeue_mpmc(&r->ring, r->buffer, &item)) {
    ck_pr_stall();
  }
  return item;
}

static const contender contenders[] = {
    {"concur FIFO, maxsize = bound", true, concur_fifo_create, concur_destroy,
     concur_put, concur_get},
    {"concur FIFO, maxsize 1024", true, concur_fifo_small_create,
     concur_destroy, concur_put, concur_get},
    {"concur SIMPLE, unbounded", true, concur_simple_create, concur_destroy,
     concur_put, concur_get},
    {"pthread mutex + condvar ring, bound", true, mring_create, mring_destroy,
     mring_put, mring_get},
    {"GLib GAsyncQueue, unbounded", true, gq_create, gq_destroy, gq_put,
     gq_get},
    {"moodycamel BlockingConcurrentQueue, unbounded", true, bench_mc_create,
     bench_mc_destroy, bench_mc_put, bench_mc_get},
    {"ck_ring MPMC, bound (spins: non-blocking)", false, ckq_create,
     ckq_destroy, ckq_put, ckq_get},
};
#define NCONTENDERS (sizeof contenders / sizeof contenders[0])

/* ---- one run ---- */

typedef struct run {
  const contender *c;
  void *q;
  uint64_t items;
  int producers;
  int consumers;
  pthread_barrier_t start;
} run;

typedef struct producer_arg {
  run *r;
  uint64_t first; /* values first..last */
  uint64_t last;
} producer_arg;

typedef struct consumer_arg {
  run *r;
  uint64_t count;
  uint64_t sum;
  uint64_t sumsq; /* modulo 2^64, like the expected value */
} consumer_arg;

static void *producer_main(void *p) {
  producer_arg *a = p;
  const contender *c = a->r->c;
  void *q = a->r->q;
  pthread_barrier_wait(&a->r->start);
  for (uint64_t v = a->first; v <= a->last; v++) {
    c->put(q, (void *)(uintptr_t)v);
  }
  for (int i = 0; i < a->r->consumers; i++) {
    c->put(q, STOP);
  }
  return NULL;
}

static void *consumer_main(void *p) {
  consumer_arg *a = p;
  const contender *c = a->r->c;
  void *q = a->r->q;
  uint64_t count = 0;
  uint64_t sum = 0;
  uint64_t sumsq = 0;
  int stops = 0;
  pthread_barrier_wait(&a->r->start);
  for (;;) {
    void *item = c->get(q);
    if (item == STOP) {
      if (++stops == a->r->producers) {
        break;
      }
      continue;
    }
    uint64_t v = (uint64_t)(uintptr_t)item;
    count++;
    sum += v;
    sumsq += v * v;
  }
  a->count = count;
  a->sum = sum;
  a->sumsq = sumsq;
  return NULL;
}

/* Nanoseconds per item for one repetition; exits if an item was lost or
 * duplicated. */
static double run_once(const contender *c, int producers, int consumers,
                       uint64_t items) {
  run r = {c, c->create(), items, producers, consumers, {{0}}};
  pthread_barrier_init(&r.start, NULL, (unsigned)(producers + consumers + 1));
  pthread_t pt[8];
  pthread_t ct[8];
  producer_arg pa[8];
  consumer_arg ca[8];
  uint64_t per = items / (uint64_t)producers;
  for (int i = 0; i < producers; i++) {
    pa[i].r = &r;
    pa[i].first = (uint64_t)i * per + 1;
    pa[i].last = i == producers - 1 ? items : (uint64_t)(i + 1) * per;
    if (pthread_create(&pt[i], NULL, producer_main, &pa[i]) != 0) {
      die("pthread_create failed");
    }
  }
  for (int i = 0; i < consumers; i++) {
    memset(&ca[i], 0, sizeof ca[i]);
    ca[i].r = &r;
    if (pthread_create(&ct[i], NULL, consumer_main, &ca[i]) != 0) {
      die("pthread_create failed");
    }
  }
  pthread_barrier_wait(&r.start);
  int64_t t0 = now_ns();
  for (int i = 0; i < producers; i++) {
    pthread_join(pt[i], NULL);
  }
  uint64_t count = 0;
  uint64_t sum = 0;
  uint64_t sumsq = 0;
  for (int i = 0; i < consumers; i++) {
    pthread_join(ct[i], NULL);
    count += ca[i].count;
    sum += ca[i].sum;
    sumsq += ca[i].sumsq;
  }
  int64_t t1 = now_ns();
  uint64_t want_sum = 0;
  uint64_t want_sumsq = 0;
  for (uint64_t v = 1; v <= items; v++) {
    want_sum += v;
    want_sumsq += v * v;
  }
  if (count != items || sum != want_sum || sumsq != want_sumsq) {
    fprintf(stderr,
            "bench_queue: %s lost or duplicated items: %" PRIu64 " of %" PRIu64
            "\n",
            c->name, count, items);
    exit(1);
  }
  pthread_barrier_destroy(&r.start);
  c->destroy(r.q);
  return (double)(t1 - t0) / (double)items;
}

/* ---- idle consumer CPU ---- */

typedef struct idle_arg {
  const contender *c;
  void *q;
} idle_arg;

static void *idle_main(void *p) {
  idle_arg *a = p;
  (void)a->c->get(a->q);
  return NULL;
}

/* CPU time, in ms, that one consumer blocked on an empty queue burns over
 * about one second (from its start, spin included). */
static double idle_cpu_ms(const contender *c) {
  idle_arg a = {c, c->create()};
  pthread_t t;
  if (pthread_create(&t, NULL, idle_main, &a) != 0) {
    die("pthread_create failed");
  }
  clockid_t clock;
  if (pthread_getcpuclockid(t, &clock) != 0) {
    die("pthread_getcpuclockid failed");
  }
  struct timespec one_second = {1, 0};
  while (nanosleep(&one_second, &one_second) != 0 && errno == EINTR) {
  }
  struct timespec cpu;
  clock_gettime(clock, &cpu);
  c->put(a.q, (void *)(uintptr_t)1);
  pthread_join(t, NULL);
  c->destroy(a.q);
  return (double)cpu.tv_sec * 1e3 + (double)cpu.tv_nsec / 1e6;
}

/* ---- report ---- */

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a;
  double y = *(const double *)b;
  return (x > y) - (x < y);
}

typedef struct stats {
  double median;
  double worst;
} stats;

static stats stats_of(const double *v, int n) {
  double s[REPS];
  memcpy(s, v, sizeof(double) * (size_t)n);
  qsort(s, (size_t)n, sizeof(double), cmp_double);
  stats r = {s[n / 2], s[n - 1]};
  return r;
}

static void usage(void) {
  fprintf(stderr, "usage: bench_queue [--items N] [--quick] [--bound N] "
                  "[--only A,B]\n"
                  "  --items N   pointers per repetition (default "
                  "10000000)\n"
                  "  --quick     1000000 pointers, for development\n"
                  "  --bound N   bound of the bounded queues, a power of two "
                  "(default 8192)\n"
                  "  --only A,B  run only contenders whose name contains A or "
                  "B\n");
  exit(2);
}

int main(int argc, char **argv) {
  uint64_t items = 10000000;
  const char *only = NULL;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--items") == 0 && i + 1 < argc) {
      items = strtoull(argv[++i], NULL, 10);
    } else if (strcmp(argv[i], "--quick") == 0) {
      items = 1000000;
    } else if (strcmp(argv[i], "--bound") == 0 && i + 1 < argc) {
      bound = (size_t)strtoull(argv[++i], NULL, 10);
    } else if (strcmp(argv[i], "--only") == 0 && i + 1 < argc) {
      only = argv[++i];
    } else {
      usage();
    }
  }
  if (items < 16 || bound < 2 || (bound & (bound - 1)) != 0 ||
      bound > (1u << 30)) {
    usage();
  }
  static const int setups[2][2] = {{1, 1}, {2, 2}};
  double ns[NCONTENDERS][2][REPS];
  double idle[NCONTENDERS];
  bool on[NCONTENDERS];
  for (size_t k = 0; k < NCONTENDERS; k++) {
    on[k] = only == NULL;
    for (const char *o = only; o != NULL && *o != '\0';) {
      const char *comma = strchr(o, ',');
      size_t len = comma != NULL ? (size_t)(comma - o) : strlen(o);
      char word[64];
      snprintf(word, sizeof word, "%.*s", (int)len, o);
      if (len > 0 && strstr(contenders[k].name, word) != NULL) {
        on[k] = true;
      }
      o = comma != NULL ? comma + 1 : NULL;
    }
  }
  for (int rep = 0; rep < REPS; rep++) {
    for (int s = 0; s < 2; s++) {
      for (size_t k = 0; k < NCONTENDERS; k++) {
        if (on[k]) {
          ns[k][s][rep] =
              run_once(&contenders[k], setups[s][0], setups[s][1], items);
          fprintf(stderr, "  rep %d %dP%dC %-48s %8.1f ns/item\n", rep + 1,
                  setups[s][0], setups[s][1], contenders[k].name,
                  ns[k][s][rep]);
        }
      }
    }
  }
  for (size_t k = 0; k < NCONTENDERS; k++) {
    if (on[k]) {
      idle[k] = idle_cpu_ms(&contenders[k]);
    }
  }

  stats st[NCONTENDERS][2];
  double best_peer[2] = {0, 0};
  for (size_t k = 0; k < NCONTENDERS; k++) {
    for (int s = 0; s < 2 && on[k]; s++) {
      st[k][s] = stats_of(ns[k][s], REPS);
      bool peer = contenders[k].blocking &&
                  strncmp(contenders[k].name, "concur", 6) != 0;
      if (peer && (best_peer[s] == 0 || st[k][s].median < best_peer[s])) {
        best_peer[s] = st[k][s].median;
      }
    }
  }

  printf("%" PRIu64 " pointers per run, %d repetitions interleaved, %ld "
         "CPUs, bound = %zu; ratio = median / best blocking peer's median\n\n",
         items, REPS, sysconf(_SC_NPROCESSORS_ONLN), bound);
  printf("| queue | blocking | 1P1C ns/item | 1P1C worst/median | 1P1C ratio "
         "| 2P2C ns/item | 2P2C worst/median | 2P2C ratio | idle consumer "
         "CPU per s |\n");
  printf("|---|---|---:|---:|---:|---:|---:|---:|---:|\n");
  for (size_t k = 0; k < NCONTENDERS; k++) {
    if (!on[k]) {
      continue;
    }
    printf("| %s | %s ", contenders[k].name,
           contenders[k].blocking ? "yes" : "**no** (spins)");
    for (int s = 0; s < 2; s++) {
      printf("| %.1f | %.2fx | ", st[k][s].median,
             st[k][s].worst / st[k][s].median);
      if (best_peer[s] > 0) {
        printf("%.2fx ", st[k][s].median / best_peer[s]);
      } else {
        printf("- ");
      }
    }
    printf("| %.1f ms |\n", idle[k]);
  }
  return 0;
}
