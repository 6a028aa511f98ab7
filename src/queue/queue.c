/*
 * Floor 3: queues (Python's queue module): FIFO, LIFO, PRIORITY, SIMPLE.
 *
 * Design
 * - Threads: any number of putters, getters, joiners and callers of the
 *   snapshot functions, plus whoever shuts the queue down. Nothing runs in
 *   the background.
 * - Counters: tail counts every successful put and head every item that
 *   left (got or dropped); both only grow, so qsize is tail - head and a
 *   put's tail value is a unique ticket (the PRIORITY queue's tie-breaker).
 *   Task tracking adds nothing to the put path: `finished` counts task_done
 *   calls plus dropped items, and the unfinished tasks are tail - finished.
 * - Two sides, each one atomic word holding its counter and a small lock:
 *   (counter << 2) | LOCKED | CONTENDED. Taking a side's lock is one CAS;
 *   publishing the new counter and unlocking is one exchange. That is the
 *   two-lock queue of Michael and Scott, on a ring, with each lock fused to
 *   the counter it guards, so a put or a get costs two atomic
 *   read-modify-writes. FIFO and SIMPLE queues are a power-of-two ring:
 *   putters serialise on the put side and own tail, getters on the get side
 *   and own head, so a putter and a getter never wait for each other's lock.
 *   Between the current holders the ring is a single-producer
 *   single-consumer hand-off: a putter fills slot tail, then publishes
 *   tail+1 (release); a getter that read that tail (acquire) owns the slot.
 *   Each side keeps a stale copy of the other's counter (head_seen,
 *   tail_seen) and re-reads the real one only when its copy says full or
 *   empty, so in a steady stream the two sides rarely touch each other's
 *   cache lines. LIFO and PRIORITY queues keep a stack or a binary heap
 *   under the get side's lock alone, which then also guards tail ("the put
 *   side's lock" below means the get side's lock for them; their put word
 *   never has lock bits).
 * - Lock order: put side, then get side. Whatever changes the storage or the
 *   shape (growing a ring, set_maxsize, shutdown) holds both. Side locks
 *   spin briefly, then park on the side's lock_seq word. No user code ever
 *   runs under a lock: the item-free function runs after both are released,
 *   so it may call back into the queue (QUE-15).
 * - Waiting for items, room or join: a caller that cannot proceed first
 *   spins, unlocked, for about one wake-up's cost watching the counter it
 *   needs to change (once it moves, a little longer, to take a small batch
 *   at once: see spin_while); then it registers in a waiter word, reads
 *   the park word, re-checks, and parks with the queue as the park key. A
 *   putter or getter that made progress possible wakes a waiter only if
 *   one is registered and no wake-up is already on its way (see signal()),
 *   so with nobody waiting a put or a get makes no system call, and a
 *   burst of puts while a getter wakes up makes one. Shutdown wakes
 *   everyone at once.
 * - Nobody ever waits by spinning for a preempted thread: a lock is waited
 *   for with a bounded spin and then parking, and an item becomes visible
 *   only once fully published, so getters never see a half-made put.
 * - Shutdown sets `state` under both locks and zeroes put_limit, so the put
 *   fast path's single comparison catches it too. Immediate shutdown moves
 *   head to tail; the dropped items stay in the storage, which nothing
 *   writes any more because every put now fails, and go to item_free after
 *   unlocking.
 * - Guarantees: FIFO order, stable priority ties, linearizable put, get and
 *   qsize (a thread that put an item never polls "empty" before someone took
 *   it: QUE-17), a put happens-before the get of its item, a task_done
 *   happens-before the return of the join it releases.
 */
#include "concur/queue.h"

#include "platform/platform.h"

#include <limits.h>
#include <stdalign.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>

/* Cache-line size: fields written by different sides live on different
 * lines, so that one side's writes do not evict what the other reads. */
#define LINE 64

/*
 * Spin rounds before parking. One round is a load and a pause (10-40 ns on
 * current x86), so this is a few microseconds: about what a futex wake-up
 * costs, after which parking is cheaper than spinning on.
 */
#define WAIT_SPINS 200
/* After the awaited counter first moves, a waiter spins between LINGER_MIN
 * and LINGER_MAX more rounds (up to a few hundred nanoseconds) hoping for
 * BATCH items or places: see spin_while. */
#define LINGER_MIN 4u
#define LINGER_MAX 32u
#define BATCH UINT64_C(8)
/* Spin rounds before a side-lock waiter parks: its holder does O(1) work. */
#define LOCK_SPINS 100

/* Bounded queues up to this maxsize get their whole storage at once. */
#define PREALLOC_MAX 4096
/* Otherwise the storage starts with this many items and doubles. */
#define INITIAL_CAPACITY 64

enum { OPEN = 0, SHUT = 1, SHUT_NOW = 2 };

/* Side words. */
#define LOCKED UINT64_C(1)
#define CONTENDED UINT64_C(2)
#define COUNTER_SHIFT 2

/* Waiter words: (registered waiters << 1) | PENDING. */
#define PENDING 1u
#define ONE_WAITER 2u

typedef struct side {
  /* Atomic: (counter << 2) | LOCKED | CONTENDED. The counter changes only
   * under the side's own lock (LIFO/PRIORITY put side: the get side's). */
  _Atomic uint64_t word;
  /* Atomic: side-lock waiters park here; bumped by a contended unlock. */
  _Atomic uint32_t lock_seq;
} side;

typedef struct prio_entry {
  int64_t priority;
  uint64_t seq; /* the put's tail ticket: orders equal priorities */
  void *item;
} prio_entry;

