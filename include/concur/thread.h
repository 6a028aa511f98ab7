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
 * Process exit: when the process exits normally (return from main, exit()),
 * concur joins every non-daemon thread it started that is still running, as
 * Python's interpreter does, before the other atexit handlers registered
 * before the first thread started. Daemon threads are not waited for: they
 * stop wherever they are when the process ends, and may still run while
 * atexit handlers and static destructors run, so a daemon thread must touch
 * nothing that those handlers tear down (concur's own state is never torn
 * down). A concur thread that calls exit() itself skips the join.
 *
 * Happens-before: everything the starting thread did before
 * concur_thread_start happens-before the thread function runs; everything
 * the thread function did happens-before any join that returns 0 or
 * CONCUR_ETASK for it.
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
 * Makes a thread handle that is not started yet.
 * @param out  receives the handle, freed with concur_thread_free.
 * @param fn   the thread function (not NULL).
 * @param arg  passed to fn; the caller keeps ownership.
 * @param opts NULL for the defaults.
 * Errors: CONCUR_EINVAL (out or fn NULL, opts->size too small),
 * CONCUR_ENOMEM.
 */
CONCUR_API CONCUR_NODISCARD int
concur_thread_new(concur_thread **out, concur_task_fn fn, void *arg,
                  const concur_thread_options *opts);

/**
 * Starts the thread. Never blocks beyond the OS's thread creation.
 * @return 0; CONCUR_ESTATE (already started: Python's RuntimeError);
 *         CONCUR_EAGAIN (the OS could not create a thread: the handle stays
 *         unstarted and may be started again); CONCUR_EINVAL (NULL, a stack
 *         size the OS refuses).
 */
CONCUR_API CONCUR_NODISCARD int concur_thread_start(concur_thread *thread);

/** concur_thread_new then concur_thread_start; on failure nothing is left. */
CONCUR_API CONCUR_NODISCARD int
concur_thread_run(concur_thread **out, concur_task_fn fn, void *arg,
                  const concur_thread_options *opts);

/**
 * Waits up to timeout_ns for the thread to finish.
 * @param result receives the thread function's result pointer on 0; may be NULL.
 * @return 0 (finished, function returned 0); CONCUR_ETASK (finished, the
 *         function returned nonzero: read it with concur_thread_exit_code);
 *         CONCUR_ETIMEDOUT (still running); CONCUR_EDEADLK (the caller is
 *         that thread); CONCUR_ESTATE (never started); CONCUR_EINVAL (NULL,
 *         negative timeout).
 */
CONCUR_API CONCUR_NODISCARD int concur_thread_join(concur_thread *thread,
                                                   int64_t timeout_ns,
                                                   void **result);

/** The nonzero code the function returned, or 0 (also while running or for NULL). */
CONCUR_API int concur_thread_exit_code(const concur_thread *thread);

/** True from a successful start until the function has returned. */
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
 * The thread's identifier (threading.Thread.ident): unique among live
 * threads of the process, nonzero once started, 0 before.
 */
CONCUR_API uint64_t concur_thread_ident(const concur_thread *thread);

/** The kernel's thread id (threading.Thread.native_id); 0 before start. */
CONCUR_API uint64_t concur_thread_native_id(const concur_thread *thread);

/**
 * Frees the handle. A thread that is still running is detached: it runs on
 * and its resources are released when it ends; nothing leaks. NULL is a no-op.
 */
CONCUR_API void concur_thread_free(concur_thread *thread);

/** The calling thread's handle when concur started it, else NULL (borrowed). */
CONCUR_API concur_thread *concur_thread_current(void);

/** threading.get_ident(): the calling thread's identifier, also for threads concur did not start. */
CONCUR_API uint64_t concur_thread_get_ident(void);

/** threading.get_native_id(): the calling thread's kernel id. */
CONCUR_API uint64_t concur_thread_get_native_id(void);

/**
 * Copies the calling thread's name into buf: its concur name, "MainThread"
 * for the process's initial thread, or the OS name for other threads.
 * @return the full name's length; CONCUR_EINVAL (buf NULL, len 0).
 */
CONCUR_API int concur_thread_current_name(char *buf, size_t len);

