/**
 * @file concur/sync.h
 * @brief Python's threading synchronization primitives: Lock, RLock,
 * Condition, Semaphore, BoundedSemaphore, Event and Barrier.
 *
 * Every object is an opaque heap object made by `concur_X_new` and freed by
 * `concur_X_free`. Every function is thread-safe unless it says otherwise.
 * NULL handles are CONCUR_EINVAL (predicates return false), never a crash.
 * Freeing an object while a thread is blocked in it, or while it is held, is
 * misuse: the library aborts with a message naming it where it can tell.
 *
 * Blocking calls take `timeout_ns` (see concur/base.h): CONCUR_NOWAIT polls,
 * CONCUR_FOREVER waits without a deadline, a negative value is CONCUR_EINVAL.
 * A wait that is not satisfied in time returns CONCUR_ETIMEDOUT, never before
 * the timeout, measured on CLOCK_MONOTONIC. Spurious wake-ups never surface.
 */
#ifndef CONCUR_SYNC_H
#define CONCUR_SYNC_H

#include "concur/base.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ======================================================================== */
/** @name Lock (threading.Lock)
 * A non-recursive mutual-exclusion lock. Like Python's Lock, and unlike a
 * pthread mutex, it has no owner: any thread may release it.
 *
 * Waiting is not FIFO (nor is Python's): a thread arriving while a woken
 * waiter is being scheduled may take the Lock first.
 *
 * Happens-before: a successful release happens-before every acquire that
 * later succeeds on the same lock.
 * @{ */
typedef struct concur_lock concur_lock;

/** Makes an unlocked Lock. Errors: CONCUR_EINVAL (out NULL), CONCUR_ENOMEM. */
CONCUR_API CONCUR_NODISCARD int concur_lock_new(concur_lock **out);
/**
 * Frees a Lock (NULL is a no-op). It may still be held (Python drops held
 * locks too). Aborts, naming the misuse, if threads are blocked in it.
 */
CONCUR_API void concur_lock_free(concur_lock *lock);
/**
 * Acquires the Lock, blocking up to timeout_ns (CONCUR_NOWAIT polls).
 * Acquiring a Lock the caller already holds blocks (it is not recursive).
 * Signals interrupting the wait are absorbed.
 * @return 0; CONCUR_ETIMEDOUT (not acquired in time, never before the
 *         timeout; CONCUR_NOWAIT on a held lock); CONCUR_EINVAL (NULL lock,
 *         negative timeout).
 */
CONCUR_API CONCUR_NODISCARD int concur_lock_acquire(concur_lock *lock,
                                                    int64_t timeout_ns);
/**
 * Releases the Lock; any thread may release it. Wakes one blocked acquirer,
 * if any, to take it. Never blocks.
 * @return 0; CONCUR_EPERM (the Lock was not locked: nothing changes);
 *         CONCUR_EINVAL (NULL).
 */
CONCUR_API int concur_lock_release(concur_lock *lock);
/** True while the Lock is held by someone (a snapshot); false for NULL. */
CONCUR_API bool concur_lock_locked(concur_lock *lock);
/**
 * Resets the Lock to unlocked with no waiters, for a child process right
 * after fork() (Python's _at_fork_reinit). Only call it in a forked child on
 * a Lock that the parent's other threads might have held; never while other
 * threads of this process use it.
 * @return 0; CONCUR_EINVAL (NULL).
 */
CONCUR_API int concur_lock_at_fork_reinit(concur_lock *lock);
/** @} */

/* ======================================================================== */
/** @name RLock (threading.RLock)
 * A re-entrant lock: the owning thread may acquire it again; it is released
 * when every acquire has been matched by a release from the owner.
 *
 * Happens-before: the owner's final release happens-before every acquire
 * that later succeeds.
 * @{ */
typedef struct concur_rlock concur_rlock;

/** Makes an unowned RLock. Errors: CONCUR_EINVAL (out NULL), CONCUR_ENOMEM. */
CONCUR_API CONCUR_NODISCARD int concur_rlock_new(concur_rlock **out);
/**
 * Frees an RLock (NULL is a no-op). Aborts, naming the misuse, if threads are
 * blocked in it.
 */
CONCUR_API void concur_rlock_free(concur_rlock *rlock);
/**
 * Acquires the RLock: at once, incrementing the recursion count, when the
 * caller owns it (whatever the timeout); else blocks up to timeout_ns
 * (CONCUR_NOWAIT polls). Waiting is not FIFO.
 * @return 0; CONCUR_ETIMEDOUT (not acquired in time, never before the
 *         timeout); CONCUR_EINVAL (NULL, negative timeout);
 *         CONCUR_EOVERFLOW (the recursion count, an unsigned, would
 *         overflow: nothing changes).
 */