struct concur_queue {
  /* ---- immutable after init ---- */
  void *raw; /* what concur__malloc returned; the queue is aligned in it */
  concur_queue_kind kind;
  concur_item_free_fn item_free;
  void *item_free_arg;

  /* ---- the put side: tail ---- */
  alignas(LINE) side put;
  /* The put side's lock: a lower bound of head (FIFO/SIMPLE only). */
  uint64_t head_seen;
  /* The put side's lock: min(capacity, maxsize) while open, 0 once shut
   * down; a put whose count reaches it takes the slow path. */
  uint64_t put_limit;
  /* Atomic (relaxed hint): how long a putter waiting for room lingers. */
  _Atomic uint32_t put_linger;

  /* ---- the get side: head ---- */
  alignas(LINE) side get;
  /* The get side's lock: a lower bound of tail, >= head (FIFO/SIMPLE). */
  uint64_t tail_seen;
  /* Atomic (relaxed hint): how long a getter waiting for items lingers. */
  _Atomic uint32_t get_linger;

  /* ---- shape: written with both locks held (LIFO/PRIORITY: the get
   * side's), read under either ---- */
  alignas(LINE) void **slots; /* FIFO/SIMPLE ring, LIFO stack */
  prio_entry *heap;           /* PRIORITY */
  uint64_t capacity;          /* a power of two */
  _Atomic int64_t maxsize;    /* atomic; written with both locks held */
  _Atomic uint32_t state;     /* atomic; written with both locks held */

  /* ---- waiting: atomic waiter words, written only by threads starting or
   * ending a wait and by wakers; read by every put and get ---- */
  alignas(LINE) _Atomic uint32_t getters;
  _Atomic uint32_t putters;
  _Atomic uint32_t joiners; /* atomic: a plain count of parked joiners */

  /* ---- park words: atomic; bumped only to wake someone ---- */
  alignas(LINE) _Atomic uint32_t not_empty_seq;
  _Atomic uint32_t not_full_seq;
  _Atomic uint32_t join_seq;

  /* Atomic: task_done calls plus dropped items; never above tail. */
  alignas(LINE) _Atomic uint64_t finished;
};

/* ---- small helpers ---------------------------------------------------- */

static inline bool is_ring(const concur_queue *q) {
  return q->kind == CONCUR_QUEUE_FIFO || q->kind == CONCUR_QUEUE_SIMPLE;
}

/* Relaxed, as maxsize's reads: both are written only with both locks held,
 * so a reader holding either lock sees the current value through the lock;
 * unlocked readers (spins, predicates) use it as a hint or a snapshot. */
static inline uint32_t state_of(concur_queue *q) {
  return atomic_load_explicit(&q->state, memory_order_relaxed);
}

/* A side's published counter. Acquire: what was written before it was
 * published (the slots, for tail) is visible after. */
static inline uint64_t counter_of(side *s) {
  return atomic_load_explicit(&s->word, memory_order_acquire) >> COUNTER_SHIFT;
}

static inline uint64_t tail_of(concur_queue *q) {
  return counter_of(&q->put);
}
static inline uint64_t head_of(concur_queue *q) {
  return counter_of(&q->get);
}

static uint64_t pow2_at_least(uint64_t n) {
  uint64_t p = 1;
  while (p < n) {
    p <<= 1;
  }
  return p;
}

static size_t elem_size(const concur_queue *q) {
  return q->kind == CONCUR_QUEUE_PRIORITY ? sizeof(prio_entry) : sizeof(void *);
}

/* ---- side locks ------------------------------------------------------- */

static uint64_t side_lock_slow(side *s) {
  for (int i = 0; i < LOCK_SPINS; i++) {
    uint64_t w = atomic_load_explicit(&s->word, memory_order_relaxed);
    if ((w & LOCKED) == 0) {
      if (atomic_compare_exchange_weak_explicit(&s->word, &w, w | LOCKED,
                                                memory_order_acquire,
                                                memory_order_relaxed)) {
        return w >> COUNTER_SHIFT;
      }
    } else if (w & CONTENDED) {
      break; /* others are parked already: spinning would steal a core */
    }
    concur__cpu_relax();
  }
  for (;;) {
    /* Read the park word before marking the lock contended: an unlock
     * after the mark bumps it, so the park below cannot sleep through it. */
    uint32_t seen = atomic_load_explicit(&s->lock_seq, memory_order_acquire);
    uint64_t w = atomic_load_explicit(&s->word, memory_order_relaxed);
    if ((w & LOCKED) == 0) {
      /* Keep CONTENDED: others may still sleep, and our unlock wakes one. */
      if (atomic_compare_exchange_weak_explicit(
              &s->word, &w, w | LOCKED | CONTENDED, memory_order_acquire,
              memory_order_relaxed)) {
        return w >> COUNTER_SHIFT;
      }
      continue;
    }
    /* Release: the unlock that reads this mark then also sees our read of
     * lock_seq as earlier than its bump. */
    if ((w & CONTENDED) == 0 &&
        !atomic_compare_exchange_weak_explicit(&s->word, &w, w | CONTENDED,
                                               memory_order_release,
                                               memory_order_relaxed)) {
      continue;
    }
    /* The side's own address is the key: concur__test_await_parked(queue)
     * then counts only callers waiting for items, room or join. */
    (void)concur__park(&s->lock_seq, seen, CONCUR__NO_DEADLINE, s);
  }
}

/* Takes a side's lock; returns its counter. Acquire: what the previous
 * holder did is visible; relaxed on failure, which takes nothing. */
static inline uint64_t side_lock(side *s) {
  uint64_t w = atomic_load_explicit(&s->word, memory_order_relaxed);
  if ((w & LOCKED) == 0 && atomic_compare_exchange_weak_explicit(
                               &s->word, &w, w | LOCKED, memory_order_acquire,
                               memory_order_relaxed)) {
    return w >> COUNTER_SHIFT;
  }
  return side_lock_slow(s);
}

