/*
 * concur_wait and as_completed (WAI-01..07). WAI-08 and later (map, invoke)
 * belong to the executor layer and are tested there.
 *
 * Futures in every state are built directly, so most cases need no second
 * thread; the blocking ones wait until the waiter is parked (key: the
 * futures array for concur_wait, the iterator for as_completed) before
 * completing anything.
 */
#include "harness.h"

#include "concur/future.h"

#include <pthread.h>
#include <stdlib.h>

/* ---- helpers ---------------------------------------------------------------
 */

/* For results a case deliberately does not check (the compiler insists). */
static void ignore_rc(int rc) {
  (void)rc;
}

static int dummy_value;
#define VALUE ((void *)&dummy_value)

static concur_future *make_pending(void) {
  concur_future *f = NULL;
  ck_assert_rc(concur_future_new(&f), 0);
  return f;
}

static concur_future *make_running(void) {
  concur_future *f = make_pending();
  ck_assert_int_eq(concur_future_set_running_or_notify_cancel(f), 1);
  return f;
}

static concur_future *make_cancelled(void) {
  concur_future *f = make_pending();
  ck_assert(concur_future_cancel(f));
  return f;
}

static concur_future *make_failed(void) {
  concur_future *f = make_running();
  ck_assert_rc(concur_future_set_exception(f, 1, "failed"), 0);
  return f;
}

static concur_future *make_succeeded(void) {
  concur_future *f = make_running();
  ck_assert_rc(concur_future_set_result(f, VALUE), 0);
  return f;
}

static void unref_all(concur_future **fs, size_t n) {
  for (size_t i = 0; i < n; i++) {
    concur_future_unref(fs[i]);
  }
}

static pthread_t spawn(void *(*fn)(void *), void *arg) {
  pthread_t t;
  ck_assert_int_eq(pthread_create(&t, NULL, fn, arg), 0);
  return t;
}

static void join(pthread_t t) {
  ck_assert_int_eq(pthread_join(t, NULL), 0);
}

static bool contains(concur_future *const *set, size_t n, concur_future *f) {
  for (size_t i = 0; i < n; i++) {
    if (set[i] == f) {
      return true;
    }
  }
  return false;
}

enum { MAXF = 128 };

/* A concur_wait call in its own thread, with everything it reported. */
typedef struct wait_call {
  concur_future *const *fs;
  size_t n;
  int64_t timeout_ns;
  concur_wait_mode mode;
  int rc;
  concur_future *done[MAXF];
  concur_future *not_done[MAXF];
  size_t n_done, n_not_done;
} wait_call;

static int do_wait(wait_call *w) {
  w->rc = concur_wait(w->fs, w->n, w->timeout_ns, w->mode, w->done, &w->n_done,
                      w->not_done, &w->n_not_done);
  return w->rc;
}

static void *wait_main(void *arg) {
  (void)do_wait(arg);
  return NULL;
}

/* ---- WAI-01 FIRST_COMPLETED
 * -------------------------------------------------- */

START_TEST(WAI_01_first_completed_returns_done_inputs_at_once) {
  concur_future *fs[] = {make_pending(), make_succeeded(), make_running(),
                         make_cancelled()};
  wait_call w = {.fs = fs,
                 .n = 4,
                 .timeout_ns = CONCUR_FOREVER,
                 .mode = CONCUR_FIRST_COMPLETED};
  ck_assert_rc(do_wait(&w), 0);
  ck_assert_uint_eq(w.n_done, 2);
  ck_assert_ptr_eq(w.done[0], fs[1]); /* input order */
  ck_assert_ptr_eq(w.done[1], fs[3]);
  ck_assert_uint_eq(w.n_not_done, 2);
  ck_assert_ptr_eq(w.not_done[0], fs[0]);
  ck_assert_ptr_eq(w.not_done[1], fs[2]);
  unref_all(fs, 4);
}
END_TEST

START_TEST(WAI_01_first_completed_returns_the_first_finisher) {
  concur_future *fs[] = {make_pending(), make_running(), make_pending()};
  wait_call w = {.fs = fs,
                 .n = 3,
                 .timeout_ns = CONCUR_FOREVER,
                 .mode = CONCUR_FIRST_COMPLETED};
  pthread_t t = spawn(wait_main, &w);
  ck_assert_rc(concur__test_await_parked(fs, 1, HARNESS_LONG_NS), 0);
  ck_assert_rc(concur_future_set_result(fs[1], VALUE), 0);
  join(t);
  ck_assert_rc(w.rc, 0);
  ck_assert_uint_eq(w.n_done, 1);
  ck_assert_ptr_eq(w.done[0], fs[1]);
  ck_assert_uint_eq(w.n_not_done, 2);
  unref_all(fs, 3);
}
END_TEST