/** The number of threads concur started that are alive now (threading.active_count without the main thread). */
CONCUR_API size_t concur_thread_active_count(void);

/* ======================================================================== */
/** @name Thread-local storage (threading.local)
 * @{ */
typedef struct concur_local concur_local;

/** Called with a thread's value when that thread exits, if the value is non-NULL. */
typedef void (*concur_destructor_fn)(void *value);

/**
 * Makes a thread-local slot; every thread sees NULL until it sets a value.
 * Errors: CONCUR_EINVAL (out NULL); CONCUR_EAGAIN (the OS has no more keys);
 * CONCUR_ENOMEM.
 */
CONCUR_API CONCUR_NODISCARD int concur_local_new(concur_local **out,
                                                 concur_destructor_fn destructor);
/** Frees the slot; destructors do not run for values still set. NULL: no-op. */
CONCUR_API void concur_local_free(concur_local *local);
/** The calling thread's value, or NULL. */
CONCUR_API void *concur_local_get(concur_local *local);
/** Sets the calling thread's value. @return 0; CONCUR_EINVAL; CONCUR_ENOMEM. */
CONCUR_API int concur_local_set(concur_local *local, void *value);
/** @} */

/* ======================================================================== */
/** @name Once
 * Runs a function exactly once however many threads call concur_once_call.
 * A public struct so that it can be initialized statically.
 *
 * Happens-before: the function's return happens-before every return of
 * concur_once_call for the same once.
 * @{ */
typedef struct concur_once {
  uint32_t state;  /**< private */
  uint32_t unused; /**< private */
  uint64_t owner;  /**< private */
} concur_once;

#define CONCUR_ONCE_INIT {0, 0, 0}

/** The function a once runs. */
typedef void (*concur_once_fn)(void *arg);

/**
 * Runs fn(arg) if no call on this once has run yet; other callers block
 * until it has returned.
 * @return 0; CONCUR_EDEADLK (called again from inside fn for the same once);
 *         CONCUR_EINVAL (NULL once or fn).
 */
CONCUR_API int concur_once_call(concur_once *once, concur_once_fn fn, void *arg);
/** @} */

/* ======================================================================== */
/** @name Timer (threading.Timer)
 * A thread that runs a function after a delay unless cancelled first.
 * @{ */
typedef struct concur_timer concur_timer;

/**
 * Makes a timer, not started.
 * @param interval_ns the delay from start to the call (>= 0).
 * @param fn, arg     the task to run; the caller keeps arg.
 * @param opts        thread options for the timer's thread; NULL for defaults.
 * Errors: CONCUR_EINVAL (out or fn NULL, interval_ns < 0), CONCUR_ENOMEM.
 */
CONCUR_API CONCUR_NODISCARD int
concur_timer_new(concur_timer **out, int64_t interval_ns, concur_task_fn fn,
                 void *arg, const concur_thread_options *opts);
/** Starts the countdown. Errors as concur_thread_start. */
CONCUR_API CONCUR_NODISCARD int concur_timer_start(concur_timer *timer);
/**
 * Stops the timer if it is still waiting: the function then never runs.
 * Harmless after the function started, or before start (it will not run).
 * @return 0; CONCUR_EINVAL (NULL).
 */
CONCUR_API int concur_timer_cancel(concur_timer *timer);
/**
 * Waits up to timeout_ns for the timer's thread to end.
 * @return 0 (ended: the function ran and returned 0);
 *         CONCUR_ECANCELED (ended without running the function: cancelled);
 *         CONCUR_ETASK; CONCUR_ETIMEDOUT; CONCUR_EDEADLK; CONCUR_ESTATE;
 *         CONCUR_EINVAL, as concur_thread_join.
 */
CONCUR_API CONCUR_NODISCARD int concur_timer_join(concur_timer *timer,
                                                  int64_t timeout_ns,
                                                  void **result);
/** True while the timer's thread runs. */
CONCUR_API bool concur_timer_is_alive(const concur_timer *timer);
/** Cancels, then frees the handle (the thread, if any, ends on its own). */
CONCUR_API void concur_timer_free(concur_timer *timer);
/** @} */

#ifdef __cplusplus
}
#endif

#endif /* CONCUR_THREAD_H */
