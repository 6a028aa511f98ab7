/*
 * The thread-pool executor: admission, workers, shutdown, counters, the
 * future arena and the registry of live pools.
 *
 * Design
 * - Threads: submitters (any thread), workers (started on demand, at most
 *   max_workers alive), guests (threads that work inside the pool without
 *   being workers: ops->help, a help hook running a queued future, a
 *   caller-runs submit, a submitter blocked by the BLOCK policy, the drains
 *   of shutdown, shutdown_now and DISCARD_OLDEST), and cancellers (any
 *   thread cancelling one of the pool's futures, whose cancel hook does
 *   the pool's bookkeeping in that thread).
 * - The queue (pool_queue.c) is one lock-free FIFO of inline entries. A
 *   future entry points at a future whose memory (a pool_node, from the
 *   pool's arena) carries the task record and the pool's per-task data; a
 *   fire-and-forget entry carries the record itself and needs no
 *   allocation, and its task runs without a future.
 * - Admission (concur/thread_pool.h, rules 1-5). The fast path takes no
 *   pool-wide lock: with an unbounded queue and at least core_workers alive
 *   a submit is one push (rules 1 and 3 both end in the queue); with a
 *   bounded queue it claims an idle worker's credit (rule 1) or reserves a
 *   place (rule 3) with one compare-and-swap, then pushes. Everything else
 *   (starting a worker, rejection policies) takes `lock`, which keeps the
 *   counts exact.
 * - Idle credits, `idle` (atomic): the number of idle workers minus the
 *   handed entries (rule 1) still in the queue. A worker adds one when it
 *   becomes idle, and takes one back when it leaves idleness with an entry
 *   that was not handed to it; whoever pops a handed entry while not idle
 *   gives the claim back. Rule 1 claims a credit with a compare-and-swap.
 *   Where rule 1 decides something (below core, bounded queue) a worker
 *   becomes idle before it publishes the result of the task it just ran,
 *   so that a submit made as soon as the result is seen finds it idle.
 * - Waking: an idle worker spins briefly (IDLE_SPIN pauses, looking at the
 *   queue with growing gaps; after a run of tasks it looks a few entries
 *   ahead, so that it takes the next run from cells the submitters are done
 *   with; at most max_spinners idle workers spin at a time), then parks on
 *   its own word, on a stack guarded by park_lock. A push wakes one parked
 *   worker only when no idle worker is awake (`spinning`) to take the
 *   entry, and only after a short grace (WAKE_GRACE) in which a busy worker
 *   may take it when it is the only one waiting; a worker that finds work
 *   while others are parked and entries remain wakes one more.
 *   Push-then-look (submitter: seq_cst ticket, then the parked count)
 *   against announce-then-look (worker: seq_cst parked count, then the
 *   queue) is a Dekker pair: one of the two always sees the other.
 * - Batches: a worker that finds a run of published entries while no
 *   worker is idle (parked or spinning) takes up to BATCH_MAX
 *   fire-and-forget entries without flags (no future: nothing can wait on,
 *   cancel or help them one by one; not counted against a bound; not
 *   handed to an idle worker) behind the one it pops, with the same
 *   compare-and-swap of head, and runs them next: one claim and one pass
 *   over the cells for several tiny tasks. The batch lives in the worker's
 *   `batch`; `bnext` is the index of the next entry to run, which the
 *   worker claims by compare-and-swap. Out of the queue but not started,
 *   its entries can still be taken, under `lock`, by swapping `bnext` to
 *   BATCH_STOLEN and copying (take_from_batch_locked): whole by
 *   shutdown_now and shutdown(CANCEL_FUTURES) (before draining the queue,
 *   to keep the order, and again after: no batch can be taken from a
 *   closed, drained queue), whole by a worker about to sleep
 *   (steal_for_self: a batch never waits behind a long task while a worker
 *   sleeps), one at a time by a helper that found the queue empty (a batch
 *   never waits behind a task that waits for it). The worker then goes on
 *   from the index left, or stops at BATCH_IDLE.
 *   Handshakes, each a park on `bnext`, never a spin: a worker marks
 *   BATCH_TAKING before the claim that takes a batch and publishes after,
 *   and a taker that finds TAKING waits (BATCH_WAITED; the worker runs no
 *   user code meanwhile); a worker that finds BATCH_STOLEN waits for the
 *   taker's copy (BATCH_STOLEN_WAITED). The worker decides to batch after
 *   marking TAKING; a worker about to sleep announces itself, then looks
 *   at the batches: one of the two sees the other.
 * - Side parties: a queued future may be cancelled by anyone (its
 *   cancel hook counts it, in the cancelling thread), or run by a thread that
 *   blocks on it (the help hook, which makes that thread a guest while it
 *   runs the task). Whoever pops the entry of a cancelled future waits
 *   (bounded spin, then park on node->sync) until the hook has done the
 *   bookkeeping, so the pool never terminates under a thread still updating
 *   its counters.
 * - Counters add up by construction: submitted (queue tickets plus direct
 *   starts, caller-runs and discards), started, completed, failed and
 *   cancelled only grow; running and queued are differences, read in an
 *   order (outcomes, then starts, then cancellations, then submissions) in
 *   which each task's earlier event is always read later, so neither is
 *   ever negative. Workers count into their own lines; others into the
 *   pool's atomics.
 * - Termination: shut down (queue closed), every worker thread gone from
 *   the pool's bookkeeping (`threads`) and no guest inside. Workers leave
 *   only once the closed queue is empty. Whoever completes the condition
 *   (under `lock`) runs the terminated hook, then sets `term_word`.
 * - Lock order: lock -> park_lock -> (the queue's seg_lock); the arena's
 *   cache_busy flag and the registry's reg_lock are leaves. No lock is held
 *   while user code runs (tasks, hooks, cleanups, on_done, done callbacks),
 *   except that shutdown_now sets cancel-request flags on running futures
 *   under `lock`, which runs no code. Workers are spawned under `lock`.
 * - Fork and exit: the pool is a member of the process registry
 *   (thread/registry.h), which shuts it down at exit; a forked child has
 *   no pool threads, and the inherited pools are not listed there.
 */
#include "future/future_exec.h"
#include "thread/registry.h"
#include "thread_pool/pool_internal.h"

#include <pthread.h>
#include <sched.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- constants ------------------------------------------------------------
 */

/* state bits (atomic, only ever added, under lock). */
#define ST_SHUT 1u   /* shut down: the queue is closed */
#define ST_NOW 2u    /* shutdown_now was called */
#define ST_BROKEN 4u /* an initializer failed */

/* node->sync: the side-party handshake. */
#define SYNC_DONE 1u
#define SYNC_WAIT 2u

/* How long an idle worker looks for work before it parks, in CPU pause
 * instructions (about 20 ns each on current x86): a few microseconds, about
 * one wake-up's cost. It looks at the queue with a growing gap, up to
 * IDLE_GAP_MAX pauses, so that a caught-up worker does not keep pulling the
 * line the submitter is about to write; once the gap is at its widest it
 * yields the processor between looks instead (each yield counted as a
 * widest gap), so that a worker sharing a core with the submitter lets it
 * run rather than spin against it. */
#define IDLE_SPIN 512
/* How long a submitter waits for a busy worker to take its entry before it
 * wakes a parked one (pauses: about half a microsecond). */
#define WAKE_GRACE 24
#define IDLE_GAP_MAX 16
/* How many looks an idle worker makes one pause apart before its gap
 * starts growing: about a microsecond, in which a submitter that keeps the
 * pool busy usually sends the next task. */
#define IDLE_FINE_LOOKS 32
/* A worker that ran STREAM_RUN tasks since it was last idle sees a stream:
 * it looks STREAM_AHEAD entries ahead, with gaps from STREAM_GAP to
 * STREAM_GAP_MAX pauses, for at most STREAM_LOOKS looks. */
#define STREAM_RUN 8
#define STREAM_AHEAD 8
#define STREAM_GAP 8
#define STREAM_GAP_MAX 32
#define STREAM_LOOKS 8
/* Batches: at most this many fire-and-forget entries taken behind a
 * worker's entry; and the states of pool_worker.bnext beside its indices. */
#define BATCH_MAX 7u
#define BATCH_IDLE UINT32_MAX
#define BATCH_STOLEN (UINT32_MAX - 1)
#define BATCH_TAKING (UINT32_MAX - 2)
#define BATCH_WAITED (UINT32_MAX - 3)
#define BATCH_STOLEN_WAITED (UINT32_MAX - 4)
/* How long a popper spins for a side party before parking. */
#define SIDE_SPINS 128

#define BORROWED ((uintptr_t)1)
#define NODE_HEADER 64
/* node->flags: beside the CONCUR__ENTRY_* bits. */
#define NODE_ACCEPTED 0x100u
#define NODE_QUEUED 0x200u /* in the queue (not a worker's first task) */

static const char broken_message[] =
    "the pool is broken: a worker's initializer failed";

typedef struct pool pool;
typedef struct pool_worker pool_worker;
typedef struct pool_arena pool_arena;

/*
 * A future task's memory: the pool's per-task data in the first
 * NODE_HEADER bytes, the concur_future after them.
 */
typedef struct pool_node {
  pool *pool;        /* immutable after init */
  pool_arena *arena; /* immutable after the first allocation */
  union {
    concur__task_record rec;     /* immutable after init */
    struct pool_node *free_next; /* while in the arena's lists */
  } u;
  /* CONCUR__ENTRY_* | NODE_*: written by the submitter before the
   * future is shared, immutable after. */
  uint32_t flags;
  _Atomic uint32_t sync; /* atomic: SYNC_* */
} pool_node;

_Static_assert(sizeof(pool_node) <= NODE_HEADER, "pool_node too large");

/*
 * Where futures come from: a push-only stack of returned nodes (any thread
 * pushes; a submitter takes all of them at once, so no ABA), and the
 * submitters' private cache behind a try-lock (a submitter that finds it
 * taken allocates instead of waiting). `live` counts the nodes that exist
 * plus one for the pool, so the arena outlives the pool while futures do.
 */
struct pool_arena {
  alignas(CONCUR__POOL_CACHE_LINE) _Atomic(pool_node *) returned; /* atomic */
  _Atomic size_t live;                                            /* atomic */
  /* atomic: 1 while a submitter (or arena_close) owns `cache`. Only ever
   * tried, never waited for, by submitters: one exchange to take it and a
   * plain release store to give it back. */
  alignas(CONCUR__POOL_CACHE_LINE) _Atomic uint32_t cache_busy;
  pool_node *cache; /* cache_busy */
  size_t node_size; /* immutable */
  void *raw;        /* immutable: for concur__free */
};

#define ARENA_CLOSED ((pool_node *)(uintptr_t)1)

struct pool_worker {
  pool *pool;       /* immutable */
  uint64_t index;   /* immutable: the number in its name */
  pthread_t thread; /* written by the spawner under lock; read by joiners */
  /* lock: the pool's list of worker threads, and the zombies. */
  pool_worker *prev;
  pool_worker *next;
  /* Immutable after the spawn: the first task, if any. */
  concur__pool_entry first;
  bool has_first;
  /* park_lock: the stack of parked workers. */
  pool_worker *park_prev;
  pool_worker *park_next;
  bool on_stack;
  bool retired; /* lock */
  /* The worker's own: */
  bool idle;     /* holds an idle credit */
  bool exact;    /* its next pop must be the waiting one */
  int run;       /* tasks taken since it was last idle */
  bool spinning; /* counted in pool->spinning */
  int depth;     /* tasks this thread is running for this pool, nested */
  _Atomic uint32_t wake;   /* atomic: 1 once a waker took it off the stack */
  _Atomic uint32_t borrow; /* atomic: shutdown_now's handshake word */
  /* atomic: the future being run (depth 1), | BORROWED while shutdown_now
   * is setting its cancel request. */
  _Atomic uintptr_t current;
  /* The batch (see "Batches" in the file comment): BATCH_IDLE,
   * BATCH_TAKING (or BATCH_WAITED: a taker waits), BATCH_STOLEN (or
   * BATCH_STOLEN_WAITED: the worker waits), or the index of its next entry
   * to run. atomic. */
  _Atomic uint32_t bnext;
  uint32_t blen;   /* written while TAKING, published by bnext */
  uint32_t stolen; /* the worker's own: a batch it took from another */
  /* Written by the worker while TAKING, published by bnext; entry i read
   * by whoever claimed it (the worker, a helper or a thief). */
  concur__pool_entry batch[BATCH_MAX];
  /* Written by this worker only (relaxed load + release store); read by
   * get_stats. */
  alignas(CONCUR__POOL_CACHE_LINE) _Atomic uint64_t started;
  _Atomic uint64_t completed;
  _Atomic uint64_t failed;
  char name[CONCUR_THREAD_POOL_PREFIX_MAX + 24];
  void *raw; /* immutable: for concur__free */
};

