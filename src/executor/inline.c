/*
 * The inline executor: every task runs in the submitting thread, inside
 * submit, so tests and debugging are deterministic.
 *
 * Design
 * - Threads: whoever calls submit runs the task there and then; any number
 *   of threads may submit at once (each runs its own task), and any thread
 *   may shut down, wait for termination or read the counters.
 * - States: open, then shut down (a bit that only goes on). The executor is
 *   terminated once it is shut down and no accepted task is still inside
 *   submit. Both facts live in one atomic word, `state` (bit 0: shut down,
 *   bits 1-31: accepted submits still in progress), so that accepting a task
 *   and shutting down are ordered by one compare-and-swap and waiters for
 *   termination park on that same word (key: the executor).
 * - Every task runs through a future (concur_future_run), also when the
 *   caller asked for none, so that the task can poll
 *   concur_task_cancel_requested, attach a message, and see
 *   concur_future_current as on any other backend. Without `out` the future
 *   is released right after the task, which runs the cleanup at once, before
 *   on_done: an algorithm woken by on_done finds its tasks' cleanups done.
 * - Lock: `lock` guards the counters and the list of tasks running now (for
 *   shutdown_now's cooperative cancel requests). It is never held while user
 *   code runs; shutdown_now calls concur_future_request_cancel under it,
 *   which is safe because a listed future has no waiter, callback or help
 *   hook yet (its submit has not returned), so the call only sets a flag or
 *   cancels a not-yet-started future.
 * - There is never a queued task: shutdown's CANCEL_FUTURES and shutdown_now
 *   find nothing to cancel or hand back (shutdown_now returns 0), and help
 *   returns 0. A task accepted by a submit racing with shutdown_now is
 *   cancelled before it starts (its cleanup runs; it is not handed back).
 * - Happens-before: the task runs in the submitting thread, so program order
 *   gives submit -> start and task -> result; the release decrement of
 *   `state` after each task and the acquire load of the terminating waiter
 *   give task -> await_termination.
 */
#include "executor/executor_algo.h"

#include <stdatomic.h>
#include <string.h>

#define ST_SHUT 1u
#define ST_ONE 2u

/* A task running now, on the submitting thread's stack. */
typedef struct run_node {
  concur_future *future;
  struct run_node *prev, *next; /* guarded by the executor's lock */
} run_node;

typedef struct inline_exec {
  struct concur_executor base; /* first: the public handle */
  _Atomic uint32_t state;      /* atomic: ST_SHUT | in-progress * ST_ONE */
  concur__mutex lock;
  bool now;           /* guarded by lock: shutdown_now was called */
  run_node *running;  /* guarded by lock */
  uint64_t submitted; /* guarded by lock; and every counter below */
  uint64_t n_running;
  uint64_t completed;
  uint64_t failed;
  uint64_t cancelled;
  uint64_t rejected;
  uint64_t largest;
} inline_exec;

/* The inline executors whose task the calling thread runs, innermost first:
 * to refuse a shutdown that would wait for the caller itself. */
typedef struct tls_frame {
  const inline_exec *ex;
  struct tls_frame *prev;
} tls_frame;

static _Thread_local tls_frame *tls_inline;

static bool inside_own_task(const inline_exec *ie) {
  for (const tls_frame *f = tls_inline; f != NULL; f = f->prev) {
    if (f->ex == ie) {
      return true;
    }
  }
  return false;
}

static inline_exec *as_inline(concur_executor *ex) {
  return (inline_exec *)(void *)ex;
}

static void count_rejected(inline_exec *ie) {
  concur__mutex_lock(&ie->lock, ie);
  ie->rejected++;
  concur__mutex_unlock(&ie->lock);
}

/* Takes one in-progress slot unless shut down. */
static bool accept(inline_exec *ie) {
  uint32_t w = atomic_load_explicit(&ie->state, memory_order_relaxed);
  do {
    if ((w & ST_SHUT) != 0) {
      return false;
    }
  } while (!atomic_compare_exchange_weak_explicit(
      &ie->state, &w, w + ST_ONE, memory_order_acquire, memory_order_relaxed));
  return true;
}

