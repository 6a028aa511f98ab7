/*
 * Timer (concur_timer_*): Python's threading.Timer semantics. The function
 * runs once, never before the interval; cancel before expiry means it never
 * runs and join reports CONCUR_ECANCELED; cancel after it started is
 * harmless; the timer's thread is a library thread (signals blocked).
 */
#include "harness.h"

#include <signal.h>
#include <string.h>
#include <time.h>

/* What the timer's function saw. */
typedef struct fired {
  _Atomic int calls;
  int64_t at_ns;
  harness_gate *block; /* when set, the function waits on it */
  harness_gate started;
  int code;
  concur_timer *timer;
  int self_join_rc;
  char name[CONCUR_THREAD_NAME_MAX + 1];
  int blocked[4];
} fired;

static int on_fire(void *arg, void **result) {
  fired *f = arg;
  f->at_ns = harness_now_ns();
  atomic_fetch_add(&f->calls, 1);
  (void)concur_thread_current_name(f->name, sizeof f->name);
  if (f->timer != NULL) {
    f->self_join_rc = concur_timer_join(f->timer, CONCUR_NOWAIT, NULL);
  }
  sigset_t cur;
  pthread_sigmask(SIG_BLOCK, NULL, &cur);
  f->blocked[0] = sigismember(&cur, SIGINT);
  f->blocked[1] = sigismember(&cur, SIGTERM);
  f->blocked[2] = sigismember(&cur, SIGUSR1);
  f->blocked[3] = sigismember(&cur, SIGCHLD);
  harness_gate_open(&f->started);
  if (f->block != NULL) {
    harness_gate_wait(f->block);
  }
  *result = f;
  return f->code;
}

START_TEST(timer_fires_after_the_interval_and_join_returns_the_result) {
  const int64_t interval = 50000000;
  fired f = {0};
  concur_timer *tm;
  ck_assert_rc(concur_timer_new(&tm, interval, on_fire, &f, NULL), 0);
  ck_assert(!concur_timer_is_alive(tm));
  int64_t t0 = harness_now_ns();
  ck_assert_rc(concur_timer_start(tm), 0);
  ck_assert(concur_timer_is_alive(tm));
  void *res = NULL;
  ck_assert_rc(concur_timer_join(tm, CONCUR_FOREVER, &res), 0);
  ck_assert_ptr_eq(res, &f);
  ck_assert_int_eq(atomic_load(&f.calls), 1);
  HARNESS_ASSERT_TIMED_OUT(f.at_ns - t0, interval);
  ck_assert(!concur_timer_is_alive(tm));
  ck_assert_int_eq(concur_timer_exit_code(tm), 0);
  /* Cancel after it ran: harmless, the outcome stays. */
  ck_assert_rc(concur_timer_cancel(tm), 0);
  ck_assert_rc(concur_timer_join(tm, CONCUR_NOWAIT, NULL), 0);
  concur_timer_free(tm);
}
END_TEST

START_TEST(timer_with_zero_interval_fires_at_once) {
  fired f = {0};
  concur_timer *tm;
  ck_assert_rc(concur_timer_new(&tm, 0, on_fire, &f, NULL), 0);
  ck_assert_rc(concur_timer_start(tm), 0);
  ck_assert_rc(concur_timer_join(tm, HARNESS_LONG_NS, NULL), 0);
  ck_assert_int_eq(atomic_load(&f.calls), 1);
  concur_timer_free(tm);
}
END_TEST

START_TEST(timer_cancelled_before_expiry_never_runs) {
  fired f = {0};
  concur_timer *tm;
  ck_assert_rc(concur_timer_new(&tm, CONCUR_FOREVER, on_fire, &f, NULL), 0);
  ck_assert_rc(concur_timer_start(tm), 0);
  /* The timer's thread is waiting for its deadline. */
  ck_assert_rc(concur__test_await_parked(tm, 1, HARNESS_LONG_NS), 0);
  ck_assert(concur_timer_is_alive(tm));
  ck_assert_rc(concur_timer_cancel(tm), 0);
  ck_assert_rc(concur_timer_cancel(tm), 0); /* twice: harmless */
  void *res = (void *)&res;
  ck_assert_rc(concur_timer_join(tm, HARNESS_LONG_NS, &res), CONCUR_ECANCELED);
  ck_assert_ptr_eq(res, (void *)&res); /* untouched */
  ck_assert_rc(concur_timer_join(tm, CONCUR_NOWAIT, NULL), CONCUR_ECANCELED);
  ck_assert_int_eq(atomic_load(&f.calls), 0);
  ck_assert(!concur_timer_is_alive(tm));
  ck_assert_int_eq(concur_timer_exit_code(tm), 0);
  concur_timer_free(tm);
}
END_TEST

