/*
 * concur_wait and as_completed: waiting on many futures without polling.
 *
 * Design
 * - Threads: one waiting thread (the caller of concur_wait, or the one
 *   consumer of an as_completed iterator) and the threads that complete the
 *   futures. The waiter hangs one node per distinct future on that future's
 *   waiter list (CPython's _Waiter); the completer, holding the future's
 *   lock, unlinks the node and notifies the waiter, which parks on a word of
 *   its own. So a waiter wakes once per interesting completion, never polls.
 * - concur_wait: the waiter's word goes 0 -> 1 when a completer finds the
 *   mode's condition met (any done; a failure or all done; all done), from
 *   a count of registered futures still pending. The waiter's own scan of
 *   the states is the authority; the word only says when to look again.
 * - as_completed: completers push nodes on a lock-free stack and step a
 *   generation counter (bit 0: the consumer sleeps, so only then a wake-up
 *   call is made). The consumer drains the stack in completion order.
 * - Lifetime: a node is touched by a completer only under its future's lock;
 *   the waiter takes that lock once more before it forgets a node (when it
 *   unregisters it, or before it hands the future out), so a waiter on the
 *   stack or a freed iterator is never touched afterwards.
 * - Distinct futures: duplicates are dropped on entry, keeping first
 *   appearances in input order (a quadratic scan up to 8 futures, above that
 *   a sort of (pointer, index) pairs in a work array).
 * - References: concur_wait borrows the caller's; the iterator holds one per
 *   future not yet handed out and hands that very reference to the caller.
 */
#include "future/future_internal.h"

#include <stdlib.h>

/* Up to this many futures, no allocation and no sort. */
#define SMALL_N 8

typedef struct dedup_entry {
  concur_future *future;
  size_t index;
} dedup_entry;

static int by_future_then_index(const void *a, const void *b) {
  const dedup_entry *x = a;
  const dedup_entry *y = b;
  uintptr_t px = (uintptr_t)x->future;
  uintptr_t py = (uintptr_t)y->future;
  if (px != py) {
    return px < py ? -1 : 1;
  }
  return x->index < y->index ? -1 : (x->index > y->index);
}

static int by_index(const void *a, const void *b) {
  const dedup_entry *x = a;
  const dedup_entry *y = b;
  return x->index < y->index ? -1 : (x->index > y->index);
}

static bool any_null(concur_future *const *fs, size_t n) {
  for (size_t i = 0; i < n; i++) {
    if (fs[i] == NULL) {
      return true;
    }
  }
  return false;
}

/*
 * The distinct futures of fs[0..n) in order of first appearance, into u;
 * returns how many. scratch (n entries) is needed only when n > SMALL_N.
 */
static size_t distinct(concur_future *const *fs, size_t n, concur_future **u,
                       dedup_entry *scratch) {
  size_t m = 0;
  if (n <= SMALL_N) {
    for (size_t i = 0; i < n; i++) {
      size_t j = 0;
      while (j < m && u[j] != fs[i]) {
        j++;
      }
      if (j == m) {
        u[m++] = fs[i];
      }
    }
    return m;
  }
  for (size_t i = 0; i < n; i++) {
    scratch[i].future = fs[i];
    scratch[i].index = i;
  }
  qsort(scratch, n, sizeof *scratch, by_future_then_index);
  size_t k = 0;
  for (size_t i = 0; i < n; i++) {
    if (i == 0 || scratch[i].future != scratch[i - 1].future) {
      scratch[k++] = scratch[i];
    }
  }
  qsort(scratch, k, sizeof *scratch, by_index);
  for (size_t i = 0; i < k; i++) {
    u[m++] = scratch[i].future;
  }
  return m;
}

/* ---- concur_wait ------------------------------------------------------------
 */

static bool condition_holds(concur_wait_mode mode, concur_future *const *u,
                            size_t m) {
  size_t done = 0;
  for (size_t i = 0; i < m; i++) {
    uint32_t w = concur__fut_word(u[i]);
    if (!concur__fut_is_done(w)) {
      continue;
    }
    done++;
    if (mode == CONCUR_FIRST_COMPLETED ||
        (mode == CONCUR_FIRST_EXCEPTION && concur__fut_is_failed(w))) {
      return true;
    }
  }
  return done == m;
}

static void report(concur_future *const *u, size_t m, concur_future **done,
                   size_t *n_done, concur_future **not_done,
                   size_t *n_not_done) {
  size_t d = 0;
  size_t nd = 0;
  for (size_t i = 0; i < m; i++) {
    if (concur_future_done(u[i])) {
      if (done != NULL) {
        done[d] = u[i];
      }
      d++;
    } else {
      if (not_done != NULL) {
        not_done[nd] = u[i];
      }
      nd++;
    }
  }
  if (n_done != NULL) {
    *n_done = d;
  }
  if (n_not_done != NULL) {
    *n_not_done = nd;
  }
}

