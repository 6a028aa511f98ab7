/*
 * Futures: state machine, outcome, callbacks, help hook, reference counting.
 *
 * Design
 * - Threads: any number of waiters (result, exception, concur_wait,
 *   as_completed), one thread that completes the future (the task's runner,
 *   a setter, or a canceller), helpers that call the help hook, and whoever
 *   holds references. The future knows nothing about executors.
 * - States: PENDING -> RUNNING -> FINISHED, PENDING -> CANCELLED, and
 *   PENDING/RUNNING -> COMPLETING -> FINISHED for set_result and
 *   set_exception, all in one 32-bit atomic word with the flags and the help
 *   count (future_internal.h). Only one thread ever writes the outcome: the
 *   one whose atomic step claimed it (COMPLETING), or concur_future_run,
 *   which marks the future OWNED when it starts it, so that nobody else can
 *   complete it and it publishes with a single atomic add.
 * - Completion is one atomic read-modify-write with release order. It takes
 *   the lock only if LISTS is set (a callback or waiter node registered) and
 *   makes a wake-up call only if PARKED is set (a thread parked on the word).
 *   Registration sets LISTS with a compare-and-swap that fails once the
 *   future is done, under the lock, so a registration either lands before
 *   completion (the completer sees LISTS, takes the lock and finds it) or
 *   sees the future done and acts at once: every callback runs exactly once.
 * - Lock: one concur__mutex per future guards the callback list, the waiter
 *   list and the help hook. No code holds two futures' locks, calls user code
 *   or blocks while holding one (the unpark of a waiter node is a wake-up,
 *   not a wait). Completers notify waiter nodes while holding it, so a
 *   waiter that takes the lock to unregister knows nobody touches its node
 *   afterwards.
 * - Help: a thread about to block on a pending future registers as a helper
 *   (a count in the state word, only while PENDING) and calls the hook. A
 *   future leaves PENDING only when no other thread's help call is in
 *   progress (the transition waits for them, briefly: a hook that does not
 *   find its task queued returns at once); the helping thread itself may
 *   start or cancel it. So a hook never runs on a future its executor has
 *   let go of.
 * - Cancelled futures are done at once: cancel wakes waiters and runs the
 *   callbacks itself (Python defers waking concur_wait / as_completed until
 *   set_running_or_notify_cancel; concur needs no such step, and every
 *   waiter counts a cancelled future as done).
 * - References: refs is atomic; the last unref (acq_rel, so that it sees
 *   every other holder's writes) runs the cleanup and frees the memory.
 *   The completer holds a temporary reference while it runs callbacks, so a
 *   callback that drops what it thinks is the last reference is safe.
 * - Happens-before: the completing atomic step is a release and every
 *   observer reads the state with acquire, so the task's writes are visible
 *   to whoever sees it done. Submit -> start is the hand-off's (the
 *   executor's queue) business; the task record is immutable after init.
 */
#include "future/future_internal.h"

#include <assert.h>
#include <string.h>

/* About one futex round trip: how long a waiter spins before parking. */
#define WAIT_SPINS 64
/* How long a transition spins for help calls to return before parking. */
#define HELP_SPINS 100

/* The task the calling thread runs, innermost first (future_exec.h). */
typedef concur__task_frame run_frame;

/* The futures whose help hook the calling thread is inside. */
typedef struct help_frame {
  concur_future *future;
  struct help_frame *prev;
} help_frame;

static _Thread_local run_frame *tls_run;
static _Thread_local help_frame *tls_help;

static bool helping(const concur_future *f) {
  for (const help_frame *h = tls_help; h != NULL; h = h->prev) {
    if (h->future == f) {
      return true;
    }
  }
  return false;
}

static bool running_here(const concur_future *f) {
  for (const run_frame *r = tls_run; r != NULL; r = r->prev) {
    if (r->future == f) {
      return true;
    }
  }
  return false;
}

static char *copy_string(const char *s) {
  size_t n = strlen(s) + 1;
  char *copy = concur__malloc(n);
  if (copy != NULL) {
    memcpy(copy, s, n);
  }
  return copy;
}

/* ---- making and releasing --------------------------------------------------
 */

size_t concur_future_sizeof(void) {
  return sizeof(concur_future);
}

