/*
 * The executor interface (src/executor/executor.c), the inline backend, and
 * the algorithms apply, invoke_all, invoke_any, parallel_for and task
 * groups, on every backend of the test matrix (the inline executor and a
 * test-only threaded backend, test_executor_backend.h). Map and imap are in
 * test_executor_map.c.
 */
#include "harness.h"

#include "concur/executor.h"
#include "test_executor_backend.h"

#include <pthread.h>
#include <string.h>

/* ======================================================================== */
/* Argument checking of the public calls                                    */

START_TEST(interface_rejects_null_and_bad_arguments) {
  concur_executor *ex = make_exec(KIND_INLINE);
  concur_future *f = (concur_future *)&f;
  ck_assert_rc(concur_executor_submit(NULL, task_echo, NULL, &f),
               CONCUR_EINVAL);
  ck_assert_ptr_null(f);
  f = (concur_future *)&f;
  ck_assert_rc(concur_executor_submit(ex, NULL, NULL, &f), CONCUR_EINVAL);
  ck_assert_ptr_null(f);
  ck_assert_rc(concur_executor_submit(ex, NULL, NULL, NULL), CONCUR_EINVAL);

  concur_task t = CONCUR_TASK_INIT(task_echo, NULL);
  ck_assert_rc(concur_executor_submit_task(NULL, &t, NULL), CONCUR_EINVAL);
  ck_assert_rc(concur_executor_submit_task(ex, NULL, NULL), CONCUR_EINVAL);
  t.size = sizeof t - 1;
  f = (concur_future *)&f;
  ck_assert_rc(concur_executor_submit_task(ex, &t, &f), CONCUR_EINVAL);
  ck_assert_ptr_null(f);
  t.size = sizeof t;
  t.fn = NULL;
  ck_assert_rc(concur_executor_submit_task(ex, &t, NULL), CONCUR_EINVAL);

  ck_assert_int_eq(concur_executor_parallelism(NULL), 0);
  ck_assert_int_eq(concur_executor_parallelism(ex), 1);
  ck_assert_rc(concur_executor_help(NULL), CONCUR_EINVAL);
  ck_assert_rc(concur_executor_help(ex), 0);
  ck_assert_rc(concur_executor_shutdown(NULL, 0), CONCUR_EINVAL);
  ck_assert_rc(concur_executor_shutdown(ex, 1u << 5), CONCUR_EINVAL);
  ck_assert(!concur_executor_is_shutdown(ex));
  ck_assert_rc(concur_executor_shutdown_now(NULL, NULL, NULL), CONCUR_EINVAL);
  ck_assert_rc(concur_executor_await_termination(NULL, 0), CONCUR_EINVAL);
  ck_assert_rc(concur_executor_await_termination(ex, -1), CONCUR_EINVAL);
  ck_assert_rc(concur_executor_await_termination(ex, 0), CONCUR_ESTATE);
  ck_assert(!concur_executor_is_shutdown(NULL));
  ck_assert(!concur_executor_is_terminated(NULL));
  ck_assert(!concur_executor_is_terminated(ex));
  concur_executor_stats st = CONCUR_EXECUTOR_STATS_INIT;
  ck_assert_rc(concur_executor_get_stats(NULL, &st), CONCUR_EINVAL);
  ck_assert_rc(concur_executor_get_stats(ex, NULL), CONCUR_EINVAL);
  st.size = sizeof st - 1;
  ck_assert_rc(concur_executor_get_stats(ex, &st), CONCUR_EINVAL);
  st.size = sizeof st;
  ck_assert_rc(concur_executor_get_stats(ex, &st), 0);
  ck_assert_uint_eq(st.submitted, 0);
  ck_assert_uint_eq(st.rejected, 0); /* argument errors are not submits */
  ck_assert_rc(concur_inline_executor_new(NULL), CONCUR_EINVAL);
  concur_executor_free(NULL);
  concur_executor_free(ex);
}
END_TEST

/* ======================================================================== */
/* The inline backend                                                       */

static int task_record_thread(void *arg, void **result) {
  *(pthread_t *)arg = pthread_self();
  *result = concur_future_current();
  return 0;
}

START_TEST(inline_runs_each_task_in_the_caller_inside_submit) {
  concur_executor *ex = make_exec(KIND_INLINE);
  pthread_t ran_on;
  concur_future *f = NULL;
  ck_assert_rc(concur_executor_submit(ex, task_record_thread, &ran_on, &f), 0);
  ck_assert(pthread_equal(ran_on, pthread_self()));
  ck_assert(concur_future_done(f));
  void *r = NULL;
  ck_assert_rc(concur_future_result(f, CONCUR_NOWAIT, &r), 0);
  ck_assert_ptr_eq(r, f); /* the task ran as its future's current task */
  concur_future_unref(f);
  concur_executor_free(ex);
}
END_TEST

static int task_with_message(void *arg, void **result) {
  (void)arg;
  (void)result;
  if (concur_task_set_message("boom") != 0) {
    return 1;
  }
  return 77;
}

START_TEST(inline_failure_keeps_code_and_message) {
  concur_executor *ex = make_exec(KIND_INLINE);
  concur_future *f = NULL;
  ck_assert_rc(concur_executor_submit(ex, task_with_message, NULL, &f), 0);
  int code = 0;
  const char *msg = NULL;
  ck_assert_rc(concur_future_result(f, 0, NULL), CONCUR_ETASK);
  ck_assert_rc(concur_future_exception(f, 0, &code, &msg), 0);
  ck_assert_int_eq(code, 77);
  ck_assert_str_eq(msg, "boom");
  concur_future_unref(f);
  concur_executor_free(ex);
}
END_TEST

START_TEST(inline_cleanup_rule_fire_and_forget_and_future) {
  concur_executor *ex = make_exec(KIND_INLINE);
  atomic_store(&cleanups, 0);
  atomic_store(&cleanups_with_result, 0);
  concur_task t = CONCUR_TASK_INIT(task_echo, &t);
  t.cleanup = count_cleanup;
  /* No future: the cleanup runs at once after the task. */
  ck_assert_rc(concur_executor_submit_task(ex, &t, NULL), 0);
  ck_assert_int_eq(atomic_load(&cleanups), 1);
  ck_assert_int_eq(atomic_load(&cleanups_with_result), 1);
  /* A future: at its last unref, with the result still readable before. */
  concur_future *f = NULL;
  ck_assert_rc(concur_executor_submit_task(ex, &t, &f), 0);
  ck_assert_int_eq(atomic_load(&cleanups), 1);
  void *r = NULL;
  ck_assert_rc(concur_future_result(f, 0, &r), 0);
  ck_assert_ptr_eq(r, &t);
  concur_future_unref(f);
  ck_assert_int_eq(atomic_load(&cleanups), 2);
  concur_executor_free(ex);
}
END_TEST

START_TEST(inline_stats_add_up) {
  concur_executor *ex = make_exec(KIND_INLINE);
  for (intptr_t i = 0; i < 10; i++) {
    ck_assert_rc(concur_executor_submit(ex, task_odd_fails, (void *)i, NULL),
                 0);
  }
  ck_assert_rc(concur_executor_shutdown(ex, 0), 0);
  ck_assert_rc(concur_executor_submit(ex, task_echo, NULL, NULL),
               CONCUR_ESHUTDOWN);
  concur_executor_stats st = CONCUR_EXECUTOR_STATS_INIT;
  ck_assert_rc(concur_executor_get_stats(ex, &st), 0);
  ck_assert_uint_eq(st.submitted, 10);
  ck_assert_uint_eq(st.completed, 5);
  ck_assert_uint_eq(st.failed, 5);
  ck_assert_uint_eq(st.cancelled, 0);
  ck_assert_uint_eq(st.queued + st.running, 0);
  ck_assert_uint_eq(st.rejected, 1);
  ck_assert_uint_eq(st.largest, 1);
  ck_assert_uint_eq(st.submitted, st.queued + st.running + st.completed +
                                      st.failed + st.cancelled);
  concur_executor_free(ex);
}
END_TEST

