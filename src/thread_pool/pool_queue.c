/*
 * The thread pool's task queue: an unbounded multi-producer multi-consumer
 * FIFO of inline entries, in segments. See pool_internal.h for the design
 * (tickets, stamps, segment recycling, why no consumer spins without bound).
 *
 * Design (this file)
 * - Threads: any number of producers (submitters) and consumers (workers,
 *   helpers, shutdown's drain); seg_lock is taken by whoever crosses into a
 *   new segment, once per CONCUR__POOL_SEG_CELLS tickets.
 * - A cell holds the stamp of the last ticket published in it. Producers
 *   write cells; consumers only read them. A segment is recycled once head
 *   has passed its last ticket: every consumer that took one of its tickets
 *   copied its entry before taking it, and a consumer still copying from it
 *   will fail its compare-and-swap on head.
 * - A consumer waiting for a publish parks on the queue-wide word pub_gen,
 *   never on a cell: a cell may be recycled under a consumer whose view is
 *   stale, and nobody would wake a thread parked there. Producers look at
 *   pub_waiters (read-mostly, almost always 0) after each publish.
 * - Lock order: seg_lock is a leaf.
 */
#include "thread_pool/pool_internal.h"

#include <sched.h>
#include <string.h>

#define SEG_INVALID UINT64_MAX
/* How long a consumer waits for a producer between its ticket and its
 * publish (a few instructions): a short spin, then a few yields (on a
 * machine with fewer cores than runnable threads the producer was most
 * likely preempted in that window, and a yield lets it run), then it
 * parks. */
#define CELL_SPINS 32
/* How many cells ahead a producer asks for the line it will write. */
#define PREFETCH_AHEAD 4
#define CELL_YIELDS 8

void *concur__pool_alloc_aligned(size_t size, void **raw) {
  void *r = concur__malloc(size + CONCUR__POOL_CACHE_LINE - 1);
  *raw = r;
  if (r == NULL) {
    return NULL;
  }
  uintptr_t a = ((uintptr_t)r + CONCUR__POOL_CACHE_LINE - 1) &
                ~(uintptr_t)(CONCUR__POOL_CACHE_LINE - 1);
  return (void *)a;
}

static concur__pool_seg *seg_new(void) {
  void *raw;
  concur__pool_seg *s = concur__pool_alloc_aligned(sizeof *s, &raw);
  if (s == NULL) {
    return NULL;
  }
  s->raw = raw;
  atomic_init(&s->base, SEG_INVALID);
  atomic_init(&s->next, NULL);
  s->all_next = NULL;
  for (size_t i = 0; i < CONCUR__POOL_SEG_CELLS; i++) {
    atomic_init(&s->cells[i].stamp, 0);
    for (size_t w = 0; w < CONCUR__POOL_ENTRY_WORDS; w++) {
      atomic_init(&s->cells[i].words[w], 0);
    }
  }
  return s;
}

int concur__pool_queue_init(concur__pool_queue *q) {
  concur__pool_seg *s = seg_new();
  if (s == NULL) {
    return CONCUR_ENOMEM;
  }
  atomic_init(&s->base, 0);
  atomic_init(&q->tail, 0);
  atomic_init(&q->tail_seg, s);
  atomic_init(&q->head, 0);
  atomic_init(&q->head_seg, s);
  atomic_init(&q->pub_waiters, 0);
  atomic_init(&q->pub_gen, 0);
  q->light = concur__asym_fence_ready();
  q->seg_lock = (concur__mutex)CONCUR__MUTEX_INIT;
  q->oldest = s;
  q->newest = s;
  q->spare = NULL;
  q->all = s;
  return 0;
}

void concur__pool_queue_destroy(concur__pool_queue *q) {
  concur__pool_seg *s = q->all;
  while (s != NULL) {
    concur__pool_seg *next = s->all_next;
    concur__free(s->raw);
    s = next;
  }
  q->all = NULL;
}

/*
 * Recycles the oldest segments that head has passed and that neither
 * current pointer refers to any more. seg_lock held.
 */
