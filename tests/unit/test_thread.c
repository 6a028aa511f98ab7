/*
 * Threads (concur/thread.h): start, join with timeouts, many joiners,
 * daemon flag, names, identity, the failure hook, creation failure, and the
 * errors of every function. Scenario IDs THR-01..05 and THR-07..12 of the
 * catalogue; THR-06, 13 and 14 fork and live in test_thread_fork.c.
 */
#include "harness.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static int return_arg(void *arg, void **result) {
  *result = arg;
  return 0;
}

static int return_code(void *arg, void **result) {
  (void)result;
  return (int)(intptr_t)arg;
}

static int wait_gate(void *arg, void **result) {
  harness_gate_wait(arg);
  *result = arg;
  return 0;
}

static void quiet_hook(void *arg, concur_thread *thread, int code) {
  (void)thread;
  (void)code;
  atomic_fetch_add((_Atomic int *)arg, 1);
}

/* ---- THR-01 ------------------------------------------------------------- */

static int count_calls(void *arg, void **result) {
  (void)result;
  atomic_fetch_add((_Atomic int *)arg, 1);
  return 0;
}

START_TEST(THR_01_start_runs_target_once_second_start_is_estate) {
  _Atomic int calls = 0;
  concur_thread *t;
  ck_assert_rc(concur_thread_new(&t, count_calls, &calls, NULL), 0);
  ck_assert_rc(concur_thread_start(t), 0);
  ck_assert_rc(concur_thread_start(t), CONCUR_ESTATE);
  ck_assert_rc(concur_thread_join(t, CONCUR_FOREVER, NULL), 0);
  ck_assert_rc(concur_thread_start(t), CONCUR_ESTATE);
  ck_assert_int_eq(atomic_load(&calls), 1);
  concur_thread_free(t);
}
END_TEST

START_TEST(THR_01_run_starts_and_returns_the_result) {
  int x = 0;
  concur_thread *t = NULL;
  ck_assert_rc(concur_thread_run(&t, return_arg, &x, NULL), 0);
  ck_assert_ptr_nonnull(t);
  void *res = NULL;
  ck_assert_rc(concur_thread_join(t, CONCUR_FOREVER, &res), 0);
  ck_assert_ptr_eq(res, &x);
  ck_assert_int_eq(concur_thread_exit_code(t), 0);
  /* A finished thread may be joined again, with the same outcome. */
  res = NULL;
  ck_assert_rc(concur_thread_join(t, CONCUR_NOWAIT, &res), 0);
  ck_assert_ptr_eq(res, &x);
  ck_assert_rc(concur_thread_join(t, CONCUR_FOREVER, NULL), 0);
  concur_thread_free(t);
}
END_TEST

/* ---- THR-02 ------------------------------------------------------------- */

typedef struct self_join {
  int rc_forever;
  int rc_nowait;
  concur_thread *current;
} self_join;

static int join_self(void *arg, void **result) {
  (void)result;
  self_join *s = arg;
  s->current = concur_thread_current();
  s->rc_forever = concur_thread_join(s->current, CONCUR_FOREVER, NULL);
  s->rc_nowait = concur_thread_join(s->current, CONCUR_NOWAIT, NULL);
  return 0;
}

START_TEST(THR_02_join_of_never_started_thread_is_estate) {
  concur_thread *t;
  ck_assert_rc(concur_thread_new(&t, return_arg, NULL, NULL), 0);
  ck_assert_rc(concur_thread_join(t, CONCUR_FOREVER, NULL), CONCUR_ESTATE);
  ck_assert_rc(concur_thread_join(t, CONCUR_NOWAIT, NULL), CONCUR_ESTATE);
  ck_assert_rc(concur_thread_join(t, 1000000, NULL), CONCUR_ESTATE);
  ck_assert(!concur_thread_is_alive(t));
  concur_thread_free(t);
}
END_TEST

START_TEST(THR_02_join_of_current_thread_is_edeadlk) {
  self_join s = {0};
  concur_thread *t;
  ck_assert_rc(concur_thread_run(&t, join_self, &s, NULL), 0);
  ck_assert_rc(concur_thread_join(t, CONCUR_FOREVER, NULL), 0);
  ck_assert_ptr_eq(s.current, t);
  ck_assert_rc(s.rc_forever, CONCUR_EDEADLK);
  ck_assert_rc(s.rc_nowait, CONCUR_EDEADLK);
  concur_thread_free(t);
}
END_TEST

/* ---- THR-03 ------------------------------------------------------------- */

START_TEST(THR_03_join_timeout_on_blocked_thread_then_join_succeeds) {
  harness_gate g = {0};
  concur_thread *t;
  ck_assert_rc(concur_thread_run(&t, wait_gate, &g, NULL), 0);
  ck_assert_rc(concur__test_await_parked(&g, 1, HARNESS_LONG_NS), 0);
  const int64_t timeout = 50000000;
  void *res = (void *)&res;
  int64_t t0 = harness_now_ns();
  ck_assert_rc(concur_thread_join(t, timeout, &res), CONCUR_ETIMEDOUT);
  HARNESS_ASSERT_TIMED_OUT(harness_now_ns() - t0, timeout);
  ck_assert_ptr_eq(res, (void *)&res); /* untouched */
  ck_assert(concur_thread_is_alive(t));
  t0 = harness_now_ns();
  ck_assert_rc(concur_thread_join(t, CONCUR_NOWAIT, NULL), CONCUR_ETIMEDOUT);
  ck_assert_int_lt(harness_now_ns() - t0, 1000000000LL * harness_slack());
  ck_assert(concur_thread_is_alive(t));
  harness_gate_open(&g);
  ck_assert_rc(concur_thread_join(t, HARNESS_LONG_NS, &res), 0);
  ck_assert_ptr_eq(res, &g);
  ck_assert(!concur_thread_is_alive(t));
  concur_thread_free(t);
}
END_TEST

/* ---- THR-04 ------------------------------------------------------------- */

typedef struct joiner {
  concur_thread *target;
  int64_t timeout;
  int rc;
  void *result;
} joiner;

static int join_target(void *arg, void **result) {
  (void)result;
  joiner *j = arg;
  j->rc = concur_thread_join(j->target, j->timeout, &j->result);
  return 0;
}