START_TEST(WAI_01_a_cancel_counts_as_completion) {
  concur_future *fs[] = {make_pending(), make_pending()};
  wait_call w = {.fs = fs,
                 .n = 2,
                 .timeout_ns = CONCUR_FOREVER,
                 .mode = CONCUR_FIRST_COMPLETED};
  pthread_t t = spawn(wait_main, &w);
  ck_assert_rc(concur__test_await_parked(fs, 1, HARNESS_LONG_NS), 0);
  ck_assert(concur_future_cancel(fs[0]));
  join(t);
  ck_assert_rc(w.rc, 0);
  ck_assert_uint_eq(w.n_done, 1);
  ck_assert_ptr_eq(w.done[0], fs[0]);
  unref_all(fs, 2);
}
END_TEST

/* ---- WAI-02 FIRST_EXCEPTION
 * ------------------------------------------------------ */

START_TEST(WAI_02_first_exception_returns_at_the_first_failure) {
  concur_future *fs[] = {make_running(), make_running(), make_pending()};
  wait_call w = {.fs = fs,
                 .n = 3,
                 .timeout_ns = CONCUR_FOREVER,
                 .mode = CONCUR_FIRST_EXCEPTION};
  pthread_t t = spawn(wait_main, &w);
  ck_assert_rc(concur__test_await_parked(fs, 1, HARNESS_LONG_NS), 0);
  /* A success and a cancel do not end it... */
  ck_assert_rc(concur_future_set_result(fs[0], VALUE), 0);
  ck_assert_rc(concur_wait(fs, 3, CONCUR_NOWAIT, CONCUR_FIRST_EXCEPTION, NULL,
                           NULL, NULL, NULL),
               CONCUR_ETIMEDOUT);
  ck_assert_rc(concur__test_await_parked(fs, 1, HARNESS_LONG_NS), 0);
  ck_assert(concur_future_running(fs[1]));
  /* ...a failure does. */
  ck_assert_rc(concur_future_set_exception(fs[1], 3, NULL), 0);
  join(t);
  ck_assert_rc(w.rc, 0);
  ck_assert_uint_eq(w.n_done, 2);
  ck_assert(contains(w.done, w.n_done, fs[0]));
  ck_assert(contains(w.done, w.n_done, fs[1]));
  ck_assert_uint_eq(w.n_not_done, 1);
  ck_assert_ptr_eq(w.not_done[0], fs[2]);
  unref_all(fs, 3);
}
END_TEST

START_TEST(WAI_02_cancelled_is_not_a_failure) {
  concur_future *fs[] = {make_cancelled(), make_succeeded(), make_pending()};
  const int64_t timeout = 50000000;
  wait_call w = {
      .fs = fs, .n = 3, .timeout_ns = timeout, .mode = CONCUR_FIRST_EXCEPTION};
  int64_t t0 = harness_now_ns();
  ck_assert_rc(do_wait(&w), CONCUR_ETIMEDOUT);
  HARNESS_ASSERT_TIMED_OUT(harness_now_ns() - t0, timeout);
  ck_assert_uint_eq(w.n_done, 2);
  ck_assert_uint_eq(w.n_not_done, 1);
  unref_all(fs, 3);
}
END_TEST

START_TEST(WAI_02_one_already_failed_returns_at_once) {
  concur_future *fs[] = {make_pending(), make_failed(), make_running()};
  wait_call w = {.fs = fs,
                 .n = 3,
                 .timeout_ns = CONCUR_FOREVER,
                 .mode = CONCUR_FIRST_EXCEPTION};
  ck_assert_rc(do_wait(&w), 0);
  ck_assert_uint_eq(w.n_done, 1);
  ck_assert_ptr_eq(w.done[0], fs[1]);
  unref_all(fs, 3);
}
END_TEST

START_TEST(WAI_02_all_done_without_failure_returns) {
  concur_future *fs[] = {make_succeeded(), make_cancelled(), make_pending()};
  wait_call w = {.fs = fs,
                 .n = 3,
                 .timeout_ns = CONCUR_FOREVER,
                 .mode = CONCUR_FIRST_EXCEPTION};
  pthread_t t = spawn(wait_main, &w);
  ck_assert_rc(concur__test_await_parked(fs, 1, HARNESS_LONG_NS), 0);
  ck_assert_rc(concur_future_set_result(fs[2], VALUE), 0);
  join(t);
  ck_assert_rc(w.rc, 0);
  ck_assert_uint_eq(w.n_done, 3);
  ck_assert_uint_eq(w.n_not_done, 0);
  unref_all(fs, 3);
}
END_TEST

/* ---- WAI-03 ALL_COMPLETED
 * ---------------------------------------------------------- */