struct pool {
  struct concur_executor base; /* first: the public handle */

  /* Immutable after init. */
  concur_thread_pool_options opts;
  char prefix[CONCUR_THREAD_POOL_PREFIX_MAX + 1];
  bool bounded;
  int64_t capacity;
  int64_t idle_timeout_ns;
  int32_t max_spinners; /* idle workers allowed to spin: max(1, CPUs / 2) */
  pool_arena *arena;

  /* Read on every submit, rarely written. */
  alignas(CONCUR__POOL_CACHE_LINE) _Atomic uint32_t state; /* ST_*; lock */
  _Atomic int core;  /* atomic; written under lock */
  _Atomic int max;   /* atomic; written under lock */
  _Atomic int alive; /* atomic; written under lock: workers counted */

  concur__pool_queue q;

  /* Idle workers. */
  alignas(CONCUR__POOL_CACHE_LINE) _Atomic int32_t idle; /* atomic: credits */
  _Atomic int32_t spinning; /* atomic: idle workers not parked */
  /* Read by every push; written only when a worker parks or is woken. */
  alignas(CONCUR__POOL_CACHE_LINE) _Atomic int32_t parked; /* park_lock */
  concur__mutex park_lock;
  pool_worker *park_top; /* park_lock */

  /* Bounded queue and the BLOCK policy. */
  alignas(CONCUR__POOL_CACHE_LINE) _Atomic int64_t queued; /* atomic */
  _Atomic uint32_t blocked;  /* atomic: submitters waiting for room */
  _Atomic uint32_t room_gen; /* atomic: what they park on */

  /* Counters of tasks not run by a worker of this pool, and the rest. */
  alignas(CONCUR__POOL_CACHE_LINE) _Atomic uint64_t direct_submitted;
  _Atomic uint64_t inline_started;
  _Atomic uint64_t inline_completed;
  _Atomic uint64_t inline_failed;
  _Atomic uint64_t cancelled;
  _Atomic uint64_t rejected;

  /* Everything below: lock. */
  alignas(CONCUR__POOL_CACHE_LINE) concur__mutex lock;
  pool_worker *workers; /* worker threads not yet gone */
  pool_worker *zombies; /* gone, not yet joined */
  int threads;          /* entries of `workers` */
  uint64_t largest;
  uint64_t next_index;
  uint64_t retired_started; /* counters of gone workers */
  uint64_t retired_completed;
  uint64_t retired_failed;
  bool terminating;

  /* In the process registry (thread/registry.h), for process exit. */
  concur__reg_member member;

  /* atomic: guests inside (see guest_leave for the pairing). */
  _Atomic int guests;
  _Atomic uint32_t term_word; /* atomic: 1 once terminated */
  void *raw;                  /* immutable: for concur__free */
};

static _Thread_local pool_worker *tls_worker;
/* The code of the future task this thread ran last (node_task), read by
 * the same thread right after concur_future_run returns: a nested run
 * inside the task always ends before the outer task writes its own. */
static _Thread_local int tls_code;

static const concur__executor_ops pool_ops;

static void pool_at_exit(concur__reg_member *member);

/* ---- small helpers ---------------------------------------------------------
 */

static pool *pool_of(concur_executor *ex) {
  return (pool *)ex;
}

static concur_future *node_future(pool_node *n) {
  return (concur_future *)(void *)((char *)n + NODE_HEADER);
}

static pool_node *node_of(concur_future *f) {
  return (pool_node *)(void *)((char *)f - NODE_HEADER);
}

/* This thread's worker struct if it is a worker of p, else NULL. */
static pool_worker *my_worker(const pool *p) {
  pool_worker *w = tls_worker;
  return w != NULL && w->pool == p ? w : NULL;
}

/* Adds one to a counter only its owner writes. */
static void own_inc(_Atomic uint64_t *c) {
  uint64_t v = atomic_load_explicit(c, memory_order_relaxed);
  /* release: a stats reader that sees the new value also sees what this
   * thread did before (the task's start, for a completion). */
  atomic_store_explicit(c, v + 1, memory_order_release);
}

/* ---- the future arena ------------------------------------------------------
 */

static int arena_new(pool_arena **out) {
  /* Line-aligned: `returned` (pushed by every thread that frees a future)
   * and the submitters' cache stay on lines of their own. */
  void *raw;
  pool_arena *a = concur__pool_alloc_aligned(sizeof *a, &raw);
  if (a == NULL) {
    return CONCUR_ENOMEM;
  }
  a->raw = raw;
  atomic_init(&a->returned, NULL);
  atomic_init(&a->live, 1);
  atomic_init(&a->cache_busy, 0);
  a->cache = NULL;
  a->node_size = NODE_HEADER + concur_future_sizeof();
  *out = a;
  return 0;
}

static pool_node *arena_take(pool_arena *a) {
  pool_node *n = NULL;
  if (atomic_exchange_explicit(&a->cache_busy, 1, memory_order_acquire) == 0) {
    n = a->cache;
    if (n == NULL) {
      /* acquire: the pushers' links (free_next) are visible. */
      n = atomic_exchange_explicit(&a->returned, NULL, memory_order_acquire);
    }
    if (n != NULL) {
      a->cache = n->u.free_next;
    }
    atomic_store_explicit(&a->cache_busy, 0, memory_order_release);
  }
  if (n == NULL) {
    n = concur__malloc(a->node_size);
    if (n == NULL) {
      return NULL;
    }
    n->arena = a;
    /* Relaxed: only the final decrement orders anything. */
    atomic_fetch_add_explicit(&a->live, 1, memory_order_relaxed);
  }
  return n;
}

static void arena_give(pool_node *n) {
  pool_arena *a = n->arena;
  pool_node *head = atomic_load_explicit(&a->returned, memory_order_relaxed);
  for (;;) {
    if (head == ARENA_CLOSED) {
      concur__free(n);
      if (atomic_fetch_sub_explicit(&a->live, 1, memory_order_acq_rel) == 1) {
        concur__free(a->raw);
      }
      return;
    }
    n->u.free_next = head;
    /* release: the taker sees free_next. */
    if (atomic_compare_exchange_weak_explicit(&a->returned, &head, n,
                                              memory_order_release,
                                              memory_order_relaxed)) {
      return;
    }
  }
}

/* The pool lets go of its arena; nodes still held by futures free it last. */
static void arena_close(pool_arena *a) {
  /* The holder is a submitter inside arena_take: a few instructions. */
  while (atomic_exchange_explicit(&a->cache_busy, 1, memory_order_acquire) !=
         0) {
    sched_yield();
  }
  pool_node *list = atomic_exchange_explicit(&a->returned, ARENA_CLOSED,
                                             memory_order_acquire);
  size_t n = 0;
  for (pool_node *lists[2] = {list, a->cache}, **l = lists; l < lists + 2;
       l++) {
    for (pool_node *x = *l; x != NULL;) {
      pool_node *next = x->u.free_next;
      concur__free(x);
      n++;
      x = next;
    }
  }
  a->cache = NULL;
  atomic_store_explicit(&a->cache_busy, 0, memory_order_release);
  if (atomic_fetch_sub_explicit(&a->live, n + 1, memory_order_acq_rel) ==
      n + 1) {
    concur__free(a->raw);
  }
}

/* The concur_future_allocator callbacks: arg is the node itself. */
static void *node_mem_alloc(void *arg, size_t bytes) {
  (void)bytes; /* always concur_future_sizeof(), which node_size covers */
  return node_future(arg);
}

static void node_mem_free(void *arg, void *memory) {
  (void)memory;
  arena_give(arg);
}

/* ---- credits, wakes, room --------------------------------------------------
 */

static void notify_room(pool *p) {
  if (p->opts.rejection != CONCUR_REJECT_BLOCK) {
    return;
  }
  /* seq_cst: after the change that made room (the caller's seq_cst RMW):
   * either a blocked submitter sees the change, or this sees it waiting. */
  if (atomic_load_explicit(&p->blocked, memory_order_seq_cst) != 0) {
    atomic_fetch_add_explicit(&p->room_gen, 1, memory_order_seq_cst);
    concur__unpark(&p->room_gen, INT32_MAX);
  }
}

/* Rule 1: claims an idle worker's credit. */
static bool claim_idle(pool *p) {
  int32_t s = atomic_load_explicit(&p->idle, memory_order_relaxed);
  while (s > 0) {
    if (atomic_compare_exchange_weak_explicit(
            &p->idle, &s, s - 1, memory_order_seq_cst, memory_order_relaxed)) {
      return true;
    }
  }
  return false;
}

/* Rule 3 with a bounded queue: reserves one place. */
static bool reserve_room(pool *p) {
  int64_t q = atomic_load_explicit(&p->queued, memory_order_relaxed);
  while (q < p->capacity) {
    if (atomic_compare_exchange_weak_explicit(&p->queued, &q, q + 1,
                                              memory_order_seq_cst,
                                              memory_order_relaxed)) {
      return true;
    }
  }
  return false;
}

/* A counted entry left the queue (started, cancelled or failed). */
static void release_room(pool *p) {
  atomic_fetch_sub_explicit(&p->queued, 1, memory_order_seq_cst);
  notify_room(p);
}

/* A handed entry was popped by someone who was not idle: give it back. */
static void refund_idle(pool *p) {
  atomic_fetch_add_explicit(&p->idle, 1, memory_order_seq_cst);
  notify_room(p);
}

static void enter_idle(pool *p, pool_worker *w) {
  w->idle = true;
  if (!w->spinning) {
    w->spinning = true;
    atomic_fetch_add_explicit(&p->spinning, 1, memory_order_seq_cst);
  }
  atomic_fetch_add_explicit(&p->idle, 1, memory_order_seq_cst);
  notify_room(p);
}

/* The worker popped e while idle (or not): settle its credit. */
static void settle_pop(pool *p, pool_worker *w, uint32_t flags) {
  if (w != NULL && w->idle) {
    w->idle = false;
    if (!(flags & CONCUR__ENTRY_HANDED)) {
      atomic_fetch_sub_explicit(&p->idle, 1, memory_order_seq_cst);
    }
  } else if (flags & CONCUR__ENTRY_HANDED) {
    refund_idle(p);
  }
  if (w != NULL && w->spinning) {
    w->spinning = false;
    atomic_fetch_sub_explicit(&p->spinning, 1, memory_order_seq_cst);
  }
}

/* Takes the top parked worker off the stack and wakes it. */
static bool wake_one(pool *p, bool try_only) {
  if (try_only) {
    if (!concur__mutex_trylock(&p->park_lock)) {
      return false;
    }
  } else {
    concur__mutex_lock(&p->park_lock, NULL);
  }
  pool_worker *w = p->park_top;
  if (w != NULL) {
    p->park_top = w->park_next;
    if (w->park_next != NULL) {
      w->park_next->park_prev = NULL;
    }
    w->park_next = NULL;
    w->on_stack = false;
    atomic_fetch_sub_explicit(&p->parked, 1, memory_order_seq_cst);
    /* Counted as spinning on its behalf, so the next pushes do not wake
     * another worker before this one is up. */
    atomic_fetch_add_explicit(&p->spinning, 1, memory_order_seq_cst);
    atomic_store_explicit(&w->wake, 1, memory_order_release);
  }
  concur__mutex_unlock(&p->park_lock);
  if (w != NULL) {
    /* Outside the lock, and only the word's address is used: w may be
     * gone by now if it woke by itself and saw the flag. */
    concur__unpark(&w->wake, 1);
  }
  return w != NULL;
}

