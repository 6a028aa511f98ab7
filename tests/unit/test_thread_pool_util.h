/*
 * Helpers shared by the thread-pool test files (unit, stress, fault, fork):
 * gates tasks block on, recording tasks, and a stats reader that checks the
 * counters add up.
 *
 * Keys for concur__test_await_parked (see concur/thread_pool.h):
 * - a gate: the gate itself (tasks blocked in gate_wait);
 * - idle workers: the executor pointer (CONCUR__POOL_KEY_WORKER);
 * - submitters blocked by CONCUR_REJECT_BLOCK: CONCUR__POOL_KEY_BLOCKED(ex);
 * - await_termination / waiting shutdown: CONCUR__POOL_KEY_TERMINATION(ex).
 */
#ifndef CONCUR_TEST_THREAD_POOL_UTIL_H
#define CONCUR_TEST_THREAD_POOL_UTIL_H

#include "harness.h"

#include "concur/executor.h"
#include "concur/thread_pool.h"
#include "thread_pool/pool_internal.h"

#include <stdatomic.h>
#include <stdint.h>

/* A one-shot gate tasks park on (key: the gate). */
typedef struct tp_gate {
  _Atomic uint32_t open;
} tp_gate;

static inline void tp_gate_init(tp_gate *g) {
  atomic_init(&g->open, 0);
}

static inline void tp_gate_wait(tp_gate *g) {
  while (atomic_load_explicit(&g->open, memory_order_acquire) == 0) {
    (void)concur__park(&g->open, 0, CONCUR__NO_DEADLINE, g);
  }
}

static inline void tp_gate_open(tp_gate *g) {
  atomic_store_explicit(&g->open, 1, memory_order_release);
  concur__unpark(&g->open, INT32_MAX);
}

/* Waits until k threads are parked with key (a gate, an executor...). */
#define TP_AWAIT_PARKED(key, k)                                                \
  ck_assert_rc(concur__test_await_parked((key), (k), HARNESS_LONG_NS), 0)

/* A task blocking on the gate given as arg, returning 0. */
static inline int tp_task_gate(void *arg, void **result) {
  (void)result;
  tp_gate_wait(arg);
  return 0;
}

/* A task returning its arg as result. */
static inline int tp_task_echo(void *arg, void **result) {
  *result = arg;
  return 0;
}

/* A task returning (int)(intptr_t)arg as its code. */
static inline int tp_task_code(void *arg, void **result) {
  (void)result;
  return (int)(intptr_t)arg;
}

/* A task adding one to the counter given as arg. */
static inline int tp_task_count(void *arg, void **result) {
  (void)result;
  atomic_fetch_add_explicit((_Atomic long *)arg, 1, memory_order_relaxed);
  return 0;
}

/* Makes a pool with the options filled by the caller (or defaults). */
static inline concur_executor *tp_new(const concur_thread_pool_options *o) {
  concur_executor *ex = NULL;
  ck_assert_rc(concur_thread_pool_new(&ex, o), 0);
  ck_assert_ptr_nonnull(ex);
  return ex;
}

/* Reads the stats and checks that they add up. */
static inline concur_executor_stats tp_stats(concur_executor *ex) {
  concur_executor_stats s = CONCUR_EXECUTOR_STATS_INIT;
  ck_assert_rc(concur_executor_get_stats(ex, &s), 0);
  ck_assert_msg(s.submitted ==
                    s.queued + s.running + s.completed + s.failed + s.cancelled,
                "counters do not add up: submitted %llu, queued %llu, "
                "running %llu, completed %llu, failed %llu, cancelled %llu",
                (unsigned long long)s.submitted, (unsigned long long)s.queued,
                (unsigned long long)s.running, (unsigned long long)s.completed,
                (unsigned long long)s.failed, (unsigned long long)s.cancelled);
  ck_assert_uint_le(s.active, s.workers);
  ck_assert_uint_le(s.workers, s.largest);
  return s;
}

/* Asserts every counter at once (after a quiet point). */
#define TP_ASSERT_STATS(ex, sub, que, run, comp, fail, canc)                   \
  do {                                                                         \
    concur_executor_stats s_ = tp_stats(ex);                                   \
    ck_assert_uint_eq(s_.submitted, (sub));                                    \
    ck_assert_uint_eq(s_.queued, (que));                                       \
    ck_assert_uint_eq(s_.running, (run));                                      \
    ck_assert_uint_eq(s_.completed, (comp));                                   \
    ck_assert_uint_eq(s_.failed, (fail));                                      \
    ck_assert_uint_eq(s_.cancelled, (canc));                                   \
  } while (0)

#endif /* CONCUR_TEST_THREAD_POOL_UTIL_H */
