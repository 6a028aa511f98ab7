/*
 * Barrier (threading.Barrier).
 *
 * Design
 * - Threads: the parties calling wait(), and any thread calling reset(),
 *   abort() or the snapshots; the action runs in the last arrival's thread.
 * - State, guarded by the internal mutex `lock`: the list of the current
 *   generation's waiters in arrival order, its length (the next arrival
 *   index), a generation number and an epoch. Each waiter brings a record on
 *   its own stack holding a state word (WAITING, PARKED, then RELEASED or
 *   BROKEN) and parks on that word, not on a shared one.
 * - Arrival: a thread that is not the last appends its record and parks.
 *   The last one detaches the whole list (the next arrival starts a fresh
 *   generation at index 0), advances the generation, unlocks, runs the
 *   action, then resolves every detached record, RELEASED or BROKEN, and
 *   wakes each one that went to sleep. So nobody is released before the
 *   action has returned, the action runs exactly once per generation, and
 *   it runs unlocked: it may call n_waiting, broken, abort or reset (calling
 *   wait() there makes its thread a party of the next generation).
 * - Because every waiter's fate is written into its own record, generations
 *   are independent: a fast thread that re-enters wait() joins the new list
 *   and cannot disturb, or be confused with, the previous generation, some
 *   of whose threads may not have run yet. This replaces Python's "draining"
 *   state, and newcomers never wait for stragglers of the last generation.
 * - Breaking (a waiter's timeout, abort, a failing action): under the lock,
 *   detach the current list, mark the barrier broken and bump the epoch;
 *   after unlocking, resolve the detached records BROKEN. reset() does the
 *   same but leaves the barrier usable. An abort or reset while an action
 *   runs bumps the epoch, so that generation fails with CONCUR_EBROKEN too
 *   (in Python the action holds the lock, so that cannot happen). A failing
 *   action breaks the barrier, including any next-generation arrivals.
 * - Timeouts: a waiter whose deadline passes takes the lock; if its record is
 *   still in the current list (its generation is the current one), it
 *   breaks the barrier and returns CONCUR_ETIMEDOUT. If every party already
 *   arrived and the action is running, it waits, untimed, for the action's
 *   verdict, as Python's waiter does when it cannot re-take the lock.
 * - Lifetime: `inside` counts threads inside wait(); each one's last access
 *   to the barrier is its decrement. free() panics if any thread is truly
 *   blocked (an unresolved record or a running action: `blocked`), and
 *   otherwise waits for released threads that have not yet left wait(), as
 *   glibc's pthread_barrier_destroy does. So any party may free the barrier
 *   as soon as its own wait() returned, once no thread will call it again.
 *   Resolvers touch only the records after unlocking (waking is by address).
 * - Happens-before: each party's actions before wait() precede its locked
 *   append, which precedes the last arrival's locked detach, hence the
 *   action; the action precedes the release-exchange of each record, which
 *   the waiter reads with acquire.
 */
#include "concur/sync.h"
#include "platform/platform.h"

#include <stdatomic.h>
#include <stdint.h>

enum {
  WAITING = 0,  /* in a list, awake: resolving it needs no wake-up */
  PARKED = 1,   /* in a list, asleep or about to sleep */
  RELEASED = 2, /* its generation completed */
  BROKEN = 3    /* its generation broke */
};

/* free() is parked on `inside`, waiting for it to reach 0. */
#define FREEING UINT32_C(0x80000000)
#define INSIDE_MASK UINT32_C(0x7fffffff)

/* A bounded spin before parking: lockstep parties often arrive close. */
#define WAIT_SPINS 100

typedef struct barrier_waiter {
  /* atomic: WAITING or PARKED (written by the owner), then RELEASED or
   * BROKEN (written once by the resolver); the owner's futex word */
  _Atomic uint32_t state;
  /* guarded by lock while in the current list; afterwards owned by whoever
   * detached the list */
  struct barrier_waiter *next;
  uint64_t generation; /* immutable once appended */
} barrier_waiter;

struct concur_barrier {
  concur__mutex lock;
  barrier_waiter *head;    /* guarded by lock: the current generation */
  barrier_waiter *tail;    /* guarded by lock */
  _Atomic int32_t count;   /* written under lock; relaxed snapshots */
  _Atomic bool broken;     /* written under lock; relaxed snapshots */
  uint64_t generation;     /* guarded by lock */
  uint64_t epoch;          /* guarded by lock: bumped by breaks and resets */
  int32_t blocked;         /* guarded by lock: unresolved records + actions */
  bool freeing;            /* guarded by lock */
  _Atomic uint32_t inside; /* atomic: threads in wait() | FREEING */
  int32_t parties;         /* immutable after init */
  concur_action_fn action; /* immutable after init */
  void *arg;               /* immutable after init */
  int64_t default_timeout; /* immutable after init */
};

