/*
 * Semaphore and BoundedSemaphore: SEM-01..07 of the reliability catalogue,
 * every documented error, timeouts, and the free() misuse check.
 */
#include "harness.h"

#include <signal.h>
#include <string.h>
#include <time.h>

/* ---- helpers --------------------------------------------------------------
 */

#define MAX_WORKERS 16

typedef struct pool {
  concur_semaphore *sem;
  int64_t timeout_ns;
  int acquires;                  /* per worker */
  _Atomic int phase;             /* set by main before each release */
  _Atomic uint32_t granted;      /* futex word: total successful acquires */
  _Atomic int per_phase[4];      /* grants attributed to each phase */
  _Atomic int mine[MAX_WORKERS]; /* grants per worker */
  _Atomic int next_id;
  int rc[MAX_WORKERS]; /* last acquire result per worker */
  pthread_t threads[MAX_WORKERS];
  int n;
} pool;

static void *acquirer(void *arg) {
  pool *p = arg;
  int id = atomic_fetch_add(&p->next_id, 1);
  for (int i = 0; i < p->acquires; i++) {
    int rc = concur_semaphore_acquire(p->sem, p->timeout_ns);
    p->rc[id] = rc;
    if (rc != 0) {
      break;
    }
    atomic_fetch_add(&p->per_phase[atomic_load(&p->phase)], 1);
    atomic_fetch_add(&p->mine[id], 1);
    atomic_fetch_add(&p->granted, 1);
    concur__unpark(&p->granted, INT32_MAX);
  }
  return NULL;
}

static void pool_start(pool *p, concur_semaphore *sem, int n, int acquires,
                       int64_t timeout_ns) {
  memset(p, 0, sizeof *p);
  p->sem = sem;
  p->n = n;
  p->acquires = acquires;
  p->timeout_ns = timeout_ns;
  for (int i = 0; i < n; i++) {
    ck_assert_rc(concur__thread_spawn(&p->threads[i], 0, true, acquirer, p), 0);
  }
}

static void pool_join(pool *p) {
  for (int i = 0; i < p->n; i++) {
    pthread_join(p->threads[i], NULL);
  }
}

/* Blocks (no sleeping) until `target` acquires have succeeded. */
static void await_granted(pool *p, uint32_t target) {
  concur__deadline d;
  ck_assert_rc(concur__deadline_from_timeout(HARNESS_LONG_NS, &d), 0);
  for (;;) {
    uint32_t g = atomic_load(&p->granted);
    if (g >= target) {
      return;
    }
    ck_assert_msg(concur__park(&p->granted, g, d, NULL) == 0,
                  "only %u of %u acquires granted", (unsigned)g,
                  (unsigned)target);
  }
}

/* Once the grants stopped at `target`, every unfinished worker must end up
 * parked in the semaphore; then no grant beyond target may have happened. */
static void await_settled(pool *p, uint32_t target) {
  await_granted(p, target);
  size_t unfinished = 0;
  for (int i = 0; i < p->n; i++) {
    if (atomic_load(&p->mine[i]) < p->acquires) {
      unfinished++;
    }
  }
  ck_assert_rc(concur__test_await_parked(p->sem, unfinished, HARNESS_LONG_NS),
               0);
  ck_assert_uint_eq(atomic_load(&p->granted), target);
  ck_assert_int_eq(concur_semaphore_value(p->sem), 0);
}

/* ---- constructors, NULLs and invalid values ---------------------------------
 */

START_TEST(SEM_01_negative_initial_value_is_einval) {
  concur_semaphore *sem = (concur_semaphore *)&sem; /* must stay untouched */
  concur_semaphore *const sentinel = sem;
  ck_assert_rc(concur_semaphore_new(&sem, -1), CONCUR_EINVAL);
  ck_assert_rc(concur_semaphore_new(&sem, INT32_MIN), CONCUR_EINVAL);
  ck_assert_rc(concur_semaphore_new_bounded(&sem, -1), CONCUR_EINVAL);
  ck_assert_ptr_eq(sem, sentinel);
  ck_assert_rc(concur_semaphore_new(NULL, 1), CONCUR_EINVAL);
  ck_assert_rc(concur_semaphore_new_bounded(NULL, 1), CONCUR_EINVAL);
}
END_TEST

