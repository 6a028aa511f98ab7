/*
 * The thread pool's own rules (the TPE scenarios of reliability.md, as
 * amended at its top): prestart, the admission order of ARCHITECTURE.md,
 * counters, idle retirement, resizing at run time, rejection policies,
 * shutdown_now, await_termination, cancelling queued tasks, hooks, idle
 * reuse and names, wake-ups, helping from inside a saturated pool.
 */
#include "test_thread_pool_util.h"

#include <pthread.h>
#include <string.h>
#include <time.h>

/* Waits (bounded) until the pool has n workers: for idle retirement, which
 * only time makes happen. */
static void await_workers(concur_executor *ex, uint64_t n) {
  int64_t deadline = harness_now_ns() + HARNESS_LONG_NS;
  while (tp_stats(ex).workers != n) {
    ck_assert_msg(harness_now_ns() < deadline, "still %llu workers, not %llu",
                  (unsigned long long)tp_stats(ex).workers,
                  (unsigned long long)n);
    struct timespec ts = {0, 1000000};
    nanosleep(&ts, NULL);
  }
}

static concur_thread_pool_options opts(int core, int max, int64_t cap,
                                       concur_rejection_policy policy) {
  concur_thread_pool_options o = CONCUR_THREAD_POOL_OPTIONS_INIT;
  o.core_workers = core;
  o.max_workers = max;
  o.queue_capacity = cap;
  o.rejection = policy;
  return o;
}

/* ---- TPE-02 prestart, TPE-03/04 admission ----------------------------------
 */

START_TEST(TPE_02_prestart_core_workers) {
  concur_thread_pool_options o = opts(3, 5, CONCUR_UNBOUNDED, 0);
  concur_executor *ex = tp_new(&o);
  ck_assert_rc(concur_thread_pool_prestart_core_worker(ex), 1);
  ck_assert_uint_eq(tp_stats(ex).workers, 1);
  ck_assert_rc(concur_thread_pool_prestart_all_core_workers(ex), 2);
  ck_assert_uint_eq(tp_stats(ex).workers, 3);
  /* Both stop at core. */
  ck_assert_rc(concur_thread_pool_prestart_core_worker(ex), 0);
  ck_assert_rc(concur_thread_pool_prestart_all_core_workers(ex), 0);
  ck_assert_uint_eq(tp_stats(ex).workers, 3);
  TP_AWAIT_PARKED(ex, 3);
  ck_assert_uint_eq(tp_stats(ex).active, 0);
  ck_assert_rc(concur_executor_shutdown(ex, 0), 0);
  ck_assert_rc(concur_thread_pool_prestart_core_worker(ex), CONCUR_ESHUTDOWN);
  ck_assert_rc(concur_thread_pool_prestart_all_core_workers(ex),
               CONCUR_ESHUTDOWN);
  concur_executor_free(ex);

  /* The prestart option starts them all at creation. */
  o.prestart = true;
  ex = tp_new(&o);
  ck_assert_uint_eq(tp_stats(ex).workers, 3);
  concur_executor_free(ex);
}
END_TEST

START_TEST(TPE_02_below_core_an_idle_worker_is_used_first) {
  /* ARCHITECTURE.md's rule 1 before rule 2 (not Java's order). */
  concur_thread_pool_options o = opts(3, 3, CONCUR_UNBOUNDED, 0);
  concur_executor *ex = tp_new(&o);
  ck_assert_rc(concur_thread_pool_prestart_core_worker(ex), 1);
  TP_AWAIT_PARKED(ex, 1);
  tp_gate g;
  tp_gate_init(&g);
  ck_assert_rc(concur_executor_submit(ex, tp_task_gate, &g, NULL), 0);
  TP_AWAIT_PARKED(&g, 1);
  ck_assert_uint_eq(tp_stats(ex).workers, 1); /* handed to the idle one */
  /* No idle worker now, and below core: a new worker. */
  ck_assert_rc(concur_executor_submit(ex, tp_task_gate, &g, NULL), 0);
  TP_AWAIT_PARKED(&g, 2);
  ck_assert_uint_eq(tp_stats(ex).workers, 2);
  tp_gate_open(&g);
  concur_executor_free(ex);
}
END_TEST

START_TEST(TPE_03_admission_order) {
  concur_thread_pool_options o = opts(1, 2, 1, CONCUR_REJECT_ABORT);
  concur_executor *ex = tp_new(&o);
  tp_gate g;
  tp_gate_init(&g);
  concur_future *f[3];
  /* Rule 2: below core, a worker for A. */
  ck_assert_rc(concur_executor_submit(ex, tp_task_gate, &g, &f[0]), 0);
  TP_AWAIT_PARKED(&g, 1);
  ck_assert_uint_eq(tp_stats(ex).workers, 1);
  /* Rule 3: at core, B waits in the queue. */
  ck_assert_rc(concur_executor_submit(ex, tp_task_gate, &g, &f[1]), 0);
  concur_executor_stats s = tp_stats(ex);
  ck_assert_uint_eq(s.workers, 1);
  ck_assert_uint_eq(s.queued, 1);
  /* Rule 4: the queue is full, below max: a worker for C. */
  ck_assert_rc(concur_executor_submit(ex, tp_task_gate, &g, &f[2]), 0);
  TP_AWAIT_PARKED(&g, 2);
  s = tp_stats(ex);
  ck_assert_uint_eq(s.workers, 2);
  ck_assert_uint_eq(s.largest, 2);
  ck_assert_uint_eq(s.queued, 1);
  ck_assert_uint_eq(s.running, 2);
  ck_assert_uint_eq(s.active, 2);
  /* Rule 5: saturated: the policy (abort). */
  concur_future *d = (concur_future *)(uintptr_t)1;
  ck_assert_rc(concur_executor_submit(ex, tp_task_gate, &g, &d),
               CONCUR_EREJECTED);
  ck_assert_ptr_null(d);
  ck_assert_rc(concur_executor_submit(ex, tp_task_gate, &g, NULL),
               CONCUR_EREJECTED);
  s = tp_stats(ex);
  ck_assert_uint_eq(s.rejected, 2);
  ck_assert_uint_eq(s.submitted, 3);
  tp_gate_open(&g);
  for (int i = 0; i < 3; i++) {
    ck_assert_rc(concur_future_result(f[i], HARNESS_LONG_NS, NULL), 0);
    concur_future_unref(f[i]);
  }
  /* A future is done before its worker books the task as completed: wait
   * for the workers to finish before reading the counters. */
  ck_assert_rc(concur_executor_shutdown(ex, CONCUR_SHUTDOWN_WAIT), 0);
  TP_ASSERT_STATS(ex, 3, 0, 0, 3, 0, 0);
  concur_executor_free(ex);
}
END_TEST

START_TEST(TPE_04_unbounded_queue_never_grows_past_core) {
  concur_thread_pool_options o = opts(2, 5, CONCUR_UNBOUNDED, 0);
  concur_executor *ex = tp_new(&o);
  tp_gate g;
  tp_gate_init(&g);
  for (int i = 0; i < 10; i++) {
    ck_assert_rc(concur_executor_submit(ex, tp_task_gate, &g, NULL), 0);
  }
  TP_AWAIT_PARKED(&g, 2);
  concur_executor_stats s = tp_stats(ex);
  ck_assert_uint_eq(s.workers, 2);
  ck_assert_uint_eq(s.largest, 2);
  ck_assert_uint_eq(s.queued, 8);
  tp_gate_open(&g);
  ck_assert_rc(concur_executor_shutdown(ex, CONCUR_SHUTDOWN_WAIT), 0);
  ck_assert_uint_eq(tp_stats(ex).largest, 2);
  concur_executor_free(ex);
}
END_TEST

START_TEST(TPE_04_handoff_queue_grows_to_max) {
  concur_thread_pool_options o = opts(1, 4, 0, CONCUR_REJECT_ABORT);
  concur_executor *ex = tp_new(&o);
  tp_gate g;
  tp_gate_init(&g);
  for (int i = 0; i < 4; i++) {
    ck_assert_rc(concur_executor_submit(ex, tp_task_gate, &g, NULL), 0);
  }
  TP_AWAIT_PARKED(&g, 4);
  concur_executor_stats s = tp_stats(ex);
  ck_assert_uint_eq(s.workers, 4);
  ck_assert_uint_eq(s.queued, 0);
  ck_assert_rc(concur_executor_submit(ex, tp_task_gate, &g, NULL),
               CONCUR_EREJECTED);
  tp_gate_open(&g);
  ck_assert_rc(concur_executor_shutdown(ex, CONCUR_SHUTDOWN_WAIT), 0);
  TP_ASSERT_STATS(ex, 4, 0, 0, 4, 0, 0);
  concur_executor_free(ex);
}
END_TEST

