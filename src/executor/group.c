/*
 * Task groups: fire-and-forget submits that can be waited for together.
 *
 * Design
 * - Threads: any number of submitters and waiters; the executor's threads
 *   call on_done once per accepted task (executor_internal.h).
 * - No futures: each task goes to the backend as a record whose on_done is
 *   group_done, so the hot path is one atomic add on the group, the
 *   backend's submit, and an outcome count plus one atomic subtract when
 *   the task ends. `submitted` is not counted: it is pending plus the
 *   outcomes.
 * - `state` (atomic, 32 bits, also the parking word): bit 0 says a waiter
 *   may be parked; bits 1-31 count the pending tasks. The completer's
 *   subtract is its last access to the group unless it saw the waiter bit
 *   with no task left, and then it only wakes by address (concur__unpark
 *   does not dereference the word), so a waiter may free the group as soon
 *   as it sees the count reach 0.
 * - The outcome counters are added before that subtract (release), so a
 *   waiter that sees the count at 0 (acquire) sees every outcome.
 * - Rounds: round_failed and round_code collect the failures since the last
 *   wait that saw everything done; that wait swaps them to 0.
 * - A waiter helps (concur_executor_help) before it parks, so a wait from
 *   inside one of the executor's own tasks still makes progress.
 */
#include "executor/executor_algo.h"

#include <stdatomic.h>

#define ST_WAITER 1u
#define ST_ONE 2u
#define ST_MAX (UINT32_MAX - 2 * ST_ONE)

struct concur_task_group {
  concur_executor *ex;           /* immutable after init */
  _Atomic uint32_t state;        /* atomic: pending * ST_ONE | ST_WAITER */
  _Atomic uint64_t ok;           /* atomic */
  _Atomic uint64_t failed;       /* atomic */
  _Atomic uint64_t cancelled;    /* atomic */
  _Atomic uint64_t round_failed; /* atomic */
  _Atomic int round_code;        /* atomic: first failure of the round */
};

static void group_done(void *ctx, concur__outcome outcome, int code) {
  concur_task_group *g = ctx;
  /* Relaxed adds: published by the release subtract below. */
  if (outcome == CONCUR__OUTCOME_OK) {
    atomic_fetch_add_explicit(&g->ok, 1, memory_order_relaxed);
  } else if (outcome == CONCUR__OUTCOME_FAILED) {
    atomic_fetch_add_explicit(&g->failed, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&g->round_failed, 1, memory_order_relaxed);
    int zero = 0;
    atomic_compare_exchange_strong_explicit(&g->round_code, &zero, code,
                                            memory_order_relaxed,
                                            memory_order_relaxed);
  } else {
    atomic_fetch_add_explicit(&g->cancelled, 1, memory_order_relaxed);
  }
  _Atomic uint32_t *word = &g->state;
  uint32_t w = atomic_fetch_sub_explicit(word, ST_ONE, memory_order_acq_rel);
  if (w - ST_ONE == ST_WAITER) {
    concur__unpark(word, INT32_MAX);
  }
}

int concur_task_group_new(concur_task_group **out, concur_executor *ex) {
  if (out == NULL) {
    return CONCUR_EINVAL;
  }
  *out = NULL;
  if (ex == NULL) {
    return CONCUR_EINVAL;
  }
  concur_task_group *g = concur__calloc(1, sizeof *g);
  if (g == NULL) {
    return CONCUR_ENOMEM;
  }
  g->ex = ex;
  *out = g;
  return 0;
}

/* Takes back a pending count that no on_done will give back. */
static void drop_pending(concur_task_group *g) {
  _Atomic uint32_t *word = &g->state;
  uint32_t w = atomic_fetch_sub_explicit(word, ST_ONE, memory_order_acq_rel);
  if (w - ST_ONE == ST_WAITER) {
    concur__unpark(word, INT32_MAX);
  }
}

static int group_submit(concur_task_group *g, concur_task_fn fn, void *arg,
                        concur_cleanup_fn cleanup) {
  if (g == NULL || fn == NULL) {
    return CONCUR_EINVAL;
  }
  /* Counted before the backend sees the task: on_done may run at once.
   * Relaxed: the backend's hand-off orders these before the task ends. */
  uint32_t w =
      atomic_fetch_add_explicit(&g->state, ST_ONE, memory_order_relaxed);
  if (w >= ST_MAX) {
    drop_pending(g);
    return CONCUR_EAGAIN;
  }
  concur__task_record rec = {fn, arg, cleanup, group_done, g};
  int rc = g->ex->ops->submit(g->ex, &rec, NULL);
  if (rc != 0) {
    drop_pending(g); /* not accepted: no on_done will come */
  }
  return rc;
}