START_TEST(SEM_01_python_default_value_one_and_zero) {
  concur_semaphore *sem;
  ck_assert_rc(concur_semaphore_new(&sem, 1), 0);
  ck_assert_int_eq(concur_semaphore_value(sem), 1);
  ck_assert_rc(concur_semaphore_acquire(sem, CONCUR_NOWAIT), 0);
  ck_assert_int_eq(concur_semaphore_value(sem), 0);
  ck_assert_rc(concur_semaphore_acquire(sem, CONCUR_NOWAIT), CONCUR_ETIMEDOUT);
  ck_assert_rc(concur_semaphore_release(sem, 1), 0);
  concur_semaphore_free(sem);
  ck_assert_rc(concur_semaphore_new(&sem, 0), 0);
  ck_assert_int_eq(concur_semaphore_value(sem), 0);
  ck_assert_rc(concur_semaphore_acquire(sem, CONCUR_NOWAIT), CONCUR_ETIMEDOUT);
  concur_semaphore_free(sem);
}
END_TEST

START_TEST(SEM_01_plain_semaphore_releases_above_initial) {
  concur_semaphore *sem;
  ck_assert_rc(concur_semaphore_new(&sem, 2), 0);
  ck_assert_rc(concur_semaphore_release(sem, 1), 0);
  ck_assert_rc(concur_semaphore_release(sem, 5), 0);
  ck_assert_int_eq(concur_semaphore_value(sem), 8);
  for (int i = 0; i < 8; i++) {
    ck_assert_rc(concur_semaphore_acquire(sem, CONCUR_NOWAIT), 0);
  }
  ck_assert_rc(concur_semaphore_acquire(sem, CONCUR_NOWAIT), CONCUR_ETIMEDOUT);
  concur_semaphore_free(sem);
}
END_TEST

START_TEST(sem_null_handles_are_einval) {
  ck_assert_rc(concur_semaphore_acquire(NULL, CONCUR_NOWAIT), CONCUR_EINVAL);
  ck_assert_rc(concur_semaphore_acquire(NULL, CONCUR_FOREVER), CONCUR_EINVAL);
  ck_assert_rc(concur_semaphore_release(NULL, 1), CONCUR_EINVAL);
  ck_assert_int_eq(concur_semaphore_value(NULL), 0);
  concur_semaphore_free(NULL); /* a no-op */
}
END_TEST

START_TEST(sem_negative_timeout_is_einval) {
  concur_semaphore *sem;
  ck_assert_rc(concur_semaphore_new(&sem, 1), 0);
  ck_assert_rc(concur_semaphore_acquire(sem, -1), CONCUR_EINVAL);
  ck_assert_rc(concur_semaphore_acquire(sem, CONCUR_DEFAULT), CONCUR_EINVAL);
  ck_assert_rc(concur_semaphore_acquire(sem, INT64_MIN), CONCUR_EINVAL);
  ck_assert_int_eq(concur_semaphore_value(sem), 1); /* nothing taken */
  concur_semaphore_free(sem);
}
END_TEST

START_TEST(sem_release_below_one_is_einval) {
  concur_semaphore *sem;
  ck_assert_rc(concur_semaphore_new(&sem, 0), 0);
  ck_assert_rc(concur_semaphore_release(sem, 0), CONCUR_EINVAL);
  ck_assert_rc(concur_semaphore_release(sem, -1), CONCUR_EINVAL);
  ck_assert_rc(concur_semaphore_release(sem, INT32_MIN), CONCUR_EINVAL);
  ck_assert_int_eq(concur_semaphore_value(sem), 0);
  concur_semaphore_free(sem);
}
END_TEST