static void wake_all(pool *p) {
  while (wake_one(p, false)) {
  }
}

/*
 * After a push (of ticket `ticket`, or UINT64_MAX when there is no entry of
 * its own to watch): wake a parked worker if no idle one is awake. Before
 * paying for a wake-up, the submitter gives the workers that are awake but
 * busy a short grace (WAKE_GRACE pauses, well under a microsecond), when
 * its entry is the only one waiting: if one
 * of them takes the entry meanwhile, no wake-up is needed (tiny tasks
 * submitted one by one keep one worker busy, not two fighting for a core);
 * if the busy workers are in long tasks, the parked worker is woken, a
 * fraction of a microsecond later than at once.
 *
 * A push never waits for park_lock: whoever holds it is a worker parking
 * (which looks at the queue after it announced itself, and finds the
 * entry), leaving the stack (it is awake and, having found work, wakes
 * another if more is queued), retiring (it looks at the queue after
 * leaving), or another waker. Either way the entry gets a worker without
 * this push's wake.
 */
static void wake_after_push(pool *p, uint64_t ticket) {
  /* seq_cst: the second half of the push-then-look pair. */
  if (atomic_load_explicit(&p->parked, memory_order_seq_cst) == 0 ||
      atomic_load_explicit(&p->spinning, memory_order_seq_cst) > 0) {
    return;
  }
  if (ticket != UINT64_MAX &&
      atomic_load_explicit(&p->alive, memory_order_relaxed) >
          atomic_load_explicit(&p->parked, memory_order_relaxed) &&
      concur__pool_queue_taken(&p->q, ticket - 1)) {
    for (int i = 0; i < WAKE_GRACE; i++) {
      if (concur__pool_queue_taken(&p->q, ticket)) {
        return;
      }
      concur__cpu_relax();
    }
    if (atomic_load_explicit(&p->spinning, memory_order_seq_cst) > 0) {
      return;
    }
  }
  (void)wake_one(p, true);
}

/* ---- counting --------------------------------------------------------------
 */

static void count_start(pool *p, pool_worker *w, uint32_t flags) {
  if (w != NULL) {
    own_inc(&w->started);
  } else {
    atomic_fetch_add_explicit(&p->inline_started, 1, memory_order_release);
  }
  if (flags & CONCUR__ENTRY_COUNTED) {
    release_room(p);
  }
}

static void count_end(pool *p, pool_worker *w, int code) {
  if (w != NULL) {
    own_inc(code == 0 ? &w->completed : &w->failed);
  } else {
    atomic_fetch_add_explicit(code == 0 ? &p->inline_completed
                                        : &p->inline_failed,
                              1, memory_order_release);
  }
}

static void count_cancel(pool *p, uint32_t flags) {
  atomic_fetch_add_explicit(&p->cancelled, 1, memory_order_release);
  if (flags & CONCUR__ENTRY_COUNTED) {
    release_room(p);
  }
}

/* A task that will never run because the pool broke: started and failed. */
static void count_broken(pool *p, uint32_t flags) {
  atomic_fetch_add_explicit(&p->inline_started, 1, memory_order_release);
  atomic_fetch_add_explicit(&p->inline_failed, 1, memory_order_release);
  if (flags & CONCUR__ENTRY_COUNTED) {
    release_room(p);
  }
}

static void call_on_done(const concur__task_record *rec, concur__outcome out,
                         int code) {
  if (rec->on_done != NULL) {
    rec->on_done(rec->ctx, out, code);
  }
}

/* ---- running one task
 * -------------------------------------------------------- */

/*
 * At the end of a worker's top-level task, before its result is published:
 * idle already if nothing waits, so that a submit made as soon as the
 * result is seen finds this worker idle (rule 1) rather than starting
 * another. Only where rule 1 decides something: below core_workers or with
 * a bounded queue; otherwise every admission ends in the queue anyway, and
 * the worker becomes idle in its loop (which saves a look at the cell the
 * submitters write next, per task).
 */
static void maybe_idle_early(pool *p, pool_worker *w) {
  if (w != NULL && w->depth == 0 && !w->idle &&
      (p->bounded ||
       atomic_load_explicit(&p->alive, memory_order_relaxed) <
           atomic_load_explicit(&p->core, memory_order_relaxed)) &&
      !concur__pool_queue_peek(&p->q, 0)) {
    enter_idle(p, w);
  }
}

/* The worker waits for shutdown_now to finish with its current future. */
static void wait_borrow(pool_worker *w) {
  for (int i = 0; i < SIDE_SPINS; i++) {
    if (atomic_load_explicit(&w->borrow, memory_order_acquire) != 0) {
      break;
    }
    concur__cpu_relax();
  }
  while (atomic_load_explicit(&w->borrow, memory_order_acquire) == 0) {
    (void)concur__park(&w->borrow, 0, CONCUR__NO_DEADLINE, NULL);
  }
  atomic_store_explicit(&w->borrow, 0, memory_order_relaxed);
}

/*
 * Runs a task with hooks and counters; f is its future (NULL for a
 * fire-and-forget task). Returns the task's code.
 */
static int run_body(pool *p, const concur__task_record *rec, uint32_t flags,
                    concur_future *f, void **result) {
  pool_worker *w = my_worker(p);
  count_start(p, w, flags);
  bool top = w != NULL && w->depth == 0;
  if (w != NULL) {
    w->depth++;
  }
  if (top && f != NULL) {
    atomic_store_explicit(&w->current, (uintptr_t)f, memory_order_release);
  }
  if (p->opts.before != NULL) {
    p->opts.before(p->opts.before_arg, rec->fn, rec->arg);
  }
  int code = rec->fn(rec->arg, result);
  if (p->opts.after != NULL) {
    p->opts.after(p->opts.after_arg, rec->fn, rec->arg, code);
  }
  if (top && f != NULL) {
    uintptr_t old =
        atomic_exchange_explicit(&w->current, 0, memory_order_acq_rel);
    if (old & BORROWED) {
      wait_borrow(w);
    }
  }
  count_end(p, w, code);
  if (w != NULL) {
    w->depth--;
  }
  return code;
}

/* The future's task function: arg is the node. */
static int node_task(void *arg, void **result) {
  pool_node *n = arg;
  pool *p = n->pool;
  int code = run_body(p, &n->u.rec, n->flags, node_future(n), result);
  tls_code = code;
  maybe_idle_early(p, my_worker(p));
  return code;
}

/* The future's cleanup: the user's, with the user's arg. */
static void node_cleanup(void *arg, void *result) {
  pool_node *n = arg;
  if (n->u.rec.cleanup != NULL) {
    n->u.rec.cleanup(n->u.rec.arg, result);
  }
}

static void guest_enter(pool *p);
static void guest_leave(pool *p);

/* The canceller's hook is done with the pool: let the popper go on. */
static void side_done(pool_node *n) {
  uint32_t old =
      atomic_exchange_explicit(&n->sync, SYNC_DONE, memory_order_acq_rel);
  if (old & SYNC_WAIT) {
    concur__unpark(&n->sync, INT32_MAX);
  }
}

/*
 * The popper of a cancelled entry waits until the cancel hook (in the
 * cancelling thread) has done the pool's bookkeeping: a short wait.
 */
static void wait_side(pool_node *n) {
  for (int i = 0; i < SIDE_SPINS; i++) {
    if (atomic_load_explicit(&n->sync, memory_order_acquire) & SYNC_DONE) {
      return;
    }
    concur__cpu_relax();
  }
  uint32_t s = 0;
  if (!atomic_compare_exchange_strong_explicit(&n->sync, &s, SYNC_WAIT,
                                               memory_order_acquire,
                                               memory_order_acquire)) {
    if (s & SYNC_DONE) {
      return;
    }
  }
  while (!(atomic_load_explicit(&n->sync, memory_order_acquire) & SYNC_DONE)) {
    (void)concur__park(&n->sync, SYNC_WAIT, CONCUR__NO_DEADLINE, NULL);
  }
}

/*
 * The help hook: runs the task here if it is still queued and no idle
 * worker was claimed for it. The helper is a
 * guest of the pool while it runs it, so the popper of the entry, which
 * finds it started, need not wait. The pool is alive on entry: the future
 * is pending and cannot leave PENDING while this call is in progress
 * except through this thread, so its entry's popper cannot be done with it.
 */
static void node_help(concur_future *f, void *arg) {
  pool_node *n = arg;
  pool *p = n->pool;
  if (!(n->flags & NODE_QUEUED) || (n->flags & CONCUR__ENTRY_HANDED) ||
      (atomic_load_explicit(&p->state, memory_order_acquire) & ST_BROKEN)) {
    /* A worker's first task or a task handed to an idle worker: a worker
     * is about to run it (helping would leave that worker idle with its
     * credit spent). Or a task the breaker will fail. */
    return;
  }
  guest_enter(p);
  if (concur_future_run(f) == 0) {
    call_on_done(&n->u.rec,
                 tls_code == 0 ? CONCUR__OUTCOME_OK : CONCUR__OUTCOME_FAILED,
                 tls_code);
  }
  guest_leave(p);
}

/* The cancel hook: the pool's bookkeeping for a cancelled future. */
static void node_cancelled(concur_future *f, void *arg) {
  (void)f;
  pool_node *n = arg;
  if (!(n->flags & NODE_ACCEPTED)) {
    return; /* a submit taking it back */
  }
  count_cancel(n->pool, n->flags);
  call_on_done(&n->u.rec, CONCUR__OUTCOME_CANCELLED, CONCUR_ECANCELED);
  side_done(n);
}

/* Runs a fire-and-forget task: cleanup at once, then on_done. */
static void run_record(pool *p, const concur__task_record *rec,
                       uint32_t flags) {
  void *result = NULL;
  /* Its cancel request is the pool's shutdown_now flag. */
  concur__task_frame frame;
  concur__task_enter(&frame, &p->state, ST_NOW);
  int code = run_body(p, rec, flags, NULL, &result);
  concur__task_leave(&frame);
  if (rec->cleanup != NULL) {
    rec->cleanup(rec->arg, result);
  }
  maybe_idle_early(p, my_worker(p));
  call_on_done(rec, code == 0 ? CONCUR__OUTCOME_OK : CONCUR__OUTCOME_FAILED,
               code);
}

/* Fails a task of a broken pool. The popper owns e. */
static void fail_entry(pool *p, concur__pool_entry *e) {
  if (e->future != NULL) {
    pool_node *n = node_of(e->future);
    if (concur_future_set_exception(e->future, CONCUR_EBROKEN,
                                    broken_message) == 0) {
      count_broken(p, n->flags);
      call_on_done(&n->u.rec, CONCUR__OUTCOME_FAILED, CONCUR_EBROKEN);
    } else if (concur_future_cancelled(e->future)) {
      wait_side(n); /* else a helper runs it, as a guest */
    }
    concur_future_unref(e->future);
    return;
  }
  count_broken(p, e->flags);
  if (e->rec.cleanup != NULL) {
    e->rec.cleanup(e->rec.arg, NULL);
  }
  call_on_done(&e->rec, CONCUR__OUTCOME_FAILED, CONCUR_EBROKEN);
}

/* Cancels a never-started entry (a policy or shutdown dropped it). True if
 * it was still pending. The popper owns e. */
static bool cancel_entry(pool *p, concur__pool_entry *e) {
  if (e->future != NULL) {
    pool_node *n = node_of(e->future);
    bool cancelled = concur_future_cancel(e->future);
    if (cancelled) {
      wait_side(n); /* our own hook (done already), or a canceller's */
    }
    concur_future_unref(e->future);
    return cancelled;
  }
  count_cancel(p, e->flags);
  if (e->rec.cleanup != NULL) {
    e->rec.cleanup(e->rec.arg, NULL);
  }
  call_on_done(&e->rec, CONCUR__OUTCOME_CANCELLED, CONCUR_ECANCELED);
  return true;
}

/*
 * Runs a popped entry in this thread (a worker or a guest). Returns true if
 * the task ran here.
 */