START_TEST(TPE_04_handoff_to_idle_workers_is_not_queued) {
  /* A hand-off queue still accepts a task for each idle worker. */
  concur_thread_pool_options o = opts(2, 2, 0, CONCUR_REJECT_ABORT);
  o.prestart = true;
  concur_executor *ex = tp_new(&o);
  TP_AWAIT_PARKED(ex, 2);
  tp_gate g;
  tp_gate_init(&g);
  ck_assert_rc(concur_executor_submit(ex, tp_task_gate, &g, NULL), 0);
  ck_assert_rc(concur_executor_submit(ex, tp_task_gate, &g, NULL), 0);
  TP_AWAIT_PARKED(&g, 2);
  ck_assert_rc(concur_executor_submit(ex, tp_task_gate, &g, NULL),
               CONCUR_EREJECTED);
  tp_gate_open(&g);
  concur_executor_free(ex);
}
END_TEST

/* ---- TPE-05 counters
 * -------------------------------------------------------------- */

START_TEST(TPE_05_counters_while_tasks_are_parked) {
  concur_thread_pool_options o = opts(3, 3, CONCUR_UNBOUNDED, 0);
  concur_executor *ex = tp_new(&o);
  TP_ASSERT_STATS(ex, 0, 0, 0, 0, 0, 0);
  tp_gate g;
  tp_gate_init(&g);
  concur_future *f[5];
  for (int i = 0; i < 5; i++) {
    ck_assert_rc(concur_executor_submit(ex, tp_task_gate, &g, &f[i]), 0);
  }
  TP_AWAIT_PARKED(&g, 3);
  TP_ASSERT_STATS(ex, 5, 2, 3, 0, 0, 0);
  concur_executor_stats s = tp_stats(ex);
  ck_assert_uint_eq(s.workers, 3);
  ck_assert_uint_eq(s.active, 3);
  ck_assert_uint_eq(s.largest, 3);
  tp_gate_open(&g);
  for (int i = 0; i < 5; i++) {
    ck_assert_rc(concur_future_result(f[i], HARNESS_LONG_NS, NULL), 0);
    concur_future_unref(f[i]);
  }
  /* A future is done before its worker books the task as completed: the
   * counters are final once all three workers are parked again. */
  TP_AWAIT_PARKED(ex, 3);
  TP_ASSERT_STATS(ex, 5, 0, 0, 5, 0, 0);
  s = tp_stats(ex);
  ck_assert_uint_eq(s.active, 0);
  ck_assert_uint_eq(s.workers, 3);
  ck_assert_uint_eq(s.largest, 3);
  concur_executor_free(ex);
}
END_TEST

/* ---- TPE-06/07 idle retirement
 * -------------------------------------------------- */

START_TEST(TPE_06_workers_above_core_retire_but_never_below) {
  concur_thread_pool_options o = opts(1, 3, 0, CONCUR_REJECT_ABORT);
  o.idle_timeout_ns = 20000000;
  concur_executor *ex = tp_new(&o);
  tp_gate g;
  tp_gate_init(&g);
  for (int i = 0; i < 3; i++) {
    ck_assert_rc(concur_executor_submit(ex, tp_task_gate, &g, NULL), 0);
  }
  TP_AWAIT_PARKED(&g, 3);
  ck_assert_uint_eq(tp_stats(ex).workers, 3);
  tp_gate_open(&g);
  await_workers(ex, 1);
  /* Well past the timeout, the core worker is still there. */
  struct timespec ts = {0, 100000000};
  nanosleep(&ts, NULL);
  concur_executor_stats s = tp_stats(ex);
  ck_assert_uint_eq(s.workers, 1);
  ck_assert_uint_eq(s.largest, 3);
  /* The pool still works. */
  concur_future *f;
  ck_assert_rc(concur_executor_submit(ex, tp_task_echo, NULL, &f), 0);
  ck_assert_rc(concur_future_result(f, HARNESS_LONG_NS, NULL), 0);
  concur_future_unref(f);
  concur_executor_free(ex);
}
END_TEST

START_TEST(TPE_07_allow_core_timeout_shrinks_to_zero_and_restarts) {
  concur_thread_pool_options o = opts(2, 2, CONCUR_UNBOUNDED, 0);
  o.idle_timeout_ns = 10000000;
  o.allow_core_timeout = true;
  concur_executor *ex = tp_new(&o);
  tp_gate g;
  tp_gate_init(&g);
  for (int i = 0; i < 2; i++) {
    ck_assert_rc(concur_executor_submit(ex, tp_task_gate, &g, NULL), 0);
  }
  TP_AWAIT_PARKED(&g, 2);
  tp_gate_open(&g);
  await_workers(ex, 0);
  concur_future *f;
  ck_assert_rc(concur_executor_submit(ex, tp_task_echo, (void *)3, &f), 0);
  void *v;
  ck_assert_rc(concur_future_result(f, HARNESS_LONG_NS, &v), 0);
  ck_assert_ptr_eq(v, (void *)3);
  concur_future_unref(f);
  ck_assert_uint_ge(tp_stats(ex).largest, 1);
  await_workers(ex, 0);
  concur_executor_free(ex);
}
END_TEST

/* ---- TPE-08 resizing
 * --------------------------------------------------------------- */

START_TEST(TPE_08_resizing_keeps_core_le_max) {
  concur_thread_pool_options o = opts(1, 4, CONCUR_UNBOUNDED, 0);
  concur_executor *ex = tp_new(&o);
  ck_assert_rc(concur_thread_pool_set_core_workers(ex, -1), CONCUR_EINVAL);
  ck_assert_rc(concur_thread_pool_set_core_workers(ex, 5), CONCUR_EINVAL);
  ck_assert_rc(concur_thread_pool_set_max_workers(ex, 0), CONCUR_EINVAL);
  ck_assert_rc(concur_thread_pool_set_max_workers(
                   ex, CONCUR_THREAD_POOL_WORKERS_MAX + 1),
               CONCUR_EINVAL);
  ck_assert_rc(concur_thread_pool_set_core_workers(ex, 3), 0);
  ck_assert_rc(concur_thread_pool_set_max_workers(ex, 2), CONCUR_EINVAL);
  ck_assert_int_eq(concur_thread_pool_max_workers(ex), 4);
  ck_assert_rc(concur_thread_pool_set_max_workers(ex, 3), 0);
  ck_assert_int_eq(concur_thread_pool_max_workers(ex), 3);
  ck_assert_int_eq(concur_thread_pool_core_workers(ex), 3);
  ck_assert_int_eq(concur_executor_parallelism(ex), 3);
  ck_assert_rc(concur_executor_shutdown(ex, 0), 0);
  ck_assert_rc(concur_thread_pool_set_core_workers(ex, 1), CONCUR_ESHUTDOWN);
  ck_assert_rc(concur_thread_pool_set_max_workers(ex, 5), CONCUR_ESHUTDOWN);
  concur_executor_free(ex);
}
END_TEST

START_TEST(TPE_08_raising_core_serves_queued_work) {
  concur_thread_pool_options o = opts(1, 4, CONCUR_UNBOUNDED, 0);
  concur_executor *ex = tp_new(&o);
  tp_gate g;
  tp_gate_init(&g);
  for (int i = 0; i < 4; i++) {
    ck_assert_rc(concur_executor_submit(ex, tp_task_gate, &g, NULL), 0);
  }
  TP_AWAIT_PARKED(&g, 1);
  ck_assert_uint_eq(tp_stats(ex).queued, 3);
  ck_assert_rc(concur_thread_pool_set_core_workers(ex, 4), 0);
  TP_AWAIT_PARKED(&g, 4); /* the queued three run at once */
  concur_executor_stats s = tp_stats(ex);
  ck_assert_uint_eq(s.workers, 4);
  ck_assert_uint_eq(s.queued, 0);
  tp_gate_open(&g);
  concur_executor_free(ex);
}
END_TEST

