/**
 * @file concur/queue.h
 * @brief Python's `queue` module: FIFO, LIFO, priority and simple queues,
 * bounded or not, with timeouts, task_done/join and shutdown(immediate).
 *
 * A queue is an opaque heap object made by concur_queue_new and freed by
 * concur_queue_free. It carries `void *` items and never looks at them; what
 * an item points to is the business of whoever put it and whoever gets it.
 * Every function is thread-safe: any number of threads may put, get and ask
 * at the same time. NULL handles and out-pointers are CONCUR_EINVAL
 * (predicates return false, concur_queue_qsize returns 0), never a crash,
 * and a call that fails changes nothing.
 *
 * Blocking calls take `timeout_ns` (see concur/base.h): CONCUR_NOWAIT polls
 * (Python's put_nowait / get_nowait), CONCUR_FOREVER waits without a
 * deadline, a negative value is CONCUR_EINVAL. A wait that is not satisfied
 * in time returns CONCUR_ETIMEDOUT (Python's Full and Empty), never before
 * the timeout, measured on CLOCK_MONOTONIC. A blocked caller sleeps: it
 * spins for at most about one wake-up's cost, then parks in the kernel and
 * uses no CPU until it is woken. (A getter that is spinning when items
 * start to stream in may wait up to a few hundred nanoseconds more, to take
 * a small batch with one cache transfer; the wait adapts away when no batch
 * comes, as in request/response traffic.)
 *
 * Ownership: a successful put hands the item to the queue; a successful get
 * hands it to the caller, and the queue keeps no reference to it. A put that
 * fails leaves the item with the caller. Items the queue drops itself
 * (shutdown with immediate, or freeing a queue that still holds items) go to
 * the optional item-free function, each exactly once, called outside the
 * queue's locks, so nothing leaks.
 *
 * Happens-before: everything a thread did before a successful put of an item
 * happens-before everything the thread that gets that item does after its
 * get returns. A task_done happens-before the return of a join it releases.
 * A shutdown happens-before every call that fails because of it.
 *
 * Out of scope (unlike GLib's GAsyncQueue): custom comparators, removing a
 * given item, pushing to the front.
 */
#ifndef CONCUR_QUEUE_H
#define CONCUR_QUEUE_H

#include "concur/base.h"