static bool process_entry(pool *p, concur__pool_entry *e) {
  if (atomic_load_explicit(&p->state, memory_order_acquire) & ST_BROKEN) {
    fail_entry(p, e);
    return false;
  }
  if (e->future == NULL) {
    run_record(p, &e->rec, e->flags);
    return true;
  }
  concur_future *f = e->future;
  pool_node *n = node_of(f);
  int rc = concur_future_run(f);
  if (rc == 0) {
    call_on_done(&n->u.rec,
                 tls_code == 0 ? CONCUR__OUTCOME_OK : CONCUR__OUTCOME_FAILED,
                 tls_code);
  } else if (rc == CONCUR_ECANCELED) {
    wait_side(n); /* else a helper ran it, as a guest */
  }
  concur_future_unref(f);
  return rc == 0;
}

/* ---- termination and guests ------------------------------------------------
 */

/* Under lock: true if the caller must complete the termination. */
static bool should_terminate_locked(pool *p) {
  if (p->terminating || p->threads != 0 ||
      atomic_load_explicit(&p->guests, memory_order_seq_cst) != 0 ||
      !(atomic_load_explicit(&p->state, memory_order_relaxed) & ST_SHUT)) {
    return false;
  }
  p->terminating = true;
  return true;
}

static void finish_termination(pool *p) {
  if (p->opts.terminated != NULL) {
    p->opts.terminated(p->opts.terminated_arg);
  }
  /* release: every task's effects, the hook's included, are visible to a
   * thread that sees the pool terminated. Nothing of p is touched after
   * the wake but its address. */
  atomic_store_explicit(&p->term_word, 1, memory_order_release);
  concur__unpark(&p->term_word, INT32_MAX);
}

/*
 * Guests count themselves without the lock (help runs once per task a
 * waiter helps with). Pairing: a leaving guest subtracts, then looks for
 * ST_SHUT; a shutdown sets ST_SHUT, then (under lock, in
 * should_terminate_locked, directly or after the last worker left) reads
 * the count; all seq_cst, so one of the two sees the other and the last of
 * them completes the termination. A guest that enters after termination
 * finds the closed queue empty and leaves.
 */
static void guest_enter(pool *p) {
  atomic_fetch_add_explicit(&p->guests, 1, memory_order_seq_cst);
}

static void guest_enter_locked(pool *p) {
  guest_enter(p);
}

static void guest_leave(pool *p) {
  if (atomic_fetch_sub_explicit(&p->guests, 1, memory_order_seq_cst) != 1 ||
      !(atomic_load_explicit(&p->state, memory_order_seq_cst) & ST_SHUT)) {
    return;
  }
  concur__mutex_lock(&p->lock, NULL);
  bool term = should_terminate_locked(p);
  concur__mutex_unlock(&p->lock);
  if (term) {
    finish_termination(p);
  }
}

static int wait_terminated(pool *p, concur__deadline deadline) {
  for (;;) {
    if (atomic_load_explicit(&p->term_word, memory_order_acquire) != 0) {
      return 0;
    }
    if (concur__park(&p->term_word, 0, deadline,
                     CONCUR__POOL_KEY_TERMINATION(&p->base)) ==
        CONCUR_ETIMEDOUT) {
      return atomic_load_explicit(&p->term_word, memory_order_acquire) != 0
                 ? 0
                 : CONCUR_ETIMEDOUT;
    }
  }
}

/* Joins and frees the worker threads that are gone. */
static void join_zombies(pool *p) {
  concur__mutex_lock(&p->lock, NULL);
  pool_worker *z = p->zombies;
  p->zombies = NULL;
  concur__mutex_unlock(&p->lock);
  while (z != NULL) {
    pool_worker *next = z->next;
    pthread_join(z->thread, NULL);
    concur__free(z->raw);
    z = next;
  }
}

/* ---- workers
 * ------------------------------------------------------------------- */

/*
 * Joins the gone workers while holding the lock (before a spawn, so that
 * retired workers do not pile up). A zombie has released the lock for good
 * and only returns from its function, so the join is short.
 */
static void join_zombies_locked(pool *p) {
  pool_worker *z = p->zombies;
  p->zombies = NULL;
  while (z != NULL) {
    pool_worker *next = z->next;
    pthread_join(z->thread, NULL);
    concur__free(z->raw);
    z = next;
  }
}

static void *worker_main(void *arg);

/*
 * Starts a worker, with a first task or none. Lock held (also during the
 * spawn, so the new worker's first look at the pool comes after this
 * submit's bookkeeping). 0, CONCUR_EAGAIN or CONCUR_ENOMEM.
 */
static int start_worker_locked(pool *p, const concur__pool_entry *first) {
  void *raw;
  pool_worker *w = concur__pool_alloc_aligned(sizeof *w, &raw);
  if (w == NULL) {
    return CONCUR_ENOMEM;
  }
  memset(w, 0, sizeof *w);
  w->raw = raw;
  w->pool = p;
  w->index = p->next_index;
  atomic_init(&w->wake, 0);
  atomic_init(&w->borrow, 0);
  atomic_init(&w->current, 0);
  atomic_init(&w->bnext, BATCH_IDLE);
  w->blen = 0;
  w->stolen = 0;
  atomic_init(&w->started, 0);
  atomic_init(&w->completed, 0);
  atomic_init(&w->failed, 0);
  snprintf(w->name, sizeof w->name, "%s%llu", p->prefix,
           (unsigned long long)w->index);
  if (first != NULL) {
    w->first = *first;
    w->has_first = true;
    if (first->future != NULL) {
      /* Accepted before the worker can see it: a cancel from now on is
       * the pool's to count. */
      node_of(first->future)->flags = first->flags | NODE_ACCEPTED;
    }
  }
  join_zombies_locked(p);
  int rc = concur__thread_spawn(&w->thread, p->opts.stack_size, true,
                                worker_main, w);
  if (rc != 0) {
    if (first != NULL && first->future != NULL) {
      node_of(first->future)->flags = 0;
    }
    concur__free(w->raw);
    return rc;
  }
  p->next_index++;
  /* seq_cst: a retiring worker's look at the queue pairs with it. */
  int alive = atomic_fetch_add_explicit(&p->alive, 1, memory_order_seq_cst) + 1;
  if ((uint64_t)alive > p->largest) {
    p->largest = (uint64_t)alive;
  }
  p->threads++;
  w->next = p->workers;
  w->prev = NULL;
  if (p->workers != NULL) {
    p->workers->prev = w;
  }
  p->workers = w;
  if (first != NULL) {
    atomic_fetch_add_explicit(&p->direct_submitted, 1, memory_order_relaxed);
  }
  return 0;
}

/* The worker's last step: it is gone from the pool's bookkeeping. */
static void worker_exit(pool *p, pool_worker *w) {
  if (w->idle) {
    w->idle = false;
    atomic_fetch_sub_explicit(&p->idle, 1, memory_order_seq_cst);
  }
  if (w->spinning) {
    w->spinning = false;
    atomic_fetch_sub_explicit(&p->spinning, 1, memory_order_seq_cst);
  }
  concur__mutex_lock(&p->lock, NULL);
  if (!w->retired) {
    atomic_fetch_sub_explicit(&p->alive, 1, memory_order_seq_cst);
  }
  p->threads--;
  if (w->prev != NULL) {
    w->prev->next = w->next;
  } else {
    p->workers = w->next;
  }
  if (w->next != NULL) {
    w->next->prev = w->prev;
  }
  p->retired_started += atomic_load_explicit(&w->started, memory_order_relaxed);
  p->retired_completed +=
      atomic_load_explicit(&w->completed, memory_order_relaxed);
  p->retired_failed += atomic_load_explicit(&w->failed, memory_order_relaxed);
  atomic_store_explicit(&w->started, 0, memory_order_relaxed);
  atomic_store_explicit(&w->completed, 0, memory_order_relaxed);
  atomic_store_explicit(&w->failed, 0, memory_order_relaxed);
  w->next = p->zombies;
  p->zombies = w;
  bool term = should_terminate_locked(p);
  concur__mutex_unlock(&p->lock);
  notify_room(p);
  if (term) {
    finish_termination(p);
  }
}

/* Takes w off the parked stack if it is still there. park_lock held. */
static bool unstack_locked(pool *p, pool_worker *w) {
  if (!w->on_stack) {
    return false;
  }
  if (w->park_prev != NULL) {
    w->park_prev->park_next = w->park_next;
  } else {
    p->park_top = w->park_next;
  }
  if (w->park_next != NULL) {
    w->park_next->park_prev = w->park_prev;
  }
  w->park_prev = NULL;
  w->park_next = NULL;
  w->on_stack = false;
  atomic_fetch_sub_explicit(&p->parked, 1, memory_order_seq_cst);
  return true;
}

/* A parked worker leaves the stack by itself: it is spinning again. */
static void unpark_self(pool *p, pool_worker *w) {
  concur__mutex_lock(&p->park_lock, NULL);
  if (unstack_locked(p, w)) {
    atomic_fetch_add_explicit(&p->spinning, 1, memory_order_seq_cst);
  }
  /* Else a waker took it off and counted it spinning already. */
  concur__mutex_unlock(&p->park_lock);
  w->spinning = true;
}

static uint32_t steal_for_self(pool *p, pool_worker *w);

/* What try_retire decided. */
typedef enum retire_result {
  RETIRE_DONE, /* it retired: the worker must exit */
  RETIRE_LOOK, /* it must look for work (it is spinning, off the stack) */
  RETIRE_STAY  /* not eligible: nothing changed */
} retire_result;

/*
 * An idle worker gives up its place. forced: max_workers was lowered below
 * the workers alive, so no timeout is needed (the worker is spinning);
 * otherwise its idle timeout ran out while it was parked.
 */
static retire_result try_retire(pool *p, pool_worker *w, bool forced) {
  concur__mutex_lock(&p->lock, NULL);
  int alive = atomic_load_explicit(&p->alive, memory_order_relaxed);
  int core = atomic_load_explicit(&p->core, memory_order_relaxed);
  int max = atomic_load_explicit(&p->max, memory_order_relaxed);
  bool eligible =
      forced ? alive > max
             : alive > core || (p->opts.allow_core_timeout && alive > 0);
  if (atomic_load_explicit(&p->state, memory_order_relaxed) != 0) {
    eligible = false; /* shutting down: it leaves once the queue is empty */
  }
  if (!eligible) {
    concur__mutex_unlock(&p->lock);
    return RETIRE_STAY;
  }
  if (!forced) {
    concur__mutex_lock(&p->park_lock, NULL);
    bool was_parked = unstack_locked(p, w);
    concur__mutex_unlock(&p->park_lock);
    if (!was_parked) {
      /* A waker took it off the stack and counted it spinning: it must
       * look for the work it was woken for. */
      concur__mutex_unlock(&p->lock);
      w->spinning = true;
      return RETIRE_LOOK;
    }
  }
  /* Give back its idle credit, unless a submit claimed it (then a handed
   * entry waits for an idle worker: take it instead). */
  int32_t s = atomic_load_explicit(&p->idle, memory_order_relaxed);
  bool withdrawn = false;
  while (s > 0 && !withdrawn) {
    withdrawn = atomic_compare_exchange_weak_explicit(
        &p->idle, &s, s - 1, memory_order_seq_cst, memory_order_relaxed);
  }
  if (!withdrawn) {
    concur__mutex_unlock(&p->lock);
    if (!w->spinning) {
      w->spinning = true;
      atomic_fetch_add_explicit(&p->spinning, 1, memory_order_seq_cst);
    }
    return RETIRE_LOOK;
  }
  w->idle = false;
  if (w->spinning) {
    w->spinning = false;
    atomic_fetch_sub_explicit(&p->spinning, 1, memory_order_seq_cst);
  }
  /* seq_cst, then look at the queue: pairs with a fast-path submit that
   * pushed, then read alive. One of the two sees the other. */
  atomic_fetch_sub_explicit(&p->alive, 1, memory_order_seq_cst);
  w->retired = true;
  concur__mutex_unlock(&p->lock);
  if (concur__pool_queue_nonempty(&p->q)) {
    /* A submit saw this worker alive and queued: stay, busy. */
    concur__mutex_lock(&p->lock, NULL);
    atomic_fetch_add_explicit(&p->alive, 1, memory_order_seq_cst);
    w->retired = false;
    concur__mutex_unlock(&p->lock);
    w->exact = true;
    return RETIRE_LOOK;
  }
  notify_room(p);
  return RETIRE_DONE;
}

