/*
 * The thread-pool benchmark: concur's thread pool against GLib's
 * GThreadPool, C-Thread-Pool, pthreadpool, oneTBB's task_group, OpenMP
 * tasks and Python's ThreadPoolExecutor, with one submitting thread and two
 * workers each:
 *
 *  - ff:      1,000,000 empty tasks, fire-and-forget (no handle kept),
 *             from the first submit until the last task ran;
 *  - futures: 1,000,000 tasks whose handles are all kept, then every
 *             result read (concur futures; Python Futures);
 *  - idle:    submit-to-start latency on an idle pool (the workers have been
 *             idle for 10 ms: asleep, in every contender), p50 and p99;
 *  - busy:    submit-to-start latency on a busy pool (each probe is
 *             submitted as soon as the previous one started, the submitter
 *             staying awake, so the workers are awake too), p50;
 *  - cpu:     the process's CPU use while the pool sits idle.
 *
 * Every contender runs each scenario once per round; rounds are
 * interleaved (round 1 of everyone, then round 2, ...) and the table shows
 * medians over the rounds. One warm-up round is not counted. Python runs as
 * a child process (bench_pool.py) with fewer tasks, scaled per task.
 * See README.md for the packages and how to run it.
 */
#define _GNU_SOURCE
#include "concur/thread_pool.h"

#include <errno.h>
#include <glib.h>
#include <math.h>
#include <omp.h>
#include <pthread.h>
#include <pthreadpool.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "thpool.h"

/* The oneTBB side (tbb_shim.cpp): one task_group in an arena of `threads`
 * threads (the caller's included). */
void bench_tbb_init(int threads);
void bench_tbb_run(void (*fn)(void *), void *arg);
void bench_tbb_run_plain(void (*fn)(void));
void bench_tbb_wait(void);

#ifndef BENCH_PY_SCRIPT
#define BENCH_PY_SCRIPT "bench_pool.py"
#endif

#define WORKERS 2
#define ROUNDS 5

static long n_tasks = 1000000;
static int idle_probes = 100;
/* How long the pool sits idle before each idle probe: long enough for
 * every contender's workers to be asleep (OpenMP and oneTBB spin for a
 * while before they sleep). */
static long idle_gap_us = 10000;
static int busy_probes = 2000;

/* ---- time and small helpers ------------------------------------------------
 */