START_TEST(sem_unbounded_release_past_int32_max_is_eoverflow) {
  concur_semaphore *sem;
  ck_assert_rc(concur_semaphore_new(&sem, INT32_MAX - 1), 0);
  ck_assert_rc(concur_semaphore_release(sem, 2), CONCUR_EOVERFLOW);
  ck_assert_int_eq(concur_semaphore_value(sem), INT32_MAX - 1);
  ck_assert_rc(concur_semaphore_release(sem, 1), 0);
  ck_assert_int_eq(concur_semaphore_value(sem), INT32_MAX);
  ck_assert_rc(concur_semaphore_release(sem, 1), CONCUR_EOVERFLOW);
  ck_assert_rc(concur_semaphore_release(sem, INT32_MAX), CONCUR_EOVERFLOW);
  ck_assert_int_eq(concur_semaphore_value(sem), INT32_MAX);
  ck_assert_rc(concur_semaphore_acquire(sem, CONCUR_NOWAIT), 0);
  ck_assert_int_eq(concur_semaphore_value(sem), INT32_MAX - 1);
  concur_semaphore_free(sem);
  ck_assert_rc(concur_semaphore_new(&sem, 0), 0);
  ck_assert_rc(concur_semaphore_release(sem, INT32_MAX), 0);
  ck_assert_int_eq(concur_semaphore_value(sem), INT32_MAX);
  concur_semaphore_free(sem);
}
END_TEST

/* ---- SEM-02: contended acquires, phase by phase
 * ------------------------------ */

START_TEST(SEM_02_contended_grants_exactly_the_released_permits) {
  concur_semaphore *sem;
  ck_assert_rc(concur_semaphore_new(&sem, 7), 0);
  ck_assert_rc(concur_semaphore_acquire(sem, CONCUR_FOREVER), 0);
  pool p;
  pool_start(&p, sem, 10, 2, CONCUR_FOREVER);
  await_settled(&p, 6);
  atomic_store(&p.phase, 1);
  ck_assert_rc(concur_semaphore_release(sem, 7), 0);
  await_settled(&p, 13);
  atomic_store(&p.phase, 2);
  for (int i = 0; i < 6; i++) {
    ck_assert_rc(concur_semaphore_release(sem, 1), 0);
  }
  await_settled(&p, 19);
  ck_assert_rc(concur_semaphore_acquire(sem, CONCUR_NOWAIT), CONCUR_ETIMEDOUT);
  atomic_store(&p.phase, 3);
  ck_assert_rc(concur_semaphore_release(sem, 1), 0);
  pool_join(&p);
  ck_assert_int_eq(atomic_load(&p.per_phase[0]), 6);
  ck_assert_int_eq(atomic_load(&p.per_phase[1]), 7);
  ck_assert_int_eq(atomic_load(&p.per_phase[2]), 6);
  ck_assert_int_eq(atomic_load(&p.per_phase[3]), 1);
  for (int i = 0; i < 10; i++) {
    ck_assert_int_eq(p.rc[i], 0);
    ck_assert_int_eq(atomic_load(&p.mine[i]), 2);
  }
  ck_assert_int_eq(concur_semaphore_value(sem), 0);
  concur_semaphore_free(sem);
}
END_TEST

/* ---- SEM-03: release(n) wakes n waiters
 * ---------------------------------------- */

START_TEST(SEM_03_release_n_wakes_n_waiters) {
  concur_semaphore *sem;
  ck_assert_rc(concur_semaphore_new(&sem, 0), 0);
  pool p;
  pool_start(&p, sem, 5, 1, CONCUR_FOREVER);
  ck_assert_rc(concur__test_await_parked(sem, 5, HARNESS_LONG_NS), 0);
  ck_assert_rc(concur_semaphore_release(sem, 3), 0);
  await_settled(&p, 3); /* exactly 3 through, 2 parked again */
  ck_assert_rc(concur_semaphore_release(sem, 2), 0);
  pool_join(&p);
  ck_assert_uint_eq(atomic_load(&p.granted), 5);
  ck_assert_int_eq(concur_semaphore_value(sem), 0);
  concur_semaphore_free(sem);
}
END_TEST