/*
 * The idle worker waits for work: spins, then parks. Returns true if the
 * worker retired and must exit, false to look at the queue again.
 */
static bool idle_wait(pool *p, pool_worker *w) {
  /* At most max_spinners idle workers spin; the others park at once, so
   * that on a small machine spinners do not take the cores that the
   * submitter and the busy workers need. */
  bool stream = w->run >= STREAM_RUN;
  w->run = 0;
  if (atomic_load_explicit(&p->spinning, memory_order_relaxed) <=
      p->max_spinners) {
    /*
     * Every look at a cell that submitters have not written yet costs the
     * next submitter a cache-line transfer. After a long run of tasks
     * (submitters streaming), look a few entries ahead with wider gaps:
     * the worker then takes the next run from cells the submitters are
     * done with. Otherwise, or once a stream seems over, look at the
     * oldest entry with a gap that grows to about 300 ns, for latency.
     */
    int gap = stream ? STREAM_GAP : 1;
    for (int spent = 0, n = 0; spent < IDLE_SPIN; spent += gap, n++) {
      if (stream && n == STREAM_LOOKS) {
        stream = false;
        gap = 1;
      }
      if (concur__pool_queue_peek(&p->q, stream ? STREAM_AHEAD : 0) ||
          atomic_load_explicit(&p->state, memory_order_relaxed) != 0) {
        return false;
      }
      if (gap >= (stream ? STREAM_GAP_MAX : IDLE_GAP_MAX)) {
        sched_yield();
      } else {
        for (int i = 0; i < gap; i++) {
          concur__cpu_relax();
        }
      }
      if (gap < (stream ? STREAM_GAP_MAX : IDLE_GAP_MAX) &&
          (stream || n >= IDLE_FINE_LOOKS)) {
        gap *= 2;
      }
    }
  }
  if (atomic_load_explicit(&p->alive, memory_order_relaxed) >
      atomic_load_explicit(&p->max, memory_order_relaxed)) {
    retire_result r = try_retire(p, w, true);
    if (r != RETIRE_STAY) {
      return r == RETIRE_DONE;
    }
  }
  concur__mutex_lock(&p->park_lock, NULL);
  w->park_prev = NULL;
  w->park_next = p->park_top;
  if (p->park_top != NULL) {
    p->park_top->park_prev = w;
  }
  p->park_top = w;
  w->on_stack = true;
  atomic_store_explicit(&w->wake, 0, memory_order_relaxed);
  /* seq_cst: announce, then look (the Dekker pair with pushes). */
  atomic_fetch_add_explicit(&p->parked, 1, memory_order_seq_cst);
  if (w->spinning) {
    w->spinning = false;
    atomic_fetch_sub_explicit(&p->spinning, 1, memory_order_seq_cst);
  }
  concur__mutex_unlock(&p->park_lock);
  if (concur__pool_queue_nonempty(&p->q) ||
      atomic_load_explicit(&p->state, memory_order_seq_cst) != 0 ||
      atomic_load_explicit(&p->alive, memory_order_relaxed) >
          atomic_load_explicit(&p->max, memory_order_relaxed)) {
    unpark_self(p, w);
    w->exact = true; /* what it saw may still be being written */
    return false;
  }
  uint32_t stolen = steal_for_self(p, w);
  if (stolen != 0) {
    unpark_self(p, w);
    w->stolen = stolen;
    return false;
  }
  int alive = atomic_load_explicit(&p->alive, memory_order_relaxed);
  bool may_retire =
      p->idle_timeout_ns != CONCUR_FOREVER &&
      (alive > atomic_load_explicit(&p->core, memory_order_relaxed) ||
       p->opts.allow_core_timeout);
  concur__deadline deadline = CONCUR__NO_DEADLINE;
  if (may_retire) {
    (void)concur__deadline_from_timeout(p->idle_timeout_ns, &deadline);
  }
  for (;;) {
    int rc =
        concur__park(&w->wake, 0, deadline, CONCUR__POOL_KEY_WORKER(&p->base));
    if (atomic_load_explicit(&w->wake, memory_order_acquire) != 0) {
      w->spinning = true; /* the waker counted it */
      return false;
    }
    if (rc == CONCUR_ETIMEDOUT) {
      retire_result r = try_retire(p, w, false);
      if (r != RETIRE_STAY) {
        return r == RETIRE_DONE;
      }
      deadline = CONCUR__NO_DEADLINE; /* not eligible now: wait for a wake */
    }
  }
}

static void break_pool(pool *p);

/*
 * Leaves BATCH_TAKING (the worker) or BATCH_STOLEN (a taker) for `to`,
 * waking whoever waits for that: a taker (BATCH_WAITED) or the worker
 * (BATCH_STOLEN_WAITED).
 */
static void set_bnext(pool_worker *w, uint32_t to) {
  /* release: publishes the batch (the worker, to = 0), or the end of a
   * taker's copying (the worker may go on, or write a new batch once
   * idle). */
  uint32_t old = atomic_exchange_explicit(&w->bnext, to, memory_order_acq_rel);
  if (old == BATCH_WAITED || old == BATCH_STOLEN_WAITED) {
    concur__unpark(&w->bnext, INT32_MAX);
  }
}

/*
 * A worker's fast pop: the oldest entry, if it is published, and behind it
 * a batch of fire-and-forget entries when every worker is busy (the
 * number in *extras). False when the oldest is not published yet.
 */
static bool take_next(pool *p, pool_worker *w, concur__pool_entry *e,
                      uint32_t *extras) {
  concur__pool_entry run[BATCH_MAX + 1];
  int32_t self = w->spinning ? 1 : 0;
  /* A hint first (relaxed), to skip the marking when a batch is unlikely
   * to be allowed; the decision is made after marking, below. */
  bool may_batch =
      atomic_load_explicit(&p->parked, memory_order_relaxed) == 0 &&
      atomic_load_explicit(&p->spinning, memory_order_relaxed) <= self;
  *extras = 0;
  for (;;) {
    uint64_t first;
    int m = concur__pool_queue_read_run(
        &p->q, run, may_batch ? (int)BATCH_MAX + 1 : 1, &first);
    if (m == 0) {
      return false;
    }
    bool batch = false;
    if (m > 1) {
      uint32_t idle = BATCH_IDLE;
      /* seq_cst: marked before the claim below (see "Batches"). */
      batch = atomic_compare_exchange_strong_explicit(
          &w->bnext, &idle, BATCH_TAKING, memory_order_seq_cst,
          memory_order_relaxed);
      /* seq_cst: marked, then look for idle workers; an idle worker
       * announces itself, then looks at the batches (steal_for_self). One
       * of the two sees the other: no batch is left behind a worker that
       * went to sleep. */
      if (batch &&
          (atomic_load_explicit(&p->parked, memory_order_seq_cst) != 0 ||
           atomic_load_explicit(&p->spinning, memory_order_seq_cst) > self)) {
        set_bnext(w, BATCH_IDLE);
        batch = false;
      }
      if (!batch) {
        m = 1;
      }
    }
    if (!concur__pool_queue_take(&p->q, first, m)) {
      if (batch) {
        set_bnext(w, BATCH_IDLE);
      }
      continue;
    }
    *e = run[0];
    if (batch) {
      for (int i = 1; i < m; i++) {
        w->batch[i - 1] = run[i];
      }
      w->blen = (uint32_t)(m - 1);
      *extras = (uint32_t)(m - 1);
      set_bnext(w, 0);
    }
    return true;
  }
}

/*
 * Runs the batch taken with the last entry, claiming each entry with a
 * compare-and-swap of bnext: a helper may take single entries meanwhile, a
 * thief the whole rest (bnext becomes BATCH_IDLE). While a taker copies
 * (BATCH_STOLEN) the worker parks until it is done.
 */
static void run_batch(pool *p, pool_worker *w, uint32_t n) {
  for (;;) {
    uint32_t cur = atomic_load_explicit(&w->bnext, memory_order_acquire);
    if (cur == BATCH_STOLEN || cur == BATCH_STOLEN_WAITED) {
      if (cur == BATCH_STOLEN &&
          !atomic_compare_exchange_strong_explicit(
              &w->bnext, &cur, BATCH_STOLEN_WAITED, memory_order_acquire,
              memory_order_relaxed)) {
        continue;
      }
      /* The taker holds the pool's lock and copies entries; set_bnext
       * wakes this worker. */
      (void)concur__park(&w->bnext, BATCH_STOLEN_WAITED, CONCUR__NO_DEADLINE,
                         NULL);
      continue;
    }
    if (cur >= n) {
      if (cur == n) {
        (void)atomic_compare_exchange_strong_explicit(
            &w->bnext, &cur, BATCH_IDLE, memory_order_release,
            memory_order_relaxed);
      }
      return; /* all claimed, or the rest taken back */
    }
    /* acq_rel: claims entry cur against a taker's swap. */
    if (atomic_compare_exchange_strong_explicit(&w->bnext, &cur, cur + 1,
                                                memory_order_acq_rel,
                                                memory_order_relaxed)) {
      w->run++;
      (void)process_entry(p, &w->batch[cur]);
    }
  }
}

/* Waits, under lock, while w is between marking TAKING and publishing:
 * true if it waited (the caller looks again). */
static bool wait_taking_locked(pool_worker *w, uint32_t v) {
  if (v != BATCH_TAKING && v != BATCH_WAITED) {
    return false;
  }
  if (v == BATCH_TAKING && !atomic_compare_exchange_strong_explicit(
                               &w->bnext, &v, BATCH_WAITED,
                               memory_order_acquire, memory_order_relaxed)) {
    return true;
  }
  /* The worker is between its claim and its publish: no user code. */
  (void)concur__park(&w->bnext, BATCH_WAITED, CONCUR__NO_DEADLINE, NULL);
  return true;
}

/*
 * Under lock (takers take turns, so the only worker a taker can find
 * TAKING is one inside take_next, which holds no lock and runs no user
 * code until it publishes): takes up to max of w's unstarted batch entries
 * into out, from the oldest. Returns how many. blen and the entries are
 * read after the swap to BATCH_STOLEN, so if w finished a batch and took
 * another with the same next index meanwhile, the taker takes from the new
 * one: none of it started either.
 */
static uint32_t take_from_batch_locked(pool_worker *w, concur__pool_entry *out,
                                       uint32_t max) {
  for (;;) {
    /* seq_cst: the second half of steal_for_self's pair with take_next. */
    uint32_t v = atomic_load_explicit(&w->bnext, memory_order_seq_cst);
    if (wait_taking_locked(w, v)) {
      continue;
    }
    if (v > BATCH_MAX) {
      return 0; /* idle (or stolen, which only this thread does) */
    }
    /* acquire: blen and the entries, published with the index. */
    if (!atomic_compare_exchange_strong_explicit(&w->bnext, &v, BATCH_STOLEN,
                                                 memory_order_acq_rel,
                                                 memory_order_relaxed)) {
      continue;
    }
    uint32_t left = w->blen > v ? w->blen - v : 0;
    uint32_t n = left < max ? left : max;
    for (uint32_t i = 0; i < n; i++) {
      out[i] = w->batch[v + i];
    }
    set_bnext(w, n < left ? v + n : BATCH_IDLE);
    return n;
  }
}

/* Under lock: takes from the first worker but skip with a batch. */
static uint32_t take_from_batches_locked(pool *p, pool_worker *skip,
                                         concur__pool_entry *out,
                                         uint32_t max) {
  uint32_t n = 0;
  for (pool_worker *w = p->workers; w != NULL && n == 0; w = w->next) {
    if (w != skip) {
      n = take_from_batch_locked(w, out, max);
    }
  }
  return n;
}

/*
 * Takes up to max unstarted entries out of one worker's batch (any):
 * shutdown_now and shutdown(CANCEL_FUTURES) take whole batches back, a
 * helper (a thread waiting in an algorithm, running queued work) that
 * found the queue empty takes one entry, so that a batch never waits
 * behind a worker whose task waits for it. Returns how many, in out.
 */
