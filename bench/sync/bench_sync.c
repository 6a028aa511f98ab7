/*
 * bench_sync: concur's synchronization primitives against their usual peers,
 * side by side in one run.
 *
 *   lock, uncontended   concur_lock, pthread_mutex, GMutex, pthread_spinlock:
 *                       one thread, acquire + release, ns per pair; measured
 *                       once while the process has never started a thread
 *                       (glibc and concur then skip atomic instructions) and
 *                       once after it has (the figure that matters).
 *   lock, 2 threads     the same contenders, two threads hammering one lock
 *                       (critical section: one increment) for a fixed time:
 *                       wall ns per pair over both threads, each thread's
 *                       share of the acquisitions, hand-offs per 1000
 *                       acquisitions; a counter under the lock must equal the
 *                       acquisitions counted outside it (no lost update).
 *   semaphore hand-off  concur_semaphore vs POSIX sem_t: two threads
 *                       ping-pong through two semaphores, ns per hand-off.
 *   event hand-off      concur_event set/wait/clear vs a flag under a
 *                       pthread mutex + condition variable, ns per hand-off.
 *
 * Every measurement is repeated (7 times, 5 with --quick), the repetitions
 * interleaved across the contenders of a scenario so that drift hits all of
 * them alike; the table reports the median, min and max, and the median's
 * ratio to the best non-concur contender of that scenario.
 *
 * Usage: bench_sync [--quick]
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <concur.h>

#include <glib.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_REPS 15
#define CACHE_LINE 64

static int reps = 7;
static long uncontended_pairs = 20000000;
static long contended_ms = 200;
static long handoff_rounds = 20000;

static int64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void die(const char *what, int rc) {
  fprintf(stderr, "bench_sync: %s failed: %s\n", what,
          rc < 0 ? concur_strerror(rc) : strerror(rc));
  exit(EXIT_FAILURE);
}

static void check(const char *what, int rc) {
  if (rc != 0) {
    die(what, rc);
  }
}

static void sleep_ns(int64_t ns) {
  struct timespec ts = {(time_t)(ns / 1000000000), (long)(ns % 1000000000)};
  while (nanosleep(&ts, &ts) != 0) {
  }
}

/* ---- results ---------------------------------------------------------------
 */

typedef struct row {
  const char *scenario;
  const char *name;
  bool is_concur;
  double samples[MAX_REPS];
  char note[96]; /* from the repetition closest to the median */
} row;

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a;
  double y = *(const double *)b;
  return (x > y) - (x < y);
}

static double median_of(const row *r) {
  double s[MAX_REPS];
  memcpy(s, r->samples, sizeof(double) * (size_t)reps);
  qsort(s, (size_t)reps, sizeof s[0], cmp_double);
  return reps % 2 ? s[reps / 2] : (s[reps / 2 - 1] + s[reps / 2]) / 2;
}

static double min_of(const row *r) {
  double m = r->samples[0];
  for (int i = 1; i < reps; i++) {
    m = r->samples[i] < m ? r->samples[i] : m;
  }
  return m;
}

static double max_of(const row *r) {
  double m = r->samples[0];
  for (int i = 1; i < reps; i++) {
    m = r->samples[i] > m ? r->samples[i] : m;
  }
  return m;
}

static void print_rows(row *rows, int n) {
  printf("| scenario | contender | median ns | min | max | vs best peer | "
         "notes |\n");
  printf("|---|---|---:|---:|---:|---:|---|\n");
  for (int i = 0; i < n; i++) {
    double best_peer = 0;
    for (int j = 0; j < n; j++) {
      if (strcmp(rows[j].scenario, rows[i].scenario) == 0 &&
          !rows[j].is_concur) {
        double m = median_of(&rows[j]);
        best_peer = best_peer == 0 || m < best_peer ? m : best_peer;
      }
    }
    double med = median_of(&rows[i]);
    printf("| %s | %s%s%s | %.1f | %.1f | %.1f | %.2fx | %s |\n",
           rows[i].scenario, rows[i].is_concur ? "**" : "", rows[i].name,
           rows[i].is_concur ? "**" : "", med, min_of(&rows[i]),
           max_of(&rows[i]), best_peer > 0 ? med / best_peer : 0.0,
           rows[i].note);
  }
}