/* A thread that submits one gated task to an executor. */
typedef struct submitter {
  concur_executor *ex;
  gate *g;
  int rc;
  void *result;
  pthread_t thread;
} submitter;

static void *submit_gate_thread(void *arg) {
  submitter *s = arg;
  concur_future *f = NULL;
  s->rc = concur_executor_submit(s->ex, task_gate, s->g, &f);
  if (s->rc == 0) {
    s->rc = concur_future_result(f, CONCUR_FOREVER, &s->result);
    concur_future_unref(f);
  }
  return NULL;
}

typedef struct shutter {
  concur_executor *ex;
  unsigned flags;
  int rc;
  pthread_t thread;
} shutter;

static void *shutdown_thread(void *arg) {
  shutter *s = arg;
  s->rc = concur_executor_shutdown(s->ex, s->flags);
  return NULL;
}

START_TEST(EXE_14_inline_shutdown_while_another_thread_is_inside_submit) {
  concur_executor *ex = make_exec(KIND_INLINE);
  gate g;
  gate_init(&g);
  submitter s = {ex, &g, -1, NULL, 0};
  pthread_create(&s.thread, NULL, submit_gate_thread, &s);
  ck_assert_rc(concur_event_wait(g.started, HARNESS_LONG_NS), 0);
  /* No wait: returns at once although a task runs inside submit. */
  ck_assert_rc(concur_executor_shutdown(ex, 0), 0);
  ck_assert(concur_executor_is_shutdown(ex));
  ck_assert(!concur_executor_is_terminated(ex));
  ck_assert_rc(concur_executor_submit(ex, task_echo, NULL, NULL),
               CONCUR_ESHUTDOWN);
  /* With wait: blocks until the running task ends. */
  shutter sh = {ex, CONCUR_SHUTDOWN_WAIT, -1, 0};
  pthread_create(&sh.thread, NULL, shutdown_thread, &sh);
  ck_assert_rc(concur__test_await_parked(ex, 1, HARNESS_LONG_NS), 0);
  ck_assert(!concur_executor_is_terminated(ex));
  int64_t t0 = harness_now_ns();
  ck_assert_rc(concur_executor_await_termination(ex, 20000000),
               CONCUR_ETIMEDOUT);
  HARNESS_ASSERT_TIMED_OUT(harness_now_ns() - t0, 20000000);
  (void)concur_event_set(g.open);
  pthread_join(sh.thread, NULL);
  pthread_join(s.thread, NULL);
  ck_assert_rc(sh.rc, 0);
  ck_assert_rc(s.rc, 0); /* the accepted task completed normally */
  ck_assert_ptr_eq(s.result, &g);
  ck_assert(concur_executor_is_terminated(ex));
  ck_assert_rc(concur_executor_await_termination(ex, 0), 0);
  gate_destroy(&g);
  concur_executor_free(ex);
}
END_TEST

static int task_shutdown_wait_self(void *arg, void **result) {
  (void)result;
  return concur_executor_shutdown(arg, CONCUR_SHUTDOWN_WAIT) == CONCUR_EDEADLK
             ? 0
             : 1;
}

START_TEST(inline_shutdown_wait_from_own_task_is_edeadlk) {
  concur_executor *ex = make_exec(KIND_INLINE);
  concur_future *f = NULL;
  ck_assert_rc(concur_executor_submit(ex, task_shutdown_wait_self, ex, &f), 0);
  ck_assert_rc(concur_future_result(f, 0, NULL), 0);
  concur_future_unref(f);
  ck_assert(concur_executor_is_shutdown(ex));
  ck_assert(concur_executor_is_terminated(ex));
  concur_executor_free(ex);
}
END_TEST

typedef struct unrun_log {
  int calls;
} unrun_log;

static void log_unrun(void *ctx, concur_task_fn fn, void *arg) {
  (void)fn;
  (void)arg;
  ((unrun_log *)ctx)->calls++;
}

START_TEST(inline_shutdown_now_asks_running_tasks_to_stop) {
  concur_executor *ex = make_exec(KIND_INLINE);
  gate g;
  gate_init(&g);
  submitter s = {ex, &g, -1, NULL, 0};
  pthread_create(&s.thread, NULL, submit_gate_thread, &s);
  ck_assert_rc(concur_event_wait(g.started, HARNESS_LONG_NS), 0);
  unrun_log log = {0};
  ck_assert_int_eq(concur_executor_shutdown_now(ex, log_unrun, &log), 0);
  ck_assert_int_eq(log.calls, 0); /* nothing is ever queued inline */
  (void)concur_event_set(g.open);
  pthread_join(s.thread, NULL);
  ck_assert_rc(s.rc, 0);
  ck_assert_int_eq(atomic_load(&g.saw_cancel_request), 1);
  ck_assert_rc(concur_executor_await_termination(ex, HARNESS_LONG_NS), 0);
  /* shutdown after shutdown_now is fine (EXE-06). */
  ck_assert_rc(concur_executor_shutdown(ex, CONCUR_SHUTDOWN_WAIT), 0);
  gate_destroy(&g);
  concur_executor_free(ex);
}
END_TEST

/* ======================================================================== */
/* Executor scenarios over the matrix                                       */

/* The one-worker backends, for tests that hold the only worker. */
static const int one_worker[] = {KIND_THREADS1, KIND_POOL1};
#define ONE_WORKER_COUNT 2

START_TEST(EXE_01_submit_after_shutdown_is_rejected_and_caller_keeps_arg) {
  concur_executor *ex = make_exec(_i);
  atomic_store(&cleanups, 0);
  ck_assert_rc(concur_executor_shutdown(ex, CONCUR_SHUTDOWN_WAIT), 0);
  concur_task t = CONCUR_TASK_INIT(task_echo, NULL);
  t.cleanup = count_cleanup;
  concur_future *f = (concur_future *)&f;
  ck_assert_rc(concur_executor_submit_task(ex, &t, &f), CONCUR_ESHUTDOWN);
  ck_assert_ptr_null(f);
  ck_assert_rc(concur_executor_submit(ex, task_echo, NULL, NULL),
               CONCUR_ESHUTDOWN);
  ck_assert_int_eq(atomic_load(&cleanups), 0);
  concur_executor_stats st = CONCUR_EXECUTOR_STATS_INIT;
  ck_assert_rc(concur_executor_get_stats(ex, &st), 0);
  ck_assert_uint_eq(st.rejected, 2);
  ck_assert_uint_eq(st.submitted, 0);
  concur_executor_free(ex);
}
END_TEST

START_TEST(EXE_02_shutdown_wait_returns_after_every_queued_task_ran) {
  concur_executor *ex = make_exec(_i);
  _Atomic long runs = 0;
  for (int i = 0; i < 50; i++) {
    ck_assert_rc(concur_executor_submit(ex, task_count, &runs, NULL), 0);
  }
  ck_assert_rc(concur_executor_shutdown(ex, CONCUR_SHUTDOWN_WAIT), 0);
  ck_assert_int_eq(atomic_load(&runs), 50);
  ck_assert(concur_executor_is_terminated(ex));
  concur_executor_free(ex);
}
END_TEST

START_TEST(EXE_03_cancel_futures_cancels_queued_not_running) {
  /* One worker held by a gated task, 50 queued behind it. */
  concur_executor *ex = make_exec(one_worker[_i]);
  gate g;
  gate_init(&g);
  concur_future *running = NULL;
  ck_assert_rc(concur_executor_submit(ex, task_gate, &g, &running), 0);
  ck_assert_rc(concur_event_wait(g.started, HARNESS_LONG_NS), 0);
  concur_future *fs[50];
  _Atomic long runs = 0;
  for (int i = 0; i < 50; i++) {
    ck_assert_rc(concur_executor_submit(ex, task_count, &runs, &fs[i]), 0);
  }
  ck_assert_rc(concur_executor_shutdown(ex, CONCUR_SHUTDOWN_CANCEL_FUTURES), 0);
  (void)concur_event_set(g.open);
  ck_assert_rc(concur_executor_await_termination(ex, HARNESS_LONG_NS), 0);
  int cancelled = 0;
  for (int i = 0; i < 50; i++) {
    cancelled += concur_future_cancelled(fs[i]);
    concur_future_unref(fs[i]);
  }
  ck_assert_int_gt(cancelled, 20);
  ck_assert_int_eq(atomic_load(&runs) + cancelled, 50);
  ck_assert_rc(concur_future_result(running, 0, NULL), 0);
  concur_future_unref(running);
  gate_destroy(&g);
  concur_executor_free(ex);
}
END_TEST

