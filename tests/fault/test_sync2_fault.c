/*
 * Allocation failure in every constructor of Semaphore, BoundedSemaphore,
 * Event and Barrier: for n = 1, 2, ... the nth allocation fails until the
 * constructor succeeds; each failure is CONCUR_ENOMEM, leaves the out
 * pointer untouched and leaks nothing (ASan's leak check runs at exit of
 * each case's process).
 */
#include "harness.h"

/* Each constructor behind one signature, so one loop drives them all. */
typedef int (*make_fn)(void **out);
typedef void (*drop_fn)(void *obj);

static int make_semaphore(void **out) {
  concur_semaphore *sem = NULL;
  int rc = concur_semaphore_new(&sem, 3);
  *out = sem;
  return rc;
}

static int make_bounded(void **out) {
  concur_semaphore *sem = NULL;
  int rc = concur_semaphore_new_bounded(&sem, 3);
  *out = sem;
  return rc;
}

static void drop_semaphore(void *obj) {
  concur_semaphore *sem = obj;
  /* Usable after a run of failures: the object is whole. */
  ck_assert_rc(concur_semaphore_acquire(sem, CONCUR_NOWAIT), 0);
  ck_assert_rc(concur_semaphore_release(sem, 1), 0);
  concur_semaphore_free(sem);
}

static int make_event(void **out) {
  concur_event *event = NULL;
  int rc = concur_event_new(&event);
  *out = event;
  return rc;
}

static void drop_event(void *obj) {
  concur_event *event = obj;
  ck_assert(!concur_event_is_set(event));
  ck_assert_rc(concur_event_set(event), 0);
  ck_assert_rc(concur_event_wait(event, CONCUR_NOWAIT), 0);
  concur_event_free(event);
}

static int noop_action(void *arg) {
  (void)arg;
  return 0;
}

static int make_barrier(void **out) {
  concur_barrier *barrier = NULL;
  int rc = concur_barrier_new(&barrier, 1, noop_action, NULL, CONCUR_FOREVER);
  *out = barrier;
  return rc;
}

static void drop_barrier(void *obj) {
  concur_barrier *barrier = obj;
  ck_assert_rc(concur_barrier_wait(barrier, CONCUR_DEFAULT), 0);
  concur_barrier_free(barrier);
}

static void fail_each_allocation(make_fn make, drop_fn drop) {
  for (long n = 1;; n++) {
    ck_assert_msg(n < 100, "the constructor never succeeded");
    concur__fault_arm(CONCUR__FAULT_ALLOC, n, 0);
    void *obj = NULL;
    int rc = make(&obj);
    long calls = concur__fault_calls(CONCUR__FAULT_ALLOC);
    concur__fault_arm(CONCUR__FAULT_ALLOC, 0, 0);
    if (rc == 0) {
      ck_assert_ptr_nonnull(obj);
      /* It succeeded only because it needed fewer than n allocations. */
      ck_assert_int_lt(calls, n);
      drop(obj);
      ck_assert_int_ge(n, 2); /* the first allocation did fail once */
      return;
    }
    ck_assert_rc(rc, CONCUR_ENOMEM);
    ck_assert_ptr_null(obj); /* out untouched */
    ck_assert_int_ge(calls, n);
  }
}

START_TEST(semaphore_new_enomem_leaks_nothing) {
  fail_each_allocation(make_semaphore, drop_semaphore);
}
END_TEST

START_TEST(semaphore_new_bounded_enomem_leaks_nothing) {
  fail_each_allocation(make_bounded, drop_semaphore);
}
END_TEST

START_TEST(event_new_enomem_leaks_nothing) {
  fail_each_allocation(make_event, drop_event);
}
END_TEST

START_TEST(barrier_new_enomem_leaks_nothing) {
  fail_each_allocation(make_barrier, drop_barrier);
}
END_TEST

START_TEST(persistent_allocation_failure_is_enomem_everywhere) {
  concur__fault_arm(CONCUR__FAULT_ALLOC, 1, 1);
  concur_semaphore *sem = NULL;
  concur_event *event = NULL;
  concur_barrier *barrier = NULL;
  ck_assert_rc(concur_semaphore_new(&sem, 0), CONCUR_ENOMEM);
  ck_assert_rc(concur_semaphore_new_bounded(&sem, 0), CONCUR_ENOMEM);
  ck_assert_rc(concur_event_new(&event), CONCUR_ENOMEM);
  ck_assert_rc(concur_barrier_new(&barrier, 2, NULL, NULL, CONCUR_FOREVER),
               CONCUR_ENOMEM);
  concur__fault_arm(CONCUR__FAULT_ALLOC, 0, 0);
  ck_assert_ptr_null(sem);
  ck_assert_ptr_null(event);
  ck_assert_ptr_null(barrier);
}
END_TEST

Suite *concur_test_suite(void) {
  Suite *s = suite_create("sync2_fault");
  TCase *tc = harness_tcase("sync2_fault", 30);
  tcase_add_test(tc, semaphore_new_enomem_leaks_nothing);
  tcase_add_test(tc, semaphore_new_bounded_enomem_leaks_nothing);
  tcase_add_test(tc, event_new_enomem_leaks_nothing);
  tcase_add_test(tc, barrier_new_enomem_leaks_nothing);
  tcase_add_test(tc, persistent_allocation_failure_is_enomem_everywhere);
  suite_add_tcase(s, tc);
  return s;
}