int concur_future_new_full(concur_future **out, concur_task_fn fn, void *arg,
                           concur_cleanup_fn cleanup,
                           const concur_future_allocator *allocator) {
  if (out == NULL) {
    return CONCUR_EINVAL;
  }
  if (allocator != NULL &&
      (allocator->size < sizeof(concur_future_allocator) ||
       allocator->alloc == NULL || allocator->free == NULL)) {
    return CONCUR_EINVAL;
  }
  concur_future *f = allocator != NULL
                         ? allocator->alloc(allocator->arg, sizeof *f)
                         : concur__malloc(sizeof *f);
  if (f == NULL) {
    return CONCUR_ENOMEM;
  }
  /* Field by field rather than a compound literal: the atomics and the
   * mutex are initialized the way their headers say. */
  atomic_init(&f->state, FUT_PENDING);
  f->lock = (concur__mutex)CONCUR__MUTEX_INIT;
  atomic_init(&f->refs, 1);
  f->fn = fn;
  f->arg = arg;
  f->cleanup = cleanup;
  f->mem_free = allocator != NULL ? allocator->free : NULL;
  f->mem_arg = allocator != NULL ? allocator->arg : NULL;
  f->result = NULL;
  f->code = 0;
  f->message = NULL;
  f->cb0_fn = NULL;
  f->cb0_arg = NULL;
  f->cb_head = NULL;
  f->cb_tail = NULL;
  f->waiters = NULL;
  f->help_fn = NULL;
  f->help_arg = NULL;
  f->on_cancel = NULL;
  f->on_cancel_arg = NULL;
  *out = f;
  return 0;
}

void concur__future_prepare(concur_future *f, const concur__future_hooks *h,
                            size_t refs) {
  f->help_fn = h->help;
  f->help_arg = h->help_arg;
  f->on_cancel = h->on_cancel;
  f->on_cancel_arg = h->on_cancel_arg;
  /* Relaxed: nobody else can see f yet; sharing it (a queue's release, a
   * submit's return) publishes these. */
  atomic_store_explicit(&f->state, h->help != NULL ? FUT_HELP : FUT_PENDING,
                        memory_order_relaxed);
  atomic_store_explicit(&f->refs, refs, memory_order_relaxed);
}

int concur_future_new(concur_future **out) {
  return concur_future_new_full(out, NULL, NULL, NULL, NULL);
}

int concur_future_new_task(concur_future **out, concur_task_fn fn, void *arg,
                           concur_cleanup_fn cleanup) {
  if (fn == NULL) {
    return CONCUR_EINVAL;
  }
  return concur_future_new_full(out, fn, arg, cleanup, NULL);
}

concur_future *concur_future_ref(concur_future *f) {
  if (f != NULL) {
    /* Relaxed: the caller already holds a reference, so the future cannot
     * go away concurrently; only the final decrement orders memory. */
    atomic_fetch_add_explicit(&f->refs, 1, memory_order_relaxed);
  }
  return f;
}

static void destroy(concur_future *f) {
  uint32_t w = atomic_load_explicit(&f->state, memory_order_relaxed);
  if (f->waiters != NULL) {
    concur__panic("future released while a thread waits on it");
  }
  if (f->cleanup != NULL && (w & FUT_DETACHED) == 0) {
    f->cleanup(f->arg, f->result);
  }
  concur__free(f->message);
  /* Callbacks are left only on a hand-made future released while pending. */
  for (concur__callback *c = f->cb_head; c != NULL;) {
    concur__callback *next = c->next;
    concur__free(c);
    c = next;
  }
  if (f->mem_free != NULL) {
    f->mem_free(f->mem_arg, f);
  } else {
    concur__free(f);
  }
}

void concur_future_unref(concur_future *f) {
  if (f == NULL) {
    return;
  }
  /* acq_rel: the release publishes this holder's writes; the acquire on the
   * last decrement makes every holder's writes visible to the cleanup. */
  size_t old = atomic_fetch_sub_explicit(&f->refs, 1, memory_order_acq_rel);
  if (old == 1) {
    destroy(f);
  } else if (old == 0) {
    concur__panic("concur_future_unref on a released future");
  }
}

/* ---- completion
 * ---------------------------------------------------------------- */

