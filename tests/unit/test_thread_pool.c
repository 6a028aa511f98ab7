/*
 * The thread pool through the executor interface: construction, submit,
 * futures, help, shutdown in every form, termination, hooks, initializer,
 * counters, and the EXE scenarios of reliability.md that are about the pool.
 * Admission and rejection (TPE) are in test_thread_pool_admission.c, fork
 * and process exit in test_thread_pool_fork.c.
 */
#include "test_thread_pool_util.h"

#include <pthread.h>
#include <signal.h>
#include <string.h>

/* ---- construction -----------------------------------------------------------
 */

START_TEST(TPE_01_constructor_validation) {
  concur_executor *ex = (concur_executor *)(uintptr_t)1;
  ck_assert_rc(concur_thread_pool_new(NULL, NULL), CONCUR_EINVAL);
  concur_thread_pool_options o = CONCUR_THREAD_POOL_OPTIONS_INIT;
  o.size = sizeof o - 1;
  ck_assert_rc(concur_thread_pool_new(&ex, &o), CONCUR_EINVAL);
  ck_assert_ptr_null(ex);
  struct {
    int core, max;
    int64_t idle, cap, block;
    int policy;
  } bad[] = {
      {-3, 4, CONCUR_DEFAULT, CONCUR_UNBOUNDED, CONCUR_FOREVER, 0},
      {2, 0, CONCUR_DEFAULT, CONCUR_UNBOUNDED, CONCUR_FOREVER, 0},
      {CONCUR_DEFAULT, -5, CONCUR_DEFAULT, CONCUR_UNBOUNDED, CONCUR_FOREVER, 0},
      {5, 4, CONCUR_DEFAULT, CONCUR_UNBOUNDED, CONCUR_FOREVER, 0},
      {1, CONCUR_THREAD_POOL_WORKERS_MAX + 1, CONCUR_DEFAULT, CONCUR_UNBOUNDED,
       CONCUR_FOREVER, 0},
      {1, 2, -2, CONCUR_UNBOUNDED, CONCUR_FOREVER, 0},
      {1, 2, CONCUR_DEFAULT, -1, CONCUR_FOREVER, 0},
      {1, 2, CONCUR_DEFAULT, -3, CONCUR_FOREVER, 0},
      {1, 2, CONCUR_DEFAULT, 4, -1, 0},
      {1, 2, CONCUR_DEFAULT, 4, CONCUR_FOREVER, 5},
      {1, 2, CONCUR_DEFAULT, 4, CONCUR_FOREVER, -1},
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    o = (concur_thread_pool_options)CONCUR_THREAD_POOL_OPTIONS_INIT;
    o.core_workers = bad[i].core;
    o.max_workers = bad[i].max;
    o.idle_timeout_ns = bad[i].idle;
    o.queue_capacity = bad[i].cap;
    o.block_timeout_ns = bad[i].block;
    o.rejection = (concur_rejection_policy)bad[i].policy;
    ex = (concur_executor *)(uintptr_t)1;
    ck_assert_msg(concur_thread_pool_new(&ex, &o) == CONCUR_EINVAL,
                  "case %zu accepted", i);
    ck_assert_ptr_null(ex);
  }
  /* The edges that are valid. */
  o = (concur_thread_pool_options)CONCUR_THREAD_POOL_OPTIONS_INIT;
  o.core_workers = 0;
  o.max_workers = 1;
  o.idle_timeout_ns = 0;
  o.queue_capacity = 0;
  o.block_timeout_ns = CONCUR_NOWAIT;
  o.rejection = CONCUR_REJECT_BLOCK;
  ex = tp_new(&o);
  ck_assert_int_eq(concur_thread_pool_core_workers(ex), 0);
  ck_assert_int_eq(concur_thread_pool_max_workers(ex), 1);
  concur_executor_free(ex);
}
END_TEST

START_TEST(EXE_10_max_workers_invalid_and_default) {
  concur_thread_pool_options o = CONCUR_THREAD_POOL_OPTIONS_INIT;
  concur_executor *ex;
  o.max_workers = 0;
  ck_assert_rc(concur_thread_pool_new(&ex, &o), CONCUR_EINVAL);
  o.max_workers = -5; /* -1 is CONCUR_DEFAULT */
  ck_assert_rc(concur_thread_pool_new(&ex, &o), CONCUR_EINVAL);
  int want = concur__cpu_count() + 4;
  if (want > 32) {
    want = 32;
  }
  ex = tp_new(NULL);
  ck_assert_int_eq(concur_thread_pool_max_workers(ex), want);
  ck_assert_int_eq(concur_thread_pool_core_workers(ex), want);
  ck_assert_int_eq(concur_executor_parallelism(ex), want);
  ck_assert(concur_thread_pool_is(ex));
  /* A fresh pool starts no thread. */
  concur_executor_stats s = tp_stats(ex);
  ck_assert_uint_eq(s.workers, 0);
  concur_executor_free(ex);
  o = (concur_thread_pool_options)CONCUR_THREAD_POOL_OPTIONS_INIT;
  o.max_workers = 3;
  ex = tp_new(&o);
  ck_assert_int_eq(concur_thread_pool_core_workers(ex), 3);
  ck_assert_int_eq(concur_executor_parallelism(ex), 3);
  concur_executor_free(ex);
}
END_TEST