/*
 * Publishes a side's new counter and unlocks it, in one exchange. seq_cst,
 * not just release: a put or get then reads the other side's waiter word,
 * and that read must not be ordered before this publish (Dekker, see
 * signal()).
 */
static inline void side_unlock(side *s, uint64_t counter) {
  uint64_t old = atomic_exchange_explicit(&s->word, counter << COUNTER_SHIFT,
                                          memory_order_seq_cst);
  if (old & CONTENDED) {
    atomic_fetch_add_explicit(&s->lock_seq, 1, memory_order_release);
    concur__unpark(&s->lock_seq, 1);
  }
}

/* The counter of a side whose lock the caller holds: relaxed, since only
 * the holder changes it. */
static inline uint64_t held_counter(side *s) {
  return atomic_load_explicit(&s->word, memory_order_relaxed) >> COUNTER_SHIFT;
}

/* The lock that guards tail and put_limit. */
static inline side *put_side(concur_queue *q) {
  return is_ring(q) ? &q->put : &q->get;
}

/* Both locks, in order (LIFO/PRIORITY: the get side's guards everything). */
static void lock_both(concur_queue *q) {
  if (is_ring(q)) {
    (void)side_lock(&q->put);
  }
  (void)side_lock(&q->get);
}

static void unlock_both(concur_queue *q, uint64_t head) {
  side_unlock(&q->get, head);
  if (is_ring(q)) {
    side_unlock(&q->put, held_counter(&q->put));
  }
}

/* min(capacity, maxsize) while open; 0 once shut down. Needs the put
 * side's lock (or both). */
static uint64_t limit_of(concur_queue *q) {
  if (state_of(q) != OPEN) {
    return 0;
  }
  int64_t max = atomic_load_explicit(&q->maxsize, memory_order_relaxed);
  if (max != CONCUR_UNBOUNDED && (uint64_t)max < q->capacity) {
    return (uint64_t)max;
  }
  return q->capacity;
}

/* ---- waking ----------------------------------------------------------- */

static void wake(_Atomic uint32_t *seq, int32_t n) {
  /* The bump makes a waiter that read the old value return from park at
   * once; the unpark wakes those already asleep. */
  atomic_fetch_add_explicit(seq, 1, memory_order_seq_cst);
  concur__unpark(seq, n);
}

/*
 * Waiter words. A waker that finds waiters and no PENDING flag sets the
 * flag, bumps the park word and unparks; one that finds PENDING already set
 * does nothing, because a wake-up is on its way. Every registration and
 * every deregistration clears PENDING and is followed by a re-check of the
 * queue under its lock, and a waiter that got its item (or room) after
 * waiting passes a wake-up on when more is left (pass_on). So no wake-up is
 * lost: a waker that skips read PENDING, so no registration or
 * deregistration came between the flag's setting and that read; the
 * waiters registered then are still registered, and the first of them to
 * deregister (the woken one at the latest) clears the flag after the read
 * and re-checks after the skipped change was published. A waker that reads
 * no waiter read the word before any later registration, whose re-check
 * then sees the change. Both arguments need the publish of the change and
 * the read of the word on one side, the registration and the re-check on
 * the other, to be sequentially consistent (Dekker); they are.
 */
static void waiters_enter(_Atomic uint32_t *word) {
  uint32_t v = atomic_load_explicit(word, memory_order_relaxed);
  while (!atomic_compare_exchange_weak_explicit(
      word, &v, (v + ONE_WAITER) & ~PENDING, memory_order_seq_cst,
      memory_order_relaxed)) {
  }
}

static void waiters_leave(_Atomic uint32_t *word) {
  uint32_t v = atomic_load_explicit(word, memory_order_relaxed);
  while (!atomic_compare_exchange_weak_explicit(
      word, &v, (v - ONE_WAITER) & ~PENDING, memory_order_seq_cst,
      memory_order_relaxed)) {
  }
}

static inline unsigned waiters_of(_Atomic uint32_t *word) {
  return atomic_load_explicit(word, memory_order_seq_cst) / ONE_WAITER;
}

/* Wakes up to n waiters unless nobody waits or a wake-up is on its way. */
static inline void signal(_Atomic uint32_t *word, _Atomic uint32_t *seq,
                          uint64_t n) {
  uint32_t v = atomic_load_explicit(word, memory_order_seq_cst);
  while (v >= ONE_WAITER && (v & PENDING) == 0) {
    if (atomic_compare_exchange_weak_explicit(word, &v, v | PENDING,
                                              memory_order_seq_cst,
                                              memory_order_seq_cst)) {
      wake(seq, n > INT32_MAX ? INT32_MAX : (int32_t)n);
      return;
    }
  }
}

/* After a put was published: wake a getter if one waits. */
static inline void after_put(concur_queue *q) {
  signal(&q->getters, &q->not_empty_seq, 1);
}

/* After n items left: wake up to n putters if any wait. */
static inline void after_get(concur_queue *q, uint64_t n) {
  signal(&q->putters, &q->not_full_seq, n);
}

/*
 * pass_on tests, for a waiter that got its room or its item after waiting:
 * the wake-up that brought it may have stood for several puts or gets (see
 * signal), so it wakes the next waiter when more is left. Racy reads are
 * enough: a wrong "yes" is a spurious wake-up, and the change that makes a
 * "no" wrong signals by itself.
 */