START_TEST(WAI_03_all_completed_over_mixed_done_states) {
  concur_future *fs[] = {make_succeeded(), make_failed(), make_cancelled()};
  wait_call w = {.fs = fs,
                 .n = 3,
                 .timeout_ns = CONCUR_NOWAIT,
                 .mode = CONCUR_ALL_COMPLETED};
  ck_assert_rc(do_wait(&w), 0);
  ck_assert_uint_eq(w.n_done, 3);
  ck_assert_uint_eq(w.n_not_done, 0);
  for (int i = 0; i < 3; i++) {
    ck_assert_ptr_eq(w.done[i], fs[i]);
  }
  unref_all(fs, 3);
}
END_TEST

START_TEST(WAI_03_timeout_reports_the_partial_split) {
  concur_future *fs[] = {make_succeeded(), make_running(), make_pending(),
                         make_failed(), make_cancelled()};
  const int64_t timeout = 50000000;
  wait_call w = {
      .fs = fs, .n = 5, .timeout_ns = timeout, .mode = CONCUR_ALL_COMPLETED};
  int64_t t0 = harness_now_ns();
  ck_assert_rc(do_wait(&w), CONCUR_ETIMEDOUT);
  HARNESS_ASSERT_TIMED_OUT(harness_now_ns() - t0, timeout);
  ck_assert_uint_eq(w.n_done, 3);
  ck_assert_ptr_eq(w.done[0], fs[0]);
  ck_assert_ptr_eq(w.done[1], fs[3]);
  ck_assert_ptr_eq(w.done[2], fs[4]);
  ck_assert_uint_eq(w.n_not_done, 2);
  ck_assert_ptr_eq(w.not_done[0], fs[1]);
  ck_assert_ptr_eq(w.not_done[1], fs[2]);
  /* A poll gives the same split at once. */
  w.timeout_ns = CONCUR_NOWAIT;
  ck_assert_rc(do_wait(&w), CONCUR_ETIMEDOUT);
  ck_assert_uint_eq(w.n_done, 3);
  unref_all(fs, 5);
}
END_TEST

START_TEST(WAI_03_all_completed_blocks_until_the_last) {
  concur_future *fs[] = {make_pending(), make_running(), make_pending()};
  wait_call w = {.fs = fs,
                 .n = 3,
                 .timeout_ns = CONCUR_FOREVER,
                 .mode = CONCUR_ALL_COMPLETED};
  pthread_t t = spawn(wait_main, &w);
  ck_assert_rc(concur__test_await_parked(fs, 1, HARNESS_LONG_NS), 0);
  ck_assert_rc(concur_future_set_result(fs[1], VALUE), 0);
  ck_assert(concur_future_cancel(fs[0]));
  ck_assert_rc(concur_wait(fs, 3, CONCUR_NOWAIT, CONCUR_ALL_COMPLETED, NULL,
                           NULL, NULL, NULL),
               CONCUR_ETIMEDOUT);
  ck_assert_rc(concur__test_await_parked(fs, 1, HARNESS_LONG_NS), 0);
  ck_assert_rc(concur_future_set_exception(fs[2], 2, NULL), 0);
  join(t);
  ck_assert_rc(w.rc, 0);
  ck_assert_uint_eq(w.n_done, 3);
  unref_all(fs, 3);
}
END_TEST

START_TEST(WAI_03_many_futures_take_the_allocated_path) {
  enum { N = 40 };
  concur_future *fs[N];
  for (int i = 0; i < N; i++) {
    fs[i] = i % 3 == 0 ? make_succeeded() : make_pending();
  }
  wait_call w = {.fs = fs,
                 .n = N,
                 .timeout_ns = CONCUR_FOREVER,
                 .mode = CONCUR_ALL_COMPLETED};
  pthread_t t = spawn(wait_main, &w);
  ck_assert_rc(concur__test_await_parked(fs, 1, HARNESS_LONG_NS), 0);
  for (int i = N - 1; i >= 0; i--) {
    if (!concur_future_done(fs[i])) {
      ck_assert_rc(concur_future_set_result(fs[i], VALUE), 0);
    }
  }
  join(t);
  ck_assert_rc(w.rc, 0);
  ck_assert_uint_eq(w.n_done, N);
  for (int i = 0; i < N; i++) {
    ck_assert_ptr_eq(w.done[i], fs[i]);
  }
  unref_all(fs, N);
}
END_TEST

/* ---- WAI-04 duplicates
 * ------------------------------------------------------------- */

START_TEST(WAI_04_wait_reports_duplicates_once) {
  concur_future *a = make_succeeded();
  concur_future *b = make_pending();
  concur_future *fs[] = {a, b, a, a, b};
  wait_call w = {.fs = fs,
                 .n = 5,
                 .timeout_ns = CONCUR_NOWAIT,
                 .mode = CONCUR_ALL_COMPLETED};
  ck_assert_rc(do_wait(&w), CONCUR_ETIMEDOUT);
  ck_assert_uint_eq(w.n_done, 1);
  ck_assert_ptr_eq(w.done[0], a);
  ck_assert_uint_eq(w.n_not_done, 1);
  ck_assert_ptr_eq(w.not_done[0], b);
  /* Blocking on duplicates: one completion satisfies every copy. */
  w.timeout_ns = CONCUR_FOREVER;
  pthread_t t = spawn(wait_main, &w);
  ck_assert_rc(concur__test_await_parked(fs, 1, HARNESS_LONG_NS), 0);
  ck_assert_rc(concur_future_set_result(b, VALUE), 0);
  join(t);
  ck_assert_rc(w.rc, 0);
  ck_assert_uint_eq(w.n_done, 2);
  ck_assert_uint_eq(w.n_not_done, 0);
  concur_future_unref(a);
  concur_future_unref(b);
}
END_TEST