START_TEST(pool_calls_refuse_other_executors) {
  concur_executor *in;
  ck_assert_rc(concur_inline_executor_new(&in), 0);
  ck_assert(!concur_thread_pool_is(in));
  ck_assert(!concur_thread_pool_is(NULL));
  concur_executor *targets[] = {NULL, in};
  for (size_t i = 0; i < 2; i++) {
    concur_executor *t = targets[i];
    ck_assert_rc(concur_thread_pool_prestart_core_worker(t), CONCUR_EINVAL);
    ck_assert_rc(concur_thread_pool_prestart_all_core_workers(t),
                 CONCUR_EINVAL);
    ck_assert_rc(concur_thread_pool_set_core_workers(t, 1), CONCUR_EINVAL);
    ck_assert_rc(concur_thread_pool_set_max_workers(t, 1), CONCUR_EINVAL);
    ck_assert_rc(concur_thread_pool_core_workers(t), CONCUR_EINVAL);
    ck_assert_rc(concur_thread_pool_max_workers(t), CONCUR_EINVAL);
  }
  concur_executor_free(in);
}
END_TEST

/* ---- submit and futures
 * ------------------------------------------------------ */

START_TEST(submit_future_result_and_failure) {
  concur_executor *ex = tp_new(NULL);
  concur_future *f = NULL;
  ck_assert_rc(concur_executor_submit(ex, tp_task_echo, (void *)42, &f), 0);
  void *v = NULL;
  ck_assert_rc(concur_future_result(f, HARNESS_LONG_NS, &v), 0);
  ck_assert_ptr_eq(v, (void *)42);
  concur_future_unref(f);
  /* A failing task: its own code, any nonzero value. */
  int codes[] = {1, -1, CONCUR_ETIMEDOUT, 1000};
  for (size_t i = 0; i < 4; i++) {
    ck_assert_rc(concur_executor_submit(ex, tp_task_code,
                                        (void *)(intptr_t)codes[i], &f),
                 0);
    ck_assert_rc(concur_future_result(f, HARNESS_LONG_NS, &v), CONCUR_ETASK);
    int code = 0;
    ck_assert_rc(concur_future_exception(f, CONCUR_NOWAIT, &code, NULL), 0);
    ck_assert_int_eq(code, codes[i]);
    concur_future_unref(f);
  }
  /* A future is done before its worker books the task as completed (and
   * runs its after hook): wait for the workers before reading counters. */
  ck_assert_rc(concur_executor_shutdown(ex, CONCUR_SHUTDOWN_WAIT), 0);
  TP_ASSERT_STATS(ex, 5, 0, 0, 1, 4, 0);
  concur_executor_free(ex);
}
END_TEST

START_TEST(submit_argument_errors) {
  concur_executor *ex = tp_new(NULL);
  concur_future *f = (concur_future *)(uintptr_t)1;
  ck_assert_rc(concur_executor_submit(ex, NULL, NULL, &f), CONCUR_EINVAL);
  ck_assert_ptr_null(f);
  ck_assert_rc(concur_executor_submit(NULL, tp_task_echo, NULL, NULL),
               CONCUR_EINVAL);
  ck_assert_rc(concur_executor_submit_task(ex, NULL, NULL), CONCUR_EINVAL);
  ck_assert_rc(concur_executor_help(NULL), CONCUR_EINVAL);
  ck_assert_rc(concur_executor_shutdown(ex, 1u << 7), CONCUR_EINVAL);
  ck_assert_rc(concur_executor_await_termination(ex, -1), CONCUR_EINVAL);
  /* Argument errors are not counted as rejected submits. */
  ck_assert_uint_eq(tp_stats(ex).rejected, 0);
  concur_executor_free(ex);
}
END_TEST

typedef struct messenger {
  _Atomic int saw_current;
  _Atomic int saw_message;
} messenger;

static int task_with_message(void *arg, void **result) {
  (void)result;
  messenger *m = arg;
  atomic_store(&m->saw_current, concur_future_current() != NULL);
  atomic_store(&m->saw_message, concur_task_set_message("bad input") == 0);
  return 7;
}

START_TEST(future_task_sees_its_future_and_message) {
  concur_executor *ex = tp_new(NULL);
  messenger m = {0, 0};
  concur_future *f;
  ck_assert_rc(concur_executor_submit(ex, task_with_message, &m, &f), 0);
  int code = 0;
  const char *msg = NULL;
  ck_assert_rc(concur_future_exception(f, HARNESS_LONG_NS, &code, &msg), 0);
  ck_assert_int_eq(code, 7);
  ck_assert_str_eq(msg, "bad input");
  ck_assert_int_eq(atomic_load(&m.saw_current), 1);
  ck_assert_int_eq(atomic_load(&m.saw_message), 1);
  concur_future_unref(f);
  /* Fire-and-forget tasks run without a future (documented): a message is
   * accepted and dropped. */
  messenger m2 = {5, 5};
  ck_assert_rc(concur_executor_submit(ex, task_with_message, &m2, NULL), 0);
  ck_assert_rc(concur_executor_shutdown(ex, CONCUR_SHUTDOWN_WAIT), 0);
  ck_assert_int_eq(atomic_load(&m2.saw_current), 0);
  ck_assert_int_eq(atomic_load(&m2.saw_message), 1);
  concur_executor_free(ex);
}
END_TEST

/* FUT-10 style: what the submitter wrote is visible to the task, what the
 * task wrote is visible to the result reader, without other locks. */
