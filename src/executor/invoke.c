/*
 * apply, invoke_all and invoke_any: run tasks, wait for one or all.
 *
 * Design
 * - Threads: the calling thread waits; the executor's threads run the
 *   tasks. Waiting goes through the futures (concur_future_result /
 *   _exception call the future's help hook first, so a call from one of the
 *   executor's own tasks runs its task inline instead of deadlocking) or,
 *   for invoke_any, through a counter word in a "box block" with
 *   concur_executor_help before parking.
 * - Boxes: where an algorithm hands a result out (apply with a cleanup,
 *   invoke_any), the task runs through a box that keeps the user's fn,
 *   arg, cleanup and the outcome, so that the cleanup can get NULL for a
 *   result handed to the caller. A box's cleanup runs once, when both the
 *   task has ended (on_done: ENDED) and the algorithm has let go of it
 *   (RELEASED): whichever of the two atomic flag settings comes second runs
 *   it. The boxes of one call share one allocation, freed when the
 *   algorithm and every accepted task's on_done have dropped their
 *   references.
 * - invoke_any does not keep an as_completed iterator: each box's on_done
 *   adds 2 to the block's `word` (bit 0: a waiter may be parked), and the
 *   waiter scans the boxes that ended. Losers are cancelled (or asked to
 *   stop if running) and not waited for.
 * - Happens-before: a box's outcome is written by its task and on_done
 *   before the release of ENDED / `word`; the waiter reads it after an
 *   acquire of ENDED.
 */
#include "executor/executor_algo.h"

#include <stdatomic.h>
#include <string.h>

#define BOX_ENDED 1u
#define BOX_RELEASED 2u

#define WORD_WAITER 1u
#define WORD_ONE 2u

struct box_block;

typedef struct box {
  struct box_block *block;   /* immutable after init */
  concur_task_fn fn;         /* immutable after init */
  void *arg;                 /* immutable after init */
  concur_cleanup_fn cleanup; /* immutable after init */
  void *result;              /* written by the task, read after ENDED */
  concur__outcome outcome;   /* written by on_done before ENDED */
  int code;                  /* written by on_done before ENDED */
  bool handed;               /* written by the algorithm before RELEASED */
  _Atomic uint32_t flags;    /* atomic: BOX_ENDED | BOX_RELEASED */
} box;

typedef struct box_block {
  _Atomic size_t refs;   /* atomic: the algorithm + each accepted task */
  _Atomic uint32_t word; /* atomic: ends * WORD_ONE | WORD_WAITER */
  size_t n;              /* immutable after init */
  box boxes[];
} box_block;

static box_block *block_new(size_t n) {
  if (n > (SIZE_MAX - sizeof(box_block)) / sizeof(box)) {
    return NULL;
  }
  box_block *b = concur__calloc(1, sizeof(box_block) + n * sizeof(box));
  if (b != NULL) {
    atomic_init(&b->refs, 1);
    atomic_init(&b->word, 0);
    b->n = n;
  }
  return b;
}

static void block_unref(box_block *b) {
  if (atomic_fetch_sub_explicit(&b->refs, 1, memory_order_acq_rel) == 1) {
    concur__free(b);
  }
}

static void box_finish(box *x) {
  if (x->cleanup != NULL) {
    x->cleanup(x->arg, x->handed ? NULL : x->result);
  }
}

static int box_run(void *arg, void **result) {
  box *x = arg;
  x->result = NULL;
  int rc = x->fn(x->arg, &x->result);
  *result = x->result;
  return rc;
}

static void box_done(void *ctx, concur__outcome outcome, int code) {
  box *x = ctx;
  box_block *b = x->block;
  x->outcome = outcome;
  x->code = code;
  /* acq_rel: publishes the outcome; sees `handed` if released first. */
  uint32_t old =
      atomic_fetch_or_explicit(&x->flags, BOX_ENDED, memory_order_acq_rel);
  if ((old & BOX_RELEASED) != 0) {
    box_finish(x);
  }
  uint32_t w =
      atomic_fetch_add_explicit(&b->word, WORD_ONE, memory_order_release);
  if ((w & WORD_WAITER) != 0) {
    concur__unpark(&b->word, INT32_MAX);
  }
  block_unref(b);
}

static void box_release(box *x, bool handed) {
  x->handed = handed;
  uint32_t old =
      atomic_fetch_or_explicit(&x->flags, BOX_RELEASED, memory_order_acq_rel);
  if ((old & BOX_ENDED) != 0) {
    box_finish(x);
  }
}