START_TEST(THR_04_twenty_threads_join_the_same_thread) {
  enum { N = 20 };
  harness_gate g = {0};
  concur_thread *target;
  ck_assert_rc(concur_thread_run(&target, wait_gate, &g, NULL), 0);
  int before = harness_thread_count();
  joiner js[N];
  concur_thread *jt[N];
  for (int i = 0; i < N; i++) {
    js[i] = (joiner){target, i % 2 ? CONCUR_FOREVER : HARNESS_LONG_NS, 1, NULL};
    ck_assert_rc(concur_thread_run(&jt[i], join_target, &js[i], NULL), 0);
  }
  /* Every joiner is blocked in the target before it may finish. */
  ck_assert_rc(concur__test_await_parked(target, N, HARNESS_LONG_NS), 0);
  ck_assert(concur_thread_is_alive(target));
  harness_gate_open(&g);
  for (int i = 0; i < N; i++) {
    ck_assert_rc(concur_thread_join(jt[i], CONCUR_FOREVER, NULL), 0);
    concur_thread_free(jt[i]);
  }
  for (int i = 0; i < N; i++) {
    ck_assert_rc(js[i].rc, 0);
    ck_assert_ptr_eq(js[i].result, &g);
  }
  /* The joins reaped the target: its OS thread is gone too (the kernel
   * drops it from /proc a moment after pthread_join returns). */
  ck_assert(harness_await_thread_count(before - 1));
  ck_assert_rc(concur_thread_join(target, CONCUR_NOWAIT, NULL), 0);
  concur_thread_free(target);
}
END_TEST

START_TEST(THR_04_joiners_of_a_failed_thread_all_see_etask) {
  enum { N = 8 };
  concur_thread *target;
  ck_assert_rc(
      concur_thread_new(&target, return_code, (void *)(intptr_t)5, NULL), 0);
  _Atomic int quiet = 0;
  concur_thread_set_excepthook(quiet_hook, &quiet);
  joiner js[N];
  concur_thread *jt[N];
  ck_assert_rc(concur_thread_start(target), 0);
  for (int i = 0; i < N; i++) {
    js[i] = (joiner){target, CONCUR_FOREVER, 1, NULL};
    ck_assert_rc(concur_thread_run(&jt[i], join_target, &js[i], NULL), 0);
  }
  for (int i = 0; i < N; i++) {
    ck_assert_rc(concur_thread_join(jt[i], CONCUR_FOREVER, NULL), 0);
    concur_thread_free(jt[i]);
    ck_assert_rc(js[i].rc, CONCUR_ETASK);
    ck_assert_ptr_null(js[i].result);
  }
  ck_assert_int_eq(concur_thread_exit_code(target), 5);
  ck_assert_int_eq(atomic_load(&quiet), 1);
  concur_thread_free(target);
  concur_thread_set_excepthook(NULL, NULL);
}
END_TEST

/* ---- THR-05 ------------------------------------------------------------- */

START_TEST(THR_05_daemon_default_param_and_change_after_start) {
  concur_thread *t;
  ck_assert_rc(concur_thread_new(&t, return_arg, NULL, NULL), 0);
  ck_assert(!concur_thread_is_daemon(t));
  ck_assert_rc(concur_thread_set_daemon(t, true), 0);
  ck_assert(concur_thread_is_daemon(t));
  ck_assert_rc(concur_thread_set_daemon(t, false), 0);
  ck_assert(!concur_thread_is_daemon(t));
  concur_thread_free(t);

  concur_thread_options opts = CONCUR_THREAD_OPTIONS_INIT;
  opts.daemon = true;
  harness_gate g = {0};
  ck_assert_rc(concur_thread_run(&t, wait_gate, &g, &opts), 0);
  ck_assert(concur_thread_is_daemon(t));
  ck_assert_rc(concur_thread_set_daemon(t, false), CONCUR_ESTATE);
  ck_assert_rc(concur_thread_set_daemon(t, true), CONCUR_ESTATE);
  ck_assert(concur_thread_is_daemon(t));
  harness_gate_open(&g);
  ck_assert_rc(concur_thread_join(t, CONCUR_FOREVER, NULL), 0);
  ck_assert_rc(concur_thread_set_daemon(t, false), CONCUR_ESTATE);
  ck_assert(concur_thread_is_daemon(t));
  concur_thread_free(t);

  ck_assert_rc(concur_thread_set_daemon(NULL, true), CONCUR_EINVAL);
  ck_assert(!concur_thread_is_daemon(NULL));
}
END_TEST

/* ---- THR-07 ------------------------------------------------------------- */

START_TEST(THR_07_creation_failure_is_eagain_and_leaves_nothing) {
  _Atomic int calls = 0;
  size_t active = concur_thread_active_count();
  int threads = harness_thread_count();
  concur_thread *t;
  ck_assert_rc(concur_thread_new(&t, count_calls, &calls, NULL), 0);
  concur__fault_arm(CONCUR__FAULT_THREAD, 1, 0);
  ck_assert_rc(concur_thread_start(t), CONCUR_EAGAIN);
  concur__fault_arm(CONCUR__FAULT_THREAD, 0, 0);
  ck_assert_int_eq(concur_thread_active_count(), active);
  ck_assert_int_eq(harness_thread_count(), threads);
  ck_assert(!concur_thread_is_alive(t));
  ck_assert_uint_eq(concur_thread_ident(t), 0);
  ck_assert_uint_eq(concur_thread_native_id(t), 0);
  ck_assert_rc(concur_thread_join(t, CONCUR_NOWAIT, NULL), CONCUR_ESTATE);
  ck_assert_rc(concur_thread_set_daemon(t, true), 0); /* still unstarted */
  /* The handle may be started again. */
  ck_assert_rc(concur_thread_start(t), 0);
  ck_assert_rc(concur_thread_join(t, CONCUR_FOREVER, NULL), 0);
  ck_assert_int_eq(atomic_load(&calls), 1);
  concur_thread_free(t);

  /* concur_thread_run leaves nothing at all. */
  concur_thread *r = (concur_thread *)&r;
  concur__fault_arm(CONCUR__FAULT_THREAD, 1, 0);
  ck_assert_rc(concur_thread_run(&r, count_calls, &calls, NULL), CONCUR_EAGAIN);
  concur__fault_arm(CONCUR__FAULT_THREAD, 0, 0);
  ck_assert_ptr_eq(r, (concur_thread *)&r);
  ck_assert_int_eq(concur_thread_active_count(), active);
  ck_assert_int_eq(atomic_load(&calls), 1);
}
END_TEST