/* Keeps the note of the repetition whose value is closest to the median. */
static void settle_note(row *r, char notes[][96]) {
  double med = median_of(r);
  int best = 0;
  for (int i = 1; i < reps; i++) {
    double d = r->samples[i] - med;
    double e = r->samples[best] - med;
    if ((d < 0 ? -d : d) < (e < 0 ? -e : e)) {
      best = i;
    }
  }
  snprintf(r->note, sizeof r->note, "%s", notes[best]);
}

/* ---- the lock contenders
 * ------------------------------------------------------ */

/*
 * Each contender gets its own loops with direct calls (no function-pointer
 * table), so that a lock whose fast path is a short leaf function is
 * measured as a caller would see it.
 */
typedef struct shared_lock {
  _Alignas(CACHE_LINE) union {
    concur_lock *concur;
    pthread_mutex_t mutex;
    GMutex gmutex;
    pthread_spinlock_t spin;
  } u;
  /* The data the lock protects, on its own line. */
  _Alignas(CACHE_LINE) long counter;
  int last_owner;
  long handoffs;
  _Alignas(CACHE_LINE) atomic_bool stop;
  pthread_barrier_t start;
} shared_lock;

typedef struct worker {
  _Alignas(CACHE_LINE) shared_lock *shared;
  int id;
  long acquisitions;
} worker;

#define LOCK_CONTENDER(tag, LOCK, UNLOCK)                                      \
  static double uncontended_##tag(shared_lock *s) {                            \
    int64_t t0 = now_ns();                                                     \
    for (long i = 0; i < uncontended_pairs; i++) {                             \
      LOCK(s);                                                                 \
      s->counter++;                                                            \
      UNLOCK(s);                                                               \
    }                                                                          \
    return (double)(now_ns() - t0) / (double)uncontended_pairs;                \
  }                                                                            \
  static void *contended_##tag(void *arg) {                                    \
    worker *w = arg;                                                           \
    shared_lock *s = w->shared;                                                \
    long mine = 0;                                                             \
    pthread_barrier_wait(&s->start);                                           \
    while (!atomic_load_explicit(&s->stop, memory_order_relaxed)) {            \
      LOCK(s);                                                                 \
      s->counter++;                                                            \
      if (s->last_owner != w->id) {                                            \
        s->handoffs++;                                                         \
        s->last_owner = w->id;                                                 \
      }                                                                        \
      UNLOCK(s);                                                               \
      mine++;                                                                  \
    }                                                                          \
    w->acquisitions = mine;                                                    \
    return NULL;                                                               \
  }

#define CONCUR_LOCK(s)                                                         \
  check("concur_lock_acquire",                                                 \
        concur_lock_acquire((s)->u.concur, CONCUR_FOREVER))
#define CONCUR_UNLOCK(s)                                                       \
  check("concur_lock_release", concur_lock_release((s)->u.concur))
#define MUTEX_LOCK(s) pthread_mutex_lock(&(s)->u.mutex)
#define MUTEX_UNLOCK(s) pthread_mutex_unlock(&(s)->u.mutex)
#define GMUTEX_LOCK(s) g_mutex_lock(&(s)->u.gmutex)
#define GMUTEX_UNLOCK(s) g_mutex_unlock(&(s)->u.gmutex)
#define SPIN_LOCK(s) pthread_spin_lock(&(s)->u.spin)
#define SPIN_UNLOCK(s) pthread_spin_unlock(&(s)->u.spin)

LOCK_CONTENDER(concur, CONCUR_LOCK, CONCUR_UNLOCK)
LOCK_CONTENDER(mutex, MUTEX_LOCK, MUTEX_UNLOCK)
LOCK_CONTENDER(gmutex, GMUTEX_LOCK, GMUTEX_UNLOCK)
LOCK_CONTENDER(spin, SPIN_LOCK, SPIN_UNLOCK)