START_TEST(TPE_08_lowering_max_retires_extra_workers) {
  concur_thread_pool_options o = opts(4, 4, CONCUR_UNBOUNDED, 0);
  concur_executor *ex = tp_new(&o);
  tp_gate g;
  tp_gate_init(&g);
  for (int i = 0; i < 4; i++) {
    ck_assert_rc(concur_executor_submit(ex, tp_task_gate, &g, NULL), 0);
  }
  TP_AWAIT_PARKED(&g, 4);
  ck_assert_rc(concur_thread_pool_set_core_workers(ex, 1), 0);
  ck_assert_rc(concur_thread_pool_set_max_workers(ex, 1), 0);
  /* Running tasks are not interrupted. */
  ck_assert_uint_eq(tp_stats(ex).workers, 4);
  tp_gate_open(&g);
  await_workers(ex, 1);
  ck_assert_rc(concur_executor_shutdown(ex, CONCUR_SHUTDOWN_WAIT), 0);
  TP_ASSERT_STATS(ex, 4, 0, 0, 4, 0, 0);
  concur_executor_free(ex);
}
END_TEST

/* ---- TPE-09/10/11 rejection policies
 * ----------------------------------------------- */

/* A pool with one worker blocked on g and one task queued: saturated. */
static concur_executor *saturated(concur_rejection_policy policy, tp_gate *g,
                                  concur_future **running,
                                  concur_future **queued) {
  concur_thread_pool_options o = opts(1, 1, 1, policy);
  o.block_timeout_ns = 30000000;
  concur_executor *ex = tp_new(&o);
  ck_assert_rc(concur_executor_submit(ex, tp_task_gate, g, running), 0);
  TP_AWAIT_PARKED(g, 1);
  ck_assert_rc(concur_executor_submit(ex, tp_task_gate, g, queued), 0);
  ck_assert_uint_eq(tp_stats(ex).queued, 1);
  return ex;
}

START_TEST(TPE_09_abort_policy) {
  tp_gate g;
  tp_gate_init(&g);
  concur_future *a, *b, *c = (concur_future *)(uintptr_t)1;
  concur_executor *ex = saturated(CONCUR_REJECT_ABORT, &g, &a, &b);
  ck_assert_rc(concur_executor_submit(ex, tp_task_echo, NULL, &c),
               CONCUR_EREJECTED);
  ck_assert_ptr_null(c);
  ck_assert_uint_eq(tp_stats(ex).rejected, 1);
  tp_gate_open(&g);
  ck_assert_rc(concur_future_result(b, HARNESS_LONG_NS, NULL), 0);
  concur_future_unref(a);
  concur_future_unref(b);
  concur_executor_free(ex);
}
END_TEST

typedef struct where {
  pthread_t thread;
  _Atomic int ran;
} where;

static int record_thread(void *arg, void **result) {
  (void)result;
  where *w = arg;
  w->thread = pthread_self();
  atomic_store(&w->ran, 1);
  return 0;
}

START_TEST(TPE_09_caller_runs_policy) {
  tp_gate g;
  tp_gate_init(&g);
  concur_future *a, *b, *c;
  concur_executor *ex = saturated(CONCUR_REJECT_CALLER_RUNS, &g, &a, &b);
  where w = {0};
  ck_assert_rc(concur_executor_submit(ex, record_thread, &w, &c), 0);
  ck_assert(concur_future_done(c)); /* ran inside submit */
  ck_assert_rc(concur_future_result(c, CONCUR_NOWAIT, NULL), 0);
  ck_assert(pthread_equal(w.thread, pthread_self()));
  where w2 = {0};
  ck_assert_rc(concur_executor_submit(ex, record_thread, &w2, NULL), 0);
  ck_assert_int_eq(atomic_load(&w2.ran), 1);
  ck_assert(pthread_equal(w2.thread, pthread_self()));
  TP_ASSERT_STATS(ex, 4, 1, 1, 2, 0, 0);
  tp_gate_open(&g);
  ck_assert_rc(concur_future_result(b, HARNESS_LONG_NS, NULL), 0);
  concur_future_unref(a);
  concur_future_unref(b);
  concur_future_unref(c);
  concur_executor_free(ex);
}
END_TEST

static void count_cleanup(void *arg, void *result) {
  (void)result;
  atomic_fetch_add((_Atomic long *)arg, 1);
}

START_TEST(TPE_10_discard_policy_completes_the_future_cancelled) {
  tp_gate g;
  tp_gate_init(&g);
  concur_future *a, *b, *c;
  concur_executor *ex = saturated(CONCUR_REJECT_DISCARD, &g, &a, &b);
  _Atomic long cleanups = 0;
  concur_task t = CONCUR_TASK_INIT(tp_task_echo, &cleanups);
  t.cleanup = count_cleanup;
  ck_assert_rc(concur_executor_submit_task(ex, &t, &c), 0);
  ck_assert(concur_future_cancelled(c));
  ck_assert_rc(concur_future_result(c, CONCUR_NOWAIT, NULL), CONCUR_ECANCELED);
  ck_assert_int_eq(atomic_load(&cleanups), 0); /* at the last unref */
  concur_future_unref(c);
  ck_assert_int_eq(atomic_load(&cleanups), 1);
  /* Fire-and-forget: dropped with its cleanup at once. */
  ck_assert_rc(concur_executor_submit_task(ex, &t, NULL), 0);
  ck_assert_int_eq(atomic_load(&cleanups), 2);
  TP_ASSERT_STATS(ex, 4, 1, 1, 0, 0, 2);
  ck_assert_uint_eq(tp_stats(ex).rejected, 0);
  tp_gate_open(&g);
  ck_assert_rc(concur_future_result(b, HARNESS_LONG_NS, NULL), 0);
  concur_future_unref(a);
  concur_future_unref(b);
  concur_executor_free(ex);
}
END_TEST

START_TEST(TPE_09_discard_oldest_policy) {
  tp_gate g;
  tp_gate_init(&g);
  concur_future *a, *b, *c;
  concur_executor *ex = saturated(CONCUR_REJECT_DISCARD_OLDEST, &g, &a, &b);
  ck_assert_rc(concur_executor_submit(ex, tp_task_echo, (void *)8, &c), 0);
  /* The oldest queued task (b) was cancelled, c took its place. */
  ck_assert(concur_future_cancelled(b));
  ck_assert(!concur_future_done(c));
  TP_ASSERT_STATS(ex, 3, 1, 1, 0, 0, 1);
  tp_gate_open(&g);
  void *v;
  ck_assert_rc(concur_future_result(c, HARNESS_LONG_NS, &v), 0);
  ck_assert_ptr_eq(v, (void *)8);
  ck_assert_rc(concur_future_result(b, CONCUR_NOWAIT, NULL), CONCUR_ECANCELED);
  concur_future_unref(a);
  concur_future_unref(b);
  concur_future_unref(c);
  concur_executor_free(ex);
  /* With a hand-off queue there is nothing to drop: the new task is. */
  concur_thread_pool_options o = opts(1, 1, 0, CONCUR_REJECT_DISCARD_OLDEST);
  ex = tp_new(&o);
  tp_gate g2;
  tp_gate_init(&g2);
  ck_assert_rc(concur_executor_submit(ex, tp_task_gate, &g2, NULL), 0);
  TP_AWAIT_PARKED(&g2, 1);
  ck_assert_rc(concur_executor_submit(ex, tp_task_echo, NULL, &c), 0);
  ck_assert(concur_future_cancelled(c));
  concur_future_unref(c);
  tp_gate_open(&g2);
  concur_executor_free(ex);
}
END_TEST

typedef struct blocked_submit {
  concur_executor *ex;
  _Atomic int rc;
  concur_future *f;
} blocked_submit;

static void *submit_blocking(void *arg) {
  blocked_submit *b = arg;
  atomic_store(&b->rc,
               concur_executor_submit(b->ex, tp_task_echo, (void *)4, &b->f));
  return NULL;
}