START_TEST(timer_cancelled_before_start_never_runs) {
  fired f = {0};
  concur_timer *tm;
  ck_assert_rc(concur_timer_new(&tm, 0, on_fire, &f, NULL), 0);
  ck_assert_rc(concur_timer_cancel(tm), 0);
  ck_assert_rc(concur_timer_start(tm), 0);
  ck_assert_rc(concur_timer_join(tm, HARNESS_LONG_NS, NULL), CONCUR_ECANCELED);
  ck_assert_int_eq(atomic_load(&f.calls), 0);
  concur_timer_free(tm);
}
END_TEST

START_TEST(timer_cancelled_after_the_function_started_is_harmless) {
  harness_gate block = {0};
  fired f = {0};
  f.block = &block;
  concur_timer *tm;
  ck_assert_rc(concur_timer_new(&tm, 0, on_fire, &f, NULL), 0);
  ck_assert_rc(concur_timer_start(tm), 0);
  ck_assert_rc(concur__test_await_parked(&block, 1, HARNESS_LONG_NS), 0);
  ck_assert_rc(concur_timer_cancel(tm), 0);
  ck_assert(concur_timer_is_alive(tm));
  harness_gate_open(&block);
  void *res = NULL;
  ck_assert_rc(concur_timer_join(tm, CONCUR_FOREVER, &res), 0);
  ck_assert_ptr_eq(res, &f);
  ck_assert_int_eq(atomic_load(&f.calls), 1);
  concur_timer_free(tm);
}
END_TEST

START_TEST(timer_join_times_out_while_waiting) {
  fired f = {0};
  concur_timer *tm;
  ck_assert_rc(concur_timer_new(&tm, CONCUR_FOREVER, on_fire, &f, NULL), 0);
  ck_assert_rc(concur_timer_start(tm), 0);
  const int64_t timeout = 40000000;
  int64_t t0 = harness_now_ns();
  ck_assert_rc(concur_timer_join(tm, timeout, NULL), CONCUR_ETIMEDOUT);
  HARNESS_ASSERT_TIMED_OUT(harness_now_ns() - t0, timeout);
  ck_assert_rc(concur_timer_join(tm, CONCUR_NOWAIT, NULL), CONCUR_ETIMEDOUT);
  ck_assert_rc(concur_timer_cancel(tm), 0);
  ck_assert_rc(concur_timer_join(tm, CONCUR_FOREVER, NULL), CONCUR_ECANCELED);
  concur_timer_free(tm);
}
END_TEST

typedef struct hook_seen {
  _Atomic int calls;
  int code;
  concur_thread *thread;
} hook_seen;

static void record_hook(void *arg, concur_thread *thread, int code) {
  hook_seen *h = arg;
  h->code = code;
  h->thread = thread;
  atomic_fetch_add(&h->calls, 1);
}

START_TEST(timer_function_failure_is_etask_and_reaches_the_hook) {
  hook_seen h = {0};
  concur_thread_set_excepthook(record_hook, &h);
  fired f = {0};
  f.code = 17;
  concur_thread_options opts = CONCUR_THREAD_OPTIONS_INIT;
  opts.name = "my-timer";
  concur_timer *tm;
  ck_assert_rc(concur_timer_new(&tm, 0, on_fire, &f, &opts), 0);
  ck_assert_rc(concur_timer_start(tm), 0);
  void *res = (void *)&res;
  ck_assert_rc(concur_timer_join(tm, CONCUR_FOREVER, &res), CONCUR_ETASK);
  ck_assert_ptr_eq(res, (void *)&res);
  ck_assert_int_eq(concur_timer_exit_code(tm), 17);
  ck_assert_int_eq(atomic_load(&h.calls), 1);
  ck_assert_int_eq(h.code, 17);
  ck_assert_ptr_nonnull(h.thread);
  ck_assert_str_eq(f.name, "my-timer");
  concur_timer_free(tm);
  concur_thread_set_excepthook(NULL, NULL);
}
END_TEST

