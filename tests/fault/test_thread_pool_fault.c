/*
 * Fault injection for the thread pool: thread creation failing at every
 * worker start (TPE-16, XC-04), and allocation failing on every path of
 * construction and submit (XC-03). Nothing may leak (ASan checks), no
 * future may be left pending, and a failed submit leaves the caller's arg
 * alone (its cleanup does not run).
 */
#include "../unit/test_thread_pool_util.h"

#include <string.h>

static _Atomic long cleanups;

static void count_cleanup(void *arg, void *result) {
  (void)arg;
  (void)result;
  atomic_fetch_add(&cleanups, 1);
}

/* ---- construction ---------------------------------------------------------
 */

START_TEST(new_fails_cleanly_on_every_allocation) {
  for (long n = 1;; n++) {
    concur__fault_arm(CONCUR__FAULT_ALLOC, n, 0);
    concur_executor *ex = (concur_executor *)(uintptr_t)1;
    int rc = concur_thread_pool_new(&ex, NULL);
    concur__fault_arm(CONCUR__FAULT_ALLOC, 0, 0);
    if (rc == 0) {
      ck_assert_int_gt(n, 1);
      concur_executor_free(ex);
      break;
    }
    ck_assert_rc(rc, CONCUR_ENOMEM);
    ck_assert_ptr_null(ex);
    ck_assert_int_lt(n, 100);
  }
}
END_TEST

START_TEST(prestart_failure_leaves_nothing_behind) {
  concur_thread_pool_options o = CONCUR_THREAD_POOL_OPTIONS_INIT;
  o.max_workers = 4;
  o.prestart = true;
  for (long n = 1;; n++) {
    concur__fault_arm(CONCUR__FAULT_THREAD, n, 0);
    concur_executor *ex = (concur_executor *)(uintptr_t)1;
    int rc = concur_thread_pool_new(&ex, &o);
    concur__fault_arm(CONCUR__FAULT_THREAD, 0, 0);
    if (rc == 0) {
      ck_assert_int_eq(n, 5); /* four starts succeeded before */
      ck_assert_uint_eq(tp_stats(ex).workers, 4);
      concur_executor_free(ex);
      break;
    }
    ck_assert_rc(rc, CONCUR_EAGAIN);
    ck_assert_ptr_null(ex);
  }
  /* And the same with memory for a worker missing. */
  for (long n = 1;; n++) {
    concur__fault_arm(CONCUR__FAULT_ALLOC, n, 0);
    concur_executor *ex = NULL;
    int rc = concur_thread_pool_new(&ex, &o);
    concur__fault_arm(CONCUR__FAULT_ALLOC, 0, 0);
    if (rc == 0) {
      concur_executor_free(ex);
      break;
    }
    ck_assert_rc(rc, CONCUR_ENOMEM);
    ck_assert_int_lt(n, 100);
  }
}
END_TEST

/* ---- thread creation (TPE-16, XC-04)
 * ------------------------------------------ */

START_TEST(TPE_16_thread_failure_at_every_worker_start) {
  /* The nth worker start fails (once); everything accepted still runs. */
  for (long n = 1; n <= 5; n++) {
    concur_thread_pool_options o = CONCUR_THREAD_POOL_OPTIONS_INIT;
    o.max_workers = 4;
    concur_executor *ex = tp_new(&o);
    tp_gate g;
    tp_gate_init(&g);
    concur__fault_arm(CONCUR__FAULT_THREAD, n, 0);
    concur_future *fs[8];
    int accepted = 0;
    int eagain = 0;
    for (int i = 0; i < 8; i++) {
      fs[i] = NULL;
      int rc = concur_executor_submit(ex, tp_task_gate, &g, &fs[i]);
      if (rc == CONCUR_EAGAIN) {
        ck_assert_ptr_null(fs[i]);
        eagain++;
        continue;
      }
      ck_assert_rc(rc, 0);
      accepted++;
    }
    concur__fault_arm(CONCUR__FAULT_THREAD, 0, 0);
    /* EAGAIN only when no worker was alive: the very first start. */
    ck_assert_int_eq(eagain, n == 1 ? 1 : 0);
    concur_executor_stats s = tp_stats(ex);
    ck_assert_uint_eq(s.submitted, (uint64_t)accepted);
    ck_assert_uint_eq(s.workers, 4); /* later submits start the rest */
    tp_gate_open(&g);
    for (int i = 0; i < 8; i++) {
      if (fs[i] != NULL) {
        ck_assert_rc(concur_future_result(fs[i], HARNESS_LONG_NS, NULL), 0);
        concur_future_unref(fs[i]);
      }
    }
    ck_assert_rc(concur_executor_shutdown(ex, CONCUR_SHUTDOWN_WAIT), 0);
    s = tp_stats(ex);
    ck_assert_uint_eq(s.completed, (uint64_t)accepted);
    ck_assert_uint_eq(s.rejected, (uint64_t)eagain);
    concur_executor_free(ex);
  }
}
END_TEST