START_TEST(TPE_09_block_policy_times_out_and_admits) {
  tp_gate g;
  tp_gate_init(&g);
  concur_future *a, *b, *c = (concur_future *)(uintptr_t)1;
  concur_executor *ex = saturated(CONCUR_REJECT_BLOCK, &g, &a, &b);
  int64_t t0 = harness_now_ns();
  ck_assert_rc(concur_executor_submit(ex, tp_task_echo, NULL, &c),
               CONCUR_ETIMEDOUT);
  HARNESS_ASSERT_TIMED_OUT(harness_now_ns() - t0, 30000000);
  ck_assert_ptr_null(c);
  ck_assert_uint_eq(tp_stats(ex).rejected, 1);
  tp_gate_open(&g);
  concur_future_unref(a);
  concur_future_unref(b);
  concur_executor_free(ex);

  /* Without a deadline it waits until there is room. */
  tp_gate_init(&g);
  concur_thread_pool_options o = opts(1, 1, 1, CONCUR_REJECT_BLOCK);
  ex = tp_new(&o);
  ck_assert_rc(concur_executor_submit(ex, tp_task_gate, &g, &a), 0);
  TP_AWAIT_PARKED(&g, 1);
  ck_assert_rc(concur_executor_submit(ex, tp_task_gate, &g, &b), 0);
  blocked_submit bs = {ex, 1, NULL};
  pthread_t t;
  ck_assert_int_eq(pthread_create(&t, NULL, submit_blocking, &bs), 0);
  TP_AWAIT_PARKED(CONCUR__POOL_KEY_BLOCKED(ex), 1);
  ck_assert_int_eq(atomic_load(&bs.rc), 1); /* still waiting */
  tp_gate_open(&g);
  pthread_join(t, NULL);
  ck_assert_rc(atomic_load(&bs.rc), 0);
  void *v;
  ck_assert_rc(concur_future_result(bs.f, HARNESS_LONG_NS, &v), 0);
  ck_assert_ptr_eq(v, (void *)4);
  concur_future_unref(bs.f);
  concur_future_unref(a);
  concur_future_unref(b);
  /* A future is done before its worker books the task as completed: wait
   * for the workers to finish before reading the counters. */
  ck_assert_rc(concur_executor_shutdown(ex, CONCUR_SHUTDOWN_WAIT), 0);
  TP_ASSERT_STATS(ex, 3, 0, 0, 3, 0, 0);
  concur_executor_free(ex);
}
END_TEST

START_TEST(TPE_09_blocked_submitter_sees_shutdown) {
  tp_gate g;
  tp_gate_init(&g);
  concur_thread_pool_options o = opts(1, 1, 0, CONCUR_REJECT_BLOCK);
  concur_executor *ex = tp_new(&o);
  ck_assert_rc(concur_executor_submit(ex, tp_task_gate, &g, NULL), 0);
  TP_AWAIT_PARKED(&g, 1);
  blocked_submit bs = {ex, 1, NULL};
  pthread_t t;
  ck_assert_int_eq(pthread_create(&t, NULL, submit_blocking, &bs), 0);
  TP_AWAIT_PARKED(CONCUR__POOL_KEY_BLOCKED(ex), 1);
  ck_assert_rc(concur_executor_shutdown(ex, 0), 0);
  pthread_join(t, NULL);
  ck_assert_rc(atomic_load(&bs.rc), CONCUR_ESHUTDOWN);
  ck_assert_ptr_null(bs.f);
  tp_gate_open(&g);
  concur_executor_free(ex);
}
END_TEST

START_TEST(TPE_11_task_resubmitted_through_rejections_runs_every_time) {
  concur_thread_pool_options o = opts(1, 1, 1, CONCUR_REJECT_ABORT);
  concur_executor *ex = tp_new(&o);
  _Atomic long ran = 0;
  long rejected = 0;
  for (int i = 0; i < 1000; i++) {
    int rc;
    while ((rc = concur_executor_submit(ex, tp_task_count, &ran, NULL)) ==
           CONCUR_EREJECTED) {
      rejected++;
      /* Make progress ourselves rather than spin on the worker. */
      (void)concur_executor_help(ex);
    }
    ck_assert_rc(rc, 0);
  }
  ck_assert_rc(concur_executor_shutdown(ex, CONCUR_SHUTDOWN_WAIT), 0);
  ck_assert_int_eq(atomic_load(&ran), 1000);
  concur_executor_stats s = tp_stats(ex);
  ck_assert_uint_eq(s.completed, 1000);
  ck_assert_uint_eq(s.rejected, (uint64_t)rejected);
  concur_executor_free(ex);
}
END_TEST

/* ---- TPE-12 shutdown_now, TPE-13 await_termination
 * --------------------------------- */

typedef struct unrun_log {
  int n;
  concur_task_fn fns[32];
  void *args[32];
} unrun_log;

static void unrun_record(void *ctx, concur_task_fn fn, void *arg) {
  unrun_log *l = ctx;
  if (l->n < 32) {
    l->fns[l->n] = fn;
    l->args[l->n] = arg;
  }
  l->n++;
}

static _Atomic long handed_back_cleanups;

static void count_global_cleanup(void *arg, void *result) {
  (void)arg;
  (void)result;
  atomic_fetch_add(&handed_back_cleanups, 1);
}

typedef struct cancellable {
  tp_gate *gate;
  _Atomic int saw_request;
} cancellable;

static int wait_then_check_cancel(void *arg, void **result) {
  (void)result;
  cancellable *c = arg;
  tp_gate_wait(c->gate);
  atomic_store(&c->saw_request, concur_task_cancel_requested() ? 1 : 0);
  return 0;
}

START_TEST(TPE_12_shutdown_now_hands_back_unstarted_tasks) {
  concur_thread_pool_options o = opts(2, 2, CONCUR_UNBOUNDED, 0);
  concur_executor *ex = tp_new(&o);
  tp_gate g;
  tp_gate_init(&g);
  cancellable run[2] = {{&g, 0}, {&g, 0}};
  concur_future *rf[2];
  for (int i = 0; i < 2; i++) {
    ck_assert_rc(
        concur_executor_submit(ex, wait_then_check_cancel, &run[i], &rf[i]), 0);
  }
  TP_AWAIT_PARKED(&g, 2);
  concur_future *qf[5];
  int marks[10];
  atomic_store(&handed_back_cleanups, 0);
  for (int i = 0; i < 10; i++) {
    concur_task t = CONCUR_TASK_INIT(tp_task_echo, &marks[i]);
    t.cleanup = count_global_cleanup;
    ck_assert_rc(concur_executor_submit_task(ex, &t, i < 5 ? &qf[i] : NULL), 0);
  }
  unrun_log log;
  memset(&log, 0, sizeof log);
  ck_assert_int_eq(concur_executor_shutdown_now(ex, unrun_record, &log), 10);
  ck_assert_int_eq(log.n, 10);
  for (int i = 0; i < 10; i++) {
    ck_assert(log.fns[i] == tp_task_echo);
    ck_assert_ptr_eq(log.args[i], &marks[i]); /* in queue order */
  }
  for (int i = 0; i < 5; i++) {
    ck_assert(concur_future_cancelled(qf[i]));
    concur_future_unref(qf[i]);
  }
  /* The caller owns the handed-back args: no cleanup ran, none will. */
  ck_assert_int_eq(atomic_load(&handed_back_cleanups), 0);
  ck_assert(concur_executor_is_shutdown(ex));
  ck_assert_rc(concur_executor_submit(ex, tp_task_echo, NULL, NULL),
               CONCUR_ESHUTDOWN);
  TP_ASSERT_STATS(ex, 12, 0, 2, 0, 0, 10);
  tp_gate_open(&g);
  ck_assert_rc(concur_executor_await_termination(ex, HARNESS_LONG_NS), 0);
  for (int i = 0; i < 2; i++) {
    ck_assert_rc(concur_future_result(rf[i], 0, NULL), 0);
    ck_assert_int_eq(atomic_load(&run[i].saw_request), 1);
    ck_assert(concur_future_cancel_requested(rf[i]));
    concur_future_unref(rf[i]);
  }
  ck_assert_int_eq(concur_executor_shutdown_now(ex, unrun_record, &log), 0);
  concur_executor_free(ex);
}
END_TEST

/* A fire-and-forget task has no future: shutdown_now's request reaches it
 * through the pool; before that it sees none. */