START_TEST(EXE_04_shutdown_without_wait_returns_at_once_work_still_runs) {
  concur_executor *ex = make_exec(_i);
  gate g;
  gate_init(&g);
  concur_future *f = NULL;
  if (_i == KIND_INLINE) {
    (void)concur_event_set(g.open);
  }
  ck_assert_rc(concur_executor_submit(ex, task_gate, &g, &f), 0);
  ck_assert_rc(concur_executor_shutdown(ex, 0), 0);
  ck_assert(concur_executor_is_shutdown(ex));
  (void)concur_event_set(g.open);
  ck_assert_rc(concur_future_result(f, HARNESS_LONG_NS, NULL), 0);
  ck_assert_rc(concur_executor_await_termination(ex, HARNESS_LONG_NS), 0);
  ck_assert(concur_executor_is_terminated(ex));
  concur_future_unref(f);
  gate_destroy(&g);
  concur_executor_free(ex);
}
END_TEST

START_TEST(EXE_05_submit_cancel_then_shutdown_wait_does_not_hang) {
  concur_executor *ex = make_exec(_i);
  _Atomic long runs = 0;
  concur_future *f = NULL;
  ck_assert_rc(concur_executor_submit(ex, task_count, &runs, &f), 0);
  (void)concur_future_cancel(f);
  ck_assert_rc(concur_executor_shutdown(ex, CONCUR_SHUTDOWN_WAIT), 0);
  ck_assert(concur_future_done(f));
  concur_executor_stats st = CONCUR_EXECUTOR_STATS_INIT;
  ck_assert_rc(concur_executor_get_stats(ex, &st), 0);
  ck_assert_uint_eq(st.completed + st.cancelled, 1);
  ck_assert_int_eq(atomic_load(&runs), (long)st.completed);
  concur_future_unref(f);
  concur_executor_free(ex);
}
END_TEST

START_TEST(EXE_06_shutdown_is_idempotent_and_shutdown_now_after_it_is_fine) {
  concur_executor *ex = make_exec(_i);
  ck_assert_rc(concur_executor_shutdown(ex, 0), 0);
  ck_assert_rc(concur_executor_shutdown(ex, 0), 0);
  ck_assert_rc(concur_executor_shutdown(ex, CONCUR_SHUTDOWN_WAIT), 0);
  ck_assert_int_eq(concur_executor_shutdown_now(ex, NULL, NULL), 0);
  ck_assert_rc(concur_executor_shutdown(ex, CONCUR_SHUTDOWN_WAIT |
                                                CONCUR_SHUTDOWN_CANCEL_FUTURES),
               0);
  ck_assert(concur_executor_is_terminated(ex));
  concur_executor_free(ex);
}
END_TEST

START_TEST(EXE_07_free_without_shutdown_runs_every_task) {
  concur_executor *ex = make_exec(_i);
  _Atomic long runs = 0;
  for (int i = 0; i < 100; i++) {
    ck_assert_rc(concur_executor_submit(ex, task_count, &runs, NULL), 0);
  }
  concur_executor_free(ex);
  ck_assert_int_eq(atomic_load(&runs), 100);
}
END_TEST

START_TEST(EXE_09_args_and_results_released_once_future_dropped) {
  concur_executor *ex = make_exec(_i);
  atomic_store(&cleanups, 0);
  atomic_store(&cleanups_with_result, 0);
  concur_task t = CONCUR_TASK_INIT(task_echo, &t);
  t.cleanup = count_cleanup;
  concur_future *fs[20];
  for (int i = 0; i < 20; i++) {
    ck_assert_rc(concur_executor_submit_task(ex, &t, &fs[i]), 0);
  }
  for (int i = 0; i < 20; i++) {
    void *r = NULL;
    ck_assert_rc(concur_future_result(fs[i], HARNESS_LONG_NS, &r), 0);
    ck_assert_ptr_eq(r, &t);
  }
  /* Done, but still referenced: not released yet. */
  ck_assert_rc(concur_executor_shutdown(ex, CONCUR_SHUTDOWN_WAIT), 0);
  ck_assert_int_eq(atomic_load(&cleanups), 0);
  for (int i = 0; i < 20; i++) {
    concur_future_unref(fs[i]);
  }
  ck_assert_int_eq(atomic_load(&cleanups), 20);
  ck_assert_int_eq(atomic_load(&cleanups_with_result), 20);
  concur_executor_free(ex);
}
END_TEST

START_TEST(EXE_12_failing_tasks_are_counted_exactly) {
  concur_executor *ex = make_exec(_i);
  for (intptr_t i = 0; i < 200; i++) {
    ck_assert_rc(concur_executor_submit(ex, task_odd_fails, (void *)i, NULL),
                 0);
  }
  ck_assert_rc(concur_executor_shutdown(ex, CONCUR_SHUTDOWN_WAIT), 0);
  concur_executor_stats st = CONCUR_EXECUTOR_STATS_INIT;
  ck_assert_rc(concur_executor_get_stats(ex, &st), 0);
  ck_assert_uint_eq(st.submitted, 200);
  ck_assert_uint_eq(st.completed, 100);
  ck_assert_uint_eq(st.failed, 100);
  ck_assert_uint_eq(st.submitted, st.queued + st.running + st.completed +
                                      st.failed + st.cancelled);
  concur_executor_free(ex);
}
END_TEST

/* EXE-13: a task waiting on work of its own saturated executor. */
typedef struct nested {
  concur_executor *ex;
  int which;
  int rc;
  long value;
} nested;

static int nested_body(void *arg, int64_t lo, int64_t hi) {
  atomic_fetch_add((_Atomic long *)arg, (long)(hi - lo));
  return 0;
}

static int task_wait_own(void *arg, void **result) {
  (void)result;
  nested *n = arg;
  _Atomic long count = 0;
  switch (n->which) {
  case 0: { /* a future of its own executor */
    concur_future *f = NULL;
    n->rc = concur_executor_submit(n->ex, task_count, &count, &f);
    if (n->rc == 0) {
      n->rc = concur_future_result(f, HARNESS_LONG_NS, NULL);
      concur_future_unref(f);
    }
    break;
  }
  case 1: { /* a task group */
    concur_task_group *g = NULL;
    n->rc = concur_task_group_new(&g, n->ex);
    for (int i = 0; i < 10 && n->rc == 0; i++) {
      n->rc = concur_task_group_submit(g, task_count, &count);
    }
    if (n->rc == 0) {
      n->rc = concur_task_group_wait(g, HARNESS_LONG_NS, NULL);
    }
    concur_task_group_free(g);
    break;
  }
  case 2: /* parallel_for */
    n->rc =
        concur_executor_parallel_for(n->ex, 0, 1000, nested_body, &count, NULL);
    break;
  case 3: /* apply */
    n->rc = concur_executor_apply(n->ex, task_count, &count, HARNESS_LONG_NS,
                                  NULL, NULL);
    break;
  default: { /* invoke_any */
    concur_task ts[3] = {CONCUR_TASK_INIT(task_count, &count),
                         CONCUR_TASK_INIT(task_count, &count),
                         CONCUR_TASK_INIT(task_count, &count)};
    n->rc = concur_executor_invoke_any(n->ex, ts, 3, HARNESS_LONG_NS, NULL,
                                       NULL, NULL);
    break;
  }
  }
  n->value = atomic_load(&count);
  return 0;
}

START_TEST(EXE_13_task_waiting_on_its_own_one_worker_executor_helps) {
  for (int which = 0; which < 5; which++) {
    concur_executor *ex = make_exec(_i);
    nested n = {ex, which, -1, 0};
    concur_future *f = NULL;
    ck_assert_rc(concur_executor_submit(ex, task_wait_own, &n, &f), 0);
    ck_assert_rc(concur_future_result(f, HARNESS_LONG_NS, NULL), 0);
    ck_assert_msg(n.rc == 0, "case %d: %s", which, concur_err_name(n.rc));
    long want[] = {1, 10, 1000, 1, 1};
    ck_assert_int_ge(n.value, want[which] > 1 ? want[which] : 1);
    concur_future_unref(f);
    concur_executor_free(ex);
  }
}
END_TEST