static uint32_t take_back(pool *p, concur__pool_entry *out, uint32_t max) {
  concur__mutex_lock(&p->lock, NULL);
  uint32_t n = take_from_batches_locked(p, NULL, out, max);
  concur__mutex_unlock(&p->lock);
  return n;
}

/*
 * An idle worker that has announced itself parked takes another worker's
 * batch into its own, so that entries taken behind a long task still run
 * while workers are idle. Returns how many it took.
 */
static uint32_t steal_for_self(pool *p, pool_worker *w) {
  concur__pool_entry got[BATCH_MAX];
  uint32_t n = 0;
  concur__mutex_lock(&p->lock, NULL);
  uint32_t idle = BATCH_IDLE;
  if (atomic_compare_exchange_strong_explicit(&w->bnext, &idle, BATCH_TAKING,
                                              memory_order_seq_cst,
                                              memory_order_relaxed)) {
    n = take_from_batches_locked(p, w, got, BATCH_MAX);
    for (uint32_t i = 0; i < n; i++) {
      w->batch[i] = got[i];
    }
    w->blen = n;
    set_bnext(w, n != 0 ? 0 : BATCH_IDLE);
  }
  concur__mutex_unlock(&p->lock);
  return n;
}

static void worker_loop(pool *p, pool_worker *w) {
  concur__pool_entry e;
  for (;;) {
    if (atomic_load_explicit(&p->state, memory_order_acquire) & ST_BROKEN) {
      return;
    }
    /* The fast pop, unless a look before parking saw an entry still being
     * written: then the pop that waits for it. */
    if (w->stolen != 0) {
      uint32_t n = w->stolen;
      w->stolen = 0;
      w->run = 0;
      settle_pop(p, w, 0);
      run_batch(p, w, n);
      continue;
    }
    uint32_t extras = 0;
    bool got = w->exact ? concur__pool_queue_pop(&p->q, &e)
                        : take_next(p, w, &e, &extras);
    w->exact = false;
    if (got) {
      w->run++;
      bool was_spinning = w->spinning;
      settle_pop(p, w, e.flags);
      if (was_spinning && concur__pool_queue_peek(&p->q, 0)) {
        /* More work than this worker: bring one more up. */
        wake_after_push(p, UINT64_MAX);
      }
      (void)process_entry(p, &e);
      if (extras != 0) {
        run_batch(p, w, extras);
      }
      continue;
    }
    if (!w->idle) {
      enter_idle(p, w);
    }
    if (atomic_load_explicit(&p->state, memory_order_seq_cst) & ST_SHUT) {
      /* The queue was closed before ST_SHUT was set, so empty now is
       * empty for good. */
      if (!concur__pool_queue_nonempty(&p->q)) {
        return;
      }
      w->exact = true;
      continue;
    }
    if (idle_wait(p, w)) {
      return;
    }
  }
}

static void *worker_main(void *arg) {
  pool_worker *w = arg;
  pool *p = w->pool;
  tls_worker = w;
  concur__thread_set_os_name(pthread_self(), w->name);
  /* The spawner holds the lock until its bookkeeping is done. */
  concur__mutex_lock(&p->lock, NULL);
  concur__mutex_unlock(&p->lock);
  bool ok = true;
  if (p->opts.initializer != NULL &&
      p->opts.initializer(p->opts.initializer_arg) != 0) {
    ok = false;
  }
  if (!ok) {
    break_pool(p);
    if (w->has_first) {
      fail_entry(p, &w->first);
    }
  } else {
    if (w->has_first) {
      (void)process_entry(p, &w->first);
    }
    worker_loop(p, w);
  }
  worker_exit(p, w);
  tls_worker = NULL;
  return NULL;
}

/* ---- draining
 * ------------------------------------------------------------------- */

/* Pops an entry as a thread that is not an idle worker. */
static bool pop_other(pool *p, concur__pool_entry *e) {
  if (!concur__pool_queue_pop(&p->q, e)) {
    return false;
  }
  if (e->flags & CONCUR__ENTRY_HANDED) {
    refund_idle(p);
  }
  return true;
}

static void break_pool(pool *p) {
  concur__mutex_lock(&p->lock, NULL);
  uint32_t st = atomic_load_explicit(&p->state, memory_order_relaxed);
  bool first = !(st & ST_BROKEN);
  if (first) {
    concur__pool_queue_close(&p->q, true);
    atomic_fetch_or_explicit(&p->state, ST_BROKEN, memory_order_seq_cst);
  }
  concur__mutex_unlock(&p->lock);
  if (!first) {
    return;
  }
  wake_all(p);
  atomic_fetch_add_explicit(&p->room_gen, 1, memory_order_seq_cst);
  concur__unpark(&p->room_gen, INT32_MAX);
  concur__pool_entry e;
  while (pop_other(p, &e)) {
    fail_entry(p, &e);
  }
}

/* ---- submit
 * ----------------------------------------------------------------------- */

static int state_error(uint32_t st) {
  return (st & ST_SHUT) ? CONCUR_ESHUTDOWN : CONCUR_EBROKEN;
}

/* Makes the future of a submit that asked for one. */
static int make_future(pool *p, const concur__task_record *rec,
                       concur_future **out) {
  pool_node *n = arena_take(p->arena);
  if (n == NULL) {
    return CONCUR_ENOMEM;
  }
  n->pool = p;
  n->u.rec = *rec;
  n->flags = 0;
  /* A recycled node: every earlier use of sync happened before it was
   * given back to the arena. */
  atomic_store_explicit(&n->sync, 0, memory_order_relaxed);
  concur_future_allocator a = CONCUR_FUTURE_ALLOCATOR_INIT;
  a.alloc = node_mem_alloc;
  a.free = node_mem_free;
  a.arg = n;
  concur_future *f;
  if (concur_future_new_full(&f, node_task, n, node_cleanup, &a) != 0) {
    arena_give(n);
    return CONCUR_ENOMEM;
  }
  /* One reference for the caller, one for the queue entry. */
  concur__future_hooks h = {node_help, n, node_cancelled, n};
  concur__future_prepare(f, &h, 2);
  *out = f;
  return 0;
}

/* Takes back a future whose submit failed: no cleanup, no callback. */
static void unmake_future(concur_future *f) {
  if (concur_future_detach_task(f, NULL, NULL) != 0) {
    concur__panic("thread pool: an unqueued future was not pending");
  }
  concur_future_unref(f);
  concur_future_unref(f);
}

/* Pushes an admitted entry, whose record is *rec (e->rec on the slow path,
 * the submitter's own on the fast one: no copy). On failure the caller
 * undoes the admission. */
static int push_entry(pool *p, concur__pool_entry *e,
                      const concur__task_record *rec) {
  if (e->future != NULL) {
    pool_node *n = node_of(e->future);
    n->flags = e->flags | NODE_ACCEPTED | NODE_QUEUED;
  }
  uint64_t ticket;
  int rc = concur__pool_queue_push(
      &p->q, e->future, e->future != NULL ? NULL : rec, e->flags, &ticket);
  if (rc != 0) {
    if (e->future != NULL) {
      node_of(e->future)->flags = 0;
    }
    return rc;
  }
  wake_after_push(p, ticket);
  return 0;
}

/* Accepts e and runs it in the caller (CALLER_RUNS). Lock held on entry,
 * released on return. */
static void caller_runs_locked(pool *p, concur__pool_entry *e) {
  guest_enter_locked(p);
  atomic_fetch_add_explicit(&p->direct_submitted, 1, memory_order_relaxed);
  concur__mutex_unlock(&p->lock);
  if (e->future != NULL) {
    node_of(e->future)->flags = e->flags | NODE_ACCEPTED;
  }
  (void)process_entry(p, e);
  guest_leave(p);
}

/* Accepts e and drops it (DISCARD). Lock held on entry, released. */
static void discard_locked(pool *p, concur__pool_entry *e) {
  atomic_fetch_add_explicit(&p->direct_submitted, 1, memory_order_relaxed);
  guest_enter_locked(p);
  concur__mutex_unlock(&p->lock);
  if (e->future != NULL) {
    node_of(e->future)->flags = e->flags | NODE_ACCEPTED;
  }
  (void)cancel_entry(p, e);
  guest_leave(p);
}

/* DISCARD_OLDEST: cancels the oldest queued entry. False if none. */
static bool evict_oldest(pool *p) {
  guest_enter(p);
  concur__pool_entry old;
  bool found = pop_other(p, &old);
  if (found) {
    (void)cancel_entry(p, &old);
  }
  guest_leave(p);
  return found;
}

/*
 * The slow path: rules 1-5 under the lock. On 0 the entry was accepted
 * (queued, given to a new worker, run or dropped by a policy).
 */
static int admit_slow(pool *p, concur__pool_entry *e) {
  concur__deadline deadline = CONCUR__NO_DEADLINE;
  bool blocking = false;
  bool timed_out = false;
  int rc;
  for (;;) {
    /* Read before looking: any change that could admit a blocked submitter
     * after this look steps room_gen (notify_room), so the park below
     * returns at once. */
    uint32_t gen =
        blocking ? atomic_load_explicit(&p->room_gen, memory_order_seq_cst) : 0;
    concur__mutex_lock(&p->lock, NULL);
    uint32_t st = atomic_load_explicit(&p->state, memory_order_relaxed);
    if (st != 0) {
      rc = state_error(st);
      break;
    }
    /* Rule 1: an idle worker. */
    if (claim_idle(p)) {
      concur__mutex_unlock(&p->lock);
      e->flags = CONCUR__ENTRY_HANDED;
      rc = push_entry(p, e, &e->rec);
      if (rc != 0) {
        refund_idle(p);
      }
      goto out_unlocked;
    }
    int alive = atomic_load_explicit(&p->alive, memory_order_relaxed);
    int core = atomic_load_explicit(&p->core, memory_order_relaxed);
    int max = atomic_load_explicit(&p->max, memory_order_relaxed);
    int spawn_rc = 0;
    /* Rule 2: below core. */
    if (alive < core) {
      e->flags = 0;
      spawn_rc = start_worker_locked(p, e);
      if (spawn_rc == 0) {
        rc = 0;
        break;
      }
    }
    /* Rule 3: room in the queue. */
    if (!p->bounded || reserve_room(p)) {
      if (alive == 0) {
        /* Nobody would run it: start a worker for it instead. */
        if (p->bounded) {
          release_room(p);
        }
        if (spawn_rc == 0) {
          e->flags = 0;
          spawn_rc = start_worker_locked(p, e);
        }
        rc = spawn_rc;
        break;
      }
      concur__mutex_unlock(&p->lock);
      e->flags = p->bounded ? CONCUR__ENTRY_COUNTED : 0;
      rc = push_entry(p, e, &e->rec);
      if (rc != 0 && p->bounded) {
        release_room(p);
      }
      goto out_unlocked;
    }
    /* Rule 4: below max. */
    if (alive < max && spawn_rc == 0) {
      e->flags = 0;
      spawn_rc = start_worker_locked(p, e);
      if (spawn_rc == 0) {
        rc = 0;
        break;
      }
    }
    if (alive == 0) {
      rc = spawn_rc != 0 ? spawn_rc : CONCUR_EAGAIN;
      break;
    }
    /* Rule 5: the policy. */
    e->flags = 0;
    if (p->opts.rejection == CONCUR_REJECT_CALLER_RUNS) {
      caller_runs_locked(p, e);
      rc = 0;
      goto out_unlocked;
    }
    if (p->opts.rejection == CONCUR_REJECT_DISCARD) {
      discard_locked(p, e);
      rc = 0;
      goto out_unlocked;
    }
    if (p->opts.rejection == CONCUR_REJECT_DISCARD_OLDEST) {
      concur__mutex_unlock(&p->lock);
      if (evict_oldest(p)) {
        continue; /* room was made (or someone took it): try again */
      }
      concur__mutex_lock(&p->lock, NULL);
      discard_locked(p, e); /* nothing queued to drop */
      rc = 0;
      goto out_unlocked;
    }
    if (p->opts.rejection == CONCUR_REJECT_BLOCK) {
      if (timed_out) {
        rc = CONCUR_ETIMEDOUT;
        break;
      }
      if (!blocking) {
        blocking = true;
        (void)concur__deadline_from_timeout(p->opts.block_timeout_ns,
                                            &deadline);
        guest_enter_locked(p);
        /* seq_cst: announce, then look again (next round): a change made
         * after that look sees the announcement and steps room_gen. */
        atomic_fetch_add_explicit(&p->blocked, 1, memory_order_seq_cst);
        concur__mutex_unlock(&p->lock);
        continue;
      }
      concur__mutex_unlock(&p->lock);
      if (concur__park(&p->room_gen, gen, deadline,
                       CONCUR__POOL_KEY_BLOCKED(&p->base)) ==
          CONCUR_ETIMEDOUT) {
        timed_out = true; /* one last look, then give up */
      }
      continue;
    }
    rc = CONCUR_EREJECTED;
    break;
  }
  concur__mutex_unlock(&p->lock);
out_unlocked:
  if (blocking) {
    atomic_fetch_sub_explicit(&p->blocked, 1, memory_order_seq_cst);
    guest_leave(p);
  }
  return rc;
}