/* ---- THR-08 ------------------------------------------------------------- */

START_TEST(THR_08_after_join_not_alive_and_not_counted_100_loops) {
  size_t active = concur_thread_active_count();
  int threads = harness_thread_count();
  for (int i = 0; i < 100; i++) {
    harness_gate g = {0};
    concur_thread *t;
    ck_assert_rc(concur_thread_run(&t, wait_gate, &g, NULL), 0);
    ck_assert(concur_thread_is_alive(t));
    ck_assert_int_eq(concur_thread_active_count(), active + 1);
    harness_gate_open(&g);
    ck_assert_rc(concur_thread_join(t, CONCUR_FOREVER, NULL), 0);
    ck_assert(!concur_thread_is_alive(t));
    ck_assert_int_eq(concur_thread_active_count(), active);
    ck_assert(harness_await_thread_count(threads));
    concur_thread_free(t);
  }
}
END_TEST

/* ---- THR-09 ------------------------------------------------------------- */

START_TEST(THR_09_freed_running_threads_leak_nothing) {
  size_t active = concur_thread_active_count();
  int threads = harness_thread_count();
  /* Static: detached threads read it, and nothing orders their end before
   * this frame is reused. */
  static harness_gate g;
  for (int i = 0; i < 10; i++) {
    concur_thread *t;
    ck_assert_rc(concur_thread_run(&t, wait_gate, &g, NULL), 0);
    concur_thread_free(t); /* detached while running */
  }
  ck_assert_rc(concur__test_await_parked(&g, 10, HARNESS_LONG_NS), 0);
  ck_assert_int_eq(concur_thread_active_count(), active + 10);
  harness_gate_open(&g);
  /* Each thread ends on its own, frees its handle (ASan checks) and leaves
   * the registry. */
  ck_assert(harness_await_thread_count(threads));
  ck_assert_int_eq(concur_thread_active_count(), active);
}
END_TEST

typedef struct finisher {
  harness_gate done;
} finisher;

static int signal_done(void *arg, void **result) {
  (void)result;
  harness_gate_open(&((finisher *)arg)->done);
  return 0;
}

START_TEST(THR_09_finished_thread_never_joined_leaks_nothing) {
  int threads = harness_thread_count();
  finisher f = {{0}};
  concur_thread *t;
  ck_assert_rc(concur_thread_run(&t, signal_done, &f, NULL), 0);
  harness_gate_wait(&f.done);
  /* Finishing or finished: free reaps or detaches it; either way nothing
   * is left once it is gone. */
  concur_thread_free(t);
  ck_assert(harness_await_thread_count(threads));
}
END_TEST

/* ---- THR-10 ------------------------------------------------------------- */

typedef struct hook_record {
  _Atomic int calls;
  concur_thread *thread;
  int code;
  void *arg;
  uint64_t ident_in_hook;
  concur_thread *current_in_hook;
  bool alive_in_hook;
  char name[CONCUR_THREAD_NAME_MAX + 1];
  harness_gate *block; /* when set, the hook waits on it */
} hook_record;

static void record_hook(void *arg, concur_thread *thread, int code) {
  hook_record *r = arg;
  r->thread = thread;
  r->code = code;
  r->arg = arg;
  r->ident_in_hook = concur_thread_get_ident();
  r->current_in_hook = concur_thread_current();
  r->alive_in_hook = concur_thread_is_alive(thread);
  (void)concur_thread_get_name(thread, r->name, sizeof r->name);
  if (r->block != NULL) {
    harness_gate_wait(r->block);
  }
  atomic_fetch_add(&r->calls, 1);
}

START_TEST(THR_10_failure_goes_to_the_hook_with_the_thread_identity) {
  hook_record rec = {0};
  concur_thread_set_excepthook(record_hook, &rec);
  concur_thread_options opts = CONCUR_THREAD_OPTIONS_INIT;
  opts.name = "failing-worker";
  concur_thread *t;
  ck_assert_rc(concur_thread_run(&t, return_code, (void *)(intptr_t)42, &opts),
               0);
  void *res = (void *)&res;
  ck_assert_rc(concur_thread_join(t, CONCUR_FOREVER, &res), CONCUR_ETASK);
  ck_assert_ptr_eq(res, (void *)&res);
  ck_assert_int_eq(concur_thread_exit_code(t), 42);
  ck_assert_int_eq(atomic_load(&rec.calls), 1);
  ck_assert_ptr_eq(rec.thread, t);
  ck_assert_int_eq(rec.code, 42);
  ck_assert_ptr_eq(rec.arg, &rec);
  ck_assert_uint_eq(rec.ident_in_hook, concur_thread_ident(t));
  ck_assert_ptr_eq(rec.current_in_hook, t);
  ck_assert(rec.alive_in_hook);
  ck_assert_str_eq(rec.name, "failing-worker");
  concur_thread_free(t);

  /* Any nonzero code is a failure, negative or 1. */
  ck_assert_rc(concur_thread_run(&t, return_code, (void *)(intptr_t)-1, NULL),
               0);
  ck_assert_rc(concur_thread_join(t, CONCUR_FOREVER, NULL), CONCUR_ETASK);
  ck_assert_int_eq(concur_thread_exit_code(t), -1);
  ck_assert_int_eq(atomic_load(&rec.calls), 2);
  ck_assert_int_eq(rec.code, -1);
  concur_thread_free(t);

  /* Success never reaches the hook. */
  ck_assert_rc(concur_thread_run(&t, return_code, (void *)(intptr_t)0, NULL),
               0);
  ck_assert_rc(concur_thread_join(t, CONCUR_FOREVER, NULL), 0);
  ck_assert_int_eq(atomic_load(&rec.calls), 2);
  concur_thread_free(t);
  concur_thread_set_excepthook(NULL, NULL);
}
END_TEST