typedef struct hb_data {
  long before[16];
  long after[16];
  long sum;
} hb_data;

static int hb_task(void *arg, void **result) {
  hb_data *d = arg;
  long s = 0;
  for (int i = 0; i < 16; i++) {
    s += d->before[i];
    d->after[i] = i * 3;
  }
  d->sum = s;
  *result = d;
  return 0;
}

START_TEST(happens_before_submit_to_task_to_result) {
  concur_executor *ex = tp_new(NULL);
  for (int round = 0; round < 200; round++) {
    hb_data *d = concur__calloc(1, sizeof *d);
    ck_assert_ptr_nonnull(d);
    for (int i = 0; i < 16; i++) {
      d->before[i] = round + i;
    }
    concur_future *f;
    ck_assert_rc(concur_executor_submit(ex, hb_task, d, &f), 0);
    ck_assert_rc(concur_future_result(f, HARNESS_LONG_NS, NULL), 0);
    ck_assert_int_eq(d->sum, 16 * round + 120);
    for (int i = 0; i < 16; i++) {
      ck_assert_int_eq(d->after[i], i * 3);
    }
    concur_future_unref(f);
    concur__free(d);
  }
  concur_executor_free(ex);
}
END_TEST

/* ---- EXE scenarios
 * ------------------------------------------------------------- */

START_TEST(EXE_01_submit_after_shutdown_is_rejected) {
  concur_rejection_policy policies[] = {
      CONCUR_REJECT_ABORT, CONCUR_REJECT_CALLER_RUNS, CONCUR_REJECT_DISCARD,
      CONCUR_REJECT_DISCARD_OLDEST, CONCUR_REJECT_BLOCK};
  for (size_t i = 0; i < 5; i++) {
    concur_thread_pool_options o = CONCUR_THREAD_POOL_OPTIONS_INIT;
    o.rejection = policies[i];
    o.max_workers = 1;
    o.queue_capacity = 1;
    concur_executor *ex = tp_new(&o);
    ck_assert_rc(concur_executor_shutdown(ex, 0), 0);
    ck_assert(concur_executor_is_shutdown(ex));
    concur_future *f = (concur_future *)(uintptr_t)1;
    ck_assert_rc(concur_executor_submit(ex, tp_task_echo, NULL, &f),
                 CONCUR_ESHUTDOWN);
    ck_assert_ptr_null(f);
    ck_assert_rc(concur_executor_submit(ex, tp_task_echo, NULL, NULL),
                 CONCUR_ESHUTDOWN);
    concur_executor_stats s = tp_stats(ex);
    ck_assert_uint_eq(s.rejected, 2);
    ck_assert_uint_eq(s.submitted, 0);
    concur_executor_free(ex);
  }
}
END_TEST

typedef struct slow_ctx {
  _Atomic long ran;
  int64_t sleep_ns;
} slow_ctx;

static int slow_task(void *arg, void **result) {
  (void)result;
  slow_ctx *c = arg;
  struct timespec ts = {0, (long)c->sleep_ns};
  nanosleep(&ts, NULL); /* the task's own work, not a test wait */
  atomic_fetch_add(&c->ran, 1);
  return 0;
}

START_TEST(EXE_02_shutdown_wait_runs_every_queued_task) {
  concur_thread_pool_options o = CONCUR_THREAD_POOL_OPTIONS_INIT;
  o.max_workers = 5;
  concur_executor *ex = tp_new(&o);
  slow_ctx c = {0, 2000000};
  for (int i = 0; i < 50; i++) {
    ck_assert_rc(concur_executor_submit(ex, slow_task, &c, NULL), 0);
  }
  ck_assert_rc(concur_executor_shutdown(ex, CONCUR_SHUTDOWN_WAIT), 0);
  ck_assert_int_eq(atomic_load(&c.ran), 50);
  ck_assert(concur_executor_is_terminated(ex));
  TP_ASSERT_STATS(ex, 50, 0, 0, 50, 0, 0);
  ck_assert_uint_eq(tp_stats(ex).workers, 0);
  concur_executor_free(ex);
}
END_TEST

START_TEST(EXE_03_shutdown_cancel_futures) {
  concur_thread_pool_options o = CONCUR_THREAD_POOL_OPTIONS_INIT;
  o.max_workers = 5;
  concur_executor *ex = tp_new(&o);
  tp_gate g;
  tp_gate_init(&g);
  concur_future *fs[50];
  for (int i = 0; i < 50; i++) {
    ck_assert_rc(concur_executor_submit(ex, tp_task_gate, &g, &fs[i]), 0);
  }
  TP_AWAIT_PARKED(&g, 5);
  ck_assert_rc(concur_executor_shutdown(ex, CONCUR_SHUTDOWN_CANCEL_FUTURES), 0);
  int cancelled = 0;
  for (int i = 0; i < 50; i++) {
    if (concur_future_cancelled(fs[i])) {
      cancelled++;
    }
  }
  ck_assert_int_eq(cancelled, 45);
  tp_gate_open(&g);
  ck_assert_rc(concur_executor_await_termination(ex, HARNESS_LONG_NS), 0);
  int finished = 0;
  for (int i = 0; i < 50; i++) {
    if (!concur_future_cancelled(fs[i])) {
      ck_assert_rc(concur_future_result(fs[i], CONCUR_NOWAIT, NULL), 0);
      finished++;
    }
    concur_future_unref(fs[i]);
  }
  ck_assert_int_eq(finished, 5);
  /* A future is done before its worker books the task as completed (and
   * runs its after hook): wait for the workers before reading counters. */
  ck_assert_rc(concur_executor_shutdown(ex, CONCUR_SHUTDOWN_WAIT), 0);
  TP_ASSERT_STATS(ex, 50, 0, 0, 5, 0, 45);
  concur_executor_free(ex);
}
END_TEST