/* Registers, waits, unregisters: 0 or CONCUR_ETIMEDOUT. */
static int wait_blocking(concur_future *const *key, concur__wait_kind mode,
                         concur_future **u, size_t m, concur__wait_node *nodes,
                         concur__deadline deadline) {
  /* A thread about to block helps the still-queued futures first. */
  for (size_t i = 0; i < m; i++) {
    concur__future_help(u[i]);
    if (condition_holds((concur_wait_mode)mode, u, m)) {
      return 0;
    }
  }
  concur__waiter waiter;
  atomic_init(&waiter.word, 0);
  atomic_init(&waiter.remaining, m);
  atomic_init(&waiter.finished, NULL);
  waiter.kind = mode;
  for (size_t i = 0; i < m; i++) {
    nodes[i].waiter = &waiter;
    nodes[i].future = u[i];
    nodes[i].linked = false;
    if (!concur__future_add_waiter(u[i], &nodes[i])) {
      /* Done already: count it ourselves; the scan below decides. */
      atomic_fetch_sub_explicit(&waiter.remaining, 1, memory_order_relaxed);
    }
  }
  int rc = 0;
  for (;;) {
    if (condition_holds((concur_wait_mode)mode, u, m)) {
      break;
    }
    /* The word becomes 1 only after the states that make the condition
     * hold were published, so a wake-up is never lost and never early. */
    if (concur__park(&waiter.word, 0, deadline, key) == CONCUR_ETIMEDOUT) {
      if (!condition_holds((concur_wait_mode)mode, u, m)) {
        rc = CONCUR_ETIMEDOUT;
      }
      break;
    }
  }
  for (size_t i = 0; i < m; i++) {
    concur__future_remove_waiter(u[i], &nodes[i]);
  }
  return rc;
}

int concur_wait(concur_future *const *futures, size_t n, int64_t timeout_ns,
                concur_wait_mode mode, concur_future **done, size_t *n_done,
                concur_future **not_done, size_t *n_not_done) {
  concur__deadline deadline;
  if ((futures == NULL && n > 0) ||
      (mode != CONCUR_FIRST_COMPLETED && mode != CONCUR_FIRST_EXCEPTION &&
       mode != CONCUR_ALL_COMPLETED) ||
      concur__deadline_from_timeout(timeout_ns, &deadline) != 0 ||
      any_null(futures, n)) {
    return CONCUR_EINVAL;
  }
  concur_future *small_u[SMALL_N];
  concur__wait_node small_nodes[SMALL_N];
  concur_future **u = small_u;
  concur__wait_node *nodes = small_nodes;
  dedup_entry *scratch = NULL;
  void *block = NULL;
  if (n > SMALL_N) {
    /* One block: the distinct futures, then the nodes, whose room first
     * serves as the sort's work array. */
    size_t node_bytes = sizeof(concur__wait_node) > sizeof(dedup_entry)
                            ? sizeof(concur__wait_node)
                            : sizeof(dedup_entry);
    if (n > SIZE_MAX / (sizeof(concur_future *) + node_bytes)) {
      return CONCUR_ENOMEM;
    }
    block = concur__malloc(n * (sizeof(concur_future *) + node_bytes));
    if (block == NULL) {
      return CONCUR_ENOMEM;
    }
    u = block;
    scratch = (dedup_entry *)(void *)(u + n);
    nodes = (concur__wait_node *)(void *)(u + n);
  }
  size_t m = distinct(futures, n, u, scratch);
  int rc = 0;
  if (!condition_holds(mode, u, m)) {
    rc = timeout_ns == CONCUR_NOWAIT
             ? CONCUR_ETIMEDOUT
             : wait_blocking(futures, (concur__wait_kind)mode, u, m, nodes,
                             deadline);
  }
  report(u, m, done, n_done, not_done, n_not_done);
  concur__free(block);
  return rc;
}

/* ---- as_completed
 * -------------------------------------------------------------- */

struct concur_as_completed {
  concur__waiter waiter;         /* completers notify it; see the Design */
  concur__deadline deadline;     /* immutable after init */
  size_t total;                  /* immutable after init */
  size_t remaining;              /* consumer only: not handed out yet */
  concur__wait_node *ready;      /* consumer only: done, to hand out, FIFO */
  concur__wait_node *ready_tail; /* consumer only */
  concur__wait_node nodes[];     /* one per distinct future */
};

static void ready_append(concur_as_completed *it, concur__wait_node *n) {
  n->done_next = NULL;
  if (it->ready_tail != NULL) {
    it->ready_tail->done_next = n;
  } else {
    it->ready = n;
  }
  it->ready_tail = n;
}

/* Moves what completers pushed onto the ready list, oldest first. */
static void drain(concur_as_completed *it) {
  /* acquire: pairs with the completers' release pushes. */
  concur__wait_node *s = atomic_exchange_explicit(&it->waiter.finished, NULL,
                                                  memory_order_acquire);
  concur__wait_node *reversed = NULL;
  while (s != NULL) {
    concur__wait_node *next = s->done_next;
    s->done_next = reversed;
    reversed = s;
    s = next;
  }
  while (reversed != NULL) {
    concur__wait_node *next = reversed->done_next;
    ready_append(it, reversed);
    reversed = next;
  }
}

