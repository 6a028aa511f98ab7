/*
 * Conventions of concur/base.h and the platform floor: error names and
 * messages, version, deadlines, parking, the internal mutex, the fault seam.
 */
#include "harness.h"

#include <errno.h>
#include <string.h>

START_TEST(errors_are_negative_errno_or_reserved) {
  ck_assert_int_eq(CONCUR_EINVAL, -EINVAL);
  ck_assert_int_eq(CONCUR_ETIMEDOUT, -ETIMEDOUT);
  ck_assert_int_eq(CONCUR_ECANCELED, -ECANCELED);
  ck_assert_int_eq(CONCUR_EDEADLK, -EDEADLK);
  ck_assert_int_lt(CONCUR_ESHUTDOWN, -30000);
  ck_assert_int_lt(CONCUR_EWORKER, -30000);
}
END_TEST

START_TEST(every_code_has_a_name_and_a_message) {
  const int codes[] = {CONCUR_EPERM,     CONCUR_EAGAIN,    CONCUR_ENOMEM,
                       CONCUR_EINVAL,    CONCUR_EDEADLK,   CONCUR_EOVERFLOW,
                       CONCUR_ETIMEDOUT, CONCUR_ECANCELED, CONCUR_ESHUTDOWN,
                       CONCUR_EBROKEN,   CONCUR_ESTATE,    CONCUR_EREJECTED,
                       CONCUR_ETASK,     CONCUR_EWORKER};
  for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++) {
    ck_assert_str_ne(concur_strerror(codes[i]), "unknown error");
    ck_assert_int_eq(strncmp(concur_err_name(codes[i]), "CONCUR_E", 8), 0);
    ck_assert_str_ne(concur_err_name(codes[i]), "CONCUR_E?");
  }
  ck_assert_str_eq(concur_err_name(CONCUR_ETIMEDOUT), "CONCUR_ETIMEDOUT");
  ck_assert_str_eq(concur_err_name(0), "CONCUR_OK");
  ck_assert_str_eq(concur_strerror(0), "success");
  ck_assert_str_eq(concur_strerror(-12345), "unknown error");
  ck_assert_str_eq(concur_err_name(-12345), "CONCUR_E?");
}
END_TEST

START_TEST(version_matches_the_header) {
  ck_assert_str_eq(concur_version(), CONCUR_VERSION_STRING);
  ck_assert_int_eq(concur_version_hex(), CONCUR_VERSION_HEX);
}
END_TEST

START_TEST(deadline_rejects_negative_and_saturates) {
  concur__deadline d = 42;
  ck_assert_rc(concur__deadline_from_timeout(-1, &d), CONCUR_EINVAL);
  ck_assert_int_eq(d, 42);
  ck_assert_rc(concur__deadline_from_timeout(CONCUR_FOREVER, &d), 0);
  ck_assert_int_eq(d, CONCUR__NO_DEADLINE);
  ck_assert(!concur__deadline_passed(d));
  ck_assert_rc(concur__deadline_from_timeout(CONCUR_FOREVER - 1, &d), 0);
  ck_assert_int_lt(d, CONCUR__NO_DEADLINE);
  ck_assert_int_gt(d, concur__now_ns());
  ck_assert_rc(concur__deadline_from_timeout(CONCUR_NOWAIT, &d), 0);
  ck_assert(concur__deadline_passed(d));
}
END_TEST

START_TEST(park_times_out_never_early) {
  _Atomic uint32_t word = 7;
  const int64_t timeout = 50000000;
  concur__deadline d;
  ck_assert_rc(concur__deadline_from_timeout(timeout, &d), 0);
  int64_t t0 = harness_now_ns();
  int rc;
  while ((rc = concur__park(&word, 7, d, NULL)) == 0) {
  }
  ck_assert_rc(rc, CONCUR_ETIMEDOUT);
  HARNESS_ASSERT_TIMED_OUT(harness_now_ns() - t0, timeout);
}
END_TEST

START_TEST(park_returns_at_once_when_the_word_differs) {
  _Atomic uint32_t word = 1;
  ck_assert_rc(concur__park(&word, 2, CONCUR__NO_DEADLINE, NULL), 0);
}
END_TEST

typedef struct waker {
  _Atomic uint32_t word;
  int parks;
} waker;

static void *park_until_set(void *arg) {
  waker *w = arg;
  while (atomic_load(&w->word) == 0) {
    (void)concur__park(&w->word, 0, CONCUR__NO_DEADLINE, w);
    w->parks++;
  }
  return NULL;
}