static bool room_left(concur_queue *q, uint64_t tail) {
  /* seq_cst: ordered after this waiter's deregistration (see signal). */
  uint64_t count =
      tail - (atomic_load_explicit(&q->get.word, memory_order_seq_cst) >>
              COUNTER_SHIFT);
  int64_t max = atomic_load_explicit(&q->maxsize, memory_order_relaxed);
  return max == CONCUR_UNBOUNDED || count < (uint64_t)max;
}

static bool items_left(concur_queue *q, uint64_t head) {
  return atomic_load_explicit(&q->put.word, memory_order_seq_cst) >>
             COUNTER_SHIFT !=
         head;
}

/* ---- the priority heap (get side's lock) ------------------------------ */

static inline bool before(const prio_entry *a, const prio_entry *b) {
  return a->priority < b->priority ||
         (a->priority == b->priority && a->seq < b->seq);
}

static void heap_push(prio_entry *heap, uint64_t n, prio_entry e) {
  uint64_t i = n;
  while (i > 0) {
    uint64_t parent = (i - 1) / 2;
    if (!before(&e, &heap[parent])) {
      break;
    }
    heap[i] = heap[parent];
    i = parent;
  }
  heap[i] = e;
}

static void *heap_pop(prio_entry *heap, uint64_t n) {
  void *top = heap[0].item;
  prio_entry last = heap[n - 1];
  uint64_t size = n - 1;
  uint64_t i = 0;
  for (;;) {
    uint64_t child = 2 * i + 1;
    if (child >= size) {
      break;
    }
    if (child + 1 < size && before(&heap[child + 1], &heap[child])) {
      child++;
    }
    if (!before(&heap[child], &last)) {
      break;
    }
    heap[i] = heap[child];
    i = child;
  }
  if (size > 0) {
    heap[i] = last;
  }
  return top;
}

/* ---- storage ---------------------------------------------------------- */

/*
 * Doubles the storage. FIFO/SIMPLE: called with the put side's lock held;
 * takes the get side's, because getters read the ring. Others: called with
 * the get side's lock held. Returns 0 or CONCUR_ENOMEM (nothing changed).
 */
static int grow(concur_queue *q) {
  uint64_t head = is_ring(q) ? side_lock(&q->get) : held_counter(&q->get);
  uint64_t tail = held_counter(&q->put);
  uint64_t cap = q->capacity;
  size_t size = elem_size(q);
  int rc = 0;
  if (tail - head < cap) {
    goto out; /* getters made room meanwhile */
  }
  if (cap > (SIZE_MAX / 2) / size) {
    rc = CONCUR_ENOMEM;
    goto out;
  }
  void *mem = concur__malloc((size_t)(cap * 2) * size);
  if (mem == NULL) {
    rc = CONCUR_ENOMEM;
    goto out;
  }
  if (q->kind == CONCUR_QUEUE_PRIORITY) {
    memcpy(mem, q->heap, (size_t)(tail - head) * size);
    concur__free(q->heap);
    q->heap = mem;
  } else if (q->kind == CONCUR_QUEUE_LIFO) {
    memcpy(mem, q->slots, (size_t)(tail - head) * size);
    concur__free(q->slots);
    q->slots = mem;
  } else {
    /* Items keep their logical index; only the mask changes. */
    void **ring = mem;
    for (uint64_t i = head; i != tail; i++) {
      ring[i & (cap * 2 - 1)] = q->slots[i & (cap - 1)];
    }
    concur__free(q->slots);
    q->slots = ring;
  }
  q->capacity = cap * 2;
  q->put_limit = limit_of(q);
out:
  if (is_ring(q)) {
    side_unlock(&q->get, head);
  }
  return rc;
}

/* ---- waiting ---------------------------------------------------------- */

typedef struct waiter {
  int64_t timeout_ns;
  concur__deadline deadline;
  bool have_deadline;
  bool spun;
  bool timed_out;
} waiter;

static waiter waiter_make(int64_t timeout_ns) {
  waiter w = {timeout_ns, CONCUR__NO_DEADLINE, false, false, false};
  return w;
}

/* True when the caller should give up with CONCUR_ETIMEDOUT. Turns the
 * timeout into a deadline the first time the caller must wait, so that the
 * fast paths never read the clock; starting the clock a little late only
 * makes the deadline later, never earlier. */
static bool waiter_give_up(waiter *w) {
  if (w->timeout_ns == CONCUR_NOWAIT || w->timed_out) {
    return true;
  }
  if (!w->have_deadline) {
    (void)concur__deadline_from_timeout(w->timeout_ns, &w->deadline);
    w->have_deadline = true;
  }
  return false;
}

/*
 * Spins, with no lock held, while a waiter cannot proceed: until the side's
 * counter has moved `want` past `seen`, or has moved at all and `*linger`
 * more rounds have passed, or the queue shuts; WAIT_SPINS rounds at most.
 *
 * Why linger: a getter that takes each item the moment it is published
 * pulls the putter's cache line across for every item, and the putter pulls
 * it back for the next; two such transfers cost more than the rest of a put
 * and a get together. Waiting a few hundred nanoseconds for a small batch
 * lets a streaming putter run ahead, and the getter then takes the batch
 * with one transfer. The linger adapts, so that request/response traffic,
 * where no second item comes, does not pay it: a linger that gathered
 * nothing halves the next one (down to LINGER_MIN rounds, enough to notice
 * a stream), one that gathered a batch lengthens it (up to LINGER_MAX). The
 * hint is a relaxed atomic that waiters share; a lost update only makes one
 * linger a little off.
 */
