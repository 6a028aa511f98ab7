/*
 * Lock (threading.Lock): a non-recursive lock with no owner.
 *
 * Design
 * - One lock word (sync_internal.h): state 0 free, 1 locked, 2 locked with
 *   maybe sleepers; a count of threads in the parking phase; and seq, the
 *   word sleepers park on. Any thread may release, as in Python, so nothing
 *   records an owner; releasing a free word is CONCUR_EPERM and changes
 *   nothing, because the exchange that frees the word wrote 0 over 0.
 * - Acquire: one compare-and-swap 0 -> 1 when free, in a leaf function with
 *   no clock read and no call. Otherwise the slow path computes the
 *   deadline and spins up to CONCUR__LOCK_SPINS turns (about one futex
 *   round trip), taking the word only once it has stayed free for two looks
 *   in a row (see spin_then_take). Then it registers, marks the word 2 and
 *   parks on seq with the Lock as key. A release that clears a 2 bumps seq
 *   and wakes one sleeper, which spins up to the same bound for the word to
 *   come free and takes it at the first chance: a woken thread that parked
 *   again at once would cost the holder another wake, and could starve.
 * - A thread leaving the parking phase takes the word as 2 only if other
 *   threads are still registered, else as 1, so the last sleeper's release
 *   makes no futex call. A thread that registers later sees the word held
 *   and marks it 2 itself before parking, so no wake-up is lost: every
 *   sleeper is registered, and a release that clears a 2 always wakes one.
 * - Release: one exchange to 0; only a previous 2 costs a wake. In a
 *   single-threaded process both halves are a plain load and store.
 * - Barging is allowed (a running thread may take the word before a woken
 *   one), which keeps throughput high. A woken thread spins for the word
 *   and every contended release wakes a sleeper, so sleepers keep getting
 *   their chance while the holder keeps releasing; but the Lock promises
 *   neither FIFO order nor a bound on the wait (nor does Python's).
 * - Happens-before: the release exchange has release order and every
 *   successful acquire is an acquire-order read-modify-write on the same
 *   word, so a release happens-before every later successful acquire.
 */
#include "concur/sync.h"
#include "platform/platform.h"
#include "sync/sync_internal.h"

#include <stdatomic.h>

struct concur_lock {
  concur__lockword word; /* atomic (see sync_internal.h) */
};

/*
 * The spin before parking: takes the word once it has been seen free on two
 * looks in a row, a pause apart, and gives up early once others sleep (do
 * not barge past them). Waiting for the second look is what keeps two
 * threads hammering one lock from trading it on almost every release: a
 * holder that re-takes the word at once never leaves it free that long, so
 * the spinner ends up parked and the holder runs on, while a holder that
 * goes on to other work leaves it free and the spinner takes it without a
 * sleep.
 */
static bool spin_then_take(concur__lockword *w) {
  bool seen_free = false;
  for (int i = 0; i < CONCUR__LOCK_SPINS; i++) {
    uint32_t s = atomic_load_explicit(&w->state, memory_order_relaxed);
    if (s == CONCUR__LOCKWORD_FREE) {
      if (seen_free) {
        return concur__lockword_try(w);
      }
      seen_free = true;
    } else if (s == CONCUR__LOCKWORD_CONTENDED) {
      return false;
    } else {
      seen_free = false;
    }
    concur__cpu_relax();
  }
  return false;
}

/*
 * The spin after a wake-up: waits, up to the same bound, for the word to be
 * free, so that the woken thread takes it at the first chance instead of
 * parking again and costing the holder another wake.
 */
static void spin_until_free(concur__lockword *w) {
  for (int i = 0; i < CONCUR__LOCK_SPINS; i++) {
    if (atomic_load_explicit(&w->state, memory_order_relaxed) ==
        CONCUR__LOCKWORD_FREE) {
      return;
    }
    concur__cpu_relax();
  }
}

/*
 * Takes a free word in the parking phase, keeping the 2 mark when other
 * registered threads may still sleep, so that the release wakes them.
 */
static bool take_registered(concur__lockword *w) {
  uint32_t want = atomic_load(&w->waiters) > 1 ? CONCUR__LOCKWORD_CONTENDED
                                               : CONCUR__LOCKWORD_LOCKED;
  uint32_t expected = CONCUR__LOCKWORD_FREE;
  return atomic_compare_exchange_strong(&w->state, &expected, want);
}

