/*
 * Semaphore and BoundedSemaphore (threading.Semaphore, BoundedSemaphore).
 *
 * Design
 * - Threads: any number of acquirers and releasers; no thread of our own.
 * - State: one 32-bit word, the futex word parkers sleep on. Its low 31 bits
 *   are the permit count (at most INT32_MAX, so it always fits); its top bit,
 *   WAITERS, says "a thread may be parked: a release must wake". Beside it,
 *   nwaiters counts the threads in acquire's slow path; it decides who clears
 *   WAITERS and lets free() detect blocked threads. No lock anywhere.
 * - acquire: CAS the count down while it is positive. Otherwise register in
 *   nwaiters, set WAITERS in the word, and park while the word still reads
 *   "WAITERS, no permit". After every return from park (woken, timed out,
 *   spurious, EINTR) it first tries to take a permit again; it gives up with
 *   CONCUR_ETIMEDOUT only after seeing the count at 0 past its deadline. So
 *   a waiter that times out never swallows a wake-up meant for a permit: if
 *   the wake found it, it takes the permit; if the count is 0, there was
 *   nothing to pass on.
 * - release(n): one CAS adds n, keeping WAITERS, and refuses (EOVERFLOW,
 *   nothing changed) past the bound. When the old word had WAITERS it wakes
 *   up to n parked threads; otherwise no syscall. Because the count and the
 *   flag live in one word, the CAS both publishes the permits and learns
 *   whether to wake, and the only thing release does afterwards is
 *   concur__unpark on the word's address, which never dereferences it: a
 *   thread that acquires may free the semaphore at once, even while the
 *   releaser is still returning (the completion-signal pattern).
 * - WAITERS stays set while any thread is registered, so a release(n) that
 *   wakes fewer than all of them leaves it set for the next release. The
 *   last registered thread to leave clears it; if a newcomer registered
 *   meanwhile (it may have parked on the flagged word), the leaver wakes
 *   everyone parked so the newcomer re-flags the word before it sleeps again.
 *   That rare wake-all is the price of never losing a wake-up.
 * - Guarantees: no permit is lost or duplicated; the count never exceeds the
 *   bound; a release happens-before the acquire that takes one of its
 *   permits (release CAS, acquire CAS, with only RMWs between them, so the
 *   release sequence carries the edge). Not FIFO: a thread arriving while a
 *   woken waiter is still being scheduled may take the permit first (as in
 *   Python), and the woken one parks again.
 */
#include "concur/sync.h"
#include "platform/platform.h"

#include <stdatomic.h>
#include <stdint.h>

#define WAITERS UINT32_C(0x80000000)
#define COUNT_MASK UINT32_C(0x7fffffff)

/* About one futex round trip, as the internal mutex spins. */
#define ACQUIRE_SPINS 100

struct concur_semaphore {
  _Atomic uint32_t word;     /* atomic: permits | WAITERS; the futex word */
  _Atomic uint32_t nwaiters; /* atomic: threads in acquire's slow path */
  /* immutable after init: the initial value when bounded, else INT32_MAX */
  uint32_t limit;
};

static int make(concur_semaphore **out, int32_t value, bool bounded) {
  if (out == NULL || value < 0) {
    return CONCUR_EINVAL;
  }
  concur_semaphore *sem = concur__malloc(sizeof *sem);
  if (sem == NULL) {
    return CONCUR_ENOMEM;
  }
  atomic_init(&sem->word, (uint32_t)value);
  atomic_init(&sem->nwaiters, 0);
  sem->limit = bounded ? (uint32_t)value : (uint32_t)INT32_MAX;
  *out = sem;
  return 0;
}

int concur_semaphore_new(concur_semaphore **out, int32_t value) {
  return make(out, value, false);
}

int concur_semaphore_new_bounded(concur_semaphore **out, int32_t value) {
  return make(out, value, true);
}

void concur_semaphore_free(concur_semaphore *sem) {
  if (sem == NULL) {
    return;
  }
  uint32_t n = atomic_load_explicit(&sem->nwaiters, memory_order_relaxed);
  if (n != 0) {
    concur__panic("concur_semaphore_free: %u thread(s) still blocked in "
                  "concur_semaphore_acquire",
                  (unsigned)n);
  }
  concur__free(sem);
}

/* Takes a permit if the count is positive. */
static bool try_take(concur_semaphore *sem) {
  uint32_t v = atomic_load_explicit(&sem->word, memory_order_relaxed);
  while ((v & COUNT_MASK) != 0) {
    /* Acquire pairs with the release CAS that added the permit. */
    if (atomic_compare_exchange_weak_explicit(&sem->word, &v, v - 1,
                                              memory_order_acquire,
                                              memory_order_relaxed)) {
      return true;
    }
  }
  return false;
}