START_TEST(THR_10_hook_runs_before_joiners_are_released) {
  harness_gate block = {0};
  hook_record rec = {0};
  rec.block = &block;
  concur_thread_set_excepthook(record_hook, &rec);
  concur_thread *t;
  ck_assert_rc(concur_thread_run(&t, return_code, (void *)(intptr_t)3, NULL),
               0);
  ck_assert_rc(concur__test_await_parked(&block, 1, HARNESS_LONG_NS), 0);
  /* The function has returned, but the hook runs: still alive, not done. */
  ck_assert(concur_thread_is_alive(t));
  ck_assert_int_eq(concur_thread_exit_code(t), 0);
  ck_assert_rc(concur_thread_join(t, 20000000, NULL), CONCUR_ETIMEDOUT);
  harness_gate_open(&block);
  ck_assert_rc(concur_thread_join(t, CONCUR_FOREVER, NULL), CONCUR_ETASK);
  ck_assert_int_eq(atomic_load(&rec.calls), 1);
  ck_assert_int_eq(concur_thread_exit_code(t), 3);
  concur_thread_free(t);
  concur_thread_set_excepthook(NULL, NULL);
}
END_TEST

static int wait_then_fail(void *arg, void **result) {
  (void)result;
  harness_gate_wait(arg);
  return 9;
}

START_TEST(THR_10_hook_gets_a_valid_handle_after_free) {
  harness_gate g = {0};
  hook_record rec = {0};
  concur_thread_set_excepthook(record_hook, &rec);
  int threads = harness_thread_count();
  size_t active = concur_thread_active_count();
  concur_thread_options opts = CONCUR_THREAD_OPTIONS_INIT;
  opts.name = "detached-failure";
  concur_thread *t;
  ck_assert_rc(concur_thread_run(&t, wait_then_fail, &g, &opts), 0);
  ck_assert_rc(concur__test_await_parked(&g, 1, HARNESS_LONG_NS), 0);
  concur_thread_free(t); /* the function fails after this */
  harness_gate_open(&g);
  ck_assert(harness_await_thread_count(threads));
  ck_assert_int_eq(concur_thread_active_count(), active);
  ck_assert_int_eq(atomic_load(&rec.calls), 1);
  ck_assert_int_eq(rec.code, 9);
  ck_assert_str_eq(rec.name, "detached-failure");
  concur_thread_set_excepthook(NULL, NULL);
}
END_TEST

/* Runs a failing thread with stderr redirected to a pipe; returns what the
 * default hook wrote (NUL-terminated) in buf. */
static void capture_default_hook(char *buf, size_t len, char *name,
                                 size_t name_len, uint64_t *ident) {
  int fds[2];
  ck_assert_int_eq(pipe(fds), 0);
  fflush(stderr);
  int saved = dup(STDERR_FILENO);
  ck_assert_int_ge(saved, 0);
  ck_assert_int_ge(dup2(fds[1], STDERR_FILENO), 0);
  close(fds[1]);
  concur_thread *t;
  int rc = concur_thread_run(&t, return_code, (void *)(intptr_t)-77, NULL);
  int jrc = rc == 0 ? concur_thread_join(t, CONCUR_FOREVER, NULL) : rc;
  fflush(stderr);
  dup2(saved, STDERR_FILENO);
  close(saved);
  ssize_t n = read(fds[0], buf, len - 1);
  close(fds[0]);
  ck_assert_rc(rc, 0);
  ck_assert_rc(jrc, CONCUR_ETASK);
  buf[n > 0 ? n : 0] = '\0';
  (void)concur_thread_get_name(t, name, name_len);
  *ident = concur_thread_ident(t);
  concur_thread_free(t);
}

START_TEST(THR_10_default_hook_prints_one_line_and_null_restores_it) {
  _Atomic int quiet = 0;
  concur_thread_set_excepthook(quiet_hook, &quiet);
  concur_thread_set_excepthook(NULL, NULL); /* back to the default */
  char out[512];
  char name[CONCUR_THREAD_NAME_MAX + 1];
  uint64_t ident;
  capture_default_hook(out, sizeof out, name, sizeof name, &ident);
  ck_assert_int_eq(atomic_load(&quiet), 0);
  ck_assert_msg(strstr(out, name) != NULL, "no thread name in: %s", out);
  ck_assert_msg(strstr(out, "-77") != NULL, "no code in: %s", out);
  char id[32];
  snprintf(id, sizeof id, "ident %llu", (unsigned long long)ident);
  ck_assert_msg(strstr(out, id) != NULL, "no ident in: %s", out);
  /* Exactly one line. */
  size_t n = strlen(out);
  ck_assert_uint_gt(n, 0);
  ck_assert_int_eq(out[n - 1], '\n');
  ck_assert_ptr_eq(strchr(out, '\n'), out + n - 1);

  /* The default hook may be called directly (for chaining). */
  concur_thread_set_excepthook(quiet_hook, &quiet);
  concur_thread *t;
  ck_assert_rc(concur_thread_run(&t, return_code, (void *)(intptr_t)1, NULL),
               0);
  ck_assert_rc(concur_thread_join(t, CONCUR_FOREVER, NULL), CONCUR_ETASK);
  ck_assert_int_eq(atomic_load(&quiet), 1);
  concur_thread_free(t);
  concur_thread_set_excepthook(NULL, NULL);
}
END_TEST

/* ---- THR-11 ------------------------------------------------------------- */

typedef struct name_probe {
  harness_gate renamed;
  char os_before[16];
  char os_after[16];
  char current_before[CONCUR_THREAD_NAME_MAX + 1];
  char current_after[CONCUR_THREAD_NAME_MAX + 1];
  int current_len;
} name_probe;

static int probe_names(void *arg, void **result) {
  (void)result;
  name_probe *p = arg;
  concur__thread_get_os_name(pthread_self(), p->os_before, sizeof p->os_before);
  p->current_len =
      concur_thread_current_name(p->current_before, sizeof p->current_before);
  harness_gate_wait(&p->renamed);
  concur__thread_get_os_name(pthread_self(), p->os_after, sizeof p->os_after);
  (void)concur_thread_current_name(p->current_after, sizeof p->current_after);
  return 0;
}