typedef struct lock_kind {
  const char *name;
  bool is_concur;
  double (*uncontended)(shared_lock *);
  void *(*contended)(void *);
} lock_kind;

static const lock_kind lock_kinds[] = {
    {"concur_lock", true, uncontended_concur, contended_concur},
    {"pthread_mutex", false, uncontended_mutex, contended_mutex},
    {"GMutex", false, uncontended_gmutex, contended_gmutex},
    {"pthread_spinlock", false, uncontended_spin, contended_spin},
};
#define N_LOCK_KINDS (sizeof lock_kinds / sizeof lock_kinds[0])

static shared_lock *shared_lock_new(size_t kind) {
  shared_lock *s = aligned_alloc(CACHE_LINE, sizeof *s);
  if (s == NULL) {
    die("aligned_alloc", CONCUR_ENOMEM);
  }
  memset(s, 0, sizeof *s);
  switch (kind) {
  case 0:
    check("concur_lock_new", concur_lock_new(&s->u.concur));
    break;
  case 1:
    check("pthread_mutex_init", pthread_mutex_init(&s->u.mutex, NULL));
    break;
  case 2:
    g_mutex_init(&s->u.gmutex);
    break;
  default:
    check("pthread_spin_init",
          pthread_spin_init(&s->u.spin, PTHREAD_PROCESS_PRIVATE));
    break;
  }
  s->last_owner = -1;
  atomic_init(&s->stop, false);
  return s;
}

static void shared_lock_free(shared_lock *s, size_t kind) {
  switch (kind) {
  case 0:
    concur_lock_free(s->u.concur);
    break;
  case 1:
    pthread_mutex_destroy(&s->u.mutex);
    break;
  case 2:
    g_mutex_clear(&s->u.gmutex);
    break;
  default:
    pthread_spin_destroy(&s->u.spin);
    break;
  }
  free(s);
}

static void bench_uncontended(row *rows, const char *scenario) {
  for (size_t k = 0; k < N_LOCK_KINDS; k++) {
    rows[k] = (row){.scenario = scenario,
                    .name = lock_kinds[k].name,
                    .is_concur = lock_kinds[k].is_concur};
  }
  for (int rep = 0; rep < reps; rep++) {
    for (size_t k = 0; k < N_LOCK_KINDS; k++) {
      shared_lock *s = shared_lock_new(k);
      double ns = lock_kinds[k].uncontended(s);
      if (s->counter != uncontended_pairs) {
        die("uncontended counter check", CONCUR_EINVAL);
      }
      rows[k].samples[rep] = ns;
      shared_lock_free(s, k);
    }
  }
}