/* Gives the slot back; the last one after shutdown wakes the waiters. The
 * release pairs with the waiters' acquire: the task happens-before
 * termination. Nothing of ie is read after the decrement (a waiter may free
 * it); unpark only uses the word's address. */
static void leave(inline_exec *ie) {
  _Atomic uint32_t *word = &ie->state;
  uint32_t w = atomic_fetch_sub_explicit(word, ST_ONE, memory_order_acq_rel);
  if (w - ST_ONE == ST_SHUT) {
    concur__unpark(word, INT32_MAX);
  }
}

static int inline_submit(concur_executor *ex, const concur__task_record *rec,
                         concur_future **out) {
  inline_exec *ie = as_inline(ex);
  concur_future *f = NULL;
  int rc = concur_future_new_task(&f, rec->fn, rec->arg, rec->cleanup);
  if (rc != 0) {
    count_rejected(ie);
    return rc;
  }
  if (!accept(ie)) {
    /* Take the task back so that no cleanup runs: the caller keeps arg. */
    if (concur_future_detach_task(f, NULL, NULL) != 0) {
      concur__panic("inline executor: a fresh future could not be detached");
    }
    concur_future_unref(f);
    count_rejected(ie);
    return CONCUR_ESHUTDOWN;
  }

  run_node node = {f, NULL, NULL};
  concur__mutex_lock(&ie->lock, ie);
  ie->submitted++;
  ie->n_running++;
  if (ie->n_running > ie->largest) {
    ie->largest = ie->n_running;
  }
  node.next = ie->running;
  if (ie->running != NULL) {
    ie->running->prev = &node;
  }
  ie->running = &node;
  if (ie->now) {
    (void)concur_future_request_cancel(f);
  }
  concur__mutex_unlock(&ie->lock);

  tls_frame frame = {ie, tls_inline};
  tls_inline = &frame;
  rc = concur_future_run(f);
  tls_inline = frame.prev;

  concur__outcome outcome = CONCUR__OUTCOME_CANCELLED;
  int code = 0;
  if (rc == 0) {
    concur_future_snapshot snap = CONCUR_FUTURE_SNAPSHOT_INIT;
    if (concur_future_get_snapshot(f, &snap) == 0) {
      code = snap.code;
    }
    outcome = code == 0 ? CONCUR__OUTCOME_OK : CONCUR__OUTCOME_FAILED;
  }

  concur__mutex_lock(&ie->lock, ie);
  if (node.prev != NULL) {
    node.prev->next = node.next;
  } else {
    ie->running = node.next;
  }
  if (node.next != NULL) {
    node.next->prev = node.prev;
  }
  ie->n_running--;
  if (outcome == CONCUR__OUTCOME_OK) {
    ie->completed++;
  } else if (outcome == CONCUR__OUTCOME_FAILED) {
    ie->failed++;
  } else {
    ie->cancelled++;
  }
  concur__mutex_unlock(&ie->lock);

  if (out != NULL) {
    *out = f;
  } else {
    concur_future_unref(f);
  }
  if (rec->on_done != NULL) {
    rec->on_done(rec->ctx, outcome, code);
  }
  leave(ie);
  return 0;
}

static int inline_parallelism(concur_executor *ex) {
  (void)ex;
  return 1;
}

static int inline_help(concur_executor *ex) {
  (void)ex;
  return 0;
}

/* Waits until no accepted task is in progress (after shutdown). */
static int wait_idle(inline_exec *ie, concur__deadline deadline) {
  for (;;) {
    uint32_t w = atomic_load_explicit(&ie->state, memory_order_acquire);
    if (w == ST_SHUT) {
      return 0;
    }
    if (concur__park(&ie->state, w, deadline, ie) == CONCUR_ETIMEDOUT) {
      w = atomic_load_explicit(&ie->state, memory_order_acquire);
      return w == ST_SHUT ? 0 : CONCUR_ETIMEDOUT;
    }
  }
}