START_TEST(timer_thread_blocks_asynchronous_signals) {
  /* The starter blocks nothing; the timer's thread still blocks them. */
  sigset_t none, old;
  sigemptyset(&none);
  ck_assert_int_eq(pthread_sigmask(SIG_SETMASK, &none, &old), 0);
  fired f = {0};
  concur_timer *tm;
  ck_assert_rc(concur_timer_new(&tm, 0, on_fire, &f, NULL), 0);
  ck_assert_rc(concur_timer_start(tm), 0);
  ck_assert_rc(concur_timer_join(tm, CONCUR_FOREVER, NULL), 0);
  concur_timer_free(tm);
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  for (int i = 0; i < 4; i++) {
    ck_assert_int_eq(f.blocked[i], 1);
  }
}
END_TEST

START_TEST(timer_joining_itself_is_edeadlk) {
  fired f = {0};
  concur_timer *tm;
  ck_assert_rc(concur_timer_new(&tm, 0, on_fire, &f, NULL), 0);
  f.timer = tm;
  ck_assert_rc(concur_timer_start(tm), 0);
  ck_assert_rc(concur_timer_join(tm, CONCUR_FOREVER, NULL), 0);
  ck_assert_rc(f.self_join_rc, CONCUR_EDEADLK);
  concur_timer_free(tm);
}
END_TEST

START_TEST(timer_start_twice_and_join_before_start_are_estate) {
  fired f = {0};
  concur_timer *tm;
  ck_assert_rc(concur_timer_new(&tm, CONCUR_FOREVER, on_fire, &f, NULL), 0);
  ck_assert_rc(concur_timer_join(tm, CONCUR_NOWAIT, NULL), CONCUR_ESTATE);
  ck_assert_rc(concur_timer_join(tm, CONCUR_FOREVER, NULL), CONCUR_ESTATE);
  ck_assert_rc(concur_timer_start(tm), 0);
  ck_assert_rc(concur_timer_start(tm), CONCUR_ESTATE);
  ck_assert_rc(concur_timer_cancel(tm), 0);
  ck_assert_rc(concur_timer_join(tm, CONCUR_FOREVER, NULL), CONCUR_ECANCELED);
  ck_assert_rc(concur_timer_start(tm), CONCUR_ESTATE);
  concur_timer_free(tm);
}
END_TEST

START_TEST(timer_rejects_bad_arguments) {
  fired f = {0};
  concur_timer *tm = (concur_timer *)&tm;
  ck_assert_rc(concur_timer_new(NULL, 0, on_fire, &f, NULL), CONCUR_EINVAL);
  ck_assert_rc(concur_timer_new(&tm, 0, NULL, &f, NULL), CONCUR_EINVAL);
  ck_assert_rc(concur_timer_new(&tm, -1, on_fire, &f, NULL), CONCUR_EINVAL);
  ck_assert_rc(concur_timer_new(&tm, INT64_MIN, on_fire, &f, NULL),
               CONCUR_EINVAL);
  concur_thread_options opts = CONCUR_THREAD_OPTIONS_INIT;
  opts.size = 1;
  ck_assert_rc(concur_timer_new(&tm, 0, on_fire, &f, &opts), CONCUR_EINVAL);
  ck_assert_ptr_eq(tm, (concur_timer *)&tm);
  ck_assert_rc(concur_timer_start(NULL), CONCUR_EINVAL);
  ck_assert_rc(concur_timer_cancel(NULL), CONCUR_EINVAL);
  ck_assert_rc(concur_timer_join(NULL, CONCUR_FOREVER, NULL), CONCUR_EINVAL);
  ck_assert(!concur_timer_is_alive(NULL));
  ck_assert_int_eq(concur_timer_exit_code(NULL), 0);
  concur_timer_free(NULL);

  ck_assert_rc(concur_timer_new(&tm, 0, on_fire, &f, NULL), 0);
  ck_assert_rc(concur_timer_start(tm), 0);
  ck_assert_rc(concur_timer_join(tm, -1, NULL), CONCUR_EINVAL);
  ck_assert_rc(concur_timer_join(tm, CONCUR_FOREVER, NULL), 0);
  concur_timer_free(tm);
}
END_TEST

