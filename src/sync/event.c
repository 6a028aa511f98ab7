/*
 * Event (threading.Event).
 *
 * Design
 * - Threads: any number of waiters, setters and clearers; no lock.
 * - State: one 32-bit futex word: bit 0 SET (the flag), bit 1 WAITERS ("a
 *   thread may be parked: set must wake"), bits 2..31 a generation that
 *   every set() advances. nwaiters counts threads inside wait(), only so
 *   that free() can detect misuse.
 * - set: one CAS from a clear word to (generation + 1) | SET, dropping
 *   WAITERS; when the old word had WAITERS it wakes every parked thread.
 *   clear: one CAS dropping SET, keeping the generation. Both are idempotent
 *   and change nothing when the flag already has the wanted value.
 * - wait: a waiter that reads the flag clear remembers that word (without
 *   WAITERS) as its base, flags WAITERS, and parks while the word is
 *   unchanged. From a clear base only set() changes the word outside
 *   WAITERS, so the waiter returns 0 as soon as the word differs from its
 *   base, even if clear() already followed: that is EVT-03 (a set
 *   immediately followed by a clear still releases every thread that was
 *   already waiting), which a plain flag would lose. The generation makes
 *   "set, then clear" a different word from the base; it would take 2^30
 *   set() calls between a waiter's two reads to fool it.
 * - set never dereferences the event after its CAS (the wake is by address
 *   only), so a waiter may free the event as soon as its wait returned.
 * - Happens-before: the set CAS is a release, the waiter's and is_set's
 *   loads are acquires; every later write to the word is an RMW, so the
 *   release sequence carries the edge past clears and WAITERS updates.
 */
#include "concur/sync.h"
#include "platform/platform.h"

#include <stdatomic.h>
#include <stdint.h>

#define SET UINT32_C(1)
#define WAITERS UINT32_C(2)
#define GENERATION_STEP UINT32_C(4)

struct concur_event {
  _Atomic uint32_t word;     /* atomic: generation | WAITERS | SET */
  _Atomic uint32_t nwaiters; /* atomic: threads inside concur_event_wait */
};

int concur_event_new(concur_event **out) {
  if (out == NULL) {
    return CONCUR_EINVAL;
  }
  concur_event *event = concur__malloc(sizeof *event);
  if (event == NULL) {
    return CONCUR_ENOMEM;
  }
  atomic_init(&event->word, 0);
  atomic_init(&event->nwaiters, 0);
  *out = event;
  return 0;
}

void concur_event_free(concur_event *event) {
  if (event == NULL) {
    return;
  }
  uint32_t n = atomic_load_explicit(&event->nwaiters, memory_order_relaxed);
  if (n != 0) {
    concur__panic("concur_event_free: %u thread(s) still blocked in "
                  "concur_event_wait",
                  (unsigned)n);
  }
  concur__free(event);
}

int concur_event_set(concur_event *event) {
  if (event == NULL) {
    return CONCUR_EINVAL;
  }
  uint32_t v = atomic_load_explicit(&event->word, memory_order_relaxed);
  do {
    if ((v & SET) != 0) {
      return 0;
    }
    /* Release: what the setter did is visible to whoever sees the flag. */
  } while (!atomic_compare_exchange_weak_explicit(
      &event->word, &v, ((v + GENERATION_STEP) & ~WAITERS) | SET,
      memory_order_release, memory_order_relaxed));
  if ((v & WAITERS) != 0) {
    concur__unpark(&event->word, INT32_MAX);
  }
  return 0;
}

int concur_event_clear(concur_event *event) {
  if (event == NULL) {
    return CONCUR_EINVAL;
  }
  /* Relaxed: clearing publishes nothing; a waiter that must not miss the
   * preceding set() sees a word different from its base either way. */
  uint32_t v = atomic_load_explicit(&event->word, memory_order_relaxed);
  while ((v & SET) != 0 && !atomic_compare_exchange_weak_explicit(
                               &event->word, &v, v & ~SET, memory_order_relaxed,
                               memory_order_relaxed)) {
  }
  return 0;
}

bool concur_event_is_set(concur_event *event) {
  if (event == NULL) {
    return false;
  }
  return (atomic_load_explicit(&event->word, memory_order_acquire) & SET) != 0;
}

int concur_event_wait(concur_event *event, int64_t timeout_ns) {
  if (event == NULL) {
    return CONCUR_EINVAL;
  }
  concur__deadline deadline;
  int rc = concur__deadline_from_timeout(timeout_ns, &deadline);
  if (rc != 0) {
    return rc;
  }
  uint32_t v = atomic_load_explicit(&event->word, memory_order_acquire);
  if ((v & SET) != 0) {
    return 0;
  }
  if (timeout_ns == CONCUR_NOWAIT) {
    return CONCUR_ETIMEDOUT;
  }
  /* Relaxed: the count only feeds free()'s misuse check. */
  atomic_fetch_add_explicit(&event->nwaiters, 1, memory_order_relaxed);
  const uint32_t base = v & ~WAITERS;
  for (;;) {
    if ((v & ~WAITERS) != base) {
      rc = 0; /* a set() happened since we saw the flag clear */
      break;
    }
    if (rc == CONCUR_ETIMEDOUT) {
      break;
    }
    if ((v & WAITERS) == 0) {
      /* Acquire on failure: the word read may be a set() we return on. */
      if (!atomic_compare_exchange_weak_explicit(&event->word, &v, v | WAITERS,
                                                 memory_order_acquire,
                                                 memory_order_acquire)) {
        continue;
      }
      v |= WAITERS;
    }
    rc = concur__park(&event->word, v, deadline, event);
    v = atomic_load_explicit(&event->word, memory_order_acquire);
  }
  atomic_fetch_sub_explicit(&event->nwaiters, 1, memory_order_relaxed);
  return rc;
}
