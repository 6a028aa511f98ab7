/*
 * The executor operations table (floor 4): what every backend fills in.
 *
 * Design
 * - concur_executor is a header that a backend embeds as the first member of
 *   its own struct; `ops` says which backend it is. The public
 * concur_executor_* calls check their arguments, then dispatch through the
 * table, so argument checking lives in one place (src/executor/executor.c) and
 * a backend sees only valid input.
 * - A task reaches a backend as a concur__task_record. Besides the user's
 *   (fn, arg, cleanup) it carries an optional completion hook, on_done, that
 *   floor-4 algorithms (task groups, map) use to learn that a task reached a
 *   final state without keeping its future. A backend calls on_done exactly
 *   once per accepted task, in the thread where the task reached its final
 *   state (ran, failed, cancelled, dropped, or handed back by shutdown_now),
 *   after the future (if any) was completed, and never under a lock of its
 *   own.
 * - submit with out == NULL is fire-and-forget: the backend need not make a
 *   future at all, but must still honour cleanup and on_done.
 */
#ifndef CONCUR_EXECUTOR_INTERNAL_H
#define CONCUR_EXECUTOR_INTERNAL_H

#include "concur/executor.h"

/** What a task ended as, for on_done. */
typedef enum concur__outcome {
  CONCUR__OUTCOME_OK,       /* ran and returned 0 */
  CONCUR__OUTCOME_FAILED,   /* ran and returned nonzero */
  CONCUR__OUTCOME_CANCELLED /* never ran: cancelled, dropped or handed back */
} concur__outcome;

typedef struct concur__task_record {
  concur_task_fn fn;
  void *arg;
  concur_cleanup_fn cleanup; /* NULL for none */
  /* NULL for none; called once as on_done(ctx, outcome, code). */
  void (*on_done)(void *ctx, concur__outcome outcome, int code);
  void *ctx;
} concur__task_record;

typedef struct concur__executor_ops {
  const char *name;
  /* Accepts a task (valid: fn non-NULL). Same errors as
   * concur_executor_submit; on error nothing of the record is kept, no
   * cleanup and no on_done runs. */
  int (*submit)(concur_executor *ex, const concur__task_record *task,
                concur_future **out);
  int (*parallelism)(concur_executor *ex);
  /* 1 if it ran a queued task in the caller, else 0. */
  int (*help)(concur_executor *ex);
  /* flags already validated. */
  int (*shutdown)(concur_executor *ex, unsigned flags);
  int (*shutdown_now)(concur_executor *ex, concur_unrun_fn unrun, void *ctx);
  /* deadline form of await_termination: 0, CONCUR_ETIMEDOUT, CONCUR_ESTATE. */
  int (*await_termination)(concur_executor *ex, int64_t timeout_ns);
  bool (*is_shutdown)(concur_executor *ex);
  bool (*is_terminated)(concur_executor *ex);
  /* out is a full-size, zeroed struct whose size field is set. */
  void (*stats)(concur_executor *ex, concur_executor_stats *out);
  /* Shut down, wait for every task, release everything. */
  void (*free)(concur_executor *ex);
} concur__executor_ops;

struct concur_executor {
  const concur__executor_ops *ops; /* immutable after init */
};

#endif /* CONCUR_EXECUTOR_INTERNAL_H */
