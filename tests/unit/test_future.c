/*
 * Futures: the state machine, result / exception with timeouts, double set,
 * callbacks, snapshots, set_running_or_notify_cancel, failure codes,
 * happens-before (FUT-01..10), plus reference counting and the cleanup rule,
 * the task runner, cooperative cancellation, the help hook, detach and the
 * executor's allocator.
 *
 * Futures in every state are built directly (pending, running, cancelled,
 * failed, succeeded), so most cases need no second thread.
 */
#include "harness.h"

#include "concur/future.h"

#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>

/* ---- helpers ---------------------------------------------------------------
 */

/* For results a case deliberately does not check (the compiler insists). */
static void ignore_rc(int rc) {
  (void)rc;
}

static int dummy_value;
static int other_value;
#define VALUE ((void *)&dummy_value)
#define OTHER ((void *)&other_value)

static concur_future *make_pending(void) {
  concur_future *f = NULL;
  ck_assert_rc(concur_future_new(&f), 0);
  ck_assert_ptr_nonnull(f);
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

static concur_future *make_failed(int code, const char *message) {
  concur_future *f = make_running();
  ck_assert_rc(concur_future_set_exception(f, code, message), 0);
  return f;
}

static concur_future *make_succeeded(void *value) {
  concur_future *f = make_running();
  ck_assert_rc(concur_future_set_result(f, value), 0);
  return f;
}

static concur_future_state state_of(concur_future *f) {
  concur_future_snapshot s = CONCUR_FUTURE_SNAPSHOT_INIT;
  ck_assert_rc(concur_future_get_snapshot(f, &s), 0);
  return s.state;
}

/* A one-shot gate other threads can block on; tests await them parked. */
typedef struct latch {
  _Atomic uint32_t open;
} latch;

static void latch_wait(latch *l) {
  while (atomic_load(&l->open) == 0) {
    ignore_rc(concur__park(&l->open, 0, CONCUR__NO_DEADLINE, l));
  }
}

static void latch_open(latch *l) {
  atomic_store(&l->open, 1);
  concur__unpark(&l->open, INT32_MAX);
}

static pthread_t spawn(void *(*fn)(void *), void *arg) {
  pthread_t t;
  ck_assert_int_eq(pthread_create(&t, NULL, fn, arg), 0);
  return t;
}

static void join(pthread_t t) {
  ck_assert_int_eq(pthread_join(t, NULL), 0);
}

/* A task whose behaviour and observations live in its arg. */
typedef struct task_ctx {
  int ret;                /* what the task returns */
  void *value;            /* what it stores as its result */
  const char *message;    /* attached when not NULL */
  _Atomic int runs;       /* times the task ran */
  _Atomic int cleanups;   /* times the cleanup ran */
  void *cleanup_result;   /* what the cleanup got */
  pthread_t ran_on;       /* the thread that ran it */
  concur_future *current; /* concur_future_current() inside the task */
  int set_message_rc;
} task_ctx;

static int ctx_task(void *arg, void **result) {
  task_ctx *c = arg;
  atomic_fetch_add(&c->runs, 1);
  c->ran_on = pthread_self();
  c->current = concur_future_current();
  if (c->message != NULL) {
    c->set_message_rc = concur_task_set_message(c->message);
  }
  *result = c->value;
  return c->ret;
}

static void ctx_cleanup(void *arg, void *result) {
  task_ctx *c = arg;
  c->cleanup_result = result;
  atomic_fetch_add(&c->cleanups, 1);
}

static concur_future *make_task(task_ctx *c) {
  concur_future *f = NULL;
  ck_assert_rc(concur_future_new_task(&f, ctx_task, c, ctx_cleanup), 0);
  return f;
}

/* A thread that waits on a future and records what it got. */
typedef struct waiter_rec {
  concur_future *f;
  int64_t timeout_ns;
  bool use_exception;
  int rc;
  void *value;
  int code;
  const char *message;
} waiter_rec;

static void *waiter_main(void *arg) {
  waiter_rec *w = arg;
  if (w->use_exception) {
    w->rc = concur_future_exception(w->f, w->timeout_ns, &w->code, &w->message);
  } else {
    w->rc = concur_future_result(w->f, w->timeout_ns, &w->value);
  }
  return NULL;
}

/* ---- FUT-01 the state machine
 * ------------------------------------------------ */

START_TEST(FUT_01_cancel_pending_then_again_returns_true) {
  concur_future *f = make_pending();
  ck_assert(!concur_future_cancelled(f));
  ck_assert(!concur_future_done(f));
  ck_assert(concur_future_cancel(f));
  ck_assert(concur_future_cancelled(f));
  ck_assert(concur_future_done(f));
  ck_assert(!concur_future_running(f));
  ck_assert(concur_future_cancel(f)); /* already cancelled: still true */
  ck_assert_int_eq(state_of(f), CONCUR_FUTURE_CANCELLED);
  concur_future_unref(f);
}
END_TEST

START_TEST(FUT_01_cancel_running_or_finished_returns_false) {
  concur_future *r = make_running();
  ck_assert(!concur_future_cancel(r));
  ck_assert(concur_future_running(r));
  ck_assert_int_eq(state_of(r), CONCUR_FUTURE_RUNNING);
  concur_future *s = make_succeeded(VALUE);
  ck_assert(!concur_future_cancel(s));
  ck_assert_int_eq(state_of(s), CONCUR_FUTURE_FINISHED);
  concur_future *e = make_failed(5, "boom");
  ck_assert(!concur_future_cancel(e));
  ck_assert_int_eq(state_of(e), CONCUR_FUTURE_FINISHED);
  ck_assert(!concur_future_cancel(NULL));
  concur_future_unref(r);
  concur_future_unref(s);
  concur_future_unref(e);
}
END_TEST

START_TEST(FUT_01_predicates_in_every_state) {
  concur_future *p = make_pending();
  concur_future *r = make_running();
  concur_future *c = make_cancelled();
  concur_future *e = make_failed(1, NULL);
  concur_future *s = make_succeeded(VALUE);
  ck_assert(!concur_future_running(p) && !concur_future_done(p) &&
            !concur_future_cancelled(p));
  ck_assert(concur_future_running(r) && !concur_future_done(r) &&
            !concur_future_cancelled(r));
  ck_assert(!concur_future_running(c) && concur_future_done(c) &&
            concur_future_cancelled(c));
  ck_assert(!concur_future_running(e) && concur_future_done(e) &&
            !concur_future_cancelled(e));
  ck_assert(!concur_future_running(s) && concur_future_done(s) &&
            !concur_future_cancelled(s));
  ck_assert(!concur_future_running(NULL));
  ck_assert(!concur_future_done(NULL));
  ck_assert(!concur_future_cancelled(NULL));
  concur_future *all[] = {p, r, c, e, s};
  for (size_t i = 0; i < 5; i++) {
    concur_future_unref(all[i]);
  }
}
END_TEST

/* ---- FUT-02 polling and timeouts
 * ------------------------------------------------ */

START_TEST(FUT_02_poll_in_every_state) {
  concur_future *p = make_pending();
  concur_future *r = make_running();
  concur_future *c = make_cancelled();
  concur_future *e = make_failed(42, "bad input");
  concur_future *s = make_succeeded(VALUE);
  void *v = OTHER;
  int code = -1;
  const char *msg = "unset";
  ck_assert_rc(concur_future_result(p, CONCUR_NOWAIT, &v), CONCUR_ETIMEDOUT);
  ck_assert_rc(concur_future_result(r, CONCUR_NOWAIT, &v), CONCUR_ETIMEDOUT);
  ck_assert_rc(concur_future_exception(p, CONCUR_NOWAIT, &code, &msg),
               CONCUR_ETIMEDOUT);
  ck_assert_rc(concur_future_exception(r, CONCUR_NOWAIT, &code, &msg),
               CONCUR_ETIMEDOUT);
  ck_assert_ptr_eq(v, OTHER); /* untouched on failure */
  ck_assert_rc(concur_future_result(c, CONCUR_NOWAIT, &v), CONCUR_ECANCELED);
  ck_assert_rc(concur_future_exception(c, CONCUR_NOWAIT, &code, &msg),
               CONCUR_ECANCELED);
  ck_assert_rc(concur_future_result(e, CONCUR_NOWAIT, &v), CONCUR_ETASK);
  ck_assert_rc(concur_future_exception(e, CONCUR_NOWAIT, &code, &msg), 0);
  ck_assert_int_eq(code, 42);
  ck_assert_str_eq(msg, "bad input");
  ck_assert_rc(concur_future_result(s, CONCUR_NOWAIT, &v), 0);
  ck_assert_ptr_eq(v, VALUE);
  ck_assert_rc(concur_future_exception(s, CONCUR_NOWAIT, &code, &msg), 0);
  ck_assert_int_eq(code, 0);
  ck_assert_ptr_null(msg);
  /* The out-parameters are optional. */
  ck_assert_rc(concur_future_result(s, CONCUR_NOWAIT, NULL), 0);
  ck_assert_rc(concur_future_exception(e, CONCUR_NOWAIT, NULL, NULL), 0);
  concur_future *all[] = {p, r, c, e, s};
  for (size_t i = 0; i < 5; i++) {
    concur_future_unref(all[i]);
  }
}
END_TEST

START_TEST(FUT_02_extreme_timeouts) {
  concur_future *p = make_pending();
  concur_future *s = make_succeeded(VALUE);
  void *v = NULL;
  /* Negative timeouts, the most negative included, are invalid. */
  ck_assert_rc(concur_future_result(p, -1, &v), CONCUR_EINVAL);
  ck_assert_rc(concur_future_result(p, INT64_MIN, &v), CONCUR_EINVAL);
  ck_assert_rc(concur_future_exception(p, INT64_MIN, NULL, NULL),
               CONCUR_EINVAL);
  ck_assert_rc(concur_future_result(s, -1, &v), CONCUR_EINVAL);
  /* The largest ones neither overflow nor wait on a done future. */
  int64_t t0 = harness_now_ns();
  ck_assert_rc(concur_future_result(s, CONCUR_FOREVER, &v), 0);
  ck_assert_rc(concur_future_result(s, CONCUR_FOREVER - 1, &v), 0);
  ck_assert_rc(concur_future_exception(s, CONCUR_FOREVER, NULL, NULL), 0);
  ck_assert_ptr_eq(v, VALUE);
  ck_assert_int_lt(harness_now_ns() - t0, 1000000000LL * harness_slack());
  /* The smallest positive one times out, never early. */
  t0 = harness_now_ns();
  ck_assert_rc(concur_future_result(p, 1, &v), CONCUR_ETIMEDOUT);
  ck_assert_int_ge(harness_now_ns() - t0, 1);
  concur_future_unref(p);
  concur_future_unref(s);
}
END_TEST

START_TEST(FUT_02_timed_wait_window) {
  concur_future *p = make_pending();
  concur_future *r = make_running();
  const int64_t timeout = 50000000;
  int64_t t0 = harness_now_ns();
  ck_assert_rc(concur_future_result(p, timeout, NULL), CONCUR_ETIMEDOUT);
  HARNESS_ASSERT_TIMED_OUT(harness_now_ns() - t0, timeout);
  t0 = harness_now_ns();
  ck_assert_rc(concur_future_exception(r, timeout, NULL, NULL),
               CONCUR_ETIMEDOUT);
  HARNESS_ASSERT_TIMED_OUT(harness_now_ns() - t0, timeout);
  concur_future_unref(p);
  concur_future_unref(r);
}
END_TEST

START_TEST(FUT_02_null_future_is_einval) {
  void *v;
  ck_assert_rc(concur_future_result(NULL, CONCUR_NOWAIT, &v), CONCUR_EINVAL);
  ck_assert_rc(concur_future_exception(NULL, CONCUR_FOREVER, NULL, NULL),
               CONCUR_EINVAL);
}
END_TEST

/* ---- FUT-03 blocking until another thread completes
 * --------------------------- */

typedef enum completion { BY_RESULT, BY_EXCEPTION, BY_CANCEL } completion;

static void check_wakes(completion how, bool use_exception) {
  concur_future *f = make_pending();
  waiter_rec w = {
      .f = f, .timeout_ns = CONCUR_FOREVER, .use_exception = use_exception};
  pthread_t t = spawn(waiter_main, &w);
  ck_assert_rc(concur__test_await_parked(f, 1, HARNESS_LONG_NS), 0);
  switch (how) {
  case BY_RESULT:
    ck_assert_rc(concur_future_set_result(f, VALUE), 0);
    break;
  case BY_EXCEPTION:
    ck_assert_rc(concur_future_set_exception(f, 9, "nine"), 0);
    break;
  case BY_CANCEL:
    ck_assert(concur_future_cancel(f));
    break;
  }
  join(t);
  if (how == BY_CANCEL) {
    ck_assert_rc(w.rc, CONCUR_ECANCELED);
  } else if (use_exception) {
    ck_assert_rc(w.rc, 0);
    ck_assert_int_eq(w.code, how == BY_EXCEPTION ? 9 : 0);
    if (how == BY_EXCEPTION) {
      ck_assert_str_eq(w.message, "nine");
    } else {
      ck_assert_ptr_null(w.message);
    }
  } else if (how == BY_EXCEPTION) {
    ck_assert_rc(w.rc, CONCUR_ETASK);
  } else {
    ck_assert_rc(w.rc, 0);
    ck_assert_ptr_eq(w.value, VALUE);
  }
  concur_future_unref(f);
}

START_TEST(FUT_03_result_blocks_until_set_result) {
  check_wakes(BY_RESULT, false);
}
END_TEST

START_TEST(FUT_03_result_blocks_until_set_exception) {
  check_wakes(BY_EXCEPTION, false);
}
END_TEST

START_TEST(FUT_03_result_blocks_until_cancel) {
  check_wakes(BY_CANCEL, false);
}
END_TEST

START_TEST(FUT_03_exception_blocks_until_success_or_failure) {
  check_wakes(BY_RESULT, true);
  check_wakes(BY_EXCEPTION, true);
  check_wakes(BY_CANCEL, true);
}
END_TEST

START_TEST(FUT_03_many_waiters_all_wake) {
  concur_future *f = make_running();
  enum { N = 5 };
  waiter_rec w[N];
  pthread_t t[N];
  for (int i = 0; i < N; i++) {
    w[i] = (waiter_rec){
        .f = f, .timeout_ns = CONCUR_FOREVER, .use_exception = i % 2 == 1};
    t[i] = spawn(waiter_main, &w[i]);
  }
  ck_assert_rc(concur__test_await_parked(f, N, HARNESS_LONG_NS), 0);
  ck_assert_rc(concur_future_set_result(f, VALUE), 0);
  for (int i = 0; i < N; i++) {
    join(t[i]);
    ck_assert_rc(w[i].rc, 0);
    if (!w[i].use_exception) {
      ck_assert_ptr_eq(w[i].value, VALUE);
    }
  }
  concur_future_unref(f);
}
END_TEST

static void *run_main(void *arg) {
  concur_future *f = arg;
  int rc = concur_future_run(f);
  concur_future_unref(f); /* the "executor's" reference */
  return (void *)(intptr_t)rc;
}

START_TEST(FUT_03_task_run_by_another_thread_completes_waiter) {
  task_ctx c = {.ret = 0, .value = VALUE};
  concur_future *f = make_task(&c);
  concur_future_ref(f); /* one for the runner */
  pthread_t t = spawn(run_main, f);
  void *v = NULL;
  ck_assert_rc(concur_future_result(f, CONCUR_FOREVER, &v), 0);
  ck_assert_ptr_eq(v, VALUE);
  void *rc;
  ck_assert_int_eq(pthread_join(t, &rc), 0);
  ck_assert_int_eq((int)(intptr_t)rc, 0);
  ck_assert(pthread_equal(c.ran_on, t));
  ck_assert_int_eq(atomic_load(&c.runs), 1);
  concur_future_unref(f);
  ck_assert_int_eq(atomic_load(&c.cleanups), 1);
}
END_TEST

/* ---- FUT-04 double set
 * ---------------------------------------------------------- */

START_TEST(FUT_04_set_result_twice_keeps_the_first) {
  concur_future *f = make_pending();
  ck_assert_rc(concur_future_set_result(f, VALUE), 0);
  ck_assert_rc(concur_future_set_result(f, OTHER), CONCUR_ESTATE);
  ck_assert_rc(concur_future_set_exception(f, 3, "late"), CONCUR_ESTATE);
  void *v = NULL;
  ck_assert_rc(concur_future_result(f, CONCUR_NOWAIT, &v), 0);
  ck_assert_ptr_eq(v, VALUE);
  concur_future_unref(f);
}
END_TEST

START_TEST(FUT_04_set_exception_twice_keeps_the_first) {
  concur_future *f = make_running();
  ck_assert_rc(concur_future_set_exception(f, 3, "first"), 0);
  ck_assert_rc(concur_future_set_exception(f, 4, "second"), CONCUR_ESTATE);
  ck_assert_rc(concur_future_set_result(f, VALUE), CONCUR_ESTATE);
  int code = 0;
  const char *msg = NULL;
  ck_assert_rc(concur_future_exception(f, CONCUR_NOWAIT, &code, &msg), 0);
  ck_assert_int_eq(code, 3);
  ck_assert_str_eq(msg, "first");
  concur_future_unref(f);
}
END_TEST

START_TEST(FUT_04_set_on_cancelled_is_estate) {
  concur_future *f = make_cancelled();
  ck_assert_rc(concur_future_set_result(f, VALUE), CONCUR_ESTATE);
  ck_assert_rc(concur_future_set_exception(f, 1, NULL), CONCUR_ESTATE);
  ck_assert(concur_future_cancelled(f));
  concur_future_unref(f);
}
END_TEST

static int task_sets_itself(void *arg, void **result) {
  int *rc = arg;
  rc[0] = concur_future_set_result(concur_future_current(), OTHER);
  rc[1] = concur_future_set_exception(concur_future_current(), 1, NULL);
  *result = VALUE;
  return 0;
}

START_TEST(FUT_04_set_while_run_owns_it_is_estate) {
  int rc[2] = {0, 0};
  concur_future *f = NULL;
  ck_assert_rc(concur_future_new_task(&f, task_sets_itself, rc, NULL), 0);
  ck_assert_rc(concur_future_run(f), 0);
  ck_assert_rc(rc[0], CONCUR_ESTATE);
  ck_assert_rc(rc[1], CONCUR_ESTATE);
  void *v = NULL;
  ck_assert_rc(concur_future_result(f, CONCUR_NOWAIT, &v), 0);
  ck_assert_ptr_eq(v, VALUE);
  concur_future_unref(f);
}
END_TEST

START_TEST(FUT_04_set_errors) {
  ck_assert_rc(concur_future_set_result(NULL, VALUE), CONCUR_EINVAL);
  ck_assert_rc(concur_future_set_exception(NULL, 1, NULL), CONCUR_EINVAL);
  concur_future *f = make_pending();
  ck_assert_rc(concur_future_set_exception(f, 0, "zero is success"),
               CONCUR_EINVAL);
  ck_assert(!concur_future_done(f));
  concur_future_unref(f);
}
END_TEST

/* ---- FUT-05 done callbacks
 * -------------------------------------------------------- */

typedef struct cb_log {
  int calls;
  int order[8];
  concur_future *seen[8];
  concur_future_state state[8];
  pthread_t thread[8];
} cb_log;

typedef struct cb_arg {
  cb_log *log;
  int id;
} cb_arg;

static void log_cb(concur_future *f, void *arg) {
  cb_arg *a = arg;
  cb_log *l = a->log;
  int i = l->calls++;
  l->order[i] = a->id;
  l->seen[i] = f;
  concur_future_snapshot snap = CONCUR_FUTURE_SNAPSHOT_INIT;
  l->state[i] = concur_future_get_snapshot(f, &snap) == 0
                    ? snap.state
                    : (concur_future_state)-1;
  l->thread[i] = pthread_self();
}

static void check_callback_runs(completion how) {
  concur_future *f = make_pending();
  cb_log log = {0};
  cb_arg a = {&log, 1};
  ck_assert_rc(concur_future_add_done_callback(f, log_cb, &a), 0);
  ck_assert_int_eq(log.calls, 0);
  switch (how) {
  case BY_RESULT:
    ck_assert_rc(concur_future_set_result(f, VALUE), 0);
    break;
  case BY_EXCEPTION:
    ck_assert_rc(concur_future_set_exception(f, 2, NULL), 0);
    break;
  case BY_CANCEL:
    ck_assert(concur_future_cancel(f));
    break;
  }
  ck_assert_int_eq(log.calls, 1);
  ck_assert_ptr_eq(log.seen[0], f);
  ck_assert_int_eq(log.state[0], how == BY_CANCEL ? CONCUR_FUTURE_CANCELLED
                                                  : CONCUR_FUTURE_FINISHED);
  concur_future_unref(f);
  ck_assert_int_eq(log.calls, 1);
}

START_TEST(FUT_05_callback_runs_on_result) {
  check_callback_runs(BY_RESULT);
}
END_TEST

START_TEST(FUT_05_callback_runs_on_exception) {
  check_callback_runs(BY_EXCEPTION);
}
END_TEST

START_TEST(FUT_05_callback_runs_on_cancel) {
  check_callback_runs(BY_CANCEL);
}
END_TEST

START_TEST(FUT_05_callback_added_when_done_runs_at_once_in_caller) {
  concur_future *done[] = {make_succeeded(VALUE), make_failed(1, NULL),
                           make_cancelled()};
  for (size_t i = 0; i < 3; i++) {
    cb_log log = {0};
    cb_arg a = {&log, 7};
    ck_assert_rc(concur_future_add_done_callback(done[i], log_cb, &a), 0);
    ck_assert_int_eq(log.calls, 1);
    ck_assert(pthread_equal(log.thread[0], pthread_self()));
    concur_future_unref(done[i]);
  }
}
END_TEST

START_TEST(FUT_05_callbacks_run_in_registration_order) {
  concur_future *f = make_running();
  cb_log log = {0};
  cb_arg a[6];
  for (int i = 0; i < 6; i++) {
    a[i] = (cb_arg){&log, i};
    ck_assert_rc(concur_future_add_done_callback(f, log_cb, &a[i]), 0);
  }
  ck_assert_rc(concur_future_set_result(f, VALUE), 0);
  ck_assert_int_eq(log.calls, 6);
  for (int i = 0; i < 6; i++) {
    ck_assert_int_eq(log.order[i], i);
  }
  concur_future_unref(f);
}
END_TEST

typedef struct complete_later {
  concur_future *f;
  int rc;
} complete_later;

static void *complete_main(void *arg) {
  complete_later *c = arg;
  c->rc = concur_future_set_result(c->f, VALUE);
  return NULL;
}

START_TEST(FUT_05_callback_runs_in_completing_thread) {
  concur_future *f = make_pending();
  cb_log log = {0};
  cb_arg a = {&log, 1};
  ck_assert_rc(concur_future_add_done_callback(f, log_cb, &a), 0);
  complete_later c = {f, -1};
  pthread_t t = spawn(complete_main, &c);
  join(t);
  ck_assert_rc(c.rc, 0);
  ck_assert_int_eq(log.calls, 1);
  ck_assert(pthread_equal(log.thread[0], t));
  concur_future_unref(f);
}
END_TEST

static void unref_cb(concur_future *f, void *arg) {
  (void)arg;
  concur_future_unref(f);
}

static void done_probe_cb(concur_future *f, void *arg) {
  bool *saw_done = arg;
  *saw_done = concur_future_done(f); /* f must still be alive here */
}

START_TEST(FUT_05_callback_may_drop_the_last_reference) {
  /* The only reference is handed to the first callback, which drops it;
   * the second callback still gets a live future, and the cleanup runs
   * once, after both. */
  task_ctx c = {0};
  concur_future *f = NULL;
  ck_assert_rc(concur_future_new_full(&f, NULL, &c, ctx_cleanup, NULL), 0);
  bool saw_done = false;
  ck_assert_rc(concur_future_add_done_callback(f, unref_cb, NULL), 0);
  ck_assert_rc(concur_future_add_done_callback(f, done_probe_cb, &saw_done), 0);
  ck_assert_rc(concur_future_set_result(f, VALUE), 0);
  ck_assert(saw_done);
  ck_assert_int_eq(atomic_load(&c.cleanups), 1);
  ck_assert_ptr_eq(c.cleanup_result, VALUE);

  /* The same when the future is already done: the callback runs at once. */
  task_ctx c2 = {0};
  ck_assert_rc(concur_future_new_full(&f, NULL, &c2, ctx_cleanup, NULL), 0);
  ck_assert(concur_future_cancel(f));
  ck_assert_rc(concur_future_add_done_callback(f, unref_cb, NULL), 0);
  ck_assert_int_eq(atomic_load(&c2.cleanups), 1);
}
END_TEST

START_TEST(FUT_05_abandoned_pending_future_drops_callbacks_unrun) {
  concur_future *f = make_pending();
  cb_log log = {0};
  cb_arg a[3] = {{&log, 0}, {&log, 1}, {&log, 2}};
  for (int i = 0; i < 3; i++) {
    ck_assert_rc(concur_future_add_done_callback(f, log_cb, &a[i]), 0);
  }
  concur_future_unref(f); /* nothing runs, nothing leaks (ASan) */
  ck_assert_int_eq(log.calls, 0);
}
END_TEST

START_TEST(FUT_05_add_done_callback_errors) {
  concur_future *f = make_pending();
  ck_assert_rc(concur_future_add_done_callback(NULL, unref_cb, NULL),
               CONCUR_EINVAL);
  ck_assert_rc(concur_future_add_done_callback(f, NULL, NULL), CONCUR_EINVAL);
  concur_future_unref(f);
}
END_TEST

/* ---- FUT-06 callback added while another thread completes
 * -------------------------- */

typedef struct race {
  concur_future *f;
  _Atomic int go;
  _Atomic int calls;
  int rc;
} race;

static void count_cb(concur_future *f, void *arg) {
  (void)f;
  atomic_fetch_add(&((race *)arg)->calls, 1);
}

static void *race_completer(void *arg) {
  race *r = arg;
  while (atomic_load(&r->go) == 0) {
    concur__cpu_relax();
  }
  r->rc = concur_future_set_result(r->f, VALUE);
  return NULL;
}

START_TEST(FUT_06_callback_added_during_completion_runs_once) {
  /* The 10^5-iteration version is in tests/stress. */
  for (int i = 0; i < 200; i++) {
    race r = {.f = make_pending()};
    pthread_t t = spawn(race_completer, &r);
    atomic_store(&r.go, 1);
    int rc = concur_future_add_done_callback(r.f, count_cb, &r);
    join(t);
    ck_assert_rc(rc, 0);
    ck_assert_rc(r.rc, 0);
    ck_assert_int_eq(atomic_load(&r.calls), 1);
    concur_future_unref(r.f);
  }
}
END_TEST

/* ---- FUT-07 snapshots
 * ------------------------------------------------------------------ */

START_TEST(FUT_07_snapshot_in_every_state) {
  concur_future_snapshot s = CONCUR_FUTURE_SNAPSHOT_INIT;
  concur_future *p = make_pending();
  ck_assert_rc(concur_future_get_snapshot(p, &s), 0);
  ck_assert_int_eq(s.state, CONCUR_FUTURE_PENDING);
  ck_assert(!s.cancel_requested);
  ck_assert_ptr_null(s.result);
  concur_future *r = make_running();
  ck_assert_rc(concur_future_get_snapshot(r, &s), 0);
  ck_assert_int_eq(s.state, CONCUR_FUTURE_RUNNING);
  concur_future *c = make_cancelled();
  ck_assert_rc(concur_future_get_snapshot(c, &s), 0);
  ck_assert_int_eq(s.state, CONCUR_FUTURE_CANCELLED);
  concur_future *e = make_failed(-7, "negative");
  ck_assert_rc(concur_future_get_snapshot(e, &s), 0);
  ck_assert_int_eq(s.state, CONCUR_FUTURE_FINISHED);
  ck_assert_int_eq(s.code, -7);
  ck_assert_str_eq(s.message, "negative");
  ck_assert_ptr_null(s.result);
  concur_future *ok = make_succeeded(VALUE);
  ck_assert_rc(concur_future_get_snapshot(ok, &s), 0);
  ck_assert_int_eq(s.state, CONCUR_FUTURE_FINISHED);
  ck_assert_int_eq(s.code, 0);
  ck_assert_ptr_eq(s.result, VALUE);
  ck_assert_ptr_null(s.message);
  concur_future *all[] = {p, r, c, e, ok};
  for (size_t i = 0; i < 5; i++) {
    concur_future_unref(all[i]);
  }
}
END_TEST

START_TEST(FUT_07_snapshot_errors) {
  concur_future *f = make_pending();
  concur_future_snapshot s = CONCUR_FUTURE_SNAPSHOT_INIT;
  ck_assert_rc(concur_future_get_snapshot(NULL, &s), CONCUR_EINVAL);
  ck_assert_rc(concur_future_get_snapshot(f, NULL), CONCUR_EINVAL);
  s.size = sizeof s - 1;
  ck_assert_rc(concur_future_get_snapshot(f, &s), CONCUR_EINVAL);
  concur_future_unref(f);
}
END_TEST

enum { SNAP_FUTURES = 3, SNAP_READS = 1000, SNAP_READERS = 4 };

typedef struct snap_reader {
  concur_future *const *fs;
  latch *start;
  int violations;
} snap_reader;

/* Future i finishes: 0 with VALUE, 1 with code 11 "eleven", 2 cancelled. */
static bool snapshot_consistent(int i, const concur_future_snapshot *s,
                                concur_future_state *last) {
  /* Moves seen by one reader only go forward along the edges of the state
   * machine: P->R, R->F, P->C (and P->F, unused here). */
  concur_future_state was = *last;
  concur_future_state now = s->state;
  bool ok = now == was || (was == CONCUR_FUTURE_PENDING) ||
            (was == CONCUR_FUTURE_RUNNING && now == CONCUR_FUTURE_FINISHED);
  *last = now;
  switch (now) {
  case CONCUR_FUTURE_PENDING:
  case CONCUR_FUTURE_RUNNING:
  case CONCUR_FUTURE_CANCELLED:
    ok = ok && s->result == NULL && s->code == 0 && s->message == NULL;
    ok = ok && (now != CONCUR_FUTURE_CANCELLED || i == 2);
    ok = ok && (now != CONCUR_FUTURE_RUNNING || i != 2);
    break;
  case CONCUR_FUTURE_FINISHED:
    if (i == 0) {
      ok = ok && s->result == VALUE && s->code == 0 && s->message == NULL;
    } else if (i == 1) {
      ok = ok && s->result == NULL && s->code == 11 && s->message != NULL &&
           strcmp(s->message, "eleven") == 0;
    } else {
      ok = false;
    }
    break;
  }
  return ok;
}

static void *snap_main(void *arg) {
  snap_reader *r = arg;
  concur_future_state last[SNAP_FUTURES] = {0};
  latch_wait(r->start);
  for (int k = 0; k < SNAP_READS; k++) {
    for (int i = 0; i < SNAP_FUTURES; i++) {
      concur_future_snapshot s = CONCUR_FUTURE_SNAPSHOT_INIT;
      if (concur_future_get_snapshot(r->fs[i], &s) != 0 ||
          !snapshot_consistent(i, &s, &last[i])) {
        r->violations++;
      }
    }
  }
  return NULL;
}

START_TEST(FUT_07_snapshot_is_atomic_under_concurrent_completion) {
  for (int round = 0; round < 20; round++) {
    concur_future *fs[SNAP_FUTURES] = {make_pending(), make_pending(),
                                       make_pending()};
    latch start = {0};
    snap_reader r[SNAP_READERS];
    pthread_t t[SNAP_READERS];
    for (int i = 0; i < SNAP_READERS; i++) {
      r[i] = (snap_reader){fs, &start, 0};
      t[i] = spawn(snap_main, &r[i]);
    }
    ck_assert_rc(
        concur__test_await_parked(&start, SNAP_READERS, HARNESS_LONG_NS), 0);
    latch_open(&start);
    ck_assert_int_eq(concur_future_set_running_or_notify_cancel(fs[0]), 1);
    ck_assert_int_eq(concur_future_set_running_or_notify_cancel(fs[1]), 1);
    ck_assert_rc(concur_future_set_result(fs[0], VALUE), 0);
    ck_assert_rc(concur_future_set_exception(fs[1], 11, "eleven"), 0);
    ck_assert(concur_future_cancel(fs[2]));
    for (int i = 0; i < SNAP_READERS; i++) {
      join(t[i]);
      ck_assert_int_eq(r[i].violations, 0);
    }
    for (int i = 0; i < SNAP_FUTURES; i++) {
      concur_future_unref(fs[i]);
    }
  }
}
END_TEST

/* ---- FUT-08 set_running_or_notify_cancel
 * ------------------------------------------------ */

START_TEST(FUT_08_set_running_moves_pending_to_running_once) {
  concur_future *f = make_pending();
  ck_assert_int_eq(concur_future_set_running_or_notify_cancel(f), 1);
  ck_assert(concur_future_running(f));
  ck_assert_rc(concur_future_set_running_or_notify_cancel(f), CONCUR_ESTATE);
  ck_assert(concur_future_running(f));
  concur_future_unref(f);
}
END_TEST

START_TEST(FUT_08_set_running_on_cancelled_returns_0_and_waiters_wake) {
  concur_future *f = make_pending();
  waiter_rec w = {.f = f, .timeout_ns = CONCUR_FOREVER};
  pthread_t t = spawn(waiter_main, &w);
  ck_assert_rc(concur__test_await_parked(f, 1, HARNESS_LONG_NS), 0);
  ck_assert(concur_future_cancel(f));
  ck_assert_int_eq(concur_future_set_running_or_notify_cancel(f), 0);
  join(t);
  ck_assert_rc(w.rc, CONCUR_ECANCELED);
  /* A second acknowledgement is Python's RuntimeError. */
  ck_assert_rc(concur_future_set_running_or_notify_cancel(f), CONCUR_ESTATE);
  ck_assert(concur_future_cancelled(f));
  concur_future_unref(f);
}
END_TEST

START_TEST(FUT_08_set_running_on_finished_or_null) {
  concur_future *s = make_succeeded(VALUE);
  concur_future *e = make_failed(1, NULL);
  ck_assert_rc(concur_future_set_running_or_notify_cancel(s), CONCUR_ESTATE);
  ck_assert_rc(concur_future_set_running_or_notify_cancel(e), CONCUR_ESTATE);
  ck_assert_rc(concur_future_set_running_or_notify_cancel(NULL), CONCUR_EINVAL);
  ck_assert_int_eq(state_of(s), CONCUR_FUTURE_FINISHED);
  concur_future_unref(s);
  concur_future_unref(e);
}
END_TEST

/* ---- FUT-09 every nonzero code is a failure
 * ---------------------------------------------- */

START_TEST(FUT_09_any_nonzero_code_is_a_failure) {
  const int codes[] = {
      1, -1, INT_MIN, INT_MAX, CONCUR_ETIMEDOUT, CONCUR_ECANCELED};
  for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++) {
    task_ctx c = {.ret = codes[i]};
    concur_future *f = make_task(&c);
    ck_assert_rc(concur_future_run(f), 0);
    /* A task's own CONCUR_ETIMEDOUT or CONCUR_ECANCELED is its failure,
     * never confused with the wait's. */
    ck_assert_rc(concur_future_result(f, CONCUR_FOREVER, NULL), CONCUR_ETASK);
    int code = 0;
    ck_assert_rc(concur_future_exception(f, CONCUR_FOREVER, &code, NULL), 0);
    ck_assert_int_eq(code, codes[i]);
    ck_assert(!concur_future_cancelled(f));
    concur_future_unref(f);
  }
}
END_TEST