CONCUR_API CONCUR_NODISCARD int concur_rlock_acquire(concur_rlock *rlock,
                                                     int64_t timeout_ns);
/**
 * Releases one level; the RLock is free once the count reaches 0.
 * @return 0; CONCUR_EPERM (the caller does not own it, or nobody does:
 *         nothing changes); CONCUR_EINVAL (NULL).
 */
CONCUR_API int concur_rlock_release(concur_rlock *rlock);
/** The caller's recursion count: 0 when another thread (or none) owns it. */
CONCUR_API unsigned concur_rlock_recursion_count(concur_rlock *rlock);
/** True when the calling thread owns the RLock. */
CONCUR_API bool concur_rlock_is_owned(concur_rlock *rlock);
/** True while any thread owns the RLock (a snapshot). */
CONCUR_API bool concur_rlock_locked(concur_rlock *rlock);
/** @} */

/* ======================================================================== */
/** @name Condition (threading.Condition)
 * A condition variable bound to a Lock or an RLock (its own RLock by
 * default, as in Python). wait() must be called with the lock held; it
 * releases it (every recursion level of an RLock), sleeps until notified or
 * timed out, and re-acquires it (restoring the level) before returning.
 * notify() wakes waiters in the order they started waiting.
 *
 * Over a plain Lock, which has no owner, "the caller holds the lock" can
 * only be checked as "the Lock is locked": calling wait or notify while
 * another thread holds it is a data race the library cannot report.
 *
 * Happens-before: actions of a thread before notify(), and before it
 * releases the lock, happen-before the return of the waiters it wakes.
 * @{ */
typedef struct concur_condition concur_condition;

/** A predicate for concur_condition_wait_for: true when the wait is over. */
typedef bool (*concur_predicate_fn)(void *arg);

/** Makes a Condition with its own new RLock. Errors: CONCUR_EINVAL,
 * CONCUR_ENOMEM. */
CONCUR_API CONCUR_NODISCARD int concur_condition_new(concur_condition **out);
/**
 * Makes a Condition over an existing Lock, which it does not own: the Lock
 * must outlive the Condition. Several Conditions may share one lock.
 * Errors: CONCUR_EINVAL (NULL), CONCUR_ENOMEM.
 */
CONCUR_API CONCUR_NODISCARD int
concur_condition_new_with_lock(concur_condition **out, concur_lock *lock);
/** As concur_condition_new_with_lock, over an existing RLock. */
CONCUR_API CONCUR_NODISCARD int
concur_condition_new_with_rlock(concur_condition **out, concur_rlock *rlock);
/**
 * Frees a Condition (and its own RLock; never a Lock or RLock it was given).
 * Aborts, naming the misuse, if threads wait in it.
 */
CONCUR_API void concur_condition_free(concur_condition *cond);
/** Acquires the underlying lock: as concur_lock_acquire / concur_rlock_acquire.
 */
CONCUR_API CONCUR_NODISCARD int concur_condition_acquire(concur_condition *cond,
                                                         int64_t timeout_ns);
/** Releases the underlying lock: as concur_lock_release / concur_rlock_release.
 */
CONCUR_API int concur_condition_release(concur_condition *cond);
/**
 * Waits until notified or timed out; the lock is held again on every return
 * except CONCUR_EINVAL and CONCUR_EPERM, where nothing changed. The timeout
 * bounds the wait for a notify; taking the lock back has no deadline (as in
 * Python), so the call may return after its timeout while others hold the
 * lock. CONCUR_NOWAIT still releases and retakes the lock once. Spurious
 * wake-ups and signals never surface.
 * @return 0 (a notify chose this waiter, even if the timeout also ran out
 *         before the lock was retaken); CONCUR_ETIMEDOUT (no notify within
 *         the timeout, never before it); CONCUR_EPERM (the caller does not
 *         hold the lock: for a plain Lock, the Lock is not locked at all);
 *         CONCUR_EINVAL (NULL, negative timeout).
 */
CONCUR_API CONCUR_NODISCARD int concur_condition_wait(concur_condition *cond,
                                                      int64_t timeout_ns);
/**
 * Waits until pred(arg) is true, evaluating it with the lock held, first
 * before any wait; the timeout covers the whole call (one deadline for all
 * the waits), and the lock is held on return as for concur_condition_wait.
 * With CONCUR_NOWAIT it evaluates pred once, without releasing the lock.
 * @return 0 when the predicate's last value was true; CONCUR_ETIMEDOUT when
 *         it was still false at the deadline; CONCUR_EPERM (lock not held:
 *         pred is not called); CONCUR_EINVAL (NULL cond or pred, negative
 *         timeout).
 */