/* Tells one waiter node that its future is done. Called with f's lock held. */
static void notify_locked(concur__wait_node *n, bool failed) {
  concur__waiter *w = n->waiter;
  if (w->kind == CONCUR__WAIT_AS_COMPLETED) {
    concur__wait_node *top =
        atomic_load_explicit(&w->finished, memory_order_relaxed);
    do {
      n->done_next = top;
      /* release: the consumer that pops the node sees done_next. */
    } while (!atomic_compare_exchange_weak_explicit(
        &w->finished, &top, n, memory_order_release, memory_order_relaxed));
    /* acq_rel: ordered after the push, so a consumer that sees the new
     * generation also sees the node; reading bit 0 tells whether it sleeps. */
    uint32_t old = atomic_fetch_add_explicit(&w->word, 2, memory_order_acq_rel);
    if (old & 1u) {
      concur__unpark(&w->word, 1);
    }
    return;
  }
  size_t left =
      atomic_fetch_sub_explicit(&w->remaining, 1, memory_order_acq_rel) - 1;
  if (w->kind == CONCUR__WAIT_ANY ||
      (w->kind == CONCUR__WAIT_FIRST_FAILURE && failed) || left == 0) {
    atomic_store_explicit(&w->word, 1, memory_order_release);
    concur__unpark(&w->word, 1);
  }
}

/*
 * After the step that made f done (w is the word it produced): notify
 * waiter nodes, wake parked threads, run callbacks. Touches nothing of f
 * after the callbacks.
 */
static void after_done(concur_future *f, uint32_t w) {
  if ((w & (FUT_LISTS | FUT_PARKED)) == 0) {
    return; /* the fast path: nobody to tell */
  }
  concur_future_done_fn fn0 = NULL;
  void *arg0 = NULL;
  concur__callback *list = NULL;
  if (w & FUT_LISTS) {
    bool failed = concur__fut_is_failed(w);
    concur__mutex_lock(&f->lock, NULL);
    fn0 = f->cb0_fn;
    arg0 = f->cb0_arg;
    f->cb0_fn = NULL;
    list = f->cb_head;
    f->cb_head = NULL;
    f->cb_tail = NULL;
    for (concur__wait_node *n = f->waiters; n != NULL;) {
      concur__wait_node *next = n->next;
      n->prev = NULL;
      n->next = NULL;
      n->linked = false;
      notify_locked(n, failed);
      n = next;
    }
    f->waiters = NULL;
    concur__mutex_unlock(&f->lock);
  }
  if (w & FUT_PARKED) {
    concur__unpark(&f->state, INT32_MAX);
  }
  if (fn0 == NULL && list == NULL) {
    return;
  }
  /* A callback may drop the reference it was counting on; keep f alive
   * until the last one has returned. */
  concur_future_ref(f);
  if (fn0 != NULL) {
    fn0(f, arg0);
  }
  while (list != NULL) {
    concur__callback *next = list->next;
    list->fn(f, list->arg);
    concur__free(list);
    list = next;
  }
  concur_future_unref(f);
}

/* Publishes the outcome written by the completion owner. */
static void publish(concur_future *f, uint32_t delta) {
  /* acq_rel: the release publishes the outcome; reading the flags in the
   * same step is what makes LISTS and PARKED registrations race-free. */
  uint32_t w =
      atomic_fetch_add_explicit(&f->state, delta, memory_order_acq_rel) + delta;
  after_done(f, w);
}

/*
 * Moves f out of PENDING to `to` (a state plus flags), once no other
 * thread's help call is in progress. True on success with *seen the new
 * word; false with *seen the word that was not PENDING.
 */
static bool leave_pending(concur_future *f, uint32_t to, uint32_t *seen) {
  /* Whether this thread is one of the helpers; looked up (thread-local)
   * only when there are helpers, which keeps it off the hot path. */
  int self_known = 0;
  uint32_t self = 0;
  int spins = 0;
  uint32_t w = atomic_load_explicit(&f->state, memory_order_acquire);
  for (;;) {
    if ((w & FUT_ST_MASK) != FUT_PENDING) {
      *seen = w;
      return false;
    }
    if ((w & FUT_HELPER_MASK) != 0 && !self_known) {
      self_known = 1;
      self = helping(f) ? FUT_HELPER_ONE : 0;
    }
    if ((w & FUT_HELPER_MASK) > self) {
      if (spins < HELP_SPINS) {
        spins++;
        concur__cpu_relax();
        w = atomic_load_explicit(&f->state, memory_order_acquire);
        continue;
      }
      if ((w & FUT_PARKED) == 0) {
        if (!atomic_compare_exchange_weak_explicit(
                &f->state, &w, w | FUT_PARKED, memory_order_acquire,
                memory_order_acquire)) {
          continue;
        }
        w |= FUT_PARKED;
      }
      (void)concur__park(&f->state, w, CONCUR__NO_DEADLINE, f);
      w = atomic_load_explicit(&f->state, memory_order_acquire);
      continue;
    }
    uint32_t next = (w & ~FUT_ST_MASK) | to;
    /* acq_rel: whoever starts or cancels sees what helpers did, and the
     * cancel publishes what the canceller did. */
    if (atomic_compare_exchange_weak_explicit(
            &f->state, &w, next, memory_order_acq_rel, memory_order_acquire)) {
      *seen = next;
      return true;
    }
  }
}