static int pool_submit(concur_executor *ex, const concur__task_record *rec,
                       concur_future **out) {
  pool *p = pool_of(ex);
  uint32_t st = atomic_load_explicit(&p->state, memory_order_acquire);
  int rc;
  if (st != 0) {
    rc = state_error(st);
    goto rejected;
  }
  concur__pool_entry e;
  e.flags = 0;
  e.future = NULL;
  if (out != NULL) {
    rc = make_future(p, rec, &e.future);
    if (rc != 0) {
      goto rejected;
    }
  }
  /* The fast path: enough workers alive and the queue (or an idle worker)
   * takes the task without the lock. */
  int alive = atomic_load_explicit(&p->alive, memory_order_relaxed);
  if (alive > 0 &&
      alive >= atomic_load_explicit(&p->core, memory_order_relaxed)) {
    if (!p->bounded) {
      rc = push_entry(p, &e, rec);
      /* seq_cst (after the push's seq_cst ticket): a worker retiring at
       * this moment either sees the entry or is seen gone here. */
      if (rc == 0 &&
          atomic_load_explicit(&p->alive, memory_order_seq_cst) == 0) {
        concur__mutex_lock(&p->lock, NULL);
        if (atomic_load_explicit(&p->alive, memory_order_relaxed) == 0 &&
            atomic_load_explicit(&p->state, memory_order_relaxed) == 0) {
          if (start_worker_locked(p, NULL) != 0) {
            /* Accepted, and nobody can run it: fail what is queued
             * rather than leave it waiting for a worker that may never
             * come (a waiter on its future would still run it through
             * the help hook). */
            concur__mutex_unlock(&p->lock);
            guest_enter(p);
            concur__pool_entry x;
            while (atomic_load_explicit(&p->alive, memory_order_seq_cst) == 0 &&
                   pop_other(p, &x)) {
              (void)process_entry(p, &x);
            }
            guest_leave(p);
            goto accepted;
          }
        }
        concur__mutex_unlock(&p->lock);
      }
      if (rc == 0) {
        goto accepted;
      }
      goto undo;
    }
    if (claim_idle(p)) {
      e.flags = CONCUR__ENTRY_HANDED;
      rc = push_entry(p, &e, rec);
      if (rc == 0) {
        goto accepted;
      }
      refund_idle(p);
      goto undo;
    }
    if (reserve_room(p)) {
      e.flags = CONCUR__ENTRY_COUNTED;
      rc = push_entry(p, &e, rec);
      if (rc == 0) {
        goto accepted;
      }
      release_room(p);
      goto undo;
    }
  }
  /* The slow path works on a copy of the record in the entry. */
  if (e.future == NULL) {
    e.rec = *rec;
  } else {
    e.rec = (concur__task_record){NULL, NULL, NULL, NULL, NULL};
  }
  rc = admit_slow(p, &e);
  if (rc == 0) {
    goto accepted;
  }
undo:
  if (e.future != NULL) {
    unmake_future(e.future);
  }
rejected:
  atomic_fetch_add_explicit(&p->rejected, 1, memory_order_relaxed);
  return rc;
accepted:
  if (out != NULL) {
    *out = e.future;
  }
  return 0;
}

/* ---- the other operations
 * ------------------------------------------------------ */

static int pool_parallelism(concur_executor *ex) {
  return atomic_load_explicit(&pool_of(ex)->max, memory_order_relaxed);
}

static int pool_help(concur_executor *ex) {
  pool *p = pool_of(ex);
  guest_enter(p);
  int ran = 0;
  concur__pool_entry e;
  while (ran == 0 && pop_other(p, &e)) {
    ran = process_entry(p, &e) ? 1 : 0;
  }
  if (ran == 0 && take_back(p, &e, 1) == 1) {
    ran = process_entry(p, &e) ? 1 : 0;
  }
  guest_leave(p);
  return ran;
}

/* Under lock: starts the shutdown if it has not started. */
static bool begin_shutdown_locked(pool *p, uint32_t extra) {
  uint32_t st = atomic_load_explicit(&p->state, memory_order_relaxed);
  bool first = !(st & ST_SHUT);
  if (first) {
    /* Closed first: a worker that sees ST_SHUT knows no push can come. */
    concur__pool_queue_close(&p->q, false);
  }
  atomic_fetch_or_explicit(&p->state, ST_SHUT | extra, memory_order_seq_cst);
  return first;
}

static void after_begin_shutdown(pool *p) {
  wake_all(p);
  atomic_fetch_add_explicit(&p->room_gen, 1, memory_order_seq_cst);
  concur__unpark(&p->room_gen, INT32_MAX);
}

static int pool_shutdown(concur_executor *ex, unsigned flags) {
  pool *p = pool_of(ex);
  concur__mutex_lock(&p->lock, NULL);
  bool first = begin_shutdown_locked(p, 0);
  guest_enter_locked(p);
  concur__mutex_unlock(&p->lock);
  if (first) {
    after_begin_shutdown(p);
  }
  if (flags & CONCUR_SHUTDOWN_CANCEL_FUTURES) {
    /* Batches not started, the queue, then batches taken meanwhile. */
    concur__pool_entry stolen[BATCH_MAX];
    for (int pass = 0; pass < 2; pass++) {
      for (uint32_t n; (n = take_back(p, stolen, BATCH_MAX)) != 0;) {
        for (uint32_t i = 0; i < n; i++) {
          (void)cancel_entry(p, &stolen[i]);
        }
      }
      concur__pool_entry e;
      while (pass == 0 && pop_other(p, &e)) {
        (void)cancel_entry(p, &e);
      }
    }
  }
  guest_leave(p);
  if (flags & CONCUR_SHUTDOWN_WAIT) {
    if (my_worker(p) != NULL) {
      return CONCUR_EDEADLK;
    }
    (void)wait_terminated(p, CONCUR__NO_DEADLINE);
    join_zombies(p);
  }
  return 0;
}

/* shutdown_now's hand-back of a never-started fire-and-forget entry. */
static void hand_back(pool *p, concur__pool_entry *e, concur_unrun_fn unrun,
                      void *ctx) {
  count_cancel(p, e->flags);
  if (unrun != NULL) {
    unrun(ctx, e->rec.fn, e->rec.arg);
  } else if (e->rec.cleanup != NULL) {
    e->rec.cleanup(e->rec.arg, NULL);
  }
  call_on_done(&e->rec, CONCUR__OUTCOME_CANCELLED, CONCUR_ECANCELED);
}

/* Hands back every batch entry no worker has started; how many. */
static int hand_back_batches(pool *p, concur_unrun_fn unrun, void *ctx) {
  int count = 0;
  concur__pool_entry stolen[BATCH_MAX];
  for (uint32_t n; (n = take_back(p, stolen, BATCH_MAX)) != 0;) {
    for (uint32_t i = 0; i < n; i++) {
      hand_back(p, &stolen[i], unrun, ctx);
      count++;
    }
  }
  return count;
}

static int pool_shutdown_now(concur_executor *ex, concur_unrun_fn unrun,
                             void *ctx) {
  pool *p = pool_of(ex);
  concur__mutex_lock(&p->lock, NULL);
  bool first = begin_shutdown_locked(p, ST_NOW);
  guest_enter_locked(p);
  concur__mutex_unlock(&p->lock);
  if (first) {
    after_begin_shutdown(p);
  }
  /* The batches workers took and have not started first (they are older
   * than what is queued), then the queue, then the batches taken while it
   * was drained (after which no batch can be taken). */
  int count = hand_back_batches(p, unrun, ctx);
  concur__pool_entry e;
  while (pop_other(p, &e)) {
    if (e.future == NULL) {
      hand_back(p, &e, unrun, ctx);
      count++;
      continue;
    }
    pool_node *n = node_of(e.future);
    if (unrun != NULL) {
      bool taken = concur_future_detach_task(e.future, NULL, NULL) == 0;
      if (taken || concur_future_cancelled(e.future)) {
        wait_side(n);
      }
      if (taken) {
        unrun(ctx, n->u.rec.fn, n->u.rec.arg);
        count++;
      }
      concur_future_unref(e.future);
    } else if (cancel_entry(p, &e)) {
      count++;
    }
  }
  count += hand_back_batches(p, unrun, ctx);
  /* Cooperative cancel requests for the futures running on workers. The
   * future is RUNNING while it is a worker's `current`, so the request only
   * sets a flag: nothing runs under the lock. */
  concur__mutex_lock(&p->lock, NULL);
  for (pool_worker *w = p->workers; w != NULL; w = w->next) {
    uintptr_t cur = atomic_load_explicit(&w->current, memory_order_acquire);
    if (cur == 0 || (cur & BORROWED) ||
        !atomic_compare_exchange_strong_explicit(
            &w->current, &cur, cur | BORROWED, memory_order_acq_rel,
            memory_order_relaxed)) {
      continue;
    }
    (void)concur_future_request_cancel((concur_future *)cur);
    uintptr_t expect = cur | BORROWED;
    if (!atomic_compare_exchange_strong_explicit(&w->current, &expect, cur,
                                                 memory_order_acq_rel,
                                                 memory_order_relaxed)) {
      /* The task ended meanwhile and its worker waits for this. */
      atomic_store_explicit(&w->borrow, 1, memory_order_release);
      concur__unpark(&w->borrow, 1);
    }
  }
  concur__mutex_unlock(&p->lock);
  guest_leave(p);
  return count;
}

static int pool_await_termination(concur_executor *ex, int64_t timeout_ns) {
  pool *p = pool_of(ex);
  concur__deadline deadline;
  if (concur__deadline_from_timeout(timeout_ns, &deadline) != 0) {
    return CONCUR_EINVAL;
  }
  if (!(atomic_load_explicit(&p->state, memory_order_acquire) & ST_SHUT)) {
    return CONCUR_ESTATE;
  }
  int rc = wait_terminated(p, deadline);
  if (rc == 0 && my_worker(p) == NULL) {
    join_zombies(p);
  }
  return rc;
}

static bool pool_is_shutdown(concur_executor *ex) {
  return (atomic_load_explicit(&pool_of(ex)->state, memory_order_acquire) &
          ST_SHUT) != 0;
}

static bool pool_is_terminated(concur_executor *ex) {
  return atomic_load_explicit(&pool_of(ex)->term_word, memory_order_acquire) !=
         0;
}

