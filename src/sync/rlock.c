/*
 * RLock (threading.RLock): a re-entrant lock with an owner and a count.
 *
 * Design
 * - The same lock word as Lock (sync_internal.h), taken once by the first
 *   acquire of an owner and freed by its last release; acquires and releases
 *   in between only move the recursion count, with no atomic
 *   read-modify-write at all.
 * - The owner is the calling thread's pthread_self(), stored in an atomic
 *   word: unique among live threads, and a call that only reads the thread
 *   pointer on Linux. A thread compares it only with its own identity,
 *   which only that thread ever writes there, so relaxed order is enough
 *   for "do I own it?": a stale value can never equal the reader's identity
 *   unless the reader put it there itself, and its own writes are always
 *   visible to it. (A thread that exits while owning an RLock leaves it
 *   owned by an identity a later thread may reuse, as in Python.)
 * - The owner sets owner and count after taking the word and clears them
 *   before freeing it, so the next owner's writes are ordered after them by
 *   the word's release/acquire pair.
 * - Condition drops every level at once (concur__rlock_release_save) and
 *   restores them after its wait (concur__rlock_acquire_restore).
 * - Happens-before: as Lock, for the final release of each ownership.
 */
#include "concur/sync.h"
#include "platform/platform.h"
#include "sync/sync_internal.h"

#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>

_Static_assert(sizeof(pthread_t) <= sizeof(uintptr_t),
               "pthread_t must fit in a word to serve as the owner identity");

struct concur_rlock {
  concur__lockword word;   /* atomic (see sync_internal.h) */
  _Atomic uintptr_t owner; /* atomic: the owner's identity, 0 when none */
  unsigned count;          /* guarded by the word: the owner's levels */
};

static inline uintptr_t self_id(void) {
  return (uintptr_t)pthread_self();
}

static inline bool owned_by_me(concur_rlock *rlock, uintptr_t me) {
  return atomic_load_explicit(&rlock->owner, memory_order_relaxed) == me;
}

/* Takes the word for a new owner; CONCUR_ETIMEDOUT when not in time. */
static int take_word(concur_rlock *rlock, int64_t timeout_ns) {
  if (concur__lockword_try(&rlock->word)) {
    return 0;
  }
  if (timeout_ns == CONCUR_NOWAIT) {
    return CONCUR_ETIMEDOUT;
  }
  concur__deadline deadline;
  (void)concur__deadline_from_timeout(timeout_ns, &deadline);
  return concur__lockword_acquire_slow(&rlock->word, deadline, rlock);
}

static void become_owner(concur_rlock *rlock, uintptr_t me, unsigned count) {
  atomic_store_explicit(&rlock->owner, me, memory_order_relaxed);
  rlock->count = count;
}

/* Clears ownership, then frees the word (release order covers both). */
static void give_up(concur_rlock *rlock) {
  rlock->count = 0;
  atomic_store_explicit(&rlock->owner, 0, memory_order_relaxed);
  (void)concur__lockword_release(&rlock->word);
}

int concur_rlock_new(concur_rlock **out) {
  if (out == NULL) {
    return CONCUR_EINVAL;
  }
  concur_rlock *rlock = concur__calloc(1, sizeof *rlock);
  if (rlock == NULL) {
    return CONCUR_ENOMEM;
  }
  *out = rlock;
  return 0;
}

void concur_rlock_free(concur_rlock *rlock) {
  if (rlock == NULL) {
    return;
  }
  if (atomic_load_explicit(&rlock->word.waiters, memory_order_relaxed) != 0) {
    concur__panic("concur_rlock_free: threads are blocked in this RLock");
  }
  concur__free(rlock);
}

int concur_rlock_acquire(concur_rlock *rlock, int64_t timeout_ns) {
  if (rlock == NULL || timeout_ns < 0) {
    return CONCUR_EINVAL;
  }
  uintptr_t me = self_id();
  if (owned_by_me(rlock, me)) {
    if (rlock->count == UINT_MAX) {
      return CONCUR_EOVERFLOW;
    }
    rlock->count++;
    return 0;
  }
  int rc = take_word(rlock, timeout_ns);
  if (rc != 0) {
    return rc;
  }
  become_owner(rlock, me, 1);
  return 0;
}

int concur_rlock_release(concur_rlock *rlock) {
  if (rlock == NULL) {
    return CONCUR_EINVAL;
  }
  if (!owned_by_me(rlock, self_id())) {
    return CONCUR_EPERM;
  }
  if (--rlock->count == 0) {
    give_up(rlock);
  }
  return 0;
}

unsigned concur_rlock_recursion_count(concur_rlock *rlock) {
  if (rlock == NULL || !owned_by_me(rlock, self_id())) {
    return 0;
  }
  return rlock->count;
}

bool concur_rlock_is_owned(concur_rlock *rlock) {
  return rlock != NULL && owned_by_me(rlock, self_id());
}

bool concur_rlock_locked(concur_rlock *rlock) {
  return rlock != NULL &&
         atomic_load_explicit(&rlock->word.state, memory_order_relaxed) !=
             CONCUR__LOCKWORD_FREE;
}

int concur__rlock_release_save(concur_rlock *rlock, unsigned *count) {
  if (!owned_by_me(rlock, self_id())) {
    return CONCUR_EPERM;
  }
  *count = rlock->count;
  give_up(rlock);
  return 0;
}

void concur__rlock_acquire_restore(concur_rlock *rlock, unsigned count) {
  (void)take_word(rlock, CONCUR_FOREVER);
  become_owner(rlock, self_id(), count);
}