CONCUR_API CONCUR_NODISCARD int
concur_condition_wait_for(concur_condition *cond, concur_predicate_fn pred,
                          void *arg, int64_t timeout_ns);
/**
 * Wakes up to n waiters, longest-waiting first (0 wakes none). The caller
 * must hold the lock; the woken waiters return once it is released. Never
 * blocks.
 * @return 0; CONCUR_EPERM (lock not held); CONCUR_EINVAL (NULL, n < 0).
 */
CONCUR_API int concur_condition_notify(concur_condition *cond, int n);
/** Wakes every waiter. Errors as concur_condition_notify. */
CONCUR_API int concur_condition_notify_all(concur_condition *cond);
/** @} */

/* ======================================================================== */
/** @name Semaphore and BoundedSemaphore (threading.Semaphore, BoundedSemaphore)
 * A counter of permits. acquire() takes one, blocking while there is none;
 * release(n) adds n. A bounded semaphore refuses to rise above its initial
 * value. The value never exceeds INT32_MAX.
 *
 * Waiting is not FIFO (nor is Python's): a thread arriving while a released
 * waiter is being scheduled may take the permit first.
 *
 * Happens-before: a release happens-before every acquire that takes a permit
 * it added.
 * @{ */
typedef struct concur_semaphore concur_semaphore;

/**
 * Makes a Semaphore holding value permits (Python's default is 1).
 * Errors: CONCUR_EINVAL (out NULL, value < 0), CONCUR_ENOMEM.
 */
CONCUR_API CONCUR_NODISCARD int concur_semaphore_new(concur_semaphore **out,
                                                     int32_t value);
/** Makes a BoundedSemaphore: as concur_semaphore_new, bounded by value. */
CONCUR_API CONCUR_NODISCARD int
concur_semaphore_new_bounded(concur_semaphore **out, int32_t value);
/**
 * Frees a Semaphore (NULL is a no-op). Aborts, naming the misuse, if threads
 * are blocked in acquire. A thread whose acquire just returned may free it
 * even while the releasing thread is still returning from release.
 */
CONCUR_API void concur_semaphore_free(concur_semaphore *sem);
/**
 * Takes one permit, blocking up to timeout_ns while there is none
 * (CONCUR_NOWAIT polls). Signals interrupting the wait are absorbed.
 * @return 0; CONCUR_ETIMEDOUT (no permit in time; never before the
 *         timeout); CONCUR_EINVAL (NULL, negative timeout).
 */
CONCUR_API CONCUR_NODISCARD int concur_semaphore_acquire(concur_semaphore *sem,
                                                         int64_t timeout_ns);
/**
 * Adds n permits (n >= 1) and wakes up to n waiters. Any thread may release.
 * Never blocks; lock-free.
 * @return 0; CONCUR_EOVERFLOW (bounded: the value would exceed the initial
 *         value, or any: it would exceed INT32_MAX; nothing changes);
 *         CONCUR_EINVAL (NULL, n < 1).
 */
CONCUR_API int concur_semaphore_release(concur_semaphore *sem, int32_t n);
/** The permits available now (a snapshot); 0 for NULL. */
CONCUR_API int32_t concur_semaphore_value(concur_semaphore *sem);
/** @} */

/* ======================================================================== */
/** @name Event (threading.Event)
 * A flag that threads wait on until another sets it.
 *
 * Happens-before: actions before set() happen-before the return of every
 * wait() that it releases and every is_set() that sees it.
 * @{ */
typedef struct concur_event concur_event;

/** Makes a clear Event. Errors: CONCUR_EINVAL (out NULL), CONCUR_ENOMEM. */
CONCUR_API CONCUR_NODISCARD int concur_event_new(concur_event **out);
/**
 * Frees an Event (NULL is a no-op). Aborts, naming the misuse, if threads
 * wait in it. A thread whose wait just returned may free it even while the
 * setting thread is still returning from set.
 */
CONCUR_API void concur_event_free(concur_event *event);
/**
 * Sets the flag and wakes every waiter. Idempotent. A thread already waiting
 * when set() is called returns 0 even if clear() follows at once. Never
 * blocks; lock-free.
 * @return 0; CONCUR_EINVAL (NULL).
 */
CONCUR_API int concur_event_set(concur_event *event);
/**
 * Clears the flag. Idempotent. Never blocks. Threads that were waiting when
 * the flag was last set still return 0.
 * @return 0; CONCUR_EINVAL (NULL).
 */