START_TEST(SEM_03_release_more_than_waiters_keeps_the_rest) {
  concur_semaphore *sem;
  ck_assert_rc(concur_semaphore_new(&sem, 0), 0);
  pool p;
  pool_start(&p, sem, 3, 1, CONCUR_FOREVER);
  ck_assert_rc(concur__test_await_parked(sem, 3, HARNESS_LONG_NS), 0);
  ck_assert_rc(concur_semaphore_release(sem, 10), 0);
  pool_join(&p);
  ck_assert_uint_eq(atomic_load(&p.granted), 3);
  ck_assert_int_eq(concur_semaphore_value(sem), 7);
  concur_semaphore_free(sem);
}
END_TEST

/* ---- SEM-04: try-acquire and timed acquire
 * -------------------------------------- */

START_TEST(SEM_04_nowait_polls_and_times_out_at_once) {
  concur_semaphore *sem;
  ck_assert_rc(concur_semaphore_new(&sem, 1), 0);
  ck_assert_rc(concur_semaphore_acquire(sem, CONCUR_NOWAIT), 0);
  int64_t t0 = harness_now_ns();
  ck_assert_rc(concur_semaphore_acquire(sem, CONCUR_NOWAIT), CONCUR_ETIMEDOUT);
  /* A poll never parks: well under any scheduling quantum. */
  ck_assert_int_lt(harness_now_ns() - t0, 50000000 * harness_slack());
  ck_assert_uint_eq(concur__test_parked(sem), 0);
  concur_semaphore_free(sem);
}
END_TEST

START_TEST(SEM_04_timed_acquire_times_out_in_window) {
  concur_semaphore *sem;
  ck_assert_rc(concur_semaphore_new(&sem, 0), 0);
  const int64_t timeout = 500000000; /* 0.5 s, as in CPython */
  int64_t t0 = harness_now_ns();
  ck_assert_rc(concur_semaphore_acquire(sem, timeout), CONCUR_ETIMEDOUT);
  HARNESS_ASSERT_TIMED_OUT(harness_now_ns() - t0, timeout);
  ck_assert_int_eq(concur_semaphore_value(sem), 0);
  concur_semaphore_free(sem);
}
END_TEST

START_TEST(SEM_04_timed_acquire_succeeds_when_released) {
  concur_semaphore *sem;
  ck_assert_rc(concur_semaphore_new(&sem, 0), 0);
  pool p;
  pool_start(&p, sem, 2, 1, HARNESS_LONG_NS);
  ck_assert_rc(concur__test_await_parked(sem, 2, HARNESS_LONG_NS), 0);
  ck_assert_rc(concur_semaphore_release(sem, 2), 0);
  pool_join(&p);
  ck_assert_int_eq(p.rc[0], 0);
  ck_assert_int_eq(p.rc[1], 0);
  concur_semaphore_free(sem);
}
END_TEST

START_TEST(SEM_04_timed_out_waiter_leaves_permits_to_others) {
  /* One waiter times out while another waits untimed: the release after
   * the timeout must reach the untimed one (no swallowed wake-up). */
  concur_semaphore *sem;
  ck_assert_rc(concur_semaphore_new(&sem, 0), 0);
  pool untimed;
  pool_start(&untimed, sem, 1, 1, CONCUR_FOREVER);
  ck_assert_rc(concur__test_await_parked(sem, 1, HARNESS_LONG_NS), 0);
  const int64_t timeout = 50000000;
  int64_t t0 = harness_now_ns();
  ck_assert_rc(concur_semaphore_acquire(sem, timeout), CONCUR_ETIMEDOUT);
  HARNESS_ASSERT_TIMED_OUT(harness_now_ns() - t0, timeout);
  ck_assert_rc(concur_semaphore_release(sem, 1), 0);
  pool_join(&untimed);
  ck_assert_int_eq(untimed.rc[0], 0);
  ck_assert_int_eq(concur_semaphore_value(sem), 0);
  concur_semaphore_free(sem);
}
END_TEST

/* ---- SEM-05: BoundedSemaphore
 * ------------------------------------------------------ */