START_TEST(FUT_09_empty_message_is_kept) {
  task_ctx c = {.ret = 1, .message = ""};
  concur_future *f = make_task(&c);
  ck_assert_rc(concur_future_run(f), 0);
  ck_assert_rc(c.set_message_rc, 0);
  const char *msg = NULL;
  ck_assert_rc(concur_future_exception(f, CONCUR_NOWAIT, NULL, &msg), 0);
  ck_assert_ptr_nonnull(msg);
  ck_assert_str_eq(msg, "");
  concur_future_unref(f);

  concur_future *g = make_failed(1, "");
  ck_assert_rc(concur_future_exception(g, CONCUR_NOWAIT, NULL, &msg), 0);
  ck_assert_str_eq(msg, "");
  ck_assert_rc(concur_future_result(g, CONCUR_NOWAIT, NULL), CONCUR_ETASK);
  concur_future_unref(g);

  concur_future *h = make_failed(1, NULL);
  ck_assert_rc(concur_future_exception(h, CONCUR_NOWAIT, NULL, &msg), 0);
  ck_assert_ptr_null(msg);
  concur_future_unref(h);
}
END_TEST

/* ---- FUT-10 happens-before
 * ------------------------------------------------------------------ */

enum { HB_WORDS = 64 };

typedef struct hb {
  int input[HB_WORDS];  /* written by main before the hand-off */
  int output[HB_WORDS]; /* written by the task, read by main after result */
  int echoed;
  _Atomic(concur_future *) handoff; /* stands for an executor's queue */
} hb;

