/*
 * Once (concur_once_call): exactly one run however many threads race,
 * waiters released only after the function returned (and see what it
 * wrote), recursion reported as CONCUR_EDEADLK, and the errors.
 */
#include "harness.h"

#include <stdint.h>
#include <time.h>

static void count(void *arg) {
  (*(int *)arg)++;
}

static concur_once static_once = CONCUR_ONCE_INIT;

START_TEST(once_runs_the_function_once_and_later_calls_return_at_once) {
  int calls = 0;
  ck_assert_rc(concur_once_call(&static_once, count, &calls), 0);
  ck_assert_int_eq(calls, 1);
  ck_assert_rc(concur_once_call(&static_once, count, &calls), 0);
  ck_assert_rc(concur_once_call(&static_once, count, &calls), 0);
  ck_assert_int_eq(calls, 1);
  /* Even a different function does not run on a used once. */
  int other = 0;
  ck_assert_rc(concur_once_call(&static_once, count, &other), 0);
  ck_assert_int_eq(other, 0);

  concur_once local = CONCUR_ONCE_INIT;
  ck_assert_rc(concur_once_call(&local, count, &other), 0);
  ck_assert_int_eq(other, 1);
}
END_TEST

START_TEST(once_rejects_null) {
  concur_once once = CONCUR_ONCE_INIT;
  int calls = 0;
  ck_assert_rc(concur_once_call(NULL, count, &calls), CONCUR_EINVAL);
  ck_assert_rc(concur_once_call(&once, NULL, &calls), CONCUR_EINVAL);
  ck_assert_int_eq(calls, 0);
  /* The once is still unused after the errors. */
  ck_assert_rc(concur_once_call(&once, count, &calls), 0);
  ck_assert_int_eq(calls, 1);
}
END_TEST

typedef struct race {
  concur_once once;
  harness_gate go; /* the function waits on it */
  _Atomic int calls;
  int value; /* written by the function, plain */
} race;

static void slow_init(void *arg) {
  race *r = arg;
  atomic_fetch_add(&r->calls, 1);
  harness_gate_wait(&r->go);
  r->value = 4242;
}

typedef struct caller {
  race *r;
  int rc;
  int seen;
} caller;

static int call_once(void *arg, void **result) {
  (void)result;
  caller *c = arg;
  c->rc = concur_once_call(&c->r->once, slow_init, c->r);
  c->seen = c->r->value; /* the function's write happens-before the return */
  return 0;
}

START_TEST(once_racing_threads_run_it_once_and_all_wait_for_it) {
  enum { N = 16 };
  race r = {CONCUR_ONCE_INIT, {0}, 0, 0};
  caller c[N];
  concur_thread *t[N];
  for (int i = 0; i < N; i++) {
    c[i] = (caller){&r, 1, 0};
    ck_assert_rc(concur_thread_run(&t[i], call_once, &c[i], NULL), 0);
  }
  /* One runs the function (blocked on go), the N-1 others wait in the once. */
  ck_assert_rc(concur__test_await_parked(&r.go, 1, HARNESS_LONG_NS), 0);
  ck_assert_rc(concur__test_await_parked(&r.once, N - 1, HARNESS_LONG_NS), 0);
  for (int i = 0; i < N; i++) {
    ck_assert(concur_thread_is_alive(t[i]));
  }
  harness_gate_open(&r.go);
  for (int i = 0; i < N; i++) {
    ck_assert_rc(concur_thread_join(t[i], CONCUR_FOREVER, NULL), 0);
    concur_thread_free(t[i]);
    ck_assert_rc(c[i].rc, 0);
    ck_assert_int_eq(c[i].seen, 4242);
  }
  ck_assert_int_eq(atomic_load(&r.calls), 1);
}
END_TEST

typedef struct recursive {
  concur_once once;
  concur_once inner;
  int inner_rc;
  int recursive_rc;
  int inner_calls;
  int calls;
} recursive;

static void inner_fn(void *arg) {
  ((recursive *)arg)->inner_calls++;
}

static void reenter(void *arg);

static void reenter(void *arg) {
  recursive *r = arg;
  r->calls++;
  r->recursive_rc = concur_once_call(&r->once, reenter, r);
  r->inner_rc = concur_once_call(&r->inner, inner_fn, r);
}

START_TEST(once_called_again_from_inside_its_function_is_edeadlk) {
  recursive r = {CONCUR_ONCE_INIT, CONCUR_ONCE_INIT, 1, 1, 0, 0};
  ck_assert_rc(concur_once_call(&r.once, reenter, &r), 0);
  ck_assert_rc(r.recursive_rc, CONCUR_EDEADLK);
  ck_assert_int_eq(r.calls, 1);
  /* Another once inside the function is fine. */
  ck_assert_rc(r.inner_rc, 0);
  ck_assert_int_eq(r.inner_calls, 1);
  /* The once completed normally. */
  ck_assert_rc(concur_once_call(&r.once, reenter, &r), 0);
  ck_assert_int_eq(r.calls, 1);
}
END_TEST

static int reenter_in_thread(void *arg, void **result) {
  (void)result;
  recursive *r = arg;
  return concur_once_call(&r->once, reenter, r);
}

START_TEST(once_recursion_is_detected_in_any_thread) {
  recursive r = {CONCUR_ONCE_INIT, CONCUR_ONCE_INIT, 1, 1, 0, 0};
  concur_thread *t;
  ck_assert_rc(concur_thread_run(&t, reenter_in_thread, &r, NULL), 0);
  ck_assert_rc(concur_thread_join(t, CONCUR_FOREVER, NULL), 0);
  concur_thread_free(t);
  ck_assert_rc(r.recursive_rc, CONCUR_EDEADLK);
  ck_assert_int_eq(r.calls, 1);
}
END_TEST

static void *foreign_call(void *arg) {
  caller *c = arg;
  c->rc = concur_once_call(&c->r->once, slow_init, c->r);
  c->seen = c->r->value;
  return NULL;
}

START_TEST(once_works_from_threads_concur_did_not_start) {
  enum { N = 4 };
  race r = {CONCUR_ONCE_INIT, {0}, 0, 0};
  caller c[N];
  pthread_t th[N];
  for (int i = 0; i < N; i++) {
    c[i] = (caller){&r, 1, 0};
    ck_assert_int_eq(pthread_create(&th[i], NULL, foreign_call, &c[i]), 0);
  }
  ck_assert_rc(concur__test_await_parked(&r.once, N - 1, HARNESS_LONG_NS), 0);
  harness_gate_open(&r.go);
  for (int i = 0; i < N; i++) {
    ck_assert_int_eq(pthread_join(th[i], NULL), 0);
    ck_assert_rc(c[i].rc, 0);
    ck_assert_int_eq(c[i].seen, 4242);
  }
  ck_assert_int_eq(atomic_load(&r.calls), 1);
}
END_TEST

Suite *concur_test_suite(void) {
  Suite *s = suite_create("once");
  TCase *tc = harness_tcase("once", 30);
  tcase_add_test(tc,
                 once_runs_the_function_once_and_later_calls_return_at_once);
  tcase_add_test(tc, once_rejects_null);
  tcase_add_test(tc, once_racing_threads_run_it_once_and_all_wait_for_it);
  tcase_add_test(tc, once_called_again_from_inside_its_function_is_edeadlk);
  tcase_add_test(tc, once_recursion_is_detected_in_any_thread);
  tcase_add_test(tc, once_works_from_threads_concur_did_not_start);
  suite_add_tcase(s, tc);
  return s;
}