START_TEST(SEM_05_bounded_release_above_initial_is_eoverflow) {
  concur_semaphore *sem;
  ck_assert_rc(concur_semaphore_new_bounded(&sem, 3), 0);
  ck_assert_int_eq(concur_semaphore_value(sem), 3);
  ck_assert_rc(concur_semaphore_release(sem, 1), CONCUR_EOVERFLOW);
  ck_assert_int_eq(concur_semaphore_value(sem), 3);
  ck_assert_rc(concur_semaphore_acquire(sem, CONCUR_NOWAIT), 0);
  ck_assert_rc(concur_semaphore_acquire(sem, CONCUR_NOWAIT), 0);
  ck_assert_rc(concur_semaphore_release(sem, 3), CONCUR_EOVERFLOW);
  ck_assert_int_eq(concur_semaphore_value(sem), 1); /* nothing changed */
  ck_assert_rc(concur_semaphore_release(sem, 2), 0);
  ck_assert_int_eq(concur_semaphore_value(sem), 3);
  ck_assert_rc(concur_semaphore_release(sem, 1), CONCUR_EOVERFLOW);
  ck_assert_rc(concur_semaphore_release(sem, 0), CONCUR_EINVAL);
  concur_semaphore_free(sem);
  ck_assert_rc(concur_semaphore_new_bounded(&sem, 0), 0);
  ck_assert_rc(concur_semaphore_release(sem, 1), CONCUR_EOVERFLOW);
  ck_assert_rc(concur_semaphore_acquire(sem, CONCUR_NOWAIT), CONCUR_ETIMEDOUT);
  concur_semaphore_free(sem);
}
END_TEST

typedef struct bounded_job {
  concur_semaphore *sem;
  bool release;
  int rc;
} bounded_job;

static void *bounded_worker(void *arg) {
  bounded_job *j = arg;
  j->rc = j->release ? concur_semaphore_release(j->sem, 1)
                     : concur_semaphore_acquire(j->sem, HARNESS_LONG_NS);
  return NULL;
}

static void run_bounded_jobs(concur_semaphore *sem, int limit, bool release) {
  bounded_job jobs[9];
  pthread_t t[9];
  for (int i = 0; i < limit; i++) {
    jobs[i] = (bounded_job){sem, release, 1};
    ck_assert_rc(concur__thread_spawn(&t[i], 0, true, bounded_worker, &jobs[i]),
                 0);
  }
  for (int i = 0; i < limit; i++) {
    pthread_join(t[i], NULL);
  }
  for (int i = 0; i < limit; i++) {
    ck_assert_rc(jobs[i].rc, 0);
  }
}

START_TEST(SEM_05_bounded_limit_after_concurrent_use) {
  for (int limit = 1; limit <= 9; limit++) {
    concur_semaphore *sem;
    ck_assert_rc(concur_semaphore_new_bounded(&sem, limit), 0);
    run_bounded_jobs(sem, limit, false);
    ck_assert_int_eq(concur_semaphore_value(sem), 0);
    run_bounded_jobs(sem, limit, true);
    ck_assert_int_eq(concur_semaphore_value(sem), limit);
    ck_assert_rc(concur_semaphore_release(sem, 1), CONCUR_EOVERFLOW);
    ck_assert_int_eq(concur_semaphore_value(sem), limit);
    concur_semaphore_free(sem);
  }
}
END_TEST

/* ---- SEM-06: no permit lost or duplicated (short; the stress sibling is long)
 * - */

typedef struct churn {
  concur_semaphore *sem;
  int32_t value;
  long rounds;
  _Atomic int in_use;
  _Atomic int violations;
  _Atomic int failures;
} churn;

static void *churner(void *arg) {
  churn *c = arg;
  for (long i = 0; i < c->rounds; i++) {
    if (concur_semaphore_acquire(c->sem, CONCUR_FOREVER) != 0) {
      atomic_fetch_add(&c->failures, 1);
      continue;
    }
    int now = atomic_fetch_add(&c->in_use, 1) + 1;
    if (now > c->value) {
      atomic_fetch_add(&c->violations, 1);
    }
    atomic_fetch_sub(&c->in_use, 1);
    if (concur_semaphore_release(c->sem, 1) != 0) {
      atomic_fetch_add(&c->failures, 1);
    }
  }
  return NULL;
}