static int inline_shutdown(concur_executor *ex, unsigned flags) {
  inline_exec *ie = as_inline(ex);
  atomic_fetch_or_explicit(&ie->state, ST_SHUT, memory_order_acq_rel);
  if ((flags & CONCUR_SHUTDOWN_WAIT) == 0) {
    return 0;
  }
  if (inside_own_task(ie)) {
    return CONCUR_EDEADLK;
  }
  return wait_idle(ie, CONCUR__NO_DEADLINE);
}

static int inline_shutdown_now(concur_executor *ex, concur_unrun_fn unrun,
                               void *ctx) {
  (void)unrun;
  (void)ctx;
  inline_exec *ie = as_inline(ex);
  atomic_fetch_or_explicit(&ie->state, ST_SHUT, memory_order_acq_rel);
  concur__mutex_lock(&ie->lock, ie);
  ie->now = true;
  for (run_node *n = ie->running; n != NULL; n = n->next) {
    (void)concur_future_request_cancel(n->future);
  }
  concur__mutex_unlock(&ie->lock);
  return 0;
}

static int inline_await_termination(concur_executor *ex, int64_t timeout_ns) {
  inline_exec *ie = as_inline(ex);
  concur__deadline deadline;
  int rc = concur__deadline_from_timeout(timeout_ns, &deadline);
  if (rc != 0) {
    return rc;
  }
  if ((atomic_load_explicit(&ie->state, memory_order_acquire) & ST_SHUT) == 0) {
    return CONCUR_ESTATE;
  }
  return wait_idle(ie, deadline);
}

static bool inline_is_shutdown(concur_executor *ex) {
  return (atomic_load_explicit(&as_inline(ex)->state, memory_order_acquire) &
          ST_SHUT) != 0;
}

static bool inline_is_terminated(concur_executor *ex) {
  return atomic_load_explicit(&as_inline(ex)->state, memory_order_acquire) ==
         ST_SHUT;
}

static void inline_stats(concur_executor *ex, concur_executor_stats *out) {
  inline_exec *ie = as_inline(ex);
  concur__mutex_lock(&ie->lock, ie);
  out->submitted = ie->submitted;
  out->queued = 0;
  out->running = ie->n_running;
  out->completed = ie->completed;
  out->failed = ie->failed;
  out->cancelled = ie->cancelled;
  out->rejected = ie->rejected;
  /* The inline executor's "workers" are the submitting threads while they
   * run a task. */
  out->workers = ie->n_running;
  out->active = ie->n_running;
  out->largest = ie->largest;
  concur__mutex_unlock(&ie->lock);
}

static void inline_free(concur_executor *ex) {
  inline_exec *ie = as_inline(ex);
  if (inside_own_task(ie)) {
    concur__panic("concur_executor_free called from one of the inline "
                  "executor's own tasks");
  }
  atomic_fetch_or_explicit(&ie->state, ST_SHUT, memory_order_acq_rel);
  /* Each submit's last access to ie is leave()'s decrement (it released
   * the lock before), so once the count is 0 nobody touches ie again. */
  (void)wait_idle(ie, CONCUR__NO_DEADLINE);
  concur__free(ie);
}

static const concur__executor_ops inline_ops = {
    "inline",
    inline_submit,
    inline_parallelism,
    inline_help,
    inline_shutdown,
    inline_shutdown_now,
    inline_await_termination,
    inline_is_shutdown,
    inline_is_terminated,
    inline_stats,
    inline_free,
};

int concur_inline_executor_new(concur_executor **out) {
  if (out == NULL) {
    return CONCUR_EINVAL;
  }
  *out = NULL;
  inline_exec *ie = concur__calloc(1, sizeof *ie);
  if (ie == NULL) {
    return CONCUR_ENOMEM;
  }
  ie->base.ops = &inline_ops;
  atomic_init(&ie->state, 0); /* calloc zeroed the lock: unlocked */
  *out = &ie->base;
  return 0;
}