START_TEST(THR_11_os_name_applied_at_start_truncated_and_changed_live) {
  name_probe p = {0};
  concur_thread_options opts = CONCUR_THREAD_OPTIONS_INIT;
  opts.name = "a-rather-long-thread-name";
  concur_thread *t;
  ck_assert_rc(concur_thread_run(&t, probe_names, &p, &opts), 0);
  ck_assert_rc(concur__test_await_parked(&p.renamed, 1, HARNESS_LONG_NS), 0);
  ck_assert_rc(concur_thread_set_name(t, "renamed-while-running"), 0);
  harness_gate_open(&p.renamed);
  ck_assert_rc(concur_thread_join(t, CONCUR_FOREVER, NULL), 0);
  ck_assert_str_eq(p.os_before, "a-rather-long-t"); /* 15 bytes */
  ck_assert_str_eq(p.current_before, "a-rather-long-thread-name");
  ck_assert_int_eq(p.current_len, (int)strlen("a-rather-long-thread-name"));
  ck_assert_str_eq(p.os_after, "renamed-while-r");
  ck_assert_str_eq(p.current_after, "renamed-while-running");
  /* Renaming a finished thread changes only the handle's name. */
  ck_assert_rc(concur_thread_set_name(t, "after"), 0);
  char buf[16];
  ck_assert_int_eq(concur_thread_get_name(t, buf, sizeof buf), 5);
  ck_assert_str_eq(buf, "after");
  concur_thread_free(t);
}
END_TEST

START_TEST(THR_11_name_set_before_start_reaches_the_os) {
  name_probe p = {0};
  harness_gate_open(&p.renamed);
  concur_thread *t;
  ck_assert_rc(concur_thread_new(&t, probe_names, &p, NULL), 0);
  ck_assert_rc(concur_thread_set_name(t, "early"), 0);
  ck_assert_rc(concur_thread_start(t), 0);
  ck_assert_rc(concur_thread_join(t, CONCUR_FOREVER, NULL), 0);
  ck_assert_str_eq(p.os_before, "early");
  ck_assert_str_eq(p.current_before, "early");
  concur_thread_free(t);
}
END_TEST

START_TEST(THR_11_default_names_are_unique_thread_n) {
  enum { N = 8 };
  concur_thread *t[N];
  char names[N][CONCUR_THREAD_NAME_MAX + 1];
  long last = 0;
  for (int i = 0; i < N; i++) {
    ck_assert_rc(concur_thread_new(&t[i], return_arg, NULL, NULL), 0);
    ck_assert_int_gt(concur_thread_get_name(t[i], names[i], sizeof names[i]),
                     0);
    ck_assert_int_eq(strncmp(names[i], "Thread-", 7), 0);
    char *end;
    long n = strtol(names[i] + 7, &end, 10);
    ck_assert_int_eq(*end, '\0');
    ck_assert_int_gt(n, last); /* increasing, so unique */
    last = n;
  }
  for (int i = 0; i < N; i++) {
    concur_thread_free(t[i]);
  }
}
END_TEST

START_TEST(THR_11_names_truncate_and_get_name_reports_full_length) {
  char longname[100];
  memset(longname, 'x', sizeof longname - 1);
  longname[sizeof longname - 1] = '\0';
  concur_thread_options opts = CONCUR_THREAD_OPTIONS_INIT;
  opts.name = longname;
  concur_thread *t;
  ck_assert_rc(concur_thread_new(&t, return_arg, NULL, &opts), 0);
  char buf[128];
  ck_assert_int_eq(concur_thread_get_name(t, buf, sizeof buf),
                   CONCUR_THREAD_NAME_MAX);
  ck_assert_uint_eq(strlen(buf), CONCUR_THREAD_NAME_MAX);
  char small[4];
  ck_assert_int_eq(concur_thread_get_name(t, small, sizeof small),
                   CONCUR_THREAD_NAME_MAX);
  ck_assert_str_eq(small, "xxx");
  ck_assert_rc(concur_thread_set_name(t, ""), 0);
  ck_assert_int_eq(concur_thread_get_name(t, buf, sizeof buf), 0);
  ck_assert_str_eq(buf, "");
  ck_assert_rc(concur_thread_set_name(NULL, "x"), CONCUR_EINVAL);
  ck_assert_rc(concur_thread_set_name(t, NULL), CONCUR_EINVAL);
  ck_assert_rc(concur_thread_get_name(NULL, buf, sizeof buf), CONCUR_EINVAL);
  ck_assert_rc(concur_thread_get_name(t, NULL, sizeof buf), CONCUR_EINVAL);
  ck_assert_rc(concur_thread_get_name(t, buf, 0), CONCUR_EINVAL);
  concur_thread_free(t);
}
END_TEST

typedef struct foreign_probe {
  char name[CONCUR_THREAD_NAME_MAX + 1];
  concur_thread *current;
  uint64_t ident;
  uint64_t ident_again;
  uint64_t native;
  uint64_t expected_native;
} foreign_probe;

static void *foreign_thread(void *arg) {
  foreign_probe *p = arg;
  pthread_setname_np(pthread_self(), "foreign-one");
  (void)concur_thread_current_name(p->name, sizeof p->name);
  p->current = concur_thread_current();
  p->ident = concur_thread_get_ident();
  p->ident_again = concur_thread_get_ident();
  p->native = concur_thread_get_native_id();
  p->expected_native = (uint64_t)gettid();
  return NULL;
}

START_TEST(THR_11_current_name_main_concur_and_foreign_threads) {
  char buf[CONCUR_THREAD_NAME_MAX + 1];
  /* Check runs each case in a forked child: its only thread is its initial
   * thread, so it is the process's main thread. */
  ck_assert_int_eq(concur_thread_current_name(buf, sizeof buf), 10);
  ck_assert_str_eq(buf, "MainThread");
  char tiny[5];
  ck_assert_int_eq(concur_thread_current_name(tiny, sizeof tiny), 10);
  ck_assert_str_eq(tiny, "Main");
  ck_assert_rc(concur_thread_current_name(NULL, 4), CONCUR_EINVAL);
  ck_assert_rc(concur_thread_current_name(buf, 0), CONCUR_EINVAL);
  ck_assert_ptr_null(concur_thread_current());

  foreign_probe p = {0};
  pthread_t th;
  ck_assert_int_eq(pthread_create(&th, NULL, foreign_thread, &p), 0);
  ck_assert_int_eq(pthread_join(th, NULL), 0);
  ck_assert_str_eq(p.name, "foreign-one");
  ck_assert_ptr_null(p.current);
  ck_assert_uint_ne(p.ident, 0);
  ck_assert_uint_eq(p.ident, p.ident_again);
  ck_assert_uint_ne(p.ident, concur_thread_get_ident());
  ck_assert_uint_eq(p.native, p.expected_native);
}
END_TEST