START_TEST(SEM_06_no_permit_lost_or_duplicated) {
  churn c = {.value = 3, .rounds = 20000 * harness_scale()};
  ck_assert_rc(concur_semaphore_new_bounded(&c.sem, c.value), 0);
  pthread_t t[8];
  for (int i = 0; i < 8; i++) {
    ck_assert_rc(concur__thread_spawn(&t[i], 0, true, churner, &c), 0);
  }
  for (int i = 0; i < 8; i++) {
    pthread_join(t[i], NULL);
  }
  ck_assert_int_eq(atomic_load(&c.violations), 0);
  ck_assert_int_eq(atomic_load(&c.failures), 0);
  ck_assert_int_eq(concur_semaphore_value(c.sem), c.value);
  concur_semaphore_free(c.sem);
}
END_TEST

/* ---- SEM-06: a newcomer parking while the last waiter leaves
 * ------------------ */

/* The library's test seam in semaphore.c (CONCUR_TESTING builds). */
extern void (*concur__semaphore_leave_hook)(concur_semaphore *sem);

static concur_event *leaver_in_window;
static concur_event *leaver_may_go;

static void hold_leaver(concur_semaphore *sem) {
  (void)sem;
  concur__semaphore_leave_hook = NULL; /* only this leaver stops */
  (void)concur_event_set(leaver_in_window);
  int rc = concur_event_wait(leaver_may_go, CONCUR_FOREVER);
  (void)rc;
}

typedef struct one_acquire {
  concur_semaphore *sem;
  int64_t timeout_ns;
  int rc;
} one_acquire;

static void *acquire_once(void *arg) {
  one_acquire *a = arg;
  a->rc = concur_semaphore_acquire(a->sem, a->timeout_ns);
  return NULL;
}

START_TEST(SEM_06_newcomer_parking_as_the_last_waiter_leaves_is_woken) {
  /* The last registered waiter (timing out) has deregistered but not yet
   * cleared WAITERS when a newcomer sees the flag and parks. Clearing it
   * would leave the newcomer asleep through every later release, unless
   * the leaver wakes it to re-flag the word. */
  concur_semaphore *sem;
  ck_assert_rc(concur_semaphore_new(&sem, 0), 0);
  ck_assert_rc(concur_event_new(&leaver_in_window), 0);
  ck_assert_rc(concur_event_new(&leaver_may_go), 0);
  concur__semaphore_leave_hook = hold_leaver;
  one_acquire leaver = {sem, 20000000, 1};
  one_acquire newcomer = {sem, CONCUR_FOREVER, 1};
  pthread_t tl;
  pthread_t tn;
  ck_assert_rc(concur__thread_spawn(&tl, 0, true, acquire_once, &leaver), 0);
  ck_assert_rc(concur_event_wait(leaver_in_window, HARNESS_LONG_NS), 0);
  ck_assert_rc(concur__thread_spawn(&tn, 0, true, acquire_once, &newcomer), 0);
  ck_assert_rc(concur__test_await_parked(sem, 1, HARNESS_LONG_NS), 0);
  ck_assert_rc(concur_event_set(leaver_may_go), 0);
  pthread_join(tl, NULL);
  ck_assert_rc(leaver.rc, CONCUR_ETIMEDOUT);
  ck_assert_rc(concur_semaphore_release(sem, 1), 0);
  pthread_join(tn, NULL); /* hangs (case timeout) if the wake-up was lost */
  ck_assert_rc(newcomer.rc, 0);
  ck_assert_int_eq(concur_semaphore_value(sem), 0);
  concur_semaphore_free(sem);
  concur_event_free(leaver_in_window);
  concur_event_free(leaver_may_go);
}
END_TEST

/* ---- SEM-07: a signal storm (EINTR) neither fails nor shortens a wait
 * --------- */

static _Atomic long signals_seen;

static void count_signal(int sig) {
  (void)sig;
  atomic_fetch_add_explicit(&signals_seen, 1, memory_order_relaxed);
}