START_TEST(EXE_04_shutdown_without_wait_returns_at_once) {
  concur_thread_pool_options o = CONCUR_THREAD_POOL_OPTIONS_INIT;
  o.max_workers = 2;
  concur_executor *ex = tp_new(&o);
  tp_gate g;
  tp_gate_init(&g);
  _Atomic long ran = 0;
  ck_assert_rc(concur_executor_submit(ex, tp_task_gate, &g, NULL), 0);
  ck_assert_rc(concur_executor_submit(ex, tp_task_gate, &g, NULL), 0);
  for (int i = 0; i < 10; i++) {
    ck_assert_rc(concur_executor_submit(ex, tp_task_count, &ran, NULL), 0);
  }
  TP_AWAIT_PARKED(&g, 2);
  /* Returns with every worker blocked: it does not wait. */
  ck_assert_rc(concur_executor_shutdown(ex, 0), 0);
  ck_assert(concur_executor_is_shutdown(ex));
  ck_assert(!concur_executor_is_terminated(ex));
  ck_assert_int_eq(atomic_load(&ran), 0);
  tp_gate_open(&g);
  /* The queued work still runs, and the workers are reaped. */
  ck_assert_rc(concur_executor_await_termination(ex, HARNESS_LONG_NS), 0);
  ck_assert_int_eq(atomic_load(&ran), 10);
  ck_assert_uint_eq(tp_stats(ex).workers, 0);
  concur_executor_free(ex);
}
END_TEST

START_TEST(EXE_05_submit_cancel_then_shutdown_wait) {
  concur_executor *ex = tp_new(NULL);
  for (int i = 0; i < 100; i++) {
    concur_future *f;
    ck_assert_rc(concur_executor_submit(ex, tp_task_echo, NULL, &f), 0);
    (void)concur_future_cancel(f);
    concur_future_unref(f);
  }
  ck_assert_rc(concur_executor_shutdown(ex, CONCUR_SHUTDOWN_WAIT), 0);
  concur_executor_stats s = tp_stats(ex);
  ck_assert_uint_eq(s.submitted, 100);
  ck_assert_uint_eq(s.completed + s.cancelled, 100);
  concur_executor_free(ex);
}
END_TEST

static void count_hook(void *arg) {
  atomic_fetch_add((_Atomic long *)arg, 1);
}

START_TEST(EXE_06_shutdown_idempotent_terminated_hook_once) {
  _Atomic long terminated = 0;
  concur_thread_pool_options o = CONCUR_THREAD_POOL_OPTIONS_INIT;
  o.max_workers = 2;
  o.terminated = count_hook;
  o.terminated_arg = &terminated;
  concur_executor *ex = tp_new(&o);
  _Atomic long ran = 0;
  for (int i = 0; i < 20; i++) {
    ck_assert_rc(concur_executor_submit(ex, tp_task_count, &ran, NULL), 0);
  }
  ck_assert_rc(concur_executor_shutdown(ex, 0), 0);
  ck_assert_rc(concur_executor_shutdown(ex, 0), 0);
  ck_assert_rc(concur_executor_shutdown(ex, CONCUR_SHUTDOWN_WAIT), 0);
  ck_assert_int_eq(atomic_load(&terminated), 1);
  ck_assert_int_ge(concur_executor_shutdown_now(ex, NULL, NULL), 0);
  ck_assert_rc(concur_executor_shutdown(ex, CONCUR_SHUTDOWN_WAIT |
                                                CONCUR_SHUTDOWN_CANCEL_FUTURES),
               0);
  ck_assert_rc(concur_executor_await_termination(ex, 0), 0);
  concur_executor_free(ex);
  ck_assert_int_eq(atomic_load(&terminated), 1);
  ck_assert_int_eq(atomic_load(&ran), 20);
  /* A pool that never started a worker terminates too, hook once. */
  terminated = 0;
  ex = tp_new(&o);
  ck_assert_rc(concur_executor_shutdown(ex, CONCUR_SHUTDOWN_WAIT), 0);
  concur_executor_free(ex);
  ck_assert_int_eq(atomic_load(&terminated), 1);
}
END_TEST

START_TEST(EXE_07_free_without_shutdown_runs_everything) {
  concur_thread_pool_options o = CONCUR_THREAD_POOL_OPTIONS_INIT;
  o.max_workers = 3;
  concur_executor *ex = tp_new(&o);
  slow_ctx c = {0, 200000};
  for (int i = 0; i < 30; i++) {
    ck_assert_rc(concur_executor_submit(ex, slow_task, &c, NULL), 0);
  }
  concur_executor_free(ex); /* shuts down, runs everything, joins */
  ck_assert_int_eq(atomic_load(&c.ran), 30);
}
END_TEST

typedef struct owned {
  _Atomic long *cleanups;
  long value;
} owned;