static int64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int64_t cpu_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void sleep_us(long us) {
  struct timespec ts = {us / 1000000, (us % 1000000) * 1000};
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a;
  double y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static double percentile(double *v, int n, double p) {
  if (n == 0) {
    return NAN;
  }
  qsort(v, (size_t)n, sizeof *v, cmp_double);
  int i = (int)(p * (n - 1) + 0.5);
  return v[i];
}

static double median(double *v, int n) {
  int k = 0;
  double tmp[ROUNDS];
  for (int i = 0; i < n; i++) {
    if (!isnan(v[i])) {
      tmp[k++] = v[i];
    }
  }
  return percentile(tmp, k, 0.5);
}

/* ---- counting allocations (to show concur allocates nothing when warm) -----
 */

void *__real_malloc(size_t size);
void *__wrap_malloc(size_t size);
void *__real_calloc(size_t n, size_t size);
void *__wrap_calloc(size_t n, size_t size);
static _Atomic long mallocs;

void *__wrap_malloc(size_t size) {
  atomic_fetch_add_explicit(&mallocs, 1, memory_order_relaxed);
  return __real_malloc(size);
}

void *__wrap_calloc(size_t n, size_t size) {
  atomic_fetch_add_explicit(&mallocs, 1, memory_order_relaxed);
  return __real_calloc(n, size);
}

/* ---- the tasks: identical for every C contender ----------------------------
 */

/* A latch the submitter blocks on until the last task of a run has run. */
static _Atomic long done_count;
static long done_target;
static pthread_mutex_t latch_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t latch_cond = PTHREAD_COND_INITIALIZER;
static int latch_open;

static void latch_reset(long target) {
  atomic_store(&done_count, 0);
  done_target = target;
  pthread_mutex_lock(&latch_lock);
  latch_open = 0;
  pthread_mutex_unlock(&latch_lock);
}

static void latch_wait(void) {
  pthread_mutex_lock(&latch_lock);
  while (!latch_open) {
    pthread_cond_wait(&latch_cond, &latch_lock);
  }
  pthread_mutex_unlock(&latch_lock);
}

/* The empty task: counts itself; the last one opens the latch. */
static void empty_task(void) {
  if (atomic_fetch_add_explicit(&done_count, 1, memory_order_acq_rel) + 1 ==
      done_target) {
    pthread_mutex_lock(&latch_lock);
    latch_open = 1;
    pthread_cond_signal(&latch_cond);
    pthread_mutex_unlock(&latch_lock);
  }
}

/* A latency probe: records when it started, wakes the submitter. */
typedef struct probe {
  int64_t start_ns;
  _Atomic int started;
} probe;

static pthread_mutex_t probe_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t probe_cond = PTHREAD_COND_INITIALIZER;

/* 1 while the submitter may be asleep on probe_cond. */
static _Atomic int probe_sleeper;

static void run_probe(void *arg) {
  probe *p = arg;
  p->start_ns = now_ns();
  atomic_store(&p->started, 1);
  if (atomic_load(&probe_sleeper)) {
    pthread_mutex_lock(&probe_lock);
    pthread_cond_signal(&probe_cond);
    pthread_mutex_unlock(&probe_lock);
  }
}

/* The submitter waits for its probe: on an idle pool it sleeps; on a busy
 * one it stays awake (a short spin), as a busy application would, so the
 * next probe follows at once. */
static void wait_probe(probe *p, bool busy) {
  if (busy) {
    for (int i = 0; i < 20000; i++) {
      if (atomic_load(&p->started)) {
        return;
      }
      __builtin_ia32_pause();
    }
  }
  pthread_mutex_lock(&probe_lock);
  atomic_store(&probe_sleeper, 1);
  while (!atomic_load(&p->started)) {
    pthread_cond_wait(&probe_cond, &probe_lock);
  }
  atomic_store(&probe_sleeper, 0);
  pthread_mutex_unlock(&probe_lock);
}

/* Drives the latency probes of one contender: submit(arg) must start
 * run_probe(arg) asynchronously. */
static void latency_run(void (*submit)(probe *), bool busy, int n,
                        double *out) {
  static probe probes[4096];
  for (int i = 0; i < n; i++) {
    probe *p = &probes[i];
    p->start_ns = 0;
    atomic_store(&p->started, 0);
    if (!busy) {
      sleep_us(idle_gap_us);
    }
    int64_t t0 = now_ns();
    submit(p);
    wait_probe(p, busy);
    out[i] = (double)(p->start_ns - t0);
  }
}

/* ---- concur
 * --------------------------------------------------------------------- */

static concur_executor *cc_pool;
static concur_future **cc_futures;

static int cc_empty(void *arg, void **result) {
  (void)arg;
  (void)result;
  empty_task();
  return 0;
}

static int cc_value(void *arg, void **result) {
  *result = arg;
  return 0;
}

static int cc_probe(void *arg, void **result) {
  (void)result;
  run_probe(arg);
  return 0;
}

static void cc_setup(void) {
  concur_thread_pool_options o = CONCUR_THREAD_POOL_OPTIONS_INIT;
  o.max_workers = WORKERS;
  o.prestart = true;
  if (concur_thread_pool_new(&cc_pool, &o) != 0) {
    abort();
  }
  cc_futures = malloc((size_t)n_tasks * sizeof *cc_futures);
}

static double cc_ff(long n) {
  latch_reset(n);
  int64_t t0 = now_ns();
  for (long i = 0; i < n; i++) {
    if (concur_executor_submit(cc_pool, cc_empty, NULL, NULL) != 0) {
      abort();
    }
  }
  latch_wait();
  return (double)(now_ns() - t0) / (double)n;
}

static double cc_fut(long n) {
  int64_t t0 = now_ns();
  for (long i = 0; i < n; i++) {
    if (concur_executor_submit(cc_pool, cc_value, (void *)(intptr_t)i,
                               &cc_futures[i]) != 0) {
      abort();
    }
  }
  long sum = 0;
  for (long i = 0; i < n; i++) {
    void *v = NULL;
    if (concur_future_result(cc_futures[i], CONCUR_FOREVER, &v) != 0) {
      abort();
    }
    sum += (long)(intptr_t)v;
    concur_future_unref(cc_futures[i]);
  }
  double per = (double)(now_ns() - t0) / (double)n;
  if (sum != n * (n - 1) / 2) {
    abort();
  }
  return per;
}

static void cc_submit_probe(probe *p) {
  if (concur_executor_submit(cc_pool, cc_probe, p, NULL) != 0) {
    abort();
  }
}

static void cc_burst(long n) {
  (void)cc_ff(n);
}

/* The same tasks through a task group, whose submitter runs tasks itself
 * once it is far ahead (concur_task_group_submit's throttle, as OpenMP). */
static double cc_group_ff(long n) {
  latch_reset(n);
  int64_t t0 = now_ns();
  concur_task_group *g = NULL;
  if (concur_task_group_new(&g, cc_pool) != 0) {
    abort();
  }
  for (long i = 0; i < n; i++) {
    if (concur_task_group_submit(g, cc_empty, NULL) != 0) {
      abort();
    }
  }
  latch_wait();
  double per = (double)(now_ns() - t0) / (double)n;
  if (concur_task_group_wait(g, CONCUR_FOREVER, NULL) != 0) {
    abort();
  }
  concur_task_group_free(g);
  return per;
}

static void cc_group_burst(long n) {
  (void)cc_group_ff(n);
}

/* ---- GLib GThreadPool
 * ----------------------------------------------------------- */

static GThreadPool *gl_pool;
static int gl_mode; /* 0: empty tasks, 1: probes */

static void gl_func(gpointer data, gpointer user) {
  (void)user;
  if (gl_mode == 0) {
    empty_task();
  } else {
    run_probe(data);
  }
}

static void gl_setup(void) {
  gl_pool = g_thread_pool_new(gl_func, NULL, WORKERS, TRUE, NULL);
}

static double gl_ff(long n) {
  gl_mode = 0;
  latch_reset(n);
  int64_t t0 = now_ns();
  for (long i = 0; i < n; i++) {
    g_thread_pool_push(gl_pool, (gpointer)1, NULL);
  }
  latch_wait();
  return (double)(now_ns() - t0) / (double)n;
}

static void gl_submit_probe(probe *p) {
  gl_mode = 1;
  g_thread_pool_push(gl_pool, p, NULL);
}

static void gl_burst(long n) {
  (void)gl_ff(n);
}

/* ---- C-Thread-Pool
 * --------------------------------------------------------------- */

static threadpool ct_pool;

static void ct_empty(void *arg) {
  (void)arg;
  empty_task();
}

static void ct_setup(void) {
  ct_pool = thpool_init(WORKERS);
}

static double ct_ff(long n) {
  latch_reset(n);
  int64_t t0 = now_ns();
  for (long i = 0; i < n; i++) {
    if (thpool_add_work(ct_pool, ct_empty, NULL) != 0) {
      abort();
    }
  }
  latch_wait();
  return (double)(now_ns() - t0) / (double)n;
}

static void ct_submit_probe(probe *p) {
  if (thpool_add_work(ct_pool, run_probe, p) != 0) {
    abort();
  }
}

static void ct_burst(long n) {
  (void)ct_ff(n);
}

/* ---- pthreadpool (parallel loops only: the caller takes part)
 * ------------------- */

static pthreadpool_t pt_pool;

static void pt_item(void *ctx, size_t i) {
  (void)ctx;
  (void)i;
  empty_task();
}

static void pt_setup(void) {
  pt_pool = pthreadpool_create(WORKERS + 1);
}

static double pt_ff(long n) {
  latch_reset(n);
  int64_t t0 = now_ns();
  pthreadpool_parallelize_1d(pt_pool, pt_item, NULL, (size_t)n, 0);
  latch_wait();
  return (double)(now_ns() - t0) / (double)n;
}

static void pt_burst(long n) {
  (void)pt_ff(n);
}

/* ---- OpenMP tasks
 * ----------------------------------------------------------------- */

static double omp_ff(long n) {
  latch_reset(n);
  int64_t t0 = now_ns();
#pragma omp parallel num_threads(WORKERS + 1)
#pragma omp single
  {
    for (long i = 0; i < n; i++) {
#pragma omp task
      empty_task();
    }
  }
  latch_wait();
  return (double)(now_ns() - t0) / (double)n;
}

/* Not timed: the share of the tasks that libgomp ran in the creating
 * thread itself (it runs a task at once, undeferred, when too many are
 * queued), printed under the table to explain OpenMP's row. */
static _Atomic long omp_in_creator;

static double omp_creator_share(long n) {
  atomic_store(&omp_in_creator, 0);
  latch_reset(n);
#pragma omp parallel num_threads(WORKERS + 1)
#pragma omp single
  {
    int creator = omp_get_thread_num();
    for (long i = 0; i < n; i++) {
#pragma omp task firstprivate(creator)
      {
        if (omp_get_thread_num() == creator) {
          atomic_fetch_add_explicit(&omp_in_creator, 1, memory_order_relaxed);
        }
        empty_task();
      }
    }
  }
  latch_wait();
  return 100.0 * (double)atomic_load(&omp_in_creator) / (double)n;
}

static void omp_latency(bool busy, int n, double *out) {
  static probe probes[4096];
#pragma omp parallel num_threads(WORKERS + 1)
#pragma omp single
  {
    for (int i = 0; i < n; i++) {
      probe *p = &probes[i];
      p->start_ns = 0;
      atomic_store(&p->started, 0);
      if (!busy) {
        sleep_us(idle_gap_us);
      }
      int64_t t0 = now_ns();
#pragma omp task firstprivate(p)
      run_probe(p);
      wait_probe(p, busy);
      out[i] = (double)(p->start_ns - t0);
    }
  }
}

static void omp_burst(long n) {
  (void)omp_ff(n);
}

/* ---- oneTBB task_group
 * ------------------------------------------------------------ */

static void tbb_setup(void) {
  bench_tbb_init(WORKERS + 1);
}

static double tbb_ff(long n) {
  latch_reset(n);
  int64_t t0 = now_ns();
  for (long i = 0; i < n; i++) {
    bench_tbb_run_plain(empty_task);
  }
  bench_tbb_wait(); /* the idiom: the submitting thread joins in */
  latch_wait();
  return (double)(now_ns() - t0) / (double)n;
}

static void tbb_submit_probe(probe *p) {
  bench_tbb_run(run_probe, p);
}

static void tbb_latency(bool busy, int n, double *out) {
  latency_run(tbb_submit_probe, busy, n, out);
  bench_tbb_wait();
}

static void tbb_burst(long n) {
  (void)tbb_ff(n);
}

/* ---- the contenders
 * --------------------------------------------------------------- */

typedef struct contender {
  const char *name;
  void (*setup)(void);
  double (*ff)(long n);
  double (*fut)(long n);          /* NULL: no per-task handle */
  void (*submit_probe)(probe *p); /* NULL: latency n/a or custom */
  void (*latency)(bool busy, int n, double *out); /* custom driver */
  void (*burst)(long n); /* runs n tasks, for the idle-CPU test */
  const char *note;
  bool ours; /* a concur row: never the best peer */
} contender;

static const contender contenders[] = {
    {"concur", cc_setup, cc_ff, cc_fut, cc_submit_probe, NULL, cc_burst, NULL,
     true},
    {"concur task group", NULL, cc_group_ff, NULL, NULL, NULL, cc_group_burst,
     NULL, true},
    {"OpenMP tasks (gcc)", NULL, omp_ff, NULL, NULL, omp_latency, omp_burst,
     NULL, false},
    {"GLib GThreadPool", gl_setup, gl_ff, NULL, gl_submit_probe, NULL, gl_burst,
     NULL, false},
    {"oneTBB task_group", tbb_setup, tbb_ff, NULL, NULL, tbb_latency, tbb_burst,
     NULL, false},
    {"C-Thread-Pool", ct_setup, ct_ff, NULL, ct_submit_probe, NULL, ct_burst,
     NULL, false},
    {"pthreadpool", pt_setup, pt_ff, NULL, NULL, NULL, pt_burst,
     "parallelize_1d over 1M items (no per-task submit)", false},
};

#define N_C (sizeof contenders / sizeof contenders[0])
#define N_ALL (N_C + 1) /* + Python */

enum { COL_FF, COL_FUT, COL_IDLE50, COL_IDLE99, COL_BUSY50, COL_CPU, N_COLS };

static double results[N_ALL][N_COLS][ROUNDS];

static double idle_cpu_percent(void (*burst)(long n)) {
  burst(20000);
  sleep_us(100000); /* past any bounded spin */
  int64_t c0 = cpu_ns();
  int64_t w0 = now_ns();
  sleep_us(200000);
  int64_t c1 = cpu_ns();
  int64_t w1 = now_ns();
  return 100.0 * (double)(c1 - c0) / (double)(w1 - w0);
}

static const char *only; /* --only NAME: run one contender */

static void run_contender(size_t k, int round) {
  const contender *c = &contenders[k];
  if (only != NULL && strcmp(only, c->name) != 0) {
    return;
  }
  static double samples[4096];
  double *r[N_COLS];
  for (int col = 0; col < N_COLS; col++) {
    r[col] = round >= 0 ? &results[k][col][round] : &(double){0};
    *r[col] = NAN;
  }
  *r[COL_FF] = c->ff(n_tasks);
  sleep_us(20000);
  if (c->fut != NULL) {
    *r[COL_FUT] = c->fut(n_tasks);
    sleep_us(20000);
  }
  if (c->submit_probe != NULL || c->latency != NULL) {
    if (c->submit_probe != NULL) {
      latency_run(c->submit_probe, false, idle_probes, samples);
    } else {
      c->latency(false, idle_probes, samples);
    }
    *r[COL_IDLE99] = percentile(samples, idle_probes, 0.99);
    *r[COL_IDLE50] = percentile(samples, idle_probes, 0.5);
    if (c->submit_probe != NULL) {
      latency_run(c->submit_probe, true, busy_probes, samples);
    } else {
      c->latency(true, busy_probes, samples);
    }
    *r[COL_BUSY50] = percentile(samples, busy_probes, 0.5);
  }
  *r[COL_CPU] = idle_cpu_percent(c->burst);
  sleep_us(20000);
}

static void run_python(int round) {
  char cmd[512];
  snprintf(cmd, sizeof cmd, "python3 %s --workers %d", BENCH_PY_SCRIPT,
           WORKERS);
  FILE *f = popen(cmd, "r");
  double v[N_COLS];
  for (int i = 0; i < N_COLS; i++) {
    v[i] = NAN;
  }
  if (f != NULL) {
    char line[512];
    while (fgets(line, sizeof line, f) != NULL) {
      double a, b, c, d, e, g;
      if (sscanf(line, "PYRESULT %lf %lf %lf %lf %lf %lf", &a, &b, &c, &d, &e,
                 &g) == 6) {
        v[COL_FF] = a;
        v[COL_FUT] = b;
        v[COL_IDLE50] = c;
        v[COL_IDLE99] = d;
        v[COL_BUSY50] = e;
        v[COL_CPU] = g;
      }
    }
    pclose(f);
  }
  if (round >= 0) {
    for (int i = 0; i < N_COLS; i++) {
      results[N_C][i][round] = v[i];
    }
  }
}

/* ---- the table
 * ---------------------------------------------------------------------- */

static void cell(char *buf, size_t n, double v, const char *unit, int digits) {
  if (isnan(v)) {
    snprintf(buf, n, "n/a");
  } else {
    snprintf(buf, n, "%.*f%s", digits, v, unit);
  }
}

static void print_table(void) {
  double med[N_ALL][N_COLS];
  const char *names[N_ALL];
  for (size_t k = 0; k < N_ALL; k++) {
    names[k] = k < N_C ? contenders[k].name : "Python ThreadPoolExecutor";
    for (int col = 0; col < N_COLS; col++) {
      med[k][col] = median(results[k][col], ROUNDS);
    }
  }
  /* The best peer per column (lowest; concur excluded, and pthreadpool,
   * whose row is one parallel loop rather than a million submits). */
  double best[N_COLS];
  for (int col = 0; col < N_COLS; col++) {
    best[col] = NAN;
    for (size_t k = 1; k < N_ALL; k++) {
      if (k < N_C && (contenders[k].note != NULL || contenders[k].ours)) {
        continue;
      }
      if (!isnan(med[k][col]) &&
          (isnan(best[col]) || med[k][col] < best[col])) {
        best[col] = med[k][col];
      }
    }
  }
  printf("\n| contender | 1M empty tasks, fire-and-forget (ns/task) | "
         "1M tasks, futures kept and read (ns/task) | idle pool "
         "submit-to-start p50 (us) | idle p99 (us) | busy pool "
         "submit-to-start p50 (ns) | idle CPU (%%) |\n");
  printf("|---|---:|---:|---:|---:|---:|---:|\n");
  for (size_t k = 0; k < N_ALL; k++) {
    char c[N_COLS][48];
    cell(c[COL_FF], 48, med[k][COL_FF],
         k < N_C && contenders[k].note != NULL ? " (one loop)" : "", 1);
    cell(c[COL_FUT], 48, med[k][COL_FUT], "", 1);
    cell(c[COL_IDLE50], 48, med[k][COL_IDLE50] / 1000.0, "", 2);
    cell(c[COL_IDLE99], 48, med[k][COL_IDLE99] / 1000.0, "", 2);
    cell(c[COL_BUSY50], 48, med[k][COL_BUSY50], "", 0);
    cell(c[COL_CPU], 48, med[k][COL_CPU], "", 2);
    printf("| %s | %s | %s | %s | %s | %s | %s |\n", names[k], c[COL_FF],
           c[COL_FUT], c[COL_IDLE50], c[COL_IDLE99], c[COL_BUSY50], c[COL_CPU]);
  }
  char r[N_COLS][48];
  for (int col = 0; col < N_COLS; col++) {
    if (isnan(best[col]) || isnan(med[0][col]) || col == COL_CPU) {
      snprintf(r[col], 48, "n/a");
    } else {
      snprintf(r[col], 48, "%.2fx", med[0][col] / best[col]);
    }
  }
  printf("| **concur / best peer** | %s | %s | %s | %s | %s | %s |\n",
         r[COL_FF], r[COL_FUT], r[COL_IDLE50], r[COL_IDLE99], r[COL_BUSY50],
         r[COL_CPU]);
  printf("| **concur task group / best peer** | %.2fx | | | | | |\n",
         med[1][COL_FF] / best[COL_FF]);
}

int main(int argc, char **argv) {
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--tasks") == 0 && i + 1 < argc) {
      n_tasks = atol(argv[++i]);
    } else if (strcmp(argv[i], "--only") == 0 && i + 1 < argc) {
      only = argv[++i];
    } else if (strcmp(argv[i], "--quick") == 0) {
      n_tasks = 100000;
      idle_probes = 30;
      busy_probes = 200;
    }
  }
  for (size_t k = 0; k < N_C; k++) {
    if (contenders[k].setup != NULL) {
      contenders[k].setup();
    }
  }
  fprintf(stderr, "warm-up round...\n");
  for (size_t k = 0; k < N_C; k++) {
    run_contender(k, -1);
  }
  /* concur allocates nothing per task once warm. */
  long m0 = atomic_load(&mallocs);
  double ff = cc_ff(n_tasks);
  long m1 = atomic_load(&mallocs);
  double fut = cc_fut(n_tasks);
  long m2 = atomic_load(&mallocs);
  fprintf(stderr,
          "concur, warm: %ld allocations for %ld fire-and-forget tasks "
          "(%.1f ns/task), %ld for %ld tasks with futures (%.1f ns/task)\n",
          m1 - m0, n_tasks, ff, m2 - m1, n_tasks, fut);
  for (int round = 0; round < ROUNDS; round++) {
    fprintf(stderr, "round %d/%d\n", round + 1, ROUNDS);
    for (size_t k = 0; k < N_C; k++) {
      run_contender(k, round);
    }
    if (only == NULL || strcmp(only, "python") == 0) {
      run_python(round);
    }
  }
  print_table();
  if (only == NULL || strcmp(only, "OpenMP tasks (gcc)") == 0) {
    printf("\nOpenMP ran %.0f%% of the fire-and-forget tasks in the thread "
           "that created them (a separate, untimed run).\n",
           omp_creator_share(n_tasks));
  }
  printf("\nMedians of %d interleaved rounds; 1 submitting thread and %d "
         "workers each; %ld C tasks per run (Python: fewer, scaled per "
         "task). pthreadpool has no per-task submit: its row is one "
         "parallelize_1d over the items, with the caller taking part, and it "
         "is left out of the best peer.\n",
         ROUNDS, WORKERS, n_tasks);
  return 0;
}