/* ---- THR-12 ------------------------------------------------------------- */

/* Atomic fields: the main thread reads them while the threads live. */
typedef struct id_probe {
  harness_gate *release;
  harness_gate ready;
  _Atomic uint64_t ident;
  _Atomic uint64_t native;
  _Atomic(concur_thread *) current;
} id_probe;

static int probe_ids(void *arg, void **result) {
  (void)result;
  id_probe *p = arg;
  p->ident = concur_thread_get_ident();
  p->native = concur_thread_get_native_id();
  p->current = concur_thread_current();
  harness_gate_open(&p->ready);
  harness_gate_wait(p->release);
  return 0;
}

START_TEST(THR_12_idents_and_native_ids_unique_among_10_live_threads) {
  enum { N = 10 };
  harness_gate release = {0};
  id_probe p[N];
  concur_thread *t[N];
  for (int i = 0; i < N; i++) {
    p[i].release = &release;
    atomic_init(&p[i].ident, 0);
    atomic_init(&p[i].native, 0);
    atomic_init(&p[i].current, NULL);
    atomic_init(&p[i].ready.open, 0);
    ck_assert_rc(concur_thread_new(&t[i], probe_ids, &p[i], NULL), 0);
    ck_assert_uint_eq(concur_thread_ident(t[i]), 0);
    ck_assert_uint_eq(concur_thread_native_id(t[i]), 0);
    ck_assert_rc(concur_thread_start(t[i]), 0);
    ck_assert_uint_ne(concur_thread_ident(t[i]), 0);
    ck_assert_uint_ne(concur_thread_native_id(t[i]), 0);
  }
  for (int i = 0; i < N; i++) {
    harness_gate_wait(&p[i].ready);
  }
  uint64_t main_ident = concur_thread_get_ident();
  ck_assert_uint_ne(main_ident, 0);
  for (int i = 0; i < N; i++) {
    ck_assert_uint_eq(p[i].ident, concur_thread_ident(t[i]));
    ck_assert_uint_eq(p[i].native, concur_thread_native_id(t[i]));
    ck_assert_ptr_eq(p[i].current, t[i]);
    ck_assert_uint_ne(p[i].ident, main_ident);
    ck_assert_uint_ne(p[i].native, (uint64_t)getpid());
    for (int j = 0; j < i; j++) {
      ck_assert_uint_ne(p[i].ident, p[j].ident);
      ck_assert_uint_ne(p[i].native, p[j].native);
    }
  }
  harness_gate_open(&release);
  for (int i = 0; i < N; i++) {
    ck_assert_rc(concur_thread_join(t[i], CONCUR_FOREVER, NULL), 0);
    /* Identity survives the end of the thread. */
    ck_assert_uint_eq(concur_thread_ident(t[i]), p[i].ident);
    ck_assert_uint_eq(concur_thread_native_id(t[i]), p[i].native);
    concur_thread_free(t[i]);
  }
  ck_assert_uint_eq(concur_thread_get_ident(), main_ident);
  ck_assert_uint_eq(concur_thread_get_native_id(), (uint64_t)getpid());
}
END_TEST

/* THR-12's BoundedSemaphore(3) workload, with default, 256 KiB and 1 MiB
 * stacks. */
typedef struct sem_work {
  concur_semaphore *sem;
  _Atomic int running;
  _Atomic int max_running;
  _Atomic int done;
  int acquire_rc[10];
  int release_rc[10];
} sem_work;

typedef struct sem_arg {
  sem_work *w;
  int index;
} sem_arg;

static int under_semaphore(void *arg, void **result) {
  (void)result;
  sem_arg *a = arg;
  sem_work *w = a->w;
  a->w->acquire_rc[a->index] = concur_semaphore_acquire(w->sem, CONCUR_FOREVER);
  if (w->acquire_rc[a->index] != 0) {
    return 1;
  }
  int now = atomic_fetch_add(&w->running, 1) + 1;
  int seen = atomic_load(&w->max_running);
  while (now > seen &&
         !atomic_compare_exchange_weak(&w->max_running, &seen, now)) {
  }
  /* A little work, so that the threads overlap. */
  struct timespec ts = {0, 2000000};
  nanosleep(&ts, NULL);
  atomic_fetch_sub(&w->running, 1);
  w->release_rc[a->index] = concur_semaphore_release(w->sem, 1);
  atomic_fetch_add(&w->done, 1);
  return 0;
}

static void run_semaphore_workload(size_t stack_size) {
  enum { N = 10 };
  sem_work w = {0};
  ck_assert_rc(concur_semaphore_new_bounded(&w.sem, 3), 0);
  sem_arg args[N];
  concur_thread *t[N];
  concur_thread_options opts = CONCUR_THREAD_OPTIONS_INIT;
  opts.stack_size = stack_size;
  for (int i = 0; i < N; i++) {
    args[i] = (sem_arg){&w, i};
    ck_assert_rc(concur_thread_run(&t[i], under_semaphore, &args[i], &opts), 0);
  }
  for (int i = 0; i < N; i++) {
    ck_assert_rc(concur_thread_join(t[i], CONCUR_FOREVER, NULL), 0);
    concur_thread_free(t[i]);
    ck_assert_rc(w.acquire_rc[i], 0);
    ck_assert_rc(w.release_rc[i], 0);
  }
  ck_assert_int_eq(atomic_load(&w.done), N);
  ck_assert_int_le(atomic_load(&w.max_running), 3);
  ck_assert_int_ge(atomic_load(&w.max_running), 1);
  ck_assert_int_eq(concur_semaphore_value(w.sem), 3);
  concur_semaphore_free(w.sem);
}

START_TEST(THR_12_ten_threads_under_bounded_semaphore_3_default_stack) {
  run_semaphore_workload(0);
}
END_TEST