static int owned_task(void *arg, void **result) {
  owned *o = arg;
  long *r = concur__malloc(sizeof *r);
  if (r == NULL) {
    return 1;
  }
  *r = o->value * 2;
  *result = r;
  return 0;
}

static void owned_cleanup(void *arg, void *result) {
  owned *o = arg;
  atomic_fetch_add(o->cleanups, 1);
  concur__free(result);
  concur__free(o);
}

START_TEST(EXE_09_args_and_results_released_once) {
  concur_executor *ex = tp_new(NULL);
  _Atomic long cleanups = 0;
  concur_future *fs[20];
  for (int i = 0; i < 20; i++) {
    owned *o = concur__malloc(sizeof *o);
    ck_assert_ptr_nonnull(o);
    o->cleanups = &cleanups;
    o->value = i;
    concur_task t = CONCUR_TASK_INIT(owned_task, o);
    t.cleanup = owned_cleanup;
    ck_assert_rc(concur_executor_submit_task(ex, &t, i < 10 ? &fs[i] : NULL),
                 0);
  }
  for (int i = 0; i < 10; i++) {
    void *v;
    ck_assert_rc(concur_future_result(fs[i], HARNESS_LONG_NS, &v), 0);
    ck_assert_int_eq(*(long *)v, 2 * i); /* readable until the last unref */
  }
  ck_assert_rc(concur_executor_shutdown(ex, CONCUR_SHUTDOWN_WAIT), 0);
  /* Fire-and-forget ones are released after they ran; the others only
   * when their futures go. */
  ck_assert_int_eq(atomic_load(&cleanups), 10);
  for (int i = 0; i < 10; i++) {
    concur_future_unref(fs[i]);
  }
  ck_assert_int_eq(atomic_load(&cleanups), 20);
  concur_executor_free(ex);
}
END_TEST

typedef struct init_ctx {
  _Atomic long calls;
  _Atomic long fail_after; /* the call number that fails; 0: never */
} init_ctx;

/* Set by the initializer in the worker that ran it. */
static _Thread_local int tls_initialized;

static int initializer(void *arg) {
  init_ctx *c = arg;
  long n = atomic_fetch_add(&c->calls, 1) + 1;
  tls_initialized++;
  long f = atomic_load(&c->fail_after);
  return f != 0 && n >= f ? -5 : 0;
}

typedef struct init_check {
  init_ctx *init;
  _Atomic int ok;
} init_check;

static int check_initialized(void *arg, void **result) {
  (void)result;
  init_check *c = arg;
  /* Once, in this very worker, before this task. */
  if (tls_initialized != 1) {
    atomic_store(&c->ok, 0);
  }
  return 0;
}

START_TEST(EXE_11_initializer_runs_once_per_worker) {
  init_ctx ic;
  memset(&ic, 0, sizeof ic);
  concur_thread_pool_options o = CONCUR_THREAD_POOL_OPTIONS_INIT;
  o.max_workers = 3;
  o.initializer = initializer;
  o.initializer_arg = &ic;
  concur_executor *ex = tp_new(&o);
  init_check chk = {&ic, 1};
  for (int i = 0; i < 60; i++) {
    ck_assert_rc(concur_executor_submit(ex, check_initialized, &chk, NULL), 0);
  }
  ck_assert_rc(concur_executor_shutdown(ex, CONCUR_SHUTDOWN_WAIT), 0);
  ck_assert_int_eq(atomic_load(&chk.ok), 1);
  ck_assert_uint_eq((uint64_t)atomic_load(&ic.calls), tp_stats(ex).largest);
  ck_assert_int_le(atomic_load(&ic.calls), 3);
  concur_executor_free(ex);
}
END_TEST

START_TEST(EXE_11_failing_initializer_breaks_the_pool) {
  init_ctx ic;
  memset(&ic, 0, sizeof ic);
  atomic_store(&ic.fail_after, 2); /* the second worker's fails */
  concur_thread_pool_options o = CONCUR_THREAD_POOL_OPTIONS_INIT;
  o.max_workers = 2;
  o.initializer = initializer;
  o.initializer_arg = &ic;
  concur_executor *ex = tp_new(&o);
  tp_gate g;
  tp_gate_init(&g);
  concur_future *blocker;
  ck_assert_rc(concur_executor_submit(ex, tp_task_gate, &g, &blocker), 0);
  TP_AWAIT_PARKED(&g, 1);
  /* The second task starts the second worker, whose initializer fails:
   * that task and every queued one fail with CONCUR_EBROKEN. */
  concur_future *fs[10];
  for (int i = 0; i < 10; i++) {
    int rc = concur_executor_submit(ex, tp_task_echo, NULL, &fs[i]);
    if (rc != 0) {
      ck_assert_rc(rc, CONCUR_EBROKEN); /* the pool already broke */
      fs[i] = NULL;
    }
  }
  /* fs[0] is the failing worker's first task: it fails only after every
   * queued task has been failed, so waiting for it first means no queued
   * task is still pending (and none gets run by this thread's help). */
  ck_assert_ptr_nonnull(fs[0]);
  ck_assert_rc(concur_future_result(fs[0], HARNESS_LONG_NS, NULL),
               CONCUR_ETASK);
  for (int i = 0; i < 10; i++) {
    if (fs[i] == NULL) {
      continue;
    }
    ck_assert(concur_future_done(fs[i]));
    int code = 0;
    const char *msg = NULL;
    ck_assert_rc(concur_future_result(fs[i], HARNESS_LONG_NS, NULL),
                 CONCUR_ETASK);
    ck_assert_rc(concur_future_exception(fs[i], 0, &code, &msg), 0);
    ck_assert_int_eq(code, CONCUR_EBROKEN);
    ck_assert_ptr_nonnull(msg);
    concur_future_unref(fs[i]);
  }
  ck_assert_rc(concur_executor_submit(ex, tp_task_echo, NULL, NULL),
               CONCUR_EBROKEN);
  ck_assert(!concur_executor_is_shutdown(ex));
  ck_assert_rc(concur_thread_pool_prestart_core_worker(ex), CONCUR_EBROKEN);
  ck_assert_rc(concur_thread_pool_set_core_workers(ex, 1), CONCUR_EBROKEN);
  ck_assert_rc(concur_thread_pool_set_max_workers(ex, 3), CONCUR_EBROKEN);
  /* The running task finishes normally. */
  tp_gate_open(&g);
  ck_assert_rc(concur_future_result(blocker, HARNESS_LONG_NS, NULL), 0);
  concur_future_unref(blocker);
  ck_assert_rc(concur_executor_shutdown(ex, CONCUR_SHUTDOWN_WAIT), 0);
  concur_executor_stats s = tp_stats(ex);
  ck_assert_uint_eq(s.completed, 1);
  ck_assert_uint_eq(s.queued + s.running, 0);
  concur_executor_free(ex);
}
END_TEST

