/*
 * Fault injection for the thread module: an allocation failure at every
 * allocation of concur_thread_new, _start, _run, concur_timer_new and
 * concur_local_new, and a thread-creation failure at every start (THR-07,
 * XC-03, XC-04). Each failure returns its code with nothing leaked (ASan
 * checks) and leaves the objects usable: a handle whose start failed starts
 * later.
 */
#include "harness.h"

#include <time.h>

static void disarm(void) {
  concur__fault_arm(CONCUR__FAULT_ALLOC, 0, 0);
  concur__fault_arm(CONCUR__FAULT_THREAD, 0, 0);
}

static int count_calls(void *arg, void **result) {
  *result = arg;
  atomic_fetch_add((_Atomic int *)arg, 1);
  return 0;
}

/* Enough attempts for any constructor; a constructor that still fails
 * after this many is a bug. */
#define MAX_STEPS 64

START_TEST(thread_new_fails_cleanly_at_every_allocation) {
  _Atomic int calls = 0;
  concur_thread_options opts = CONCUR_THREAD_OPTIONS_INIT;
  opts.name = "faulty";
  long n;
  for (n = 1; n <= MAX_STEPS; n++) {
    concur_thread *t = (concur_thread *)&t;
    concur__fault_arm(CONCUR__FAULT_ALLOC, n, 0);
    int rc = concur_thread_new(&t, count_calls, &calls, &opts);
    disarm();
    if (rc == 0) {
      ck_assert_rc(concur_thread_start(t), 0);
      ck_assert_rc(concur_thread_join(t, CONCUR_FOREVER, NULL), 0);
      concur_thread_free(t);
      break;
    }
    ck_assert_rc(rc, CONCUR_ENOMEM);
    ck_assert_ptr_eq(t, (concur_thread *)&t); /* untouched */
  }
  ck_assert_int_gt(n, 1); /* at least one allocation was failed */
  ck_assert_int_le(n, MAX_STEPS);
  ck_assert_int_eq(atomic_load(&calls), 1);
}
END_TEST

START_TEST(thread_start_allocates_nothing_that_can_fail) {
  _Atomic int calls = 0;
  concur_thread *t;
  ck_assert_rc(concur_thread_new(&t, count_calls, &calls, NULL), 0);
  concur__fault_arm(CONCUR__FAULT_ALLOC, 1, 1); /* every allocation fails */
  int rc = concur_thread_start(t);
  int jrc = rc == 0 ? concur_thread_join(t, CONCUR_FOREVER, NULL) : rc;
  disarm();
  ck_assert_rc(rc, 0);
  ck_assert_rc(jrc, 0);
  ck_assert_int_eq(atomic_load(&calls), 1);
  concur_thread_free(t);
}
END_TEST

START_TEST(THR_07_thread_start_creation_failure_then_start_again) {
  _Atomic int calls = 0;
  size_t active = concur_thread_active_count();
  concur_thread *t;
  ck_assert_rc(concur_thread_new(&t, count_calls, &calls, NULL), 0);
  for (int i = 0; i < 3; i++) {
    concur__fault_arm(CONCUR__FAULT_THREAD, 1, 0);
    ck_assert_rc(concur_thread_start(t), CONCUR_EAGAIN);
    disarm();
    ck_assert(!concur_thread_is_alive(t));
    ck_assert_uint_eq(concur_thread_ident(t), 0);
    ck_assert_int_eq(concur_thread_active_count(), active);
    ck_assert_rc(concur_thread_join(t, CONCUR_NOWAIT, NULL), CONCUR_ESTATE);
  }
  ck_assert_rc(concur_thread_start(t), 0);
  void *res = NULL;
  ck_assert_rc(concur_thread_join(t, CONCUR_FOREVER, &res), 0);
  ck_assert_ptr_eq(res, &calls);
  ck_assert_int_eq(atomic_load(&calls), 1);
  concur_thread_free(t);
}
END_TEST

START_TEST(THR_07_thread_freed_after_creation_failure_leaks_nothing) {
  concur_thread *t;
  ck_assert_rc(concur_thread_new(&t, count_calls, NULL, NULL), 0);
  concur__fault_arm(CONCUR__FAULT_THREAD, 1, 1);
  ck_assert_rc(concur_thread_start(t), CONCUR_EAGAIN);
  ck_assert_rc(concur_thread_start(t), CONCUR_EAGAIN);
  disarm();
  concur_thread_free(t);
}
END_TEST