START_TEST(WAI_04_duplicates_counted_once_in_large_inputs) {
  enum { DISTINCT = 5, N = 23 };
  concur_future *d[DISTINCT];
  for (int i = 0; i < DISTINCT; i++) {
    d[i] = i < 2 ? make_succeeded() : make_pending();
  }
  concur_future *fs[N];
  const int pattern[N] = {3, 1, 3, 0, 4, 4, 1, 2, 0, 3, 2, 2,
                          4, 0, 1, 3, 3, 2, 1, 0, 4, 4, 4};
  for (int i = 0; i < N; i++) {
    fs[i] = d[pattern[i]];
  }
  wait_call w = {.fs = fs,
                 .n = N,
                 .timeout_ns = CONCUR_NOWAIT,
                 .mode = CONCUR_ALL_COMPLETED};
  ck_assert_rc(do_wait(&w), CONCUR_ETIMEDOUT);
  ck_assert_uint_eq(w.n_done, 2);
  ck_assert_ptr_eq(w.done[0], d[1]); /* first appearances, input order */
  ck_assert_ptr_eq(w.done[1], d[0]);
  ck_assert_uint_eq(w.n_not_done, 3);
  ck_assert_ptr_eq(w.not_done[0], d[3]);
  ck_assert_ptr_eq(w.not_done[1], d[4]);
  ck_assert_ptr_eq(w.not_done[2], d[2]);

  concur_as_completed *it = NULL;
  ck_assert_rc(concur_as_completed_new(&it, fs, N, CONCUR_NOWAIT), 0);
  ck_assert_uint_eq(concur_as_completed_total(it), DISTINCT);
  for (int i = 2; i < DISTINCT; i++) {
    ck_assert_rc(concur_future_set_result(d[i], VALUE), 0);
  }
  int seen[DISTINCT] = {0};
  concur_future *f;
  int rc;
  while ((rc = concur_as_completed_next(it, &f)) == 1) {
    for (int i = 0; i < DISTINCT; i++) {
      seen[i] += f == d[i];
    }
    concur_future_unref(f);
  }
  ck_assert_rc(rc, 0);
  for (int i = 0; i < DISTINCT; i++) {
    ck_assert_int_eq(seen[i], 1);
  }
  concur_as_completed_free(it);
  unref_all(d, DISTINCT);
}
END_TEST

START_TEST(WAI_04_as_completed_yields_a_duplicate_once) {
  concur_future *a = make_pending();
  concur_future *b = make_succeeded();
  concur_future *fs[] = {a, a, b, a};
  concur_as_completed *it = NULL;
  ck_assert_rc(concur_as_completed_new(&it, fs, 4, CONCUR_FOREVER), 0);
  ck_assert_uint_eq(concur_as_completed_total(it), 2);
  concur_future *f = NULL;
  ck_assert_int_eq(concur_as_completed_next(it, &f), 1);
  ck_assert_ptr_eq(f, b);
  concur_future_unref(f);
  ck_assert_rc(concur_future_set_result(a, VALUE), 0);
  ck_assert_int_eq(concur_as_completed_next(it, &f), 1);
  ck_assert_ptr_eq(f, a);
  concur_future_unref(f);
  ck_assert_int_eq(concur_as_completed_next(it, &f), 0);
  ck_assert_ptr_null(f);
  concur_as_completed_free(it);
  concur_future_unref(a);
  concur_future_unref(b);
}
END_TEST

/* ---- WAI-05 many futures finishing together
 * ------------------------------------------ */

enum { RACE_N = 100, RACE_COMPLETERS = 4 };

typedef struct completer {
  concur_future **fs;
  int first, step;
  _Atomic int *go;
} completer;

static void *complete_slice(void *arg) {
  completer *c = arg;
  while (atomic_load(c->go) == 0) {
    concur__cpu_relax();
  }
  for (int i = c->first; i < RACE_N; i += c->step) {
    ignore_rc(concur_future_set_result(c->fs[i], VALUE));
  }
  return NULL;
}