typedef struct hooks {
  _Atomic long before;
  _Atomic long after;
  _Atomic long after_codes; /* sum of the codes after() saw */
  _Atomic long terminated;
} hooks;

static void before_hook(void *arg, concur_task_fn fn, void *task_arg) {
  (void)fn;
  (void)task_arg;
  atomic_fetch_add(&((hooks *)arg)->before, 1);
}

static void after_hook(void *arg, concur_task_fn fn, void *task_arg, int code) {
  (void)fn;
  (void)task_arg;
  hooks *h = arg;
  atomic_fetch_add(&h->after, 1);
  atomic_fetch_add(&h->after_codes, code);
}

START_TEST(EXE_12_failing_tasks_keep_pool_and_hooks) {
  hooks h;
  memset(&h, 0, sizeof h);
  concur_thread_pool_options o = CONCUR_THREAD_POOL_OPTIONS_INIT;
  o.max_workers = 2;
  o.before = before_hook;
  o.before_arg = &h;
  o.after = after_hook;
  o.after_arg = &h;
  concur_executor *ex = tp_new(&o);
  for (int i = 0; i < 100; i++) {
    concur_future *f;
    ck_assert_rc(
        concur_executor_submit(ex, tp_task_code, (void *)(intptr_t)(i % 3), &f),
        0);
    ck_assert_int_eq(concur_future_result(f, HARNESS_LONG_NS, NULL),
                     i % 3 == 0 ? 0 : CONCUR_ETASK);
    concur_future_unref(f);
  }
  concur_executor_stats s = tp_stats(ex);
  ck_assert_uint_le(s.workers, 2);
  ck_assert_uint_ge(s.workers, 1);
  /* A future is done before its worker books the task as completed (and
   * runs its after hook): wait for the workers before reading counters. */
  ck_assert_rc(concur_executor_shutdown(ex, CONCUR_SHUTDOWN_WAIT), 0);
  TP_ASSERT_STATS(ex, 100, 0, 0, 34, 66, 0);
  ck_assert_int_eq(atomic_load(&h.before), 100);
  ck_assert_int_eq(atomic_load(&h.after), 100);
  ck_assert_int_eq(atomic_load(&h.after_codes), 33 * 1 + 33 * 2);
  concur_executor_free(ex);
}
END_TEST

/* A task of a one-worker pool that waits on a task it queued itself. */
typedef struct nest {
  concur_executor *ex;
  _Atomic int inner_rc;
  _Atomic int wait_rc;
} nest;

static int inner_task(void *arg, void **result) {
  *result = arg;
  return 0;
}

static int outer_task(void *arg, void **result) {
  (void)result;
  nest *n = arg;
  concur_future *f;
  int rc = concur_executor_submit(n->ex, inner_task, (void *)99, &f);
  atomic_store(&n->inner_rc, rc);
  if (rc != 0) {
    return 1;
  }
  void *v = NULL;
  /* The pool's only worker is this thread: without help this deadlocks. */
  rc = concur_future_result(f, HARNESS_LONG_NS, &v);
  atomic_store(&n->wait_rc, rc == 0 && v == (void *)99 ? 0 : rc == 0 ? -1 : rc);
  concur_future_unref(f);
  return 0;
}

START_TEST(EXE_13_task_waiting_on_own_queued_future_helps) {
  concur_thread_pool_options o = CONCUR_THREAD_POOL_OPTIONS_INIT;
  o.max_workers = 1;
  concur_executor *ex = tp_new(&o);
  nest n = {ex, 1, 1};
  concur_future *f;
  ck_assert_rc(concur_executor_submit(ex, outer_task, &n, &f), 0);
  ck_assert_rc(concur_future_result(f, HARNESS_LONG_NS, NULL), 0);
  ck_assert_int_eq(atomic_load(&n.inner_rc), 0);
  ck_assert_int_eq(atomic_load(&n.wait_rc), 0);
  concur_future_unref(f);
  /* A future is done before its worker books the task as completed (and
   * runs its after hook): wait for the workers before reading counters. */
  ck_assert_rc(concur_executor_shutdown(ex, CONCUR_SHUTDOWN_WAIT), 0);
  TP_ASSERT_STATS(ex, 2, 0, 0, 2, 0, 0);
  ck_assert_uint_eq(tp_stats(ex).largest, 1);
  concur_executor_free(ex);
}
END_TEST