int concur_as_completed_new(concur_as_completed **out,
                            concur_future *const *futures, size_t n,
                            int64_t timeout_ns) {
  concur__deadline deadline;
  if (out == NULL || (futures == NULL && n > 0) ||
      concur__deadline_from_timeout(timeout_ns, &deadline) != 0 ||
      any_null(futures, n)) {
    return CONCUR_EINVAL;
  }
  concur_future *small_u[SMALL_N];
  concur_future **u = small_u;
  dedup_entry *scratch = NULL;
  void *work = NULL;
  if (n > SMALL_N) {
    if (n > SIZE_MAX / (sizeof(concur_future *) + sizeof(dedup_entry))) {
      return CONCUR_ENOMEM;
    }
    work = concur__malloc(n * (sizeof(dedup_entry) + sizeof(concur_future *)));
    if (work == NULL) {
      return CONCUR_ENOMEM;
    }
    scratch = work;
    u = (concur_future **)(void *)(scratch + n);
  }
  size_t m = distinct(futures, n, u, scratch);
  concur_as_completed *it =
      concur__malloc(sizeof *it + m * sizeof(concur__wait_node));
  if (it == NULL) {
    concur__free(work);
    return CONCUR_ENOMEM;
  }
  atomic_init(&it->waiter.word, 0);
  atomic_init(&it->waiter.remaining, 0);
  atomic_init(&it->waiter.finished, NULL);
  it->waiter.kind = CONCUR__WAIT_AS_COMPLETED;
  it->deadline = deadline;
  it->total = m;
  it->remaining = m;
  it->ready = NULL;
  it->ready_tail = NULL;
  for (size_t i = 0; i < m; i++) {
    concur__wait_node *node = &it->nodes[i];
    node->prev = NULL;
    node->next = NULL;
    node->linked = false;
    node->waiter = &it->waiter;
    node->future = concur_future_ref(u[i]);
    node->done_next = NULL;
    if (!concur__future_add_waiter(u[i], node)) {
      ready_append(it, node); /* done already: handed out first */
    }
  }
  concur__free(work);
  *out = it;
  return 0;
}

/* Helps the first still-pending future that has a help hook. */
static void help_one(concur_as_completed *it) {
  for (size_t i = 0; i < it->total; i++) {
    concur_future *f = it->nodes[i].future;
    if (f != NULL) {
      uint32_t w = concur__fut_word(f);
      if ((w & FUT_ST_MASK) == FUT_PENDING && (w & FUT_HELP) != 0) {
        concur__future_help(f);
        return;
      }
    }
  }
}

int concur_as_completed_next(concur_as_completed *it, concur_future **out) {
  if (it == NULL || out == NULL) {
    return CONCUR_EINVAL;
  }
  *out = NULL;
  bool helped = false;
  for (;;) {
    if (it->ready == NULL) {
      drain(it);
    }
    concur__wait_node *node = it->ready;
    if (node != NULL) {
      it->ready = node->done_next;
      if (it->ready == NULL) {
        it->ready_tail = NULL;
      }
      concur_future *f = node->future;
      /* The completer that pushed the node may still be inside its
       * notification, which it does under f's lock: wait it out before
       * forgetting the node (and maybe, later, freeing the iterator). */
      concur__future_remove_waiter(f, node);
      node->future = NULL;
      it->remaining--;
      *out = f; /* the iterator's reference becomes the caller's */
      return 1;
    }
    if (it->remaining == 0) {
      return 0;
    }
    /* acquire: pairs with the completers' step after their push. */
    uint32_t gen = atomic_load_explicit(&it->waiter.word, memory_order_acquire);
    if (atomic_load_explicit(&it->waiter.finished, memory_order_acquire) !=
        NULL) {
      continue;
    }
    if (concur__deadline_passed(it->deadline)) {
      return CONCUR_ETIMEDOUT;
    }
    if (!helped) {
      helped = true;
      help_one(it);
      continue;
    }
    if ((gen & 1u) == 0) {
      /* Say we sleep; a completer stepping the counter first makes this
       * fail, and we look at the stack again. */
      if (!atomic_compare_exchange_strong_explicit(
              &it->waiter.word, &gen, gen | 1u, memory_order_acq_rel,
              memory_order_acquire)) {
        continue;
      }
      gen |= 1u;
    }
    (void)concur__park(&it->waiter.word, gen, it->deadline, it);
    /* Clear the flag so that completers stop making wake-up calls; the loop
     * looks at the stack again before any further sleep. */
    atomic_fetch_and_explicit(&it->waiter.word, ~1u, memory_order_acq_rel);
  }
}

size_t concur_as_completed_remaining(const concur_as_completed *it) {
  return it != NULL ? it->remaining : 0;
}

size_t concur_as_completed_total(const concur_as_completed *it) {
  return it != NULL ? it->total : 0;
}

void concur_as_completed_free(concur_as_completed *it) {
  if (it == NULL) {
    return;
  }
  for (size_t i = 0; i < it->total; i++) {
    concur_future *f = it->nodes[i].future;
    if (f != NULL) {
      concur__future_remove_waiter(f, &it->nodes[i]);
      concur_future_unref(f);
    }
  }
  concur__free(it);
}