static void recycle_locked(concur__pool_queue *q) {
  uint64_t head = atomic_load_explicit(&q->head, memory_order_acquire);
  while (q->oldest != q->newest) {
    concur__pool_seg *s = q->oldest;
    uint64_t base = atomic_load_explicit(&s->base, memory_order_relaxed);
    if (s == atomic_load_explicit(&q->head_seg, memory_order_relaxed) ||
        s == atomic_load_explicit(&q->tail_seg, memory_order_relaxed) ||
        head < base + CONCUR__POOL_SEG_CELLS) {
      return;
    }
    q->oldest = atomic_load_explicit(&s->next, memory_order_relaxed);
    /* A reader holding a stale pointer now fails its base check and starts
     * over from the current pointers. The stamps stay: they name old
     * tickets, which no later ticket matches. */
    atomic_store_explicit(&s->base, SEG_INVALID, memory_order_relaxed);
    /* Spares are chained through `next`: only seg_lock holders follow the
     * link of a segment that is not current, and they check base first. */
    atomic_store_explicit(&s->next, q->spare, memory_order_relaxed);
    q->spare = s;
  }
}

/* Makes sure seg has a successor: 0 or CONCUR_ENOMEM. */
static int ensure_next(concur__pool_queue *q, concur__pool_seg *seg) {
  int rc = 0;
  concur__mutex_lock(&q->seg_lock, NULL);
  if (atomic_load_explicit(&seg->next, memory_order_relaxed) == NULL &&
      atomic_load_explicit(&seg->base, memory_order_relaxed) != SEG_INVALID) {
    recycle_locked(q);
    concur__pool_seg *s = q->spare;
    if (s != NULL) {
      q->spare = atomic_load_explicit(&s->next, memory_order_relaxed);
      atomic_store_explicit(&s->next, NULL, memory_order_relaxed);
    } else if ((s = seg_new()) != NULL) {
      s->all_next = q->all;
      q->all = s;
    } else {
      rc = CONCUR_ENOMEM;
    }
    if (s != NULL) {
      uint64_t base = atomic_load_explicit(&seg->base, memory_order_relaxed) +
                      CONCUR__POOL_SEG_CELLS;
      /* release: a reader that sees this base (acquire) sees the segment
       * as linked here. */
      atomic_store_explicit(&s->base, base, memory_order_release);
      /* release: whoever follows the link sees base. */
      atomic_store_explicit(&seg->next, s, memory_order_release);
      q->newest = s;
    }
  }
  concur__mutex_unlock(&q->seg_lock);
  return rc;
}

/*
 * Moves *cur (tail_seg or head_seg, whose tickets are *ticket) from seg to
 * its successor, if seg is still current and that counter has really left
 * it. The check uses the counter's current value, never the caller's
 * (maybe stale) ticket: a stale caller could otherwise move the pointer
 * past a recycled and relinked segment that is current again.
 */
static void advance(concur__pool_queue *q, _Atomic(concur__pool_seg *) *cur,
                    _Atomic uint64_t *ticket, concur__pool_seg *seg) {
  concur__mutex_lock(&q->seg_lock, NULL);
  if (atomic_load_explicit(cur, memory_order_relaxed) == seg) {
    uint64_t now = atomic_load_explicit(ticket, memory_order_acquire) &
                   ~CONCUR__POOL_TAIL_FLAGS;
    uint64_t base = atomic_load_explicit(&seg->base, memory_order_relaxed);
    concur__pool_seg *next =
        atomic_load_explicit(&seg->next, memory_order_relaxed);
    if (now - base >= CONCUR__POOL_SEG_CELLS && next != NULL) {
      atomic_store_explicit(cur, next, memory_order_release);
    }
  }
  concur__mutex_unlock(&q->seg_lock);
}

/*
 * Finds the segment holding ticket t from *cur: the segment, with its base
 * as it was when checked in *base_out (never read it again: the segment may
 * be recycled at any time, which the caller's compare-and-swap on its
 * ticket then detects), or NULL when the caller must reload its ticket and
 * try again.
 */
static concur__pool_seg *find_seg(concur__pool_queue *q,
                                  _Atomic(concur__pool_seg *) *cur,
                                  _Atomic uint64_t *ticket, uint64_t t,
                                  uint64_t *base_out) {
  concur__pool_seg *seg = atomic_load_explicit(cur, memory_order_acquire);
  uint64_t base = atomic_load_explicit(&seg->base, memory_order_acquire);
  *base_out = base;
  if (base == SEG_INVALID || t < base) {
    return NULL; /* a stale ticket, or a stale pointer: reload both */
  }
  if (t - base >= CONCUR__POOL_SEG_CELLS) {
    /* The ticket is in a later segment: move the pointer on (once per
     * segment) and start over. */
    advance(q, cur, ticket, seg);
    return NULL;
  }
  return seg;
}

