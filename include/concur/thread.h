/**
 * @file concur/thread.h
 * @brief Python's threading.Thread, Timer, local and a once, for C.
 *
 * A concur_thread is a handle made by concur_thread_new and started by
 * concur_thread_start (or both at once by concur_thread_run). Its function
 * has the task signature: it returns 0 and may store a result pointer, or
 * returns a nonzero failure code. Any number of threads may join a thread,
 * each with its own timeout.
 *
 * Signal masks: a thread started with concur_thread_start inherits the
 * signal mask of the thread that starts it, as a pthread does, so the user
 * decides where signals go. Threads the library starts for itself (Timer
 * threads, pool workers) block every asynchronous signal. The library
 * installs no signal handlers.
 *
 * Process exit: when the process exits normally (return from main, exit()),
 * concur joins every non-daemon thread it started that is still running, as
 * Python's interpreter does, including threads started while it joins. The
 * join runs from an atexit handler registered at the first start (or the
 * first thread pool), so it runs before the atexit handlers registered
 * earlier and after those registered later; the same handler first shuts
 * down every live thread pool (concur/thread_pool.h). A concur thread that
 * calls exit() itself skips the join (it would otherwise wait for threads that
 * may be waiting for it); so do _exit(), quick_exit() and a fatal signal. In a
 * forked child the forking thread is the child's main thread, and its exit()
 * does join.
 *
 * What a daemon thread may still touch once exit has begun: daemon threads
 * are not waited for and keep running, in parallel with the atexit handlers
 * and static destructors, until the process ends. concur never tears down
 * its own state, so a daemon thread may go on using every concur function
 * and object it holds, its own heap memory and file descriptors. It must not
 * use anything that an atexit handler or a destructor frees or closes (for
 * instance memory a library frees at exit, or a C++ static), and output it
 * writes to a stdio stream after exit flushed the streams may be lost. The
 * process ends wherever the daemon thread is: it gets no chance to clean
 * up, and its thread-local destructors do not run.
 *
 * Happens-before: everything the starting thread did before
 * concur_thread_start happens-before the thread function runs; everything
 * the thread function did, the failure hook's call and the thread's
 * thread-local destructors happen-before any join that returns 0 or
 * CONCUR_ETASK for it.
 *
 * Fork: in a child forked while concur threads ran, only the forking thread
 * exists. Handles of the other threads report them not alive, joins of them
 * return at once (0, or CONCUR_ETASK when the thread had already failed),
 * and the library's internal locks are reset, so the child may start new
 * threads.
 */
#ifndef CONCUR_THREAD_H
#define CONCUR_THREAD_H

#include "concur/base.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct concur_thread concur_thread;

/** Options for concur_thread_new; fill with CONCUR_THREAD_OPTIONS_INIT. */
typedef struct concur_thread_options {
  /** sizeof(concur_thread_options): lets fields be added later. */
  size_t size;
  /** The thread's name (copied); NULL gives a unique "Thread-N". */
  const char *name;
  /** A daemon thread is not joined at process exit. Default false. */
  bool daemon;
  /** Stack size in bytes; 0 for the platform's default. */
  size_t stack_size;
} concur_thread_options;

#define CONCUR_THREAD_OPTIONS_INIT                                             \
  { sizeof(concur_thread_options), NULL, false, 0 }

/** The longest thread name kept, in bytes, without the NUL. */
#define CONCUR_THREAD_NAME_MAX 63

/**
 * Makes a thread handle that is not started yet. Without a name in opts the
 * thread is named "Thread-N", N from a process-wide counter, as in Python.
 * @param out  receives the handle, freed with concur_thread_free.
 * @param fn   the thread function (not NULL).
 * @param arg  passed to fn; the caller keeps ownership.
 * @param opts NULL for the defaults. A name longer than
 *             CONCUR_THREAD_NAME_MAX bytes is truncated.
 * Errors: CONCUR_EINVAL (out or fn NULL, opts->size too small),
 * CONCUR_ENOMEM. Never blocks. Thread-safe.
 */
