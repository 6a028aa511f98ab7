/*
 * parallel_for: a loop split over the calling thread and the executor's
 * workers.
 *
 * Design
 * - Threads: the caller, plus up to (CPUs - 1) helper tasks submitted
 *   fire-and-forget to the executor (never more than its parallelism
 *   allows). Everyone runs the same loop: claim a sub-range, run the body
 *   over it, repeat until nothing is left.
 * - Chunking (guided self-scheduling): each claim takes what is left
 *   divided by twice the number of participants, but never less than a
 *   grain of about 1/256 of each participant's share. Early claims are
 *   large (few atomic operations: about 2P ln(256) claims in all), late
 *   ones small (the last participant to finish is at most one grain late),
 *   so 100 ns items scale and uneven items balance, with no chunk size
 *   from the user. Claims are compare-and-swaps on one shared counter of
 *   offsets from `begin`.
 * - The caller does not wait for helpers that have not started: a helper
 *   queued behind other work (or on a one-worker pool whose worker is the
 *   caller) may start any time later. So the loop's state lives on the
 *   heap with a reference per helper task (dropped by on_done, which the
 *   backend calls for every accepted task, run or not), and `state`
 *   (atomic; also the parking word) says who is inside: bit 0 a waiter may
 *   be parked, bit 1 CLOSED (no helper may enter any more), bits 2-31 the
 *   helpers running the loop. The caller, out of work, closes the loop
 *   with a compare-and-swap that succeeds only while no helper is inside,
 *   else parks until the last one leaves. A helper enters only while the
 *   loop is open. Hence when parallel_for returns, every body call has
 *   returned and no other can start.
 * - Happens-before: the helper's leaving subtract (release) and the
 *   caller's closing compare-and-swap (acquire) carry the bodies' writes to
 *   the caller; the submit hand-off carries the caller's earlier writes to
 *   the helpers.
 * - A body's nonzero return is recorded (first one wins) and moves the
 *   counter to the end, so nobody claims more.
 */
#include "executor/executor_algo.h"

#include <stdatomic.h>

#define ST_WAITER 1u
#define ST_CLOSED 2u
#define ST_ONE 4u

/* Each participant's share is split into at least this many grains. */
#define GRAINS_PER_SHARE 256

typedef struct pfor {
  _Atomic uint64_t next;  /* atomic: the first unclaimed offset */
  uint64_t count;         /* immutable after init: offsets are [0, count) */
  uint64_t grain;         /* immutable after init: the smallest claim */
  uint64_t divisor;       /* immutable after init: 2 * participants */
  int64_t begin;          /* immutable after init */
  concur_range_fn body;   /* immutable after init */
  void *arg;              /* immutable after init */
  _Atomic int code;       /* atomic: the first body failure */
  _Atomic uint32_t state; /* atomic: see the Design comment */
  _Atomic uint32_t refs;  /* atomic: the caller + each accepted helper */
} pfor;

static int64_t at(const pfor *p, uint64_t offset) {
  /* Unsigned arithmetic: a range may span more than INT64_MAX. */
  return (int64_t)((uint64_t)p->begin + offset);
}

static bool claim(pfor *p, uint64_t *lo, uint64_t *hi) {
  /* Relaxed: the compare-and-swap makes claims disjoint; what the bodies
   * write is published through `state`, not through this counter. */
  uint64_t cur = atomic_load_explicit(&p->next, memory_order_relaxed);
  for (;;) {
    if (cur >= p->count) {
      return false;
    }
    uint64_t left = p->count - cur;
    uint64_t n = left / p->divisor;
    if (n < p->grain) {
      n = p->grain;
    }
    if (n > left) {
      n = left;
    }
    if (atomic_compare_exchange_weak_explicit(&p->next, &cur, cur + n,
                                              memory_order_relaxed,
                                              memory_order_relaxed)) {
      *lo = cur;
      *hi = cur + n;
      return true;
    }
  }
}

/* Runs body over [lo, hi) and records a failure. */
static void run_range(pfor *p, uint64_t lo, uint64_t hi) {
  int rc = p->body(p->arg, at(p, lo), at(p, hi));
  if (rc != 0) {
    int zero = 0;
    atomic_compare_exchange_strong_explicit(
        &p->code, &zero, rc, memory_order_relaxed, memory_order_relaxed);
    atomic_store_explicit(&p->next, p->count, memory_order_relaxed);
  }
}

static void run_loop(pfor *p) {
  uint64_t lo, hi;
  while (claim(p, &lo, &hi)) {
    run_range(p, lo, hi);
  }
}