/*
 * An entry as words, field by field. Never memcpy, nor a struct copy: a
 * wide load of a record its caller has just written with narrower stores
 * stalls on store forwarding, every submit, and costs more than the rest
 * of the push.
 */
enum { W_FUTURE, W_FN, W_ARG, W_CLEANUP, W_ON_DONE, W_CTX, W_FLAGS, W_COUNT };
_Static_assert(W_COUNT <= CONCUR__POOL_ENTRY_WORDS, "entry words");

static void words_to_entry(const uint64_t *w, concur__pool_entry *e) {
  e->future = (concur_future *)(uintptr_t)w[W_FUTURE];
  e->rec.fn = (concur_task_fn)(uintptr_t)w[W_FN];
  e->rec.arg = (void *)(uintptr_t)w[W_ARG];
  e->rec.cleanup = (concur_cleanup_fn)(uintptr_t)w[W_CLEANUP];
  e->rec.on_done =
      (void (*)(void *, concur__outcome, int))(uintptr_t)w[W_ON_DONE];
  e->rec.ctx = (void *)(uintptr_t)w[W_CTX];
  e->flags = (uint32_t)w[W_FLAGS];
}

/* Copies cell's entry if it holds ticket t's, published: true. A copy is
 * the reader's only once its claim on head succeeds. */
static bool read_cell(concur__pool_cell *cell, uint64_t t, uint64_t *words) {
  /* acquire: the words written before the stamp are visible. */
  if (atomic_load_explicit(&cell->stamp, memory_order_acquire) != t + 1) {
    return false;
  }
  for (size_t w = 0; w < W_COUNT; w++) {
    words[w] = atomic_load_explicit(&cell->words[w], memory_order_relaxed);
  }
  return true;
}

int concur__pool_queue_push(concur__pool_queue *q, concur_future *future,
                            const concur__task_record *rec, uint32_t flags,
                            uint64_t *ticket) {
  static const concur__task_record none = {NULL, NULL, NULL, NULL, NULL};
  if (rec == NULL) {
    rec = &none;
  }
  for (;;) {
    uint64_t t = atomic_load_explicit(&q->tail, memory_order_acquire);
    if (t & CONCUR__POOL_TAIL_CLOSED) {
      return (t & CONCUR__POOL_TAIL_BROKEN) ? CONCUR_EBROKEN : CONCUR_ESHUTDOWN;
    }
    uint64_t base;
    concur__pool_seg *seg = find_seg(q, &q->tail_seg, &q->tail, t, &base);
    if (seg == NULL) {
      continue;
    }
    if (t - base == CONCUR__POOL_SEG_CELLS - 1 &&
        atomic_load_explicit(&seg->next, memory_order_acquire) == NULL) {
      /* The last cell: its successor must exist before anyone holds this
       * ticket, so that a taken ticket never has to fail. */
      int rc = ensure_next(q, seg);
      if (rc != 0) {
        return rc;
      }
    }
    /* seq_cst: the first half of the Dekker pair with parking workers and
     * with a retiring worker's look at the queue. */
    if (!atomic_compare_exchange_weak_explicit(
            &q->tail, &t, t + 1, memory_order_seq_cst, memory_order_relaxed)) {
      continue;
    }
    concur__pool_cell *cell = &seg->cells[t - base];
    if (t - base + PREFETCH_AHEAD < CONCUR__POOL_SEG_CELLS) {
      /* Ask for the line of a later cell now: when its turn comes (behind
       * the full barriers of the ticket and the stamp) it is ours. */
      concur__prefetch_write(&seg->cells[t - base + PREFETCH_AHEAD]);
    }
    /* Relaxed: published by the stamp's release below. Field by field
     * from the caller's record (see above). */
    atomic_store_explicit(&cell->words[W_FUTURE], (uintptr_t)future,
                          memory_order_relaxed);
    atomic_store_explicit(&cell->words[W_FN], (uintptr_t)rec->fn,
                          memory_order_relaxed);
    atomic_store_explicit(&cell->words[W_ARG], (uintptr_t)rec->arg,
                          memory_order_relaxed);
    atomic_store_explicit(&cell->words[W_CLEANUP], (uintptr_t)rec->cleanup,
                          memory_order_relaxed);
    atomic_store_explicit(&cell->words[W_ON_DONE], (uintptr_t)rec->on_done,
                          memory_order_relaxed);
    atomic_store_explicit(&cell->words[W_CTX], (uintptr_t)rec->ctx,
                          memory_order_relaxed);
    atomic_store_explicit(&cell->words[W_FLAGS], flags, memory_order_relaxed);
    /* Publishes the entry (release); then the first half of the Dekker
     * pair with a consumer about to park for it (wait_published). */
    if (q->light) {
      atomic_store_explicit(&cell->stamp, t + 1, memory_order_release);
      concur__asym_fence_light();
    } else {
      atomic_store_explicit(&cell->stamp, t + 1, memory_order_seq_cst);
    }
    if (atomic_load_explicit(&q->pub_waiters, memory_order_seq_cst) != 0) {
      atomic_fetch_add_explicit(&q->pub_gen, 1, memory_order_seq_cst);
      concur__unpark(&q->pub_gen, INT32_MAX);
    }
    if (ticket != NULL) {
      *ticket = t;
    }
    return 0;
  }
}

