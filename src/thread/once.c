/*
 * Once: run a function exactly once, whoever calls first.
 *
 * Design
 * - Threads involved: the first caller (the runner) and any number of
 *   callers that arrive while it runs (waiters).
 * - The public struct's state word holds a phase in its low two bits (NEW,
 *   RUNNING, RUNNING with waiters, DONE) and, while running, the fork
 *   generation in which the run started in the other 30 bits. The runner
 *   wins a compare-and-swap NEW -> RUNNING, records its identifier in owner,
 *   calls the function, and stores DONE (release); it wakes the waiters only
 *   if one of them set the waiters phase. Waiters park on the state word
 *   with the once as key, without a deadline.
 * - Recursion: a caller that finds the once running with its own identifier
 *   as owner is inside the function: CONCUR_EDEADLK instead of a deadlock.
 * - Fork: a child forked while another thread ran the function would wait
 *   forever for a runner that does not exist there. A caller that finds a
 *   run started in an older fork generation, by a thread other than the one
 *   that forked this process image (the only survivor), takes the run over.
 * - Happens-before: the function's return -> the DONE release store -> the
 *   acquire load by every later or waiting caller.
 * - The public fields are plain integers (the header is C++-compatible);
 *   they are accessed only through the atomic views below.
 */
#include "thread/thread_internal.h"

#include <stdalign.h>

enum {
  ONCE_NEW = 0,
  ONCE_RUNNING = 1,
  ONCE_WAITERS = 2,
  ONCE_DONE = 3,
  ONCE_PHASE_MASK = 3,
  ONCE_GEN_SHIFT = 2,
};

_Static_assert(sizeof(_Atomic uint32_t) == sizeof(uint32_t) &&
                   alignof(_Atomic uint32_t) == alignof(uint32_t),
               "the once's state word must be usable as an atomic");
_Static_assert(sizeof(_Atomic uint64_t) == sizeof(uint64_t) &&
                   alignof(_Atomic uint64_t) <= alignof(concur_once),
               "the once's owner must be usable as an atomic");

static _Atomic uint32_t *state_of(concur_once *once) {
  return (_Atomic uint32_t *)(void *)&once->state;
}

static _Atomic uint64_t *owner_of(concur_once *once) {
  return (_Atomic uint64_t *)(void *)&once->owner;
}

static uint32_t running_word(void) {
  return (concur__fork_generation() << ONCE_GEN_SHIFT) | ONCE_RUNNING;
}

static void run(concur_once *once, concur_once_fn fn, void *arg, uint64_t me) {
  /* Relaxed: owner is only compared with the reader's own identifier, which
   * can match only when the reader itself stored it. */
  atomic_store_explicit(owner_of(once), me, memory_order_relaxed);
  fn(arg);
  atomic_store_explicit(owner_of(once), 0, memory_order_relaxed);
  /* Release: publishes what fn did to every caller that reads DONE. */
  uint32_t prev =
      atomic_exchange_explicit(state_of(once), ONCE_DONE, memory_order_release);
  if ((prev & ONCE_PHASE_MASK) == ONCE_WAITERS) {
    concur__unpark(state_of(once), INT32_MAX);
  }
}

int concur_once_call(concur_once *once, concur_once_fn fn, void *arg) {
  if (once == NULL || fn == NULL) {
    return CONCUR_EINVAL;
  }
  _Atomic uint32_t *state = state_of(once);
  /* Acquire: pairs with the runner's release of DONE. */
  uint32_t s = atomic_load_explicit(state, memory_order_acquire);
  if ((s & ONCE_PHASE_MASK) == ONCE_DONE) {
    return 0;
  }
  /* The fork generation must advance in a child forked during the run. */
  concur__registry_init_fork();
  uint64_t me = concur_thread_get_ident();
  for (;;) {
    s = atomic_load_explicit(state, memory_order_acquire);
    uint32_t phase = s & ONCE_PHASE_MASK;
    if (phase == ONCE_DONE) {
      return 0;
    }
    if (phase == ONCE_NEW) {
      if (atomic_compare_exchange_weak_explicit(state, &s, running_word(),
                                                memory_order_acquire,
                                                memory_order_relaxed)) {
        run(once, fn, arg, me);
        return 0;
      }
      continue;
    }
    uint64_t owner = atomic_load_explicit(owner_of(once), memory_order_relaxed);
    if (owner == me) {
      return CONCUR_EDEADLK;
    }
    uint32_t gen = concur__fork_generation() & (UINT32_MAX >> ONCE_GEN_SHIFT);
    if ((s >> ONCE_GEN_SHIFT) != gen && owner != concur__fork_survivor()) {
      /* The runner was left behind in the parent: take the run over. */
      if (atomic_compare_exchange_strong_explicit(state, &s, running_word(),
                                                  memory_order_acquire,
                                                  memory_order_relaxed)) {
        run(once, fn, arg, me);
        return 0;
      }
      continue;
    }
    if (phase == ONCE_RUNNING) {
      uint32_t waiting = (s & ~(uint32_t)ONCE_PHASE_MASK) | ONCE_WAITERS;
      if (!atomic_compare_exchange_weak_explicit(
              state, &s, waiting, memory_order_relaxed, memory_order_relaxed)) {
        continue;
      }
      s = waiting;
    }
    (void)concur__park(state, s, CONCUR__NO_DEADLINE, once);
  }
}
