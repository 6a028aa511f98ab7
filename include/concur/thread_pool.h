/**
 * @file concur/thread_pool.h
 * @brief The thread-pool executor (floor 5): Python's ThreadPoolExecutor
 * with Java's core/max sizes, idle retirement, bounded queue and rejection
 * policies.
 *
 * A thread pool is made by concur_thread_pool_new and then used through the
 * generic calls of concur/executor.h (submit, map, parallel_for, shutdown,
 * get_stats, free, ...). The few calls below that only make sense for a
 * thread pool take the same concur_executor pointer and return CONCUR_EINVAL
 * for an executor of another kind.
 *
 * Admission. A submitted task goes, in this order, to
 *  1. an idle worker, if one exists (the task is handed to it);
 *  2. a new worker, while fewer than core_workers are alive;
 *  3. the queue, if it has room (and a new worker if none is alive at all:
 *     core_workers 0, or every worker retired, so that a queued task always
 *     runs);
 *  4. a new worker, while fewer than max_workers are alive;
 *  5. otherwise the rejection policy.
 * With the defaults (core_workers = max_workers = min(32, CPUs + 4), an
 * unbounded queue) this is Python's ThreadPoolExecutor: reuse an idle worker,
 * else start one up to the maximum, else queue. A task handed to an idle
 * worker (rule 1) never counts against queue_capacity, so a hand-off queue
 * (capacity 0) accepts exactly as many tasks as there are idle workers plus
 * workers it may still start.
 *
 * What the rejection policies do when rule 5 applies:
 *  - CONCUR_REJECT_ABORT: submit returns CONCUR_EREJECTED; no future, the
 *    caller keeps arg, no cleanup runs.
 *  - CONCUR_REJECT_CALLER_RUNS: the task runs in the submitting thread,
 *    inside submit, which returns 0 (with a finished future if asked for).
 *  - CONCUR_REJECT_DISCARD: submit returns 0; the task never runs: its
 *    future (if asked for) is already cancelled and its cleanup runs as the
 *    cleanup rule says.
 *  - CONCUR_REJECT_DISCARD_OLDEST: the oldest queued task is cancelled (its
 *    future completes as cancelled) and the new one is queued; with nothing
 *    queued to drop (a hand-off queue), the new task is discarded instead.
 *  - CONCUR_REJECT_BLOCK: the submitter waits up to block_timeout_ns for
 *    admission (back-pressure), then returns CONCUR_ETIMEDOUT as ABORT
 *    would; CONCUR_ESHUTDOWN if the pool is shut down meanwhile.
 * No future is ever left pending: a task dropped by any policy, by
 * CONCUR_SHUTDOWN_CANCEL_FUTURES or by a broken pool completes its future.
 * After shutdown every submit returns CONCUR_ESHUTDOWN, whatever the policy.
 *
 * Errors of concur_executor_submit on a thread pool, beyond those
 * executor.h lists: CONCUR_EAGAIN when no worker is alive and none could be
 * started (the task is not accepted; the caller keeps arg). When a worker
 * cannot be started but others are alive, the task is queued if there is
 * room, else the rejection policy applies: a thread-creation failure never
 * loses a task.
 *
 * Counters (concur_executor_get_stats) always add up, also while tasks run:
 * submitted == queued + running + completed + failed + cancelled, every
 * value read from one instant's counters. A task cancelled while queued
 * leaves the queue at once: it stops counting against queue_capacity before
 * concur_future_cancel returns. Tasks failed because the pool broke count as
 * failed.
 *
 * Idle workers park (no CPU use; a bounded spin of a few microseconds at
 * most before parking). A submit wakes at most one parked worker, and only
 * when no idle worker is already awake to take the task. Workers block every
 * asynchronous signal and are named "<prefix><n>", n = 0, 1, 2, ... in
 * order of creation; the default prefix is "pool-<N>-", N unique per pool in
 * the process.
 *
 * Helping instead of deadlocking: every future the pool returns carries a
 * help hook (concur_future_set_help), so a thread about to block on a future
 * whose task is still queued runs that task itself first. A task waiting on
 * another task of its own saturated pool therefore makes progress.
 *
 * Cooperative cancellation: concur_executor_shutdown_now sends a cancel
 * request to every running task; the task sees it through
 * concur_task_cancel_requested(). A task with a future gets it on its
 * future (concur_future_request_cancel reaches it too); a task submitted
 * without a future (fire-and-forget) sees the pool's shutdown_now instead.
 * Such a task has no future: concur_future_current() is NULL inside it, and
 * a message it attaches with concur_task_set_message() is dropped.
 *
 * Happens-before: everything a thread did before a submit that returned 0
 * happens-before the task starts (on whichever thread runs it); everything a
 * task did happens-before every observation of its future being done, its
 * on-done notifications, and concur_executor_await_termination or a waiting
 * shutdown returning 0. The initializer of a worker happens-before every
 * task that worker runs. Hooks run on the thread that runs the task:
 * before() happens-before the task, the task happens-before after().
 *
 * Fork: in a child forked while pools run, only the forking thread exists;
 * the parent's pools keep working in the parent. The child must not use
 * (nor free) a pool it inherited; it may make and use new pools.
 *
 * Process exit: at a normal process exit (return from main, exit()) every
 * live pool is shut down as by concur_executor_shutdown with
 * CONCUR_SHUTDOWN_WAIT, by the library's atexit handler (registered when
 * the first pool or thread is made), before it joins the non-daemon
 * threads, as Python shuts its executors down before joining threads:
 * tasks already accepted still run and later submits return
 * CONCUR_ESHUTDOWN. A pool whose own worker called exit() is shut down
 * without waiting.
 *
 * Test keys (for concur__test_await_parked in this library's own tests):
 * idle workers park with the executor pointer as key, submitters blocked by
 * CONCUR_REJECT_BLOCK with (const char *)ex + 1, and threads in
 * concur_executor_await_termination or a waiting shutdown with
 * (const char *)ex + 2.
 */
