/*
 * Private to src/thread_pool: the pool's task queue (pool_queue.c) and the
 * keys tests wait on.
 *
 * Design of the queue
 * - One FIFO of entries shared by every worker, unbounded, made of segments
 *   of CONCUR__POOL_SEG_CELLS cells. An entry lives inline in its cell (a
 *   task record and an optional future pointer), so a fire-and-forget submit
 *   allocates nothing once the segments are warm.
 * - Tickets: `tail` counts pushes and `head` pops, both 64-bit and only
 *   increasing. A producer takes ticket t with a compare-and-swap of tail
 *   from t to t+1, writes cell t, then publishes it by storing t+1 in the
 *   cell's `stamp`. A consumer that sees stamp h+1 in cell h copies the
 *   entry out and then takes ticket h with a compare-and-swap of head from
 *   h to h+1; if that fails its copy is thrown away. So consumers never
 *   write a cell: a cell's line only travels from the producer to the
 *   consumer. Entries are copied in and out word by word with relaxed
 *   atomics, so a copy racing with a recycled cell is a discarded value,
 *   never undefined behaviour. Bit 63 of tail closes the queue (shutdown):
 *   no ticket can be taken after it is set.
 * - A consumer that finds head < tail but cell head not yet stamped has
 *   caught a producer between its ticket and its publish (a few
 *   instructions, unless it was preempted): it spins briefly, then
 *   announces itself in pub_waiters and parks on pub_gen; a producer that
 *   sees a waiter after publishing steps pub_gen and wakes them. So no
 *   consumer spins without bound.
 * - Segments: `tail_seg` and `head_seg` point at the segments of the
 *   current tickets; they only move forward, always under `seg_lock`, which
 *   is taken once per segment (per CONCUR__POOL_SEG_CELLS pushes), never
 *   per task, and only after checking the counter's current value. A
 *   producer about to take the last ticket of a segment first makes sure
 *   the next segment exists (under seg_lock, recycling the oldest segment
 *   once head has passed it and both pointers moved on, else allocating),
 *   so a ticket, once taken, always has a cell and a push fails only before
 *   its ticket (CONCUR_ENOMEM). Segments are never freed before the queue,
 *   so a stale segment pointer is always readable; readers check the
 *   segment's `base` (its first ticket, release-stored when it is linked)
 *   against their ticket and retry on a mismatch. A ticket whose
 *   compare-and-swap succeeded was current for the whole time since the
 *   reader checked base, so its segment cannot have been recycled
 *   meanwhile. Stamps are whole tickets (64-bit), so a stamp left by an
 *   earlier use of a recycled segment never matches a later ticket.
 * - Memory orders: the tail CAS is seq_cst; with the workers' seq_cst
 *   parking step it forms the store-then-load pair (Dekker) that makes
 *   "push, then look for a parked worker" and "announce parking, then look
 *   at the queue" never both miss. The publishing stamp store and a
 *   waiter's announcement in pub_waiters form another such pair. Every push
 *   pays for it and a waiter almost never exists, so where the platform
 *   offers it (`light`) the pair is asymmetric: the push stores the stamp
 *   with release and only a compiler barrier before it reads pub_waiters;
 *   the rare waiter pays a process-wide fence (concur__asym_fence_heavy)
 *   after announcing itself. Elsewhere the stamp store is seq_cst.
 */
#ifndef CONCUR_POOL_INTERNAL_H
#define CONCUR_POOL_INTERNAL_H

#include "concur/thread_pool.h"
#include "executor/executor_internal.h"
#include "platform/platform.h"

#include <stdalign.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

/* ---- test keys (see the file comment of concur/thread_pool.h) ------------ */

#define CONCUR__POOL_KEY_WORKER(ex) ((const void *)(ex))
#define CONCUR__POOL_KEY_BLOCKED(ex) ((const void *)((const char *)(ex) + 1))
#define CONCUR__POOL_KEY_TERMINATION(ex)                                       \
  ((const void *)((const char *)(ex) + 2))

/* ---- the queue ------------------------------------------------------------
 */

#define CONCUR__POOL_SEG_CELLS 256u
#define CONCUR__POOL_CACHE_LINE 64

/* Entry flags. */
#define CONCUR__ENTRY_HANDED 1u  /* admitted by claiming an idle worker */
#define CONCUR__ENTRY_COUNTED 2u /* counts against queue_capacity */

/* A task in the queue: immutable while it is in a cell. */
typedef struct concur__pool_entry {
  concur_future *future;   /* NULL: a fire-and-forget task (rec is used) */
  concur__task_record rec; /* the task when future is NULL */
  uint32_t flags;          /* CONCUR__ENTRY_* */
} concur__pool_entry;

#define CONCUR__POOL_ENTRY_WORDS (sizeof(concur__pool_entry) / 8)
_Static_assert(sizeof(concur__pool_entry) % 8 == 0, "entry size");

/* One cache line: a cell never shares a line with its neighbours, so that
 * a consumer reading one cell never pulls the line a producer writes next. */
typedef struct concur__pool_cell {
  /* atomic: ticket + 1 once the entry of that ticket is written. */
  alignas(CONCUR__POOL_CACHE_LINE) _Atomic uint64_t stamp;
  /* atomic words: the entry, written by the ticket's producer before the
   * stamp, read by consumers after it. */
  _Atomic uint64_t words[CONCUR__POOL_ENTRY_WORDS];
} concur__pool_cell;