typedef struct storm {
  pthread_t target;
  concur_semaphore *sem;
  _Atomic int stop;
  _Atomic int release_after_parked; /* phase 2: release once it suffered */
  int release_rc;
  long sent;
} storm;

static void *signal_storm(void *arg) {
  storm *s = arg;
  const struct timespec ms = {0, 1000000}; /* pacing at ~1 kHz */
  long sent_while_parked = 0;
  s->release_rc = 1;
  while (!atomic_load(&s->stop)) {
    pthread_kill(s->target, SIGUSR1);
    s->sent++;
    if (atomic_load(&s->release_after_parked) &&
        concur__test_parked(s->sem) >= 1 && ++sent_while_parked == 50) {
      s->release_rc = concur_semaphore_release(s->sem, 1);
    }
    nanosleep(&ms, NULL);
  }
  return NULL;
}

START_TEST(SEM_07_signal_storm_neither_fails_nor_shortens_waits) {
  struct sigaction sa;
  struct sigaction old_sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = count_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = 0; /* no SA_RESTART: the futex wait really sees EINTR */
  ck_assert_int_eq(sigaction(SIGUSR1, &sa, &old_sa), 0);
  sigset_t usr1;
  sigset_t old_mask;
  sigemptyset(&usr1);
  sigaddset(&usr1, SIGUSR1);
  ck_assert_int_eq(pthread_sigmask(SIG_UNBLOCK, &usr1, &old_mask), 0);

  storm s = {.target = pthread_self()};
  ck_assert_rc(concur_semaphore_new(&s.sem, 0), 0);
  pthread_t sender;
  /* The sender blocks every signal: only this thread receives them. */
  ck_assert_rc(concur__thread_spawn(&sender, 0, true, signal_storm, &s), 0);

  const int64_t timeout = 200000000;
  long before = atomic_load(&signals_seen);
  int64_t t0 = harness_now_ns();
  int timed_rc = concur_semaphore_acquire(s.sem, timeout);
  int64_t elapsed = harness_now_ns() - t0;
  long during_timed = atomic_load(&signals_seen) - before;

  atomic_store(&s.release_after_parked, 1);
  before = atomic_load(&signals_seen);
  int untimed_rc = concur_semaphore_acquire(s.sem, CONCUR_FOREVER);
  long during_untimed = atomic_load(&signals_seen) - before;

  atomic_store(&s.stop, 1);
  pthread_join(sender, NULL);
  ck_assert_int_eq(pthread_sigmask(SIG_SETMASK, &old_mask, NULL), 0);
  ck_assert_int_eq(sigaction(SIGUSR1, &old_sa, NULL), 0);

  ck_assert_rc(timed_rc, CONCUR_ETIMEDOUT);
  HARNESS_ASSERT_TIMED_OUT(elapsed, timeout);
  ck_assert_rc(untimed_rc, 0);
  ck_assert_rc(s.release_rc, 0);
  /* The storm really hit both waits (loose: pacing is best effort). */
  ck_assert_int_ge(during_timed, 10);
  ck_assert_int_ge(during_untimed, 10);
  ck_assert_int_eq(concur_semaphore_value(s.sem), 0);
  concur_semaphore_free(s.sem);
}
END_TEST

/* ---- happens-before and lifetime
 * ------------------------------------------------------ */

typedef struct handoff {
  concur_semaphore *sem;
  long payload; /* plain: TSan checks the release/acquire edge */
} handoff;

static void *produce(void *arg) {
  handoff *h = arg;
  h->payload = 42;
  (void)concur_semaphore_release(h->sem, 1);
  return NULL;
}

START_TEST(sem_release_happens_before_acquire) {
  handoff h = {NULL, 0};
  ck_assert_rc(concur_semaphore_new(&h.sem, 0), 0);
  pthread_t t;
  ck_assert_rc(concur__thread_spawn(&t, 0, true, produce, &h), 0);
  ck_assert_rc(concur_semaphore_acquire(h.sem, CONCUR_FOREVER), 0);
  ck_assert_int_eq(h.payload, 42);
  pthread_join(t, NULL);
  concur_semaphore_free(h.sem);
}
END_TEST