START_TEST(WAI_05_hundred_futures_finishing_together_wake_the_waiter) {
  for (int round = 0; round < 20; round++) {
    concur_future *fs[RACE_N];
    for (int i = 0; i < RACE_N; i++) {
      fs[i] = make_running();
    }
    wait_call w = {.fs = fs,
                   .n = RACE_N,
                   .timeout_ns = CONCUR_FOREVER,
                   .mode = CONCUR_ALL_COMPLETED};
    pthread_t wt = spawn(wait_main, &w);
    ck_assert_rc(concur__test_await_parked(fs, 1, HARNESS_LONG_NS), 0);
    _Atomic int go = 0;
    completer c[RACE_COMPLETERS];
    pthread_t ct[RACE_COMPLETERS];
    for (int i = 0; i < RACE_COMPLETERS; i++) {
      c[i] = (completer){fs, i, RACE_COMPLETERS, &go};
      ct[i] = spawn(complete_slice, &c[i]);
    }
    atomic_store(&go, 1);
    for (int i = 0; i < RACE_COMPLETERS; i++) {
      join(ct[i]);
    }
    join(wt);
    ck_assert_rc(w.rc, 0);
    ck_assert_uint_eq(w.n_done, RACE_N);
    unref_all(fs, RACE_N);
  }
}
END_TEST

/* ---- WAI-06 as_completed
 * -------------------------------------------------------------- */

START_TEST(WAI_06_as_completed_yields_each_once_finished_first) {
  concur_future *fs[] = {make_pending(), make_succeeded(), make_cancelled(),
                         make_running(), make_failed()};
  concur_as_completed *it = NULL;
  ck_assert_rc(concur_as_completed_new(&it, fs, 5, CONCUR_FOREVER), 0);
  ck_assert_uint_eq(concur_as_completed_total(it), 5);
  ck_assert_uint_eq(concur_as_completed_remaining(it), 5);
  concur_future *f = NULL;
  /* The ones already done, in input order, cancelled included. */
  ck_assert_int_eq(concur_as_completed_next(it, &f), 1);
  ck_assert_ptr_eq(f, fs[1]);
  concur_future_unref(f);
  ck_assert_int_eq(concur_as_completed_next(it, &f), 1);
  ck_assert_ptr_eq(f, fs[2]);
  concur_future_unref(f);
  ck_assert_int_eq(concur_as_completed_next(it, &f), 1);
  ck_assert_ptr_eq(f, fs[4]);
  concur_future_unref(f);
  ck_assert_uint_eq(concur_as_completed_remaining(it), 2);
  /* Then in completion order. */
  ck_assert_rc(concur_future_set_result(fs[3], VALUE), 0);
  ck_assert(concur_future_cancel(fs[0]));
  ck_assert_int_eq(concur_as_completed_next(it, &f), 1);
  ck_assert_ptr_eq(f, fs[3]);
  concur_future_unref(f);
  ck_assert_int_eq(concur_as_completed_next(it, &f), 1);
  ck_assert_ptr_eq(f, fs[0]);
  concur_future_unref(f);
  ck_assert_int_eq(concur_as_completed_next(it, &f), 0);
  ck_assert_int_eq(concur_as_completed_next(it, &f), 0);
  ck_assert_uint_eq(concur_as_completed_remaining(it), 0);
  concur_as_completed_free(it);
  unref_all(fs, 5);
}
END_TEST

typedef struct consumer {
  concur_as_completed *it;
  concur_future *got[MAXF];
  int n;
  int rc;
} consumer;

static void *consume_main(void *arg) {
  consumer *c = arg;
  concur_future *f;
  while ((c->rc = concur_as_completed_next(c->it, &f)) == 1) {
    c->got[c->n++] = f;
    concur_future_unref(f);
  }
  return NULL;
}

START_TEST(WAI_06_as_completed_blocks_until_each_completes) {
  concur_future *fs[] = {make_pending(), make_running(), make_pending()};
  consumer c = {0};
  ck_assert_rc(concur_as_completed_new(&c.it, fs, 3, CONCUR_FOREVER), 0);
  pthread_t t = spawn(consume_main, &c);
  ck_assert_rc(concur__test_await_parked(c.it, 1, HARNESS_LONG_NS), 0);
  ck_assert_rc(concur_future_set_result(fs[1], VALUE), 0);
  ck_assert_rc(concur_future_set_exception(fs[2], 1, NULL), 0);
  ck_assert(concur_future_cancel(fs[0]));
  join(t);
  ck_assert_rc(c.rc, 0);
  ck_assert_int_eq(c.n, 3);
  for (int i = 0; i < 3; i++) {
    ck_assert(contains(c.got, 3, fs[i]));
  }
  concur_as_completed_free(c.it);
  unref_all(fs, 3);
}
END_TEST