/* Claims the right to write the outcome: 0 or CONCUR_ESTATE. */
static int claim(concur_future *f) {
  uint32_t w = atomic_load_explicit(&f->state, memory_order_acquire);
  for (;;) {
    uint32_t st = w & FUT_ST_MASK;
    if (st == FUT_PENDING) {
      if (leave_pending(f, FUT_COMPLETING, &w)) {
        return 0;
      }
      continue;
    }
    if (st != FUT_RUNNING || (w & FUT_OWNED) != 0) {
      return CONCUR_ESTATE;
    }
    if (atomic_compare_exchange_weak_explicit(
            &f->state, &w, (w & ~FUT_ST_MASK) | FUT_COMPLETING,
            memory_order_acquire, memory_order_acquire)) {
      return 0;
    }
  }
}

int concur_future_set_result(concur_future *f, void *result) {
  if (f == NULL) {
    return CONCUR_EINVAL;
  }
  int rc = claim(f);
  if (rc != 0) {
    return rc;
  }
  f->result = result;
  f->code = 0;
  publish(f, FUT_FINISHED - FUT_COMPLETING);
  return 0;
}

int concur_future_set_exception(concur_future *f, int code,
                                const char *message) {
  if (f == NULL || code == 0) {
    return CONCUR_EINVAL;
  }
  char *copy = NULL;
  if (message != NULL && (copy = copy_string(message)) == NULL) {
    return CONCUR_ENOMEM;
  }
  int rc = claim(f);
  if (rc != 0) {
    concur__free(copy);
    return rc;
  }
  f->code = code;
  f->message = copy;
  publish(f, (FUT_FINISHED - FUT_COMPLETING) | FUT_FAILED);
  return 0;
}

int concur_future_set_running_or_notify_cancel(concur_future *f) {
  if (f == NULL) {
    return CONCUR_EINVAL;
  }
  uint32_t w;
  if (leave_pending(f, FUT_RUNNING, &w)) {
    return 1;
  }
  if ((w & FUT_ST_MASK) == FUT_CANCELLED) {
    /* Waiters were woken when it was cancelled; this only acknowledges. */
    uint32_t old =
        atomic_fetch_or_explicit(&f->state, FUT_NOTIFIED, memory_order_acq_rel);
    return (old & FUT_NOTIFIED) ? CONCUR_ESTATE : 0;
  }
  return CONCUR_ESTATE;
}

int concur_future_run(concur_future *f) {
  if (f == NULL || f->fn == NULL) {
    return CONCUR_EINVAL;
  }
  uint32_t w;
  if (!leave_pending(f, FUT_RUNNING | FUT_OWNED, &w)) {
    if ((w & FUT_ST_MASK) == FUT_CANCELLED) {
      atomic_fetch_or_explicit(&f->state, FUT_NOTIFIED, memory_order_relaxed);
      return CONCUR_ECANCELED;
    }
    return CONCUR_ESTATE;
  }
  run_frame frame = {f, NULL, 0, NULL, tls_run};
  tls_run = &frame;
  void *result = NULL;
  int code = f->fn(f->arg, &result);
  tls_run = frame.prev;
  /* OWNED: no other thread writes the outcome, so no claim step. */
  f->result = result;
  f->code = code;
  if (code != 0) {
    f->message = frame.message;
    publish(f, (FUT_FINISHED - FUT_RUNNING) | FUT_FAILED);
  } else {
    concur__free(frame.message);
    publish(f, FUT_FINISHED - FUT_RUNNING);
  }
  return 0;
}