static void pfor_unref(pfor *p) {
  if (atomic_fetch_sub_explicit(&p->refs, 1, memory_order_acq_rel) == 1) {
    concur__free(p);
  }
}

static int helper_task(void *arg, void **result) {
  (void)result;
  pfor *p = arg;
  uint32_t w = atomic_load_explicit(&p->state, memory_order_relaxed);
  do {
    if ((w & ST_CLOSED) != 0) {
      return 0; /* the caller finished without us */
    }
  } while (!atomic_compare_exchange_weak_explicit(
      &p->state, &w, w + ST_ONE, memory_order_acquire, memory_order_relaxed));
  run_loop(p);
  /* release: the caller's acquire sees every body write of ours. */
  _Atomic uint32_t *word = &p->state;
  w = atomic_fetch_sub_explicit(word, ST_ONE, memory_order_release);
  if (w - ST_ONE == ST_WAITER) {
    concur__unpark(word, INT32_MAX);
  }
  return 0;
}

static void helper_done(void *ctx, concur__outcome outcome, int code) {
  (void)outcome;
  (void)code;
  pfor_unref(ctx);
}

/* Out of work: wait until no helper is inside, and close the loop. */
static void close_loop(pfor *p) {
  uint32_t w = atomic_load_explicit(&p->state, memory_order_acquire);
  for (;;) {
    if (w < ST_ONE) {
      if (atomic_compare_exchange_weak_explicit(&p->state, &w, ST_CLOSED,
                                                memory_order_acquire,
                                                memory_order_acquire)) {
        return;
      }
      continue;
    }
    if ((w & ST_WAITER) == 0) {
      if (!atomic_compare_exchange_weak_explicit(&p->state, &w, w | ST_WAITER,
                                                 memory_order_acquire,
                                                 memory_order_acquire)) {
        continue;
      }
      w |= ST_WAITER;
    }
    /* Helpers inside are running claimed sub-ranges: nothing is queued
     * for us to help with, so just wait for them. */
    (void)concur__park(&p->state, w, CONCUR__NO_DEADLINE, p);
    w = atomic_load_explicit(&p->state, memory_order_acquire);
  }
}

static int finish(int rc_code, int *code) {
  if (code != NULL) {
    *code = rc_code;
  }
  return rc_code != 0 ? CONCUR_ETASK : 0;
}

int concur_executor_parallel_for(concur_executor *ex, int64_t begin,
                                 int64_t end, concur_range_fn body, void *arg,
                                 int *code) {
  if (code != NULL) {
    *code = 0;
  }
  if (ex == NULL || body == NULL || begin > end) {
    return CONCUR_EINVAL;
  }
  if (ex->ops->is_shutdown(ex)) {
    return CONCUR_ESHUTDOWN;
  }
  uint64_t count = (uint64_t)end - (uint64_t)begin;
  if (count == 0) {
    return 0;
  }
  int participants = concur_executor_parallelism(ex);
  int cpus = concur__cpu_count();
  if (participants > cpus) {
    participants = cpus;
  }
  if ((uint64_t)participants > count) {
    participants = (int)count;
  }
  if (participants <= 1) {
    return finish(body(arg, begin, end), code);
  }

  pfor *p = concur__malloc(sizeof *p);
  if (p == NULL) {
    return CONCUR_ENOMEM;
  }
  atomic_init(&p->next, 0);
  p->count = count;
  p->divisor = 2 * (uint64_t)participants;
  p->grain = count / ((uint64_t)participants * GRAINS_PER_SHARE);
  if (p->grain == 0) {
    p->grain = 1;
  }
  p->begin = begin;
  p->body = body;
  p->arg = arg;
  atomic_init(&p->code, 0);
  atomic_init(&p->state, 0);
  atomic_init(&p->refs, (uint32_t)participants);

  /* The caller claims its first sub-range before enlisting anyone, so it
   * always takes part, and the helpers wake while it works. */
  uint64_t lo = 0, hi = 0;
  bool first = claim(p, &lo, &hi);
  int helpers = participants - 1;
  for (int i = 0; i < helpers; i++) {
    concur__task_record rec = {helper_task, p, NULL, helper_done, p};
    if (ex->ops->submit(ex, &rec, NULL) != 0) {
      /* Fewer helpers: the rest of us do its share. Drop the references
       * of the helpers that will never exist. */
      atomic_fetch_sub_explicit(&p->refs, (uint32_t)(helpers - i),
                                memory_order_relaxed);
      break;
    }
  }

  if (first) {
    run_range(p, lo, hi);
  }
  run_loop(p);
  close_loop(p);
  int failure = atomic_load_explicit(&p->code, memory_order_relaxed);
  pfor_unref(p);
  return finish(failure, code);
}