typedef struct submitter_ctx {
  concur_executor *ex;
  _Atomic long accepted;
  _Atomic int last_rc;
  _Atomic long ran;
} submitter_ctx;

static void *submit_until_shutdown(void *arg) {
  submitter_ctx *c = arg;
  for (;;) {
    int rc = concur_executor_submit(c->ex, tp_task_count, &c->ran, NULL);
    if (rc != 0) {
      atomic_store(&c->last_rc, rc);
      return NULL;
    }
    atomic_fetch_add(&c->accepted, 1);
  }
}

static void *shutdown_from_signal_thread(void *arg) {
  submitter_ctx *c = arg;
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGUSR1);
  int sig = 0;
  sigwait(&set, &sig); /* the "signal-handling thread" */
  (void)concur_executor_shutdown(c->ex, 0);
  return NULL;
}

START_TEST(EXE_14_shutdown_from_signal_thread_during_submit) {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGUSR1);
  pthread_sigmask(SIG_BLOCK, &set, NULL);
  concur_thread_pool_options o = CONCUR_THREAD_POOL_OPTIONS_INIT;
  o.max_workers = 2;
  submitter_ctx c = {NULL, 0, 0, 0};
  c.ex = tp_new(&o);
  pthread_t sub, sh;
  ck_assert_int_eq(pthread_create(&sh, NULL, shutdown_from_signal_thread, &c),
                   0);
  ck_assert_int_eq(pthread_create(&sub, NULL, submit_until_shutdown, &c), 0);
  while (atomic_load(&c.accepted) < 1000) {
    sched_yield();
  }
  /* Process-directed: the pool's workers block it, so the sigwait thread
   * gets it. */
  kill(getpid(), SIGUSR1);
  pthread_join(sub, NULL);
  pthread_join(sh, NULL);
  ck_assert_rc(atomic_load(&c.last_rc), CONCUR_ESHUTDOWN);
  ck_assert_rc(concur_executor_await_termination(c.ex, HARNESS_LONG_NS), 0);
  ck_assert_int_eq(atomic_load(&c.ran), atomic_load(&c.accepted));
  concur_executor_stats s = tp_stats(c.ex);
  ck_assert_uint_eq(s.completed, (uint64_t)atomic_load(&c.accepted));
  ck_assert_uint_eq(s.rejected, 1);
  concur_executor_free(c.ex);
}
END_TEST

/* XC-05: workers block asynchronous signals. */
typedef struct mask_ctx {
  _Atomic int blocked;
} mask_ctx;

static int read_mask(void *arg, void **result) {
  (void)result;
  sigset_t cur;
  pthread_sigmask(SIG_SETMASK, NULL, &cur);
  int all = sigismember(&cur, SIGINT) && sigismember(&cur, SIGTERM) &&
            sigismember(&cur, SIGUSR1) && sigismember(&cur, SIGCHLD);
  atomic_store(&((mask_ctx *)arg)->blocked, all);
  return 0;
}

START_TEST(workers_block_async_signals_and_are_named) {
  concur_thread_pool_options o = CONCUR_THREAD_POOL_OPTIONS_INIT;
  o.thread_name_prefix = "sigtest-";
  concur_executor *ex = tp_new(&o);
  mask_ctx m = {0};
  concur_future *f;
  ck_assert_rc(concur_executor_submit(ex, read_mask, &m, &f), 0);
  ck_assert_rc(concur_future_result(f, HARNESS_LONG_NS, NULL), 0);
  concur_future_unref(f);
  ck_assert_int_eq(atomic_load(&m.blocked), 1);
  concur_executor_free(ex);
}
END_TEST

/* ---- help, counters, termination
 * -------------------------------------------------- */

START_TEST(help_runs_a_queued_task_in_the_caller) {
  concur_thread_pool_options o = CONCUR_THREAD_POOL_OPTIONS_INIT;
  o.max_workers = 1;
  concur_executor *ex = tp_new(&o);
  tp_gate g;
  tp_gate_init(&g);
  ck_assert_rc(concur_executor_help(ex), 0); /* nothing queued */
  ck_assert_rc(concur_executor_submit(ex, tp_task_gate, &g, NULL), 0);
  TP_AWAIT_PARKED(&g, 1);
  _Atomic long ran = 0;
  concur_future *f;
  ck_assert_rc(concur_executor_submit(ex, tp_task_count, &ran, &f), 0);
  ck_assert_rc(concur_executor_help(ex), 1);
  ck_assert(concur_future_done(f));
  ck_assert_int_eq(atomic_load(&ran), 1);
  ck_assert_rc(concur_executor_help(ex), 0);
  /* A cancelled queued future is skipped by help. */
  concur_future *c;
  ck_assert_rc(concur_executor_submit(ex, tp_task_count, &ran, &c), 0);
  ck_assert(concur_future_cancel(c));
  ck_assert_rc(concur_executor_help(ex), 0);
  concur_future_unref(c);
  tp_gate_open(&g);
  concur_future_unref(f);
  ck_assert_rc(concur_executor_shutdown(ex, CONCUR_SHUTDOWN_WAIT), 0);
  TP_ASSERT_STATS(ex, 3, 0, 0, 2, 0, 1);
  ck_assert_int_eq(atomic_load(&ran), 1);
  concur_executor_free(ex);
}
END_TEST