/* ---- the Python Future API
 * ---------------------------------------------------- */

bool concur_future_cancel(concur_future *f) {
  if (f == NULL) {
    return false;
  }
  uint32_t w;
  if (leave_pending(f, FUT_CANCELLED, &w)) {
    if (f->on_cancel != NULL) {
      f->on_cancel(f, f->on_cancel_arg);
    }
    after_done(f, w);
    return true;
  }
  return (w & FUT_ST_MASK) == FUT_CANCELLED;
}

bool concur_future_cancelled(const concur_future *f) {
  return f != NULL && (concur__fut_word(f) & FUT_ST_MASK) == FUT_CANCELLED;
}

bool concur_future_running(const concur_future *f) {
  if (f == NULL) {
    return false;
  }
  uint32_t st = concur__fut_word(f) & FUT_ST_MASK;
  return st == FUT_RUNNING || st == FUT_COMPLETING;
}

bool concur_future_done(const concur_future *f) {
  return f != NULL && concur__fut_is_done(concur__fut_word(f));
}

/*
 * Waits until f is done: 0 with *out the done word, CONCUR_ETIMEDOUT,
 * CONCUR_EDEADLK or CONCUR_EINVAL.
 */
static int wait_done(concur_future *f, int64_t timeout_ns, uint32_t *out) {
  concur__deadline deadline;
  if (f == NULL || concur__deadline_from_timeout(timeout_ns, &deadline) != 0) {
    return CONCUR_EINVAL;
  }
  uint32_t w = concur__fut_word(f);
  if (concur__fut_is_done(w)) {
    *out = w;
    return 0;
  }
  if (timeout_ns == CONCUR_NOWAIT) {
    return CONCUR_ETIMEDOUT;
  }
  if (running_here(f) || helping(f)) {
    return CONCUR_EDEADLK; /* it could only finish after we return */
  }
  concur__future_help(f);
  for (int i = 0; i < WAIT_SPINS; i++) {
    w = concur__fut_word(f);
    if (concur__fut_is_done(w)) {
      *out = w;
      return 0;
    }
    concur__cpu_relax();
  }
  for (;;) {
    w = concur__fut_word(f);
    if (concur__fut_is_done(w)) {
      *out = w;
      return 0;
    }
    if ((w & FUT_PARKED) == 0) {
      /* Relaxed is enough for the flag: the completer reads it in its own
       * read-modify-write, and the outcome is read after an acquire load. */
      if (!atomic_compare_exchange_weak_explicit(&f->state, &w, w | FUT_PARKED,
                                                 memory_order_relaxed,
                                                 memory_order_relaxed)) {
        continue;
      }
      w |= FUT_PARKED;
    }
    if (concur__park(&f->state, w, deadline, f) == CONCUR_ETIMEDOUT) {
      w = concur__fut_word(f);
      if (concur__fut_is_done(w)) {
        *out = w;
        return 0;
      }
      return CONCUR_ETIMEDOUT;
    }
  }
}

int concur_future_result(concur_future *f, int64_t timeout_ns, void **result) {
  uint32_t w;
  int rc = wait_done(f, timeout_ns, &w);
  if (rc != 0) {
    return rc;
  }
  if ((w & FUT_ST_MASK) == FUT_CANCELLED) {
    return CONCUR_ECANCELED;
  }
  if (w & FUT_FAILED) {
    return CONCUR_ETASK;
  }
  if (result != NULL) {
    *result = f->result;
  }
  return 0;
}

int concur_future_exception(concur_future *f, int64_t timeout_ns, int *code,
                            const char **message) {
  uint32_t w;
  int rc = wait_done(f, timeout_ns, &w);
  if (rc != 0) {
    return rc;
  }
  if ((w & FUT_ST_MASK) == FUT_CANCELLED) {
    return CONCUR_ECANCELED;
  }
  if (code != NULL) {
    *code = f->code;
  }
  if (message != NULL) {
    *message = f->message;
  }
  return 0;
}

/*
 * Sets LISTS unless f is done (then false). The lock is held, so a completer
 * that sees LISTS waits for the registration to finish before walking.
 */