static int hb_task(void *arg, void **result) {
  hb *h = arg;
  int sum = 0;
  for (int i = 0; i < HB_WORDS; i++) {
    sum += h->input[i];
    h->output[i] = i * 3;
  }
  h->echoed = sum;
  *result = h->output;
  return 0;
}

static void *hb_worker(void *arg) {
  hb *h = arg;
  concur_future *f;
  while ((f = atomic_load_explicit(&h->handoff, memory_order_acquire)) ==
         NULL) {
    sched_yield();
  }
  ignore_rc(concur_future_run(f));
  concur_future_unref(f);
  return NULL;
}

START_TEST(FUT_10_task_writes_are_visible_to_the_result_reader) {
  /* No lock and no atomic guards the buffers: only the hand-off (submit ->
   * start) and the future (end -> result). TSan reports any gap. */
  for (int round = 0; round < 50; round++) {
    hb *h = calloc(1, sizeof *h);
    ck_assert_ptr_nonnull(h);
    pthread_t t = spawn(hb_worker, h);
    concur_future *f = NULL;
    ck_assert_rc(concur_future_new_task(&f, hb_task, h, NULL), 0);
    for (int i = 0; i < HB_WORDS; i++) {
      h->input[i] = 1;
    }
    atomic_store_explicit(&h->handoff, concur_future_ref(f),
                          memory_order_release);
    void *v = NULL;
    ck_assert_rc(concur_future_result(f, CONCUR_FOREVER, &v), 0);
    ck_assert_ptr_eq(v, h->output);
    ck_assert_int_eq(h->echoed, HB_WORDS);
    for (int i = 0; i < HB_WORDS; i++) {
      ck_assert_int_eq(h->output[i], i * 3);
    }
    join(t);
    concur_future_unref(f);
    free(h);
  }
}
END_TEST