/* ======================================================================== */
/* apply                                                                    */

START_TEST(apply_returns_result_code_and_errors) {
  concur_executor *ex = make_exec(_i);
  void *r = NULL;
  int code = -1;
  ck_assert_rc(
      concur_executor_apply(ex, task_echo, &r, CONCUR_FOREVER, &r, &code), 0);
  ck_assert_ptr_eq(r, &r);
  ck_assert_int_eq(code, 0);
  ck_assert_rc(concur_executor_apply(ex, task_fail, (void *)(intptr_t)-7,
                                     HARNESS_LONG_NS, &r, &code),
               CONCUR_ETASK);
  ck_assert_int_eq(code, -7);
  ck_assert_ptr_null(r);
  ck_assert_rc(concur_executor_apply(NULL, task_echo, NULL, 0, NULL, NULL),
               CONCUR_EINVAL);
  ck_assert_rc(concur_executor_apply(ex, NULL, NULL, 0, NULL, NULL),
               CONCUR_EINVAL);
  ck_assert_rc(concur_executor_apply(ex, task_echo, NULL, -1, NULL, NULL),
               CONCUR_EINVAL);
  ck_assert_rc(concur_executor_apply_task(ex, NULL, 0, NULL, NULL),
               CONCUR_EINVAL);
  concur_task small = CONCUR_TASK_INIT(task_echo, NULL);
  small.size = 1;
  ck_assert_rc(concur_executor_apply_task(ex, &small, 0, NULL, NULL),
               CONCUR_EINVAL);
  atomic_store(&cleanups, 0);
  ck_assert_rc(concur_executor_shutdown(ex, CONCUR_SHUTDOWN_WAIT), 0);
  concur_task t = CONCUR_TASK_INIT(task_echo, &t);
  t.cleanup = count_cleanup;
  ck_assert_rc(concur_executor_apply_task(ex, &t, CONCUR_FOREVER, &r, NULL),
               CONCUR_ESHUTDOWN);
  ck_assert_int_eq(atomic_load(&cleanups), 0); /* caller keeps arg */
  concur_executor_free(ex);
}
END_TEST

START_TEST(apply_cleanup_gets_null_for_a_result_handed_out) {
  concur_executor *ex = make_exec(_i);
  atomic_store(&cleanups, 0);
  atomic_store(&cleanups_with_result, 0);
  concur_task t = CONCUR_TASK_INIT(task_echo, &t);
  t.cleanup = count_cleanup;
  void *r = NULL;
  ck_assert_rc(concur_executor_apply_task(ex, &t, HARNESS_LONG_NS, &r, NULL),
               0);
  ck_assert_ptr_eq(r, &t);
  ck_assert_rc(concur_executor_shutdown(ex, CONCUR_SHUTDOWN_WAIT), 0);
  ck_assert_int_eq(atomic_load(&cleanups), 1);
  ck_assert_int_eq(atomic_load(&cleanups_with_result), 0);
  concur_executor_free(ex);
  /* Not taken (result NULL): the cleanup frees the result. */
  ex = make_exec(_i);
  ck_assert_rc(concur_executor_apply_task(ex, &t, HARNESS_LONG_NS, NULL, NULL),
               0);
  ck_assert_rc(concur_executor_shutdown(ex, CONCUR_SHUTDOWN_WAIT), 0);
  ck_assert_int_eq(atomic_load(&cleanups), 2);
  ck_assert_int_eq(atomic_load(&cleanups_with_result), 1);
  concur_executor_free(ex);
}
END_TEST

START_TEST(apply_timeout_leaves_task_running_and_asks_it_to_stop) {
  concur_executor *ex = make_exec(_i); /* waiters never help: see below */
  gate g;
  gate_init(&g);
  atomic_store(&cleanups, 0);
  concur_task t = CONCUR_TASK_INIT(task_gate, &g);
  t.cleanup = count_cleanup;
  int64_t t0 = harness_now_ns();
  ck_assert_rc(concur_executor_apply_task(ex, &t, 30000000, NULL, NULL),
               CONCUR_ETIMEDOUT);
  HARNESS_ASSERT_TIMED_OUT(harness_now_ns() - t0, 30000000);
  if (atomic_load(&g.runs) == 1) {
    ck_assert_int_eq(atomic_load(&cleanups), 0); /* still running */
  }
  (void)concur_event_set(g.open);
  ck_assert_rc(concur_executor_shutdown(ex, CONCUR_SHUTDOWN_WAIT), 0);
  ck_assert_int_eq(atomic_load(&cleanups), 1);
  ck_assert_int_eq(atomic_load(&g.saw_cancel_request), atomic_load(&g.runs));
  gate_destroy(&g);
  concur_executor_free(ex);
}
END_TEST

START_TEST(apply_timeout_cancels_a_task_not_started) {
  concur_executor *ex = make_exec(one_worker[_i]);
  gate g;
  gate_init(&g);
  concur_future *blocker = NULL;
  ck_assert_rc(concur_executor_submit(ex, task_gate, &g, &blocker), 0);
  ck_assert_rc(concur_event_wait(g.started, HARNESS_LONG_NS), 0);
  _Atomic long runs = 0;
  atomic_store(&cleanups, 0);
  concur_task t = CONCUR_TASK_INIT(task_count, &runs);
  t.cleanup = count_cleanup;
  /* The queued task could be run by the waiter's help: hold it out by
   * waiting with NOWAIT, which never helps. */
  ck_assert_rc(concur_executor_apply_task(ex, &t, CONCUR_NOWAIT, NULL, NULL),
               CONCUR_ETIMEDOUT);
  (void)concur_event_set(g.open);
  ck_assert_rc(concur_executor_shutdown(ex, CONCUR_SHUTDOWN_WAIT), 0);
  ck_assert_int_eq(atomic_load(&runs), 0);
  ck_assert_int_eq(atomic_load(&cleanups), 1);
  concur_future_unref(blocker);
  gate_destroy(&g);
  concur_executor_free(ex);
}
END_TEST

/* ======================================================================== */
/* invoke_all / invoke_any (WAI-12)                                         */

START_TEST(WAI_12_invoke_all_returns_every_outcome) {
  concur_executor *ex = make_exec(_i);
  concur_task ts[6];
  for (intptr_t i = 0; i < 6; i++) {
    concur_task t = CONCUR_TASK_INIT(task_odd_fails, (void *)i);
    ts[i] = t;
  }
  concur_future *fs[6];
  ck_assert_rc(concur_executor_invoke_all(ex, ts, 6, CONCUR_FOREVER, fs), 0);
  for (intptr_t i = 0; i < 6; i++) {
    ck_assert(concur_future_done(fs[i]));
    void *r = NULL;
    if (i % 2 == 0) {
      ck_assert_rc(concur_future_result(fs[i], 0, &r), 0);
      ck_assert_ptr_eq(r, (void *)i);
    } else {
      int code = 0;
      ck_assert_rc(concur_future_exception(fs[i], 0, &code, NULL), 0);
      ck_assert_int_eq(code, 1000 + (int)i);
    }
    concur_future_unref(fs[i]);
  }
  /* Empty input: nothing to do. */
  ck_assert_rc(concur_executor_invoke_all(ex, NULL, 0, 0, NULL), 0);
  ck_assert_rc(concur_executor_invoke_all(NULL, ts, 1, 0, fs), CONCUR_EINVAL);
  ck_assert_rc(concur_executor_invoke_all(ex, NULL, 1, 0, fs), CONCUR_EINVAL);
  ck_assert_rc(concur_executor_invoke_all(ex, ts, 1, 0, NULL), CONCUR_EINVAL);
  ck_assert_rc(concur_executor_invoke_all(ex, ts, 1, -1, fs), CONCUR_EINVAL);
  ts[0].fn = NULL;
  ck_assert_rc(concur_executor_invoke_all(ex, ts, 1, 0, fs), CONCUR_EINVAL);
  concur_executor_free(ex);
}
END_TEST