static void bench_contended(row *rows) {
  static char notes[N_LOCK_KINDS][MAX_REPS][96];
  for (size_t k = 0; k < N_LOCK_KINDS; k++) {
    rows[k] = (row){.scenario = "lock, 2 threads",
                    .name = lock_kinds[k].name,
                    .is_concur = lock_kinds[k].is_concur};
  }
  for (int rep = 0; rep < reps; rep++) {
    for (size_t k = 0; k < N_LOCK_KINDS; k++) {
      shared_lock *s = shared_lock_new(k);
      check("pthread_barrier_init", pthread_barrier_init(&s->start, NULL, 3));
      worker w[2];
      pthread_t t[2];
      for (int i = 0; i < 2; i++) {
        w[i] = (worker){.shared = s, .id = i, .acquisitions = 0};
        check("pthread_create",
              pthread_create(&t[i], NULL, lock_kinds[k].contended, &w[i]));
      }
      pthread_barrier_wait(&s->start);
      int64_t t0 = now_ns();
      sleep_ns(contended_ms * 1000000);
      atomic_store_explicit(&s->stop, true, memory_order_relaxed);
      for (int i = 0; i < 2; i++) {
        pthread_join(t[i], NULL);
      }
      int64_t wall = now_ns() - t0;
      long total = w[0].acquisitions + w[1].acquisitions;
      if (s->counter != total) {
        fprintf(stderr, "bench_sync: %s lost updates: %ld != %ld\n",
                lock_kinds[k].name, s->counter, total);
        exit(EXIT_FAILURE);
      }
      if (w[0].acquisitions == 0 || w[1].acquisitions == 0) {
        fprintf(stderr, "bench_sync: %s starved a thread: %ld / %ld\n",
                lock_kinds[k].name, w[0].acquisitions, w[1].acquisitions);
      }
      rows[k].samples[rep] = (double)wall / (double)total;
      snprintf(notes[k][rep], sizeof notes[k][rep],
               "shares %.0f%%/%.0f%%, %.1f hand-offs/1000",
               100.0 * (double)w[0].acquisitions / (double)total,
               100.0 * (double)w[1].acquisitions / (double)total,
               1000.0 * (double)s->handoffs / (double)total);
      pthread_barrier_destroy(&s->start);
      shared_lock_free(s, k);
    }
  }
  for (size_t k = 0; k < N_LOCK_KINDS; k++) {
    settle_note(&rows[k], notes[k]);
  }
}

/* ---- hand-offs
 * ---------------------------------------------------------------- */

/* A flag under a pthread mutex + condition variable: the Event peer. */
typedef struct cv_flag {
  pthread_mutex_t mutex;
  pthread_cond_t cond;
  bool set;
} cv_flag;

static void cv_flag_init(cv_flag *f) {
  check("pthread_mutex_init", pthread_mutex_init(&f->mutex, NULL));
  check("pthread_cond_init", pthread_cond_init(&f->cond, NULL));
  f->set = false;
}

static void cv_flag_destroy(cv_flag *f) {
  pthread_cond_destroy(&f->cond);
  pthread_mutex_destroy(&f->mutex);
}

static void cv_flag_set(cv_flag *f) {
  pthread_mutex_lock(&f->mutex);
  f->set = true;
  pthread_cond_broadcast(&f->cond);
  pthread_mutex_unlock(&f->mutex);
}

static void cv_flag_wait(cv_flag *f) {
  pthread_mutex_lock(&f->mutex);
  while (!f->set) {
    pthread_cond_wait(&f->cond, &f->mutex);
  }
  pthread_mutex_unlock(&f->mutex);
}

static void cv_flag_clear(cv_flag *f) {
  pthread_mutex_lock(&f->mutex);
  f->set = false;
  pthread_mutex_unlock(&f->mutex);
}

typedef struct pingpong {
  int kind; /* 0 concur_semaphore, 1 sem_t, 2 concur_event, 3 cv_flag */
  concur_semaphore *csem[2];
  sem_t psem[2];
  concur_event *cevent[2];
  cv_flag flag[2];
  long rounds;
} pingpong;

/* One side: `me` 0 serves first; each round passes the turn there and back. */
static void pass(pingpong *p, int to) {
  switch (p->kind) {
  case 0:
    check("concur_semaphore_release", concur_semaphore_release(p->csem[to], 1));
    break;
  case 1:
    check("sem_post", sem_post(&p->psem[to]));
    break;
  case 2:
    check("concur_event_set", concur_event_set(p->cevent[to]));
    break;
  default:
    cv_flag_set(&p->flag[to]);
    break;
  }
}

static void take(pingpong *p, int mine) {
  switch (p->kind) {
  case 0:
    check("concur_semaphore_acquire",
          concur_semaphore_acquire(p->csem[mine], CONCUR_FOREVER));
    break;
  case 1:
    while (sem_wait(&p->psem[mine]) != 0) {
    }
    break;
  case 2:
    check("concur_event_wait",
          concur_event_wait(p->cevent[mine], CONCUR_FOREVER));
    check("concur_event_clear", concur_event_clear(p->cevent[mine]));
    break;
  default:
    cv_flag_wait(&p->flag[mine]);
    cv_flag_clear(&p->flag[mine]);
    break;
  }
}