static void spin_while(side *s, uint64_t seen, concur_queue *q, uint64_t want,
                       _Atomic uint32_t *hint) {
  uint32_t linger = atomic_load_explicit(hint, memory_order_relaxed);
  int left = -1;
  uint64_t moved = 0;
  for (int i = 0; i < WAIT_SPINS; i++) {
    moved = (atomic_load_explicit(&s->word, memory_order_relaxed) >>
             COUNTER_SHIFT) -
            seen;
    if (moved >= want || state_of(q) != OPEN) {
      break;
    }
    if (moved != 0) {
      if (left < 0) {
        left = (int)linger;
      }
      if (left-- == 0) {
        break;
      }
    }
    concur__cpu_relax();
  }
  if (moved >= 2 && linger < LINGER_MAX) {
    atomic_store_explicit(hint, linger + LINGER_MIN, memory_order_relaxed);
  } else if (moved == 1 && linger > LINGER_MIN) {
    atomic_store_explicit(hint, linger / 2, memory_order_relaxed);
  }
}

/* How many items or places a spinning waiter hopes for: BATCH, but never
 * more than a quarter of a small bound could give. */
static uint64_t batch_of(concur_queue *q) {
  int64_t max = atomic_load_explicit(&q->maxsize, memory_order_relaxed);
  if (max != CONCUR_UNBOUNDED && (uint64_t)max / 4 < BATCH) {
    return max < 4 ? 1 : (uint64_t)max / 4;
  }
  return BATCH;
}

/*
 * Called by a putter holding the put side's lock when the fast check found
 * no room (or the queue shut). Returns 0 with the lock held and room for
 * one item at the current tail, or an error with the lock released. Sets
 * *waited once it has registered as a waiter.
 */
static int put_wait_locked(concur_queue *q, int64_t timeout_ns, bool *waited) {
  side *m = put_side(q);
  waiter w = waiter_make(timeout_ns);
  for (;;) {
    if (state_of(q) != OPEN) {
      side_unlock(m, held_counter(m));
      return CONCUR_ESHUTDOWN;
    }
    uint64_t tail = held_counter(&q->put);
    uint64_t head = head_of(q);
    if (is_ring(q)) {
      q->head_seen = head;
    }
    uint64_t count = tail - head;
    int64_t max = atomic_load_explicit(&q->maxsize, memory_order_relaxed);
    if (max == CONCUR_UNBOUNDED || count < (uint64_t)max) {
      if (count < q->capacity) {
        return 0;
      }
      int rc = grow(q);
      if (rc != 0) {
        side_unlock(m, held_counter(m));
        if (*waited) {
          signal(&q->putters, &q->not_full_seq, 1); /* see pass_on */
        }
        return rc;
      }
      continue;
    }
    if (waiter_give_up(&w)) {
      side_unlock(m, held_counter(m));
      return CONCUR_ETIMEDOUT;
    }
    if (!w.spun) {
      w.spun = true;
      side_unlock(m, held_counter(m));
      spin_while(&q->get, head, q, batch_of(q), &q->put_linger);
      (void)side_lock(m);
      continue;
    }
    waiters_enter(&q->putters);
    *waited = true;
    uint32_t seen =
        atomic_load_explicit(&q->not_full_seq, memory_order_seq_cst);
    if (atomic_load_explicit(&q->get.word, memory_order_seq_cst) >>
            COUNTER_SHIFT !=
        head) {
      waiters_leave(&q->putters);
      continue;
    }
    /* maxsize and state change only under this lock, and their changers
     * bump not_full_seq after unlocking: such a change after this unlock
     * makes the park below return. */
    side_unlock(m, held_counter(m));
    int rc = concur__park(&q->not_full_seq, seen, w.deadline, q);
    waiters_leave(&q->putters);
    if (rc == CONCUR_ETIMEDOUT) {
      w.timed_out = true; /* but room that came meanwhile is still taken */
    }
    (void)side_lock(m);
  }
}

/*
 * Called by a getter holding the get side's lock when the queue looked
 * empty. Returns 0 with the lock held and at least one item (FIFO:
 * tail_seen refreshed), or an error with the lock released.
 */
static int get_wait_locked(concur_queue *q, int64_t timeout_ns, bool *waited) {
  waiter w = waiter_make(timeout_ns);
  for (;;) {
    uint64_t head = held_counter(&q->get);
    uint64_t tail = tail_of(q);
    if (is_ring(q)) {
      q->tail_seen = tail;
    }
    if (tail != head) {
      return 0;
    }
    if (state_of(q) != OPEN) {
      side_unlock(&q->get, head);
      return CONCUR_ESHUTDOWN;
    }
    if (waiter_give_up(&w)) {
      side_unlock(&q->get, head);
      return CONCUR_ETIMEDOUT;
    }
    if (!w.spun) {
      w.spun = true;
      side_unlock(&q->get, head);
      spin_while(&q->put, tail, q, batch_of(q), &q->get_linger);
      (void)side_lock(&q->get);
      continue;
    }
    waiters_enter(&q->getters);
    *waited = true;
    uint32_t seen =
        atomic_load_explicit(&q->not_empty_seq, memory_order_seq_cst);
    if (atomic_load_explicit(&q->put.word, memory_order_seq_cst) >>
            COUNTER_SHIFT !=
        tail) {
      waiters_leave(&q->getters);
      continue;
    }
    side_unlock(&q->get, head);
    int rc = concur__park(&q->not_empty_seq, seen, w.deadline, q);
    waiters_leave(&q->getters);
    if (rc == CONCUR_ETIMEDOUT) {
      w.timed_out = true;
    }
    (void)side_lock(&q->get);
  }
}

/* ---- put -------------------------------------------------------------- */