static void pool_stats(concur_executor *ex, concur_executor_stats *out) {
  pool *p = pool_of(ex);
  concur__mutex_lock(&p->lock, NULL);
  /* Outcomes first, then starts, cancellations and submissions: each
   * task's earlier event is read later, so the differences are >= 0. */
  uint64_t completed =
      p->retired_completed +
      atomic_load_explicit(&p->inline_completed, memory_order_acquire);
  uint64_t failed =
      p->retired_failed +
      atomic_load_explicit(&p->inline_failed, memory_order_acquire);
  uint64_t wdone = 0;
  for (pool_worker *w = p->workers; w != NULL; w = w->next) {
    uint64_t c = atomic_load_explicit(&w->completed, memory_order_acquire);
    uint64_t f = atomic_load_explicit(&w->failed, memory_order_acquire);
    completed += c;
    failed += f;
    wdone += c + f;
  }
  uint64_t started =
      p->retired_started +
      atomic_load_explicit(&p->inline_started, memory_order_acquire);
  uint64_t wstarted = 0;
  for (pool_worker *w = p->workers; w != NULL; w = w->next) {
    wstarted += atomic_load_explicit(&w->started, memory_order_acquire);
  }
  started += wstarted;
  uint64_t cancelled =
      atomic_load_explicit(&p->cancelled, memory_order_acquire);
  uint64_t submitted =
      concur__pool_queue_pushed(&p->q) +
      atomic_load_explicit(&p->direct_submitted, memory_order_acquire);
  out->submitted = submitted;
  out->running = started - completed - failed;
  out->queued = submitted - started - cancelled;
  out->completed = completed;
  out->failed = failed;
  out->cancelled = cancelled;
  out->rejected = atomic_load_explicit(&p->rejected, memory_order_relaxed);
  out->workers =
      (uint64_t)atomic_load_explicit(&p->alive, memory_order_relaxed);
  out->active = wstarted - wdone;
  if (out->active > out->workers) {
    out->active = out->workers;
  }
  out->largest = p->largest;
  concur__mutex_unlock(&p->lock);
}

static void pool_destroy(pool *p) {
  concur__pool_queue_destroy(&p->q);
  if (p->arena != NULL) {
    arena_close(p->arena);
  }
  concur__free(p->raw);
}

static void pool_free(concur_executor *ex) {
  pool *p = pool_of(ex);
  pool_worker *w = my_worker(p);
  if (w != NULL) {
    concur__panic("concur_executor_free called from a task of its own pool");
  }
  (void)pool_shutdown(ex, CONCUR_SHUTDOWN_WAIT);
  concur__registry_member_remove(&p->member);
  join_zombies(p);
  pool_destroy(p);
}

static const concur__executor_ops pool_ops = {
    "thread_pool",
    pool_submit,
    pool_parallelism,
    pool_help,
    pool_shutdown,
    pool_shutdown_now,
    pool_await_termination,
    pool_is_shutdown,
    pool_is_terminated,
    pool_stats,
    pool_free,
};

/* ---- construction
 * ---------------------------------------------------------------- */

static _Atomic uint64_t pool_numbers;

static int check_options(const concur_thread_pool_options *o, int *core,
                         int *max) {
  if (o->size < sizeof(concur_thread_pool_options)) {
    return CONCUR_EINVAL;
  }
  int m = o->max_workers;
  if (m == CONCUR_DEFAULT) {
    m = concur__cpu_count() + 4;
    if (m > 32) {
      m = 32;
    }
  } else if (m <= 0 || m > CONCUR_THREAD_POOL_WORKERS_MAX) {
    return CONCUR_EINVAL;
  }
  int c = o->core_workers;
  if (c == CONCUR_DEFAULT) {
    c = m;
  } else if (c < 0 || c > m) {
    return CONCUR_EINVAL;
  }
  if (o->idle_timeout_ns < 0 && o->idle_timeout_ns != CONCUR_DEFAULT) {
    return CONCUR_EINVAL;
  }
  if (o->queue_capacity < 0 && o->queue_capacity != CONCUR_UNBOUNDED) {
    return CONCUR_EINVAL;
  }
  if ((unsigned)o->rejection > (unsigned)CONCUR_REJECT_BLOCK) {
    return CONCUR_EINVAL;
  }
  if (o->block_timeout_ns < 0) {
    return CONCUR_EINVAL;
  }
  *core = c;
  *max = m;
  return 0;
}

int concur_thread_pool_new(concur_executor **out,
                           const concur_thread_pool_options *opts) {
  if (out == NULL) {
    return CONCUR_EINVAL;
  }
  *out = NULL;
  concur_thread_pool_options defaults = CONCUR_THREAD_POOL_OPTIONS_INIT;
  const concur_thread_pool_options *o = opts != NULL ? opts : &defaults;
  int core;
  int max;
  int rc = check_options(o, &core, &max);
  if (rc != 0) {
    return rc;
  }
  /* Line-aligned, so that the alignas spacing of the hot fields holds. */
  void *raw;
  pool *p = concur__pool_alloc_aligned(sizeof *p, &raw);
  if (p == NULL) {
    return CONCUR_ENOMEM;
  }
  memset(p, 0, sizeof *p);
  p->raw = raw;
  p->base.ops = &pool_ops;
  p->opts = *o;
  p->opts.size = sizeof p->opts;
  p->opts.core_workers = core;
  p->opts.max_workers = max;
  p->bounded = o->queue_capacity != CONCUR_UNBOUNDED;
  p->capacity = p->bounded ? o->queue_capacity : INT64_MAX;
  p->max_spinners = concur__cpu_count() / 2;
  if (p->max_spinners < 1) {
    p->max_spinners = 1;
  }
  p->idle_timeout_ns = o->idle_timeout_ns == CONCUR_DEFAULT
                           ? CONCUR_THREAD_POOL_IDLE_TIMEOUT_DEFAULT_NS
                           : o->idle_timeout_ns;
  uint64_t number =
      atomic_fetch_add_explicit(&pool_numbers, 1, memory_order_relaxed) + 1;
  if (o->thread_name_prefix != NULL) {
    snprintf(p->prefix, sizeof p->prefix, "%s", o->thread_name_prefix);
  } else {
    snprintf(p->prefix, sizeof p->prefix, "pool-%llu-",
             (unsigned long long)number);
  }
  p->opts.thread_name_prefix = NULL; /* the copy in prefix is used */
  atomic_init(&p->state, 0);
  atomic_init(&p->core, core);
  atomic_init(&p->max, max);
  atomic_init(&p->alive, 0);
  atomic_init(&p->idle, 0);
  atomic_init(&p->spinning, 0);
  atomic_init(&p->parked, 0);
  p->park_lock = (concur__mutex)CONCUR__MUTEX_INIT;
  atomic_init(&p->queued, 0);
  atomic_init(&p->blocked, 0);
  atomic_init(&p->room_gen, 0);
  atomic_init(&p->direct_submitted, 0);
  atomic_init(&p->inline_started, 0);
  atomic_init(&p->inline_completed, 0);
  atomic_init(&p->inline_failed, 0);
  atomic_init(&p->cancelled, 0);
  atomic_init(&p->rejected, 0);
  p->lock = (concur__mutex)CONCUR__MUTEX_INIT;
  atomic_init(&p->guests, 0);
  atomic_init(&p->term_word, 0);
  if (concur__pool_queue_init(&p->q) != 0) {
    concur__free(p->raw);
    return CONCUR_ENOMEM;
  }
  if (arena_new(&p->arena) != 0) {
    concur__pool_queue_destroy(&p->q);
    concur__free(p->raw);
    return CONCUR_ENOMEM;
  }
  if (o->prestart) {
    concur__mutex_lock(&p->lock, NULL);
    while (atomic_load_explicit(&p->alive, memory_order_relaxed) < core) {
      rc = start_worker_locked(p, NULL);
      if (rc != 0) {
        break;
      }
    }
    concur__mutex_unlock(&p->lock);
    if (rc != 0) {
      (void)pool_shutdown(&p->base, CONCUR_SHUTDOWN_WAIT);
      join_zombies(p);
      pool_destroy(p);
      return rc;
    }
  }
  concur__registry_member_add(&p->member, pool_at_exit);
  *out = &p->base;
  return 0;
}

bool concur_thread_pool_is(concur_executor *ex) {
  return ex != NULL && ex->ops == &pool_ops;
}

int concur_thread_pool_prestart_core_worker(concur_executor *ex) {
  if (!concur_thread_pool_is(ex)) {
    return CONCUR_EINVAL;
  }
  pool *p = pool_of(ex);
  concur__mutex_lock(&p->lock, NULL);
  uint32_t st = atomic_load_explicit(&p->state, memory_order_relaxed);
  int rc = 0;
  if (st != 0) {
    rc = state_error(st);
  } else if (atomic_load_explicit(&p->alive, memory_order_relaxed) <
             atomic_load_explicit(&p->core, memory_order_relaxed)) {
    rc = start_worker_locked(p, NULL);
    if (rc == 0) {
      rc = 1;
    }
  }
  concur__mutex_unlock(&p->lock);
  return rc;
}

int concur_thread_pool_prestart_all_core_workers(concur_executor *ex) {
  int n = 0;
  for (;;) {
    int rc = concur_thread_pool_prestart_core_worker(ex);
    if (rc == 0) {
      return n;
    }
    if (rc < 0) {
      return n > 0 && (rc == CONCUR_EAGAIN || rc == CONCUR_ENOMEM) ? n : rc;
    }
    n++;
  }
}

int concur_thread_pool_set_core_workers(concur_executor *ex, int core) {
  if (!concur_thread_pool_is(ex)) {
    return CONCUR_EINVAL;
  }
  pool *p = pool_of(ex);
  concur__mutex_lock(&p->lock, NULL);
  int rc = 0;
  uint32_t st = atomic_load_explicit(&p->state, memory_order_relaxed);
  int old = atomic_load_explicit(&p->core, memory_order_relaxed);
  if (core < 0 || core > atomic_load_explicit(&p->max, memory_order_relaxed)) {
    rc = CONCUR_EINVAL;
  } else if (st != 0) {
    rc = state_error(st);
  } else {
    atomic_store_explicit(&p->core, core, memory_order_relaxed);
    if (core > old) {
      /* Serve what waits in the queue, as Java does: at most one new
       * worker per queued task, up to the new core. */
      uint64_t waiting = concur__pool_queue_pushed(&p->q) -
                         atomic_load_explicit(&p->q.head, memory_order_acquire);
      while (waiting > 0 &&
             atomic_load_explicit(&p->alive, memory_order_relaxed) < core) {
        int spawn = start_worker_locked(p, NULL);
        if (spawn != 0) {
          rc = CONCUR_EAGAIN;
          break;
        }
        waiting--;
      }
    }
  }
  concur__mutex_unlock(&p->lock);
  if (rc == 0 || rc == CONCUR_EAGAIN) {
    if (core < old) {
      wake_all(p); /* they may now retire: let them set their deadlines */
    }
  }
  return rc;
}

int concur_thread_pool_set_max_workers(concur_executor *ex, int max) {
  if (!concur_thread_pool_is(ex)) {
    return CONCUR_EINVAL;
  }
  pool *p = pool_of(ex);
  concur__mutex_lock(&p->lock, NULL);
  int rc = 0;
  uint32_t st = atomic_load_explicit(&p->state, memory_order_relaxed);
  int old = atomic_load_explicit(&p->max, memory_order_relaxed);
  if (max < 1 || max > CONCUR_THREAD_POOL_WORKERS_MAX ||
      max < atomic_load_explicit(&p->core, memory_order_relaxed)) {
    rc = CONCUR_EINVAL;
  } else if (st != 0) {
    rc = state_error(st);
  } else {
    atomic_store_explicit(&p->max, max, memory_order_seq_cst);
  }
  concur__mutex_unlock(&p->lock);
  if (rc == 0) {
    if (max < old) {
      wake_all(p); /* the extra ones retire when idle */
    } else if (max > old) {
      notify_room(p);
    }
  }
  return rc;
}

int concur_thread_pool_core_workers(concur_executor *ex) {
  if (!concur_thread_pool_is(ex)) {
    return CONCUR_EINVAL;
  }
  return atomic_load_explicit(&pool_of(ex)->core, memory_order_relaxed);
}

int concur_thread_pool_max_workers(concur_executor *ex) {
  if (!concur_thread_pool_is(ex)) {
    return CONCUR_EINVAL;
  }
  return atomic_load_explicit(&pool_of(ex)->max, memory_order_relaxed);
}

/* ---- process exit
 * ------------------------------------------------------------ */

/* The registry calls this at process exit for every live pool (one at a
 * time; a concurrent concur_executor_free waits for it): shut down, and
 * wait unless the exiting thread is one of the pool's own workers. In a
 * forked child the inherited pools are not listed. */
static void pool_at_exit(concur__reg_member *member) {
  pool *p = (pool *)(void *)((char *)member - offsetof(pool, member));
  unsigned flags = my_worker(p) != NULL ? 0u : CONCUR_SHUTDOWN_WAIT;
  (void)pool_shutdown(&p->base, flags);
}