static void *pong(void *arg) {
  pingpong *p = arg;
  for (long i = 0; i < p->rounds; i++) {
    take(p, 1);
    pass(p, 0);
  }
  return NULL;
}

static double run_pingpong(int kind) {
  pingpong p;
  memset(&p, 0, sizeof p);
  p.kind = kind;
  p.rounds = handoff_rounds;
  for (int i = 0; i < 2; i++) {
    switch (kind) {
    case 0:
      check("concur_semaphore_new", concur_semaphore_new(&p.csem[i], 0));
      break;
    case 1:
      check("sem_init", sem_init(&p.psem[i], 0, 0));
      break;
    case 2:
      check("concur_event_new", concur_event_new(&p.cevent[i]));
      break;
    default:
      cv_flag_init(&p.flag[i]);
      break;
    }
  }
  pthread_t t;
  check("pthread_create", pthread_create(&t, NULL, pong, &p));
  int64_t t0 = now_ns();
  for (long i = 0; i < p.rounds; i++) {
    pass(&p, 1);
    take(&p, 0);
  }
  int64_t elapsed = now_ns() - t0;
  pthread_join(t, NULL);
  for (int i = 0; i < 2; i++) {
    switch (kind) {
    case 0:
      concur_semaphore_free(p.csem[i]);
      break;
    case 1:
      sem_destroy(&p.psem[i]);
      break;
    case 2:
      concur_event_free(p.cevent[i]);
      break;
    default:
      cv_flag_destroy(&p.flag[i]);
      break;
    }
  }
  return (double)elapsed / (double)(2 * p.rounds);
}

static void bench_handoff(row *rows, const char *scenario, int concur_kind,
                          const char *concur_name, int peer_kind,
                          const char *peer_name) {
  rows[0] = (row){.scenario = scenario, .name = concur_name, .is_concur = true};
  rows[1] = (row){.scenario = scenario, .name = peer_name, .is_concur = false};
  for (int rep = 0; rep < reps; rep++) {
    rows[0].samples[rep] = run_pingpong(concur_kind);
    rows[1].samples[rep] = run_pingpong(peer_kind);
  }
}

static void *nothing(void *arg) {
  return arg;
}

int main(int argc, char **argv) {
  bool quick = false;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--quick") == 0) {
      quick = true;
      reps = 5;
      uncontended_pairs = 2000000;
      contended_ms = 50;
      handoff_rounds = 2000;
    } else {
      fprintf(stderr, "usage: %s [--quick]\n", argv[0]);
      return EXIT_FAILURE;
    }
  }
  row rows[3 * N_LOCK_KINDS + 4];
  int n = 0;
  /*
   * glibc's pthread_mutex (and concur's Lock) skip atomic instructions while
   * the process has never started a thread (__libc_single_threaded). Measure
   * that case first, then start and join a thread and measure again: the
   * threaded figure is the one that matters for a lock.
   */
  bench_uncontended(&rows[n], "lock, uncontended, single-threaded process");
  n += (int)N_LOCK_KINDS;
  pthread_t t;
  check("pthread_create", pthread_create(&t, NULL, nothing, NULL));
  pthread_join(t, NULL);
  bench_uncontended(&rows[n], "lock, uncontended");
  n += (int)N_LOCK_KINDS;
  bench_contended(&rows[n]);
  n += (int)N_LOCK_KINDS;
  bench_handoff(&rows[n], "semaphore hand-off", 0, "concur_semaphore", 1,
                "sem_t");
  n += 2;
  bench_handoff(&rows[n], "event hand-off", 2, "concur_event", 3,
                "mutex+condvar flag");
  n += 2;
  printf("bench_sync: %d repetitions%s, medians; ns per acquire+release "
         "pair (lock) or per hand-off\n\n",
         reps, quick ? " (--quick)" : "");
  print_rows(rows, n);
  return EXIT_SUCCESS;
}
