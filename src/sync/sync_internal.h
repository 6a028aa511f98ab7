/*
 * Private to src/sync: the lock word that Lock and RLock share, and the
 * RLock save/restore pair that Condition uses to drop and retake every
 * recursion level around a wait.
 *
 * The lock word
 * - state is the classic three-state word: 0 free, 1 locked, 2 locked and
 *   maybe with sleepers. A release that finds 2 wakes one sleeper; a release
 *   that finds 1 makes no system call.
 * - Sleepers park on seq, not on state: a release bumps seq before it wakes,
 *   so a sleeper stays asleep while the holder releases and re-takes the
 *   lock (state flips every few nanoseconds under contention) and only
 *   wakes for a wake meant for it. Parking on state instead makes almost
 *   every park return at once and costs two system calls per hand-off.
 * - waiters counts the threads between registering for the parking phase and
 *   leaving it. A thread leaving the parking phase with the lock keeps the 2
 *   mark only when others are still registered, so the last sleeper's own
 *   release makes no system call. It also lets free() detect misuse.
 * - While the process has a single thread (glibc's __libc_single_threaded,
 *   which glibc's own pthread_mutex also reads) no other thread can race, so
 *   the word is read and written with plain relaxed accesses instead of
 *   read-modify-writes. pthread_create clears the flag before the new thread
 *   exists, and happens-before it, so the switch needs no care.
 */
#ifndef CONCUR_SYNC_INTERNAL_H
#define CONCUR_SYNC_INTERNAL_H

#include "concur/sync.h"
#include "platform/platform.h"

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#if defined(__GLIBC__) &&                                                      \
    (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 32))
#include <sys/single_threaded.h>
#define CONCUR__SINGLE_THREADED() (__libc_single_threaded != 0)
#else
#define CONCUR__SINGLE_THREADED() false
#endif

enum {
  CONCUR__LOCKWORD_FREE = 0,
  CONCUR__LOCKWORD_LOCKED = 1,
  CONCUR__LOCKWORD_CONTENDED = 2
};

typedef struct concur__lockword {
  _Atomic uint32_t state;   /* atomic: CONCUR__LOCKWORD_* */
  _Atomic uint32_t waiters; /* atomic: threads in the parking phase */
  _Atomic uint32_t seq;     /* atomic: what sleepers park on; +1 per wake */
} concur__lockword;

/**
 * Takes a free word: true when it did. Acquire order, so whatever the
 * previous holder did before its release is visible to the caller.
 */
static inline bool concur__lockword_try(concur__lockword *w) {
  if (CONCUR__SINGLE_THREADED()) {
    if (atomic_load_explicit(&w->state, memory_order_relaxed) !=
        CONCUR__LOCKWORD_FREE) {
      return false;
    }
    atomic_store_explicit(&w->state, CONCUR__LOCKWORD_LOCKED,
                          memory_order_relaxed);
    return true;
  }
  uint32_t expected = CONCUR__LOCKWORD_FREE;
  return atomic_compare_exchange_strong_explicit(
      &w->state, &expected, CONCUR__LOCKWORD_LOCKED, memory_order_acquire,
      memory_order_relaxed);
}

/*
 * Spin turns, each a load and a pause (about 40 ns on current x86 parts):
 * about one futex wait + wake round trip, the most a spin may cost before
 * parking is cheaper. Bounded, so a thread never spins on a holder that was
 * preempted.
 */
#ifndef CONCUR__LOCK_SPINS
#define CONCUR__LOCK_SPINS 64
#endif

/**
 * The blocking part of an acquire, after concur__lockword_try failed:
 * spins briefly, then parks with the given key until it takes the word or
 * the deadline passes. Returns 0 or CONCUR_ETIMEDOUT.
 */
int concur__lockword_acquire_slow(concur__lockword *w,
                                  concur__deadline deadline, const void *key);

/** Takes a Lock, blocking without a deadline, for a Condition waiter. */
void concur__lock_acquire_after_wait(concur_lock *lock);

/** Wakes one sleeper: the cold half of a release that found 2. */
void concur__lockword_wake(concur__lockword *w);

/**
 * Frees the word. Returns false, changing nothing, when it was not locked.
 * Release order: the holder's writes happen-before the next acquire.
 */
static inline bool concur__lockword_release(concur__lockword *w) {
  uint32_t prev;
  if (CONCUR__SINGLE_THREADED()) {
    prev = atomic_load_explicit(&w->state, memory_order_relaxed);
    atomic_store_explicit(&w->state, CONCUR__LOCKWORD_FREE,
                          memory_order_relaxed);
  } else {
    prev = atomic_exchange_explicit(&w->state, CONCUR__LOCKWORD_FREE,
                                    memory_order_release);
  }
  if (prev == CONCUR__LOCKWORD_CONTENDED) {
    concur__lockword_wake(w);
  }
  return prev != CONCUR__LOCKWORD_FREE;
}

/**
 * RLock's _release_save: the owner drops every recursion level at once and
 * learns how many there were. Returns 0, or CONCUR_EPERM (the caller does
 * not own the RLock: nothing changes).
 */
int concur__rlock_release_save(concur_rlock *rlock, unsigned *count);

/**
 * RLock's _acquire_restore: takes the RLock, blocking without a deadline,
 * and sets its recursion count to count (>= 1) in one step.
 */
void concur__rlock_acquire_restore(concur_rlock *rlock, unsigned count);

#endif /* CONCUR_SYNC_INTERNAL_H */
