/*
 * Condition (threading.Condition) over a Lock, an RLock, or its own RLock.
 *
 * Design
 * - Threads: waiters (in wait / wait_for) and notifiers; both hold the
 *   Condition's lock while they touch the waiter queue, so the lock is the
 *   only guard the queue needs, and the lock order is trivial: only that
 *   one lock, and no internal lock at all.
 * - Each waiter puts a node on its own stack at the tail of a FIFO queue,
 *   with its own futex word. notify(n) unlinks the n oldest nodes, marks
 *   each notified, and unparks exactly that node's thread: no herd, and
 *   wake order is wait order, as in CPython, whose waiters each block on
 *   their own lock.
 * - A waiter releases the lock (every RLock level, saved), parks on its
 *   node with the Condition as key until notified or its deadline, takes the
 *   lock back without a deadline (as Python does), and only then reads its
 *   node again: a notifier that took the node did so under the lock, so the
 *   answer is final. A node still queued after the deadline is unlinked and
 *   the wait reports CONCUR_ETIMEDOUT; a node a notifier took counts as
 *   notified even if the deadline also passed, so no notify is ever lost on
 *   a waiter that gives up. Spurious returns from park loop on the node's
 *   word and never surface.
 * - Node lifetime: a notifier writes a node only while it holds the lock,
 *   and the waiter cannot return (and pop its stack frame) before it takes
 *   the lock back; the unpark after the mark only uses the word's address.
 * - Happens-before: the notifier's writes before notify and before its
 *   release of the lock happen-before the woken waiter's return, through the
 *   lock's release/acquire pair (and the node word's release/acquire).
 */
#include "concur/sync.h"
#include "platform/platform.h"
#include "sync/sync_internal.h"

#include <limits.h>
#include <stdatomic.h>

typedef struct cond_waiter {
  struct cond_waiter *next;  /* guarded by the condition's lock */
  struct cond_waiter *prev;  /* guarded by the condition's lock */
  _Atomic uint32_t notified; /* atomic: 0 waiting, 1 taken by a notifier */
} cond_waiter;

struct concur_condition {
  concur_lock *lock;        /* immutable after init; NULL when rlock is used */
  concur_rlock *rlock;      /* immutable after init; NULL when lock is used */
  bool owns_rlock;          /* immutable after init: free rlock with us */
  cond_waiter *head;        /* guarded by the lock: oldest waiter */
  cond_waiter *tail;        /* guarded by the lock: newest waiter */
  _Atomic uint32_t waiting; /* atomic: threads inside wait, for free() */
};

/* What the caller must hold: for a Lock, any holder (Python's _is_owned). */
static bool is_held(concur_condition *cond) {
  return cond->lock != NULL ? concur_lock_locked(cond->lock)
                            : concur_rlock_is_owned(cond->rlock);
}

static void enqueue_locked(concur_condition *cond, cond_waiter *node) {
  node->next = NULL;
  node->prev = cond->tail;
  if (cond->tail != NULL) {
    cond->tail->next = node;
  } else {
    cond->head = node;
  }
  cond->tail = node;
}

static void unlink_locked(concur_condition *cond, cond_waiter *node) {
  if (node->prev != NULL) {
    node->prev->next = node->next;
  } else {
    cond->head = node->next;
  }
  if (node->next != NULL) {
    node->next->prev = node->prev;
  } else {
    cond->tail = node->prev;
  }
}

static int make(concur_condition **out, concur_lock *lock,
                concur_rlock *rlock) {
  concur_condition *cond = concur__calloc(1, sizeof *cond);
  if (cond == NULL) {
    return CONCUR_ENOMEM;
  }
  cond->lock = lock;
  cond->rlock = rlock;
  *out = cond;
  return 0;
}

int concur_condition_new(concur_condition **out) {
  if (out == NULL) {
    return CONCUR_EINVAL;
  }
  concur_condition *cond;
  int rc = make(&cond, NULL, NULL);
  if (rc != 0) {
    return rc;
  }
  rc = concur_rlock_new(&cond->rlock);
  if (rc != 0) {
    concur__free(cond);
    return rc;
  }
  cond->owns_rlock = true;
  *out = cond;
  return 0;
}

int concur_condition_new_with_lock(concur_condition **out, concur_lock *lock) {
  if (out == NULL || lock == NULL) {
    return CONCUR_EINVAL;
  }
  return make(out, lock, NULL);
}

int concur_condition_new_with_rlock(concur_condition **out,
                                    concur_rlock *rlock) {
  if (out == NULL || rlock == NULL) {
    return CONCUR_EINVAL;
  }
  return make(out, NULL, rlock);
}

