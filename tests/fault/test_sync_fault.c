/*
 * Allocation failure in every constructor of Lock, RLock and Condition:
 * each allocation in turn fails until the constructor succeeds; every
 * failure is CONCUR_ENOMEM, leaves *out untouched and leaks nothing (the
 * ASan build checks leaks).
 */
#include "harness.h"

typedef int (*ctor_fn)(void **out, void *arg);
typedef void (*dtor_fn)(void *obj);

/* Fails allocation 1, 2, ... until ctor succeeds; returns the calls made. */
static long fail_each_allocation(ctor_fn ctor, void *arg, dtor_fn dtor) {
  for (long n = 1;; n++) {
    ck_assert_int_lt(n, 100);
    void *obj = (void *)&obj; /* must stay untouched on failure */
    concur__fault_arm(CONCUR__FAULT_ALLOC, n, 0);
    int rc = ctor(&obj, arg);
    long calls = concur__fault_calls(CONCUR__FAULT_ALLOC);
    concur__fault_arm(CONCUR__FAULT_ALLOC, 0, 0);
    if (rc == 0) {
      ck_assert_ptr_nonnull(obj);
      ck_assert_int_eq(calls, n - 1); /* every allocation was tried */
      dtor(obj);
      return n - 1;
    }
    ck_assert_rc(rc, CONCUR_ENOMEM);
    ck_assert_ptr_eq(obj, (void *)&obj);
  }
}

/* Each wrapper goes through a typed pointer that starts as *out, so a
 * constructor that leaves its out-parameter alone leaves *out alone. */
static int lock_ctor(void **out, void *arg) {
  (void)arg;
  concur_lock *obj = *out;
  int rc = concur_lock_new(&obj);
  *out = obj;
  return rc;
}
static void lock_dtor(void *obj) {
  concur_lock_free(obj);
}

static int rlock_ctor(void **out, void *arg) {
  (void)arg;
  concur_rlock *obj = *out;
  int rc = concur_rlock_new(&obj);
  *out = obj;
  return rc;
}
static void rlock_dtor(void *obj) {
  concur_rlock_free(obj);
}

static int cond_ctor(void **out, void *arg) {
  (void)arg;
  concur_condition *obj = *out;
  int rc = concur_condition_new(&obj);
  *out = obj;
  return rc;
}
static int cond_lock_ctor(void **out, void *arg) {
  concur_condition *obj = *out;
  int rc = concur_condition_new_with_lock(&obj, arg);
  *out = obj;
  return rc;
}
static int cond_rlock_ctor(void **out, void *arg) {
  concur_condition *obj = *out;
  int rc = concur_condition_new_with_rlock(&obj, arg);
  *out = obj;
  return rc;
}
static void cond_dtor(void *obj) {
  concur_condition_free(obj);
}

START_TEST(lock_new_fails_cleanly) {
  ck_assert_int_eq(fail_each_allocation(lock_ctor, NULL, lock_dtor), 1);
}
END_TEST

START_TEST(rlock_new_fails_cleanly) {
  ck_assert_int_eq(fail_each_allocation(rlock_ctor, NULL, rlock_dtor), 1);
}
END_TEST

START_TEST(condition_new_fails_cleanly) {
  /* The Condition and its own RLock: a failure of the second frees the
   * first. */
  ck_assert_int_eq(fail_each_allocation(cond_ctor, NULL, cond_dtor), 2);
}
END_TEST

START_TEST(condition_new_with_lock_fails_cleanly) {
  concur_lock *lock;
  ck_assert_rc(concur_lock_new(&lock), 0);
  ck_assert_int_eq(fail_each_allocation(cond_lock_ctor, lock, cond_dtor), 1);
  /* The Lock it was given is untouched and still works. */
  ck_assert_rc(concur_lock_acquire(lock, CONCUR_NOWAIT), 0);
  ck_assert_rc(concur_lock_release(lock), 0);
  concur_lock_free(lock);
}
END_TEST

START_TEST(condition_new_with_rlock_fails_cleanly) {
  concur_rlock *rlock;
  ck_assert_rc(concur_rlock_new(&rlock), 0);
  ck_assert_int_eq(fail_each_allocation(cond_rlock_ctor, rlock, cond_dtor), 1);
  ck_assert_rc(concur_rlock_acquire(rlock, CONCUR_NOWAIT), 0);
  ck_assert_rc(concur_rlock_release(rlock), 0);
  concur_rlock_free(rlock);
}
END_TEST

START_TEST(persistent_failure_keeps_failing) {
  concur__fault_arm(CONCUR__FAULT_ALLOC, 1, 1);
  concur_lock *lock = NULL;
  concur_rlock *rlock = NULL;
  concur_condition *cond = NULL;
  for (int i = 0; i < 3; i++) {
    ck_assert_rc(concur_lock_new(&lock), CONCUR_ENOMEM);
    ck_assert_rc(concur_rlock_new(&rlock), CONCUR_ENOMEM);
    ck_assert_rc(concur_condition_new(&cond), CONCUR_ENOMEM);
  }
  concur__fault_arm(CONCUR__FAULT_ALLOC, 0, 0);
  ck_assert_ptr_null(lock);
  ck_assert_ptr_null(rlock);
  ck_assert_ptr_null(cond);
}
END_TEST

Suite *concur_test_suite(void) {
  Suite *s = suite_create("sync_fault");
  TCase *tc = harness_tcase("sync_fault", 30);
  tcase_add_test(tc, lock_new_fails_cleanly);
  tcase_add_test(tc, rlock_new_fails_cleanly);
  tcase_add_test(tc, condition_new_fails_cleanly);
  tcase_add_test(tc, condition_new_with_lock_fails_cleanly);
  tcase_add_test(tc, condition_new_with_rlock_fails_cleanly);
  tcase_add_test(tc, persistent_failure_keeps_failing);
  suite_add_tcase(s, tc);
  return s;
}