CONCUR_API CONCUR_NODISCARD int
concur_thread_new(concur_thread **out, concur_task_fn fn, void *arg,
                  const concur_thread_options *opts);

/**
 * Starts the thread. Never blocks beyond the OS's thread creation (and a
 * short internal lock). The new thread inherits the caller's signal mask.
 * @return 0; CONCUR_ESTATE (already started: Python's RuntimeError);
 *         CONCUR_EAGAIN (the OS could not create a thread: the handle stays
 *         unstarted and may be started again); CONCUR_EINVAL (NULL, a stack
 *         size the OS refuses: the handle stays unstarted); CONCUR_ENOMEM.
 */
CONCUR_API CONCUR_NODISCARD int concur_thread_start(concur_thread *thread);

/** concur_thread_new then concur_thread_start; on failure nothing is left. */
CONCUR_API CONCUR_NODISCARD int
concur_thread_run(concur_thread **out, concur_task_fn fn, void *arg,
                  const concur_thread_options *opts);

/**
 * Waits up to timeout_ns for the thread to finish. Finished means the
 * function has returned, the failure hook (if any) has run, and the OS
 * thread has ended, thread-local destructors included; a join that returns
 * 0 or CONCUR_ETASK leaves no OS thread behind. Any number of threads may
 * join the same thread at once, and a thread may be joined again after it
 * finished (each join returns the same outcome).
 * @param result receives the thread function's result pointer on 0; may be
 *        NULL. Untouched on any other return.
 * @return 0 (finished, function returned 0); CONCUR_ETASK (finished, the
 *         function returned nonzero: read it with concur_thread_exit_code);
 *         CONCUR_ETIMEDOUT (still running, or still running its thread-local
 *         destructors); CONCUR_EDEADLK (the caller is that thread);
 *         CONCUR_ESTATE (never started); CONCUR_EINVAL (NULL, negative
 *         timeout).
 */
CONCUR_API CONCUR_NODISCARD int
concur_thread_join(concur_thread *thread, int64_t timeout_ns, void **result);

/**
 * The nonzero code the function returned, or 0 (also while running, and for
 * NULL).
 */
CONCUR_API int concur_thread_exit_code(const concur_thread *thread);

/**
 * True from a successful start until the function (and the failure hook) has
 * returned.
 */
CONCUR_API bool concur_thread_is_alive(const concur_thread *thread);

/**
 * Sets the daemon flag before start.
 * @return 0; CONCUR_ESTATE (already started); CONCUR_EINVAL (NULL).
 */
CONCUR_API int concur_thread_set_daemon(concur_thread *thread, bool daemon);

/** The daemon flag; false for NULL. */
CONCUR_API bool concur_thread_is_daemon(const concur_thread *thread);

/**
 * Renames the thread, also while it runs; the OS copy is truncated to what
 * the OS keeps (15 bytes on Linux), the concur copy to CONCUR_THREAD_NAME_MAX.
 * @return 0; CONCUR_EINVAL (NULL thread or name).
 */
CONCUR_API int concur_thread_set_name(concur_thread *thread, const char *name);

/**
 * Copies the thread's name into buf (truncated, always NUL-terminated).
 * @return the full name's length; CONCUR_EINVAL (NULL, len 0).
 */
CONCUR_API int concur_thread_get_name(const concur_thread *thread, char *buf,
                                      size_t len);

/**
 * The thread's identifier (threading.Thread.ident): nonzero once started, 0
 * before (and for NULL). concur draws identifiers from a process-wide
 * counter, so they are unique for the life of the process, never reused, and
 * equal to what concur_thread_get_ident returns inside the thread.
 */
CONCUR_API uint64_t concur_thread_ident(const concur_thread *thread);

/**
 * The kernel's thread id (threading.Thread.native_id); 0 before start and for
 * NULL. Just after start it may wait, briefly, until the new thread has run
 * its first instructions and read its own id.
 */
CONCUR_API uint64_t concur_thread_native_id(const concur_thread *thread);