START_TEST(THR_12_ten_threads_under_bounded_semaphore_3_256k_stack) {
  run_semaphore_workload(256 * 1024);
}
END_TEST

START_TEST(THR_12_ten_threads_under_bounded_semaphore_3_1m_stack) {
  run_semaphore_workload(1024 * 1024);
}
END_TEST

/* ---- errors and the rest of the API ------------------------------------- */

START_TEST(thread_new_rejects_bad_arguments) {
  concur_thread *t = (concur_thread *)&t;
  ck_assert_rc(concur_thread_new(NULL, return_arg, NULL, NULL), CONCUR_EINVAL);
  ck_assert_rc(concur_thread_new(&t, NULL, NULL, NULL), CONCUR_EINVAL);
  concur_thread_options opts = CONCUR_THREAD_OPTIONS_INIT;
  opts.size = sizeof opts - 1;
  ck_assert_rc(concur_thread_new(&t, return_arg, NULL, &opts), CONCUR_EINVAL);
  opts.size = 0;
  ck_assert_rc(concur_thread_new(&t, return_arg, NULL, &opts), CONCUR_EINVAL);
  ck_assert_ptr_eq(t, (concur_thread *)&t); /* untouched */
  ck_assert_rc(concur_thread_run(NULL, return_arg, NULL, NULL), CONCUR_EINVAL);
  ck_assert_rc(concur_thread_run(&t, NULL, NULL, NULL), CONCUR_EINVAL);
  ck_assert_rc(concur_thread_run(&t, return_arg, NULL, &opts), CONCUR_EINVAL);
  ck_assert_ptr_eq(t, (concur_thread *)&t);
  ck_assert_rc(concur_thread_start(NULL), CONCUR_EINVAL);
  concur_thread_free(NULL);
}
END_TEST

START_TEST(thread_start_with_a_refused_stack_size_is_einval) {
  size_t active = concur_thread_active_count();
  concur_thread_options opts = CONCUR_THREAD_OPTIONS_INIT;
  opts.stack_size = 1; /* below PTHREAD_STACK_MIN */
  concur_thread *t;
  ck_assert_rc(concur_thread_new(&t, return_arg, NULL, &opts), 0);
  ck_assert_rc(concur_thread_start(t), CONCUR_EINVAL);
  ck_assert(!concur_thread_is_alive(t));
  ck_assert_uint_eq(concur_thread_ident(t), 0);
  ck_assert_rc(concur_thread_join(t, CONCUR_NOWAIT, NULL), CONCUR_ESTATE);
  ck_assert_int_eq(concur_thread_active_count(), active);
  concur_thread_free(t);
  ck_assert_rc(concur_thread_run(&t, return_arg, NULL, &opts), CONCUR_EINVAL);
}
END_TEST

START_TEST(thread_join_rejects_null_and_negative_timeouts) {
  ck_assert_rc(concur_thread_join(NULL, CONCUR_FOREVER, NULL), CONCUR_EINVAL);
  harness_gate g = {0};
  concur_thread *t;
  ck_assert_rc(concur_thread_run(&t, wait_gate, &g, NULL), 0);
  ck_assert_rc(concur_thread_join(t, -1, NULL), CONCUR_EINVAL);
  ck_assert_rc(concur_thread_join(t, INT64_MIN, NULL), CONCUR_EINVAL);
  ck_assert_rc(concur_thread_join(t, CONCUR_DEFAULT, NULL), CONCUR_EINVAL);
  harness_gate_open(&g);
  ck_assert_rc(concur_thread_join(t, CONCUR_FOREVER, NULL), 0);
  ck_assert_rc(concur_thread_join(t, -1, NULL), CONCUR_EINVAL);
  concur_thread_free(t);
}
END_TEST

START_TEST(thread_accessors_of_null_and_unstarted_handles) {
  ck_assert_int_eq(concur_thread_exit_code(NULL), 0);
  ck_assert(!concur_thread_is_alive(NULL));
  ck_assert_uint_eq(concur_thread_ident(NULL), 0);
  ck_assert_uint_eq(concur_thread_native_id(NULL), 0);
  concur_thread *t;
  ck_assert_rc(concur_thread_new(&t, return_code, (void *)(intptr_t)4, NULL),
               0);
  ck_assert_int_eq(concur_thread_exit_code(t), 0);
  ck_assert(!concur_thread_is_alive(t));
  ck_assert_uint_eq(concur_thread_ident(t), 0);
  ck_assert_uint_eq(concur_thread_native_id(t), 0);
  concur_thread_free(t);
}
END_TEST

static int check_not_done(void *arg, void **result) {
  harness_gate_wait(arg);
  *result = arg;
  return 11;
}

START_TEST(thread_exit_code_is_zero_until_the_thread_finished) {
  _Atomic int quiet = 0;
  concur_thread_set_excepthook(quiet_hook, &quiet);
  harness_gate g = {0};
  concur_thread *t;
  ck_assert_rc(concur_thread_run(&t, check_not_done, &g, NULL), 0);
  ck_assert_int_eq(concur_thread_exit_code(t), 0);
  harness_gate_open(&g);
  void *res = (void *)&res;
  ck_assert_rc(concur_thread_join(t, CONCUR_FOREVER, &res), CONCUR_ETASK);
  ck_assert_ptr_eq(res, (void *)&res); /* no result from a failed thread */
  ck_assert_int_eq(concur_thread_exit_code(t), 11);
  ck_assert_rc(concur_thread_join(t, CONCUR_NOWAIT, NULL), CONCUR_ETASK);
  ck_assert_int_eq(atomic_load(&quiet), 1);
  concur_thread_free(t);
  concur_thread_set_excepthook(NULL, NULL);
}
END_TEST

typedef struct mask_probe {
  int usr1_blocked;
  int usr2_blocked;
} mask_probe;

static int probe_mask(void *arg, void **result) {
  (void)result;
  mask_probe *p = arg;
  sigset_t cur;
  pthread_sigmask(SIG_BLOCK, NULL, &cur);
  p->usr1_blocked = sigismember(&cur, SIGUSR1);
  p->usr2_blocked = sigismember(&cur, SIGUSR2);
  return 0;
}