static int ring_put(concur_queue *q, void *item, int64_t timeout_ns) {
  uint64_t tail = side_lock(&q->put);
  bool waited = false;
  if (tail - q->head_seen >= q->put_limit) {
    int rc = put_wait_locked(q, timeout_ns, &waited);
    if (rc != 0) {
      return rc;
    }
    /* Other putters may have gone first while we waited unlocked. */
    tail = held_counter(&q->put);
  }
  q->slots[tail & (q->capacity - 1)] = item;
  side_unlock(&q->put, tail + 1);
  after_put(q);
  if (waited && room_left(q, tail + 1)) {
    signal(&q->putters, &q->not_full_seq, 1);
  }
  return 0;
}

static int ordered_put(concur_queue *q, void *item, int64_t priority,
                       int64_t timeout_ns) {
  uint64_t head = side_lock(&q->get);
  uint64_t tail = held_counter(&q->put);
  bool waited = false;
  if (tail - head >= q->put_limit) {
    int rc = put_wait_locked(q, timeout_ns, &waited);
    if (rc != 0) {
      return rc;
    }
    tail = held_counter(&q->put);
    head = held_counter(&q->get);
  }
  uint64_t count = tail - head;
  if (q->kind == CONCUR_QUEUE_LIFO) {
    q->slots[count] = item;
  } else {
    prio_entry e = {priority, tail, item};
    heap_push(q->heap, count, e);
  }
  /* The put word of these kinds has no lock bits: a plain publish. */
  atomic_store_explicit(&q->put.word, (tail + 1) << COUNTER_SHIFT,
                        memory_order_seq_cst);
  side_unlock(&q->get, head);
  after_put(q);
  if (waited && room_left(q, tail + 1)) {
    signal(&q->putters, &q->not_full_seq, 1);
  }
  return 0;
}

int concur_queue_put(concur_queue *queue, void *item, int64_t timeout_ns) {
  if (queue == NULL || timeout_ns < 0) {
    return CONCUR_EINVAL;
  }
  if (is_ring(queue)) {
    return ring_put(queue, item, timeout_ns);
  }
  return ordered_put(queue, item, 0, timeout_ns);
}

int concur_queue_put_priority(concur_queue *queue, void *item, int64_t priority,
                              int64_t timeout_ns) {
  if (queue == NULL || timeout_ns < 0 || queue->kind != CONCUR_QUEUE_PRIORITY) {
    return CONCUR_EINVAL;
  }
  return ordered_put(queue, item, priority, timeout_ns);
}

/* ---- get -------------------------------------------------------------- */

/* Takes up to n items (n >= 1) into out; at least one must be there. Needs
 * the get side's lock, whose counter is head; returns how many it took. */
static uint64_t take_locked(concur_queue *q, uint64_t head, void **out,
                            uint64_t n) {
  uint64_t avail;
  if (is_ring(q)) {
    avail = q->tail_seen - head;
    if (avail < n) {
      q->tail_seen = tail_of(q);
      avail = q->tail_seen - head;
    }
  } else {
    avail = held_counter(&q->put) - head;
  }
  uint64_t k = n < avail ? n : avail;
  if (is_ring(q)) {
    uint64_t mask = q->capacity - 1;
    for (uint64_t i = 0; i < k; i++) {
      out[i] = q->slots[(head + i) & mask];
    }
  } else if (q->kind == CONCUR_QUEUE_LIFO) {
    for (uint64_t i = 0; i < k; i++) {
      out[i] = q->slots[avail - 1 - i];
    }
  } else {
    for (uint64_t i = 0; i < k; i++) {
      out[i] = heap_pop(q->heap, avail - i);
    }
  }
  return k;
}

/* The common part of get and get_many: n >= 1. */
static int get_some(concur_queue *q, void **out, uint64_t n,
                    int64_t timeout_ns) {
  uint64_t head = side_lock(&q->get);
  bool waited = false;
  if (is_ring(q) ? head == q->tail_seen && head == (q->tail_seen = tail_of(q))
                 : head == held_counter(&q->put)) {
    int rc = get_wait_locked(q, timeout_ns, &waited);
    if (rc != 0) {
      return rc;
    }
    head = held_counter(&q->get);
  }
  uint64_t k = take_locked(q, head, out, n);
  side_unlock(&q->get, head + k);
  after_get(q, k);
  if (waited && items_left(q, head + k)) {
    signal(&q->getters, &q->not_empty_seq, 1);
  }
  return (int)k;
}

int concur_queue_get(concur_queue *queue, void **item_out, int64_t timeout_ns) {
  if (queue == NULL || item_out == NULL || timeout_ns < 0) {
    return CONCUR_EINVAL;
  }
  concur_queue *q = queue;
  if (is_ring(q)) {
    /* The fast path: an item we already know was published. */
    uint64_t head = side_lock(&q->get);
    if (head != q->tail_seen || head != (q->tail_seen = tail_of(q))) {
      *item_out = q->slots[head & (q->capacity - 1)];
      side_unlock(&q->get, head + 1);
      after_get(q, 1);
      return 0;
    }
    side_unlock(&q->get, head);
  }
  int rc = get_some(q, item_out, 1, timeout_ns);
  return rc < 0 ? rc : 0;
}

int concur_queue_get_many(concur_queue *queue, void **items, size_t max_items,
                          int64_t timeout_ns) {
  if (queue == NULL || items == NULL || max_items == 0 || timeout_ns < 0) {
    return CONCUR_EINVAL;
  }
  uint64_t n = max_items > INT_MAX ? INT_MAX : (uint64_t)max_items;
  return get_some(queue, items, n, timeout_ns);
}

/* ---- snapshots -------------------------------------------------------- */