typedef struct hb_set {
  concur_future *f;
  int data[HB_WORDS];
  int cb_sum; /* what the callback read */
} hb_set;

static void *hb_setter(void *arg) {
  hb_set *s = arg;
  for (int i = 0; i < HB_WORDS; i++) {
    s->data[i] = i + 100;
  }
  ignore_rc(concur_future_set_result(s->f, s->data));
  return NULL;
}

static void hb_probe_cb(concur_future *f, void *arg) {
  (void)f;
  hb_set *s = arg;
  int sum = 0;
  for (int i = 0; i < HB_WORDS; i++) {
    sum += s->data[i];
  }
  s->cb_sum = sum; /* asserted by main after the join */
}

START_TEST(FUT_10_set_result_writes_are_visible_to_every_observer) {
  hb_set *s = calloc(1, sizeof *s);
  ck_assert_ptr_nonnull(s);
  s->f = make_pending();
  ck_assert_rc(concur_future_add_done_callback(s->f, hb_probe_cb, s), 0);
  pthread_t t = spawn(hb_setter, s);
  while (!concur_future_done(s->f)) {
    sched_yield();
  }
  /* done() returning true is an acquire: the data is visible. */
  ck_assert_int_eq(s->data[HB_WORDS - 1], HB_WORDS - 1 + 100);
  join(t);
  ck_assert_int_eq(s->cb_sum, HB_WORDS * 100 + HB_WORDS * (HB_WORDS - 1) / 2);
  concur_future_unref(s->f);
  free(s);
}
END_TEST