START_TEST(thread_inherits_the_starters_signal_mask) {
  sigset_t block, old;
  sigemptyset(&block);
  sigaddset(&block, SIGUSR1);
  ck_assert_int_eq(pthread_sigmask(SIG_BLOCK, &block, &old), 0);
  mask_probe p = {-1, -1};
  concur_thread *t;
  int rc = concur_thread_run(&t, probe_mask, &p, NULL);
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  ck_assert_rc(rc, 0);
  ck_assert_rc(concur_thread_join(t, CONCUR_FOREVER, NULL), 0);
  concur_thread_free(t);
  ck_assert_int_eq(p.usr1_blocked, 1);
  ck_assert_int_eq(p.usr2_blocked, 0);
}
END_TEST

typedef struct counter_probe {
  harness_gate *release;
  size_t active_inside;
} counter_probe;

static int probe_count(void *arg, void **result) {
  (void)result;
  counter_probe *p = arg;
  p->active_inside = concur_thread_active_count();
  harness_gate_wait(p->release);
  return 0;
}

START_TEST(thread_active_count_counts_live_concur_threads) {
  size_t base = concur_thread_active_count();
  harness_gate release = {0};
  counter_probe p[3];
  concur_thread *t[3];
  for (int i = 0; i < 3; i++) {
    p[i] = (counter_probe){&release, 0};
    ck_assert_rc(concur_thread_run(&t[i], probe_count, &p[i], NULL), 0);
    ck_assert_int_eq(concur_thread_active_count(), base + (size_t)i + 1);
  }
  ck_assert_rc(concur__test_await_parked(&release, 3, HARNESS_LONG_NS), 0);
  harness_gate_open(&release);
  for (int i = 0; i < 3; i++) {
    ck_assert_rc(concur_thread_join(t[i], CONCUR_FOREVER, NULL), 0);
    ck_assert_int_ge(p[i].active_inside, base + (size_t)i + 1);
    concur_thread_free(t[i]);
  }
  ck_assert_int_eq(concur_thread_active_count(), base);
}
END_TEST

typedef struct handoff {
  int x;
  int seen_by_thread;
  int written_by_thread;
} handoff;

static int read_and_write(void *arg, void **result) {
  handoff *h = arg;
  h->seen_by_thread = h->x;    /* start -> fn */
  h->written_by_thread = 1234; /* fn -> join */
  *result = &h->written_by_thread;
  return 0;
}

START_TEST(thread_start_and_join_order_memory_both_ways) {
  for (int i = 0; i < 50; i++) {
    handoff h = {0};
    h.x = i + 1;
    concur_thread *t;
    ck_assert_rc(concur_thread_run(&t, read_and_write, &h, NULL), 0);
    void *res;
    ck_assert_rc(concur_thread_join(t, CONCUR_FOREVER, &res), 0);
    ck_assert_int_eq(h.seen_by_thread, i + 1);
    ck_assert_int_eq(h.written_by_thread, 1234);
    ck_assert_ptr_eq(res, &h.written_by_thread);
    concur_thread_free(t);
  }
}
END_TEST

Suite *concur_test_suite(void) {
  Suite *s = suite_create("thread");
  TCase *tc = harness_tcase("thread", 30);
  tcase_add_test(tc, THR_01_start_runs_target_once_second_start_is_estate);
  tcase_add_test(tc, THR_01_run_starts_and_returns_the_result);
  tcase_add_test(tc, THR_02_join_of_never_started_thread_is_estate);
  tcase_add_test(tc, THR_02_join_of_current_thread_is_edeadlk);
  tcase_add_test(tc, THR_03_join_timeout_on_blocked_thread_then_join_succeeds);
  tcase_add_test(tc, THR_04_twenty_threads_join_the_same_thread);
  tcase_add_test(tc, THR_04_joiners_of_a_failed_thread_all_see_etask);
  tcase_add_test(tc, THR_05_daemon_default_param_and_change_after_start);
  tcase_add_test(tc, THR_07_creation_failure_is_eagain_and_leaves_nothing);
  tcase_add_test(tc, THR_08_after_join_not_alive_and_not_counted_100_loops);
  tcase_add_test(tc, THR_09_freed_running_threads_leak_nothing);
  tcase_add_test(tc, THR_09_finished_thread_never_joined_leaks_nothing);
  tcase_add_test(tc, THR_10_failure_goes_to_the_hook_with_the_thread_identity);
  tcase_add_test(tc, THR_10_hook_runs_before_joiners_are_released);
  tcase_add_test(tc, THR_10_hook_gets_a_valid_handle_after_free);
  tcase_add_test(tc, THR_10_default_hook_prints_one_line_and_null_restores_it);
  tcase_add_test(tc,
                 THR_11_os_name_applied_at_start_truncated_and_changed_live);
  tcase_add_test(tc, THR_11_name_set_before_start_reaches_the_os);
  tcase_add_test(tc, THR_11_default_names_are_unique_thread_n);
  tcase_add_test(tc, THR_11_names_truncate_and_get_name_reports_full_length);
  tcase_add_test(tc, THR_11_current_name_main_concur_and_foreign_threads);
  tcase_add_test(tc, THR_12_idents_and_native_ids_unique_among_10_live_threads);
  tcase_add_test(tc,
                 THR_12_ten_threads_under_bounded_semaphore_3_default_stack);
  tcase_add_test(tc, THR_12_ten_threads_under_bounded_semaphore_3_256k_stack);
  tcase_add_test(tc, THR_12_ten_threads_under_bounded_semaphore_3_1m_stack);
  tcase_add_test(tc, thread_new_rejects_bad_arguments);
  tcase_add_test(tc, thread_start_with_a_refused_stack_size_is_einval);
  tcase_add_test(tc, thread_join_rejects_null_and_negative_timeouts);
  tcase_add_test(tc, thread_accessors_of_null_and_unstarted_handles);
  tcase_add_test(tc, thread_exit_code_is_zero_until_the_thread_finished);
  tcase_add_test(tc, thread_inherits_the_starters_signal_mask);
  tcase_add_test(tc, thread_active_count_counts_live_concur_threads);
  tcase_add_test(tc, thread_start_and_join_order_memory_both_ways);
  suite_add_tcase(s, tc);
  return s;
}