START_TEST(TPE_12_shutdown_now_reaches_fire_and_forget_tasks) {
  concur_thread_pool_options o = opts(2, 2, CONCUR_UNBOUNDED, 0);
  concur_executor *ex = tp_new(&o);
  tp_gate g;
  tp_gate_init(&g);
  cancellable before = {NULL, 5};
  cancellable during[2] = {{&g, 0}, {&g, 0}};
  /* One task that checks with no shutdown_now in sight. */
  tp_gate g0;
  tp_gate_init(&g0);
  before.gate = &g0;
  ck_assert_rc(
      concur_executor_submit(ex, wait_then_check_cancel, &before, NULL), 0);
  TP_AWAIT_PARKED(&g0, 1);
  tp_gate_open(&g0);
  /* Both workers parked in these two means the first one has finished. */
  for (int i = 0; i < 2; i++) {
    ck_assert_rc(
        concur_executor_submit(ex, wait_then_check_cancel, &during[i], NULL),
        0);
  }
  TP_AWAIT_PARKED(&g, 2);
  ck_assert_int_eq(concur_executor_shutdown_now(ex, NULL, NULL), 0);
  tp_gate_open(&g);
  ck_assert_rc(concur_executor_await_termination(ex, HARNESS_LONG_NS), 0);
  ck_assert_int_eq(atomic_load(&before.saw_request), 0);
  for (int i = 0; i < 2; i++) {
    ck_assert_int_eq(atomic_load(&during[i].saw_request), 1);
  }
  concur_executor_free(ex);
}
END_TEST

/*
 * Batches: with both workers busy, a worker that comes back to a queue of
 * fire-and-forget tasks takes several at once (pool.c, "Batches"). Here
 * worker 2 takes gate C with tasks behind it and blocks in C, worker 1
 * stays in gate A. The queue is [C, t0..t19] when B opens.
 */
typedef struct batch_case {
  concur_executor *ex;
  tp_gate a, b, c;
  long marks[20];
  _Atomic long ran;
} batch_case;

static void batch_case_start_in(batch_case *bc, concur_task_group **group) {
  concur_thread_pool_options o = opts(2, 2, CONCUR_UNBOUNDED, 0);
  bc->ex = tp_new(&o);
  tp_gate_init(&bc->a);
  tp_gate_init(&bc->b);
  tp_gate_init(&bc->c);
  atomic_init(&bc->ran, 0);
  ck_assert_rc(concur_executor_submit(bc->ex, tp_task_gate, &bc->a, NULL), 0);
  TP_AWAIT_PARKED(&bc->a, 1);
  ck_assert_rc(concur_executor_submit(bc->ex, tp_task_gate, &bc->b, NULL), 0);
  TP_AWAIT_PARKED(&bc->b, 1);
  ck_assert_rc(concur_executor_submit(bc->ex, tp_task_gate, &bc->c, NULL), 0);
  if (group != NULL) {
    ck_assert_rc(concur_task_group_new(group, bc->ex), 0);
  }
  for (int i = 0; i < 20; i++) {
    if (group != NULL) {
      ck_assert_rc(concur_task_group_submit(*group, tp_task_count, &bc->ran),
                   0);
    } else {
      ck_assert_rc(
          concur_executor_submit(bc->ex, tp_task_count, &bc->ran, NULL), 0);
    }
  }
  tp_gate_open(&bc->b);
  TP_AWAIT_PARKED(&bc->c, 1);
}

static void batch_case_start(batch_case *bc) {
  batch_case_start_in(bc, NULL);
}

typedef struct unrun_count {
  long n;
  long wrong;
  void *arg; /* every task's arg */
} unrun_count;

static void unrun_counting(void *ctx, concur_task_fn fn, void *arg) {
  unrun_count *u = ctx;
  u->n++;
  if (fn != tp_task_count || arg != u->arg) {
    u->wrong++;
  }
}

START_TEST(TPE_12_shutdown_now_takes_back_tasks_a_worker_took_in_a_batch) {
  batch_case bc;
  batch_case_start(&bc);
  /* Both workers blocked: whatever did not run is in worker 2's batch or
   * in the queue, and shutdown_now hands every one back. */
  ck_assert_int_eq(atomic_load(&bc.ran), 0);
  unrun_count u = {0, 0, &bc.ran};
  ck_assert_int_eq(concur_executor_shutdown_now(bc.ex, unrun_counting, &u), 20);
  ck_assert_int_eq(u.n, 20);
  ck_assert_int_eq(u.wrong, 0);
  tp_gate_open(&bc.a);
  tp_gate_open(&bc.c);
  ck_assert_rc(concur_executor_await_termination(bc.ex, HARNESS_LONG_NS), 0);
  ck_assert_int_eq(atomic_load(&bc.ran), 0);
  TP_ASSERT_STATS(bc.ex, 23, 0, 0, 3, 0, 20);
  concur_executor_free(bc.ex);
}
END_TEST

START_TEST(shutdown_cancel_futures_cancels_tasks_taken_in_a_batch) {
  batch_case bc;
  batch_case_start(&bc);
  ck_assert_rc(concur_executor_shutdown(bc.ex, CONCUR_SHUTDOWN_CANCEL_FUTURES),
               0);
  tp_gate_open(&bc.a);
  tp_gate_open(&bc.c);
  ck_assert_rc(concur_executor_await_termination(bc.ex, HARNESS_LONG_NS), 0);
  ck_assert_int_eq(atomic_load(&bc.ran), 0);
  TP_ASSERT_STATS(bc.ex, 23, 0, 0, 3, 0, 20);
  concur_executor_free(bc.ex);
}
END_TEST

/* A task group's tasks (an on_done each) batch too; cancelled in a batch,
 * the group counts them cancelled. */
START_TEST(group_tasks_cancelled_in_a_batch_count_in_the_group) {
  batch_case bc;
  concur_task_group *g = NULL;
  batch_case_start_in(&bc, &g);
  ck_assert_rc(concur_executor_shutdown(bc.ex, CONCUR_SHUTDOWN_CANCEL_FUTURES),
               0);
  tp_gate_open(&bc.a);
  tp_gate_open(&bc.c);
  ck_assert_rc(concur_task_group_wait(g, HARNESS_LONG_NS, NULL), 0);
  concur_task_group_counts c = CONCUR_TASK_GROUP_COUNTS_INIT;
  ck_assert_rc(concur_task_group_get_counts(g, &c), 0);
  ck_assert_uint_eq(c.cancelled, 20);
  ck_assert_uint_eq(c.ok + c.failed + c.pending, 0);
  ck_assert_int_eq(atomic_load(&bc.ran), 0);
  concur_task_group_free(g);
  concur_executor_free(bc.ex);
}
END_TEST

/* A batch never waits behind a blocked task while a worker is free: the
 * worker that comes back idle takes it over. */
START_TEST(an_idle_worker_takes_over_a_batch_behind_a_blocked_task) {
  batch_case bc;
  batch_case_start(&bc);
  tp_gate_open(&bc.a); /* worker 1 runs the queue, then worker 2's batch */
  /* Worker 1 sleeps only once it found no batch to take over (it looks
   * after announcing itself, before it parks). */
  TP_AWAIT_PARKED(bc.ex, 1);
  ck_assert_int_eq(atomic_load(&bc.ran), 20); /* C still blocks worker 2 */
  tp_gate_open(&bc.c);
  ck_assert_rc(concur_executor_shutdown(bc.ex, CONCUR_SHUTDOWN_WAIT), 0);
  TP_ASSERT_STATS(bc.ex, 23, 0, 0, 23, 0, 0);
  concur_executor_free(bc.ex);
}
END_TEST

/* A task that waits (helping) for a group whose tasks another worker took
 * in a batch, behind one that waits for a later one of them: the helper
 * takes single entries out of the batch, so nothing deadlocks. */
typedef struct helper_case {
  concur_executor *ex;
  tp_gate e; /* g1 waits for it, g2 opens it */
  tp_gate f; /* x waits for it before it waits for the group */
  _Atomic long ran;
  int wait_rc;
} helper_case;

static int open_gate_task(void *arg, void **result) {
  (void)result;
  tp_gate_open(arg);
  return 0;
}

