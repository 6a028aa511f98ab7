/*
 * Event: EVT-01..03 of the reliability catalogue, every documented error,
 * timeouts, happens-before and the free() misuse check.
 */
#include "harness.h"

#include <signal.h>

#define MAX_WAITERS 8

typedef struct waiters {
  concur_event *event;
  int64_t timeout_ns;
  int n;
  int rc[MAX_WAITERS];
  int64_t elapsed[MAX_WAITERS];
  _Atomic int next_id;
  pthread_t threads[MAX_WAITERS];
} waiters;

static void *waiter(void *arg) {
  waiters *w = arg;
  int id = atomic_fetch_add(&w->next_id, 1);
  int64_t t0 = harness_now_ns();
  w->rc[id] = concur_event_wait(w->event, w->timeout_ns);
  w->elapsed[id] = harness_now_ns() - t0;
  return NULL;
}

static void start_waiters(waiters *w, concur_event *event, int n,
                          int64_t timeout_ns) {
  *w = (waiters){.event = event, .timeout_ns = timeout_ns, .n = n};
  for (int i = 0; i < n; i++) {
    w->rc[i] = 1; /* not a code any wait returns */
    ck_assert_rc(concur__thread_spawn(&w->threads[i], 0, true, waiter, w), 0);
  }
}

static void join_waiters(waiters *w) {
  for (int i = 0; i < w->n; i++) {
    pthread_join(w->threads[i], NULL);
  }
}

/* ---- errors
 * ------------------------------------------------------------------ */

START_TEST(evt_null_handles_are_einval) {
  ck_assert_rc(concur_event_new(NULL), CONCUR_EINVAL);
  ck_assert_rc(concur_event_set(NULL), CONCUR_EINVAL);
  ck_assert_rc(concur_event_clear(NULL), CONCUR_EINVAL);
  ck_assert(!concur_event_is_set(NULL));
  ck_assert_rc(concur_event_wait(NULL, CONCUR_NOWAIT), CONCUR_EINVAL);
  ck_assert_rc(concur_event_wait(NULL, CONCUR_FOREVER), CONCUR_EINVAL);
  concur_event_free(NULL); /* a no-op */
}
END_TEST

START_TEST(evt_negative_timeout_is_einval) {
  concur_event *e;
  ck_assert_rc(concur_event_new(&e), 0);
  ck_assert_rc(concur_event_wait(e, -1), CONCUR_EINVAL);
  ck_assert_rc(concur_event_wait(e, INT64_MIN), CONCUR_EINVAL);
  ck_assert_rc(concur_event_set(e), 0);
  /* Checked before the flag: a bad call is bad whatever the state. */
  ck_assert_rc(concur_event_wait(e, -5), CONCUR_EINVAL);
  concur_event_free(e);
}
END_TEST

/* ---- EVT-01
 * ---------------------------------------------------------------------- */

START_TEST(EVT_01_set_releases_all_waiters_twice) {
  concur_event *e;
  ck_assert_rc(concur_event_new(&e), 0);
  ck_assert(!concur_event_is_set(e));
  for (int round = 0; round < 2; round++) {
    waiters w;
    start_waiters(&w, e, 5, CONCUR_FOREVER);
    ck_assert_rc(concur__test_await_parked(e, 5, HARNESS_LONG_NS), 0);
    ck_assert_rc(concur_event_set(e), 0);
    join_waiters(&w);
    for (int i = 0; i < 5; i++) {
      ck_assert_rc(w.rc[i], 0);
    }
    ck_assert(concur_event_is_set(e));
    ck_assert_rc(concur_event_clear(e), 0);
    ck_assert(!concur_event_is_set(e));
  }
  concur_event_free(e);
}
END_TEST

START_TEST(EVT_01_set_clear_is_set_are_idempotent) {
  concur_event *e;
  ck_assert_rc(concur_event_new(&e), 0);
  ck_assert_rc(concur_event_clear(e), 0);
  ck_assert(!concur_event_is_set(e));
  ck_assert_rc(concur_event_set(e), 0);
  ck_assert_rc(concur_event_set(e), 0);
  ck_assert(concur_event_is_set(e));
  ck_assert(concur_event_is_set(e));
  ck_assert_rc(concur_event_wait(e, CONCUR_NOWAIT), 0);
  ck_assert_rc(concur_event_clear(e), 0);
  ck_assert_rc(concur_event_clear(e), 0);
  ck_assert(!concur_event_is_set(e));
  ck_assert_rc(concur_event_wait(e, CONCUR_NOWAIT), CONCUR_ETIMEDOUT);
  concur_event_free(e);
}
END_TEST