START_TEST(unpark_wakes_a_parked_thread) {
  waker w = {0, 0};
  pthread_t t;
  ck_assert_rc(concur__thread_spawn(&t, 0, true, park_until_set, &w), 0);
  ck_assert_rc(concur__test_await_parked(&w, 1, HARNESS_LONG_NS), 0);
  ck_assert_uint_eq(concur__test_parked(&w), 1);
  atomic_store(&w.word, 1);
  concur__unpark(&w.word, 1);
  pthread_join(t, NULL);
  ck_assert_int_ge(w.parks, 1);
  ck_assert_uint_eq(concur__test_parked(&w), 0);
}
END_TEST

START_TEST(await_parked_times_out) {
  int key;
  int64_t t0 = harness_now_ns();
  ck_assert_rc(concur__test_await_parked(&key, 1, 20000000), CONCUR_ETIMEDOUT);
  HARNESS_ASSERT_TIMED_OUT(harness_now_ns() - t0, 20000000);
}
END_TEST

typedef struct counter {
  concur__mutex mutex;
  long value;
  long rounds;
} counter;

static void *count_up(void *arg) {
  counter *c = arg;
  for (long i = 0; i < c->rounds; i++) {
    concur__mutex_lock(&c->mutex, c);
    c->value++;
    ck_assert(concur__mutex_unlock(&c->mutex));
  }
  return NULL;
}

START_TEST(mutex_excludes) {
  counter c = {CONCUR__MUTEX_INIT, 0, 100000 * harness_scale()};
  pthread_t t[4];
  for (int i = 0; i < 4; i++) {
    ck_assert_rc(concur__thread_spawn(&t[i], 0, true, count_up, &c), 0);
  }
  for (int i = 0; i < 4; i++) {
    pthread_join(t[i], NULL);
  }
  ck_assert_int_eq(c.value, 4 * c.rounds);
  ck_assert(!concur__mutex_is_locked(&c.mutex));
  ck_assert(!concur__mutex_unlock(&c.mutex));
}
END_TEST

START_TEST(mutex_lock_until_times_out) {
  concur__mutex m = CONCUR__MUTEX_INIT;
  ck_assert(concur__mutex_trylock(&m));
  ck_assert(!concur__mutex_trylock(&m));
  concur__deadline d;
  ck_assert_rc(concur__deadline_from_timeout(30000000, &d), 0);
  int64_t t0 = harness_now_ns();
  ck_assert_rc(concur__mutex_lock_until(&m, d, &m), CONCUR_ETIMEDOUT);
  HARNESS_ASSERT_TIMED_OUT(harness_now_ns() - t0, 30000000);
  ck_assert(concur__mutex_unlock(&m));
  ck_assert_rc(concur__mutex_lock_until(&m, d, &m), 0);
  ck_assert(concur__mutex_unlock(&m));
}
END_TEST

START_TEST(fault_seam_fails_the_nth_call) {
  concur__fault_arm(CONCUR__FAULT_ALLOC, 2, 0);
  void *a = concur__malloc(8);
  void *b = concur__malloc(8);
  void *c = concur__calloc(1, 8);
  ck_assert_ptr_nonnull(a);
  ck_assert_ptr_null(b);
  ck_assert_ptr_nonnull(c);
  ck_assert_int_eq(concur__fault_calls(CONCUR__FAULT_ALLOC), 3);
  concur__free(a);
  concur__free(c);
  concur__fault_arm(CONCUR__FAULT_THREAD, 1, 1);
  pthread_t t;
  ck_assert_rc(concur__thread_spawn(&t, 0, true, count_up, NULL),
               CONCUR_EAGAIN);
  ck_assert_rc(concur__thread_spawn(&t, 0, true, count_up, NULL),
               CONCUR_EAGAIN);
  concur__fault_arm(CONCUR__FAULT_THREAD, 0, 0);
}
END_TEST

START_TEST(cpu_count_is_positive) {
  ck_assert_int_ge(concur__cpu_count(), 1);
}
END_TEST

Suite *concur_test_suite(void) {
  Suite *s = suite_create("base");
  TCase *tc = harness_tcase("base", 30);
  tcase_add_test(tc, errors_are_negative_errno_or_reserved);
  tcase_add_test(tc, every_code_has_a_name_and_a_message);
  tcase_add_test(tc, version_matches_the_header);
  tcase_add_test(tc, deadline_rejects_negative_and_saturates);
  tcase_add_test(tc, park_times_out_never_early);
  tcase_add_test(tc, park_returns_at_once_when_the_word_differs);
  tcase_add_test(tc, unpark_wakes_a_parked_thread);
  tcase_add_test(tc, await_parked_times_out);
  tcase_add_test(tc, mutex_excludes);
  tcase_add_test(tc, mutex_lock_until_times_out);
  tcase_add_test(tc, fault_seam_fails_the_nth_call);
  tcase_add_test(tc, cpu_count_is_positive);
  suite_add_tcase(s, tc);
  return s;
}