/* Submits box i of the block; on success the task holds a block ref. */
static int box_submit(concur_executor *ex, box_block *b, size_t i,
                      const concur_task *task, concur_future **out) {
  box *x = &b->boxes[i];
  x->block = b;
  x->fn = task->fn;
  x->arg = task->arg;
  x->cleanup = task->cleanup;
  atomic_init(&x->flags, 0);
  atomic_fetch_add_explicit(&b->refs, 1, memory_order_relaxed);
  concur__task_record rec = {box_run, x, NULL, box_done, x};
  int rc = ex->ops->submit(ex, &rec, out);
  if (rc != 0) {
    atomic_fetch_sub_explicit(&b->refs, 1, memory_order_relaxed);
  }
  return rc;
}

static bool task_ok(const concur_task *t) {
  return t != NULL && t->size >= sizeof(concur_task) && t->fn != NULL;
}

/* The timeout left until a deadline, for calls that take a timeout. */
static int64_t remaining(concur__deadline deadline) {
  if (deadline == CONCUR__NO_DEADLINE) {
    return CONCUR_FOREVER;
  }
  int64_t now = concur__now_ns();
  return deadline > now ? deadline - now : CONCUR_NOWAIT;
}

/* ---- apply ----------------------------------------------------------------
 */

int concur_executor_apply_task(concur_executor *ex, const concur_task *task,
                               int64_t timeout_ns, void **result, int *code) {
  if (result != NULL) {
    *result = NULL;
  }
  if (code != NULL) {
    *code = 0;
  }
  if (ex == NULL || !task_ok(task) || timeout_ns < 0) {
    return CONCUR_EINVAL;
  }
  concur_future *f = NULL;
  box_block *b = NULL;
  int rc;
  if (task->cleanup == NULL) {
    concur__task_record rec = {task->fn, task->arg, NULL, NULL, NULL};
    rc = ex->ops->submit(ex, &rec, &f);
  } else {
    b = block_new(1);
    if (b == NULL) {
      return CONCUR_ENOMEM;
    }
    rc = box_submit(ex, b, 0, task, &f);
    if (rc != 0) {
      block_unref(b);
    }
  }
  if (rc != 0) {
    return rc;
  }
  void *value = NULL;
  rc = concur_future_result(f, timeout_ns, &value);
  if (rc == CONCUR_ETASK && code != NULL) {
    int c = 0;
    if (concur_future_exception(f, CONCUR_NOWAIT, &c, NULL) == 0) {
      *code = c;
    }
  } else if (rc == CONCUR_ETIMEDOUT || rc == CONCUR_EDEADLK) {
    (void)concur_future_request_cancel(f);
  }
  bool handed = rc == 0 && result != NULL;
  if (handed) {
    *result = value;
  }
  if (b != NULL) {
    box_release(&b->boxes[0], handed);
    block_unref(b);
  }
  concur_future_unref(f);
  return rc;
}

int concur_executor_apply(concur_executor *ex, concur_task_fn fn, void *arg,
                          int64_t timeout_ns, void **result, int *code) {
  concur_task task = CONCUR_TASK_INIT(fn, arg);
  return concur_executor_apply_task(ex, &task, timeout_ns, result, code);
}

/* ---- invoke_all -----------------------------------------------------------
 */

int concur_executor_invoke_all(concur_executor *ex, const concur_task *tasks,
                               size_t n, int64_t timeout_ns,
                               concur_future **futures) {
  concur__deadline deadline;
  if (ex == NULL || (n > 0 && (tasks == NULL || futures == NULL)) ||
      concur__deadline_from_timeout(timeout_ns, &deadline) != 0) {
    return CONCUR_EINVAL;
  }
  for (size_t i = 0; i < n; i++) {
    if (!task_ok(&tasks[i])) {
      return CONCUR_EINVAL;
    }
  }
  for (size_t i = 0; i < n; i++) {
    futures[i] = NULL;
  }
  for (size_t i = 0; i < n; i++) {
    int rc = concur_executor_submit_task(ex, &tasks[i], &futures[i]);
    if (rc != 0) {
      for (size_t j = 0; j < i; j++) {
        (void)concur_future_request_cancel(futures[j]);
      }
      return rc;
    }
  }
  /* Waiting on each in turn is waiting for all; each wait helps. */
  int rc = 0;
  for (size_t i = 0; i < n && rc == 0; i++) {
    int w =
        concur_future_exception(futures[i], remaining(deadline), NULL, NULL);
    if (w == CONCUR_ETIMEDOUT) {
      rc = CONCUR_ETIMEDOUT;
    }
  }
  if (rc != 0) {
    for (size_t i = 0; i < n; i++) {
      if (!concur_future_done(futures[i])) {
        (void)concur_future_request_cancel(futures[i]);
      }
    }
  }
  return rc;
}