/* ---- EVT-02
 * ---------------------------------------------------------------------- */

START_TEST(EVT_02_wait_zero_on_clear_is_etimedout) {
  concur_event *e;
  ck_assert_rc(concur_event_new(&e), 0);
  int64_t t0 = harness_now_ns();
  ck_assert_rc(concur_event_wait(e, CONCUR_NOWAIT), CONCUR_ETIMEDOUT);
  ck_assert_int_lt(harness_now_ns() - t0, 50000000 * harness_slack());
  concur_event_free(e);
}
END_TEST

START_TEST(EVT_02_timed_wait_times_out_in_window) {
  concur_event *e;
  ck_assert_rc(concur_event_new(&e), 0);
  const int64_t timeout = 500000000; /* 0.5 s, as in CPython */
  int64_t t0 = harness_now_ns();
  ck_assert_rc(concur_event_wait(e, timeout), CONCUR_ETIMEDOUT);
  HARNESS_ASSERT_TIMED_OUT(harness_now_ns() - t0, timeout);
  ck_assert(!concur_event_is_set(e));
  concur_event_free(e);
}
END_TEST

START_TEST(EVT_02_timed_waiters_time_out_together) {
  concur_event *e;
  ck_assert_rc(concur_event_new(&e), 0);
  const int64_t timeout = 100000000;
  waiters w;
  start_waiters(&w, e, 5, timeout);
  join_waiters(&w);
  for (int i = 0; i < 5; i++) {
    ck_assert_rc(w.rc[i], CONCUR_ETIMEDOUT);
    HARNESS_ASSERT_TIMED_OUT(w.elapsed[i], timeout);
  }
  concur_event_free(e);
}
END_TEST

START_TEST(EVT_02_wait_on_set_event_returns_at_once) {
  concur_event *e;
  ck_assert_rc(concur_event_new(&e), 0);
  ck_assert_rc(concur_event_set(e), 0);
  int64_t t0 = harness_now_ns();
  ck_assert_rc(concur_event_wait(e, CONCUR_FOREVER), 0);
  ck_assert_rc(concur_event_wait(e, CONCUR_NOWAIT), 0);
  ck_assert_rc(concur_event_wait(e, 1000), 0);
  ck_assert_int_lt(harness_now_ns() - t0, 50000000 * harness_slack());
  ck_assert_uint_eq(concur__test_parked(e), 0);
  concur_event_free(e);
}
END_TEST

START_TEST(EVT_02_timed_wait_returns_when_set) {
  concur_event *e;
  ck_assert_rc(concur_event_new(&e), 0);
  waiters w;
  start_waiters(&w, e, 3, HARNESS_LONG_NS);
  ck_assert_rc(concur__test_await_parked(e, 3, HARNESS_LONG_NS), 0);
  ck_assert_rc(concur_event_set(e), 0);
  join_waiters(&w);
  for (int i = 0; i < 3; i++) {
    ck_assert_rc(w.rc[i], 0);
  }
  concur_event_free(e);
}
END_TEST

/* ---- EVT-03
 * ---------------------------------------------------------------------- */

START_TEST(EVT_03_set_then_clear_still_releases_waiters) {
  concur_event *e;
  ck_assert_rc(concur_event_new(&e), 0);
  for (int round = 0; round < 3; round++) {
    waiters w;
    /* Timed and untimed waiters both. */
    start_waiters(&w, e, 6, round == 1 ? HARNESS_LONG_NS : CONCUR_FOREVER);
    ck_assert_rc(concur__test_await_parked(e, 6, HARNESS_LONG_NS), 0);
    ck_assert_rc(concur_event_set(e), 0);
    ck_assert_rc(concur_event_clear(e), 0);
    join_waiters(&w);
    for (int i = 0; i < 6; i++) {
      ck_assert_rc(w.rc[i], 0);
    }
    ck_assert(!concur_event_is_set(e));
  }
  /* A wait that starts after the clear is not released by that set. */
  ck_assert_rc(concur_event_wait(e, CONCUR_NOWAIT), CONCUR_ETIMEDOUT);
  concur_event_free(e);
}
END_TEST