#ifdef CONCUR_TESTING
/* Test seam: when set, the last leaver calls it between deregistering and
 * clearing WAITERS, so a test can hold it in that window while a newcomer
 * parks. Set and cleared only while no other thread uses a semaphore. */
void (*concur__semaphore_leave_hook)(concur_semaphore *sem);
#endif

/* The slow path's exit: deregister, and clear WAITERS if we were the last. */
static void leave(concur_semaphore *sem) {
  /* seq_cst on nwaiters and on the word: the clearing leaver and a newcomer
   * registering run a Dekker-style handshake (see the Design comment). */
  if (atomic_fetch_sub(&sem->nwaiters, 1) != 1) {
    return;
  }
#ifdef CONCUR_TESTING
  if (concur__semaphore_leave_hook != NULL) {
    concur__semaphore_leave_hook(sem);
  }
#endif
  uint32_t v = atomic_load(&sem->word);
  while ((v & WAITERS) != 0) {
    if (atomic_compare_exchange_weak(&sem->word, &v, v & ~WAITERS)) {
      break;
    }
  }
  /* Only a thread that saw WAITERS can be parked on a flagged word; if the
   * flag was already clear, there is nobody to rescue. */
  if ((v & WAITERS) != 0 && atomic_load(&sem->nwaiters) != 0) {
    /* A newcomer may be parked on the word with WAITERS set, which we just
     * cleared: a release would not wake it. Wake everyone parked; each one
     * re-checks and re-flags the word before sleeping again. */
    concur__unpark(&sem->word, INT32_MAX);
  }
}

int concur_semaphore_acquire(concur_semaphore *sem, int64_t timeout_ns) {
  if (sem == NULL) {
    return CONCUR_EINVAL;
  }
  concur__deadline deadline;
  int rc = concur__deadline_from_timeout(timeout_ns, &deadline);
  if (rc != 0) {
    return rc;
  }
  if (try_take(sem)) {
    return 0;
  }
  if (timeout_ns == CONCUR_NOWAIT) {
    return CONCUR_ETIMEDOUT;
  }
  for (int i = 0; i < ACQUIRE_SPINS; i++) {
    concur__cpu_relax();
    if (try_take(sem)) {
      return 0;
    }
  }

  atomic_fetch_add(&sem->nwaiters, 1); /* seq_cst: see leave() */
  rc = 0;
  for (;;) {
    uint32_t v = atomic_load(&sem->word);
    if ((v & COUNT_MASK) != 0) {
      if (atomic_compare_exchange_weak_explicit(&sem->word, &v, v - 1,
                                                memory_order_acquire,
                                                memory_order_relaxed)) {
        rc = 0;
        break;
      }
      continue;
    }
    /* The count is 0: this is the only place a waiter gives up, so it never
     * leaves a permit behind that a wake-up meant for it announced. */
    if (rc == CONCUR_ETIMEDOUT || concur__deadline_passed(deadline)) {
      rc = CONCUR_ETIMEDOUT;
      break;
    }
    if ((v & WAITERS) == 0) {
      if (!atomic_compare_exchange_weak(&sem->word, &v, v | WAITERS)) {
        continue;
      }
      v |= WAITERS;
    }
    rc = concur__park(&sem->word, v, deadline, sem);
  }
  leave(sem);
  return rc;
}

int concur_semaphore_release(concur_semaphore *sem, int32_t n) {
  if (sem == NULL || n < 1) {
    return CONCUR_EINVAL;
  }
  uint32_t v = atomic_load_explicit(&sem->word, memory_order_relaxed);
  do {
    if ((uint32_t)n > sem->limit - (v & COUNT_MASK)) {
      return CONCUR_EOVERFLOW;
    }
    /* Release publishes what the releaser did to whoever takes a permit.
     * WAITERS is read from the very word the CAS replaces, so no waiter can
     * slip between the check and the update. */
  } while (!atomic_compare_exchange_weak_explicit(
      &sem->word, &v, v + (uint32_t)n, memory_order_release,
      memory_order_relaxed));
  if ((v & WAITERS) != 0) {
    /* Address only: the semaphore may already be freed by an acquirer. */
    concur__unpark(&sem->word, n);
  }
  return 0;
}

int32_t concur_semaphore_value(concur_semaphore *sem) {
  if (sem == NULL) {
    return 0;
  }
  return (int32_t)(atomic_load_explicit(&sem->word, memory_order_relaxed) &
                   COUNT_MASK);
}