/**
 * Frees the handle. A thread that is still running is detached: it runs on
 * and its resources are released when it ends; nothing leaks. A thread that
 * has finished is reaped. NULL is a no-op. Freeing a handle while other
 * threads are joining it is a misuse and aborts.
 */
CONCUR_API void concur_thread_free(concur_thread *thread);

/**
 * The calling thread's handle when concur started it, else NULL (borrowed:
 * valid while the thread function, or its failure hook, runs).
 */
CONCUR_API concur_thread *concur_thread_current(void);

/**
 * threading.get_ident(): the calling thread's identifier, also for threads
 * concur did not start (they get one from the same counter at their first
 * call). Nonzero, unique for the life of the process.
 */
CONCUR_API uint64_t concur_thread_get_ident(void);

/** threading.get_native_id(): the calling thread's kernel id. */
CONCUR_API uint64_t concur_thread_get_native_id(void);

/**
 * Copies the calling thread's name into buf: its concur name, "MainThread"
 * for the process's initial thread, or the OS name for other threads.
 * @return the full name's length; CONCUR_EINVAL (buf NULL, len 0).
 */
CONCUR_API int concur_thread_current_name(char *buf, size_t len);

/**
 * The number of threads concur started that are alive now, timers' threads
 * included (threading.active_count without the main thread).
 */
CONCUR_API size_t concur_thread_active_count(void);

/**
 * The failure hook (threading.excepthook): called when a thread function
 * returns nonzero, in that thread, after the function returned and before
 * any joiner is released (so the thread is still alive while it runs).
 * @param arg    the pointer given to concur_thread_set_excepthook.
 * @param thread the failing thread's handle, valid for the call even if the
 *               handle was freed (read its name, ident, native id).
 * @param code   the nonzero code the function returned.
 * A hook must not join the failing thread (CONCUR_EDEADLK).
 */
typedef void (*concur_excepthook_fn)(void *arg, concur_thread *thread,
                                     int code);

/**
 * Replaces the failure hook for every thread, for failures that happen from
 * now on. NULL restores the default hook. Thread-safe; a hook already
 * running in some thread finishes with the old (fn, arg).
 */
CONCUR_API void concur_thread_set_excepthook(concur_excepthook_fn fn,
                                             void *arg);

/**
 * The default failure hook (threading.__excepthook__): writes one line to
 * stderr naming the thread (name, ident, native id) and the integer code,
 * such as
 * `concur: exception in thread Thread-3 (ident 7, native id 4242): the thread
 * function returned 42`. arg is ignored. A custom hook may call it to chain.
 */
CONCUR_API void
concur_thread_default_excepthook(void *arg, concur_thread *thread, int code);

/* ======================================================================== */
/** @name Thread-local storage (threading.local)
 * A slot that holds one value per thread, built on a pthread key.
 * @{ */
typedef struct concur_local concur_local;

/**
 * Called with a thread's value when that thread exits, if the value is
 * non-NULL: when a concur thread or any other pthread ends (its function
 * returns or it calls pthread_exit), in that thread, before a join of it
 * returns. Not called for the values of the thread that calls exit() or
 * returns from main, nor for threads still running when the process ends.
 */
typedef void (*concur_destructor_fn)(void *value);

/**
 * Makes a thread-local slot; every thread sees NULL until it sets a value.
 * @param destructor NULL for none.
 * Errors: CONCUR_EINVAL (out NULL); CONCUR_EAGAIN (the OS has no more keys);
 * CONCUR_ENOMEM.
 */
CONCUR_API CONCUR_NODISCARD int
concur_local_new(concur_local **out, concur_destructor_fn destructor);
/**
 * Frees the slot; destructors do not run for values still set (their owners
 * free them). No thread may use the slot any more. NULL: no-op.
 */
CONCUR_API void concur_local_free(concur_local *local);
/** The calling thread's value, or NULL (also for a NULL local). */
CONCUR_API void *concur_local_get(concur_local *local);
/**
 * Sets the calling thread's value; NULL clears it (no destructor runs).
 * @return 0; CONCUR_EINVAL (NULL local); CONCUR_ENOMEM.
 */
CONCUR_API int concur_local_set(concur_local *local, void *value);
/** @} */