START_TEST(timer_free_while_waiting_cancels_it_and_leaks_nothing) {
  int threads = harness_thread_count();
  fired f = {0};
  concur_timer *tm;
  ck_assert_rc(concur_timer_new(&tm, CONCUR_FOREVER, on_fire, &f, NULL), 0);
  ck_assert_rc(concur_timer_start(tm), 0);
  ck_assert_rc(concur__test_await_parked(tm, 1, HARNESS_LONG_NS), 0);
  concur_timer_free(tm);
  ck_assert(harness_await_thread_count(threads));
  ck_assert_int_eq(atomic_load(&f.calls), 0);
}
END_TEST

START_TEST(timer_free_while_its_function_runs_lets_it_finish) {
  int threads = harness_thread_count();
  /* Static: the detached timer thread uses them, and nothing orders its end
   * before this frame is reused. */
  static harness_gate block;
  static fired f;
  f.block = &block;
  concur_timer *tm;
  ck_assert_rc(concur_timer_new(&tm, 0, on_fire, &f, NULL), 0);
  ck_assert_rc(concur_timer_start(tm), 0);
  ck_assert_rc(concur__test_await_parked(&block, 1, HARNESS_LONG_NS), 0);
  concur_timer_free(tm);
  harness_gate_open(&block);
  ck_assert(harness_await_thread_count(threads));
  ck_assert_int_eq(atomic_load(&f.calls), 1);
}
END_TEST

START_TEST(timer_options_name_and_daemon_apply_to_its_thread) {
  fired f = {0};
  concur_thread_options opts = CONCUR_THREAD_OPTIONS_INIT;
  opts.name = "named-timer";
  opts.daemon = true;
  concur_timer *tm;
  ck_assert_rc(concur_timer_new(&tm, 0, on_fire, &f, &opts), 0);
  ck_assert_rc(concur_timer_start(tm), 0);
  ck_assert_rc(concur_timer_join(tm, CONCUR_FOREVER, NULL), 0);
  ck_assert_str_eq(f.name, "named-timer");
  concur_timer_free(tm);

  /* Without a name it is a "Thread-N" like any thread. */
  fired g = {0};
  ck_assert_rc(concur_timer_new(&tm, 0, on_fire, &g, NULL), 0);
  ck_assert_rc(concur_timer_start(tm), 0);
  ck_assert_rc(concur_timer_join(tm, CONCUR_FOREVER, NULL), 0);
  ck_assert_int_eq(strncmp(g.name, "Thread-", 7), 0);
  concur_timer_free(tm);
}
END_TEST

START_TEST(timer_unstarted_timer_frees_cleanly) {
  fired f = {0};
  concur_timer *tm;
  ck_assert_rc(concur_timer_new(&tm, 0, on_fire, &f, NULL), 0);
  concur_timer_free(tm);
  ck_assert_int_eq(atomic_load(&f.calls), 0);
}
END_TEST

Suite *concur_test_suite(void) {
  Suite *s = suite_create("timer");
  TCase *tc = harness_tcase("timer", 30);
  tcase_add_test(tc,
                 timer_fires_after_the_interval_and_join_returns_the_result);
  tcase_add_test(tc, timer_with_zero_interval_fires_at_once);
  tcase_add_test(tc, timer_cancelled_before_expiry_never_runs);
  tcase_add_test(tc, timer_cancelled_before_start_never_runs);
  tcase_add_test(tc, timer_cancelled_after_the_function_started_is_harmless);
  tcase_add_test(tc, timer_join_times_out_while_waiting);
  tcase_add_test(tc, timer_function_failure_is_etask_and_reaches_the_hook);
  tcase_add_test(tc, timer_thread_blocks_asynchronous_signals);
  tcase_add_test(tc, timer_joining_itself_is_edeadlk);
  tcase_add_test(tc, timer_start_twice_and_join_before_start_are_estate);
  tcase_add_test(tc, timer_rejects_bad_arguments);
  tcase_add_test(tc, timer_free_while_waiting_cancels_it_and_leaks_nothing);
  tcase_add_test(tc, timer_free_while_its_function_runs_lets_it_finish);
  tcase_add_test(tc, timer_options_name_and_daemon_apply_to_its_thread);
  tcase_add_test(tc, timer_unstarted_timer_frees_cleanly);
  suite_add_tcase(s, tc);
  return s;
}