/* ---- references and the cleanup rule
 * ------------------------------------------------ */

START_TEST(ref_and_unref_basics) {
  ck_assert_ptr_null(concur_future_ref(NULL));
  concur_future_unref(NULL);
  task_ctx c = {.value = VALUE};
  concur_future *f = make_task(&c);
  ck_assert_ptr_eq(concur_future_ref(f), f);
  ck_assert_ptr_eq(concur_future_ref(f), f);
  concur_future_unref(f);
  concur_future_unref(f);
  ck_assert_int_eq(atomic_load(&c.cleanups), 0);
  concur_future_unref(f);
  ck_assert_int_eq(atomic_load(&c.cleanups), 1);
  ck_assert_int_eq(atomic_load(&c.runs), 0); /* dropped unrun */
  ck_assert_ptr_null(c.cleanup_result);
}
END_TEST

START_TEST(cleanup_runs_once_at_last_unref_after_success) {
  task_ctx c = {.value = VALUE};
  concur_future *f = make_task(&c);
  concur_future_ref(f); /* the "executor" */
  ck_assert_rc(concur_future_run(f), 0);
  concur_future_unref(f); /* executor lets go first */
  ck_assert_int_eq(atomic_load(&c.cleanups), 0);
  void *v = NULL;
  ck_assert_rc(concur_future_result(f, CONCUR_NOWAIT, &v), 0);
  ck_assert_ptr_eq(v, VALUE); /* still readable */
  concur_future_unref(f);
  ck_assert_int_eq(atomic_load(&c.cleanups), 1);
  ck_assert_ptr_eq(c.cleanup_result, VALUE);
}
END_TEST

START_TEST(cleanup_gets_the_result_of_a_failed_task) {
  task_ctx c = {.ret = 3, .value = OTHER};
  concur_future *f = make_task(&c);
  ck_assert_rc(concur_future_run(f), 0);
  ck_assert_rc(concur_future_result(f, CONCUR_NOWAIT, NULL), CONCUR_ETASK);
  concur_future_unref(f);
  ck_assert_int_eq(atomic_load(&c.cleanups), 1);
  ck_assert_ptr_eq(c.cleanup_result, OTHER); /* a partial result is freed */
}
END_TEST

START_TEST(cleanup_runs_for_a_cancelled_task_that_never_ran) {
  task_ctx c = {.value = VALUE};
  concur_future *f = make_task(&c);
  concur_future_ref(f);
  ck_assert(concur_future_cancel(f));
  ck_assert_rc(concur_future_run(f), CONCUR_ECANCELED);
  ck_assert_int_eq(atomic_load(&c.runs), 0);
  concur_future_unref(f); /* submitter lets go first */
  ck_assert_int_eq(atomic_load(&c.cleanups), 0);
  concur_future_unref(f);
  ck_assert_int_eq(atomic_load(&c.cleanups), 1);
  ck_assert_ptr_null(c.cleanup_result);
}
END_TEST