/* ======================================================================== */
/** @name Once
 * Runs a function exactly once however many threads call concur_once_call.
 * A public struct so that it can be initialized statically.
 *
 * Happens-before: the function's return happens-before every return of
 * concur_once_call for the same once.
 *
 * Fork: if the process forks while a once's function runs in another
 * thread, the first call in the child runs the function again (the thread
 * that was running it does not exist there); a fork from inside the
 * function leaves the forking thread to finish it in the child.
 * @{ */
typedef struct concur_once {
  uint32_t state;  /**< private */
  uint32_t unused; /**< private */
  uint64_t owner;  /**< private */
} concur_once;

#define CONCUR_ONCE_INIT                                                       \
  { 0, 0, 0 }

/** The function a once runs. */
typedef void (*concur_once_fn)(void *arg);

/**
 * Runs fn(arg) if no call on this once has run yet; other callers block,
 * without a deadline, until it has returned. Later calls return 0 at once
 * without calling fn. The function must return (not longjmp out).
 * @return 0; CONCUR_EDEADLK (called again from inside fn for the same once);
 *         CONCUR_EINVAL (NULL once or fn).
 */
CONCUR_API int concur_once_call(concur_once *once, concur_once_fn fn,
                                void *arg);
/** @} */

/* ======================================================================== */
/** @name Timer (threading.Timer)
 * A thread that runs a function after a delay unless cancelled first. The
 * timer's thread is a concur thread (named, daemon or not, joined at exit
 * like any other), but a library thread: it blocks every asynchronous
 * signal. Its function runs in it, and failures reach the failure hook.
 * @{ */
typedef struct concur_timer concur_timer;

/**
 * Makes a timer, not started.
 * @param interval_ns the delay from concur_timer_start to the call (>= 0),
 *                    on CLOCK_MONOTONIC; the call never comes earlier.
 * @param fn, arg     the task to run; the caller keeps arg.
 * @param opts        thread options for the timer's thread; NULL for defaults.
 * Errors: CONCUR_EINVAL (out or fn NULL, interval_ns < 0, opts->size too
 * small), CONCUR_ENOMEM.
 */
CONCUR_API CONCUR_NODISCARD int
concur_timer_new(concur_timer **out, int64_t interval_ns, concur_task_fn fn,
                 void *arg, const concur_thread_options *opts);
/** Starts the countdown. Errors as concur_thread_start. */
CONCUR_API CONCUR_NODISCARD int concur_timer_start(concur_timer *timer);
/**
 * Stops the timer if it is still waiting: the function then never runs.
 * Harmless after the function started, or before start (it will not run).
 * Never blocks.
 * @return 0; CONCUR_EINVAL (NULL).
 */
CONCUR_API int concur_timer_cancel(concur_timer *timer);
/**
 * Waits up to timeout_ns for the timer's thread to end.
 * @param result receives the function's result pointer on 0; may be NULL.
 * @return 0 (ended: the function ran and returned 0);
 *         CONCUR_ECANCELED (ended without running the function: cancelled);
 *         CONCUR_ETASK (the function returned nonzero: read it with
 *         concur_timer_exit_code); CONCUR_ETIMEDOUT; CONCUR_EDEADLK;
 *         CONCUR_ESTATE; CONCUR_EINVAL, as concur_thread_join.
 */
CONCUR_API CONCUR_NODISCARD int
concur_timer_join(concur_timer *timer, int64_t timeout_ns, void **result);
/**
 * The nonzero code the function returned, or 0 (also while running, and for
 * NULL).
 */
CONCUR_API int concur_timer_exit_code(const concur_timer *timer);
/** True while the timer's thread runs. */
CONCUR_API bool concur_timer_is_alive(const concur_timer *timer);
/**
 * Cancels, then frees the handle (the thread, if any, ends on its own; a
 * function already running runs to its end). NULL is a no-op.
 */
CONCUR_API void concur_timer_free(concur_timer *timer);
/** @} */

#ifdef __cplusplus
}
#endif

#endif /* CONCUR_THREAD_H */