CONCUR_API int concur_event_clear(concur_event *event);
/** True while the flag is set; false for NULL. */
CONCUR_API bool concur_event_is_set(concur_event *event);
/**
 * Blocks until the flag is set, up to timeout_ns (Python's wait returning
 * True is 0 here, False is CONCUR_ETIMEDOUT); returns at once when it is
 * already set. Signals interrupting the wait are absorbed.
 * @return 0 (the flag was set while waiting, even if cleared since);
 *         CONCUR_ETIMEDOUT (never before the timeout); CONCUR_EINVAL (NULL,
 *         negative timeout).
 */
CONCUR_API CONCUR_NODISCARD int concur_event_wait(concur_event *event,
                                                  int64_t timeout_ns);
/** @} */

/* ======================================================================== */
/** @name Barrier (threading.Barrier)
 * A cyclic rendezvous of a fixed number of parties. When the last party
 * arrives, the optional action runs once, in that thread, before anyone is
 * released; then the barrier resets for the next generation. Threads that
 * arrive while the action runs, or before the released parties have run,
 * simply form the next generation.
 *
 * The action runs without the barrier's internal lock: it may call
 * n_waiting, broken, abort and reset on its own barrier (an abort or reset
 * there breaks its generation: every party gets CONCUR_EBROKEN). Calling
 * wait from the action makes its thread a party of the next generation.
 *
 * Happens-before: everything each party did before wait() happens-before the
 * action, and the action happens-before every party's return from wait().
 * @{ */
typedef struct concur_barrier concur_barrier;

/** The barrier action: 0 for success; nonzero breaks the barrier. */
typedef int (*concur_action_fn)(void *arg);

/**
 * Makes a Barrier.
 * @param parties           threads that must arrive (>= 1).
 * @param action            run by the last arrival of each generation; may be
 * NULL.
 * @param arg               passed to action.
 * @param default_timeout_ns used by waits given CONCUR_DEFAULT; CONCUR_FOREVER
 * for none. Errors: CONCUR_EINVAL (out NULL, parties < 1, negative default),
 * CONCUR_ENOMEM.
 */
CONCUR_API CONCUR_NODISCARD int concur_barrier_new(concur_barrier **out,
                                                   int32_t parties,
                                                   concur_action_fn action,
                                                   void *arg,
                                                   int64_t default_timeout_ns);
/**
 * Frees a Barrier (NULL is a no-op). Aborts, naming the misuse, if a thread
 * is blocked in wait or running the action. Parties already released but
 * still returning from wait are waited for (briefly), so any party may free
 * the barrier as soon as its own wait returned, once no thread will call it
 * again.
 */
CONCUR_API void concur_barrier_free(concur_barrier *barrier);
/**
 * Waits for all parties, blocking up to timeout_ns; timeout_ns may be
 * CONCUR_DEFAULT (the barrier's default timeout). Once every party has
 * arrived the timeout no longer applies: the caller waits for the action to
 * finish (as in Python). Signals interrupting the wait are absorbed.
 * @return the arrival index 0..parties-1 (0 for the first to arrive,
 *         parties-1 for the last, the one that runs the action, as in
 *         Python); CONCUR_ETIMEDOUT (this caller's timeout ran out before
 *         all arrived: the barrier is now broken, the others get
 *         CONCUR_EBROKEN); CONCUR_EBROKEN (the barrier is or became broken:
 *         an abort, a reset during the wait, another party's timeout, or a
 *         nonzero action, which the action's own thread also gets);
 *         CONCUR_EINVAL (NULL, negative timeout other than CONCUR_DEFAULT).
 */
CONCUR_API CONCUR_NODISCARD int concur_barrier_wait(concur_barrier *barrier,
                                                    int64_t timeout_ns);
/**
 * Returns the barrier to its initial state, unbroken with nobody waiting;
 * threads waiting in it (and a generation whose action is running) return
 * CONCUR_EBROKEN. Never blocks beyond the internal lock.
 * @return 0; CONCUR_EINVAL (NULL).
 */
CONCUR_API int concur_barrier_reset(concur_barrier *barrier);
/**
 * Breaks the barrier: current waiters (and a generation whose action is
 * running) and later callers return CONCUR_EBROKEN until reset. Idempotent.
 * @return 0; CONCUR_EINVAL (NULL).
 */
CONCUR_API int concur_barrier_abort(concur_barrier *barrier);
/** The number of parties; 0 for NULL. */
CONCUR_API int32_t concur_barrier_parties(concur_barrier *barrier);
/**
 * The number of threads waiting in the current, still-filling generation (a
 * snapshot); 0 for NULL.
 */
CONCUR_API int32_t concur_barrier_n_waiting(concur_barrier *barrier);
/** True while the barrier is broken; false for NULL. */
CONCUR_API bool concur_barrier_broken(concur_barrier *barrier);
/** @} */

#ifdef __cplusplus
}
#endif

#endif /* CONCUR_SYNC_H */