START_TEST(WAI_06_as_completed_timeout_zero_reports_unfinished) {
  concur_future *fs[] = {make_pending(), make_succeeded(), make_running()};
  concur_as_completed *it = NULL;
  ck_assert_rc(concur_as_completed_new(&it, fs, 3, CONCUR_NOWAIT), 0);
  concur_future *f = NULL;
  ck_assert_int_eq(concur_as_completed_next(it, &f), 1);
  ck_assert_ptr_eq(f, fs[1]);
  concur_future_unref(f);
  ck_assert_rc(concur_as_completed_next(it, &f), CONCUR_ETIMEDOUT);
  ck_assert_ptr_null(f);
  /* "2 (of 3) futures unfinished" */
  ck_assert_uint_eq(concur_as_completed_remaining(it), 2);
  ck_assert_uint_eq(concur_as_completed_total(it), 3);
  /* A later call still hands out what completed since. */
  ck_assert_rc(concur_future_set_result(fs[2], VALUE), 0);
  ck_assert_int_eq(concur_as_completed_next(it, &f), 1);
  ck_assert_ptr_eq(f, fs[2]);
  concur_future_unref(f);
  ck_assert_rc(concur_as_completed_next(it, &f), CONCUR_ETIMEDOUT);
  ck_assert_uint_eq(concur_as_completed_remaining(it), 1);
  concur_as_completed_free(it); /* drops its reference to fs[0] */
  unref_all(fs, 3);
}
END_TEST

START_TEST(WAI_06_as_completed_timeout_counts_from_creation) {
  concur_future *fs[] = {make_pending(), make_pending()};
  const int64_t timeout = 50000000;
  int64_t t0 = harness_now_ns();
  concur_as_completed *it = NULL;
  ck_assert_rc(concur_as_completed_new(&it, fs, 2, timeout), 0);
  concur_future *f = NULL;
  ck_assert_rc(concur_as_completed_next(it, &f), CONCUR_ETIMEDOUT);
  HARNESS_ASSERT_TIMED_OUT(harness_now_ns() - t0, timeout);
  /* The deadline has passed: a second call does not wait again. */
  int64_t t1 = harness_now_ns();
  ck_assert_rc(concur_as_completed_next(it, &f), CONCUR_ETIMEDOUT);
  ck_assert_int_lt(harness_now_ns() - t1, timeout);
  ck_assert_uint_eq(concur_as_completed_remaining(it), 2);
  concur_as_completed_free(it);
  unref_all(fs, 2);
}
END_TEST

/* ---- WAI-07 no references to what was handed out
 * --------------------------------------- */

typedef struct counted {
  _Atomic int cleanups;
} counted;

static void count_cleanup(void *arg, void *result) {
  (void)result;
  atomic_fetch_add(&((counted *)arg)->cleanups, 1);
}

START_TEST(WAI_07_as_completed_keeps_no_reference_to_yielded_futures) {
  counted c[3] = {{0}, {0}, {0}};
  concur_future *fs[3];
  for (int i = 0; i < 3; i++) {
    ck_assert_rc(
        concur_future_new_full(&fs[i], NULL, &c[i], count_cleanup, NULL), 0);
  }
  ck_assert_rc(concur_future_set_result(fs[0], VALUE), 0);
  ck_assert_rc(concur_future_set_result(fs[1], VALUE), 0);
  concur_as_completed *it = NULL;
  ck_assert_rc(concur_as_completed_new(&it, fs, 3, CONCUR_FOREVER), 0);
  unref_all(fs, 3); /* now only the iterator holds them */
  for (int i = 0; i < 3; i++) {
    ck_assert_int_eq(atomic_load(&c[i].cleanups), 0);
  }
  concur_future *f = NULL;
  ck_assert_int_eq(concur_as_completed_next(it, &f), 1);
  concur_future_unref(f); /* the caller's reference was the last one */
  ck_assert_int_eq(atomic_load(&c[0].cleanups), 1);
  ck_assert_int_eq(atomic_load(&c[1].cleanups), 0);
  ck_assert_int_eq(concur_as_completed_next(it, &f), 1);
  concur_future_unref(f);
  ck_assert_int_eq(atomic_load(&c[1].cleanups), 1);
  ck_assert_int_eq(atomic_load(&c[2].cleanups), 0);
  concur_as_completed_free(it); /* the unyielded one goes with it */
  ck_assert_int_eq(atomic_load(&c[2].cleanups), 1);
}
END_TEST

/* ---- errors, empty input, optional outputs
 * -------------------------------------------- */

START_TEST(wait_rejects_bad_arguments) {
  concur_future *p = make_pending();
  concur_future *fs[] = {p, NULL};
  size_t nd = 99;
  ck_assert_rc(
      concur_wait(NULL, 1, 0, CONCUR_ALL_COMPLETED, NULL, &nd, NULL, NULL),
      CONCUR_EINVAL);
  ck_assert_rc(
      concur_wait(fs, 2, 0, CONCUR_ALL_COMPLETED, NULL, NULL, NULL, NULL),
      CONCUR_EINVAL);
  ck_assert_rc(
      concur_wait(fs, 1, -1, CONCUR_ALL_COMPLETED, NULL, NULL, NULL, NULL),
      CONCUR_EINVAL);
  ck_assert_rc(concur_wait(fs, 1, INT64_MIN, CONCUR_FIRST_COMPLETED, NULL, NULL,
                           NULL, NULL),
               CONCUR_EINVAL);
  ck_assert_rc(
      concur_wait(fs, 1, 0, (concur_wait_mode)0, NULL, NULL, NULL, NULL),
      CONCUR_EINVAL);
  ck_assert_rc(
      concur_wait(fs, 1, 0, (concur_wait_mode)4, NULL, NULL, NULL, NULL),
      CONCUR_EINVAL);
  ck_assert_uint_eq(nd, 99); /* untouched on EINVAL */
  concur_future_unref(p);
}
END_TEST