/* ---- happens-before and lifetime
 * --------------------------------------------------- */

typedef struct publish {
  concur_event *event;
  long payload; /* plain: TSan checks the set/wait edge */
  long seen;
  int rc;
} publish;

static void *publish_then_set(void *arg) {
  publish *p = arg;
  p->payload = 7;
  (void)concur_event_set(p->event);
  return NULL;
}

START_TEST(evt_set_happens_before_wait_and_is_set) {
  publish p = {0};
  ck_assert_rc(concur_event_new(&p.event), 0);
  pthread_t t;
  ck_assert_rc(concur__thread_spawn(&t, 0, true, publish_then_set, &p), 0);
  ck_assert_rc(concur_event_wait(p.event, CONCUR_FOREVER), 0);
  ck_assert_int_eq(p.payload, 7);
  pthread_join(t, NULL);
  concur_event_free(p.event);

  p = (publish){0};
  ck_assert_rc(concur_event_new(&p.event), 0);
  ck_assert_rc(concur__thread_spawn(&t, 0, true, publish_then_set, &p), 0);
  while (!concur_event_is_set(p.event)) {
    concur__cpu_relax(); /* bounded by the setter's progress */
  }
  ck_assert_int_eq(p.payload, 7);
  pthread_join(t, NULL);
  concur_event_free(p.event);
}
END_TEST

static void *set_only(void *arg) {
  (void)concur_event_set(arg);
  return NULL;
}

START_TEST(evt_waiter_may_free_while_setter_returns) {
  /* ASan catches a set() that touches the event after publishing. */
  for (int i = 0; i < 200; i++) {
    concur_event *e;
    ck_assert_rc(concur_event_new(&e), 0);
    pthread_t t;
    ck_assert_rc(concur__thread_spawn(&t, 0, true, set_only, e), 0);
    ck_assert_rc(concur_event_wait(e, CONCUR_FOREVER), 0);
    concur_event_free(e);
    pthread_join(t, NULL);
  }
}
END_TEST

static void *wait_forever(void *arg) {
  int rc = concur_event_wait(arg, CONCUR_FOREVER);
  (void)rc; /* never returns: the case aborts first */
  return NULL;
}

START_TEST(evt_free_with_a_waiter_aborts) {
  concur_event *e;
  ck_assert_rc(concur_event_new(&e), 0);
  pthread_t t;
  ck_assert_rc(concur__thread_spawn(&t, 0, true, wait_forever, e), 0);
  ck_assert_rc(concur__test_await_parked(e, 1, HARNESS_LONG_NS), 0);
  concur_event_free(e); /* aborts: the case expects SIGABRT */
}
END_TEST

Suite *concur_test_suite(void) {
  Suite *s = suite_create("event");
  TCase *tc = harness_tcase("event", 30);
  tcase_add_test(tc, evt_null_handles_are_einval);
  tcase_add_test(tc, evt_negative_timeout_is_einval);
  tcase_add_test(tc, EVT_01_set_releases_all_waiters_twice);
  tcase_add_test(tc, EVT_01_set_clear_is_set_are_idempotent);
  tcase_add_test(tc, EVT_02_wait_zero_on_clear_is_etimedout);
  tcase_add_test(tc, EVT_02_timed_wait_times_out_in_window);
  tcase_add_test(tc, EVT_02_timed_waiters_time_out_together);
  tcase_add_test(tc, EVT_02_wait_on_set_event_returns_at_once);
  tcase_add_test(tc, EVT_02_timed_wait_returns_when_set);
  tcase_add_test(tc, EVT_03_set_then_clear_still_releases_waiters);
  tcase_add_test(tc, evt_set_happens_before_wait_and_is_set);
  tcase_add_test(tc, evt_waiter_may_free_while_setter_returns);
  suite_add_tcase(s, tc);
  /* The aborting case leaves its blocked thread behind: no leak fixture. */
  TCase *abort_tc = tcase_create("event_misuse");
  tcase_set_timeout(abort_tc, 30);
  tcase_add_test_raise_signal(abort_tc, evt_free_with_a_waiter_aborts, SIGABRT);
  suite_add_tcase(s, abort_tc);
  return s;
}