START_TEST(cleanup_on_a_future_without_task_gets_the_set_value) {
  task_ctx c = {0};
  concur_future *f = NULL;
  ck_assert_rc(concur_future_new_full(&f, NULL, &c, ctx_cleanup, NULL), 0);
  ck_assert_rc(concur_future_run(f), CONCUR_EINVAL); /* no task */
  ck_assert_rc(concur_future_set_result(f, VALUE), 0);
  concur_future_unref(f);
  ck_assert_int_eq(atomic_load(&c.cleanups), 1);
  ck_assert_ptr_eq(c.cleanup_result, VALUE);
}
END_TEST

/* ---- constructors and the executor's allocator
 * ------------------------------------------ */

START_TEST(constructors_reject_bad_arguments) {
  concur_future *f = NULL;
  task_ctx c = {0};
  ck_assert_rc(concur_future_new(NULL), CONCUR_EINVAL);
  ck_assert_rc(concur_future_new_task(NULL, ctx_task, &c, NULL), CONCUR_EINVAL);
  ck_assert_rc(concur_future_new_task(&f, NULL, &c, ctx_cleanup),
               CONCUR_EINVAL);
  ck_assert_rc(concur_future_new_full(NULL, ctx_task, &c, NULL, NULL),
               CONCUR_EINVAL);
  concur_future_allocator a = CONCUR_FUTURE_ALLOCATOR_INIT;
  ck_assert_rc(concur_future_new_full(&f, ctx_task, &c, ctx_cleanup, &a),
               CONCUR_EINVAL); /* alloc and free unset */
  ck_assert_ptr_null(f);
  ck_assert_int_eq(atomic_load(&c.cleanups), 0);
  ck_assert_uint_ge(concur_future_sizeof(), sizeof(void *));
}
END_TEST

/* An executor-style allocator: blocks with a private header before each
 * future, recycled through a free list, counting what it did. */
typedef struct block_header {
  struct block_header *next;
  int tag;
  _Alignas(max_align_t) char future[];
} block_header;

typedef struct slab {
  block_header *free_list;
  int allocs, frees, mallocs;
  size_t asked;
  bool fail;
  task_ctx *ctx; /* to check the cleanup ran before free */
  int cleanups_at_free;
} slab;

static void *slab_alloc(void *arg, size_t bytes) {
  slab *s = arg;
  s->asked = bytes;
  if (s->fail) {
    return NULL;
  }
  s->allocs++;
  block_header *b = s->free_list;
  if (b != NULL) {
    s->free_list = b->next;
  } else {
    b = malloc(sizeof *b + bytes);
    s->mallocs++;
    if (b == NULL) {
      return NULL;
    }
  }
  b->tag = 77;
  return b->future;
}

static void slab_free(void *arg, void *memory) {
  slab *s = arg;
  block_header *b =
      (block_header *)(void *)((char *)memory - offsetof(block_header, future));
  ck_assert_int_eq(b->tag, 77);
  s->frees++;
  if (s->ctx != NULL) {
    s->cleanups_at_free = atomic_load(&s->ctx->cleanups);
  }
  b->next = s->free_list;
  s->free_list = b;
}

START_TEST(allocator_supplies_and_recycles_future_memory) {
  slab s = {0};
  concur_future_allocator a = CONCUR_FUTURE_ALLOCATOR_INIT;
  a.alloc = slab_alloc;
  a.free = slab_free;
  a.arg = &s;
  for (int i = 0; i < 10; i++) {
    task_ctx c = {.value = VALUE};
    s.ctx = &c;
    concur_future *f = NULL;
    ck_assert_rc(concur_future_new_full(&f, ctx_task, &c, ctx_cleanup, &a), 0);
    ck_assert_uint_eq(s.asked, concur_future_sizeof());
    ck_assert_rc(concur_future_run(f), 0);
    void *v = NULL;
    ck_assert_rc(concur_future_result(f, CONCUR_NOWAIT, &v), 0);
    ck_assert_ptr_eq(v, VALUE);
    concur_future_unref(f);
    ck_assert_int_eq(s.cleanups_at_free, 1); /* cleanup first, then free */
  }
  ck_assert_int_eq(s.allocs, 10);
  ck_assert_int_eq(s.frees, 10);
  ck_assert_int_eq(s.mallocs, 1); /* steady state: recycled, no malloc */
  s.fail = true;
  task_ctx c = {0};
  concur_future *f = NULL;
  ck_assert_rc(concur_future_new_full(&f, ctx_task, &c, ctx_cleanup, &a),
               CONCUR_ENOMEM);
  ck_assert_int_eq(atomic_load(&c.cleanups), 0); /* the caller keeps arg */
  a.size = sizeof a - 1;
  s.fail = false;
  ck_assert_rc(concur_future_new_full(&f, ctx_task, &c, ctx_cleanup, &a),
               CONCUR_EINVAL);
  free(s.free_list);
}
END_TEST

/* ---- the task runner
 * ----------------------------------------------------------------- */

START_TEST(run_errors_and_second_run) {
  ck_assert_rc(concur_future_run(NULL), CONCUR_EINVAL);
  concur_future *plain = make_pending();
  ck_assert_rc(concur_future_run(plain), CONCUR_EINVAL);
  concur_future_unref(plain);
  task_ctx c = {.value = VALUE};
  concur_future *f = make_task(&c);
  ck_assert_rc(concur_future_run(f), 0);
  ck_assert_rc(concur_future_run(f), CONCUR_ESTATE);
  ck_assert_int_eq(atomic_load(&c.runs), 1);
  concur_future_unref(f);
  /* A task future finished by hand, and a started one, are not run. */
  task_ctx d = {0};
  concur_future *g = make_task(&d);
  ck_assert_rc(concur_future_set_result(g, OTHER), 0);
  ck_assert_rc(concur_future_run(g), CONCUR_ESTATE);
  concur_future_unref(g);
  task_ctx e = {0};
  concur_future *h = make_task(&e);
  ck_assert_int_eq(concur_future_set_running_or_notify_cancel(h), 1);
  ck_assert_rc(concur_future_run(h), CONCUR_ESTATE);
  ck_assert_rc(concur_future_set_result(h, NULL), 0);
  concur_future_unref(h);
  ck_assert_int_eq(atomic_load(&d.runs) + atomic_load(&e.runs), 0);
}
END_TEST

START_TEST(run_on_cancelled_does_not_run_and_acknowledges) {
  task_ctx c = {0};
  concur_future *f = make_task(&c);
  ck_assert(concur_future_cancel(f));
  ck_assert_rc(concur_future_run(f), CONCUR_ECANCELED);
  ck_assert_rc(concur_future_run(f), CONCUR_ECANCELED);
  ck_assert_rc(concur_future_set_running_or_notify_cancel(f), CONCUR_ESTATE);
  ck_assert_int_eq(atomic_load(&c.runs), 0);
  concur_future_unref(f);
  ck_assert_int_eq(atomic_load(&c.cleanups), 1);
}
END_TEST

typedef struct nest {
  concur_future *inner;
  concur_future *outer_before, *outer_after, *inner_seen;
} nest;

static int inner_task(void *arg, void **result) {
  nest *n = arg;
  n->inner_seen = concur_future_current();
  *result = NULL;
  return 0;
}

static int outer_task(void *arg, void **result) {
  nest *n = arg;
  n->outer_before = concur_future_current();
  ignore_rc(concur_future_run(n->inner));
  n->outer_after = concur_future_current();
  *result = NULL;
  return 0;
}

START_TEST(current_future_follows_nested_runs) {
  ck_assert_ptr_null(concur_future_current());
  nest n = {0};
  concur_future *outer = NULL;
  ck_assert_rc(concur_future_new_task(&outer, outer_task, &n, NULL), 0);
  ck_assert_rc(concur_future_new_task(&n.inner, inner_task, &n, NULL), 0);
  ck_assert_rc(concur_future_run(outer), 0);
  ck_assert_ptr_eq(n.outer_before, outer);
  ck_assert_ptr_eq(n.inner_seen, n.inner);
  ck_assert_ptr_eq(n.outer_after, outer);
  ck_assert_ptr_null(concur_future_current());
  concur_future_unref(outer);
  concur_future_unref(n.inner);
}
END_TEST

static int message_task(void *arg, void **result) {
  int *rcs = arg;
  rcs[0] = concur_task_set_message("first");
  rcs[1] = concur_task_set_message("second");
  rcs[2] = concur_task_set_message(NULL);
  *result = NULL;
  return rcs[3];
}