size_t concur_queue_qsize(concur_queue *queue) {
  if (queue == NULL) {
    return 0;
  }
  /* head only grows: if it reads the same before and after tail, it held
   * that value when tail was read, and tail - head was the size then. */
  for (int i = 0; i < 8; i++) {
    uint64_t head = head_of(queue);
    uint64_t tail = tail_of(queue);
    if (head_of(queue) == head) {
      return (size_t)(tail - head);
    }
  }
  /* A busy queue: hold head still instead of retrying without bound. */
  uint64_t head = side_lock(&queue->get);
  uint64_t tail = tail_of(queue);
  side_unlock(&queue->get, head);
  return (size_t)(tail - head);
}

bool concur_queue_empty(concur_queue *queue) {
  return queue != NULL && concur_queue_qsize(queue) == 0;
}

bool concur_queue_full(concur_queue *queue) {
  if (queue == NULL) {
    return false;
  }
  int64_t max = atomic_load_explicit(&queue->maxsize, memory_order_relaxed);
  return max != CONCUR_UNBOUNDED && concur_queue_qsize(queue) >= (size_t)max;
}

int64_t concur_queue_maxsize(concur_queue *queue) {
  if (queue == NULL) {
    return CONCUR_EINVAL;
  }
  return atomic_load_explicit(&queue->maxsize, memory_order_relaxed);
}

bool concur_queue_is_shutdown(concur_queue *queue) {
  return queue != NULL &&
         atomic_load_explicit(&queue->state, memory_order_acquire) != OPEN;
}

static bool maxsize_ok(int64_t maxsize) {
  return maxsize >= 1 || maxsize == CONCUR_UNBOUNDED;
}

int concur_queue_set_maxsize(concur_queue *queue, int64_t maxsize) {
  if (queue == NULL || !maxsize_ok(maxsize) ||
      queue->kind == CONCUR_QUEUE_SIMPLE) {
    return CONCUR_EINVAL;
  }
  concur_queue *q = queue;
  lock_both(q);
  int64_t old = atomic_load_explicit(&q->maxsize, memory_order_relaxed);
  atomic_store_explicit(&q->maxsize, maxsize, memory_order_relaxed);
  q->put_limit = limit_of(q);
  unlock_both(q, held_counter(&q->get));
  bool raised =
      maxsize == CONCUR_UNBOUNDED || (old != CONCUR_UNBOUNDED && maxsize > old);
  if (raised && waiters_of(&q->putters) != 0) {
    wake(&q->not_full_seq, INT32_MAX);
  }
  return 0;
}

/* ---- task tracking ---------------------------------------------------- */

/* True when every put item is finished. finished is read first: tail only
 * grows, so finished == tail means they were equal when tail was read. */
static bool all_done(concur_queue *q) {
  uint64_t done = atomic_load_explicit(&q->finished, memory_order_seq_cst);
  return done == atomic_load_explicit(&q->put.word, memory_order_seq_cst) >>
                     COUNTER_SHIFT;
}

int concur_queue_task_done(concur_queue *queue) {
  if (queue == NULL || queue->kind == CONCUR_QUEUE_SIMPLE) {
    return CONCUR_EINVAL;
  }
  concur_queue *q = queue;
  uint64_t done = atomic_load_explicit(&q->finished, memory_order_seq_cst);
  for (;;) {
    /* tail is read after done and never shrinks, so done < tail here means
     * a task was still unfinished when the exchange below succeeds. */
    if (done >= tail_of(q)) {
      return CONCUR_EOVERFLOW;
    }
    if (atomic_compare_exchange_weak_explicit(&q->finished, &done, done + 1,
                                              memory_order_seq_cst,
                                              memory_order_seq_cst)) {
      break;
    }
  }
  if (done + 1 == atomic_load_explicit(&q->put.word, memory_order_seq_cst) >>
                      COUNTER_SHIFT &&
      atomic_load_explicit(&q->joiners, memory_order_seq_cst) != 0) {
    wake(&q->join_seq, INT32_MAX);
  }
  return 0;
}

int concur_queue_join(concur_queue *queue, int64_t timeout_ns) {
  if (queue == NULL || timeout_ns < 0 || queue->kind == CONCUR_QUEUE_SIMPLE) {
    return CONCUR_EINVAL;
  }
  concur_queue *q = queue;
  waiter w = waiter_make(timeout_ns);
  for (;;) {
    if (all_done(q)) {
      return 0;
    }
    if (waiter_give_up(&w)) {
      return CONCUR_ETIMEDOUT;
    }
    /* Register, then re-check: task_done changes finished, then reads
     * joiners, all seq_cst, so one of the two sees the other. */
    atomic_fetch_add_explicit(&q->joiners, 1, memory_order_seq_cst);
    uint32_t seen = atomic_load_explicit(&q->join_seq, memory_order_seq_cst);
    int rc = 0;
    if (!all_done(q)) {
      rc = concur__park(&q->join_seq, seen, w.deadline, q);
    }
    atomic_fetch_sub_explicit(&q->joiners, 1, memory_order_seq_cst);
    if (rc == CONCUR_ETIMEDOUT) {
      w.timed_out = true;
    }
  }
}

/* ---- shutdown and free ------------------------------------------------ */

/*
 * Empties the queue, counting what it drops as finished; returns the new
 * head, to publish when unlocking. Needs both locks. The dropped items stay
 * in the storage, from *from on, *n of them, for drop_items after
 * unlocking.
 */
static uint64_t empty_locked(concur_queue *q, uint64_t *from, uint64_t *n) {
  uint64_t head = held_counter(&q->get);
  uint64_t tail = held_counter(&q->put);
  *from = head;
  *n = tail - head;
  if (*n == 0) {
    return head;
  }
  q->tail_seen = tail;
  /* Python lowers unfinished_tasks per dropped item, never below 0. */
  uint64_t done = atomic_load_explicit(&q->finished, memory_order_seq_cst);
  uint64_t add;
  do {
    add = tail - done < *n ? tail - done : *n;
  } while (!atomic_compare_exchange_weak_explicit(
      &q->finished, &done, done + add, memory_order_seq_cst,
      memory_order_seq_cst));
  return tail;
}

