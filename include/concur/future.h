/**
 * @file concur/future.h
 * @brief Python's concurrent.futures.Future, wait and as_completed, for C,
 * plus the executor-side calls that let anyone write an executor.
 *
 * A concur_future is the eventual outcome of one task. It moves through
 *
 *     PENDING --> RUNNING --> FINISHED     (a result, or the task's failure)
 *        |
 *        +------------------> CANCELLED    (only from PENDING)
 *
 * (concur_future_set_result / _set_exception may also finish a PENDING
 * future directly, as in Python). FINISHED and CANCELLED are final: a future
 * is "done" once it is in either.
 *
 * A task is a concur_task_fn, `int fn(void *arg, void **result)`: 0 is
 * success, any nonzero value is the task's failure (the C "exception"), with
 * an optional message it attaches with concur_task_set_message. Waiting
 * calls report a failure as CONCUR_ETASK; concur_future_exception gives the
 * task's own code and message. A CONCUR_ETIMEDOUT from a waiting call always
 * means the wait ran out, never that the task returned CONCUR_ETIMEDOUT
 * (that is CONCUR_ETASK, with the code readable from the future).
 *
 * Ownership. A future is reference counted: whoever makes it holds one
 * reference; concur_future_ref adds one, concur_future_unref drops one, and
 * the last unref releases it. An executor keeps its own reference to each
 * future it queues, so the submitter and the executor may let go in either
 * order. Every call below requires the caller to hold a reference for the
 * duration of the call (the done callbacks are the one exception: a callback
 * may drop the last reference to its own future).
 *
 * The cleanup rule. A future made with a cleanup function (concur_future_new
 * _task / _new_full) calls `cleanup(arg, result)` exactly once, when its last
 * reference is released: whether the task ran, failed, was cancelled or was
 * dropped unrun. So the result stays readable until the last reference goes.
 * If the constructor itself fails, the caller keeps arg and no cleanup runs.
 * The one way to take arg back is concur_future_detach_task (for an executor's
 * shutdown_now), after which no cleanup runs.
 *
 * Happens-before. Whatever the submitter did before handing a future to the
 * thread that runs it (through an executor's queue, or any other
 * synchronizing hand-off) happens-before the task starts. Everything the task
 * did happens-before every call that observes the future done: a result or
 * exception call returning 0 or CONCUR_ETASK, a done predicate returning
 * true, a snapshot showing FINISHED, a done callback, concur_wait reporting it
 * done, and as_completed yielding it. The same holds for set_result and
 * set_exception: what the setting thread did before the call is visible to
 * whoever observes the outcome. cancel happens-before observing CANCELLED.
 *
 * Blocking calls take `timeout_ns` (see concur/base.h): CONCUR_NOWAIT polls,
 * CONCUR_FOREVER waits without a deadline, a negative value is CONCUR_EINVAL,
 * and a timed wait never returns CONCUR_ETIMEDOUT before its timeout.
 *
 * Every function is thread-safe. NULL handles give CONCUR_EINVAL (predicates
 * return false), never a crash.
 *
 * Writing an executor. An executor makes a task future (concur_future_new
 * _task, or concur_future_new_full to supply the future's memory from its own
 * free list so that steady-state submits allocate nothing), takes a reference
 * for itself, may attach a help hook (concur_future_set_help), queues it, and
 * a worker calls concur_future_run, which starts the task unless it was
 * cancelled, runs it as the thread's current task and completes the future.
 * A future completes with one atomic transition: only when a thread waits on
 * it, or a callback is registered, does completion also wake or call anyone.
 * Executors whose tasks are not concur_task_fn calls use the lower-level
 * concur_future_set_running_or_notify_cancel / _set_result / _set_exception.
 */
#ifndef CONCUR_FUTURE_H
#define CONCUR_FUTURE_H

#include "concur/base.h"