static bool mark_lists_locked(concur_future *f) {
  assert(concur__mutex_is_locked(&f->lock));
  uint32_t w = atomic_load_explicit(&f->state, memory_order_acquire);
  for (;;) {
    if (concur__fut_is_done(w)) {
      return false;
    }
    if (w & FUT_LISTS) {
      return true;
    }
    if (atomic_compare_exchange_weak_explicit(&f->state, &w, w | FUT_LISTS,
                                              memory_order_acquire,
                                              memory_order_acquire)) {
      return true;
    }
  }
}

int concur_future_add_done_callback(concur_future *f, concur_future_done_fn fn,
                                    void *arg) {
  if (f == NULL || fn == NULL) {
    return CONCUR_EINVAL;
  }
  concur__mutex_lock(&f->lock, NULL);
  if (!mark_lists_locked(f)) {
    concur__mutex_unlock(&f->lock);
    fn(f, arg); /* done already: at once, in the caller */
    return 0;
  }
  if (f->cb0_fn == NULL && f->cb_head == NULL) {
    f->cb0_fn = fn;
    f->cb0_arg = arg;
  } else {
    concur__callback *c = concur__malloc(sizeof *c);
    if (c == NULL) {
      concur__mutex_unlock(&f->lock);
      return CONCUR_ENOMEM;
    }
    c->fn = fn;
    c->arg = arg;
    c->next = NULL;
    if (f->cb_tail != NULL) {
      f->cb_tail->next = c;
    } else {
      f->cb_head = c;
    }
    f->cb_tail = c;
  }
  concur__mutex_unlock(&f->lock);
  return 0;
}

int concur_future_get_snapshot(const concur_future *f,
                               concur_future_snapshot *out) {
  if (f == NULL || out == NULL || out->size < sizeof(concur_future_snapshot)) {
    return CONCUR_EINVAL;
  }
  /* One acquire load decides everything: the outcome fields are immutable
   * once FINISHED is visible, so the snapshot is of one instant. */
  uint32_t w = concur__fut_word(f);
  out->cancel_requested = (w & FUT_CANCEL_REQ) != 0;
  out->result = NULL;
  out->code = 0;
  out->message = NULL;
  switch (w & FUT_ST_MASK) {
  case FUT_PENDING:
    out->state = CONCUR_FUTURE_PENDING;
    break;
  case FUT_CANCELLED:
    out->state = CONCUR_FUTURE_CANCELLED;
    break;
  case FUT_FINISHED:
    out->state = CONCUR_FUTURE_FINISHED;
    out->code = f->code;
    if (f->code == 0) {
      out->result = f->result;
    } else {
      out->message = f->message;
    }
    break;
  default:
    out->state = CONCUR_FUTURE_RUNNING;
    break;
  }
  return 0;
}

/* ---- cooperative cancellation
 * ------------------------------------------------------ */

bool concur_future_request_cancel(concur_future *f) {
  if (f == NULL) {
    return false;
  }
  if (concur_future_cancel(f)) {
    return true;
  }
  /* release: what the requester did before is visible to a task that sees
   * the flag with its acquire poll. */
  uint32_t old =
      atomic_fetch_or_explicit(&f->state, FUT_CANCEL_REQ, memory_order_release);
  return !concur__fut_is_done(old);
}

bool concur_future_cancel_requested(const concur_future *f) {
  return f != NULL && (concur__fut_word(f) & FUT_CANCEL_REQ) != 0;
}

bool concur_task_cancel_requested(void) {
  run_frame *r = tls_run;
  if (r == NULL) {
    return false;
  }
  if (r->future == NULL) {
    /* acquire: what the requester did before is visible, as with a
     * future's flag. */
    return (atomic_load_explicit(r->cancel_word, memory_order_acquire) &
            r->cancel_mask) != 0;
  }
  return (concur__fut_word(r->future) & FUT_CANCEL_REQ) != 0;
}

void concur__task_enter(concur__task_frame *frame,
                        const _Atomic uint32_t *cancel_word,
                        uint32_t cancel_mask) {
  frame->future = NULL;
  frame->cancel_word = cancel_word;
  frame->cancel_mask = cancel_mask;
  frame->message = NULL;
  frame->prev = tls_run;
  tls_run = frame;
}

void concur__task_leave(concur__task_frame *frame) {
  tls_run = frame->prev;
  concur__free(frame->message);
}

int concur_task_set_message(const char *message) {
  run_frame *r = tls_run;
  if (message == NULL || r == NULL) {
    return CONCUR_EINVAL;
  }
  char *copy = copy_string(message);
  if (copy == NULL) {
    return CONCUR_ENOMEM;
  }
  concur__free(r->message);
  r->message = copy;
  return 0;
}