static int x_task(void *arg, void **result) {
  (void)result;
  helper_case *h = arg;
  concur_task_group *g = NULL;
  if (concur_task_group_new(&g, h->ex) != 0 ||
      concur_task_group_submit(g, tp_task_gate, &h->e) != 0 ||
      concur_task_group_submit(g, open_gate_task, &h->e) != 0) {
    return 1;
  }
  for (int i = 0; i < 6; i++) {
    if (concur_task_group_submit(g, tp_task_count, &h->ran) != 0) {
      return 1;
    }
  }
  tp_gate_wait(&h->f); /* a wait that does not help */
  h->wait_rc = concur_task_group_wait(g, HARNESS_LONG_NS, NULL);
  concur_task_group_free(g);
  return 0;
}

START_TEST(a_helping_waiter_takes_entries_out_of_a_batch) {
  helper_case h;
  memset(&h, 0, sizeof h);
  h.wait_rc = -1;
  concur_thread_pool_options o = opts(2, 2, CONCUR_UNBOUNDED, 0);
  h.ex = tp_new(&o);
  tp_gate_init(&h.e);
  tp_gate_init(&h.f);
  atomic_init(&h.ran, 0);
  tp_gate b;
  tp_gate_init(&b);
  ck_assert_rc(concur_executor_submit(h.ex, tp_task_gate, &b, NULL), 0);
  TP_AWAIT_PARKED(&b, 1);
  concur_future *x;
  ck_assert_rc(concur_executor_submit(h.ex, x_task, &h, &x), 0);
  TP_AWAIT_PARKED(&h.f, 1); /* the group's 8 tasks are queued */
  tp_gate_open(&b);         /* that worker takes g1 and a batch behind it */
  TP_AWAIT_PARKED(&h.e, 1); /* g1 waits for g2 */
  tp_gate_open(&h.f);       /* x waits for the group, helping */
  ck_assert_rc(concur_future_result(x, HARNESS_LONG_NS, NULL), 0);
  ck_assert_rc(h.wait_rc, 0);
  ck_assert_int_eq(atomic_load(&h.ran), 6);
  concur_future_unref(x);
  concur_executor_free(h.ex);
}
END_TEST

START_TEST(TPE_12_shutdown_now_without_unrun_runs_cleanups) {
  concur_thread_pool_options o = opts(1, 1, CONCUR_UNBOUNDED, 0);
  concur_executor *ex = tp_new(&o);
  tp_gate g;
  tp_gate_init(&g);
  ck_assert_rc(concur_executor_submit(ex, tp_task_gate, &g, NULL), 0);
  TP_AWAIT_PARKED(&g, 1);
  _Atomic long cleanups = 0;
  concur_future *f;
  concur_task t = CONCUR_TASK_INIT(tp_task_echo, &cleanups);
  t.cleanup = count_cleanup;
  ck_assert_rc(concur_executor_submit_task(ex, &t, &f), 0);
  ck_assert_rc(concur_executor_submit_task(ex, &t, NULL), 0);
  ck_assert_int_eq(concur_executor_shutdown_now(ex, NULL, NULL), 2);
  ck_assert_int_eq(atomic_load(&cleanups), 1); /* the fire-and-forget one */
  ck_assert(concur_future_cancelled(f));
  concur_future_unref(f);
  ck_assert_int_eq(atomic_load(&cleanups), 2);
  tp_gate_open(&g);
  ck_assert_rc(concur_executor_await_termination(ex, HARNESS_LONG_NS), 0);
  concur_executor_free(ex);
}
END_TEST

START_TEST(TPE_13_await_termination) {
  concur_thread_pool_options o = opts(1, 1, CONCUR_UNBOUNDED, 0);
  concur_executor *ex = tp_new(&o);
  ck_assert_rc(concur_executor_await_termination(ex, 0), CONCUR_ESTATE);
  ck_assert_rc(concur_executor_await_termination(ex, 1000000), CONCUR_ESTATE);
  ck_assert_rc(concur_executor_await_termination(ex, -1), CONCUR_EINVAL);
  ck_assert_rc(concur_executor_await_termination(ex, INT64_MIN), CONCUR_EINVAL);
  ck_assert_rc(concur_executor_await_termination(NULL, 0), CONCUR_EINVAL);
  tp_gate g;
  tp_gate_init(&g);
  ck_assert_rc(concur_executor_submit(ex, tp_task_gate, &g, NULL), 0);
  TP_AWAIT_PARKED(&g, 1);
  ck_assert_rc(concur_executor_shutdown(ex, 0), 0);
  /* Terminating: shut down, not terminated. */
  ck_assert(concur_executor_is_shutdown(ex));
  ck_assert(!concur_executor_is_terminated(ex));
  ck_assert_rc(concur_executor_await_termination(ex, CONCUR_NOWAIT),
               CONCUR_ETIMEDOUT);
  int64_t t0 = harness_now_ns();
  ck_assert_rc(concur_executor_await_termination(ex, 20000000),
               CONCUR_ETIMEDOUT);
  HARNESS_ASSERT_TIMED_OUT(harness_now_ns() - t0, 20000000);
  tp_gate_open(&g);
  ck_assert_rc(concur_executor_await_termination(ex, CONCUR_FOREVER), 0);
  ck_assert(concur_executor_is_terminated(ex));
  ck_assert_rc(concur_executor_await_termination(ex, 0), 0);
  ck_assert(!concur_executor_is_terminated(NULL));
  ck_assert(!concur_executor_is_shutdown(NULL));
  concur_executor_free(ex);
}
END_TEST

typedef struct waiter_ctx {
  concur_executor *ex;
  _Atomic int rc;
} waiter_ctx;

static void *await_forever(void *arg) {
  waiter_ctx *w = arg;
  atomic_store(&w->rc,
               concur_executor_await_termination(w->ex, CONCUR_FOREVER));
  return NULL;
}

START_TEST(TPE_13_many_waiters_wake_at_termination) {
  concur_thread_pool_options o = opts(1, 1, CONCUR_UNBOUNDED, 0);
  concur_executor *ex = tp_new(&o);
  tp_gate g;
  tp_gate_init(&g);
  ck_assert_rc(concur_executor_submit(ex, tp_task_gate, &g, NULL), 0);
  TP_AWAIT_PARKED(&g, 1);
  ck_assert_rc(concur_executor_shutdown(ex, 0), 0);
  waiter_ctx w[3] = {{ex, 1}, {ex, 1}, {ex, 1}};
  pthread_t t[3];
  for (int i = 0; i < 3; i++) {
    ck_assert_int_eq(pthread_create(&t[i], NULL, await_forever, &w[i]), 0);
  }
  TP_AWAIT_PARKED(CONCUR__POOL_KEY_TERMINATION(ex), 3);
  tp_gate_open(&g);
  for (int i = 0; i < 3; i++) {
    pthread_join(t[i], NULL);
    ck_assert_rc(atomic_load(&w[i].rc), 0);
  }
  concur_executor_free(ex);
}
END_TEST

/* ---- TPE-14 cancelled tasks leave the queue, TPE-22 callbacks
 * --------------------- */

START_TEST(TPE_14_cancelled_task_leaves_the_queue_at_once) {
  tp_gate g;
  tp_gate_init(&g);
  concur_future *a, *b, *c, *d;
  concur_executor *ex = saturated(CONCUR_REJECT_ABORT, &g, &a, &b);
  ck_assert_rc(concur_executor_submit(ex, tp_task_echo, NULL, &c),
               CONCUR_EREJECTED);
  ck_assert(!concur_future_cancel(a)); /* running: not removable */
  ck_assert(concur_future_cancel(b));  /* queued: removed */
  TP_ASSERT_STATS(ex, 2, 0, 1, 0, 0, 1);
  /* Its place is free at once. */
  ck_assert_rc(concur_executor_submit(ex, tp_task_echo, (void *)6, &d), 0);
  TP_ASSERT_STATS(ex, 3, 1, 1, 0, 0, 1);
  tp_gate_open(&g);
  void *v;
  ck_assert_rc(concur_future_result(d, HARNESS_LONG_NS, &v), 0);
  ck_assert_ptr_eq(v, (void *)6);
  ck_assert_rc(concur_future_result(a, HARNESS_LONG_NS, NULL), 0);
  ck_assert_rc(concur_executor_shutdown(ex, CONCUR_SHUTDOWN_WAIT), 0);
  TP_ASSERT_STATS(ex, 3, 0, 0, 2, 0, 1);
  concur_future_unref(a);
  concur_future_unref(b);
  concur_future_unref(d);
  concur_executor_free(ex);
}
END_TEST