/*
 * Waits until the producer holding ticket h has published cell h, or until
 * head moved past h (then the caller's view was stale).
 */
static void wait_published(concur__pool_queue *q, concur__pool_cell *cell,
                           uint64_t h) {
  for (int i = 0; i < CELL_SPINS + CELL_YIELDS; i++) {
    if (atomic_load_explicit(&cell->stamp, memory_order_acquire) == h + 1 ||
        atomic_load_explicit(&q->head, memory_order_relaxed) != h) {
      return;
    }
    if (i < CELL_SPINS) {
      concur__cpu_relax();
    } else {
      sched_yield();
    }
  }
  /* seq_cst: announce the wait, then look (the producer publishes, then
   * looks for waiters): one of the two sees the other. */
  atomic_fetch_add_explicit(&q->pub_waiters, 1, memory_order_seq_cst);
  if (q->light && !concur__asym_fence_heavy()) {
    /* The process lost the heavy fence after it registered (a seccomp
     * filter installed later): a publish might not see this waiter, so it
     * must not park. The producer is a few instructions from publishing. */
    while (atomic_load_explicit(&cell->stamp, memory_order_acquire) != h + 1 &&
           atomic_load_explicit(&q->head, memory_order_relaxed) == h) {
      sched_yield();
    }
    atomic_fetch_sub_explicit(&q->pub_waiters, 1, memory_order_relaxed);
    return;
  }
  uint32_t gen = atomic_load_explicit(&q->pub_gen, memory_order_seq_cst);
  if (atomic_load_explicit(&cell->stamp, memory_order_seq_cst) != h + 1 &&
      atomic_load_explicit(&q->head, memory_order_seq_cst) == h) {
    /* No deadline: the producer holds the ticket and is a few instructions
     * from publishing; park returns spuriously at worst. */
    (void)concur__park(&q->pub_gen, gen, CONCUR__NO_DEADLINE, NULL);
  }
  atomic_fetch_sub_explicit(&q->pub_waiters, 1, memory_order_relaxed);
}

bool concur__pool_queue_pop(concur__pool_queue *q, concur__pool_entry *out) {
  for (;;) {
    uint64_t h = atomic_load_explicit(&q->head, memory_order_acquire);
    uint64_t base;
    concur__pool_seg *seg = find_seg(q, &q->head_seg, &q->head, h, &base);
    if (seg == NULL) {
      continue;
    }
    concur__pool_cell *cell = &seg->cells[h - base];
    uint64_t words[W_COUNT];
    if (read_cell(cell, h, words)) {
      /* Only a successful compare-and-swap makes the copy ours: if the
       * segment was recycled meanwhile, head has moved and this fails. */
      if (!atomic_compare_exchange_weak_explicit(&q->head, &h, h + 1,
                                                 memory_order_seq_cst,
                                                 memory_order_relaxed)) {
        continue;
      }
      words_to_entry(words, out);
      return true;
    }
    uint64_t t = atomic_load_explicit(&q->tail, memory_order_seq_cst) &
                 ~CONCUR__POOL_TAIL_FLAGS;
    if (atomic_load_explicit(&q->head, memory_order_relaxed) != h) {
      continue;
    }
    if (t <= h) {
      return false;
    }
    wait_published(q, cell, h);
  }
}