#ifdef __cplusplus
extern "C" {
#endif

/** A future: the eventual outcome of one task (opaque, reference counted). */
typedef struct concur_future concur_future;

/** The states of a future (a snapshot reports one of these). */
typedef enum concur_future_state {
  CONCUR_FUTURE_PENDING,   /**< not started; may still be cancelled */
  CONCUR_FUTURE_RUNNING,   /**< started, not finished; cannot be cancelled */
  CONCUR_FUTURE_CANCELLED, /**< cancelled before it started: final */
  CONCUR_FUTURE_FINISHED   /**< finished with a result or a failure: final */
} concur_future_state;

/**
 * Frees what a task owned, once: `cleanup(arg, result)` with the task's arg
 * and the result pointer the task stored (also when the task failed, so a
 * partly built result can be freed; NULL if it never ran). For a future
 * without a task, result is the value given to concur_future_set_result, or
 * NULL.
 */
typedef void (*concur_cleanup_fn)(void *arg, void *result);

/**
 * A done callback: runs once, when the future becomes done (or at once if it
 * already is). It may drop the last reference to `future`.
 */
typedef void (*concur_future_done_fn)(concur_future *future, void *arg);

/**
 * A help hook (see concur_future_set_help): called by a thread about to
 * block on `future` while it is still pending; it should run the task in the
 * calling thread (concur_future_run) if it is still queued, else return.
 */
typedef void (*concur_future_help_fn)(concur_future *future, void *arg);

/**
 * Memory for a future, supplied by an executor (see concur_future_new_full).
 * Fill with CONCUR_FUTURE_ALLOCATOR_INIT, then set alloc and free.
 */
typedef struct concur_future_allocator {
  /** sizeof(concur_future_allocator): lets fields be added later. */
  size_t size;
  /**
   * Returns at least `bytes` bytes (always concur_future_sizeof()), aligned
   * for any object type, or NULL (the constructor then fails with
   * CONCUR_ENOMEM). Called in the constructing thread.
   */
  void *(*alloc)(void *arg, size_t bytes);
  /**
   * Takes back memory from alloc, when the future's last reference is
   * released, after its cleanup ran; called in whatever thread released it.
   */
  void (*free)(void *arg, void *memory);
  /** Passed to alloc and free; must stay valid until every future made
   * with this allocator has been given back. */
  void *arg;
} concur_future_allocator;

#define CONCUR_FUTURE_ALLOCATOR_INIT                                           \
  { sizeof(concur_future_allocator), NULL, NULL, NULL }

/**
 * An atomic snapshot of a future (Python's Future._get_snapshot): every field
 * comes from one instant. Fill `size` with CONCUR_FUTURE_SNAPSHOT_INIT before
 * the call, so that fields can be added later.
 */
typedef struct concur_future_snapshot {
  /** sizeof(concur_future_snapshot). */
  size_t size;
  /** The state. A future being completed reads as RUNNING. */
  concur_future_state state;
  /** True once a cancel request reached it (concur_future_request_cancel). */
  bool cancel_requested;
  /** FINISHED with code 0: the result; NULL otherwise. */
  void *result;
  /** FINISHED: 0 for success, else the task's nonzero failure code. */
  int code;
  /**
   * FINISHED with a failure: its message, or NULL if none. Owned by the
   * future: valid while the caller holds a reference.
   */
  const char *message;
} concur_future_snapshot;

#define CONCUR_FUTURE_SNAPSHOT_INIT                                            \
  {                                                                            \
    sizeof(concur_future_snapshot), CONCUR_FUTURE_PENDING, false, NULL, 0,     \
        NULL                                                                   \
  }

/* ======================================================================== */
/** @name Making and releasing futures
 * @{ */

/**
 * Makes a pending future with no task, for code that completes it itself
 * (concur_future_set_result / _set_exception). The caller holds one
 * reference.
 * @return 0; CONCUR_EINVAL (out NULL); CONCUR_ENOMEM.
 */
CONCUR_API CONCUR_NODISCARD int concur_future_new(concur_future **out);

/**
 * Makes a pending future that carries a task record (fn, arg, cleanup), to
 * be started with concur_future_run. One allocation; the caller holds one
 * reference.
 * @param fn      the task (not NULL).
 * @param arg     passed to fn. On success the future owns it in the sense of
 *                the cleanup rule (see the file comment); on failure the
 *                caller keeps it and no cleanup runs.
 * @param cleanup NULL, or called exactly once at the last unref.
 * @return 0; CONCUR_EINVAL (out or fn NULL); CONCUR_ENOMEM.
 */
CONCUR_API CONCUR_NODISCARD int
concur_future_new_task(concur_future **out, concur_task_fn fn, void *arg,
                       concur_cleanup_fn cleanup);

/**
 * The general constructor: concur_future_new_task with fn allowed to be NULL
 * (a future without a task that still runs cleanup(arg, result) at its last
 * unref), and with memory from an executor's allocator instead of the heap.
 * An allocator that hands out memory inside larger blocks of its own may keep
 * per-future executor data (a queue link, ...) beside each future.
 * @param allocator NULL for the heap; else alloc and free must both be set.
 * @return 0; CONCUR_EINVAL (out NULL, allocator->size too small, alloc or
 *         free NULL); CONCUR_ENOMEM (the allocator returned NULL).
 */
CONCUR_API CONCUR_NODISCARD int
concur_future_new_full(concur_future **out, concur_task_fn fn, void *arg,
                       concur_cleanup_fn cleanup,
                       const concur_future_allocator *allocator);

/** The bytes an allocator is asked for per future. */
CONCUR_API size_t concur_future_sizeof(void);

/** Adds a reference and returns the future (NULL gives NULL). Never blocks. */
CONCUR_API concur_future *concur_future_ref(concur_future *future);

/**
 * Drops a reference (NULL is a no-op). The last one runs the cleanup, frees
 * the message and any callbacks never run (a future made by hand and
 * released while still pending drops them), and frees the memory. Releasing
 * a future more times than it was referenced is misuse and aborts where it
 * can be seen.
 */
CONCUR_API void concur_future_unref(concur_future *future);
/** @} */

/* ======================================================================== */
/** @name The Python Future API
 * @{ */

/**
 * Cancels a pending future (Future.cancel): it becomes CANCELLED, its waiters
 * wake and its callbacks run in the caller. Never blocks on the task; it may
 * wait for a help call in progress on this future to return.
 * @return true if the future is now cancelled (it was pending, or already
 *         cancelled); false if it is running or finished, or for NULL.
 */
CONCUR_API bool concur_future_cancel(concur_future *future);

/** True if the future was cancelled (false for NULL). */
CONCUR_API bool concur_future_cancelled(const concur_future *future);

/** True while the future is running (false for NULL). */
CONCUR_API bool concur_future_running(const concur_future *future);

/** True once the future is finished or cancelled (false for NULL). */
CONCUR_API bool concur_future_done(const concur_future *future);

/**
 * Waits up to timeout_ns for the future and gives its result
 * (Future.result). Before blocking on a pending future it calls the future's
 * help hook, if any (which may run the task in this thread, taking as long
 * as the task takes).
 * @param result receives the result on 0 (may be NULL). Owned by the task's
 *               cleanup: valid while the caller holds a reference.
 * @return 0; CONCUR_ETASK (the task failed: see concur_future_exception);
 *         CONCUR_ECANCELED; CONCUR_ETIMEDOUT (not done in time; CONCUR_NOWAIT
 *         on a future not done); CONCUR_EDEADLK (the caller is running this
 *         future's own task, which could never finish); CONCUR_EINVAL (NULL,
 *         negative timeout).
 */
CONCUR_API CONCUR_NODISCARD int
concur_future_result(concur_future *future, int64_t timeout_ns, void **result);

/**
 * Waits like concur_future_result and gives the task's own failure
 * (Future.exception).
 * @param code    receives 0 if the task succeeded, else its nonzero code
 *                (may be NULL).
 * @param message receives the failure's message, or NULL when there is none
 *                or the task succeeded (may be NULL). Owned by the future:
 *                valid while the caller holds a reference.
 * @return 0 (the future finished, successfully or not); CONCUR_ECANCELED;
 *         CONCUR_ETIMEDOUT; CONCUR_EDEADLK; CONCUR_EINVAL (as for result).
 */
CONCUR_API CONCUR_NODISCARD int concur_future_exception(concur_future *future,
                                                        int64_t timeout_ns,
                                                        int *code,
                                                        const char **message);

/**
 * Registers a done callback (Future.add_done_callback). Callbacks run
 * exactly once each, in registration order, in the thread that completes
 * the future (or cancels it); if the future is already done, this one runs
 * at once in the caller. The first callback of a future needs no allocation.
 * Callbacks registered on a future made by hand that is released while still
 * pending never run.
 * @return 0; CONCUR_EINVAL (future or fn NULL); CONCUR_ENOMEM (nothing
 *         registered, nothing run).
 */
CONCUR_API CONCUR_NODISCARD int
concur_future_add_done_callback(concur_future *future, concur_future_done_fn fn,
                                void *arg);

/**
 * Takes an atomic snapshot (see concur_future_snapshot).
 * @return 0; CONCUR_EINVAL (NULL, out->size smaller than the first
 *         release's struct).
 */
CONCUR_API CONCUR_NODISCARD int
concur_future_get_snapshot(const concur_future *future,
                           concur_future_snapshot *out);
/** @} */

/* ======================================================================== */
/** @name Cooperative cancellation of running tasks
 * Python cannot stop a running task; concur lets the task stop itself: a
 * cancel request sets a flag that the running task polls with
 * concur_task_cancel_requested(). An executor's shutdown_now sends it to
 * every running task.
 * @{ */

/**
 * Asks the task to stop: a pending future is cancelled as by
 * concur_future_cancel; a running one gets its cancel-request flag set.
 * Never blocks on the task.
 * @return true if the future is now cancelled or its running task was asked
 *         to stop; false if it had already finished, or for NULL.
 */
CONCUR_API bool concur_future_request_cancel(concur_future *future);

/** True once a cancel request reached the future (false for NULL). */
CONCUR_API bool concur_future_cancel_requested(const concur_future *future);

/**
 * For a task: true once its future received a cancel request. A task that an
 * executor runs without a future (submitted with no future asked for) has no
 * future to receive one: for it, true once its executor's shutdown_now was
 * called. False outside a task. Cheap enough to poll in an inner loop.
 * Happens-before: what the requester did before the request is visible to
 * the task once this returns true.
 */
CONCUR_API bool concur_task_cancel_requested(void);

/**
 * For a task: attaches a message (copied) to the failure it is about to
 * return; it replaces an earlier message and is dropped if the task returns
 * 0. Read back with concur_future_exception. A task run by an executor
 * without a future may attach one too; nobody can read it, and it is
 * dropped when the task returns.
 * @return 0; CONCUR_EINVAL (message NULL, or the caller is not running a
 *         task); CONCUR_ENOMEM (the earlier message, if any, is kept).
 */
CONCUR_API CONCUR_NODISCARD int concur_task_set_message(const char *message);

/**
 * The future whose task the calling thread is running through
 * concur_future_run (the innermost one when tasks run others inline), or
 * NULL. Borrowed: valid while the task runs.
 */
CONCUR_API concur_future *concur_future_current(void);
/** @} */

/* ======================================================================== */
/** @name The executor side
 * For code that runs tasks. Rules for executors: start, cancel and complete
 * futures outside any lock that the future's help hook takes, and keep the
 * hook's arg valid while any of the executor's futures is pending and until
 * every help call it is executing has returned.
 * @{ */

/**
 * Runs a task future in the calling thread: starts it unless it was
 * cancelled, makes it the thread's current task (for
 * concur_task_cancel_requested, concur_task_set_message and
 * concur_future_current), calls fn(arg, &result) and completes the future
 * with the result (return 0) or the failure (nonzero return, with the
 * message the task attached). Blocks only for the task. While it runs, the
 * future can be completed only by this call: set_result and set_exception
 * return CONCUR_ESTATE.
 * @return 0 (the task ran; its outcome is in the future); CONCUR_ECANCELED
 *         (the future was cancelled: the task did not run, waiters were
 *         notified); CONCUR_ESTATE (already started or done);
 *         CONCUR_EINVAL (NULL, or a future without a task).
 */
CONCUR_API CONCUR_NODISCARD int concur_future_run(concur_future *future);

/**
 * Moves a pending future to RUNNING, or acknowledges a cancelled one
 * (Future.set_running_or_notify_cancel). Waits, briefly, for help calls in
 * progress on this future to return.
 * @return 1 (now running: run the task and complete the future); 0 (it was
 *         cancelled: do not run it; its waiters have been woken);
 *         CONCUR_ESTATE (already running or finished, or a cancelled future
 *         acknowledged twice: Python's RuntimeError); CONCUR_EINVAL (NULL).
 */
CONCUR_API CONCUR_NODISCARD int
concur_future_set_running_or_notify_cancel(concur_future *future);

/**
 * Finishes a pending or running future with a result (Future.set_result):
 * wakes its waiters and runs its callbacks in the caller.
 * @return 0; CONCUR_ESTATE (already done or being completed, or its task
 *         is being run by concur_future_run: the first outcome is kept);
 *         CONCUR_EINVAL (NULL).
 */
CONCUR_API CONCUR_NODISCARD int concur_future_set_result(concur_future *future,
                                                         void *result);

/**
 * Finishes a pending or running future with a failure
 * (Future.set_exception): waiters see CONCUR_ETASK.
 * @param code    the failure code: any nonzero value.
 * @param message NULL or a message (copied).
 * @return 0; CONCUR_ESTATE (as for set_result); CONCUR_EINVAL (NULL, code
 *         0); CONCUR_ENOMEM (the message could not be copied: the future is
 *         unchanged).
 */
CONCUR_API CONCUR_NODISCARD int
concur_future_set_exception(concur_future *future, int code,
                            const char *message);

/**
 * Attaches the executor-neutral help hook: a thread about to block on this
 * future (result, exception, concur_wait, as_completed) while it is still
 * pending calls fn(future, arg) first, once per blocking call, which should
 * run the task inline if it is still queued. The future never leaves PENDING
 * (start, cancel, complete) while a help call is in progress, except through
 * the helping thread itself, so the hook never sees a future whose executor
 * let go of it. Replaces an earlier hook; fn NULL removes it.
 * @return 0; CONCUR_ESTATE (the future is no longer pending);
 *         CONCUR_EINVAL (future NULL).
 */
CONCUR_API CONCUR_NODISCARD int concur_future_set_help(concur_future *future,
                                                       concur_future_help_fn fn,
                                                       void *arg);

/**
 * Takes a never-started task back (for an executor's shutdown_now): cancels
 * the future if it is still pending, and hands the caller its fn and arg;
 * the cleanup will not run, and the caller owns arg.
 * @param fn  receives the task function (may be NULL).
 * @param arg receives the task's arg (may be NULL).
 * @return 0; CONCUR_ESTATE (the task started or the future finished, or it
 *         was already detached: the cleanup rule stands); CONCUR_EINVAL
 *         (NULL, or a future without a task).
 */
CONCUR_API CONCUR_NODISCARD int concur_future_detach_task(concur_future *future,
                                                          concur_task_fn *fn,
                                                          void **arg);
/** @} */

/* ======================================================================== */
/** @name wait and as_completed
 * Both take an array of futures the caller holds references to, which may
 * contain duplicates (each future is counted once). Before blocking they call
 * the help hook of the still-pending futures.
 * @{ */

/** When concur_wait returns (concurrent.futures' constants). */
typedef enum concur_wait_mode {
  /** When any future is done (finished or cancelled). */
  CONCUR_FIRST_COMPLETED = 1,
  /** When any future finishes with a failure, or all are done; a cancelled
   * future is not a failure. */
  CONCUR_FIRST_EXCEPTION = 2,
  /** When all futures are done. */
  CONCUR_ALL_COMPLETED = 3
} concur_wait_mode;

/**
 * Waits up to timeout_ns for the condition `mode` names over futures[0..n)
 * (concurrent.futures.wait), then reports which distinct futures are done.
 * @param futures     n futures (NULL is allowed only when n is 0).
 * @param done        NULL, or room for n pointers: receives the distinct
 *                    futures that are done, in order of first appearance.
 * @param n_done      NULL, or receives how many were stored in done.
 * @param not_done    NULL, or room for n pointers: the distinct futures not
 *                    done.
 * @param n_not_done  NULL, or receives that count.
 * Both sets come from one scan after the wait, are borrowed (no reference is
 * added) and are filled on 0 and on CONCUR_ETIMEDOUT. n 0 returns 0 at once.
 * @return 0 (the condition holds); CONCUR_ETIMEDOUT (it did not hold in
 *         time: the sets show the partial split); CONCUR_EINVAL (futures
 *         NULL with n > 0, a NULL element, an unknown mode, a negative
 *         timeout); CONCUR_ENOMEM (more than 8 futures need a work array
 *         that could not be allocated).
 */
CONCUR_API CONCUR_NODISCARD int
concur_wait(concur_future *const *futures, size_t n, int64_t timeout_ns,
            concur_wait_mode mode, concur_future **done, size_t *n_done,
            concur_future **not_done, size_t *n_not_done);

/** An as_completed iterator (opaque; single-threaded: one consumer). */
typedef struct concur_as_completed concur_as_completed;

/**
 * Starts iterating over futures[0..n) as they complete
 * (concurrent.futures.as_completed): futures already done first, in input
 * order, then the others in the order they complete, cancelled ones
 * included, each distinct future once. The iterator takes its own reference
 * to every future it has not yet yielded, and holds none to those it has.
 * @param timeout_ns for the whole iteration, counted from this call.
 * @return 0; CONCUR_EINVAL (out NULL, futures NULL with n > 0, a NULL
 *         element, negative timeout); CONCUR_ENOMEM.
 */
CONCUR_API CONCUR_NODISCARD int
concur_as_completed_new(concur_as_completed **out,
                        concur_future *const *futures, size_t n,
                        int64_t timeout_ns);

/**
 * Gives the next completed future, blocking until one completes or the
 * iteration's deadline passes. Like read(2) it returns the count it gave.
 * @param out receives the future and the iterator's reference to it: the
 *            caller must concur_future_unref it. NULL when none is given.
 * @return 1 (one future given); 0 (every future has been given);
 *         CONCUR_ETIMEDOUT (none completed before the deadline:
 *         concur_as_completed_remaining tells how many are unfinished; a
 *         later call still gives futures that completed since);
 *         CONCUR_EINVAL (it or out NULL).
 */
CONCUR_API CONCUR_NODISCARD int
concur_as_completed_next(concur_as_completed *it, concur_future **out);

/** How many distinct futures have not been given yet (0 for NULL). */
CONCUR_API size_t concur_as_completed_remaining(const concur_as_completed *it);

/** How many distinct futures the iteration covers (0 for NULL). */
CONCUR_API size_t concur_as_completed_total(const concur_as_completed *it);

/**
 * Ends the iteration and drops its references to the futures not yet given
 * (NULL is a no-op).
 */
CONCUR_API void concur_as_completed_free(concur_as_completed *it);
/** @} */

#ifdef __cplusplus
}
#endif

#endif /* CONCUR_FUTURE_H */