typedef struct cb_count {
  _Atomic long calls;
  _Atomic long cancelled;
} cb_count;

static void count_done(concur_future *f, void *arg) {
  cb_count *c = arg;
  atomic_fetch_add(&c->calls, 1);
  if (concur_future_cancelled(f)) {
    atomic_fetch_add(&c->cancelled, 1);
  }
}

START_TEST(TPE_22_cancelled_queued_tasks_call_back_once_never_run) {
  concur_thread_pool_options o = opts(1, 1, CONCUR_UNBOUNDED, 0);
  concur_executor *ex = tp_new(&o);
  tp_gate g;
  tp_gate_init(&g);
  ck_assert_rc(concur_executor_submit(ex, tp_task_gate, &g, NULL), 0);
  TP_AWAIT_PARKED(&g, 1);
  _Atomic long ran = 0;
  cb_count cb = {0, 0};
  concur_future *f[10];
  for (int i = 0; i < 10; i++) {
    ck_assert_rc(concur_executor_submit(ex, tp_task_count, &ran, &f[i]), 0);
    ck_assert_rc(concur_future_add_done_callback(f[i], count_done, &cb), 0);
  }
  for (int i = 0; i < 10; i++) {
    ck_assert(concur_future_cancel(f[i]));
    ck_assert(concur_future_cancel(f[i])); /* again: still true, no call */
  }
  ck_assert_int_eq(atomic_load(&cb.calls), 10);
  tp_gate_open(&g);
  ck_assert_rc(concur_executor_shutdown(ex, CONCUR_SHUTDOWN_WAIT), 0);
  ck_assert_int_eq(atomic_load(&cb.calls), 10);
  ck_assert_int_eq(atomic_load(&cb.cancelled), 10);
  ck_assert_int_eq(atomic_load(&ran), 0);
  TP_ASSERT_STATS(ex, 11, 0, 0, 1, 0, 10);
  for (int i = 0; i < 10; i++) {
    concur_future_unref(f[i]);
  }
  concur_executor_free(ex);
}
END_TEST

/* ---- TPE-15 hooks
 * -------------------------------------------------------------------- */

typedef struct hook_log {
  _Atomic long before;
  _Atomic long after;
  _Atomic long order_errors;
  _Atomic long code_sum;
  _Atomic long completed_at_termination;
  _Atomic long terminated;
  concur_executor *ex;
} hook_log;

static _Thread_local int in_task;

static void log_before(void *arg, concur_task_fn fn, void *task_arg) {
  hook_log *h = arg;
  if (fn != tp_task_code || in_task) {
    atomic_fetch_add(&h->order_errors, 1);
  }
  (void)task_arg;
  in_task = 1;
  atomic_fetch_add(&h->before, 1);
}

static void log_after(void *arg, concur_task_fn fn, void *task_arg, int code) {
  hook_log *h = arg;
  if (fn != tp_task_code || !in_task || code != (int)(intptr_t)task_arg) {
    atomic_fetch_add(&h->order_errors, 1);
  }
  in_task = 0;
  atomic_fetch_add(&h->after, 1);
  atomic_fetch_add(&h->code_sum, code);
}

static void log_terminated(void *arg) {
  hook_log *h = arg;
  atomic_store(&h->completed_at_termination, atomic_load(&h->after));
  atomic_fetch_add(&h->terminated, 1);
}

START_TEST(TPE_15_hooks_around_every_task_and_terminated_once) {
  hook_log h;
  memset(&h, 0, sizeof h);
  concur_thread_pool_options o = opts(3, 3, CONCUR_UNBOUNDED, 0);
  o.before = log_before;
  o.before_arg = &h;
  o.after = log_after;
  o.after_arg = &h;
  o.terminated = log_terminated;
  o.terminated_arg = &h;
  concur_executor *ex = tp_new(&o);
  for (int i = 0; i < 60; i++) {
    ck_assert_rc(concur_executor_submit(ex, tp_task_code,
                                        (void *)(intptr_t)(i % 4), NULL),
                 0);
  }
  ck_assert_rc(concur_executor_shutdown(ex, CONCUR_SHUTDOWN_WAIT), 0);
  ck_assert_int_eq(atomic_load(&h.before), 60);
  ck_assert_int_eq(atomic_load(&h.after), 60);
  ck_assert_int_eq(atomic_load(&h.order_errors), 0);
  ck_assert_int_eq(atomic_load(&h.code_sum), 15 * (0 + 1 + 2 + 3));
  ck_assert_int_eq(atomic_load(&h.terminated), 1);
  ck_assert_int_eq(atomic_load(&h.completed_at_termination), 60);
  concur_executor_free(ex);
  ck_assert_int_eq(atomic_load(&h.terminated), 1);
}
END_TEST

/* ---- TPE-17 idle reuse and names, TPE-18/19 wake-ups
 * -------------------------------- */

START_TEST(TPE_17_sequential_submits_reuse_one_worker) {
  concur_executor *ex = tp_new(NULL);
  for (int i = 0; i < 3; i++) {
    concur_future *f;
    ck_assert_rc(concur_executor_submit(ex, tp_task_echo, NULL, &f), 0);
    ck_assert_rc(concur_future_result(f, HARNESS_LONG_NS, NULL), 0);
    concur_future_unref(f);
  }
  concur_executor_stats s = tp_stats(ex);
  ck_assert_uint_eq(s.workers, 1);
  ck_assert_uint_eq(s.largest, 1);
  concur_executor_free(ex);
}
END_TEST

typedef struct names {
  tp_gate *gate;
  pthread_mutex_t lock;
  char seen[64][16];
  int n;
} names;

static int record_name(void *arg, void **result) {
  (void)result;
  names *nm = arg;
  char buf[16] = {0};
  pthread_getname_np(pthread_self(), buf, sizeof buf);
  pthread_mutex_lock(&nm->lock);
  if (nm->n < 64) {
    memcpy(nm->seen[nm->n], buf, sizeof buf);
  }
  nm->n++;
  pthread_mutex_unlock(&nm->lock);
  tp_gate_wait(nm->gate);
  return 0;
}

START_TEST(TPE_17_saturation_makes_exactly_max_workers_named_in_order) {
  concur_thread_pool_options o = CONCUR_THREAD_POOL_OPTIONS_INIT;
  o.max_workers = 4;
  o.thread_name_prefix = "tpe17-";
  concur_executor *ex = tp_new(&o);
  tp_gate g;
  tp_gate_init(&g);
  names nm;
  memset(&nm, 0, sizeof nm);
  nm.gate = &g;
  pthread_mutex_init(&nm.lock, NULL);
  for (int i = 0; i < 15 * 4; i++) {
    ck_assert_rc(concur_executor_submit(ex, record_name, &nm, NULL), 0);
  }
  TP_AWAIT_PARKED(&g, 4);
  concur_executor_stats s = tp_stats(ex);
  ck_assert_uint_eq(s.workers, 4);
  ck_assert_uint_eq(s.largest, 4);
  pthread_mutex_lock(&nm.lock);
  int seen_mask = 0;
  for (int i = 0; i < nm.n && i < 4; i++) {
    ck_assert_int_eq(strncmp(nm.seen[i], "tpe17-", 6), 0);
    int idx = nm.seen[i][6] - '0';
    ck_assert(idx >= 0 && idx < 4 && nm.seen[i][7] == '\0');
    seen_mask |= 1 << idx;
  }
  pthread_mutex_unlock(&nm.lock);
  ck_assert_int_eq(seen_mask, 0xF);
  tp_gate_open(&g);
  ck_assert_rc(concur_executor_shutdown(ex, CONCUR_SHUTDOWN_WAIT), 0);
  ck_assert_uint_eq(tp_stats(ex).largest, 4);
  ck_assert_int_eq(nm.n, 60);
  concur_executor_free(ex);
  pthread_mutex_destroy(&nm.lock);
}
END_TEST

static int get_name(void *arg, void **result) {
  (void)arg;
  char *buf = concur__calloc(1, 16);
  if (buf == NULL) {
    return 1;
  }
  pthread_getname_np(pthread_self(), buf, 16);
  *result = buf;
  return 0;
}

static void free_result(void *arg, void *result) {
  (void)arg;
  concur__free(result);
}