typedef struct concur__pool_seg {
  /* atomic: the first ticket of this segment; UINT64_MAX while unlinked.
   * Release-stored after the cells were reset, when the segment is linked. */
  _Atomic uint64_t base;
  /* atomic: the next segment (written under seg_lock, read anywhere). */
  _Atomic(struct concur__pool_seg *) next;
  /* seg_lock: the list of every segment the queue owns (for freeing). */
  struct concur__pool_seg *all_next;
  void *raw; /* immutable: what concur__malloc returned (for freeing) */
  concur__pool_cell cells[CONCUR__POOL_SEG_CELLS];
} concur__pool_seg;

typedef struct concur__pool_queue {
  /* Producers' line. */
  alignas(CONCUR__POOL_CACHE_LINE) _Atomic uint64_t tail; /* atomic */
  _Atomic(concur__pool_seg *) tail_seg; /* atomic; written under seg_lock */
  /* Consumers' line. */
  alignas(CONCUR__POOL_CACHE_LINE) _Atomic uint64_t head; /* atomic */
  _Atomic(concur__pool_seg *) head_seg; /* atomic; written under seg_lock */
  /* Consumers waiting for a publish: read by every push, rarely written. */
  alignas(CONCUR__POOL_CACHE_LINE) _Atomic uint32_t pub_waiters; /* atomic */
  _Atomic uint32_t pub_gen; /* atomic: the word they park on */
  /* Immutable: publishes pair with waiters through the asymmetric fence
   * (concur__asym_fence_ready) rather than a seq_cst stamp store. */
  bool light;
  /* Segment management, once per segment. */
  alignas(CONCUR__POOL_CACHE_LINE) concur__mutex seg_lock;
  concur__pool_seg *oldest; /* seg_lock: the first segment still linked */
  concur__pool_seg *newest; /* seg_lock: the last segment linked */
  concur__pool_seg *spare;  /* seg_lock: recycled segments (via next) */
  concur__pool_seg *all;    /* seg_lock: every segment, via all_next */
} concur__pool_queue;

/* tail's top bits: closed, and why (set together, with one atomic or). */
#define CONCUR__POOL_TAIL_CLOSED (UINT64_C(1) << 63)
#define CONCUR__POOL_TAIL_BROKEN (UINT64_C(1) << 62)
#define CONCUR__POOL_TAIL_FLAGS                                                \
  (CONCUR__POOL_TAIL_CLOSED | CONCUR__POOL_TAIL_BROKEN)

/*
 * Memory aligned to a cache line, through concur__malloc (so behind the
 * fault seam): *raw receives what to give to concur__free.
 */
void *concur__pool_alloc_aligned(size_t size, void **raw);

/* Sets the queue up with one segment: 0 or CONCUR_ENOMEM. */
int concur__pool_queue_init(concur__pool_queue *q);
/* Frees every segment (no thread may use the queue any more). */
void concur__pool_queue_destroy(concur__pool_queue *q);
/*
 * Appends the entry {future, *rec (NULL: all NULL), flags} (its ticket in
 * *ticket, if not NULL): 0, CONCUR_ESHUTDOWN
 * (closed by a shutdown), CONCUR_EBROKEN (closed because the pool broke),
 * CONCUR_ENOMEM (a new segment was needed and could not be made; nothing was
 * appended).
 */
int concur__pool_queue_push(concur__pool_queue *q, concur_future *future,
                            const concur__task_record *rec, uint32_t flags,
                            uint64_t *ticket);
/*
 * Takes the oldest entry: true, or false when the queue is empty. Waits for
 * an entry whose producer has taken its ticket but not yet published it.
 */
bool concur__pool_queue_pop(concur__pool_queue *q, concur__pool_entry *out);
/*
 * Reads, without taking them, up to max consecutive published entries from
 * the oldest: the first whatever it is, the next ones only while they are
 * fire-and-forget entries without flags (no future, not counted against a
 * bound, not handed to an idle worker) in the same segment. Returns how
 * many (0: the oldest is not published yet), and the oldest's ticket in
 * *first. The copies are the caller's only once concur__pool_queue_take(q,
 * *first, n) succeeded for the first n of them.
 */
int concur__pool_queue_read_run(concur__pool_queue *q, concur__pool_entry *out,
                                int max, uint64_t *first);
/* Takes the n entries from ticket `first` on: false (nothing taken) if the
 * oldest entry is no longer that one. */
bool concur__pool_queue_take(concur__pool_queue *q, uint64_t first, int n);
/*
 * Closes the queue: later pushes fail with CONCUR_ESHUTDOWN, or
 * CONCUR_EBROKEN if broken (the reason of the first close stays).
 */
void concur__pool_queue_close(concur__pool_queue *q, bool broken);
/* Entries pushed so far (the tickets taken). */
uint64_t concur__pool_queue_pushed(concur__pool_queue *q);
/* True once the entry of that ticket has been popped. */
bool concur__pool_queue_taken(concur__pool_queue *q, uint64_t ticket);
/* True if some ticket was taken and not yet popped (seq_cst loads). */
bool concur__pool_queue_nonempty(concur__pool_queue *q);
/*
 * A cheap look for spinning consumers: true if the entry `ahead` places
 * after the oldest looks published (0: the oldest itself). Reads only the
 * consumers' side and one cell, never tail, so that spinning does not pull
 * the producers' line away from them; looking a few entries ahead lets a
 * consumer that caught up wait until producers are well past the cells it
 * will read. May answer either way while entries are in motion; never a
 * substitute for concur__pool_queue_nonempty where a missed entry would
 * matter.
 */
bool concur__pool_queue_peek(concur__pool_queue *q, uint32_t ahead);

#endif /* CONCUR_POOL_INTERNAL_H */