START_TEST(TPE_16_no_more_threads_after_k_workers) {
  /* Creation fails for good once k workers exist: the pool runs on them;
   * with none at all a submit reports CONCUR_EAGAIN and keeps nothing. */
  for (long k = 0; k <= 4; k++) {
    concur_thread_pool_options o = CONCUR_THREAD_POOL_OPTIONS_INIT;
    o.max_workers = 4;
    o.queue_capacity = 2;
    concur_executor *ex = tp_new(&o);
    concur__fault_arm(CONCUR__FAULT_THREAD, k + 1, 1);
    _Atomic long ran = 0;
    atomic_store(&cleanups, 0);
    long accepted = 0;
    long failed = 0;
    for (int i = 0; i < 200; i++) {
      concur_task t = CONCUR_TASK_INIT(tp_task_count, &ran);
      t.cleanup = count_cleanup;
      int rc = concur_executor_submit_task(ex, &t, NULL);
      if (rc == 0) {
        accepted++;
      } else {
        ck_assert_msg(rc == CONCUR_EAGAIN || rc == CONCUR_EREJECTED,
                      "submit: %s", concur_err_name(rc));
        if (k == 0) {
          ck_assert_rc(rc, CONCUR_EAGAIN);
        }
        failed++;
      }
    }
    ck_assert_uint_le(tp_stats(ex).largest, (uint64_t)k);
    if (k == 0) {
      ck_assert_int_eq(accepted, 0);
    }
    ck_assert_rc(concur_executor_shutdown(ex, CONCUR_SHUTDOWN_WAIT), 0);
    concur__fault_arm(CONCUR__FAULT_THREAD, 0, 0);
    ck_assert_int_eq(atomic_load(&ran), accepted);
    ck_assert_int_eq(atomic_load(&cleanups), accepted); /* none for failed */
    concur_executor_stats s = tp_stats(ex);
    ck_assert_uint_eq(s.completed, (uint64_t)accepted);
    ck_assert_uint_eq(s.rejected, (uint64_t)failed);
    concur_executor_free(ex);
  }
}
END_TEST

START_TEST(set_core_reports_thread_failure) {
  concur_thread_pool_options o = CONCUR_THREAD_POOL_OPTIONS_INIT;
  o.core_workers = 1;
  o.max_workers = 4;
  concur_executor *ex = tp_new(&o);
  tp_gate g;
  tp_gate_init(&g);
  for (int i = 0; i < 4; i++) {
    ck_assert_rc(concur_executor_submit(ex, tp_task_gate, &g, NULL), 0);
  }
  TP_AWAIT_PARKED(&g, 1);
  concur__fault_arm(CONCUR__FAULT_THREAD, 2, 1);
  ck_assert_rc(concur_thread_pool_set_core_workers(ex, 4), CONCUR_EAGAIN);
  concur__fault_arm(CONCUR__FAULT_THREAD, 0, 0);
  ck_assert_int_eq(concur_thread_pool_core_workers(ex), 4);
  TP_AWAIT_PARKED(&g, 2);
  ck_assert_uint_eq(tp_stats(ex).workers, 2);
  ck_assert_rc(concur_thread_pool_prestart_core_worker(ex), 1);
  concur__fault_arm(CONCUR__FAULT_THREAD, 1, 1);
  ck_assert_rc(concur_thread_pool_prestart_core_worker(ex), CONCUR_EAGAIN);
  ck_assert_rc(concur_thread_pool_prestart_all_core_workers(ex), CONCUR_EAGAIN);
  concur__fault_arm(CONCUR__FAULT_THREAD, 0, 0);
  tp_gate_open(&g);
  ck_assert_rc(concur_executor_shutdown(ex, CONCUR_SHUTDOWN_WAIT), 0);
  TP_ASSERT_STATS(ex, 4, 0, 0, 4, 0, 0);
  concur_executor_free(ex);
}
END_TEST

/* ---- allocation on every path of submit (XC-03)
 * ----------------------------------- */

/* Submits with the nth allocation failing until a submit succeeds; returns
 * the future (or NULL when out is not wanted). */
static concur_future *submit_through_faults(concur_executor *ex,
                                            concur_task_fn fn, void *arg,
                                            bool want) {
  for (long n = 1;; n++) {
    concur_task t = CONCUR_TASK_INIT(fn, arg);
    t.cleanup = count_cleanup;
    long before = atomic_load(&cleanups);
    concur_future *f = (concur_future *)(uintptr_t)1;
    concur__fault_arm(CONCUR__FAULT_ALLOC, n, 0);
    int rc = concur_executor_submit_task(ex, &t, want ? &f : NULL);
    concur__fault_arm(CONCUR__FAULT_ALLOC, 0, 0);
    if (rc == 0) {
      return want ? f : NULL;
    }
    ck_assert_rc(rc, CONCUR_ENOMEM);
    if (want) {
      ck_assert_ptr_null(f);
    }
    ck_assert_int_eq(atomic_load(&cleanups), before); /* caller keeps arg */
    ck_assert_int_lt(n, 100);
  }
}