int concur__pool_queue_read_run(concur__pool_queue *q, concur__pool_entry *out,
                                int max, uint64_t *first) {
  for (;;) {
    uint64_t h = atomic_load_explicit(&q->head, memory_order_acquire);
    uint64_t base;
    concur__pool_seg *seg = find_seg(q, &q->head_seg, &q->head, h, &base);
    if (seg == NULL) {
      continue;
    }
    int m = 0;
    while (m < max && h - base + (uint64_t)m < CONCUR__POOL_SEG_CELLS) {
      uint64_t words[W_COUNT];
      if (!read_cell(&seg->cells[h - base + (uint64_t)m], h + (uint64_t)m,
                     words)) {
        break;
      }
      /* After the first, only fire-and-forget entries without flags. */
      if (m > 0 && (words[W_FUTURE] != 0 || words[W_FLAGS] != 0)) {
        break;
      }
      words_to_entry(words, &out[m]);
      m++;
    }
    *first = h;
    return m;
  }
}

bool concur__pool_queue_take(concur__pool_queue *q, uint64_t first, int n) {
  /* Only a successful compare-and-swap makes the copies the caller's: if a
   * cell was recycled meanwhile, head has moved and this fails. */
  return atomic_compare_exchange_strong_explicit(
      &q->head, &first, first + (uint64_t)n, memory_order_seq_cst,
      memory_order_relaxed);
}

bool concur__pool_queue_peek(concur__pool_queue *q, uint32_t ahead) {
  uint64_t h = atomic_load_explicit(&q->head, memory_order_acquire);
  uint64_t t = h + ahead;
  concur__pool_seg *seg =
      atomic_load_explicit(&q->head_seg, memory_order_acquire);
  uint64_t base = atomic_load_explicit(&seg->base, memory_order_acquire);
  if (base == SEG_INVALID || h < base) {
    return true; /* in motion: let the caller look properly */
  }
  /* At most two segments on: the next one's link, then (rarely) its. */
  for (int hop = 0; hop < 2 && t - base >= CONCUR__POOL_SEG_CELLS; hop++) {
    concur__pool_seg *next =
        atomic_load_explicit(&seg->next, memory_order_acquire);
    if (next == NULL) {
      return false;
    }
    seg = next;
    base = atomic_load_explicit(&seg->base, memory_order_acquire);
    if (base == SEG_INVALID || t < base) {
      return true;
    }
  }
  if (t - base >= CONCUR__POOL_SEG_CELLS) {
    return true;
  }
  return atomic_load_explicit(&seg->cells[t - base].stamp,
                              memory_order_acquire) == t + 1;
}

void concur__pool_queue_close(concur__pool_queue *q, bool broken) {
  uint64_t t = atomic_load_explicit(&q->tail, memory_order_relaxed);
  if (t & CONCUR__POOL_TAIL_CLOSED) {
    return; /* the first reason stays */
  }
  atomic_fetch_or_explicit(&q->tail,
                           CONCUR__POOL_TAIL_CLOSED |
                               (broken ? CONCUR__POOL_TAIL_BROKEN : 0),
                           memory_order_seq_cst);
}

uint64_t concur__pool_queue_pushed(concur__pool_queue *q) {
  return atomic_load_explicit(&q->tail, memory_order_acquire) &
         ~CONCUR__POOL_TAIL_FLAGS;
}

bool concur__pool_queue_taken(concur__pool_queue *q, uint64_t ticket) {
  return atomic_load_explicit(&q->head, memory_order_acquire) > ticket;
}

bool concur__pool_queue_nonempty(concur__pool_queue *q) {
  uint64_t h = atomic_load_explicit(&q->head, memory_order_seq_cst);
  uint64_t t = atomic_load_explicit(&q->tail, memory_order_seq_cst) &
               ~CONCUR__POOL_TAIL_FLAGS;
  return t != h;
}
