/*
 * Thread-local storage (concur_local_*): per-thread values, destructors at
 * thread exit before a join returns, and the errors of every function.
 */
#include "harness.h"

#include <pthread.h>
#include <stdint.h>
#include <time.h>

/* Destructor calls, recorded by value. */
static _Atomic int destroyed;
static _Atomic intptr_t destroyed_sum;

static void count_destructor(void *value) {
  atomic_fetch_add(&destroyed, 1);
  atomic_fetch_add(&destroyed_sum, (intptr_t)value);
}

START_TEST(local_starts_null_holds_a_value_and_clears) {
  concur_local *l;
  ck_assert_rc(concur_local_new(&l, NULL), 0);
  ck_assert_ptr_null(concur_local_get(l));
  int x;
  ck_assert_rc(concur_local_set(l, &x), 0);
  ck_assert_ptr_eq(concur_local_get(l), &x);
  ck_assert_rc(concur_local_set(l, NULL), 0);
  ck_assert_ptr_null(concur_local_get(l));
  concur_local_free(l);
}
END_TEST

START_TEST(local_rejects_null) {
  ck_assert_rc(concur_local_new(NULL, NULL), CONCUR_EINVAL);
  ck_assert_rc(concur_local_new(NULL, count_destructor), CONCUR_EINVAL);
  int x;
  ck_assert_rc(concur_local_set(NULL, &x), CONCUR_EINVAL);
  ck_assert_ptr_null(concur_local_get(NULL));
  concur_local_free(NULL);
}
END_TEST

typedef struct per_thread {
  concur_local *local;
  harness_gate *all_set;
  _Atomic int *set_count;
  intptr_t mine;
  void *initial;
  void *seen_after;
  int set_rc;
} per_thread;

static int set_and_check(void *arg, void **result) {
  (void)result;
  per_thread *p = arg;
  p->initial = concur_local_get(p->local);
  p->set_rc = concur_local_set(p->local, (void *)p->mine);
  atomic_fetch_add(p->set_count, 1);
  /* Wait until every thread has set its own value, then read ours. */
  harness_gate_wait(p->all_set);
  p->seen_after = concur_local_get(p->local);
  return 0;
}

START_TEST(local_each_thread_sees_only_its_own_value) {
  enum { N = 8 };
  concur_local *l;
  ck_assert_rc(concur_local_new(&l, NULL), 0);
  int mine;
  ck_assert_rc(concur_local_set(l, &mine), 0);
  harness_gate all_set = {0};
  _Atomic int set_count = 0;
  per_thread p[N];
  concur_thread *t[N];
  for (int i = 0; i < N; i++) {
    p[i] = (per_thread){l, &all_set, &set_count, i + 1, NULL, NULL, 1};
    ck_assert_rc(concur_thread_run(&t[i], set_and_check, &p[i], NULL), 0);
  }
  ck_assert_rc(concur__test_await_parked(&all_set, N, HARNESS_LONG_NS), 0);
  ck_assert_int_eq(atomic_load(&set_count), N);
  harness_gate_open(&all_set);
  for (int i = 0; i < N; i++) {
    ck_assert_rc(concur_thread_join(t[i], CONCUR_FOREVER, NULL), 0);
    concur_thread_free(t[i]);
    ck_assert_ptr_null(p[i].initial);
    ck_assert_rc(p[i].set_rc, 0);
    ck_assert_ptr_eq(p[i].seen_after, (void *)(intptr_t)(i + 1));
  }
  ck_assert_ptr_eq(concur_local_get(l), &mine);
  concur_local_free(l);
}
END_TEST

typedef struct setter {
  concur_local *local;
  void *value;
  int code;
} setter;

static int set_value(void *arg, void **result) {
  (void)result;
  setter *s = arg;
  (void)concur_local_set(s->local, s->value);
  return s->code;
}

static void quiet_hook(void *arg, concur_thread *thread, int code) {
  (void)arg;
  (void)thread;
  (void)code;
}

START_TEST(local_destructor_runs_at_thread_exit_before_join_returns) {
  atomic_store(&destroyed, 0);
  atomic_store(&destroyed_sum, 0);
  concur_local *l;
  ck_assert_rc(concur_local_new(&l, count_destructor), 0);
  concur_thread_set_excepthook(quiet_hook, NULL);
  /* One per thread that set a non-NULL value, also a failing one; none for
   * NULL values. */
  setter s[4] = {{l, (void *)(intptr_t)10, 0},
                 {l, (void *)(intptr_t)20, 0},
                 {l, NULL, 0},
                 {l, (void *)(intptr_t)40, 7}};
  for (int i = 0; i < 4; i++) {
    concur_thread *t;
    ck_assert_rc(concur_thread_run(&t, set_value, &s[i], NULL), 0);
    int rc = concur_thread_join(t, CONCUR_FOREVER, NULL);
    ck_assert_rc(rc, s[i].code == 0 ? 0 : CONCUR_ETASK);
    concur_thread_free(t);
  }
  ck_assert_int_eq(atomic_load(&destroyed), 3);
  ck_assert_int_eq(atomic_load(&destroyed_sum), 70);
  concur_thread_set_excepthook(NULL, NULL);
  /* The main thread's own value is not destroyed by anyone's exit. */
  ck_assert_rc(concur_local_set(l, (void *)(intptr_t)1000), 0);
  concur_thread *t;
  setter other = {l, (void *)(intptr_t)1, 0};
  ck_assert_rc(concur_thread_run(&t, set_value, &other, NULL), 0);
  ck_assert_rc(concur_thread_join(t, CONCUR_FOREVER, NULL), 0);
  concur_thread_free(t);
  ck_assert_int_eq(atomic_load(&destroyed_sum), 71);
  ck_assert_ptr_eq(concur_local_get(l), (void *)(intptr_t)1000);
  ck_assert_rc(concur_local_set(l, NULL), 0);
  concur_local_free(l);
}
END_TEST