concur_future *concur_future_current(void) {
  return tls_run != NULL ? tls_run->future : NULL;
}

/* ---- the executor side
 * ----------------------------------------------------------------- */

int concur_future_set_help(concur_future *f, concur_future_help_fn fn,
                           void *arg) {
  if (f == NULL) {
    return CONCUR_EINVAL;
  }
  int rc = 0;
  concur__mutex_lock(&f->lock, NULL);
  uint32_t w = atomic_load_explicit(&f->state, memory_order_relaxed);
  if ((w & FUT_ST_MASK) != FUT_PENDING) {
    rc = CONCUR_ESTATE;
  } else {
    f->help_fn = fn;
    f->help_arg = arg;
    /* Relaxed: HELP is a hint that saves helpers the lock; the hook itself
     * is read under the lock. */
    if (fn != NULL) {
      atomic_fetch_or_explicit(&f->state, FUT_HELP, memory_order_relaxed);
    } else {
      atomic_fetch_and_explicit(&f->state, ~FUT_HELP, memory_order_relaxed);
    }
  }
  concur__mutex_unlock(&f->lock);
  return rc;
}

void concur__future_help(concur_future *f) {
  uint32_t w = atomic_load_explicit(&f->state, memory_order_acquire);
  for (;;) {
    if ((w & FUT_ST_MASK) != FUT_PENDING || (w & FUT_HELP) == 0 ||
        (w & FUT_HELPER_MASK) == FUT_HELPER_MASK || helping(f)) {
      return;
    }
    /* acquire: pairs with the transitions' acq_rel, nothing more needed. */
    if (atomic_compare_exchange_weak_explicit(&f->state, &w, w + FUT_HELPER_ONE,
                                              memory_order_acquire,
                                              memory_order_acquire)) {
      break;
    }
  }
  concur__mutex_lock(&f->lock, NULL);
  concur_future_help_fn fn = f->help_fn;
  void *arg = f->help_arg;
  concur__mutex_unlock(&f->lock);
  if (fn != NULL) {
    help_frame frame = {f, tls_help};
    tls_help = &frame;
    fn(f, arg);
    tls_help = frame.prev;
  }
  /* release: a transition that waited for this helper sees what it did. */
  uint32_t old = atomic_fetch_sub_explicit(&f->state, FUT_HELPER_ONE,
                                           memory_order_release);
  if (old & FUT_PARKED) {
    concur__unpark(&f->state, INT32_MAX);
  }
}

int concur_future_detach_task(concur_future *f, concur_task_fn *fn,
                              void **arg) {
  if (f == NULL || f->fn == NULL) {
    return CONCUR_EINVAL;
  }
  if (!concur_future_cancel(f)) {
    return CONCUR_ESTATE; /* it ran or is running: the cleanup rule stands */
  }
  uint32_t old =
      atomic_fetch_or_explicit(&f->state, FUT_DETACHED, memory_order_relaxed);
  if (old & FUT_DETACHED) {
    return CONCUR_ESTATE;
  }
  if (fn != NULL) {
    *fn = f->fn;
  }
  if (arg != NULL) {
    *arg = f->arg;
  }
  return 0;
}

/* ---- waiter nodes (concur_wait, as_completed)
 * ------------------------------------------ */

bool concur__future_add_waiter(concur_future *f, concur__wait_node *node) {
  concur__mutex_lock(&f->lock, NULL);
  if (!mark_lists_locked(f)) {
    concur__mutex_unlock(&f->lock);
    return false;
  }
  node->prev = NULL;
  node->next = f->waiters;
  if (f->waiters != NULL) {
    f->waiters->prev = node;
  }
  f->waiters = node;
  node->linked = true;
  concur__mutex_unlock(&f->lock);
  return true;
}

void concur__future_remove_waiter(concur_future *f, concur__wait_node *node) {
  concur__mutex_lock(&f->lock, NULL);
  if (node->linked) {
    if (node->prev != NULL) {
      node->prev->next = node->next;
    } else {
      f->waiters = node->next;
    }
    if (node->next != NULL) {
      node->next->prev = node->prev;
    }
    node->prev = NULL;
    node->next = NULL;
    node->linked = false;
  }
  concur__mutex_unlock(&f->lock);
}
