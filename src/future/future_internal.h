/*
 * Private to src/future: the future's layout, its state word, and the waiter
 * nodes that concur_wait and as_completed hang on futures.
 *
 * The state word (32 bits, atomic, also the futex word that result() and
 * exception() park on):
 *
 *   bits 0-2   the state: PENDING, RUNNING, COMPLETING, FINISHED, CANCELLED.
 *              COMPLETING is RUNNING while set_result / set_exception, which
 *              claimed the future, write the outcome; it reads as RUNNING.
 *   bit  3     PARKED      a thread parks on this word: wake on change.
 *   bit  4     LISTS       a callback or a waiter node is registered: the
 *                          completer must take the lock and walk the lists.
 *   bit  5     CANCEL_REQ  a cooperative cancel request reached it.
 *   bit  6     NOTIFIED    set_running_or_notify_cancel saw it cancelled.
 *   bit  7     DETACHED    the task record was taken back: no cleanup.
 *   bit  8     FAILED      FINISHED with a nonzero code.
 *   bit  9     OWNED       RUNNING under concur_future_run, which alone
 *                          completes it (no claim step needed).
 *   bit  10    HELP        a help hook is set.
 *   bits 16-31 how many help calls are in progress (only while PENDING).
 *
 * Flags are only ever added, never cleared, except HELP (under the lock);
 * the state only moves forward. Waiters park on this word with the future as
 * the key, so tests can count them.
 */
#ifndef CONCUR_FUTURE_INTERNAL_H
#define CONCUR_FUTURE_INTERNAL_H

#include "concur/future.h"
#include "future/future_exec.h"
#include "platform/platform.h"

#include <stdatomic.h>

#define FUT_ST_MASK 0x7u
#define FUT_PENDING 0u
#define FUT_RUNNING 1u
#define FUT_COMPLETING 2u
#define FUT_FINISHED 3u
#define FUT_CANCELLED 4u
#define FUT_PARKED (1u << 3)
#define FUT_LISTS (1u << 4)
#define FUT_CANCEL_REQ (1u << 5)
#define FUT_NOTIFIED (1u << 6)
#define FUT_DETACHED (1u << 7)
#define FUT_FAILED (1u << 8)
#define FUT_OWNED (1u << 9)
#define FUT_HELP (1u << 10)
#define FUT_HELPER_ONE (1u << 16)
#define FUT_HELPER_MASK 0xFFFF0000u

static inline bool concur__fut_is_done(uint32_t w) {
  uint32_t st = w & FUT_ST_MASK;
  return st == FUT_FINISHED || st == FUT_CANCELLED;
}

static inline bool concur__fut_is_failed(uint32_t w) {
  return (w & FUT_ST_MASK) == FUT_FINISHED && (w & FUT_FAILED) != 0;
}

/* What a waiter waits for; the first three are concur_wait's modes. */
typedef enum concur__wait_kind {
  CONCUR__WAIT_ANY = CONCUR_FIRST_COMPLETED,
  CONCUR__WAIT_FIRST_FAILURE = CONCUR_FIRST_EXCEPTION,
  CONCUR__WAIT_ALL = CONCUR_ALL_COMPLETED,
  CONCUR__WAIT_AS_COMPLETED
} concur__wait_kind;

typedef struct concur__wait_node concur__wait_node;

/*
 * One thread waiting on many futures (CPython's _Waiter). It lives on the
 * waiting thread's stack (concur_wait) or in the as_completed iterator.
 */
typedef struct concur__waiter {
  /*
   * atomic. For the three wait modes: 0, then 1 once the completers found
   * the condition met (the waiter parks while it is 0). For as_completed: a
   * generation counter stepped by 2 per completion, bit 0 set while the
   * consumer is (about to be) parked.
   */
  _Atomic uint32_t word;
  /* atomic: registered futures not yet done (the wait modes). */
  _Atomic size_t remaining;
  /* atomic: as_completed's stack of nodes whose futures completed. */
  _Atomic(concur__wait_node *) finished;
  concur__wait_kind kind; /* immutable after init */
} concur__waiter;

/* One waiter's registration on one future. */
struct concur__wait_node {
  concur__wait_node *prev; /* the future's lock */
  concur__wait_node *next; /* the future's lock */
  bool linked;             /* the future's lock */
  concur__waiter *waiter;  /* immutable after init */
  /* The future it waits on; owned by the waiting thread (as_completed
   * clears it once it hands the future out). */
  concur_future *future;
  /* as_completed: the finished stack (pushed by completers under the
   * future's lock) and then the consumer's ready list (consumer only). */
  concur__wait_node *done_next;
};

typedef struct concur__callback {
  concur_future_done_fn fn;
  void *arg;
  struct concur__callback *next;
} concur__callback;

struct concur_future {
  _Atomic uint32_t state; /* atomic: see the top of this file */
  concur__mutex lock;     /* guards the fields marked "lock" */
  _Atomic size_t refs;    /* atomic */

  /* The task record and where the memory goes: immutable after init. */
  concur_task_fn fn;
  void *arg;
  concur_cleanup_fn cleanup;
  void (*mem_free)(void *arg, void *memory);
  void *mem_arg;

  /*
   * The outcome: written by the single thread that owns completion (the one
   * that moved the state to COMPLETING, or concur_future_run while
   * RUNNING|OWNED) before it publishes FINISHED with a release; read only
   * after an acquire load saw FINISHED; immutable after.
   */
  void *result;
  int code;
  char *message;

  /* lock: the done callbacks; the first needs no allocation. */
  concur_future_done_fn cb0_fn;
  void *cb0_arg;
  concur__callback *cb_head;
  concur__callback *cb_tail;
  /* lock: registered waiter nodes (doubly linked for O(1) removal). */
  concur__wait_node *waiters;
  /* lock: the help hook. */
  concur_future_help_fn help_fn;
  void *help_arg;
  /* Immutable after concur__future_prepare: the executor's cancel hook. */
  concur_future_done_fn on_cancel;
  void *on_cancel_arg;
};

/* The state word with acquire: what the task did is visible after done. */
static inline uint32_t concur__fut_word(const concur_future *f) {
  return atomic_load_explicit(&f->state, memory_order_acquire);
}

/*
 * Registers node (node->waiter set) on f. False, registering nothing, when f
 * is already done.
 */
bool concur__future_add_waiter(concur_future *f, concur__wait_node *node);

/*
 * Unregisters node if it is still registered. Either way, once it returns no
 * completer is touching node or its waiter any more (it takes f's lock,
 * which completers hold while they notify).
 */
void concur__future_remove_waiter(concur_future *f, concur__wait_node *node);

/*
 * Calls f's help hook if f is pending, has one, and this thread is not
 * already helping f. Returns after the hook.
 */
void concur__future_help(concur_future *f);

#endif /* CONCUR_FUTURE_INTERNAL_H */