int concur_barrier_new(concur_barrier **out, int32_t parties,
                       concur_action_fn action, void *arg,
                       int64_t default_timeout_ns) {
  if (out == NULL || parties < 1 || default_timeout_ns < 0) {
    return CONCUR_EINVAL;
  }
  concur_barrier *b = concur__malloc(sizeof *b);
  if (b == NULL) {
    return CONCUR_ENOMEM;
  }
  atomic_init(&b->lock.state, 0);
  b->head = NULL;
  b->tail = NULL;
  atomic_init(&b->count, 0);
  atomic_init(&b->broken, false);
  b->generation = 0;
  b->epoch = 0;
  b->blocked = 0;
  b->freeing = false;
  atomic_init(&b->inside, 0);
  b->parties = parties;
  b->action = action;
  b->arg = arg;
  b->default_timeout = default_timeout_ns;
  *out = b;
  return 0;
}

void concur_barrier_free(concur_barrier *barrier) {
  if (barrier == NULL) {
    return;
  }
  concur_barrier *b = barrier;
  concur__mutex_lock(&b->lock, &b->lock);
  if (b->blocked != 0) {
    concur__panic("concur_barrier_free: %d thread(s) still blocked in "
                  "concur_barrier_wait (waiting, or running the action)",
                  (int)b->blocked);
  }
  b->freeing = true;
  concur__mutex_unlock(&b->lock);
  /* Threads already released may still be on their way out of wait(): they
   * are runnable and touch nothing that blocks, so this wait is short.
   * Acquire pairs with their release decrement: their last reads of the
   * barrier happen before we free it. */
  uint32_t v = atomic_load_explicit(&b->inside, memory_order_acquire);
  while ((v & INSIDE_MASK) != 0) {
    if ((v & FREEING) == 0) {
      if (!atomic_compare_exchange_weak_explicit(&b->inside, &v, v | FREEING,
                                                 memory_order_acquire,
                                                 memory_order_acquire)) {
        continue;
      }
      v |= FREEING;
    }
    (void)concur__park(&b->inside, v, CONCUR__NO_DEADLINE, &b->inside);
    v = atomic_load_explicit(&b->inside, memory_order_acquire);
  }
  concur__free(b);
}

/* A thread's last access to the barrier on its way out of wait(). */
static int leave(concur_barrier *b, int rc) {
  /* Release: our reads of the barrier happen before free() frees it. */
  uint32_t v = atomic_fetch_sub_explicit(&b->inside, 1, memory_order_release);
  if (v == (FREEING | 1)) {
    concur__unpark(&b->inside, 1); /* by address: b may be gone already */
  }
  return rc;
}

/*
 * Empties the current generation with the lock held; the caller resolves the
 * returned list after unlocking, with resolve_list().
 */
static barrier_waiter *detach_locked(concur_barrier *b) {
  barrier_waiter *list = b->head;
  b->blocked -= atomic_load_explicit(&b->count, memory_order_relaxed);
  b->head = NULL;
  b->tail = NULL;
  atomic_store_explicit(&b->count, 0, memory_order_relaxed);
  b->generation++;
  return list;
}

/* Detaches the current generation and marks the barrier broken. */
static barrier_waiter *break_locked(concur_barrier *b) {
  atomic_store_explicit(&b->broken, true, memory_order_relaxed);
  b->epoch++;
  return detach_locked(b);
}

/*
 * Gives each detached record its verdict and wakes its owner if it sleeps.
 * A record may vanish the moment its state is written, so its successor is
 * read first and its address is only passed to unpark, which does not
 * dereference it.
 */
static void resolve_list(barrier_waiter *w, uint32_t verdict) {
  while (w != NULL) {
    barrier_waiter *next = w->next;
    /* Release: the action, and all before it, happen before the owner's
     * return. */
    uint32_t old =
        atomic_exchange_explicit(&w->state, verdict, memory_order_release);
    if (old == PARKED) {
      concur__unpark(&w->state, 1);
    }
    w = next;
  }
}

/* The last arrival's path, entered with the lock held: detach, run the
 * action unlocked, resolve. */
static int complete_generation(concur_barrier *b, int32_t index) {
  barrier_waiter *list = detach_locked(b);
  int32_t n = index;   /* the detached records */
  b->blocked += n + 1; /* they stay blocked while the action runs */
  uint64_t epoch = b->epoch;
  concur__mutex_unlock(&b->lock);

  int action_rc = b->action != NULL ? b->action(b->arg) : 0;

  uint32_t verdict = RELEASED;
  barrier_waiter *next_gen = NULL;
  concur__mutex_lock(&b->lock, &b->lock);
  b->blocked -= n + 1;
  if (action_rc != 0) {
    /* Python: an exception in the action breaks the barrier for everyone,
     * including threads that already arrived for the next generation. */
    next_gen = break_locked(b);
    verdict = BROKEN;
  } else if (b->epoch != epoch) {
    verdict = BROKEN; /* aborted or reset while the action ran */
  }
  concur__mutex_unlock(&b->lock);
  resolve_list(next_gen, BROKEN);
  resolve_list(list, verdict);
  return leave(b, verdict == RELEASED ? index : CONCUR_EBROKEN);
}