/* ---- invoke_any -----------------------------------------------------------
 */

/* Waits until the block's word moves past `seen`, helping first. */
static int await_word(concur_executor *ex, box_block *b, uint32_t seen,
                      concur__deadline deadline) {
  for (;;) {
    uint32_t w = atomic_load_explicit(&b->word, memory_order_acquire);
    if ((w & ~WORD_WAITER) != (seen & ~WORD_WAITER)) {
      return 0;
    }
    if (concur__deadline_passed(deadline)) {
      return CONCUR_ETIMEDOUT;
    }
    if (concur_executor_help(ex) > 0) {
      continue;
    }
    if ((w & WORD_WAITER) == 0) {
      if (!atomic_compare_exchange_weak_explicit(&b->word, &w, w | WORD_WAITER,
                                                 memory_order_acquire,
                                                 memory_order_acquire)) {
        continue;
      }
      w |= WORD_WAITER;
    }
    (void)concur__park(&b->word, w, deadline, b);
  }
}

int concur_executor_invoke_any(concur_executor *ex, const concur_task *tasks,
                               size_t n, int64_t timeout_ns, size_t *index,
                               void **result, int *code) {
  if (index != NULL) {
    *index = 0;
  }
  if (result != NULL) {
    *result = NULL;
  }
  if (code != NULL) {
    *code = 0;
  }
  concur__deadline deadline;
  if (ex == NULL || n == 0 || tasks == NULL ||
      concur__deadline_from_timeout(timeout_ns, &deadline) != 0) {
    return CONCUR_EINVAL;
  }
  for (size_t i = 0; i < n; i++) {
    if (!task_ok(&tasks[i])) {
      return CONCUR_EINVAL;
    }
  }
  if (n > SIZE_MAX / sizeof(concur_future *) / 2) {
    return CONCUR_ENOMEM;
  }
  concur_future **fs = concur__calloc(n, sizeof *fs);
  if (fs == NULL) {
    return CONCUR_ENOMEM;
  }
  bool *seen = concur__calloc(n, sizeof *seen);
  box_block *b = seen == NULL ? NULL : block_new(n);
  if (b == NULL) {
    concur__free(seen);
    concur__free(fs);
    return CONCUR_ENOMEM;
  }

  size_t accepted = 0;
  int rc = 0;
  for (; accepted < n; accepted++) {
    rc = box_submit(ex, b, accepted, &tasks[accepted], &fs[accepted]);
    if (rc != 0) {
      break;
    }
  }

  size_t winner = n;
  size_t last_failed = n;
  int last_code = 0;
  if (rc == 0) {
    size_t ended = 0;
    uint32_t w = atomic_load_explicit(&b->word, memory_order_acquire);
    while (winner == n && ended < n) {
      for (size_t i = 0; i < n && winner == n; i++) {
        if (seen[i] ||
            (atomic_load_explicit(&b->boxes[i].flags, memory_order_acquire) &
             BOX_ENDED) == 0) {
          continue;
        }
        seen[i] = true;
        ended++;
        if (b->boxes[i].outcome == CONCUR__OUTCOME_OK) {
          winner = i;
        } else if (b->boxes[i].outcome == CONCUR__OUTCOME_FAILED) {
          last_failed = i;
          last_code = b->boxes[i].code;
        }
      }
      if (winner == n && ended < n) {
        if (await_word(ex, b, w, deadline) != 0) {
          rc = CONCUR_ETIMEDOUT;
          break;
        }
        w = atomic_load_explicit(&b->word, memory_order_acquire);
      }
    }
    if (rc == 0 && winner == n) {
      rc = CONCUR_ETASK;
      if (index != NULL && last_failed < n) {
        *index = last_failed;
      }
      if (code != NULL) {
        *code = last_code;
      }
    }
  }

  for (size_t i = 0; i < accepted; i++) {
    bool handed = false;
    if (i == winner) {
      if (index != NULL) {
        *index = i;
      }
      if (result != NULL) {
        *result = b->boxes[i].result;
        handed = true;
      }
    } else if (!concur_future_done(fs[i])) {
      (void)concur_future_request_cancel(fs[i]);
    }
    box_release(&b->boxes[i], handed);
    concur_future_unref(fs[i]);
  }
  block_unref(b);
  concur__free(seen);
  concur__free(fs);
  return rc;
}
