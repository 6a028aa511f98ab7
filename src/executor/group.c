/*
 * Task groups: fire-and-forget submits that can be waited for together.
 *
 * Design
 * - Threads: any number of submitters and waiters; the executor's threads
 *   call on_done once per accepted task (executor_internal.h).
 * - No futures: each task goes to the backend as a record whose on_done is
 *   group_done. Submitters and completers count on words of their own, on
 *   separate cache lines, so that a stream of submits does not pull the
 *   line the completers write, and back, for every task:
 *   `submitted` (64-bit, submitters) counts submit attempts; `ended`
 *   (32-bit, completers, also the parking word) counts ended tasks and
 *   failed submits, times two, with bit 0 saying a waiter may be parked.
 *   The group is quiet when ended / 2 == submitted, modulo 2^31: at most
 *   2^30 tasks may be pending, which submit enforces (CONCUR_EAGAIN).
 * - A completer's add to `ended` is its last access to the group: if it
 *   saw the waiter bit it wakes by address only (concur__unpark does not
 *   dereference the word), so a waiter may free the group as soon as it
 *   sees the counts meet. The add clears the bit: the first end after a
 *   waiter parked wakes it, and it looks again (and parks again if tasks
 *   are left). A waiter helps the executor first, so by the time it parks
 *   only the tasks already running are left to end.
 * - Outcomes: `ok` beside `ended`; failures and cancellations, rare, on a
 *   line of their own. Each is added before the add to `ended` (release),
 *   so a waiter that sees the counts meet (acquire) sees every outcome.
 * - A submit the executor refuses still adds to `ended` (and to
 *   `rejected`): `submitted` never goes down, so a waiter that already
 *   counted it sees the counts meet without it.
 * - The throttle (OpenMP's, which runs a task in its creator when too many
 *   are queued): once per RUN_HERE_EVERY submits a submitter reads the
 *   completers' line; if more than RUN_HERE_BACKLOG tasks per unit of the
 *   executor's parallelism are pending, its next RUN_HERE_EVERY submits run
 *   their task in place, at once, in the submitting thread. Such a task never
 *   reaches the executor (its counters do not see it) and is never pending:
 *   it only adds to ok_here (on the submitters' line) or to the failures.
 *   So a stream of tiny tasks keeps a backlog that fits in cache, and the
 *   submitter's core works on it instead of queueing faster than the
 *   workers can drain.
 * - Rounds: round_failed and round_code collect the failures since the last
 *   wait that saw everything done; that wait swaps them to 0.
 * - A waiter helps (concur_executor_help) before it parks, so a wait from
 *   inside one of the executor's own tasks still makes progress.
 */
#include "executor/executor_algo.h"
#include "future/future_exec.h"

#include <stdatomic.h>

#define END_WAITER 1u
#define END_ONE 2u
/* ended's count is 31 bits wide. */
#define END_MASK 0x7FFFFFFFu
#define PENDING_MAX (UINT64_C(1) << 30)
/* How often (in submits) a submitter checks PENDING_MAX. */
#define CHECK_EVERY 4096u

#define LINE 64
/* The throttle: every RUN_HERE_EVERY submits a submitter looks at the
 * backlog; above RUN_HERE_BACKLOG pending tasks per unit of the executor's
 * parallelism, it runs the next RUN_HERE_EVERY tasks in place. */
#define RUN_HERE_EVERY 64u
#define RUN_HERE_BACKLOG 64

struct concur_task_group {
  concur_executor *ex;     /* immutable after init */
  uint64_t inline_backlog; /* immutable after init: see run_here */
  char pad0[LINE];
  _Atomic uint64_t submitted; /* atomic: submitters */
  _Atomic uint64_t ok_here;   /* atomic: tasks run by their submitter, ok */
  _Atomic uint32_t run_here;  /* atomic: submits left to run in place */
  char pad1[LINE];
  _Atomic uint32_t ended; /* atomic: completers (ended * END_ONE | waiter) */
  _Atomic uint64_t ok;    /* atomic: completers */
  char pad2[LINE];
  _Atomic uint64_t failed;       /* atomic */
  _Atomic uint64_t cancelled;    /* atomic */
  _Atomic uint64_t rejected;     /* atomic: submits the executor refused */
  _Atomic uint64_t round_failed; /* atomic */
  _Atomic int round_code;        /* atomic: first failure of the round */
};

/* Counts one end (or refused submit); the caller's last access to g. */
static void count_end(concur_task_group *g) {
  _Atomic uint32_t *word = &g->ended;
  uint32_t old = atomic_load_explicit(word, memory_order_relaxed);
  /* release: publishes the outcome counted before. The waiter bit goes in
   * the same step: a woken waiter sets it again if it must park again. */
  while (!atomic_compare_exchange_weak_explicit(
      word, &old, (old + END_ONE) & ~END_WAITER, memory_order_release,
      memory_order_relaxed)) {
  }
  if (old & END_WAITER) {
    concur__unpark(word, INT32_MAX);
  }
}

static void count_failure(concur_task_group *g, int code) {
  atomic_fetch_add_explicit(&g->failed, 1, memory_order_relaxed);
  atomic_fetch_add_explicit(&g->round_failed, 1, memory_order_relaxed);
  int zero = 0;
  atomic_compare_exchange_strong_explicit(
      &g->round_code, &zero, code, memory_order_relaxed, memory_order_relaxed);
}