START_TEST(wait_on_nothing_returns_at_once) {
  size_t nd = 9, nn = 9;
  ck_assert_rc(concur_wait(NULL, 0, CONCUR_FOREVER, CONCUR_ALL_COMPLETED, NULL,
                           &nd, NULL, &nn),
               0);
  ck_assert_uint_eq(nd, 0);
  ck_assert_uint_eq(nn, 0);
  ck_assert_rc(concur_wait(NULL, 0, CONCUR_FOREVER, CONCUR_FIRST_COMPLETED,
                           NULL, NULL, NULL, NULL),
               0);
}
END_TEST

START_TEST(wait_outputs_are_optional) {
  concur_future *fs[] = {make_succeeded(), make_pending()};
  size_t nd = 0;
  ck_assert_rc(concur_wait(fs, 2, CONCUR_FOREVER, CONCUR_FIRST_COMPLETED, NULL,
                           &nd, NULL, NULL),
               0);
  ck_assert_uint_eq(nd, 1);
  concur_future *not_done[2];
  size_t nn = 0;
  ck_assert_rc(concur_wait(fs, 2, CONCUR_NOWAIT, CONCUR_ALL_COMPLETED, NULL,
                           NULL, not_done, &nn),
               CONCUR_ETIMEDOUT);
  ck_assert_uint_eq(nn, 1);
  ck_assert_ptr_eq(not_done[0], fs[1]);
  unref_all(fs, 2);
}
END_TEST

START_TEST(wait_first_completed_timed_window) {
  concur_future *fs[] = {make_pending(), make_running()};
  const int64_t timeout = 50000000;
  wait_call w = {
      .fs = fs, .n = 2, .timeout_ns = timeout, .mode = CONCUR_FIRST_COMPLETED};
  int64_t t0 = harness_now_ns();
  ck_assert_rc(do_wait(&w), CONCUR_ETIMEDOUT);
  HARNESS_ASSERT_TIMED_OUT(harness_now_ns() - t0, timeout);
  ck_assert_uint_eq(w.n_done, 0);
  ck_assert_uint_eq(w.n_not_done, 2);
  unref_all(fs, 2);
}
END_TEST

START_TEST(as_completed_rejects_bad_arguments) {
  concur_future *p = make_pending();
  concur_future *fs[] = {p, NULL};
  concur_as_completed *it = NULL;
  ck_assert_rc(concur_as_completed_new(NULL, fs, 1, 0), CONCUR_EINVAL);
  ck_assert_rc(concur_as_completed_new(&it, NULL, 1, 0), CONCUR_EINVAL);
  ck_assert_rc(concur_as_completed_new(&it, fs, 2, 0), CONCUR_EINVAL);
  ck_assert_rc(concur_as_completed_new(&it, fs, 1, -1), CONCUR_EINVAL);
  ck_assert_ptr_null(it);
  concur_future *f = NULL;
  ck_assert_rc(concur_as_completed_next(NULL, &f), CONCUR_EINVAL);
  ck_assert_rc(concur_as_completed_new(&it, fs, 1, 0), 0);
  ck_assert_rc(concur_as_completed_next(it, NULL), CONCUR_EINVAL);
  ck_assert_uint_eq(concur_as_completed_remaining(NULL), 0);
  ck_assert_uint_eq(concur_as_completed_total(NULL), 0);
  concur_as_completed_free(NULL);
  concur_as_completed_free(it);
  /* Empty input: exhausted at once. */
  ck_assert_rc(concur_as_completed_new(&it, NULL, 0, CONCUR_FOREVER), 0);
  ck_assert_int_eq(concur_as_completed_next(it, &f), 0);
  concur_as_completed_free(it);
  concur_future_unref(p);
}
END_TEST

/* ---- the help hook from wait and as_completed
 * ------------------------------------------- */

typedef struct queued_task {
  _Atomic int queued;
  _Atomic int hook_calls;
  _Atomic int runs;
} queued_task;

static int trivial_task(void *arg, void **result) {
  atomic_fetch_add(&((queued_task *)arg)->runs, 1);
  *result = VALUE;
  return 0;
}

static void run_if_queued(concur_future *f, void *arg) {
  queued_task *q = arg;
  atomic_fetch_add(&q->hook_calls, 1);
  int one = 1;
  if (atomic_compare_exchange_strong(&q->queued, &one, 0)) {
    ignore_rc(concur_future_run(f));
  }
}