static void *foreign_set(void *arg) {
  setter *s = arg;
  (void)concur_local_set(s->local, s->value);
  return NULL;
}

START_TEST(local_destructor_runs_for_threads_concur_did_not_start) {
  atomic_store(&destroyed, 0);
  atomic_store(&destroyed_sum, 0);
  concur_local *l;
  ck_assert_rc(concur_local_new(&l, count_destructor), 0);
  setter s = {l, (void *)(intptr_t)5, 0};
  pthread_t th;
  ck_assert_int_eq(pthread_create(&th, NULL, foreign_set, &s), 0);
  ck_assert_int_eq(pthread_join(th, NULL), 0);
  ck_assert_int_eq(atomic_load(&destroyed), 1);
  ck_assert_int_eq(atomic_load(&destroyed_sum), 5);
  concur_local_free(l);
}
END_TEST

START_TEST(local_free_does_not_run_destructors_for_values_still_set) {
  atomic_store(&destroyed, 0);
  concur_local *l;
  ck_assert_rc(concur_local_new(&l, count_destructor), 0);
  ck_assert_rc(concur_local_set(l, (void *)(intptr_t)3), 0);
  concur_local_free(l);
  ck_assert_int_eq(atomic_load(&destroyed), 0);
}
END_TEST

/* A destructor that blocks until a gate opens. */
static harness_gate slow_gate;

static void slow_destructor(void *value) {
  (void)value;
  harness_gate_wait(&slow_gate);
  atomic_fetch_add(&destroyed, 1);
}

START_TEST(local_timed_join_waits_for_destructors_within_its_deadline) {
  atomic_store(&destroyed, 0);
  atomic_store(&slow_gate.open, 0);
  concur_local *l;
  ck_assert_rc(concur_local_new(&l, slow_destructor), 0);
  setter s = {l, (void *)(intptr_t)1, 0};
  concur_thread *t;
  ck_assert_rc(concur_thread_run(&t, set_value, &s, NULL), 0);
  ck_assert_rc(concur__test_await_parked(&slow_gate, 1, HARNESS_LONG_NS), 0);
  /* The function has returned; its destructor still runs. */
  ck_assert(!concur_thread_is_alive(t));
  const int64_t timeout = 60000000;
  int64_t t0 = harness_now_ns();
  ck_assert_rc(concur_thread_join(t, timeout, NULL), CONCUR_ETIMEDOUT);
  HARNESS_ASSERT_TIMED_OUT(harness_now_ns() - t0, timeout);
  ck_assert_rc(concur_thread_join(t, CONCUR_NOWAIT, NULL), CONCUR_ETIMEDOUT);
  ck_assert_int_eq(atomic_load(&destroyed), 0);
  harness_gate_open(&slow_gate);
  ck_assert_rc(concur_thread_join(t, HARNESS_LONG_NS, NULL), 0);
  ck_assert_int_eq(atomic_load(&destroyed), 1);
  concur_thread_free(t);
  concur_local_free(l);
}
END_TEST

START_TEST(local_many_slots_are_independent) {
  enum { N = 64 };
  concur_local *l[N];
  for (int i = 0; i < N; i++) {
    ck_assert_rc(concur_local_new(&l[i], NULL), 0);
    ck_assert_rc(concur_local_set(l[i], (void *)(intptr_t)(i + 1)), 0);
  }
  for (int i = 0; i < N; i++) {
    ck_assert_ptr_eq(concur_local_get(l[i]), (void *)(intptr_t)(i + 1));
  }
  for (int i = 0; i < N; i++) {
    concur_local_free(l[i]);
  }
  /* A fresh slot starts empty even if it reuses a freed key. */
  concur_local *fresh;
  ck_assert_rc(concur_local_new(&fresh, NULL), 0);
  ck_assert_ptr_null(concur_local_get(fresh));
  concur_local_free(fresh);
}
END_TEST

Suite *concur_test_suite(void) {
  Suite *s = suite_create("local");
  TCase *tc = harness_tcase("local", 30);
  tcase_add_test(tc, local_starts_null_holds_a_value_and_clears);
  tcase_add_test(tc, local_rejects_null);
  tcase_add_test(tc, local_each_thread_sees_only_its_own_value);
  tcase_add_test(tc, local_destructor_runs_at_thread_exit_before_join_returns);
  tcase_add_test(tc, local_destructor_runs_for_threads_concur_did_not_start);
  tcase_add_test(tc, local_free_does_not_run_destructors_for_values_still_set);
  tcase_add_test(tc,
                 local_timed_join_waits_for_destructors_within_its_deadline);
  tcase_add_test(tc, local_many_slots_are_independent);
  suite_add_tcase(s, tc);
  return s;
}