#ifdef __cplusplus
extern "C" {
#endif

/** A queue; opaque. */
typedef struct concur_queue concur_queue;

/** The order in which items leave a queue. */
typedef enum concur_queue_kind {
  /** First in, first out (queue.Queue). */
  CONCUR_QUEUE_FIFO = 0,
  /** Last in, first out (queue.LifoQueue). */
  CONCUR_QUEUE_LIFO = 1,
  /**
   * Lowest int64_t priority first; items of equal priority leave in the
   * order they were put (queue.PriorityQueue, with a stable order).
   */
  CONCUR_QUEUE_PRIORITY = 2,
  /**
   * FIFO, always unbounded, without task_done/join (queue.SimpleQueue):
   * put never blocks.
   */
  CONCUR_QUEUE_SIMPLE = 3
} concur_queue_kind;

/**
 * Frees one item the queue dropped: called for every item still queued when
 * the queue is shut down with immediate, or freed.
 *
 * @param item the dropped item, as it was put.
 * @param arg  the item_free_arg of the options.
 *
 * It runs in the thread that called concur_queue_shutdown or
 * concur_queue_free, outside the queue's locks: it may call the queue's own
 * functions (a put then fails with CONCUR_ESHUTDOWN) but must not free the
 * queue.
 */
typedef void (*concur_item_free_fn)(void *item, void *arg);

/** Options for concur_queue_new; fill with CONCUR_QUEUE_OPTIONS_INIT. */
typedef struct concur_queue_options {
  /** sizeof(concur_queue_options): lets fields be added later. */
  size_t size;
  /** The order of the queue. Default CONCUR_QUEUE_FIFO. */
  concur_queue_kind kind;
  /**
   * The most items the queue holds: >= 1, or CONCUR_UNBOUNDED (the
   * default). A SIMPLE queue must be unbounded. There is no hand-off queue:
   * 0 is CONCUR_EINVAL (Python reads 0 as unbounded; concur does not guess).
   */
  int64_t maxsize;
  /** Frees dropped items; NULL drops them without a call. */
  concur_item_free_fn item_free;
  /** Passed to item_free; owned by the caller. */
  void *item_free_arg;
} concur_queue_options;

#define CONCUR_QUEUE_OPTIONS_INIT                                              \
  {                                                                            \
    sizeof(concur_queue_options), CONCUR_QUEUE_FIFO, CONCUR_UNBOUNDED, NULL,   \
        NULL                                                                   \
  }

/**
 * Makes an empty queue.
 *
 * @param out  receives the queue, freed with concur_queue_free; untouched on
 *             error.
 * @param opts NULL for the defaults (an unbounded FIFO queue without an
 *             item-free function).
 * @return 0; CONCUR_EINVAL (out NULL, opts->size too small, an unknown
 *         kind, maxsize neither >= 1 nor CONCUR_UNBOUNDED, a bounded SIMPLE
 *         queue); CONCUR_ENOMEM.
 *
 * A bounded queue whose maxsize is at most 4096 allocates its whole storage
 * here, so that its puts never allocate; other queues start small and grow
 * their storage as puts need it.
 */
CONCUR_API CONCUR_NODISCARD int
concur_queue_new(concur_queue **out, const concur_queue_options *opts);

/**
 * Frees a queue (NULL is a no-op). Items still queued go to the item-free
 * function, each once, in the calling thread, before the memory is released.
 *
 * Freeing a queue while another thread is blocked in it, or is inside one of
 * its calls, is misuse: it aborts with a message where it can tell (a caller
 * parked in put, get or join, or holding an internal lock).
 */
CONCUR_API void concur_queue_free(concur_queue *queue);

/**
 * Puts an item at the queue's end (Python's put; put_nowait with
 * CONCUR_NOWAIT). On a PRIORITY queue it is put with priority 0.
 *
 * Blocks while a bounded queue is full, up to timeout_ns; never blocks on a
 * SIMPLE or unbounded queue, apart from the queue's short internal
 * critical sections.
 *
 * @param item       any pointer, NULL included; owned by the queue on
 *                   success, still the caller's on failure.
 * @param timeout_ns how long to wait for room, in nanoseconds.
 * @return 0; CONCUR_ETIMEDOUT (still full when the timeout passed; at once
 *         with CONCUR_NOWAIT: Python's Full); CONCUR_ESHUTDOWN (the queue is
 *         shut down, also when it happens while waiting); CONCUR_ENOMEM (the
 *         queue had to grow its storage and could not: nothing changed);
 *         CONCUR_EINVAL (NULL queue, negative timeout).
 */
CONCUR_API CONCUR_NODISCARD int
concur_queue_put(concur_queue *queue, void *item, int64_t timeout_ns);

/**
 * Puts an item with a priority into a PRIORITY queue: lower values leave
 * first, equal values in the order they were put. Blocks as
 * concur_queue_put.
 *
 * @param priority any int64_t value.
 * @return as concur_queue_put, and CONCUR_EINVAL when the queue is not a
 *         PRIORITY queue.
 */
CONCUR_API CONCUR_NODISCARD int concur_queue_put_priority(concur_queue *queue,
                                                          void *item,
                                                          int64_t priority,
                                                          int64_t timeout_ns);

/**
 * Takes the next item (Python's get; get_nowait with CONCUR_NOWAIT).
 *
 * Blocks while the queue is empty, up to timeout_ns. After a shutdown it
 * still returns the items left in the queue, then fails.
 *
 * @param item_out   receives the item, which now belongs to the caller;
 *                   untouched on failure.
 * @param timeout_ns how long to wait for an item, in nanoseconds.
 * @return 0; CONCUR_ETIMEDOUT (still empty when the timeout passed; at once
 *         with CONCUR_NOWAIT: Python's Empty); CONCUR_ESHUTDOWN (shut down
 *         and empty, also when it happens while waiting); CONCUR_EINVAL
 *         (NULL queue or item_out, negative timeout).
 */
CONCUR_API CONCUR_NODISCARD int
concur_queue_get(concur_queue *queue, void **item_out, int64_t timeout_ns);

/**
 * Takes up to max_items items in one call, for consumers that batch (and,
 * with CONCUR_NOWAIT, to drain a queue: Java's drainTo). Waits, up to
 * timeout_ns, only until at least one item is there; then takes
 * min(max_items, qsize) at once, in the order single gets would, and wakes
 * as many blocked putters as it freed places.
 *
 * @param items     an array of at least max_items pointers; items[0..n) are
 *                  filled and belong to the caller.
 * @param max_items at least 1; values above INT_MAX take at most INT_MAX.
 * @return n >= 1, the number of items taken; CONCUR_ETIMEDOUT (empty until
 *         the timeout); CONCUR_ESHUTDOWN (shut down and empty);
 *         CONCUR_EINVAL (NULL queue or items, max_items 0, negative
 *         timeout).
 */
CONCUR_API CONCUR_NODISCARD int concur_queue_get_many(concur_queue *queue,
                                                      void **items,
                                                      size_t max_items,
                                                      int64_t timeout_ns);

/**
 * The number of items in the queue at one instant during the call (exact
 * when nobody else uses the queue; Python calls it approximate). Never
 * blocks. 0 for NULL.
 */
CONCUR_API size_t concur_queue_qsize(concur_queue *queue);

/** True when qsize is 0 at one instant during the call; false for NULL. */
CONCUR_API bool concur_queue_empty(concur_queue *queue);

/**
 * True when the queue is bounded and holds maxsize items or more at one
 * instant during the call; false for NULL and for unbounded queues.
 */
CONCUR_API bool concur_queue_full(concur_queue *queue);

/**
 * The current maxsize: >= 1, or CONCUR_UNBOUNDED. CONCUR_EINVAL for NULL.
 */
CONCUR_API int64_t concur_queue_maxsize(concur_queue *queue);

/**
 * Changes maxsize at run time, as Python allows. A lower bound takes effect
 * for the next put (items already queued stay); a higher bound, or
 * CONCUR_UNBOUNDED, wakes the blocked putters so they can use the room.
 * Never blocks beyond the queue's internal critical sections.
 *
 * @param maxsize >= 1, or CONCUR_UNBOUNDED.
 * @return 0; CONCUR_EINVAL (NULL, a bad maxsize, a SIMPLE queue).
 */
CONCUR_API CONCUR_NODISCARD int concur_queue_set_maxsize(concur_queue *queue,
                                                         int64_t maxsize);

/**
 * Marks one put item as processed (Python's task_done). Every successful
 * put adds one unfinished task; task_done removes one; join waits for none.
 * Never blocks.
 *
 * @return 0; CONCUR_EOVERFLOW (more task_done calls than items put, counting
 *         the items an immediate shutdown dropped as done: Python's
 *         ValueError; nothing changes); CONCUR_EINVAL (NULL, a SIMPLE
 *         queue, which keeps no count).
 */
CONCUR_API CONCUR_NODISCARD int concur_queue_task_done(concur_queue *queue);

/**
 * Blocks until every item put has been marked done with task_done (Python's
 * join, which has no timeout; this one has). An immediate shutdown counts
 * the items it drops as done, so it releases join unless items taken before
 * it are still unfinished.
 *
 * @param timeout_ns how long to wait, in nanoseconds.
 * @return 0; CONCUR_ETIMEDOUT (tasks still unfinished when the timeout
 *         passed; at once with CONCUR_NOWAIT); CONCUR_EINVAL (NULL, negative
 *         timeout, a SIMPLE queue).
 */
CONCUR_API CONCUR_NODISCARD int concur_queue_join(concur_queue *queue,
                                                  int64_t timeout_ns);

/**
 * Shuts the queue down (Python 3.13's shutdown). From then on every put
 * fails with CONCUR_ESHUTDOWN; gets return what is left, then fail with
 * CONCUR_ESHUTDOWN. With immediate, the items left are dropped at once (each
 * handed to the item-free function, outside the locks, before this returns)
 * and counted as done for join. Every blocked putter and getter wakes at
 * once, and with immediate every joiner re-checks. Idempotent; a normal
 * shutdown may be followed by an immediate one. Never blocks beyond the
 * queue's internal critical sections and the item-free calls.
 *
 * @return 0; CONCUR_EINVAL (NULL).
 */
CONCUR_API int concur_queue_shutdown(concur_queue *queue, bool immediate);

/** True once the queue has been shut down; false for NULL. */
CONCUR_API bool concur_queue_is_shutdown(concur_queue *queue);

#ifdef __cplusplus
}
#endif

#endif /* CONCUR_QUEUE_H */