int concur_task_group_submit(concur_task_group *group, concur_task_fn fn,
                             void *arg) {
  return group_submit(group, fn, arg, NULL);
}

int concur_task_group_submit_task(concur_task_group *group,
                                  const concur_task *task) {
  if (task == NULL || task->size < sizeof(concur_task)) {
    return CONCUR_EINVAL;
  }
  return group_submit(group, task->fn, task->arg, task->cleanup);
}

/* Closes the round: 0 or CONCUR_ETASK with its first failure's code. */
static int close_round(concur_task_group *g, int *code) {
  /* A waiter bit left with nothing pending would make every later task's
   * end a needless wake-up; a waiter still parked was woken already. */
  uint32_t waiter_only = ST_WAITER;
  atomic_compare_exchange_strong_explicit(
      &g->state, &waiter_only, 0, memory_order_relaxed, memory_order_relaxed);
  uint64_t failed =
      atomic_exchange_explicit(&g->round_failed, 0, memory_order_relaxed);
  int first = atomic_exchange_explicit(&g->round_code, 0, memory_order_relaxed);
  if (code != NULL) {
    *code = failed != 0 ? first : 0;
  }
  return failed != 0 ? CONCUR_ETASK : 0;
}

int concur_task_group_wait(concur_task_group *group, int64_t timeout_ns,
                           int *code) {
  if (code != NULL) {
    *code = 0;
  }
  concur__deadline deadline;
  if (group == NULL ||
      concur__deadline_from_timeout(timeout_ns, &deadline) != 0) {
    return CONCUR_EINVAL;
  }
  concur_task_group *g = group;
  for (;;) {
    /* acquire: pairs with group_done's release subtract, so every outcome
     * counted before it is visible. */
    uint32_t w = atomic_load_explicit(&g->state, memory_order_acquire);
    if (w < ST_ONE) {
      return close_round(g, code);
    }
    if (concur__deadline_passed(deadline)) {
      return CONCUR_ETIMEDOUT;
    }
    /* Run queued work instead of sleeping on it: a wait from one of the
     * executor's own tasks must not starve the tasks it waits for. */
    if (concur_executor_help(g->ex) > 0) {
      continue;
    }
    if ((w & ST_WAITER) == 0) {
      if (!atomic_compare_exchange_weak_explicit(&g->state, &w, w | ST_WAITER,
                                                 memory_order_acquire,
                                                 memory_order_acquire)) {
        continue;
      }
      w |= ST_WAITER;
    }
    if (concur__park(&g->state, w, deadline, g) == CONCUR_ETIMEDOUT) {
      w = atomic_load_explicit(&g->state, memory_order_acquire);
      if (w < ST_ONE) {
        return close_round(g, code);
      }
      return CONCUR_ETIMEDOUT;
    }
  }
}

int concur_task_group_get_counts(concur_task_group *group,
                                 concur_task_group_counts *out) {
  if (group == NULL || out == NULL ||
      out->size < sizeof(concur_task_group_counts)) {
    return CONCUR_EINVAL;
  }
  /* No separate submitted counter: one atomic less on the hot path.
   * Pending first, then the outcomes (a task ending meanwhile moves from
   * the first to the second, so it may count twice, never zero times). */
  out->pending =
      atomic_load_explicit(&group->state, memory_order_acquire) / ST_ONE;
  out->ok = atomic_load_explicit(&group->ok, memory_order_acquire);
  out->failed = atomic_load_explicit(&group->failed, memory_order_acquire);
  out->cancelled =
      atomic_load_explicit(&group->cancelled, memory_order_acquire);
  out->submitted = out->pending + out->ok + out->failed + out->cancelled;
  return 0;
}

void concur_task_group_free(concur_task_group *group) {
  if (group == NULL) {
    return;
  }
  while (concur_task_group_wait(group, CONCUR_FOREVER, NULL) ==
         CONCUR_ETIMEDOUT) {
  }
  concur__free(group);
}
