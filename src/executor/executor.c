/*
 * The public executor calls: argument checking, then dispatch through the
 * backend's operations table (executor_internal.h).
 *
 * Design
 * - Threads: any; this file keeps no state of its own. Every check that
 *   does not depend on the backend lives here, so a backend sees only valid
 *   input: a non-NULL executor, a task with a function, known shutdown flags,
 *   a non-negative timeout, a full-size zeroed stats struct.
 * - A submit turns (fn, arg) or a concur_task into a concur__task_record on
 *   the caller's stack; the backend copies what it keeps, so the record need
 *   not outlive the call.
 * - Argument errors are not submits: they return CONCUR_EINVAL before the
 *   backend is reached and are not counted as rejected.
 */
#include "executor/executor_algo.h"

#include <string.h>

/* The size of the first release's concur_task and concur_executor_stats: a
 * caller built against it (or a later one) is accepted. */
#define TASK_SIZE_MIN sizeof(concur_task)
#define STATS_SIZE_MIN sizeof(concur_executor_stats)

#define SHUTDOWN_FLAGS_ALL                                                     \
  ((unsigned)CONCUR_SHUTDOWN_WAIT | (unsigned)CONCUR_SHUTDOWN_CANCEL_FUTURES)

static int submit_record(concur_executor *ex, const concur__task_record *rec,
                         concur_future **out) {
  if (out != NULL) {
    *out = NULL;
  }
  if (ex == NULL || rec->fn == NULL) {
    return CONCUR_EINVAL;
  }
  return ex->ops->submit(ex, rec, out);
}

int concur_executor_submit(concur_executor *ex, concur_task_fn fn, void *arg,
                           concur_future **out) {
  concur__task_record rec = {fn, arg, NULL, NULL, NULL};
  return submit_record(ex, &rec, out);
}

int concur_executor_submit_task(concur_executor *ex, const concur_task *task,
                                concur_future **out) {
  if (task == NULL || task->size < TASK_SIZE_MIN) {
    if (out != NULL) {
      *out = NULL;
    }
    return CONCUR_EINVAL;
  }
  concur__task_record rec = {task->fn, task->arg, task->cleanup, NULL, NULL};
  return submit_record(ex, &rec, out);
}

int concur_executor_parallelism(concur_executor *ex) {
  if (ex == NULL) {
    return 0;
  }
  int n = ex->ops->parallelism(ex);
  return n < 1 ? 1 : n;
}

int concur_executor_help(concur_executor *ex) {
  if (ex == NULL) {
    return CONCUR_EINVAL;
  }
  return ex->ops->help(ex);
}

int concur_executor_shutdown(concur_executor *ex, unsigned flags) {
  if (ex == NULL || (flags & ~SHUTDOWN_FLAGS_ALL) != 0) {
    return CONCUR_EINVAL;
  }
  return ex->ops->shutdown(ex, flags);
}

int concur_executor_shutdown_now(concur_executor *ex, concur_unrun_fn unrun,
                                 void *ctx) {
  if (ex == NULL) {
    return CONCUR_EINVAL;
  }
  return ex->ops->shutdown_now(ex, unrun, ctx);
}

int concur_executor_await_termination(concur_executor *ex, int64_t timeout_ns) {
  if (ex == NULL || timeout_ns < 0) {
    return CONCUR_EINVAL;
  }
  return ex->ops->await_termination(ex, timeout_ns);
}

bool concur_executor_is_shutdown(concur_executor *ex) {
  return ex != NULL && ex->ops->is_shutdown(ex);
}

bool concur_executor_is_terminated(concur_executor *ex) {
  return ex != NULL && ex->ops->is_terminated(ex);
}

int concur_executor_get_stats(concur_executor *ex, concur_executor_stats *out) {
  if (ex == NULL || out == NULL || out->size < STATS_SIZE_MIN) {
    return CONCUR_EINVAL;
  }
  /* The backend fills a zeroed struct of this release's size; a caller built
   * against a later release keeps its extra fields untouched. */
  concur_executor_stats s;
  memset(&s, 0, sizeof s);
  s.size = sizeof s;
  ex->ops->stats(ex, &s);
  s.size = out->size;
  memcpy(out, &s, sizeof s);
  return 0;
}

void concur_executor_free(concur_executor *ex) {
  if (ex != NULL) {
    ex->ops->free(ex);
  }
}