START_TEST(task_set_message_replaces_and_is_dropped_on_success) {
  ck_assert_rc(concur_task_set_message("outside a task"), CONCUR_EINVAL);
  int rcs[4] = {0, 0, 0, 5};
  concur_future *f = NULL;
  ck_assert_rc(concur_future_new_task(&f, message_task, rcs, NULL), 0);
  ck_assert_rc(concur_future_run(f), 0);
  ck_assert_rc(rcs[0], 0);
  ck_assert_rc(rcs[1], 0);
  ck_assert_rc(rcs[2], CONCUR_EINVAL);
  int code = 0;
  const char *msg = NULL;
  ck_assert_rc(concur_future_exception(f, CONCUR_NOWAIT, &code, &msg), 0);
  ck_assert_int_eq(code, 5);
  ck_assert_str_eq(msg, "second");
  concur_future_unref(f);

  int ok[4] = {0, 0, 0, 0};
  ck_assert_rc(concur_future_new_task(&f, message_task, ok, NULL), 0);
  ck_assert_rc(concur_future_run(f), 0);
  ck_assert_rc(concur_future_exception(f, CONCUR_NOWAIT, &code, &msg), 0);
  ck_assert_int_eq(code, 0);
  ck_assert_ptr_null(msg); /* success drops it (ASan checks no leak) */
  concur_future_unref(f);
}
END_TEST

static int self_wait_task(void *arg, void **result) {
  int *rc = arg;
  rc[0] = concur_future_result(concur_future_current(), CONCUR_FOREVER, NULL);
  rc[1] = concur_future_exception(concur_future_current(), 1000, NULL, NULL);
  rc[2] = concur_future_result(concur_future_current(), CONCUR_NOWAIT, NULL);
  *result = NULL;
  return 0;
}

START_TEST(result_on_own_future_inside_its_task_is_edeadlk) {
  int rc[3] = {0, 0, 0};
  concur_future *f = NULL;
  ck_assert_rc(concur_future_new_task(&f, self_wait_task, rc, NULL), 0);
  ck_assert_rc(concur_future_run(f), 0);
  ck_assert_rc(rc[0], CONCUR_EDEADLK);
  ck_assert_rc(rc[1], CONCUR_EDEADLK);
  ck_assert_rc(rc[2], CONCUR_ETIMEDOUT); /* a poll never blocks */
  concur_future_unref(f);
}
END_TEST

/* ---- cooperative cancellation
 * ------------------------------------------------------------ */

typedef struct coop {
  latch started;
  int polls_before;
  bool saw_request;
} coop;

static int coop_task(void *arg, void **result) {
  coop *c = arg;
  c->polls_before = concur_task_cancel_requested() ? 1 : 0;
  latch_open(&c->started);
  /* Poll as a long computation would; the request comes promptly. */
  int64_t give_up = harness_now_ns() + HARNESS_LONG_NS;
  while (!concur_task_cancel_requested() && harness_now_ns() < give_up) {
    sched_yield();
  }
  c->saw_request = concur_task_cancel_requested();
  *result = NULL;
  return c->saw_request ? 99 : 0;
}

static void *coop_runner(void *arg) {
  ignore_rc(concur_future_run(arg));
  return NULL;
}

START_TEST(request_cancel_reaches_a_running_task) {
  coop c = {0};
  concur_future *f = NULL;
  ck_assert_rc(concur_future_new_task(&f, coop_task, &c, NULL), 0);
  pthread_t t = spawn(coop_runner, f);
  latch_wait(&c.started);
  ck_assert(!concur_future_cancel(f)); /* Python: running, cannot cancel */
  ck_assert(!concur_future_cancel_requested(f));
  ck_assert(concur_future_request_cancel(f));
  ck_assert(concur_future_cancel_requested(f));
  join(t);
  ck_assert_int_eq(c.polls_before, 0);
  ck_assert(c.saw_request);
  int code = 0;
  ck_assert_rc(concur_future_exception(f, CONCUR_NOWAIT, &code, NULL), 0);
  ck_assert_int_eq(code, 99);
  concur_future_snapshot s = CONCUR_FUTURE_SNAPSHOT_INIT;
  ck_assert_rc(concur_future_get_snapshot(f, &s), 0);
  ck_assert(s.cancel_requested);
  ck_assert(!concur_future_request_cancel(f)); /* finished by now */
  concur_future_unref(f);
}
END_TEST

START_TEST(request_cancel_on_pending_finished_and_null) {
  concur_future *p = make_pending();
  ck_assert(concur_future_request_cancel(p));
  ck_assert(concur_future_cancelled(p));
  concur_future *s = make_succeeded(VALUE);
  ck_assert(!concur_future_request_cancel(s));
  ck_assert(!concur_future_cancelled(s));
  ck_assert(!concur_future_request_cancel(NULL));
  ck_assert(!concur_future_cancel_requested(NULL));
  ck_assert(!concur_task_cancel_requested()); /* not in a task */
  concur_future_unref(p);
  concur_future_unref(s);
}
END_TEST

/* ---- the help hook
 * ------------------------------------------------------------------------- */

/* A one-slot "queue": the hook runs the task inline if it is still queued. */
typedef struct mini_queue {
  _Atomic int queued;
  _Atomic int hook_calls;
  latch *hold; /* when set, the hook blocks here first */
  latch in_hook;
  int cancel_inside; /* the hook cancels instead of running */
  int inner_rc;      /* result() on the same future inside the hook */
  bool check_inner;
} mini_queue;

static void queue_help(concur_future *f, void *arg) {
  mini_queue *q = arg;
  atomic_fetch_add(&q->hook_calls, 1);
  if (q->check_inner) {
    q->inner_rc = concur_future_result(f, CONCUR_FOREVER, NULL);
  }
  if (q->hold != NULL) {
    latch_open(&q->in_hook);
    latch_wait(q->hold);
  }
  int one = 1;
  if (atomic_compare_exchange_strong(&q->queued, &one, 0)) {
    if (q->cancel_inside) {
      ignore_rc(concur_future_cancel(f));
    } else {
      ignore_rc(concur_future_run(f));
    }
  }
}

START_TEST(help_runs_a_queued_task_inline_before_blocking) {
  task_ctx c = {.value = VALUE};
  concur_future *f = make_task(&c);
  mini_queue q = {.queued = 1};
  ck_assert_rc(concur_future_set_help(f, queue_help, &q), 0);
  /* A poll never helps. */
  ck_assert_rc(concur_future_result(f, CONCUR_NOWAIT, NULL), CONCUR_ETIMEDOUT);
  ck_assert_int_eq(atomic_load(&q.hook_calls), 0);
  void *v = NULL;
  ck_assert_rc(concur_future_result(f, CONCUR_FOREVER, &v), 0);
  ck_assert_ptr_eq(v, VALUE);
  ck_assert_int_eq(atomic_load(&q.hook_calls), 1);
  ck_assert(pthread_equal(c.ran_on, pthread_self()));
  /* Done: no more help calls. */
  ck_assert_rc(concur_future_result(f, CONCUR_FOREVER, &v), 0);
  ck_assert_int_eq(atomic_load(&q.hook_calls), 1);
  ck_assert_rc(concur_future_set_help(f, queue_help, &q), CONCUR_ESTATE);
  concur_future_unref(f);
}
END_TEST

START_TEST(help_is_called_by_exception_and_can_be_removed) {
  task_ctx c = {.ret = 4};
  concur_future *f = make_task(&c);
  mini_queue q = {.queued = 1};
  ck_assert_rc(concur_future_set_help(f, queue_help, &q), 0);
  ck_assert_rc(concur_future_set_help(f, NULL, NULL), 0);
  ck_assert_rc(concur_future_exception(f, 1000000, NULL, NULL),
               CONCUR_ETIMEDOUT);
  ck_assert_int_eq(atomic_load(&q.hook_calls), 0);
  ck_assert_rc(concur_future_set_help(f, queue_help, &q), 0);
  int code = 0;
  ck_assert_rc(concur_future_exception(f, CONCUR_FOREVER, &code, NULL), 0);
  ck_assert_int_eq(code, 4);
  ck_assert_int_eq(atomic_load(&q.hook_calls), 1);
  ck_assert_rc(concur_future_set_help(NULL, queue_help, &q), CONCUR_EINVAL);
  concur_future_unref(f);
}
END_TEST

START_TEST(help_hook_may_cancel_and_inner_wait_is_edeadlk) {
  task_ctx c = {0};
  concur_future *f = make_task(&c);
  mini_queue q = {.queued = 1, .cancel_inside = 1, .check_inner = true};
  ck_assert_rc(concur_future_set_help(f, queue_help, &q), 0);
  ck_assert_rc(concur_future_result(f, CONCUR_FOREVER, NULL), CONCUR_ECANCELED);
  ck_assert_rc(q.inner_rc, CONCUR_EDEADLK);
  ck_assert_int_eq(atomic_load(&c.runs), 0);
  concur_future_unref(f);
}
END_TEST

typedef struct starter {
  concur_future *f;
  _Atomic int returned;
  int rc;
} starter;

