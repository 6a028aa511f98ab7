/**
 * @file concur/executor.h
 * @brief The executor interface (floor 4): one set of calls that works on
 * every backend — the inline executor, the thread pool, later process and
 * MPI pools — and the algorithms written once over it.
 *
 * An executor runs tasks (concur_task_fn). Every backend is made by its own
 * constructor (concur_inline_executor_new, concur_thread_pool_new, ...) and
 * used only through these calls; concur_executor_free releases any of them.
 *
 * Ownership of a task's arg (the cleanup rule): when a submit returns an
 * error, the caller keeps arg and no cleanup runs. Otherwise the task's
 * optional cleanup(arg, result) runs exactly once — whether the task ran,
 * failed, was cancelled or was dropped — when the last reference to its
 * future is released (at once after the task ends when no future was asked
 * for), so a result stays readable while anyone holds the future. The one
 * exception is concur_executor_shutdown_now, which hands never-started tasks
 * back to the caller, who then owns their args, and runs no cleanup.
 *
 * Happens-before: everything the submitting thread did before a submit
 * happens-before the task starts; everything the task did happens-before
 * every call that observes its future done (see concur/future.h), and before
 * concur_executor_await_termination returns 0.
 */
#ifndef CONCUR_EXECUTOR_H
#define CONCUR_EXECUTOR_H

#include "concur/base.h"
#include "concur/future.h"