/* Hands n dropped items, left in the storage by empty_locked, to item_free.
 * No lock held: nothing writes the storage once the queue is shut down. */
static void drop_items(concur_queue *q, uint64_t from, uint64_t n) {
  if (q->item_free == NULL) {
    return;
  }
  for (uint64_t i = 0; i < n; i++) {
    void *item;
    if (is_ring(q)) {
      item = q->slots[(from + i) & (q->capacity - 1)];
    } else if (q->kind == CONCUR_QUEUE_LIFO) {
      item = q->slots[i];
    } else {
      item = q->heap[i].item;
    }
    q->item_free(item, q->item_free_arg);
  }
}

/* Shuts the queue; with immediate, empties it. Returns what to drop. */
static void shut(concur_queue *q, uint32_t how, uint64_t *from, uint64_t *n) {
  lock_both(q);
  if (state_of(q) < how) {
    atomic_store_explicit(&q->state, how, memory_order_release);
  }
  q->put_limit = 0;
  uint64_t head = held_counter(&q->get);
  *from = head;
  *n = 0;
  if (how == SHUT_NOW) {
    head = empty_locked(q, from, n);
  }
  unlock_both(q, head);
}

int concur_queue_shutdown(concur_queue *queue, bool immediate) {
  if (queue == NULL) {
    return CONCUR_EINVAL;
  }
  concur_queue *q = queue;
  uint64_t from;
  uint64_t n;
  shut(q, immediate ? SHUT_NOW : SHUT, &from, &n);
  wake(&q->not_empty_seq, INT32_MAX);
  wake(&q->not_full_seq, INT32_MAX);
  if (immediate) {
    wake(&q->join_seq, INT32_MAX);
  }
  drop_items(q, from, n);
  return 0;
}

void concur_queue_free(concur_queue *queue) {
  if (queue == NULL) {
    return;
  }
  concur_queue *q = queue;
  unsigned getters = waiters_of(&q->getters);
  unsigned putters = waiters_of(&q->putters);
  unsigned joiners = atomic_load(&q->joiners);
  if (getters + putters + joiners != 0 ||
      (atomic_load(&q->put.word) & LOCKED) != 0 ||
      (atomic_load(&q->get.word) & LOCKED) != 0) {
    concur__panic("concur_queue_free: threads are still in the queue "
                  "(%u getters, %u putters, %u joiners blocked)",
                  getters, putters, joiners);
  }
  /* Shut it first, so that an item_free that calls back in finds a closed,
   * empty queue rather than one half freed. */
  uint64_t from;
  uint64_t n;
  shut(q, SHUT_NOW, &from, &n);
  drop_items(q, from, n);
  concur__free(q->slots);
  concur__free(q->heap);
  concur__free(q->raw);
}

/* ---- new -------------------------------------------------------------- */

int concur_queue_new(concur_queue **out, const concur_queue_options *opts) {
  if (out == NULL) {
    return CONCUR_EINVAL;
  }
  concur_queue_options o = CONCUR_QUEUE_OPTIONS_INIT;
  if (opts != NULL) {
    if (opts->size < sizeof(concur_queue_options)) {
      return CONCUR_EINVAL;
    }
    o = *opts;
  }
  if ((unsigned)o.kind > CONCUR_QUEUE_SIMPLE || !maxsize_ok(o.maxsize) ||
      (o.kind == CONCUR_QUEUE_SIMPLE && o.maxsize != CONCUR_UNBOUNDED)) {
    return CONCUR_EINVAL;
  }
  uint64_t cap = o.maxsize != CONCUR_UNBOUNDED && o.maxsize <= PREALLOC_MAX
                     ? pow2_at_least((uint64_t)o.maxsize)
                     : INITIAL_CAPACITY;
  void *raw = concur__malloc(sizeof(concur_queue) + LINE - 1);
  if (raw == NULL) {
    return CONCUR_ENOMEM;
  }
  concur_queue *q =
      (concur_queue *)(((uintptr_t)raw + LINE - 1) & ~(uintptr_t)(LINE - 1));
  memset(q, 0, sizeof *q);
  size_t size =
      o.kind == CONCUR_QUEUE_PRIORITY ? sizeof(prio_entry) : sizeof(void *);
  void *mem = concur__malloc((size_t)cap * size);
  if (mem == NULL) {
    concur__free(raw);
    return CONCUR_ENOMEM;
  }
  q->raw = raw;
  q->kind = o.kind;
  q->item_free = o.item_free;
  q->item_free_arg = o.item_free_arg;
  q->capacity = cap;
  if (o.kind == CONCUR_QUEUE_PRIORITY) {
    q->heap = mem;
  } else {
    q->slots = mem;
  }
  atomic_init(&q->put.word, 0);
  atomic_init(&q->put.lock_seq, 0);
  atomic_init(&q->get.word, 0);
  atomic_init(&q->get.lock_seq, 0);
  atomic_init(&q->maxsize, o.maxsize);
  atomic_init(&q->state, OPEN);
  atomic_init(&q->getters, 0);
  atomic_init(&q->putters, 0);
  atomic_init(&q->joiners, 0);
  atomic_init(&q->not_empty_seq, 0);
  atomic_init(&q->not_full_seq, 0);
  atomic_init(&q->join_seq, 0);
  atomic_init(&q->finished, 0);
  atomic_init(&q->put_linger, LINGER_MAX);
  atomic_init(&q->get_linger, LINGER_MAX);
  q->put_limit = limit_of(q);
  *out = q;
  return 0;
}