/* Waits for our record's verdict; the timeout may break the barrier. */
static int await_verdict(concur_barrier *b, barrier_waiter *self, int32_t index,
                         concur__deadline deadline) {
  uint32_t s = WAITING;
  for (int i = 0; i < WAIT_SPINS; i++) {
    /* Acquire pairs with the resolver's release exchange. */
    s = atomic_load_explicit(&self->state, memory_order_acquire);
    if (s >= RELEASED) {
      break;
    }
    concur__cpu_relax();
  }
  while ((s = atomic_load_explicit(&self->state, memory_order_acquire)) <
         RELEASED) {
    if (s == WAITING) {
      uint32_t expected = WAITING;
      /* Relaxed: on failure the loop re-reads with acquire. */
      (void)atomic_compare_exchange_strong_explicit(
          &self->state, &expected, PARKED, memory_order_relaxed,
          memory_order_relaxed);
      continue;
    }
    if (concur__park(&self->state, PARKED, deadline, b) != CONCUR_ETIMEDOUT) {
      continue; /* woken, spurious or EINTR: re-read the state */
    }
    concur__mutex_lock(&b->lock, &b->lock);
    if (atomic_load_explicit(&self->state, memory_order_relaxed) >= RELEASED) {
      /* Resolved as the deadline passed: that verdict stands. */
      concur__mutex_unlock(&b->lock);
      continue;
    }
    if (self->generation == b->generation) {
      /* Still filling: our timeout breaks it for everyone (Python). */
      barrier_waiter *list = break_locked(b);
      concur__mutex_unlock(&b->lock);
      resolve_list(list, BROKEN); /* ours included: harmless */
      return CONCUR_ETIMEDOUT;
    }
    /* Every party arrived and the action is running: await its verdict. */
    deadline = CONCUR__NO_DEADLINE;
    concur__mutex_unlock(&b->lock);
  }
  return s == RELEASED ? index : CONCUR_EBROKEN;
}

int concur_barrier_wait(concur_barrier *barrier, int64_t timeout_ns) {
  if (barrier == NULL) {
    return CONCUR_EINVAL;
  }
  concur_barrier *b = barrier;
  if (timeout_ns == CONCUR_DEFAULT) {
    timeout_ns = b->default_timeout;
  }
  concur__deadline deadline;
  int rc = concur__deadline_from_timeout(timeout_ns, &deadline);
  if (rc != 0) {
    return rc;
  }

  /* Relaxed: free() reads it only after taking the lock we take next. */
  atomic_fetch_add_explicit(&b->inside, 1, memory_order_relaxed);
  concur__mutex_lock(&b->lock, &b->lock);
  if (b->freeing) {
    concur__panic("concur_barrier_wait: the barrier is being freed");
  }
  if (atomic_load_explicit(&b->broken, memory_order_relaxed)) {
    concur__mutex_unlock(&b->lock);
    return leave(b, CONCUR_EBROKEN);
  }
  int32_t index = atomic_load_explicit(&b->count, memory_order_relaxed);
  if (index + 1 == b->parties) {
    return complete_generation(b, index);
  }
  barrier_waiter self;
  atomic_init(&self.state, WAITING);
  self.next = NULL;
  self.generation = b->generation;
  if (b->tail != NULL) {
    b->tail->next = &self;
  } else {
    b->head = &self;
  }
  b->tail = &self;
  atomic_store_explicit(&b->count, index + 1, memory_order_relaxed);
  b->blocked++;
  concur__mutex_unlock(&b->lock);
  return leave(b, await_verdict(b, &self, index, deadline));
}

int concur_barrier_reset(concur_barrier *barrier) {
  if (barrier == NULL) {
    return CONCUR_EINVAL;
  }
  concur__mutex_lock(&barrier->lock, &barrier->lock);
  barrier_waiter *list = break_locked(barrier);
  atomic_store_explicit(&barrier->broken, false, memory_order_relaxed);
  concur__mutex_unlock(&barrier->lock);
  resolve_list(list, BROKEN);
  return 0;
}

int concur_barrier_abort(concur_barrier *barrier) {
  if (barrier == NULL) {
    return CONCUR_EINVAL;
  }
  concur__mutex_lock(&barrier->lock, &barrier->lock);
  barrier_waiter *list = break_locked(barrier);
  concur__mutex_unlock(&barrier->lock);
  resolve_list(list, BROKEN);
  return 0;
}

int32_t concur_barrier_parties(concur_barrier *barrier) {
  return barrier == NULL ? 0 : barrier->parties;
}

int32_t concur_barrier_n_waiting(concur_barrier *barrier) {
  if (barrier == NULL) {
    return 0;
  }
  return atomic_load_explicit(&barrier->count, memory_order_relaxed);
}

bool concur_barrier_broken(concur_barrier *barrier) {
  if (barrier == NULL) {
    return false;
  }
  return atomic_load_explicit(&barrier->broken, memory_order_relaxed);
}