START_TEST(thread_run_fails_cleanly_at_every_step) {
  _Atomic int calls = 0;
  size_t active = concur_thread_active_count();
  /* Allocation failures. */
  long n;
  for (n = 1; n <= MAX_STEPS; n++) {
    concur_thread *t = (concur_thread *)&t;
    concur__fault_arm(CONCUR__FAULT_ALLOC, n, 0);
    int rc = concur_thread_run(&t, count_calls, &calls, NULL);
    disarm();
    if (rc == 0) {
      ck_assert_rc(concur_thread_join(t, CONCUR_FOREVER, NULL), 0);
      concur_thread_free(t);
      break;
    }
    ck_assert_rc(rc, CONCUR_ENOMEM);
    ck_assert_ptr_eq(t, (concur_thread *)&t);
    ck_assert_int_eq(concur_thread_active_count(), active);
  }
  ck_assert_int_le(n, MAX_STEPS);
  /* Thread-creation failure: nothing is left, not even the handle. */
  concur_thread *t = (concur_thread *)&t;
  concur__fault_arm(CONCUR__FAULT_THREAD, 1, 0);
  ck_assert_rc(concur_thread_run(&t, count_calls, &calls, NULL), CONCUR_EAGAIN);
  disarm();
  ck_assert_ptr_eq(t, (concur_thread *)&t);
  ck_assert_int_eq(concur_thread_active_count(), active);
  ck_assert_int_eq(atomic_load(&calls), 1);
}
END_TEST

START_TEST(XC_04_every_creation_failure_among_many_starts_is_reported) {
  enum { N = 12 };
  _Atomic int calls = 0;
  concur_thread *t[N];
  for (int i = 0; i < N; i++) {
    ck_assert_rc(concur_thread_new(&t[i], count_calls, &calls, NULL), 0);
  }
  /* Every third start meets a creation failure. */
  int failed = 0;
  for (int i = 0; i < N; i++) {
    if (i % 3 == 0) {
      concur__fault_arm(CONCUR__FAULT_THREAD, 1, 0);
    }
    int rc = concur_thread_start(t[i]);
    disarm();
    if (i % 3 == 0) {
      ck_assert_rc(rc, CONCUR_EAGAIN);
      failed++;
    } else {
      ck_assert_rc(rc, 0);
    }
  }
  /* The failed ones start on a retry; all run exactly once. */
  for (int i = 0; i < N; i++) {
    if (i % 3 == 0) {
      ck_assert_rc(concur_thread_start(t[i]), 0);
    }
  }
  for (int i = 0; i < N; i++) {
    ck_assert_rc(concur_thread_join(t[i], CONCUR_FOREVER, NULL), 0);
    concur_thread_free(t[i]);
  }
  ck_assert_int_eq(failed, N / 3);
  ck_assert_int_eq(atomic_load(&calls), N);
}
END_TEST

START_TEST(timer_new_fails_cleanly_at_every_allocation) {
  _Atomic int calls = 0;
  long n;
  for (n = 1; n <= MAX_STEPS; n++) {
    concur_timer *tm = (concur_timer *)&tm;
    concur__fault_arm(CONCUR__FAULT_ALLOC, n, 0);
    int rc = concur_timer_new(&tm, 0, count_calls, &calls, NULL);
    disarm();
    if (rc == 0) {
      ck_assert_rc(concur_timer_start(tm), 0);
      ck_assert_rc(concur_timer_join(tm, CONCUR_FOREVER, NULL), 0);
      concur_timer_free(tm);
      break;
    }
    ck_assert_rc(rc, CONCUR_ENOMEM);
    ck_assert_ptr_eq(tm, (concur_timer *)&tm);
  }
  ck_assert_int_gt(n, 2); /* the timer and its thread handle both failed */
  ck_assert_int_le(n, MAX_STEPS);
  ck_assert_int_eq(atomic_load(&calls), 1);
}
END_TEST