int concur__lockword_acquire_slow(concur__lockword *w,
                                  concur__deadline deadline, const void *key) {
  if (spin_then_take(w)) {
    return 0;
  }
  /*
   * The parking phase uses sequentially consistent operations throughout.
   * Two orders matter. (1) A sleeper reads seq before it marks (or sees) 2
   * on state, and the release that clears that 2 bumps seq after it, so the
   * park either sees a new seq and returns, or is woken. (2) A thread that
   * leaves with the word reads waiters before its compare-and-swap, and a
   * newcomer registers before it reads state, so a word taken as 1 ("no one
   * else registered") is always seen held by a later newcomer, who then
   * marks it 2 itself.
   */
  atomic_fetch_add(&w->waiters, 1);
  int rc = 0;
  bool timed_out = false;
  for (;;) {
    uint32_t seq = atomic_load(&w->seq);
    uint32_t s = atomic_load(&w->state);
    if (s == CONCUR__LOCKWORD_FREE) {
      if (take_registered(w)) {
        break;
      }
      continue;
    }
    if (timed_out) {
      /* Only a park that was not woken reports a timeout, so leaving
       * consumes no wake-up meant for another sleeper. */
      rc = CONCUR_ETIMEDOUT;
      break;
    }
    if (s == CONCUR__LOCKWORD_LOCKED &&
        !atomic_compare_exchange_strong(&w->state, &s,
                                        CONCUR__LOCKWORD_CONTENDED)) {
      continue;
    }
    timed_out = concur__park(&w->seq, seq, deadline, key) == CONCUR_ETIMEDOUT;
    if (!timed_out) {
      spin_until_free(w);
    }
  }
  atomic_fetch_sub(&w->waiters, 1);
  return rc;
}

void concur__lockword_wake(concur__lockword *w) {
  atomic_fetch_add(&w->seq, 1);
  concur__unpark(&w->seq, 1);
}

/* Kept out of line so that the fast path stays a leaf with no frame. */
__attribute__((noinline)) static int lock_acquire_slow(concur_lock *lock,
                                                       int64_t timeout_ns) {
  if (timeout_ns == CONCUR_NOWAIT) {
    return CONCUR_ETIMEDOUT;
  }
  concur__deadline deadline;
  (void)concur__deadline_from_timeout(timeout_ns, &deadline);
  return concur__lockword_acquire_slow(&lock->word, deadline, lock);
}

void concur__lock_acquire_after_wait(concur_lock *lock) {
  if (!concur__lockword_try(&lock->word)) {
    (void)concur__lockword_acquire_slow(&lock->word, CONCUR__NO_DEADLINE, lock);
  }
}

int concur_lock_new(concur_lock **out) {
  if (out == NULL) {
    return CONCUR_EINVAL;
  }
  concur_lock *lock = concur__calloc(1, sizeof *lock);
  if (lock == NULL) {
    return CONCUR_ENOMEM;
  }
  *out = lock;
  return 0;
}

void concur_lock_free(concur_lock *lock) {
  if (lock == NULL) {
    return;
  }
  if (atomic_load_explicit(&lock->word.waiters, memory_order_relaxed) != 0) {
    concur__panic("concur_lock_free: threads are blocked in this Lock");
  }
  concur__free(lock);
}

int concur_lock_acquire(concur_lock *lock, int64_t timeout_ns) {
  if (lock == NULL || timeout_ns < 0) {
    return CONCUR_EINVAL;
  }
  if (concur__lockword_try(&lock->word)) {
    return 0;
  }
  return lock_acquire_slow(lock, timeout_ns);
}

int concur_lock_release(concur_lock *lock) {
  if (lock == NULL) {
    return CONCUR_EINVAL;
  }
  return concur__lockword_release(&lock->word) ? 0 : CONCUR_EPERM;
}

bool concur_lock_locked(concur_lock *lock) {
  return lock != NULL &&
         atomic_load_explicit(&lock->word.state, memory_order_relaxed) !=
             CONCUR__LOCKWORD_FREE;
}

int concur_lock_at_fork_reinit(concur_lock *lock) {
  if (lock == NULL) {
    return CONCUR_EINVAL;
  }
  /* Only this thread exists in the child: plain resets are enough. */
  atomic_store_explicit(&lock->word.state, CONCUR__LOCKWORD_FREE,
                        memory_order_relaxed);
  atomic_store_explicit(&lock->word.waiters, 0, memory_order_relaxed);
  atomic_store_explicit(&lock->word.seq, 0, memory_order_relaxed);
  return 0;
}
