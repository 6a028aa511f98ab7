/*
 * Private to the library: what an executor of this library may do to a
 * future beyond the public API. Futures still know nothing about executors;
 * this only lets an executor set up a fresh future in one step, without the
 * lock round trips of concur_future_set_help and
 * concur_future_add_done_callback.
 */
#ifndef CONCUR_FUTURE_EXEC_H
#define CONCUR_FUTURE_EXEC_H

#include "concur/future.h"

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

typedef struct concur__future_hooks {
  /* As concur_future_set_help; NULL for none. */
  concur_future_help_fn help;
  void *help_arg;
  /*
   * Runs exactly once if the future is cancelled, in the cancelling thread,
   * right after the step that cancelled it and before waiters wake and done
   * callbacks run; never otherwise. NULL for none.
   */
  concur_future_done_fn on_cancel;
  void *on_cancel_arg;
} concur__future_hooks;

/*
 * Sets the hooks of a fresh pending future that no other thread can see yet
 * (plain stores), and its reference count to refs (at least 1).
 */
void concur__future_prepare(concur_future *f, const concur__future_hooks *h,
                            size_t refs);

/*
 * The task the calling thread runs, innermost first: concur_future_run makes
 * one for its future; an executor makes one with concur__task_enter for a
 * task it runs without a future. Lives on the running thread's stack.
 */
typedef struct concur__task_frame {
  concur_future *future; /* NULL: a task without a future */
  /* Without a future: the task's cancel request is *cancel_word &
   * cancel_mask (a word the executor sets, such as its shutdown_now flag). */
  const _Atomic uint32_t *cancel_word;
  uint32_t cancel_mask;
  char *message; /* what concur_task_set_message attached, owned */
  struct concur__task_frame *prev;
} concur__task_frame;

/*
 * Around a task run without a future: concur_task_cancel_requested() answers
 * from (*cancel_word & cancel_mask) while it runs, and
 * concur_task_set_message() accepts messages, which leave drops (nobody
 * could read them). concur_future_current() is NULL inside it.
 */
void concur__task_enter(concur__task_frame *frame,
                        const _Atomic uint32_t *cancel_word,
                        uint32_t cancel_mask);
void concur__task_leave(concur__task_frame *frame);

#endif /* CONCUR_FUTURE_EXEC_H */