START_TEST(WAI_12_timed_invoke_all_cancels_the_unfinished) {
  /* One worker that waiters never help: the gate holds it, so the task
   * behind the gate can only be cancelled. */
  concur_executor *ex = make_exec(KIND_NOHELP1);
  gate g;
  gate_init(&g);
  _Atomic long runs = 0;
  concur_task ts[3] = {CONCUR_TASK_INIT(task_count, &runs),
                       CONCUR_TASK_INIT(task_gate, &g),
                       CONCUR_TASK_INIT(task_count, &runs)};
  concur_future *fs[3];
  int64_t t0 = harness_now_ns();
  ck_assert_rc(concur_executor_invoke_all(ex, ts, 3, 30000000, fs),
               CONCUR_ETIMEDOUT);
  HARNESS_ASSERT_TIMED_OUT(harness_now_ns() - t0, 30000000);
  /* Every future not done was cancelled, or asked to stop if running. */
  ck_assert(concur_future_cancelled(fs[2]));
  ck_assert(concur_future_done(fs[1]) || concur_future_cancel_requested(fs[1]));
  (void)concur_event_set(g.open);
  ck_assert_rc(concur_executor_shutdown(ex, CONCUR_SHUTDOWN_WAIT), 0);
  if (!concur_future_cancelled(fs[1])) {
    /* It was running when the wait ran out: asked to stop. */
    ck_assert_rc(concur_future_result(fs[1], 0, NULL), 0);
    ck_assert_int_eq(atomic_load(&g.saw_cancel_request), 1);
  } else {
    ck_assert_int_eq(atomic_load(&g.runs), 0);
  }
  ck_assert_int_eq(atomic_load(&runs), concur_future_cancelled(fs[0]) ? 0 : 1);
  for (int i = 0; i < 3; i++) {
    concur_future_unref(fs[i]);
  }
  gate_destroy(&g);
  concur_executor_free(ex);
}
END_TEST

START_TEST(WAI_12_invoke_all_submit_error_after_shutdown) {
  concur_executor *ex = make_exec(_i);
  ck_assert_rc(concur_executor_shutdown(ex, 0), 0);
  concur_task ts[2] = {CONCUR_TASK_INIT(task_echo, NULL),
                       CONCUR_TASK_INIT(task_echo, NULL)};
  concur_future *fs[2] = {(concur_future *)ts, (concur_future *)ts};
  ck_assert_rc(concur_executor_invoke_all(ex, ts, 2, CONCUR_FOREVER, fs),
               CONCUR_ESHUTDOWN);
  ck_assert_ptr_null(fs[0]);
  ck_assert_ptr_null(fs[1]);
  concur_executor_free(ex);
}
END_TEST

START_TEST(WAI_12_invoke_any_returns_a_success_and_cancels_the_rest) {
  concur_executor *ex = make_exec(_i);
  atomic_store(&cleanups, 0);
  atomic_store(&cleanups_with_result, 0);
  concur_task ts[5];
  for (intptr_t i = 0; i < 5; i++) {
    concur_task t = CONCUR_TASK_INIT(task_odd_fails, (void *)(2 * i + 1));
    t.cleanup = count_cleanup;
    ts[i] = t;
  }
  ts[3].arg = (void *)(intptr_t)8; /* the only success */
  size_t index = 99;
  void *r = NULL;
  int code = -1;
  ck_assert_rc(
      concur_executor_invoke_any(ex, ts, 5, HARNESS_LONG_NS, &index, &r, &code),
      0);
  ck_assert_uint_eq(index, 3);
  ck_assert_ptr_eq(r, (void *)(intptr_t)8);
  ck_assert_int_eq(code, 0);
  ck_assert_rc(concur_executor_shutdown(ex, CONCUR_SHUTDOWN_WAIT), 0);
  ck_assert_int_eq(atomic_load(&cleanups), 5);
  ck_assert_int_eq(atomic_load(&cleanups_with_result), 0);
  concur_executor_free(ex);
}
END_TEST

START_TEST(WAI_12_invoke_any_all_failing_gives_last_code) {
  concur_executor *ex = make_exec(_i);
  concur_task ts[3] = {CONCUR_TASK_INIT(task_fail, (void *)(intptr_t)5),
                       CONCUR_TASK_INIT(task_fail, (void *)(intptr_t)5),
                       CONCUR_TASK_INIT(task_fail, (void *)(intptr_t)5)};
  size_t index = 99;
  int code = 0;
  void *r = &r;
  ck_assert_rc(
      concur_executor_invoke_any(ex, ts, 3, HARNESS_LONG_NS, &index, &r, &code),
      CONCUR_ETASK);
  ck_assert_int_eq(code, 5);
  ck_assert_uint_lt(index, 3);
  ck_assert_ptr_null(r);
  /* Empty input and bad arguments. */
  ck_assert_rc(concur_executor_invoke_any(ex, ts, 0, 0, NULL, NULL, NULL),
               CONCUR_EINVAL);
  ck_assert_rc(concur_executor_invoke_any(NULL, ts, 1, 0, NULL, NULL, NULL),
               CONCUR_EINVAL);
  ck_assert_rc(concur_executor_invoke_any(ex, NULL, 1, 0, NULL, NULL, NULL),
               CONCUR_EINVAL);
  ck_assert_rc(concur_executor_invoke_any(ex, ts, 1, -5, NULL, NULL, NULL),
               CONCUR_EINVAL);
  ts[1].size = 0;
  ck_assert_rc(concur_executor_invoke_any(ex, ts, 2, 0, NULL, NULL, NULL),
               CONCUR_EINVAL);
  ck_assert_rc(concur_executor_shutdown(ex, 0), 0);
  ck_assert_rc(concur_executor_invoke_any(ex, ts, 1, 0, NULL, NULL, NULL),
               CONCUR_ESHUTDOWN);
  concur_executor_free(ex);
}
END_TEST

START_TEST(WAI_12_invoke_any_timeout) {
  concur_executor *ex = make_exec(KIND_NOHELP2);
  gate g;
  gate_init(&g);
  concur_task ts[2] = {CONCUR_TASK_INIT(task_gate, &g),
                       CONCUR_TASK_INIT(task_fail, (void *)(intptr_t)3)};
  int64_t t0 = harness_now_ns();
  ck_assert_rc(
      concur_executor_invoke_any(ex, ts, 2, 30000000, NULL, NULL, NULL),
      CONCUR_ETIMEDOUT);
  HARNESS_ASSERT_TIMED_OUT(harness_now_ns() - t0, 30000000);
  (void)concur_event_set(g.open);
  ck_assert_rc(concur_executor_shutdown(ex, CONCUR_SHUTDOWN_WAIT), 0);
  /* Running when the wait ran out: asked to stop; else cancelled unrun. */
  ck_assert_int_eq(atomic_load(&g.saw_cancel_request), atomic_load(&g.runs));
  gate_destroy(&g);
  concur_executor_free(ex);
}
END_TEST

/* ======================================================================== */
/* parallel_for                                                             */

typedef struct cover {
  _Atomic unsigned char *hits; /* points into mem */
  int64_t base;
  _Atomic long calls;
  _Atomic int caller_ran;
  pthread_t caller;
  int64_t fail_at; /* fail the sub-range holding this index (INT64_MIN: none) */
  void *mem;
} cover;

static int cover_body(void *arg, int64_t lo, int64_t hi) {
  cover *c = arg;
  atomic_fetch_add(&c->calls, 1);
  if (pthread_equal(pthread_self(), c->caller)) {
    atomic_store(&c->caller_ran, 1);
  }
  for (int64_t i = lo; i < hi; i++) {
    atomic_fetch_add(&c->hits[i - c->base], 1);
  }
  if (c->fail_at >= lo && c->fail_at < hi) {
    return 42;
  }
  return 0;
}