START_TEST(timer_start_creation_failure_then_start_again) {
  _Atomic int calls = 0;
  concur_timer *tm;
  ck_assert_rc(concur_timer_new(&tm, 1000000, count_calls, &calls, NULL), 0);
  concur__fault_arm(CONCUR__FAULT_THREAD, 1, 0);
  ck_assert_rc(concur_timer_start(tm), CONCUR_EAGAIN);
  disarm();
  ck_assert(!concur_timer_is_alive(tm));
  ck_assert_rc(concur_timer_join(tm, CONCUR_NOWAIT, NULL), CONCUR_ESTATE);
  ck_assert_rc(concur_timer_start(tm), 0);
  void *res = NULL;
  ck_assert_rc(concur_timer_join(tm, CONCUR_FOREVER, &res), 0);
  ck_assert_ptr_eq(res, &calls);
  ck_assert_int_eq(atomic_load(&calls), 1);
  concur_timer_free(tm);

  /* A timer whose start failed frees cleanly too. */
  ck_assert_rc(concur_timer_new(&tm, 0, count_calls, &calls, NULL), 0);
  concur__fault_arm(CONCUR__FAULT_THREAD, 1, 0);
  ck_assert_rc(concur_timer_start(tm), CONCUR_EAGAIN);
  disarm();
  concur_timer_free(tm);
  ck_assert_int_eq(atomic_load(&calls), 1);
}
END_TEST

START_TEST(local_new_fails_cleanly_at_every_allocation) {
  long n;
  for (n = 1; n <= MAX_STEPS; n++) {
    concur_local *l = (concur_local *)&l;
    concur__fault_arm(CONCUR__FAULT_ALLOC, n, 0);
    int rc = concur_local_new(&l, NULL);
    disarm();
    if (rc == 0) {
      int x;
      ck_assert_rc(concur_local_set(l, &x), 0);
      ck_assert_ptr_eq(concur_local_get(l), &x);
      concur_local_free(l);
      break;
    }
    ck_assert_rc(rc, CONCUR_ENOMEM);
    ck_assert_ptr_eq(l, (concur_local *)&l);
  }
  ck_assert_int_gt(n, 1);
  ck_assert_int_le(n, MAX_STEPS);
}
END_TEST

static void bump(void *arg) {
  (*(int *)arg)++;
}

START_TEST(once_and_thread_functions_need_no_allocation) {
  /* With every allocation failing, the running parts still work. */
  concur_once once = CONCUR_ONCE_INIT;
  concur_thread *t;
  _Atomic int calls = 0;
  ck_assert_rc(concur_thread_new(&t, count_calls, &calls, NULL), 0);
  concur__fault_arm(CONCUR__FAULT_ALLOC, 1, 1);
  int once_calls = 0;
  int rc_once = concur_once_call(&once, bump, &once_calls);
  concur__fault_arm(CONCUR__FAULT_ALLOC, 1, 1);
  int rc_start = concur_thread_start(t);
  int rc_join = concur_thread_join(t, CONCUR_FOREVER, NULL);
  char name[32];
  int rc_name = concur_thread_set_name(t, "renamed");
  int len = concur_thread_get_name(t, name, sizeof name);
  disarm();
  ck_assert_rc(rc_once, 0);
  ck_assert_int_eq(once_calls, 1);
  ck_assert_rc(rc_start, 0);
  ck_assert_rc(rc_join, 0);
  ck_assert_rc(rc_name, 0);
  ck_assert_int_eq(len, 7);
  concur_thread_free(t);
}
END_TEST

Suite *concur_test_suite(void) {
  Suite *s = suite_create("thread_fault");
  TCase *tc = harness_tcase("thread_fault", 30);
  tcase_add_test(tc, thread_new_fails_cleanly_at_every_allocation);
  tcase_add_test(tc, thread_start_allocates_nothing_that_can_fail);
  tcase_add_test(tc, THR_07_thread_start_creation_failure_then_start_again);
  tcase_add_test(tc, THR_07_thread_freed_after_creation_failure_leaks_nothing);
  tcase_add_test(tc, thread_run_fails_cleanly_at_every_step);
  tcase_add_test(tc,
                 XC_04_every_creation_failure_among_many_starts_is_reported);
  tcase_add_test(tc, timer_new_fails_cleanly_at_every_allocation);
  tcase_add_test(tc, timer_start_creation_failure_then_start_again);
  tcase_add_test(tc, local_new_fails_cleanly_at_every_allocation);
  tcase_add_test(tc, once_and_thread_functions_need_no_allocation);
  suite_add_tcase(s, tc);
  return s;
}