START_TEST(waiting_on_a_queued_future_runs_it_in_the_waiter) {
  concur_thread_pool_options o = CONCUR_THREAD_POOL_OPTIONS_INIT;
  o.max_workers = 1;
  concur_executor *ex = tp_new(&o);
  tp_gate g;
  tp_gate_init(&g);
  ck_assert_rc(concur_executor_submit(ex, tp_task_gate, &g, NULL), 0);
  TP_AWAIT_PARKED(&g, 1);
  concur_future *f;
  ck_assert_rc(concur_executor_submit(ex, tp_task_echo, (void *)5, &f), 0);
  void *v = NULL;
  /* The only worker is blocked: the help hook runs it here. */
  ck_assert_rc(concur_future_result(f, HARNESS_LONG_NS, &v), 0);
  ck_assert_ptr_eq(v, (void *)5);
  concur_future_unref(f);
  tp_gate_open(&g);
  ck_assert_rc(concur_executor_shutdown(ex, CONCUR_SHUTDOWN_WAIT), 0);
  TP_ASSERT_STATS(ex, 2, 0, 0, 2, 0, 0);
  concur_executor_free(ex);
}
END_TEST

typedef struct self_shutdown {
  concur_executor *ex;
  _Atomic int rc;
  _Atomic int after;
} self_shutdown;

static int shutdown_self(void *arg, void **result) {
  (void)result;
  self_shutdown *c = arg;
  atomic_store(&c->rc, concur_executor_shutdown(c->ex, CONCUR_SHUTDOWN_WAIT));
  atomic_store(&c->after,
               concur_executor_submit(c->ex, tp_task_echo, NULL, NULL));
  return 0;
}

START_TEST(shutdown_wait_from_own_worker_is_edeadlk) {
  concur_thread_pool_options o = CONCUR_THREAD_POOL_OPTIONS_INIT;
  o.max_workers = 1;
  concur_executor *ex = tp_new(&o);
  self_shutdown c = {ex, 1, 1};
  concur_future *f;
  ck_assert_rc(concur_executor_submit(ex, shutdown_self, &c, &f), 0);
  ck_assert_rc(concur_future_result(f, HARNESS_LONG_NS, NULL), 0);
  concur_future_unref(f);
  ck_assert_rc(concur_executor_await_termination(ex, HARNESS_LONG_NS), 0);
  /* It shut down without waiting for itself. */
  ck_assert_rc(atomic_load(&c.rc), CONCUR_EDEADLK);
  ck_assert_rc(atomic_load(&c.after), CONCUR_ESHUTDOWN);
  concur_executor_free(ex);
}
END_TEST

Suite *concur_test_suite(void) {
  Suite *s = suite_create("thread_pool");
  TCase *tc = harness_tcase("construction", 30);
  tcase_add_test(tc, TPE_01_constructor_validation);
  tcase_add_test(tc, EXE_10_max_workers_invalid_and_default);
  tcase_add_test(tc, pool_calls_refuse_other_executors);
  suite_add_tcase(s, tc);

  tc = harness_tcase("submit", 30);
  tcase_add_test(tc, submit_future_result_and_failure);
  tcase_add_test(tc, submit_argument_errors);
  tcase_add_test(tc, future_task_sees_its_future_and_message);
  tcase_add_test(tc, happens_before_submit_to_task_to_result);
  tcase_add_test(tc, workers_block_async_signals_and_are_named);
  suite_add_tcase(s, tc);

  tc = harness_tcase("exe", 60);
  tcase_add_test(tc, EXE_01_submit_after_shutdown_is_rejected);
  tcase_add_test(tc, EXE_02_shutdown_wait_runs_every_queued_task);
  tcase_add_test(tc, EXE_03_shutdown_cancel_futures);
  tcase_add_test(tc, EXE_04_shutdown_without_wait_returns_at_once);
  tcase_add_test(tc, EXE_05_submit_cancel_then_shutdown_wait);
  tcase_add_test(tc, EXE_06_shutdown_idempotent_terminated_hook_once);
  tcase_add_test(tc, EXE_07_free_without_shutdown_runs_everything);
  tcase_add_test(tc, EXE_09_args_and_results_released_once);
  tcase_add_test(tc, EXE_11_initializer_runs_once_per_worker);
  tcase_add_test(tc, EXE_11_failing_initializer_breaks_the_pool);
  tcase_add_test(tc, EXE_12_failing_tasks_keep_pool_and_hooks);
  tcase_add_test(tc, EXE_13_task_waiting_on_own_queued_future_helps);
  tcase_add_test(tc, EXE_14_shutdown_from_signal_thread_during_submit);
  suite_add_tcase(s, tc);

  tc = harness_tcase("help", 30);
  tcase_add_test(tc, help_runs_a_queued_task_in_the_caller);
  tcase_add_test(tc, waiting_on_a_queued_future_runs_it_in_the_waiter);
  tcase_add_test(tc, shutdown_wait_from_own_worker_is_edeadlk);
  suite_add_tcase(s, tc);
  return s;
}