START_TEST(parallel_for_covers_each_index_exactly_once) {
  concur_executor *ex = make_exec(_i);
  const int64_t ranges[][2] = {{0, 1}, {0, 2}, {-50, 50}, {7, 100007}, {0, 0}};
  for (size_t r = 0; r < sizeof ranges / sizeof ranges[0]; r++) {
    int64_t b = ranges[r][0], e = ranges[r][1];
    void *mem = calloc((size_t)(e - b) + 1, 1);
    cover c = {mem, b, 0, 0, pthread_self(), INT64_MIN, mem};
    int code = -1;
    ck_assert_rc(concur_executor_parallel_for(ex, b, e, cover_body, &c, &code),
                 0);
    ck_assert_int_eq(code, 0);
    for (int64_t i = b; i < e; i++) {
      ck_assert_msg(atomic_load(&c.hits[i - b]) == 1, "index %lld hit %d",
                    (long long)i, (int)atomic_load(&c.hits[i - b]));
    }
    if (e > b) {
      ck_assert_int_eq(atomic_load(&c.caller_ran), 1); /* the caller helps */
    }
    if (_i == KIND_INLINE) {
      ck_assert_int_eq(atomic_load(&c.calls), e > b ? 1 : 0);
    }
    free(c.mem);
  }
  concur_executor_free(ex);
}
END_TEST

static int span_body(void *arg, int64_t lo, int64_t hi) {
  atomic_fetch_add((_Atomic uint64_t *)arg, (uint64_t)hi - (uint64_t)lo);
  return 0;
}

START_TEST(parallel_for_whole_int64_range) {
  concur_executor *ex = make_exec(_i);
  _Atomic uint64_t total = 0;
  ck_assert_rc(concur_executor_parallel_for(ex, INT64_MIN, INT64_MAX, span_body,
                                            &total, NULL),
               0);
  ck_assert_uint_eq(atomic_load(&total), UINT64_MAX);
  concur_executor_free(ex);
}
END_TEST

START_TEST(parallel_for_reports_a_body_failure) {
  concur_executor *ex = make_exec(_i);
  void *mem = calloc(10000, 1);
  cover c = {mem, 0, 0, 0, pthread_self(), 5000, mem};
  int code = 0;
  ck_assert_rc(
      concur_executor_parallel_for(ex, 0, 10000, cover_body, &c, &code),
      CONCUR_ETASK);
  ck_assert_int_eq(code, 42);
  for (int64_t i = 0; i < 10000; i++) {
    ck_assert_int_le(atomic_load(&c.hits[i]), 1);
  }
  free(c.mem);
  ck_assert_rc(concur_executor_parallel_for(ex, 1, 0, cover_body, &c, &code),
               CONCUR_EINVAL);
  ck_assert_rc(concur_executor_parallel_for(NULL, 0, 1, cover_body, &c, &code),
               CONCUR_EINVAL);
  ck_assert_rc(concur_executor_parallel_for(ex, 0, 1, NULL, &c, &code),
               CONCUR_EINVAL);
  ck_assert_rc(concur_executor_shutdown(ex, 0), 0);
  ck_assert_rc(concur_executor_parallel_for(ex, 0, 1, cover_body, &c, &code),
               CONCUR_ESHUTDOWN);
  concur_executor_free(ex);
}
END_TEST

START_TEST(parallel_for_does_not_wait_for_helpers_that_never_started) {
  /* Both workers held: the helper stays queued, the caller does it all. */
  concur_executor *ex = make_exec(KIND_NOHELP2);
  gate g1, g2;
  gate_init(&g1);
  gate_init(&g2);
  ck_assert_rc(concur_executor_submit(ex, task_gate, &g1, NULL), 0);
  ck_assert_rc(concur_executor_submit(ex, task_gate, &g2, NULL), 0);
  ck_assert_rc(concur_event_wait(g1.started, HARNESS_LONG_NS), 0);
  ck_assert_rc(concur_event_wait(g2.started, HARNESS_LONG_NS), 0);
  void *mem = calloc(5000, 1);
  cover c = {mem, 0, 0, 0, pthread_self(), INT64_MIN, mem};
  ck_assert_rc(concur_executor_parallel_for(ex, 0, 5000, cover_body, &c, NULL),
               0);
  for (int64_t i = 0; i < 5000; i++) {
    ck_assert_int_eq(atomic_load(&c.hits[i]), 1);
  }
  ck_assert_int_eq(atomic_load(&c.caller_ran), 1);
  long calls = atomic_load(&c.calls);
  (void)concur_event_set(g1.open);
  (void)concur_event_set(g2.open);
  ck_assert_rc(concur_executor_shutdown(ex, CONCUR_SHUTDOWN_WAIT), 0);
  /* The helper ran late and found the loop closed. */
  ck_assert_int_eq(atomic_load(&c.calls), calls);
  concur_executor_stats st = CONCUR_EXECUTOR_STATS_INIT;
  ck_assert_rc(concur_executor_get_stats(ex, &st), 0);
  ck_assert_uint_eq(st.completed, 3);
  free(mem);
  gate_destroy(&g1);
  gate_destroy(&g2);
  concur_executor_free(ex);
}
END_TEST

/* ======================================================================== */
/* Task groups                                                              */

START_TEST(group_waits_for_all_and_counts_outcomes) {
  concur_executor *ex = make_exec(_i);
  concur_task_group *g = NULL;
  ck_assert_rc(concur_task_group_new(&g, ex), 0);
  _Atomic long runs = 0;
  for (int i = 0; i < 100; i++) {
    ck_assert_rc(concur_task_group_submit(g, task_count, &runs), 0);
  }
  int code = -1;
  ck_assert_rc(concur_task_group_wait(g, HARNESS_LONG_NS, &code), 0);
  ck_assert_int_eq(code, 0);
  ck_assert_int_eq(atomic_load(&runs), 100);
  concur_task_group_counts c = CONCUR_TASK_GROUP_COUNTS_INIT;
  ck_assert_rc(concur_task_group_get_counts(g, &c), 0);
  ck_assert_uint_eq(c.submitted, 100);
  ck_assert_uint_eq(c.ok, 100);
  ck_assert_uint_eq(c.pending + c.failed + c.cancelled, 0);
  /* Reuse: a second round with failures. */
  for (intptr_t i = 0; i < 10; i++) {
    ck_assert_rc(concur_task_group_submit(g, task_odd_fails, (void *)i), 0);
  }
  ck_assert_rc(concur_task_group_wait(g, HARNESS_LONG_NS, &code), CONCUR_ETASK);
  ck_assert_int_ge(code, 1001);
  ck_assert_int_le(code, 1009);
  ck_assert_int_eq(code % 2, 1);
  ck_assert_rc(concur_task_group_get_counts(g, &c), 0);
  ck_assert_uint_eq(c.submitted, 110);
  ck_assert_uint_eq(c.ok, 105);
  ck_assert_uint_eq(c.failed, 5);
  /* The round closed: an empty wait is clean again. */
  ck_assert_rc(concur_task_group_wait(g, 0, &code), 0);
  ck_assert_int_eq(code, 0);
  concur_task_group_free(g);
  concur_executor_free(ex);
}
END_TEST