START_TEST(TPE_17_default_prefix_is_unique_per_pool) {
  char got[2][16];
  for (int i = 0; i < 2; i++) {
    concur_executor *ex = tp_new(NULL);
    concur_future *f;
    concur_task t = CONCUR_TASK_INIT(get_name, NULL);
    t.cleanup = free_result;
    ck_assert_rc(concur_executor_submit_task(ex, &t, &f), 0);
    void *v;
    ck_assert_rc(concur_future_result(f, HARNESS_LONG_NS, &v), 0);
    memcpy(got[i], v, 16);
    concur_future_unref(f);
    concur_executor_free(ex);
    ck_assert_int_eq(strncmp(got[i], "pool-", 5), 0);
    size_t n = strlen(got[i]);
    ck_assert(n >= 8 && got[i][n - 1] == '0' && got[i][n - 2] == '-');
  }
  ck_assert_str_ne(got[0], got[1]);
}
END_TEST

START_TEST(TPE_18_queued_work_wakes_an_idle_worker) {
  concur_thread_pool_options o = opts(2, 2, CONCUR_UNBOUNDED, 0);
  o.prestart = true;
  concur_executor *ex = tp_new(&o);
  TP_AWAIT_PARKED(ex, 2);
  tp_gate g;
  tp_gate_init(&g);
  /* Both tasks must run at once: the second wakes the second worker. */
  ck_assert_rc(concur_executor_submit(ex, tp_task_gate, &g, NULL), 0);
  ck_assert_rc(concur_executor_submit(ex, tp_task_gate, &g, NULL), 0);
  TP_AWAIT_PARKED(&g, 2);
  tp_gate_open(&g);
  concur_executor_free(ex);
}
END_TEST

START_TEST(TPE_19_more_workers_than_cpus_all_start) {
  concur_thread_pool_options o = opts(8, 8, CONCUR_UNBOUNDED, 0);
  concur_executor *ex = tp_new(&o);
  tp_gate g;
  tp_gate_init(&g);
  for (int i = 0; i < 8; i++) {
    ck_assert_rc(concur_executor_submit(ex, tp_task_gate, &g, NULL), 0);
  }
  TP_AWAIT_PARKED(&g, 8);
  ck_assert_uint_eq(tp_stats(ex).active, 8);
  tp_gate_open(&g);
  concur_executor_free(ex);
}
END_TEST

/* ---- TPE-20 work from inside a saturated pool
 * ---------------------------------------- */

typedef struct fan {
  concur_executor *ex;
  _Atomic long inner_ok;
  _Atomic int helped;
} fan;

static int fan_out(void *arg, void **result) {
  (void)result;
  fan *c = arg;
  concur_future *f[5];
  int n = 0;
  for (int i = 0; i < 5; i++) {
    if (concur_executor_submit(c->ex, tp_task_echo, (void *)(intptr_t)i,
                               &f[n]) == 0) {
      n++;
    }
  }
  /* Both workers run fan_out: the inner tasks only run because waiting on
   * them (or help) runs them here. */
  if (concur_executor_help(c->ex) == 1) {
    atomic_store(&c->helped, 1);
  }
  for (int i = 0; i < n; i++) {
    void *v;
    if (concur_future_result(f[i], HARNESS_LONG_NS, &v) == 0) {
      atomic_fetch_add(&c->inner_ok, 1);
    }
    concur_future_unref(f[i]);
  }
  return 0;
}

START_TEST(TPE_20_tasks_inside_a_saturated_pool_make_progress) {
  concur_thread_pool_options o = opts(2, 2, CONCUR_UNBOUNDED, 0);
  concur_executor *ex = tp_new(&o);
  fan c = {ex, 0, 0};
  concur_future *f[2];
  for (int i = 0; i < 2; i++) {
    ck_assert_rc(concur_executor_submit(ex, fan_out, &c, &f[i]), 0);
  }
  for (int i = 0; i < 2; i++) {
    ck_assert_rc(concur_future_result(f[i], HARNESS_LONG_NS, NULL), 0);
    concur_future_unref(f[i]);
  }
  ck_assert_int_eq(atomic_load(&c.inner_ok), 10);
  ck_assert_rc(concur_executor_shutdown(ex, CONCUR_SHUTDOWN_WAIT), 0);
  TP_ASSERT_STATS(ex, 12, 0, 0, 12, 0, 0);
  ck_assert_uint_le(tp_stats(ex).largest, 2);
  concur_executor_free(ex);
}
END_TEST

Suite *concur_test_suite(void) {
  Suite *s = suite_create("thread_pool_admission");
  TCase *tc = harness_tcase("admission", 60);
  tcase_add_test(tc, TPE_02_prestart_core_workers);
  tcase_add_test(tc, TPE_02_below_core_an_idle_worker_is_used_first);
  tcase_add_test(tc, TPE_03_admission_order);
  tcase_add_test(tc, TPE_04_unbounded_queue_never_grows_past_core);
  tcase_add_test(tc, TPE_04_handoff_queue_grows_to_max);
  tcase_add_test(tc, TPE_04_handoff_to_idle_workers_is_not_queued);
  tcase_add_test(tc, TPE_05_counters_while_tasks_are_parked);
  suite_add_tcase(s, tc);

  tc = harness_tcase("sizes", 60);
  tcase_add_test(tc, TPE_06_workers_above_core_retire_but_never_below);
  tcase_add_test(tc, TPE_07_allow_core_timeout_shrinks_to_zero_and_restarts);
  tcase_add_test(tc, TPE_08_resizing_keeps_core_le_max);
  tcase_add_test(tc, TPE_08_raising_core_serves_queued_work);
  tcase_add_test(tc, TPE_08_lowering_max_retires_extra_workers);
  suite_add_tcase(s, tc);

  tc = harness_tcase("policies", 60);
  tcase_add_test(tc, TPE_09_abort_policy);
  tcase_add_test(tc, TPE_09_caller_runs_policy);
  tcase_add_test(tc, TPE_10_discard_policy_completes_the_future_cancelled);
  tcase_add_test(tc, TPE_09_discard_oldest_policy);
  tcase_add_test(tc, TPE_09_block_policy_times_out_and_admits);
  tcase_add_test(tc, TPE_09_blocked_submitter_sees_shutdown);
  tcase_add_test(tc,
                 TPE_11_task_resubmitted_through_rejections_runs_every_time);
  suite_add_tcase(s, tc);

  tc = harness_tcase("shutdown", 60);
  tcase_add_test(tc, TPE_12_shutdown_now_hands_back_unstarted_tasks);
  tcase_add_test(tc, TPE_12_shutdown_now_reaches_fire_and_forget_tasks);
  tcase_add_test(tc, TPE_12_shutdown_now_without_unrun_runs_cleanups);
  tcase_add_test(tc,
                 TPE_12_shutdown_now_takes_back_tasks_a_worker_took_in_a_batch);
  tcase_add_test(tc, shutdown_cancel_futures_cancels_tasks_taken_in_a_batch);
  tcase_add_test(tc, an_idle_worker_takes_over_a_batch_behind_a_blocked_task);
  tcase_add_test(tc, group_tasks_cancelled_in_a_batch_count_in_the_group);
  tcase_add_test(tc, a_helping_waiter_takes_entries_out_of_a_batch);
  tcase_add_test(tc, TPE_13_await_termination);
  tcase_add_test(tc, TPE_13_many_waiters_wake_at_termination);
  tcase_add_test(tc, TPE_14_cancelled_task_leaves_the_queue_at_once);
  tcase_add_test(tc, TPE_22_cancelled_queued_tasks_call_back_once_never_run);
  tcase_add_test(tc, TPE_15_hooks_around_every_task_and_terminated_once);
  suite_add_tcase(s, tc);

  tc = harness_tcase("workers", 60);
  tcase_add_test(tc, TPE_17_sequential_submits_reuse_one_worker);
  tcase_add_test(tc,
                 TPE_17_saturation_makes_exactly_max_workers_named_in_order);
  tcase_add_test(tc, TPE_17_default_prefix_is_unique_per_pool);
  tcase_add_test(tc, TPE_18_queued_work_wakes_an_idle_worker);
  tcase_add_test(tc, TPE_19_more_workers_than_cpus_all_start);
  tcase_add_test(tc, TPE_20_tasks_inside_a_saturated_pool_make_progress);
  suite_add_tcase(s, tc);
  return s;
}