#ifndef CONCUR_THREAD_POOL_H
#define CONCUR_THREAD_POOL_H

#include "concur/base.h"
#include "concur/executor.h"

#ifdef __cplusplus
extern "C" {
#endif

/** The largest max_workers a pool accepts. */
#define CONCUR_THREAD_POOL_WORKERS_MAX 32768

/** The idle_timeout_ns that CONCUR_DEFAULT gives: 60 seconds. */
#define CONCUR_THREAD_POOL_IDLE_TIMEOUT_DEFAULT_NS ((int64_t)60000000000)

/** The longest thread-name prefix kept, in bytes, without the NUL. */
#define CONCUR_THREAD_POOL_PREFIX_MAX 31

/** What a saturated pool does with a new task (rule 5 of admission). */
typedef enum concur_rejection_policy {
  /** Return CONCUR_EREJECTED (the default). */
  CONCUR_REJECT_ABORT = 0,
  /** Run the task in the submitting thread. */
  CONCUR_REJECT_CALLER_RUNS = 1,
  /** Accept and drop the task: its future is already cancelled. */
  CONCUR_REJECT_DISCARD = 2,
  /** Cancel the oldest queued task and queue the new one. */
  CONCUR_REJECT_DISCARD_OLDEST = 3,
  /** Wait up to block_timeout_ns for admission, then CONCUR_ETIMEDOUT. */
  CONCUR_REJECT_BLOCK = 4
} concur_rejection_policy;

/**
 * Runs once in each worker, before its first task. A nonzero return breaks
 * the pool (see concur_thread_pool_options.initializer).
 */
typedef int (*concur_thread_pool_init_fn)(void *arg);

/** Runs before every task, on the thread about to run it. */
typedef void (*concur_thread_pool_before_fn)(void *arg, concur_task_fn fn,
                                             void *task_arg);

/**
 * Runs after every task that ran, on the same thread, with the task's
 * return code (0 or its nonzero failure code).
 */
typedef void (*concur_thread_pool_after_fn)(void *arg, concur_task_fn fn,
                                            void *task_arg, int code);

/** Runs once, when the pool has terminated (see the options). */
typedef void (*concur_thread_pool_terminated_fn)(void *arg);

/**
 * Options for concur_thread_pool_new. Fill with
 * CONCUR_THREAD_POOL_OPTIONS_INIT, then change what you need; a NULL options
 * pointer means every default. Function pointers may be NULL (no hook).
 */
typedef struct concur_thread_pool_options {
  /** sizeof(concur_thread_pool_options): lets fields be added later. */
  size_t size;
  /**
   * Workers kept even when idle (unless allow_core_timeout), and below which
   * a new task starts a new worker when no worker is idle.
   * CONCUR_DEFAULT: max_workers. Else 0 <= core_workers <= max_workers.
   */
  int core_workers;
  /**
   * The most workers alive at once. CONCUR_DEFAULT: min(32, CPUs + 4).
   * Else 1 ... CONCUR_THREAD_POOL_WORKERS_MAX.
   */
  int max_workers;
  /**
   * How long, in nanoseconds, a worker above core_workers stays idle before
   * it retires. CONCUR_DEFAULT: 60 s; CONCUR_FOREVER: never; 0: at once.
   */
  int64_t idle_timeout_ns;
  /** Let core workers retire after idle_timeout_ns too (default false). */
  bool allow_core_timeout;
  /**
   * How many tasks may wait in the queue (tasks handed to idle workers do
   * not count). CONCUR_UNBOUNDED (the default): no bound; 0: a hand-off
   * queue (every task goes to a worker at once or is rejected); else > 0.
   */
  int64_t queue_capacity;
  /** What rule 5 of admission does. Default CONCUR_REJECT_ABORT. */
  concur_rejection_policy rejection;
  /**
   * For CONCUR_REJECT_BLOCK: how long, in nanoseconds, a submit waits for
   * admission. CONCUR_FOREVER (the default), CONCUR_NOWAIT, or > 0.
   */
  int64_t block_timeout_ns;
  /**
   * Runs in each worker before its first task. If it returns nonzero the
   * pool is broken: that worker's first task, every queued task and every
   * later submit fail with CONCUR_EBROKEN (futures finish with that code and
   * the message "the pool is broken: a worker's initializer failed"), and
   * every worker exits after its current task. A broken pool still needs
   * shutting down (or freeing).
   */
  concur_thread_pool_init_fn initializer;
  void *initializer_arg;
  /** Runs before every task on the thread that runs it. */
  concur_thread_pool_before_fn before;
  void *before_arg;
  /** Runs after every task that ran, with its code (Java afterExecute). */
  concur_thread_pool_after_fn after;
  void *after_arg;
  /**
   * Runs exactly once, once the pool is shut down, every task is done and
   * every worker has finished (Java terminated()): on the last worker to
   * finish, or on the thread whose call completed the termination. It
   * happens-before concur_executor_await_termination returns 0.
   */
  concur_thread_pool_terminated_fn terminated;
  void *terminated_arg;
  /**
   * Worker names are this prefix (copied, at most
   * CONCUR_THREAD_POOL_PREFIX_MAX bytes kept) followed by 0, 1, 2, ...; the
   * OS keeps 15 bytes of a name. NULL: "pool-<N>-", N unique per pool.
   */
  const char *thread_name_prefix;
  /** Start every core worker at once instead of on demand (default false). */
  bool prestart;
  /** Stack size of the workers in bytes; 0 for the platform's default. */
  size_t stack_size;
} concur_thread_pool_options;

#define CONCUR_THREAD_POOL_OPTIONS_INIT                                        \
  {                                                                            \
    sizeof(concur_thread_pool_options), CONCUR_DEFAULT, CONCUR_DEFAULT,        \
        CONCUR_DEFAULT, false, CONCUR_UNBOUNDED, CONCUR_REJECT_ABORT,          \
        CONCUR_FOREVER, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,  \
        false, 0                                                               \
  }

/**
 * Makes a thread pool. No worker starts yet unless opts->prestart is set.
 * @param out  receives the pool, used with the concur_executor_* calls and
 *             released with concur_executor_free (which shuts it down and
 *             waits for its tasks).
 * @param opts NULL for the defaults; read during the call only.
 * @return 0; CONCUR_EINVAL (out NULL, opts->size too small, core_workers
 *         negative or above max_workers, max_workers 0, negative or above
 *         CONCUR_THREAD_POOL_WORKERS_MAX, a negative idle_timeout_ns,
 *         queue_capacity negative, an unknown rejection policy, a negative
 *         block_timeout_ns; CONCUR_DEFAULT and CONCUR_UNBOUNDED excepted where
 *         documented); CONCUR_ENOMEM; CONCUR_EAGAIN (prestart could not start
 *         a worker: nothing is left behind).
 * Blocks only for prestart's thread creation. Thread-safe.
 */
CONCUR_API CONCUR_NODISCARD int
concur_thread_pool_new(concur_executor **out,
                       const concur_thread_pool_options *opts);

/** True if ex is a thread pool (false for NULL or another executor). */
CONCUR_API bool concur_thread_pool_is(concur_executor *ex);

/**
 * Starts one core worker if fewer than core_workers are alive (Java
 * prestartCoreThread); it waits idle for work.
 * @return 1 (one started); 0 (core_workers are already alive);
 *         CONCUR_EINVAL (ex NULL or not a thread pool); CONCUR_ESHUTDOWN;
 *         CONCUR_EBROKEN; CONCUR_EAGAIN (no thread could be made);
 *         CONCUR_ENOMEM.
 * Blocks only for the thread creation. Thread-safe.
 */
CONCUR_API int concur_thread_pool_prestart_core_worker(concur_executor *ex);

/**
 * Starts core workers until core_workers are alive (Java
 * prestartAllCoreThreads).
 * @return how many it started (>= 0; fewer than asked if a thread could not
 *         be made after at least one started); CONCUR_EINVAL;
 *         CONCUR_ESHUTDOWN; CONCUR_EBROKEN; CONCUR_EAGAIN or CONCUR_ENOMEM
 *         (none could be started).
 */
CONCUR_API int
concur_thread_pool_prestart_all_core_workers(concur_executor *ex);

/**
 * Changes core_workers at run time (Java setCorePoolSize). Raising it starts
 * workers at once for tasks waiting in the queue (as many as there are
 * queued tasks, up to the new core); lowering it lets the extra workers
 * retire when they are next idle past idle_timeout_ns.
 * @return 0; CONCUR_EINVAL (ex not a thread pool, core_workers negative or
 *         above the current max_workers); CONCUR_ESHUTDOWN; CONCUR_EBROKEN;
 *         CONCUR_EAGAIN
 *         (the value was changed but a worker for the queue could not be
 *         started: the pool goes on with the workers it has).
 * Thread-safe.
 */
CONCUR_API int concur_thread_pool_set_core_workers(concur_executor *ex,
                                                   int core_workers);

/**
 * Changes max_workers at run time (Java setMaximumPoolSize). Lowering it
 * below the number of workers alive makes the extra workers retire as soon
 * as they are idle (running tasks are not interrupted).
 * @return 0; CONCUR_EINVAL (ex not a thread pool, max_workers < 1, above
 *         CONCUR_THREAD_POOL_WORKERS_MAX, or below the current
 *         core_workers); CONCUR_ESHUTDOWN; CONCUR_EBROKEN. Thread-safe.
 */
CONCUR_API int concur_thread_pool_set_max_workers(concur_executor *ex,
                                                  int max_workers);

/** The current core_workers (CONCUR_EINVAL if ex is not a thread pool). */
CONCUR_API int concur_thread_pool_core_workers(concur_executor *ex);

/** The current max_workers (CONCUR_EINVAL if ex is not a thread pool). */
CONCUR_API int concur_thread_pool_max_workers(concur_executor *ex);

#ifdef __cplusplus
}
#endif

#endif /* CONCUR_THREAD_POOL_H */