START_TEST(allocation_failure_on_every_submit_path) {
  atomic_store(&cleanups, 0);
  concur_thread_pool_options o = CONCUR_THREAD_POOL_OPTIONS_INIT;
  o.max_workers = 2;
  o.core_workers = 1;
  o.queue_capacity = 1000;
  concur_executor *ex = tp_new(&o);
  tp_gate g;
  tp_gate_init(&g);
  /* A worker start (its memory), with a future (the node). */
  concur_future *blocker = submit_through_faults(ex, tp_task_gate, &g, true);
  TP_AWAIT_PARKED(&g, 1);
  /* Queued with and without futures, across new queue segments. */
  concur_future *fs[600];
  int nf = 0;
  _Atomic long ran = 0;
  for (int i = 0; i < 600; i++) {
    bool want = i % 2 == 0;
    concur_future *f = submit_through_faults(ex, tp_task_count, &ran, want);
    if (want) {
      fs[nf++] = f;
    }
  }
  concur_executor_stats s = tp_stats(ex);
  ck_assert_uint_eq(s.submitted, 601);
  ck_assert_uint_eq(s.queued, 600);
  tp_gate_open(&g);
  ck_assert_rc(concur_executor_shutdown(ex, CONCUR_SHUTDOWN_WAIT), 0);
  for (int i = 0; i < nf; i++) {
    ck_assert(concur_future_done(fs[i]));
    concur_future_unref(fs[i]);
  }
  concur_future_unref(blocker);
  ck_assert_int_eq(atomic_load(&ran), 600);
  ck_assert_int_eq(atomic_load(&cleanups), 601);
  TP_ASSERT_STATS(ex, 601, 0, 0, 601, 0, 0);
  concur_executor_free(ex);
}
END_TEST

START_TEST(allocation_failure_with_every_policy) {
  concur_rejection_policy policies[] = {
      CONCUR_REJECT_ABORT, CONCUR_REJECT_CALLER_RUNS, CONCUR_REJECT_DISCARD,
      CONCUR_REJECT_DISCARD_OLDEST, CONCUR_REJECT_BLOCK};
  for (size_t p = 0; p < 5; p++) {
    atomic_store(&cleanups, 0);
    concur_thread_pool_options o = CONCUR_THREAD_POOL_OPTIONS_INIT;
    o.max_workers = 1;
    o.queue_capacity = 1;
    o.rejection = policies[p];
    o.block_timeout_ns = 1000000;
    concur_executor *ex = tp_new(&o);
    tp_gate g;
    tp_gate_init(&g);
    concur_future *a = submit_through_faults(ex, tp_task_gate, &g, true);
    TP_AWAIT_PARKED(&g, 1);
    concur_future *b = submit_through_faults(ex, tp_task_echo, NULL, true);
    /* Saturated: the policy path, with the nth allocation failing. */
    long accepted = 2;
    for (long n = 1; n < 20; n++) {
      concur_task t = CONCUR_TASK_INIT(tp_task_echo, NULL);
      t.cleanup = count_cleanup;
      concur_future *f = NULL;
      concur__fault_arm(CONCUR__FAULT_ALLOC, n, 0);
      int rc = concur_executor_submit_task(ex, &t, n % 2 ? &f : NULL);
      concur__fault_arm(CONCUR__FAULT_ALLOC, 0, 0);
      ck_assert_msg(rc == 0 || rc == CONCUR_ENOMEM || rc == CONCUR_EREJECTED ||
                        rc == CONCUR_ETIMEDOUT,
                    "submit: %s", concur_err_name(rc));
      if (rc == 0) {
        accepted++;
        if (f != NULL) {
          ck_assert(policies[p] == CONCUR_REJECT_DISCARD_OLDEST ||
                    concur_future_done(f));
          concur_future_unref(f);
        }
      }
    }
    tp_gate_open(&g);
    ck_assert_rc(concur_executor_shutdown(ex, CONCUR_SHUTDOWN_WAIT), 0);
    ck_assert(concur_future_done(b));
    concur_future_unref(a);
    concur_future_unref(b);
    ck_assert_int_eq(atomic_load(&cleanups), accepted);
    concur_executor_stats s = tp_stats(ex);
    ck_assert_uint_eq(s.submitted, (uint64_t)accepted);
    ck_assert_uint_eq(s.queued + s.running, 0);
    concur_executor_free(ex);
  }
}
END_TEST

Suite *concur_test_suite(void) {
  Suite *s = suite_create("thread_pool_fault");
  TCase *tc = harness_tcase("fault", 120);
  tcase_add_test(tc, new_fails_cleanly_on_every_allocation);
  tcase_add_test(tc, prestart_failure_leaves_nothing_behind);
  tcase_add_test(tc, TPE_16_thread_failure_at_every_worker_start);
  tcase_add_test(tc, TPE_16_no_more_threads_after_k_workers);
  tcase_add_test(tc, set_core_reports_thread_failure);
  tcase_add_test(tc, allocation_failure_on_every_submit_path);
  tcase_add_test(tc, allocation_failure_with_every_policy);
  suite_add_tcase(s, tc);
  return s;
}