START_TEST(group_rejects_bad_arguments) {
  concur_executor *ex = make_exec(_i);
  concur_task_group *g = (concur_task_group *)&g;
  ck_assert_rc(concur_task_group_new(NULL, ex), CONCUR_EINVAL);
  ck_assert_rc(concur_task_group_new(&g, NULL), CONCUR_EINVAL);
  ck_assert_ptr_null(g);
  ck_assert_rc(concur_task_group_new(&g, ex), 0);
  ck_assert_rc(concur_task_group_submit(NULL, task_echo, NULL), CONCUR_EINVAL);
  ck_assert_rc(concur_task_group_submit(g, NULL, NULL), CONCUR_EINVAL);
  ck_assert_rc(concur_task_group_submit_task(g, NULL), CONCUR_EINVAL);
  concur_task t = CONCUR_TASK_INIT(task_echo, NULL);
  t.size = 3;
  ck_assert_rc(concur_task_group_submit_task(g, &t), CONCUR_EINVAL);
  ck_assert_rc(concur_task_group_wait(NULL, 0, NULL), CONCUR_EINVAL);
  ck_assert_rc(concur_task_group_wait(g, -1, NULL), CONCUR_EINVAL);
  concur_task_group_counts c = CONCUR_TASK_GROUP_COUNTS_INIT;
  ck_assert_rc(concur_task_group_get_counts(NULL, &c), CONCUR_EINVAL);
  ck_assert_rc(concur_task_group_get_counts(g, NULL), CONCUR_EINVAL);
  c.size = 8;
  ck_assert_rc(concur_task_group_get_counts(g, &c), CONCUR_EINVAL);
  /* A refused submit leaves the counts alone and keeps the arg. */
  atomic_store(&cleanups, 0);
  ck_assert_rc(concur_executor_shutdown(ex, 0), 0);
  concur_task t2 = CONCUR_TASK_INIT(task_echo, NULL);
  t2.cleanup = count_cleanup;
  ck_assert_rc(concur_task_group_submit_task(g, &t2), CONCUR_ESHUTDOWN);
  ck_assert_int_eq(atomic_load(&cleanups), 0);
  c.size = sizeof c;
  ck_assert_rc(concur_task_group_get_counts(g, &c), 0);
  ck_assert_uint_eq(c.submitted + c.pending, 0);
  ck_assert_rc(concur_task_group_wait(g, 0, NULL), 0);
  concur_task_group_free(g);
  concur_task_group_free(NULL);
  concur_executor_free(ex);
}
END_TEST

START_TEST(group_cleanups_run_before_wait_returns) {
  concur_executor *ex = make_exec(_i);
  concur_task_group *g = NULL;
  ck_assert_rc(concur_task_group_new(&g, ex), 0);
  atomic_store(&cleanups, 0);
  concur_task t = CONCUR_TASK_INIT(task_echo, &t);
  t.cleanup = count_cleanup;
  for (int i = 0; i < 50; i++) {
    ck_assert_rc(concur_task_group_submit_task(g, &t), 0);
  }
  ck_assert_rc(concur_task_group_wait(g, HARNESS_LONG_NS, NULL), 0);
  ck_assert_int_eq(atomic_load(&cleanups), 50);
  concur_task_group_free(g);
  concur_executor_free(ex);
}
END_TEST

typedef struct group_waiter {
  concur_task_group *g;
  int rc;
  pthread_t thread;
} group_waiter;

static void *group_wait_thread(void *arg) {
  group_waiter *w = arg;
  w->rc = concur_task_group_wait(w->g, CONCUR_FOREVER, NULL);
  return NULL;
}

START_TEST(group_wait_blocks_times_out_and_wakes) {
  concur_executor *ex = make_exec(KIND_THREADS2);
  concur_task_group *g = NULL;
  ck_assert_rc(concur_task_group_new(&g, ex), 0);
  gate gt;
  gate_init(&gt);
  ck_assert_rc(concur_task_group_submit(g, task_gate, &gt), 0);
  ck_assert_rc(concur_event_wait(gt.started, HARNESS_LONG_NS), 0);
  ck_assert_rc(concur_task_group_wait(g, CONCUR_NOWAIT, NULL),
               CONCUR_ETIMEDOUT);
  int64_t t0 = harness_now_ns();
  ck_assert_rc(concur_task_group_wait(g, 20000000, NULL), CONCUR_ETIMEDOUT);
  HARNESS_ASSERT_TIMED_OUT(harness_now_ns() - t0, 20000000);
  concur_task_group_counts c = CONCUR_TASK_GROUP_COUNTS_INIT;
  ck_assert_rc(concur_task_group_get_counts(g, &c), 0);
  ck_assert_uint_eq(c.pending, 1);
  group_waiter w = {g, -1, 0};
  pthread_create(&w.thread, NULL, group_wait_thread, &w);
  ck_assert_rc(concur__test_await_parked(g, 1, HARNESS_LONG_NS), 0);
  (void)concur_event_set(gt.open);
  pthread_join(w.thread, NULL);
  ck_assert_rc(w.rc, 0);
  concur_task_group_free(g);
  gate_destroy(&gt);
  concur_executor_free(ex);
}
END_TEST

START_TEST(group_counts_tasks_cancelled_by_shutdown) {
  concur_executor *ex = make_exec(one_worker[_i]);
  concur_task_group *g = NULL;
  ck_assert_rc(concur_task_group_new(&g, ex), 0);
  gate gt;
  gate_init(&gt);
  ck_assert_rc(concur_task_group_submit(g, task_gate, &gt), 0);
  ck_assert_rc(concur_event_wait(gt.started, HARNESS_LONG_NS), 0);
  _Atomic long runs = 0;
  for (int i = 0; i < 10; i++) {
    ck_assert_rc(concur_task_group_submit(g, task_count, &runs), 0);
  }
  ck_assert_rc(concur_executor_shutdown(ex, CONCUR_SHUTDOWN_CANCEL_FUTURES), 0);
  (void)concur_event_set(gt.open);
  ck_assert_rc(concur_task_group_wait(g, HARNESS_LONG_NS, NULL), 0);
  concur_task_group_counts c = CONCUR_TASK_GROUP_COUNTS_INIT;
  ck_assert_rc(concur_task_group_get_counts(g, &c), 0);
  ck_assert_uint_eq(c.cancelled, 10);
  ck_assert_uint_eq(c.ok, 1);
  ck_assert_int_eq(atomic_load(&runs), 0);
  concur_task_group_free(g);
  gate_destroy(&gt);
  concur_executor_free(ex);
}
END_TEST

/* Records where it ran; fails with code 7 when the group's record says so. */
typedef struct here_log {
  pthread_t submitter;
  _Atomic long runs;
  _Atomic long here;           /* runs in the submitting thread */
  _Atomic long saw_cancel_req; /* runs that saw a cancel request */
} here_log;

static int task_note_thread(void *arg, void **result) {
  (void)result;
  here_log *l = arg;
  atomic_fetch_add(&l->runs, 1);
  if (pthread_equal(pthread_self(), l->submitter)) {
    atomic_fetch_add(&l->here, 1);
  }
  if (concur_task_cancel_requested()) {
    atomic_fetch_add(&l->saw_cancel_req, 1);
  }
  return 7;
}

/* The throttle: with the only worker blocked, a long stream of submits
 * makes the submitter run tasks itself; they count in the group (failures
 * included), run their cleanup, and bypass the executor's counters. */
START_TEST(group_throttle_runs_tasks_in_the_submitter) {
  concur_executor *ex = make_exec(KIND_POOL1);
  concur_task_group *g = NULL;
  ck_assert_rc(concur_task_group_new(&g, ex), 0);
  gate gt;
  gate_init(&gt);
  ck_assert_rc(concur_task_group_submit(g, task_gate, &gt), 0);
  ck_assert_rc(concur_event_wait(gt.started, HARNESS_LONG_NS), 0);
  here_log l = {pthread_self(), 0, 0, 0};
  atomic_store(&cleanups, 0);
  const long n = 400;
  concur_task t = CONCUR_TASK_INIT(task_note_thread, &l);
  t.cleanup = count_cleanup;
  for (long i = 0; i < n; i++) {
    ck_assert_rc(concur_task_group_submit_task(g, &t), 0);
  }
  /* The worker is still blocked: whatever ran, ran here, at once, with its
   * cleanup, and is counted already. */
  long here = atomic_load(&l.here);
  ck_assert_int_gt(here, 0);
  ck_assert_int_eq(atomic_load(&l.runs), here);
  ck_assert_int_eq(atomic_load(&cleanups), here);
  concur_task_group_counts c = CONCUR_TASK_GROUP_COUNTS_INIT;
  ck_assert_rc(concur_task_group_get_counts(g, &c), 0);
  ck_assert_uint_eq(c.failed, (uint64_t)here);
  ck_assert_uint_eq(c.pending, (uint64_t)(n + 1 - here));
  ck_assert_uint_eq(c.submitted, (uint64_t)(n + 1));
  (void)concur_event_set(gt.open);
  int code = 0;
  ck_assert_rc(concur_task_group_wait(g, HARNESS_LONG_NS, &code), CONCUR_ETASK);
  ck_assert_int_eq(code, 7);
  ck_assert_int_eq(atomic_load(&l.runs), n);
  ck_assert_int_eq(atomic_load(&l.saw_cancel_req), 0);
  ck_assert_int_eq(atomic_load(&cleanups), n);
  ck_assert_rc(concur_task_group_get_counts(g, &c), 0);
  ck_assert_uint_eq(c.ok, 1);
  ck_assert_uint_eq(c.failed, (uint64_t)n);
  ck_assert_uint_eq(c.pending, 0);
  /* The executor saw only the tasks that reached it. */
  ck_assert_rc(concur_executor_shutdown(ex, CONCUR_SHUTDOWN_WAIT), 0);
  concur_executor_stats st = CONCUR_EXECUTOR_STATS_INIT;
  ck_assert_rc(concur_executor_get_stats(ex, &st), 0);
  ck_assert_uint_eq(st.submitted, (uint64_t)(n + 1 - here));
  /* Once the executor is shut down, nothing runs in place: the submit is
   * refused as the executor refuses it. */
  for (int i = 0; i < 200; i++) {
    ck_assert_rc(concur_task_group_submit(g, task_count, &l.runs),
                 CONCUR_ESHUTDOWN);
  }
  ck_assert_int_eq(atomic_load(&l.runs), n);
  concur_task_group_free(g);
  gate_destroy(&gt);
  concur_executor_free(ex);
}
END_TEST