static void group_done(void *ctx, concur__outcome outcome, int code) {
  concur_task_group *g = ctx;
  /* Relaxed adds: published by count_end's release. */
  if (outcome == CONCUR__OUTCOME_OK) {
    atomic_fetch_add_explicit(&g->ok, 1, memory_order_relaxed);
  } else if (outcome == CONCUR__OUTCOME_FAILED) {
    count_failure(g, code);
  } else {
    atomic_fetch_add_explicit(&g->cancelled, 1, memory_order_relaxed);
  }
  count_end(g);
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
  g->inline_backlog =
      (uint64_t)RUN_HERE_BACKLOG * (uint64_t)concur_executor_parallelism(ex);
  *out = g;
  return 0;
}

/* Tasks accepted and not ended, as of the two loads (ended first). */
static uint64_t pending_now(concur_task_group *g, uint32_t ended) {
  uint64_t submitted =
      atomic_load_explicit(&g->submitted, memory_order_acquire);
  return (submitted - ended / END_ONE) & END_MASK;
}

/* Never set: a task run by its submitter gets no cancel request. */
static const _Atomic uint32_t no_cancel;

/*
 * Runs a task in the submitting thread, at once (see run_here in the file
 * comment). It never reaches the executor; the group counts it.
 */
static void run_in_place(concur_task_group *g, concur_task_fn fn, void *arg,
                         concur_cleanup_fn cleanup) {
  concur__task_frame frame;
  concur__task_enter(&frame, &no_cancel, 1);
  void *result = NULL;
  int code = fn(arg, &result);
  concur__task_leave(&frame);
  if (cleanup != NULL) {
    cleanup(arg, result);
  }
  if (code == 0) {
    atomic_fetch_add_explicit(&g->ok_here, 1, memory_order_relaxed);
  } else {
    count_failure(g, code);
  }
}

static int group_submit(concur_task_group *g, concur_task_fn fn, void *arg,
                        concur_cleanup_fn cleanup) {
  if (g == NULL || fn == NULL) {
    return CONCUR_EINVAL;
  }
  /* Relaxed load and store, not a read-modify-write: with several
   * submitters the count is approximate, which only moves the throttle. */
  uint32_t here = atomic_load_explicit(&g->run_here, memory_order_relaxed);
  if (here > 0) {
    atomic_store_explicit(&g->run_here, here - 1, memory_order_relaxed);
    if (!g->ex->ops->is_shutdown(g->ex)) {
      run_in_place(g, fn, arg, cleanup);
      return 0;
    }
  }
  /* Counted before the backend sees the task: on_done may run at once.
   * Relaxed: the backend's hand-off orders it before the task ends, and a
   * waiter on another thread cannot rely on a submit it did not see. */
  uint64_t n =
      atomic_fetch_add_explicit(&g->submitted, 1, memory_order_relaxed);
  if (n % CHECK_EVERY == 0 || n % RUN_HERE_EVERY == RUN_HERE_EVERY - 1) {
    uint64_t pending =
        pending_now(g, atomic_load_explicit(&g->ended, memory_order_acquire));
    if (n % CHECK_EVERY == 0 && pending >= PENDING_MAX) {
      atomic_fetch_add_explicit(&g->rejected, 1, memory_order_relaxed);
      count_end(g);
      return CONCUR_EAGAIN;
    }
    if (pending > g->inline_backlog) {
      atomic_store_explicit(&g->run_here, RUN_HERE_EVERY, memory_order_relaxed);
    }
  }
  concur__task_record rec = {fn, arg, cleanup, group_done, g};
  int rc = g->ex->ops->submit(g->ex, &rec, NULL);
  if (rc != 0) {
    /* Not accepted: no on_done will come; count it ended. */
    atomic_fetch_add_explicit(&g->rejected, 1, memory_order_relaxed);
    count_end(g);
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
    /* acquire: pairs with count_end's release, so every outcome counted
     * before it is visible. */
    uint32_t w = atomic_load_explicit(&g->ended, memory_order_acquire);
    if (pending_now(g, w) == 0) {
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
    if ((w & END_WAITER) == 0) {
      /* Announce, then look again (the loop's next round) before parking:
       * an end after the announcement changes the word, so the park
       * returns at once, and sees the bit, so it wakes a parked waiter. */
      (void)atomic_compare_exchange_weak_explicit(&g->ended, &w, w | END_WAITER,
                                                  memory_order_acquire,
                                                  memory_order_acquire);
      continue;
    }
    if (concur__park(&g->ended, w, deadline, g) == CONCUR_ETIMEDOUT) {
      w = atomic_load_explicit(&g->ended, memory_order_acquire);
      if (pending_now(g, w) == 0) {
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
  /* Pending first, then the outcomes (a task ending meanwhile moves from
   * the first to the second, so it may count twice, never zero times). A
   * submit in progress counts as pending until it returns. */
  out->pending = pending_now(
      group, atomic_load_explicit(&group->ended, memory_order_acquire));
  out->ok = atomic_load_explicit(&group->ok, memory_order_acquire) +
            atomic_load_explicit(&group->ok_here, memory_order_acquire);
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