#ifdef __cplusplus
extern "C" {
#endif

/** An executor of any backend (opaque). */
typedef struct concur_executor concur_executor;

/** A task record for concur_executor_submit_task. Fill with CONCUR_TASK_INIT.
 */
typedef struct concur_task {
  /** sizeof(concur_task): lets fields be added later. */
  size_t size;
  /** The task (not NULL). */
  concur_task_fn fn;
  /** Its argument; see the cleanup rule in the file comment. */
  void *arg;
  /** NULL, or run exactly once as cleanup(arg, result) (the cleanup rule). */
  concur_cleanup_fn cleanup;
} concur_task;

#define CONCUR_TASK_INIT(fn, arg)                                              \
  { sizeof(concur_task), (fn), (arg), NULL }

/** Flags for concur_executor_shutdown. */
enum {
  /** Wait until every accepted task has finished and the workers are gone. */
  CONCUR_SHUTDOWN_WAIT = 1u << 0,
  /** Cancel every task that has not started (its future: CANCELLED). */
  CONCUR_SHUTDOWN_CANCEL_FUTURES = 1u << 1
};

/**
 * Counters of an executor. They always add up:
 * submitted == queued + running + completed + failed + cancelled, where
 * submitted counts accepted submits and rejected the submits that returned
 * an error. Read with concur_executor_get_stats; fill `size` with
 * CONCUR_EXECUTOR_STATS_INIT first.
 */
typedef struct concur_executor_stats {
  size_t size;        /**< sizeof(concur_executor_stats) */
  uint64_t submitted; /**< accepted submits */
  uint64_t queued;    /**< accepted, not started, not cancelled */
  uint64_t running;   /**< running now */
  uint64_t completed; /**< finished with 0 */
  uint64_t failed;    /**< finished with a nonzero code */
  uint64_t cancelled; /**< cancelled or dropped before they started */
  uint64_t rejected;  /**< submits that returned an error */
  uint64_t workers;   /**< workers alive now (pool size) */
  uint64_t active;    /**< workers running a task now */
  uint64_t largest;   /**< the most workers ever alive at once */
} concur_executor_stats;

#define CONCUR_EXECUTOR_STATS_INIT                                             \
  { sizeof(concur_executor_stats), 0, 0, 0, 0, 0, 0, 0, 0, 0, 0 }

/** Receives each never-started task that concur_executor_shutdown_now hands
 * back. */
typedef void (*concur_unrun_fn)(void *ctx, concur_task_fn fn, void *arg);

/**
 * Submits a task (ThreadPoolExecutor.submit).
 * @param out NULL for fire-and-forget (no future is kept; the cheapest way),
 *            else receives a new future the caller must concur_future_unref.
 * @return 0; CONCUR_ESHUTDOWN (after shutdown); CONCUR_EREJECTED (a full
 *         pool's abort policy); CONCUR_ETIMEDOUT (the block policy waited
 *         for room in vain); CONCUR_EBROKEN (the executor is broken);
 *         CONCUR_EAGAIN (no worker is alive and none could be started);
 *         CONCUR_ENOMEM; CONCUR_EINVAL (ex or fn NULL). On any error the
 *         caller keeps arg.
 */
CONCUR_API CONCUR_NODISCARD int concur_executor_submit(concur_executor *ex,
                                                       concur_task_fn fn,
                                                       void *arg,
                                                       concur_future **out);

/** As concur_executor_submit, with a task record (cleanup). */
CONCUR_API CONCUR_NODISCARD int
concur_executor_submit_task(concur_executor *ex, const concur_task *task,
                            concur_future **out);

/** How many tasks the executor runs at once at most (>= 1; 0 for NULL). */
CONCUR_API int concur_executor_parallelism(concur_executor *ex);

/**
 * Runs one queued task in the calling thread, if there is one.
 * @return 1 if a task ran, 0 if none was queued; CONCUR_EINVAL (NULL).
 */
CONCUR_API int concur_executor_help(concur_executor *ex);

/**
 * Stops accepting tasks (Executor.shutdown); with CONCUR_SHUTDOWN_WAIT,
 * blocks until every accepted task has finished and the workers are gone;
 * with CONCUR_SHUTDOWN_CANCEL_FUTURES, cancels the tasks not yet started.
 * Idempotent; a later call may add flags.
 * @return 0; CONCUR_EDEADLK (CONCUR_SHUTDOWN_WAIT from one of the executor's
 *         own workers: shut down without waiting); CONCUR_EINVAL (NULL,
 *         unknown flags).
 */
CONCUR_API int concur_executor_shutdown(concur_executor *ex, unsigned flags);

/**
 * Shuts down at once (Java's shutdownNow): no new tasks; every never-started
 * task's future is cancelled and the task is handed to unrun(ctx, fn, arg)
 * exactly once (the caller now owns arg; no cleanup runs for it), outside
 * the executor's locks; every running task gets a cooperative cancel request
 * (concur_task_cancel_requested). Does not wait.
 * @param unrun NULL to drop the never-started tasks (then their cleanups run).
 * @return the number of never-started tasks (>= 0); CONCUR_EINVAL (NULL).
 */
CONCUR_API int concur_executor_shutdown_now(concur_executor *ex,
                                            concur_unrun_fn unrun, void *ctx);

/**
 * Waits up to timeout_ns, after a shutdown, for every task to finish and the
 * workers to be gone.
 * @return 0 (terminated); CONCUR_ETIMEDOUT; CONCUR_ESTATE (not shut down:
 *         it could never terminate); CONCUR_EINVAL (NULL, negative timeout).
 */
CONCUR_API CONCUR_NODISCARD int
concur_executor_await_termination(concur_executor *ex, int64_t timeout_ns);

/** True once shutdown has been called (false for NULL). */
CONCUR_API bool concur_executor_is_shutdown(concur_executor *ex);

/** True once shut down and every task and worker is gone (false for NULL). */
CONCUR_API bool concur_executor_is_terminated(concur_executor *ex);

/**
 * Reads the counters (see concur_executor_stats). Named get_stats because C
 * gives the struct's typedef and a function one namespace.
 * @return 0; CONCUR_EINVAL (NULL, out->size too small).
 */
CONCUR_API int concur_executor_get_stats(concur_executor *ex,
                                         concur_executor_stats *out);

/**
 * Shuts the executor down, waits for its tasks, and frees it (NULL: no-op).
 * Calling it from one of the executor's own tasks is misuse and aborts.
 */
CONCUR_API void concur_executor_free(concur_executor *ex);

/**
 * Makes the inline executor: every task runs in the submitting thread,
 * inside submit, so tests and debugging are deterministic.
 * @return 0; CONCUR_EINVAL (out NULL); CONCUR_ENOMEM.
 */
CONCUR_API CONCUR_NODISCARD int
concur_inline_executor_new(concur_executor **out);

/* ======================================================================== */
/** @name Algorithms over any executor
 * Written once over the executor interface, so each works on every backend.
 * A thread that waits in one of them (parallel_for's caller, a task group's
 * wait, an iterator's next, apply, invoke_*) first helps: it runs queued
 * tasks of the executor (concur_executor_help, or a future's help hook), so
 * a call made from one of the executor's own tasks, even on a one-worker
 * pool, makes progress instead of deadlocking.
 *
 * Cleanup in the algorithms that hand results out (map, imap, apply,
 * invoke_any). Every item an algorithm has taken gets its cleanup exactly
 * once, when the algorithm is done with it and the task has ended (ran,
 * failed, was cancelled or dropped): cleanup(arg, result), where result is
 * NULL when the task never ran or when its result was handed to the caller.
 * A result handed out belongs to the caller; with a cleanup, the caller
 * never frees an arg itself. When an algorithm gives up on a task that is
 * still running (a timeout, an iterator freed early), that task's cleanup
 * runs when it ends, in the thread that ran it. When an algorithm's call
 * fails before taking its items (CONCUR_EINVAL, CONCUR_ENOMEM, a first
 * submit refused), the caller keeps them and no cleanup runs. invoke_all
 * and the task group hand out no results: their tasks follow the submit
 * rule of the file comment.
 *
 * The tasks an algorithm submits for itself (map's chunks, parallel_for's
 * helpers, the wrapped tasks of apply and invoke_any) are ordinary tasks to
 * the executor: counted in its stats, cancelled by
 * CONCUR_SHUTDOWN_CANCEL_FUTURES, handed back by
 * concur_executor_shutdown_now. The algorithm sees such a task end as
 * cancelled and releases what it owned (the user's items get their
 * cleanup), so a record of the library's own that shutdown_now hands back
 * must be dropped, never run.
 * @{ */

/* ---- map and imap -------------------------------------------------------- */

/**
 * An input source for imap: gives the next input item (Python's iterator).
 * Called only in the thread that creates or advances the iterator.
 * @return 1 with *item set (the item for the task's arg); 0 at the end of
 *         the input; a negative code to end the input with that error (the
 *         iterator reports it after the items before it).
 */
typedef int (*concur_map_source_fn)(void *arg, void **item);

/** What map and imap do when an item fails. */
typedef enum concur_map_errors {
  /** Stop at the first failure: report it, cancel what has not started. */
  CONCUR_MAP_STOP = 0,
  /** Run every item and report each outcome. */
  CONCUR_MAP_COLLECT = 1
} concur_map_errors;

/**
 * Options of map and imap (NULL means all defaults). Fill with
 * CONCUR_MAP_OPTIONS_INIT, then change fields.
 */
typedef struct concur_map_options {
  /** sizeof(concur_map_options). */
  size_t size;
  /**
   * Items per task: >= 1, or CONCUR_DEFAULT (1, as Python's
   * ThreadPoolExecutor.map). Larger chunks amortize the per-task cost of
   * short items.
   */
  int64_t chunksize;
  /**
   * The most items in flight (submitted and not yet handed to the caller):
   * >= 1, or CONCUR_UNBOUNDED (default: every item is submitted at once, as
   * Python's map does; a source is read to its end first). A chunk never
   * holds more than buffersize items. Bounded, a source may be endless.
   */
  int64_t buffersize;
  /**
   * For the whole map or iteration, from the creating call: >= 0, or
   * CONCUR_FOREVER (default). When it passes, the items not started are
   * cancelled and the iteration ends with CONCUR_ETIMEDOUT.
   */
  int64_t timeout_ns;
  /** CONCUR_MAP_STOP (default) or CONCUR_MAP_COLLECT. */
  concur_map_errors errors;
  /**
   * False (default): results in input order (Executor.map, Pool.imap).
   * True: in completion order (Pool.imap_unordered).
   */
  bool unordered;
  /** NULL, or each item's cleanup (see "Cleanup in the algorithms"). */
  concur_cleanup_fn cleanup;
} concur_map_options;

#define CONCUR_MAP_OPTIONS_INIT                                                \
  {                                                                            \
    sizeof(concur_map_options), CONCUR_DEFAULT, CONCUR_UNBOUNDED,              \
        CONCUR_FOREVER, CONCUR_MAP_STOP, false, NULL                           \
  }

/**
 * Runs fn over args[0..n) on the executor and waits (Executor.map, made
 * blocking): results[i] receives fn's result for args[i].
 *
 * Blocks until every item is done, the error policy stops it, or
 * options->timeout_ns passes. With CONCUR_MAP_STOP, a failure cancels the
 * items not started and map waits (within the timeout) for the running
 * ones, so that when map returns anything but CONCUR_ETIMEDOUT none of its
 * tasks runs any more. After CONCUR_ETIMEDOUT the tasks that were running
 * go on in the background (each asked to stop through
 * concur_task_cancel_requested): their args stay in use until they end, so
 * give a cleanup, or await the executor, before freeing them.
 *
 * @param fn      the task run for each item (not NULL).
 * @param args    n args (may be NULL when n is 0). Read while map runs.
 * @param results NULL, or room for n results: results[i] is fn's result
 *                when item i succeeded, else NULL. Handed to the caller.
 * @param codes   NULL, or room for n codes: 0 for success, the task's
 *                nonzero code for a failure, CONCUR_ECANCELED for an item
 *                that did not run or whose outcome was not waited for (a
 *                task that itself returns CONCUR_ECANCELED reads the same).
 * @return 0 (every item succeeded); CONCUR_ETASK (an item failed: the
 *         first in input order, or the first to complete with unordered);
 *         CONCUR_ECANCELED (an item was cancelled by someone else, such as
 *         a shutdown with CONCUR_SHUTDOWN_CANCEL_FUTURES); CONCUR_ETIMEDOUT;
 *         a submit error (CONCUR_ESHUTDOWN, CONCUR_EREJECTED, ...: when it
 *         refuses the first task nothing was taken, see the cleanup rule);
 *         CONCUR_ENOMEM; CONCUR_EINVAL (ex or fn NULL, args NULL with n > 0,
 *         bad options).
 */
CONCUR_API CONCUR_NODISCARD int
concur_executor_map(concur_executor *ex, concur_task_fn fn, void *const *args,
                    size_t n, void **results, int *codes,
                    const concur_map_options *options);

/** A map iterator (opaque; single-threaded: one consumer). */
typedef struct concur_imap concur_imap;

/** One item handed out by concur_imap_next. */
typedef struct concur_map_item {
  /** The item's position in the input (0-based). */
  size_t index;
  /**
   * The item's arg. Valid until the next call on the iterator (its cleanup,
   * if any, runs then).
   */
  void *arg;
  /** The result on success (handed to the caller), else NULL. */
  void *result;
  /** 0 on success, else the task's nonzero code (or CONCUR_ECANCELED). */
  int code;
} concur_map_item;

/**
 * Starts iterating fn over args[0..n) (Executor.map's iterator, Pool.imap,
 * with options->unordered Pool.imap_unordered). Submits the first items
 * (all of them unless buffersize bounds it) before returning, so the work
 * proceeds whether or not the results are read.
 * @param args n args (NULL allowed when n is 0); read until the iterator is
 *             freed or exhausted (a bounded buffer submits items lazily).
 * @return 0; a submit error refusing the first task (the caller keeps every
 *         arg); CONCUR_ENOMEM; CONCUR_EINVAL (out, ex or fn NULL, args NULL
 *         with n > 0, bad options).
 */
CONCUR_API CONCUR_NODISCARD int
concur_imap_new(concur_imap **out, concur_executor *ex, concur_task_fn fn,
                void *const *args, size_t n, const concur_map_options *options);

/**
 * As concur_imap_new, with the input read from a source: each item belongs
 * to the iterator (the cleanup rule) once the source gave it, even if the
 * call then fails. With a bounded buffersize the source is read lazily, so
 * it may be endless.
 * @return as concur_imap_new (source NULL: CONCUR_EINVAL).
 */
CONCUR_API CONCUR_NODISCARD int
concur_imap_new_source(concur_imap **out, concur_executor *ex,
                       concur_task_fn fn, concur_map_source_fn source,
                       void *source_arg, const concur_map_options *options);

/**
 * Gives the next outcome: in input order, or in completion order when the
 * iterator is unordered. Blocks, helping the executor, up to timeout_ns or
 * the iteration's own deadline, whichever comes first.
 * @param item receives the item on 1 and on CONCUR_ETASK / CONCUR_ECANCELED.
 * @return 1 (an item succeeded: item->result); 0 (the iteration is over);
 *         CONCUR_ETASK (the item failed: item->code; with CONCUR_MAP_STOP
 *         the iteration then stops: later calls give 0);
 *         CONCUR_ECANCELED (the item was cancelled by someone else; stops
 *         like a failure); CONCUR_ETIMEDOUT (timeout_ns passed: the
 *         iterator is still usable; or the iteration's deadline passed:
 *         the items not started are cancelled and later calls give 0);
 *         the error a source ended with, or a submit error for a later
 *         item, once, after every item before it (then 0);
 *         CONCUR_EINVAL (it or item NULL, negative timeout).
 */
CONCUR_API CONCUR_NODISCARD int
concur_imap_next(concur_imap *it, int64_t timeout_ns, concur_map_item *item);

/**
 * Ends the iteration (NULL: no-op), like closing Python's map iterator: the
 * items not started are cancelled, running ones are asked to stop
 * (concur_task_cancel_requested) and are not waited for; each item's
 * cleanup runs as the cleanup rule says (for a running one, when it ends).
 * Never blocks on a task.
 */
CONCUR_API void concur_imap_free(concur_imap *it);

/* ---- apply, invoke_all, invoke_any --------------------------------------- */

/**
 * Runs one task on the executor and waits for it (Pool.apply: submit, then
 * result). On CONCUR_ETIMEDOUT the task is cancelled if it has not started,
 * else asked to stop (concur_task_cancel_requested) and left running.
 * @param result NULL, or receives the result on 0 (handed to the caller).
 * @param code   NULL, or receives the task's code on CONCUR_ETASK (else 0).
 * @return 0; CONCUR_ETASK; CONCUR_ECANCELED (someone else cancelled it);
 *         CONCUR_ETIMEDOUT; a submit error (the caller keeps arg);
 *         CONCUR_EDEADLK (see concur_future_result); CONCUR_EINVAL (ex or fn
 *         NULL, negative timeout).
 */
CONCUR_API CONCUR_NODISCARD int
concur_executor_apply(concur_executor *ex, concur_task_fn fn, void *arg,
                      int64_t timeout_ns, void **result, int *code);

/**
 * As concur_executor_apply with a task record, whose cleanup follows
 * "Cleanup in the algorithms" (NULL for a result handed out).
 * @return as concur_executor_apply (task NULL or too small: CONCUR_EINVAL).
 */
CONCUR_API CONCUR_NODISCARD int
concur_executor_apply_task(concur_executor *ex, const concur_task *task,
                           int64_t timeout_ns, void **result, int *code);

/**
 * Runs every task and waits for all of them (Java's invokeAll): futures[i]
 * receives task i's future (the caller must unref each non-NULL one). With a
 * timeout, the tasks not done when it passes are cancelled (or, if running,
 * asked to stop) and CONCUR_ETIMEDOUT is returned with every future given.
 * @param tasks n task records (cleanup: the submit rule, through futures).
 * @return 0 (every future is done); CONCUR_ETIMEDOUT; a submit error (the
 *         tasks submitted before it are cancelled or asked to stop, and
 *         their futures are given; futures from the refused one on are NULL,
 *         and the caller keeps those args); CONCUR_EINVAL (ex, tasks or
 *         futures NULL with n > 0, a task without fn or too small, negative
 *         timeout); CONCUR_ENOMEM.
 */
CONCUR_API CONCUR_NODISCARD int
concur_executor_invoke_all(concur_executor *ex, const concur_task *tasks,
                           size_t n, int64_t timeout_ns,
                           concur_future **futures);

/**
 * Runs the tasks and gives the result of the first one to succeed (Java's
 * invokeAny); the others are then cancelled, or asked to stop if running,
 * and not waited for.
 * @param index  NULL, or receives the winner's position on 0, else the
 *               position of the failure reported on CONCUR_ETASK.
 * @param result NULL, or receives the winner's result (handed to the caller).
 * @param code   NULL, or receives, on CONCUR_ETASK, the code of the last
 *               task to fail; else 0.
 * @return 0; CONCUR_ETASK (every task failed or was cancelled);
 *         CONCUR_ETIMEDOUT (none succeeded in time: all cancelled or asked to
 *         stop); a submit error (as invoke_all: nothing is given and the
 *         caller keeps the args of the tasks not submitted); CONCUR_EINVAL
 *         (n 0, ex or tasks NULL, a bad task, negative timeout);
 *         CONCUR_ENOMEM.
 */
CONCUR_API CONCUR_NODISCARD int
concur_executor_invoke_any(concur_executor *ex, const concur_task *tasks,
                           size_t n, int64_t timeout_ns, size_t *index,
                           void **result, int *code);

/* ---- parallel_for -------------------------------------------------------- */

/**
 * A loop body over the sub-range [lo, hi): 0 to go on, nonzero to stop the
 * loop (that code is reported).
 */
typedef int (*concur_range_fn)(void *arg, int64_t lo, int64_t hi);

/**
 * Runs body over [begin, end) in parallel (TBB parallel_for, OpenMP
 * `parallel for`): the library splits the range into sub-ranges itself,
 * large ones first and smaller towards the end (guided scheduling), so
 * that items of 100 ns still scale and uneven items balance. The calling
 * thread takes part; the executor's workers join in (at most one per CPU);
 * on an executor of parallelism 1 the body runs once over the whole range
 * in the caller. Each index is covered by exactly one body call. Blocks
 * until every body call has returned; everything the bodies did
 * happens-before the return.
 * @param code NULL, or receives, on CONCUR_ETASK, the first nonzero code a
 *             body returned (the other sub-ranges not yet started are then
 *             skipped); else 0.
 * @return 0; CONCUR_ETASK; CONCUR_ESHUTDOWN (the executor is shut down:
 *         nothing ran); CONCUR_ENOMEM (nothing ran); CONCUR_EINVAL (ex or
 *         body NULL, begin > end). A worker that could not be enlisted (its
 *         submit failed) is not an error: the others, and the caller, do its
 *         share.
 */
CONCUR_API CONCUR_NODISCARD int
concur_executor_parallel_for(concur_executor *ex, int64_t begin, int64_t end,
                             concur_range_fn body, void *arg, int *code);

/* ---- task groups ----------------------------------------------------------
 */

/**
 * A task group (opaque): tasks submitted into it can be waited for all at
 * once, without keeping their futures (TBB task_group, Java's
 * invokeAll without the list). Thread-safe: any thread may submit and wait.
 */
typedef struct concur_task_group concur_task_group;

/** Counters of a task group, since it was made. Fill `size` first. */
typedef struct concur_task_group_counts {
  size_t size;        /**< sizeof(concur_task_group_counts) */
  uint64_t submitted; /**< accepted submits */
  uint64_t pending;   /**< accepted, not yet ended */
  uint64_t ok;        /**< ended with 0 */
  uint64_t failed;    /**< ended with a nonzero code */
  uint64_t cancelled; /**< cancelled or dropped by the executor unrun */
} concur_task_group_counts;

#define CONCUR_TASK_GROUP_COUNTS_INIT                                          \
  { sizeof(concur_task_group_counts), 0, 0, 0, 0, 0 }

/**
 * Makes a task group over an executor, which must outlive it.
 * @return 0; CONCUR_EINVAL (out or ex NULL); CONCUR_ENOMEM.
 */
CONCUR_API CONCUR_NODISCARD int concur_task_group_new(concur_task_group **out,
                                                      concur_executor *ex);

/**
 * Submits a task into the group, fire-and-forget (no future: the cheapest
 * submit). Its cleanup, if any, runs when it ends, before the group counts
 * it done.
 *
 * Throttle: when the group already has more than 64 tasks pending per unit
 * of the executor's parallelism (looked at once every 64 submits), the next
 * 64 submits run their task at once in the calling thread, before returning
 * 0 (as OpenMP runs a task in its creator when too many are queued), so a
 * stream of small tasks keeps a short queue and the submitting thread
 * works too. Such a task runs as any other (cleanup, counts, failures;
 * concur_task_cancel_requested() is false in it) but never reaches the
 * executor, whose stats do not count it. So a task of a group must not wait
 * for something its submitting thread does after the submit returns.
 * @return 0; the executor's submit errors (the caller keeps arg);
 *         CONCUR_EAGAIN (2^30 tasks already pending in the group);
 *         CONCUR_EINVAL (group or fn NULL).
 */
CONCUR_API CONCUR_NODISCARD int
concur_task_group_submit(concur_task_group *group, concur_task_fn fn,
                         void *arg);

/** As concur_task_group_submit with a task record (cleanup). */
CONCUR_API CONCUR_NODISCARD int
concur_task_group_submit_task(concur_task_group *group,
                              const concur_task *task);

/**
 * Waits up to timeout_ns until every task submitted into the group has
 * ended, helping the executor meanwhile. A wait that sees them all ended
 * closes a round: the group can be reused, and the next wait reports only
 * the tasks that end after it (tasks submitted while a wait is closing a
 * round may count in either round).
 * @param code NULL, or receives on CONCUR_ETASK the code of the round's
 *             first failure (in completion order); else 0.
 * @return 0 (all ended, none failed in this round; cancelled tasks are not
 *         failures: see the counts); CONCUR_ETASK (all ended, at least one
 *         failed); CONCUR_ETIMEDOUT (the round stays open); CONCUR_EINVAL
 *         (NULL, negative timeout).
 */
CONCUR_API CONCUR_NODISCARD int
concur_task_group_wait(concur_task_group *group, int64_t timeout_ns, int *code);

/**
 * Reads the group's counters: submitted == pending + ok + failed +
 * cancelled; each is read atomically, and a task ending during the call
 * may be counted both as pending and in its outcome.
 * @return 0; CONCUR_EINVAL (NULL, out->size too small).
 */
CONCUR_API int concur_task_group_get_counts(concur_task_group *group,
                                            concur_task_group_counts *out);

/**
 * Waits for every task of the group to end (helping the executor), then
 * frees it (NULL: no-op). Must not be called from one of the group's own
 * tasks, which it would wait for.
 */
CONCUR_API void concur_task_group_free(concur_task_group *group);
/** @} */

#ifdef __cplusplus
}
#endif

#endif /* CONCUR_EXECUTOR_H */