/* Short bursts, as most groups see, never run in the submitter. */
START_TEST(group_throttle_leaves_short_bursts_alone) {
  concur_executor *ex = make_exec(KIND_POOL1);
  concur_task_group *g = NULL;
  ck_assert_rc(concur_task_group_new(&g, ex), 0);
  gate gt;
  gate_init(&gt);
  ck_assert_rc(concur_task_group_submit(g, task_gate, &gt), 0);
  ck_assert_rc(concur_event_wait(gt.started, HARNESS_LONG_NS), 0);
  here_log l = {pthread_self(), 0, 0, 0};
  for (int i = 0; i < 62; i++) {
    ck_assert_rc(concur_task_group_submit(g, task_note_thread, &l), 0);
  }
  ck_assert_int_eq(atomic_load(&l.runs), 0);
  (void)concur_event_set(gt.open);
  ck_assert_rc(concur_task_group_wait(g, HARNESS_LONG_NS, NULL), CONCUR_ETASK);
  ck_assert_int_eq(atomic_load(&l.runs), 62);
  /* (The wait itself helps: the tasks it ran are not in place.) */
  concur_executor_stats st = CONCUR_EXECUTOR_STATS_INIT;
  ck_assert_rc(concur_executor_get_stats(ex, &st), 0);
  ck_assert_uint_eq(st.submitted, 63);
  concur_task_group_free(g);
  gate_destroy(&gt);
  concur_executor_free(ex);
}
END_TEST

Suite *concur_test_suite(void) {
  Suite *s = suite_create("executor");
  TCase *tc = harness_tcase("interface_and_inline", 30);
  tcase_add_test(tc, interface_rejects_null_and_bad_arguments);
  tcase_add_test(tc, inline_runs_each_task_in_the_caller_inside_submit);
  tcase_add_test(tc, inline_failure_keeps_code_and_message);
  tcase_add_test(tc, inline_cleanup_rule_fire_and_forget_and_future);
  tcase_add_test(tc, inline_stats_add_up);
  tcase_add_test(tc,
                 EXE_14_inline_shutdown_while_another_thread_is_inside_submit);
  tcase_add_test(tc, inline_shutdown_wait_from_own_task_is_edeadlk);
  tcase_add_test(tc, inline_shutdown_now_asks_running_tasks_to_stop);
  suite_add_tcase(s, tc);

  tc = harness_tcase("scenarios", 60);
  tcase_add_loop_test(
      tc, EXE_01_submit_after_shutdown_is_rejected_and_caller_keeps_arg, 0,
      KIND_COUNT);
  tcase_add_loop_test(tc,
                      EXE_02_shutdown_wait_returns_after_every_queued_task_ran,
                      0, KIND_COUNT);
  tcase_add_loop_test(tc, EXE_03_cancel_futures_cancels_queued_not_running, 0,
                      ONE_WORKER_COUNT);
  tcase_add_loop_test(
      tc, EXE_04_shutdown_without_wait_returns_at_once_work_still_runs, 0,
      KIND_COUNT);
  tcase_add_loop_test(tc, EXE_05_submit_cancel_then_shutdown_wait_does_not_hang,
                      0, KIND_COUNT);
  tcase_add_loop_test(
      tc, EXE_06_shutdown_is_idempotent_and_shutdown_now_after_it_is_fine, 0,
      KIND_COUNT);
  tcase_add_loop_test(tc, EXE_07_free_without_shutdown_runs_every_task, 0,
                      KIND_COUNT);
  tcase_add_loop_test(tc, EXE_09_args_and_results_released_once_future_dropped,
                      0, KIND_COUNT);
  tcase_add_loop_test(tc, EXE_12_failing_tasks_are_counted_exactly, 0,
                      KIND_COUNT);
  tcase_add_loop_test(tc,
                      EXE_13_task_waiting_on_its_own_one_worker_executor_helps,
                      0, KIND_COUNT);
  suite_add_tcase(s, tc);

  tc = harness_tcase("apply_invoke", 60);
  tcase_add_loop_test(tc, apply_returns_result_code_and_errors, 0, KIND_COUNT);
  tcase_add_loop_test(tc, apply_cleanup_gets_null_for_a_result_handed_out, 0,
                      KIND_COUNT);
  /* A waiter that helps could run the gated task itself and block in it:
   * these run where the gate can only run on a worker. */
  tcase_add_loop_test(tc, apply_timeout_leaves_task_running_and_asks_it_to_stop,
                      KIND_NOHELP2, KIND_NOHELP1 + 1);
  tcase_add_loop_test(tc, apply_timeout_cancels_a_task_not_started, 0,
                      ONE_WORKER_COUNT);
  tcase_add_loop_test(tc, WAI_12_invoke_all_returns_every_outcome, 0,
                      KIND_COUNT);
  tcase_add_test(tc, WAI_12_timed_invoke_all_cancels_the_unfinished);
  tcase_add_loop_test(tc, WAI_12_invoke_all_submit_error_after_shutdown, 0,
                      KIND_COUNT);
  tcase_add_loop_test(tc,
                      WAI_12_invoke_any_returns_a_success_and_cancels_the_rest,
                      0, KIND_COUNT);
  tcase_add_loop_test(tc, WAI_12_invoke_any_all_failing_gives_last_code, 0,
                      KIND_COUNT);
  tcase_add_test(tc, WAI_12_invoke_any_timeout);
  suite_add_tcase(s, tc);

  tc = harness_tcase("parallel_for", 60);
  tcase_add_loop_test(tc, parallel_for_covers_each_index_exactly_once, 0,
                      KIND_COUNT);
  tcase_add_loop_test(tc, parallel_for_whole_int64_range, 0, KIND_COUNT);
  tcase_add_loop_test(tc, parallel_for_reports_a_body_failure, 0, KIND_COUNT);
  tcase_add_test(tc, parallel_for_does_not_wait_for_helpers_that_never_started);
  suite_add_tcase(s, tc);

  tc = harness_tcase("task_group", 60);
  tcase_add_loop_test(tc, group_waits_for_all_and_counts_outcomes, 0,
                      KIND_COUNT);
  tcase_add_loop_test(tc, group_rejects_bad_arguments, 0, KIND_COUNT);
  tcase_add_loop_test(tc, group_cleanups_run_before_wait_returns, 0,
                      KIND_COUNT);
  tcase_add_test(tc, group_wait_blocks_times_out_and_wakes);
  tcase_add_test(tc, group_throttle_runs_tasks_in_the_submitter);
  tcase_add_test(tc, group_throttle_leaves_short_bursts_alone);
  tcase_add_loop_test(tc, group_counts_tasks_cancelled_by_shutdown, 0,
                      ONE_WORKER_COUNT);
  suite_add_tcase(s, tc);
  return s;
}