static void *starter_main(void *arg) {
  starter *s = arg;
  s->rc = concur_future_set_running_or_notify_cancel(s->f);
  atomic_store(&s->returned, 1);
  if (s->rc == 1) {
    ignore_rc(concur_future_set_result(s->f, OTHER));
  }
  return NULL;
}

START_TEST(a_future_does_not_start_while_a_help_call_is_in_progress) {
  concur_future *f = make_pending();
  latch hold = {0};
  mini_queue q = {.queued = 0, .hold = &hold}; /* nothing left to run */
  ck_assert_rc(concur_future_set_help(f, queue_help, &q), 0);
  waiter_rec w = {.f = f, .timeout_ns = CONCUR_FOREVER};
  pthread_t helper = spawn(waiter_main, &w);
  latch_wait(&q.in_hook);
  starter s = {.f = f};
  pthread_t worker = spawn(starter_main, &s);
  /* The worker's start waits for the help call to return. */
  ck_assert_rc(concur__test_await_parked(f, 1, HARNESS_LONG_NS), 0);
  ck_assert_int_eq(atomic_load(&s.returned), 0);
  ck_assert(!concur_future_running(f));
  latch_open(&hold);
  join(worker);
  join(helper);
  ck_assert_int_eq(s.rc, 1);
  ck_assert_rc(w.rc, 0);
  ck_assert_ptr_eq(w.value, OTHER);
  ck_assert_int_eq(atomic_load(&q.hook_calls), 1);
  concur_future_unref(f);
}
END_TEST

/* ---- detach
 * -------------------------------------------------------------------------------
 */

START_TEST(detach_takes_back_a_pending_task_without_cleanup) {
  task_ctx c = {0};
  concur_future *f = make_task(&c);
  concur_task_fn fn = NULL;
  void *arg = NULL;
  ck_assert_rc(concur_future_detach_task(f, &fn, &arg), 0);
  ck_assert_ptr_eq((void *)(uintptr_t)fn, (void *)(uintptr_t)ctx_task);
  ck_assert_ptr_eq(arg, &c);
  ck_assert(concur_future_cancelled(f));
  ck_assert_rc(concur_future_detach_task(f, NULL, NULL), CONCUR_ESTATE);
  ck_assert_rc(concur_future_run(f), CONCUR_ECANCELED);
  concur_future_unref(f);
  ck_assert_int_eq(atomic_load(&c.cleanups), 0);
  ck_assert_int_eq(atomic_load(&c.runs), 0);
}
END_TEST

START_TEST(detach_refuses_started_finished_and_plain_futures) {
  task_ctx c = {0};
  concur_future *f = make_task(&c);
  ck_assert_rc(concur_future_run(f), 0);
  ck_assert_rc(concur_future_detach_task(f, NULL, NULL), CONCUR_ESTATE);
  concur_future_unref(f);
  ck_assert_int_eq(atomic_load(&c.cleanups), 1); /* the rule stands */
  task_ctx d = {0};
  concur_future *g = make_task(&d);
  ck_assert_int_eq(concur_future_set_running_or_notify_cancel(g), 1);
  ck_assert_rc(concur_future_detach_task(g, NULL, NULL), CONCUR_ESTATE);
  ck_assert_rc(concur_future_set_result(g, NULL), 0);
  concur_future_unref(g);
  ck_assert_int_eq(atomic_load(&d.cleanups), 1);
  concur_future *p = make_pending();
  ck_assert_rc(concur_future_detach_task(p, NULL, NULL), CONCUR_EINVAL);
  ck_assert_rc(concur_future_detach_task(NULL, NULL, NULL), CONCUR_EINVAL);
  ck_assert(!concur_future_done(p));
  concur_future_unref(p);
}
END_TEST

Suite *concur_test_suite(void) {
  Suite *s = suite_create("future");
  TCase *tc = harness_tcase("state", 30);
  tcase_add_test(tc, FUT_01_cancel_pending_then_again_returns_true);
  tcase_add_test(tc, FUT_01_cancel_running_or_finished_returns_false);
  tcase_add_test(tc, FUT_01_predicates_in_every_state);
  tcase_add_test(tc, FUT_02_poll_in_every_state);
  tcase_add_test(tc, FUT_02_extreme_timeouts);
  tcase_add_test(tc, FUT_02_timed_wait_window);
  tcase_add_test(tc, FUT_02_null_future_is_einval);
  tcase_add_test(tc, FUT_03_result_blocks_until_set_result);
  tcase_add_test(tc, FUT_03_result_blocks_until_set_exception);
  tcase_add_test(tc, FUT_03_result_blocks_until_cancel);
  tcase_add_test(tc, FUT_03_exception_blocks_until_success_or_failure);
  tcase_add_test(tc, FUT_03_many_waiters_all_wake);
  tcase_add_test(tc, FUT_03_task_run_by_another_thread_completes_waiter);
  tcase_add_test(tc, FUT_04_set_result_twice_keeps_the_first);
  tcase_add_test(tc, FUT_04_set_exception_twice_keeps_the_first);
  tcase_add_test(tc, FUT_04_set_on_cancelled_is_estate);
  tcase_add_test(tc, FUT_04_set_while_run_owns_it_is_estate);
  tcase_add_test(tc, FUT_04_set_errors);
  suite_add_tcase(s, tc);

  tc = harness_tcase("callbacks", 30);
  tcase_add_test(tc, FUT_05_callback_runs_on_result);
  tcase_add_test(tc, FUT_05_callback_runs_on_exception);
  tcase_add_test(tc, FUT_05_callback_runs_on_cancel);
  tcase_add_test(tc, FUT_05_callback_added_when_done_runs_at_once_in_caller);
  tcase_add_test(tc, FUT_05_callbacks_run_in_registration_order);
  tcase_add_test(tc, FUT_05_callback_runs_in_completing_thread);
  tcase_add_test(tc, FUT_05_callback_may_drop_the_last_reference);
  tcase_add_test(tc, FUT_05_abandoned_pending_future_drops_callbacks_unrun);
  tcase_add_test(tc, FUT_05_add_done_callback_errors);
  tcase_add_test(tc, FUT_06_callback_added_during_completion_runs_once);
  suite_add_tcase(s, tc);

  tc = harness_tcase("snapshot_and_protocol", 60);
  tcase_add_test(tc, FUT_07_snapshot_in_every_state);
  tcase_add_test(tc, FUT_07_snapshot_errors);
  tcase_add_test(tc, FUT_07_snapshot_is_atomic_under_concurrent_completion);
  tcase_add_test(tc, FUT_08_set_running_moves_pending_to_running_once);
  tcase_add_test(tc,
                 FUT_08_set_running_on_cancelled_returns_0_and_waiters_wake);
  tcase_add_test(tc, FUT_08_set_running_on_finished_or_null);
  tcase_add_test(tc, FUT_09_any_nonzero_code_is_a_failure);
  tcase_add_test(tc, FUT_09_empty_message_is_kept);
  tcase_add_test(tc, FUT_10_task_writes_are_visible_to_the_result_reader);
  tcase_add_test(tc, FUT_10_set_result_writes_are_visible_to_every_observer);
  suite_add_tcase(s, tc);

  tc = harness_tcase("ownership", 30);
  tcase_add_test(tc, ref_and_unref_basics);
  tcase_add_test(tc, cleanup_runs_once_at_last_unref_after_success);
  tcase_add_test(tc, cleanup_gets_the_result_of_a_failed_task);
  tcase_add_test(tc, cleanup_runs_for_a_cancelled_task_that_never_ran);
  tcase_add_test(tc, cleanup_on_a_future_without_task_gets_the_set_value);
  tcase_add_test(tc, constructors_reject_bad_arguments);
  tcase_add_test(tc, allocator_supplies_and_recycles_future_memory);
  suite_add_tcase(s, tc);

  tc = harness_tcase("executor_side", 30);
  tcase_add_test(tc, run_errors_and_second_run);
  tcase_add_test(tc, run_on_cancelled_does_not_run_and_acknowledges);
  tcase_add_test(tc, current_future_follows_nested_runs);
  tcase_add_test(tc, task_set_message_replaces_and_is_dropped_on_success);
  tcase_add_test(tc, result_on_own_future_inside_its_task_is_edeadlk);
  tcase_add_test(tc, request_cancel_reaches_a_running_task);
  tcase_add_test(tc, request_cancel_on_pending_finished_and_null);
  tcase_add_test(tc, help_runs_a_queued_task_inline_before_blocking);
  tcase_add_test(tc, help_is_called_by_exception_and_can_be_removed);
  tcase_add_test(tc, help_hook_may_cancel_and_inner_wait_is_edeadlk);
  tcase_add_test(tc, a_future_does_not_start_while_a_help_call_is_in_progress);
  tcase_add_test(tc, detach_takes_back_a_pending_task_without_cleanup);
  tcase_add_test(tc, detach_refuses_started_finished_and_plain_futures);
  suite_add_tcase(s, tc);
  return s;
}