static concur_future *make_queued(queued_task *q) {
  concur_future *f = NULL;
  atomic_store(&q->queued, 1);
  ck_assert_rc(concur_future_new_task(&f, trivial_task, q, NULL), 0);
  ck_assert_rc(concur_future_set_help(f, run_if_queued, q), 0);
  return f;
}

START_TEST(wait_helps_queued_futures_instead_of_blocking) {
  queued_task q[3] = {0};
  concur_future *fs[] = {make_queued(&q[0]), make_queued(&q[1]),
                         make_queued(&q[2])};
  wait_call w = {.fs = fs,
                 .n = 3,
                 .timeout_ns = CONCUR_NOWAIT,
                 .mode = CONCUR_ALL_COMPLETED};
  ck_assert_rc(do_wait(&w), CONCUR_ETIMEDOUT); /* a poll never helps */
  ck_assert_int_eq(atomic_load(&q[0].hook_calls), 0);
  w.timeout_ns = CONCUR_FOREVER;
  ck_assert_rc(do_wait(&w), 0); /* no other thread: helping is the only way */
  ck_assert_uint_eq(w.n_done, 3);
  for (int i = 0; i < 3; i++) {
    ck_assert_int_eq(atomic_load(&q[i].runs), 1);
  }
  unref_all(fs, 3);
}
END_TEST

START_TEST(as_completed_helps_queued_futures_instead_of_blocking) {
  queued_task q[2] = {0};
  concur_future *fs[] = {make_queued(&q[0]), make_queued(&q[1])};
  concur_as_completed *it = NULL;
  ck_assert_rc(concur_as_completed_new(&it, fs, 2, CONCUR_FOREVER), 0);
  concur_future *f;
  int n = 0;
  int rc;
  while ((rc = concur_as_completed_next(it, &f)) == 1) {
    ck_assert(concur_future_done(f));
    concur_future_unref(f);
    n++;
  }
  ck_assert_rc(rc, 0);
  ck_assert_int_eq(n, 2);
  ck_assert_int_eq(atomic_load(&q[0].runs) + atomic_load(&q[1].runs), 2);
  concur_as_completed_free(it);
  unref_all(fs, 2);
}
END_TEST

Suite *concur_test_suite(void) {
  Suite *s = suite_create("wait");
  TCase *tc = harness_tcase("wait", 60);
  tcase_add_test(tc, WAI_01_first_completed_returns_done_inputs_at_once);
  tcase_add_test(tc, WAI_01_first_completed_returns_the_first_finisher);
  tcase_add_test(tc, WAI_01_a_cancel_counts_as_completion);
  tcase_add_test(tc, WAI_02_first_exception_returns_at_the_first_failure);
  tcase_add_test(tc, WAI_02_cancelled_is_not_a_failure);
  tcase_add_test(tc, WAI_02_one_already_failed_returns_at_once);
  tcase_add_test(tc, WAI_02_all_done_without_failure_returns);
  tcase_add_test(tc, WAI_03_all_completed_over_mixed_done_states);
  tcase_add_test(tc, WAI_03_timeout_reports_the_partial_split);
  tcase_add_test(tc, WAI_03_all_completed_blocks_until_the_last);
  tcase_add_test(tc, WAI_03_many_futures_take_the_allocated_path);
  tcase_add_test(tc, WAI_04_wait_reports_duplicates_once);
  tcase_add_test(tc, WAI_04_duplicates_counted_once_in_large_inputs);
  tcase_add_test(tc, WAI_05_hundred_futures_finishing_together_wake_the_waiter);
  tcase_add_test(tc, wait_rejects_bad_arguments);
  tcase_add_test(tc, wait_on_nothing_returns_at_once);
  tcase_add_test(tc, wait_outputs_are_optional);
  tcase_add_test(tc, wait_first_completed_timed_window);
  tcase_add_test(tc, wait_helps_queued_futures_instead_of_blocking);
  suite_add_tcase(s, tc);

  tc = harness_tcase("as_completed", 60);
  tcase_add_test(tc, WAI_04_as_completed_yields_a_duplicate_once);
  tcase_add_test(tc, WAI_06_as_completed_yields_each_once_finished_first);
  tcase_add_test(tc, WAI_06_as_completed_blocks_until_each_completes);
  tcase_add_test(tc, WAI_06_as_completed_timeout_zero_reports_unfinished);
  tcase_add_test(tc, WAI_06_as_completed_timeout_counts_from_creation);
  tcase_add_test(tc, WAI_07_as_completed_keeps_no_reference_to_yielded_futures);
  tcase_add_test(tc, as_completed_rejects_bad_arguments);
  tcase_add_test(tc, as_completed_helps_queued_futures_instead_of_blocking);
  suite_add_tcase(s, tc);
  return s;
}