void concur_condition_free(concur_condition *cond) {
  if (cond == NULL) {
    return;
  }
  if (atomic_load_explicit(&cond->waiting, memory_order_relaxed) != 0) {
    concur__panic("concur_condition_free: threads are waiting in this "
                  "Condition");
  }
  if (cond->owns_rlock) {
    concur_rlock_free(cond->rlock);
  }
  concur__free(cond);
}

int concur_condition_acquire(concur_condition *cond, int64_t timeout_ns) {
  if (cond == NULL) {
    return CONCUR_EINVAL;
  }
  return cond->lock != NULL ? concur_lock_acquire(cond->lock, timeout_ns)
                            : concur_rlock_acquire(cond->rlock, timeout_ns);
}

int concur_condition_release(concur_condition *cond) {
  if (cond == NULL) {
    return CONCUR_EINVAL;
  }
  return cond->lock != NULL ? concur_lock_release(cond->lock)
                            : concur_rlock_release(cond->rlock);
}

/*
 * One wait, the caller holding the lock (checked by the caller). Returns 0
 * when a notifier took the node, else CONCUR_ETIMEDOUT; the lock is held
 * again either way.
 */
static int wait_until(concur_condition *cond, concur__deadline deadline) {
  cond_waiter node;
  atomic_init(&node.notified, 0);
  enqueue_locked(cond, &node);
  atomic_fetch_add_explicit(&cond->waiting, 1, memory_order_relaxed);

  unsigned levels = 0;
  if (cond->lock != NULL) {
    (void)concur_lock_release(cond->lock);
  } else {
    (void)concur__rlock_release_save(cond->rlock, &levels);
  }

  /* Acquire order pairs with the notifier's release store: what it wrote
   * before notify is visible even before the lock is taken back. */
  while (atomic_load_explicit(&node.notified, memory_order_acquire) == 0) {
    if (concur__park(&node.notified, 0, deadline, cond) == CONCUR_ETIMEDOUT) {
      break;
    }
  }

  if (cond->lock != NULL) {
    concur__lock_acquire_after_wait(cond->lock);
  } else {
    concur__rlock_acquire_restore(cond->rlock, levels);
  }

  int rc = 0;
  /* Final under the lock: only a lock holder takes nodes. */
  if (atomic_load_explicit(&node.notified, memory_order_acquire) == 0) {
    unlink_locked(cond, &node);
    rc = CONCUR_ETIMEDOUT;
  }
  atomic_fetch_sub_explicit(&cond->waiting, 1, memory_order_relaxed);
  return rc;
}

int concur_condition_wait(concur_condition *cond, int64_t timeout_ns) {
  if (cond == NULL) {
    return CONCUR_EINVAL;
  }
  concur__deadline deadline;
  if (concur__deadline_from_timeout(timeout_ns, &deadline) != 0) {
    return CONCUR_EINVAL;
  }
  if (!is_held(cond)) {
    return CONCUR_EPERM;
  }
  return wait_until(cond, deadline);
}

int concur_condition_wait_for(concur_condition *cond, concur_predicate_fn pred,
                              void *arg, int64_t timeout_ns) {
  if (cond == NULL || pred == NULL) {
    return CONCUR_EINVAL;
  }
  concur__deadline deadline;
  if (concur__deadline_from_timeout(timeout_ns, &deadline) != 0) {
    return CONCUR_EINVAL;
  }
  if (!is_held(cond)) {
    return CONCUR_EPERM;
  }
  for (;;) {
    if (pred(arg)) {
      return 0;
    }
    if (concur__deadline_passed(deadline)) {
      return CONCUR_ETIMEDOUT;
    }
    /* A timed-out wait falls through to one last look at the predicate. */
    (void)wait_until(cond, deadline);
  }
}

int concur_condition_notify(concur_condition *cond, int n) {
  if (cond == NULL || n < 0) {
    return CONCUR_EINVAL;
  }
  if (!is_held(cond)) {
    return CONCUR_EPERM;
  }
  while (n > 0 && cond->head != NULL) {
    cond_waiter *node = cond->head;
    unlink_locked(cond, node);
    /* After this store the node may be popped as soon as the lock is free,
     * so only its address is used below. */
    atomic_store_explicit(&node->notified, 1, memory_order_release);
    concur__unpark(&node->notified, 1);
    n--;
  }
  return 0;
}

int concur_condition_notify_all(concur_condition *cond) {
  return concur_condition_notify(cond, INT_MAX);
}