static void *release_only(void *arg) {
  (void)concur_semaphore_release(arg, 1);
  return NULL;
}

START_TEST(sem_acquirer_may_free_while_releaser_returns) {
  /* The completion-signal pattern: free right after acquire, before the
   * releaser has returned. ASan catches a release that touches the
   * semaphore after publishing its permit. */
  for (int i = 0; i < 200; i++) {
    concur_semaphore *sem;
    ck_assert_rc(concur_semaphore_new(&sem, 0), 0);
    pthread_t t;
    ck_assert_rc(concur__thread_spawn(&t, 0, true, release_only, sem), 0);
    ck_assert_rc(concur_semaphore_acquire(sem, CONCUR_FOREVER), 0);
    concur_semaphore_free(sem);
    pthread_join(t, NULL);
  }
}
END_TEST

static void *acquire_forever(void *arg) {
  int rc = concur_semaphore_acquire(arg, CONCUR_FOREVER);
  (void)rc; /* never returns: the case aborts first */
  return NULL;
}

START_TEST(sem_free_with_a_blocked_thread_aborts) {
  concur_semaphore *sem;
  ck_assert_rc(concur_semaphore_new(&sem, 0), 0);
  pthread_t t;
  ck_assert_rc(concur__thread_spawn(&t, 0, true, acquire_forever, sem), 0);
  ck_assert_rc(concur__test_await_parked(sem, 1, HARNESS_LONG_NS), 0);
  concur_semaphore_free(sem); /* aborts: the case expects SIGABRT */
}
END_TEST

Suite *concur_test_suite(void) {
  Suite *s = suite_create("semaphore");
  TCase *tc = harness_tcase("semaphore", 30);
  tcase_add_test(tc, SEM_01_negative_initial_value_is_einval);
  tcase_add_test(tc, SEM_01_python_default_value_one_and_zero);
  tcase_add_test(tc, SEM_01_plain_semaphore_releases_above_initial);
  tcase_add_test(tc, sem_null_handles_are_einval);
  tcase_add_test(tc, sem_negative_timeout_is_einval);
  tcase_add_test(tc, sem_release_below_one_is_einval);
  tcase_add_test(tc, sem_unbounded_release_past_int32_max_is_eoverflow);
  tcase_add_test(tc, SEM_02_contended_grants_exactly_the_released_permits);
  tcase_add_test(tc, SEM_03_release_n_wakes_n_waiters);
  tcase_add_test(tc, SEM_03_release_more_than_waiters_keeps_the_rest);
  tcase_add_test(tc, SEM_04_nowait_polls_and_times_out_at_once);
  tcase_add_test(tc, SEM_04_timed_acquire_times_out_in_window);
  tcase_add_test(tc, SEM_04_timed_acquire_succeeds_when_released);
  tcase_add_test(tc, SEM_04_timed_out_waiter_leaves_permits_to_others);
  tcase_add_test(tc, SEM_05_bounded_release_above_initial_is_eoverflow);
  tcase_add_test(tc, SEM_05_bounded_limit_after_concurrent_use);
  tcase_add_test(tc, SEM_06_no_permit_lost_or_duplicated);
  tcase_add_test(tc,
                 SEM_06_newcomer_parking_as_the_last_waiter_leaves_is_woken);
  tcase_add_test(tc, SEM_07_signal_storm_neither_fails_nor_shortens_waits);
  tcase_add_test(tc, sem_release_happens_before_acquire);
  tcase_add_test(tc, sem_acquirer_may_free_while_releaser_returns);
  suite_add_tcase(s, tc);
  /* Aborting cases leave their blocked thread behind: no leak fixture. */
  TCase *abort_tc = tcase_create("semaphore_misuse");
  tcase_set_timeout(abort_tc, 30);
  tcase_add_test_raise_signal(abort_tc, sem_free_with_a_blocked_thread_aborts,
                              SIGABRT);
  suite_add_tcase(s, abort_tc);
  return s;
}
