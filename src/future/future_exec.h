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

#include <stddef.h>

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

#endif /* CONCUR_FUTURE_EXEC_H */
