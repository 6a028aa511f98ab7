/*
 * map and imap: fn over an input, results in input or completion order.
 *
 * Design
 * - Threads: one consumer (the thread that creates the iterator and calls
 *   next / free; concur_executor_map is a consumer that loops), and the
 *   executor's threads, which run chunk tasks and call chunk_done (the
 *   record's on_done) once per accepted chunk, run or cancelled.
 * - Items travel in chunks of up to `cap` items: one task, one future, one
 *   on_done per chunk, with the items' args, results and codes in `slots`
 *   beside it. All chunks and slots come in one allocation with the
 *   iterator; with a bounded buffer the chunks are recycled, so a long or
 *   endless input allocates nothing per item.
 * - The consumer alone touches the input, the free list, the list of
 *   chunks in flight (submitted and not fully handed out, in submission
 *   order) and each chunk's `delivered`. A chunk task writes only its
 *   slots; chunk_done writes the chunk's `flags` and `ready_next`.
 * - Completion: chunk_done sets ENDED (and CANCELLED when the task never
 *   ran) with release, pushes the chunk on the `ready` stack (unordered
 *   iterators), decrements `live`, then bumps `word` and wakes the consumer
 *   if its waiter bit is set. The consumer checks a chunk's flags with
 *   acquire before reading its slots, and parks on `word` (key: the
 *   iterator) after helping the executor.
 * - Stopping (a failure under CONCUR_MAP_STOP, the deadline, free): `stop`
 *   makes running chunks skip their remaining items; every chunk in flight
 *   is asked to cancel (pending ones are cancelled by the executor) and
 *   marked ABANDONED. Whoever of the consumer and chunk_done sets its flag
 *   second cleans the chunk's items not handed out, so each cleanup runs
 *   once, after the item's task ended.
 * - Lifetime: `refs` counts the consumer and each accepted chunk whose
 *   chunk_done has not finished; the last one frees everything, so free
 *   never waits for a running task. chunk_done's last access is that
 *   decrement (its wake-up only uses the word's address).
 * - Happens-before: the consumer's writes to a chunk's slots (args) precede
 *   the submit, which hands them to the task; the task's writes precede
 *   the executor's on_done call, whose release store of ENDED the consumer
 *   acquires.
 */
#include "executor/executor_algo.h"

#include <stdatomic.h>
#include <string.h>

#define CH_ENDED 1u
#define CH_CANCELLED 2u
#define CH_ABANDONED 4u

#define WORD_WAITER 1u
#define WORD_ONE 2u

typedef struct slot {
  void *arg;    /* consumer, before submit */
  void *result; /* the task */
  int code;     /* the task */
  bool ran;     /* the task; reset by the consumer before submit */
} slot;

typedef struct chunk {
  concur_imap *m;            /* immutable after init */
  slot *slots;               /* immutable after init: m->cap of them */
  size_t first;              /* consumer, before submit */
  size_t count;              /* consumer, before submit */
  size_t delivered;          /* consumer only */
  concur_future *future;     /* consumer only */
  _Atomic uint32_t flags;    /* atomic: CH_* */
  struct chunk *ready_next;  /* chunk_done, before the release push */
  struct chunk *prev, *next; /* consumer only: the in-flight list */
  struct chunk *free_next;   /* consumer only */
} chunk;

struct concur_imap {
  /* immutable after init */
  concur_executor *ex;
  concur_task_fn fn;
  concur_cleanup_fn cleanup;
  concur_map_errors errors;
  bool unordered;
  bool hand_results; /* false: results not handed out go to cleanup */
  size_t cap;        /* items per chunk */
  size_t budget;     /* items in flight at most (SIZE_MAX: unbounded) */
  concur__deadline deadline;
  chunk *chunks;
  size_t nchunks;

  /* consumer only */
  void *const *args; /* array input (or the drained source) */
  void **owned_args; /* the drained source's items, freed at the end */
  size_t n;          /* array input: its length */
  size_t taken;      /* array input: items taken so far */
  concur_map_source_fn source;
  void *source_arg;
  bool input_done;
  int input_error; /* reported once after every earlier item */
  size_t in_flight;
  size_t submitted_chunks;
  bool submit_failed;
  chunk *free_list;
  chunk *head, *tail; /* in flight, submission order */
  chunk *cur;         /* unordered: the chunk being handed out */
  chunk *local_ready; /* unordered: ended chunks, completion order */
  bool stopped;
  bool has_pending; /* the item last handed out awaits its cleanup */
  void *pending_arg;
  void *pending_result;

  _Atomic(chunk *) ready; /* atomic: chunks ended, newest first */
  _Atomic bool stop;      /* atomic: running chunks skip their items */
  _Atomic uint32_t word;  /* atomic: ends * WORD_ONE | WORD_WAITER */
  _Atomic size_t live;    /* atomic: chunks accepted, not ended */
  _Atomic size_t refs;    /* atomic: consumer + chunks accepted */
};

/* ---- the executor side ----------------------------------------------------
 */

static int chunk_run(void *arg, void **result) {
  (void)result;
  chunk *c = arg;
  concur_imap *m = c->m;
  for (size_t i = 0; i < c->count; i++) {
    /* Relaxed: a hint; an item that starts anyway is handled normally. */
    if (atomic_load_explicit(&m->stop, memory_order_relaxed)) {
      break;
    }
    slot *s = &c->slots[i];
    s->result = NULL;
    s->code = m->fn(s->arg, &s->result);
    s->ran = true;
  }
  return 0;
}

static void imap_unref(concur_imap *m) {
  if (atomic_fetch_sub_explicit(&m->refs, 1, memory_order_acq_rel) == 1) {
    concur__free(m->owned_args);
    concur__free(m);
  }
}

/* Runs the cleanup of items [from, count) of an ended chunk. */
static void clean_items(concur_imap *m, chunk *c, size_t from) {
  if (m->cleanup == NULL) {
    return;
  }
  for (size_t i = from; i < c->count; i++) {
    slot *s = &c->slots[i];
    m->cleanup(s->arg, s->ran ? s->result : NULL);
  }
}

static void wake_consumer(concur_imap *m) {
  _Atomic uint32_t *word = &m->word;
  uint32_t w = atomic_load_explicit(word, memory_order_relaxed);
  /* release: the chunk's ENDED and slots are visible to whoever sees the
   * word move. The waiter bit is cleared so later ends skip the wake. */
  while (!atomic_compare_exchange_weak_explicit(
      word, &w, (w + WORD_ONE) & ~WORD_WAITER, memory_order_release,
      memory_order_relaxed)) {
  }
  if ((w & WORD_WAITER) != 0) {
    concur__unpark(word, INT32_MAX);
  }
}

static void chunk_done(void *ctx, concur__outcome outcome, int code) {
  (void)code;
  chunk *c = ctx;
  concur_imap *m = c->m;
  uint32_t set = CH_ENDED;
  if (outcome == CONCUR__OUTCOME_CANCELLED) {
    set |= CH_CANCELLED;
  }
  uint32_t old = atomic_fetch_or_explicit(&c->flags, set, memory_order_acq_rel);
  if ((old & CH_ABANDONED) != 0) {
    /* The consumer let go of it before it ended: nothing of it was handed
     * out. (A cancelled chunk never ran: every `ran` is still false.) */
    clean_items(m, c, 0);
  } else if (m->unordered) {
    chunk *top = atomic_load_explicit(&m->ready, memory_order_relaxed);
    do {
      c->ready_next = top;
    } while (!atomic_compare_exchange_weak_explicit(
        &m->ready, &top, c, memory_order_release, memory_order_relaxed));
  }
  atomic_fetch_sub_explicit(&m->live, 1, memory_order_release);
  wake_consumer(m);
  imap_unref(m);
}

/* ---- the consumer side -----------------------------------------------------
 */

static void list_remove(concur_imap *m, chunk *c) {
  if (c->prev != NULL) {
    c->prev->next = c->next;
  } else {
    m->head = c->next;
  }
  if (c->next != NULL) {
    c->next->prev = c->prev;
  } else {
    m->tail = c->prev;
  }
  c->prev = c->next = NULL;
}

static void run_pending_cleanup(concur_imap *m) {
  if (m->has_pending) {
    m->has_pending = false;
    if (m->cleanup != NULL) {
      m->cleanup(m->pending_arg, m->pending_result);
    }
  }
}

/* Takes up to cap items from the input into c: the count taken. */
static size_t take_items(concur_imap *m, chunk *c) {
  size_t k = 0;
  if (m->source == NULL) {
    size_t left = m->n - m->taken;
    k = left < m->cap ? left : m->cap;
    for (size_t i = 0; i < k; i++) {
      c->slots[i].arg = m->args[m->taken + i];
    }
    c->first = m->taken;
    m->taken += k;
    if (m->taken == m->n) {
      m->input_done = true;
    }
    return k;
  }
  c->first = m->taken;
  while (k < m->cap) {
    void *item = NULL;
    int rc = m->source(m->source_arg, &item);
    if (rc <= 0) {
      m->input_done = true;
      if (rc < 0) {
        m->input_error = rc;
      }
      break;
    }
    c->slots[k++].arg = item;
  }
  m->taken += k;
  return k;
}

/* Submits chunks while the buffer and the input allow. */
static void fill(concur_imap *m) {
  while (!m->stopped && !m->input_done && m->free_list != NULL &&
         m->in_flight + m->cap <= m->budget) {
    chunk *c = m->free_list;
    size_t k = take_items(m, c);
    if (k == 0) {
      return;
    }
    m->free_list = c->free_next;
    c->count = k;
    c->delivered = 0;
    c->future = NULL;
    for (size_t i = 0; i < k; i++) {
      c->slots[i].ran = false;
      c->slots[i].result = NULL;
      c->slots[i].code = 0;
    }
    atomic_store_explicit(&c->flags, 0, memory_order_relaxed);
    /* Counted before the executor sees it: chunk_done may run at once
     * (the inline executor runs the chunk inside submit). */
    atomic_fetch_add_explicit(&m->refs, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&m->live, 1, memory_order_relaxed);
    c->prev = m->tail;
    c->next = NULL;
    if (m->tail != NULL) {
      m->tail->next = c;
    } else {
      m->head = c;
    }
    m->tail = c;
    m->in_flight += k;
    concur__task_record rec = {chunk_run, c, NULL, chunk_done, c};
    concur_future *f = NULL;
    int rc = m->ex->ops->submit(m->ex, &rec, &f);
    if (rc != 0) {
      atomic_fetch_sub_explicit(&m->live, 1, memory_order_relaxed);
      atomic_fetch_sub_explicit(&m->refs, 1, memory_order_relaxed);
      list_remove(m, c);
      m->in_flight -= k;
      c->free_next = m->free_list;
      m->free_list = c;
      if (m->source == NULL) {
        m->taken -= k; /* array items stay the input's until the end */
      } else if (m->cleanup != NULL) {
        for (size_t i = 0; i < k; i++) {
          m->cleanup(c->slots[i].arg, NULL);
        }
      }
      m->input_done = true;
      m->input_error = rc;
      m->submit_failed = true;
      return;
    }
    c->future = f;
    m->submitted_chunks++;
  }
}

/* Gives a fully handed-out (or cleaned) chunk back to the free list. */
static void release_chunk(concur_imap *m, chunk *c) {
  list_remove(m, c);
  concur_future_unref(c->future);
  c->future = NULL;
  m->in_flight -= c->count;
  c->free_next = m->free_list;
  m->free_list = c;
}

/* Ends the iteration: cancels and abandons what is in flight. */
static void stop_all(concur_imap *m) {
  m->stopped = true;
  m->input_done = true;
  atomic_store_explicit(&m->stop, true, memory_order_relaxed);
  m->cur = NULL;
  m->local_ready = NULL;
  chunk *c = m->head;
  while (c != NULL) {
    chunk *next = c->next;
    uint32_t old =
        atomic_fetch_or_explicit(&c->flags, CH_ABANDONED, memory_order_acq_rel);
    if ((old & CH_ENDED) != 0) {
      clean_items(m, c, c->delivered);
    } else {
      /* Pending: cancelled now (its chunk_done cleans it). Running: asked
       * to stop; its chunk_done cleans it when it ends. */
      (void)concur_future_request_cancel(c->future);
    }
    list_remove(m, c);
    concur_future_unref(c->future);
    c->future = NULL;
    c = next;
  }
  if (m->source == NULL && m->cleanup != NULL) {
    for (size_t i = m->taken; i < m->n; i++) {
      m->cleanup(m->args[i], NULL);
    }
  }
  m->taken = m->n;
}

/* The next ended chunk with an item to hand out, or NULL. */
static chunk *ready_chunk(concur_imap *m) {
  if (!m->unordered) {
    chunk *c = m->head;
    if (c != NULL && (atomic_load_explicit(&c->flags, memory_order_acquire) &
                      CH_ENDED) != 0) {
      return c;
    }
    return NULL;
  }
  if (m->cur != NULL) {
    return m->cur;
  }
  if (m->local_ready == NULL) {
    /* acquire: pairs with chunk_done's release push. */
    chunk *top =
        atomic_exchange_explicit(&m->ready, NULL, memory_order_acquire);
    chunk *fifo = NULL;
    while (top != NULL) {
      chunk *next = top->ready_next;
      top->ready_next = fifo;
      fifo = top;
      top = next;
    }
    m->local_ready = fifo;
  }
  if (m->local_ready != NULL) {
    m->cur = m->local_ready;
    m->local_ready = m->cur->ready_next;
  }
  return m->cur;
}

/* Hands out the next item of an ended chunk. */
static int deliver(concur_imap *m, chunk *c, concur_map_item *item) {
  size_t i = c->delivered++;
  slot *s = &c->slots[i];
  uint32_t flags = atomic_load_explicit(&c->flags, memory_order_relaxed);
  bool ran = s->ran && (flags & CH_CANCELLED) == 0;
  int rc;
  item->index = c->first + i;
  item->arg = s->arg;
  item->result = NULL;
  m->has_pending = true;
  m->pending_arg = s->arg;
  m->pending_result = NULL;
  if (!ran) {
    item->code = CONCUR_ECANCELED;
    rc = CONCUR_ECANCELED;
  } else if (s->code != 0) {
    item->code = s->code;
    m->pending_result = s->result;
    rc = CONCUR_ETASK;
  } else {
    item->code = 0;
    item->result = s->result;
    if (!m->hand_results) {
      m->pending_result = s->result;
    }
    rc = 1;
  }
  if (c->delivered == c->count) {
    if (m->cur == c) {
      m->cur = NULL;
    }
    release_chunk(m, c);
  }
  if (rc != 1 && m->errors == CONCUR_MAP_STOP) {
    stop_all(m);
  }
  return rc;
}

/* Parks until a chunk ends (word moves past w) or the deadline. */
static int await_end(concur_imap *m, uint32_t w, concur__deadline deadline) {
  if ((w & WORD_WAITER) == 0) {
    if (!atomic_compare_exchange_strong_explicit(&m->word, &w, w | WORD_WAITER,
                                                 memory_order_acquire,
                                                 memory_order_acquire)) {
      return 0; /* it moved: look again */
    }
    w |= WORD_WAITER;
  }
  return concur__park(&m->word, w, deadline, m);
}

static int imap_next(concur_imap *m, concur__deadline call_deadline,
                     concur_map_item *item) {
  run_pending_cleanup(m);
  for (;;) {
    if (m->stopped) {
      return 0;
    }
    fill(m);
    uint32_t w = atomic_load_explicit(&m->word, memory_order_acquire);
    chunk *c = ready_chunk(m);
    if (c != NULL) {
      return deliver(m, c, item);
    }
    if (m->head == NULL) {
      /* Nothing in flight and nothing more can be submitted. */
      int rc = m->input_error;
      m->input_error = 0;
      stop_all(m);
      return rc;
    }
    if (concur__deadline_passed(m->deadline)) {
      stop_all(m);
      return CONCUR_ETIMEDOUT;
    }
    if (concur__deadline_passed(call_deadline)) {
      return CONCUR_ETIMEDOUT;
    }
    if (concur_executor_help(m->ex) > 0) {
      continue;
    }
    concur__deadline d =
        call_deadline < m->deadline ? call_deadline : m->deadline;
    (void)await_end(m, w, d);
  }
}

/* ---- construction ------------------------------------------------------- */

static int check_options(const concur_map_options *o, size_t *chunksize,
                         size_t *budget, concur__deadline *deadline) {
  if (o->size < sizeof(concur_map_options)) {
    return CONCUR_EINVAL;
  }
  if (o->chunksize == CONCUR_DEFAULT) {
    *chunksize = 1;
  } else if (o->chunksize >= 1) {
    *chunksize = (uint64_t)o->chunksize > SIZE_MAX / 2 ? SIZE_MAX / 2
                                                       : (size_t)o->chunksize;
  } else {
    return CONCUR_EINVAL;
  }
  if (o->buffersize == CONCUR_UNBOUNDED) {
    *budget = SIZE_MAX;
  } else if (o->buffersize >= 1) {
    *budget = (uint64_t)o->buffersize > SIZE_MAX / 2 ? SIZE_MAX / 2
                                                     : (size_t)o->buffersize;
  } else {
    return CONCUR_EINVAL;
  }
  if (o->errors != CONCUR_MAP_STOP && o->errors != CONCUR_MAP_COLLECT) {
    return CONCUR_EINVAL;
  }
  return concur__deadline_from_timeout(o->timeout_ns, deadline);
}

/* Reads a whole source into a new array: 0, or an error after cleaning up
 * what was read. A source error is kept in *error, not returned. */
static int drain_source(concur_map_source_fn source, void *source_arg,
                        concur_cleanup_fn cleanup, void ***out, size_t *n,
                        int *error) {
  size_t cap = 0, len = 0;
  void **items = NULL;
  for (;;) {
    void *item = NULL;
    int rc = source(source_arg, &item);
    if (rc <= 0) {
      *error = rc;
      break;
    }
    if (len == cap) {
      size_t ncap = cap == 0 ? 64 : cap * 2;
      void **grown = ncap > SIZE_MAX / sizeof *grown
                         ? NULL
                         : concur__malloc(ncap * sizeof *grown);
      if (grown == NULL) {
        if (cleanup != NULL) {
          cleanup(item, NULL);
          for (size_t i = 0; i < len; i++) {
            cleanup(items[i], NULL);
          }
        }
        concur__free(items);
        return CONCUR_ENOMEM;
      }
      if (len > 0) {
        memcpy(grown, items, len * sizeof *items);
      }
      concur__free(items);
      items = grown;
      cap = ncap;
    }
    items[len++] = item;
  }
  *out = items;
  *n = len;
  return 0;
}

static int imap_create(concur_imap **out, concur_executor *ex,
                       concur_task_fn fn, void *const *args, size_t n,
                       concur_map_source_fn source, void *source_arg,
                       const concur_map_options *options, bool hand_results) {
  static const concur_map_options defaults = CONCUR_MAP_OPTIONS_INIT;
  const concur_map_options *o = options != NULL ? options : &defaults;
  size_t chunksize, budget;
  concur__deadline deadline;
  if (check_options(o, &chunksize, &budget, &deadline) != 0) {
    return CONCUR_EINVAL;
  }

  void **owned = NULL;
  int input_error = 0;
  if (source != NULL && budget == SIZE_MAX) {
    /* Unbounded: Python reads the whole input first; so do we, and then
     * go on as for an array that the iterator owns. */
    int rc =
        drain_source(source, source_arg, o->cleanup, &owned, &n, &input_error);
    if (rc != 0) {
      return rc;
    }
    args = owned;
    source = NULL;
  }

  size_t cap = chunksize < budget ? chunksize : budget;
  size_t nchunks, nslots;
  if (budget == SIZE_MAX) {
    nchunks = n / cap + (n % cap != 0);
    nslots = n;
  } else {
    nchunks = budget / cap;
    if (source == NULL) {
      size_t need = n / cap + (n % cap != 0);
      if (need < nchunks) {
        nchunks = need;
      }
    }
    nslots = nchunks * cap;
  }
  size_t head = (sizeof(concur_imap) + _Alignof(chunk) - 1) / _Alignof(chunk) *
                _Alignof(chunk);
  concur_imap *m = NULL;
  if (nchunks <= (SIZE_MAX / 2 - head) / sizeof(chunk) &&
      nslots <= (SIZE_MAX / 2) / sizeof(slot)) {
    m = concur__calloc(1,
                       head + nchunks * sizeof(chunk) + nslots * sizeof(slot));
  }
  if (m == NULL) {
    if (owned != NULL) {
      if (o->cleanup != NULL) {
        for (size_t i = 0; i < n; i++) {
          o->cleanup(owned[i], NULL);
        }
      }
      concur__free(owned);
    }
    return CONCUR_ENOMEM;
  }
  m->ex = ex;
  m->fn = fn;
  m->cleanup = o->cleanup;
  m->errors = o->errors;
  m->unordered = o->unordered;
  m->hand_results = hand_results;
  m->cap = cap;
  m->budget = budget;
  m->deadline = deadline;
  m->chunks = (chunk *)(void *)((char *)m + head);
  m->nchunks = nchunks;
  slot *slots = (slot *)(void *)(m->chunks + nchunks);
  for (size_t i = nchunks; i-- > 0;) {
    chunk *c = &m->chunks[i];
    c->m = m;
    c->slots = slots + i * cap;
    atomic_init(&c->flags, 0);
    c->free_next = m->free_list;
    m->free_list = c;
  }
  m->args = args;
  m->owned_args = owned;
  m->n = n;
  m->source = source;
  m->source_arg = source_arg;
  m->input_error = input_error;
  m->input_done = source == NULL && n == 0;
  atomic_init(&m->ready, NULL);
  atomic_init(&m->stop, false);
  atomic_init(&m->word, 0);
  atomic_init(&m->live, 0);
  atomic_init(&m->refs, 1);

  fill(m);
  if (m->submitted_chunks == 0 && m->submit_failed) {
    /* The first submit was refused: nothing was taken from an array (the
     * caller keeps its args); what we own is released. */
    int rc = m->input_error;
    if (owned != NULL && m->cleanup != NULL) {
      for (size_t i = 0; i < n; i++) {
        m->cleanup(owned[i], NULL);
      }
    }
    imap_unref(m);
    return rc;
  }
  *out = m;
  return 0;
}

/* ---- the public calls ------------------------------------------------------
 */

int concur_imap_new(concur_imap **out, concur_executor *ex, concur_task_fn fn,
                    void *const *args, size_t n,
                    const concur_map_options *options) {
  if (out == NULL) {
    return CONCUR_EINVAL;
  }
  *out = NULL;
  if (ex == NULL || fn == NULL || (args == NULL && n > 0)) {
    return CONCUR_EINVAL;
  }
  return imap_create(out, ex, fn, args, n, NULL, NULL, options, true);
}

int concur_imap_new_source(concur_imap **out, concur_executor *ex,
                           concur_task_fn fn, concur_map_source_fn source,
                           void *source_arg,
                           const concur_map_options *options) {
  if (out == NULL) {
    return CONCUR_EINVAL;
  }
  *out = NULL;
  if (ex == NULL || fn == NULL || source == NULL) {
    return CONCUR_EINVAL;
  }
  return imap_create(out, ex, fn, NULL, 0, source, source_arg, options, true);
}

int concur_imap_next(concur_imap *it, int64_t timeout_ns,
                     concur_map_item *item) {
  concur__deadline deadline;
  if (it == NULL || item == NULL ||
      concur__deadline_from_timeout(timeout_ns, &deadline) != 0) {
    return CONCUR_EINVAL;
  }
  memset(item, 0, sizeof *item);
  return imap_next(it, deadline, item);
}

void concur_imap_free(concur_imap *it) {
  if (it == NULL) {
    return;
  }
  run_pending_cleanup(it);
  if (!it->stopped) {
    stop_all(it);
  }
  imap_unref(it);
}

/* Waits, helping, until no chunk of m is running (or the deadline). */
static void drain(concur_imap *m) {
  for (;;) {
    uint32_t w = atomic_load_explicit(&m->word, memory_order_acquire);
    if (atomic_load_explicit(&m->live, memory_order_acquire) == 0 ||
        concur__deadline_passed(m->deadline)) {
      return;
    }
    if (concur_executor_help(m->ex) > 0) {
      continue;
    }
    (void)await_end(m, w, m->deadline);
  }
}

int concur_executor_map(concur_executor *ex, concur_task_fn fn,
                        void *const *args, size_t n, void **results, int *codes,
                        const concur_map_options *options) {
  if (ex == NULL || fn == NULL || (args == NULL && n > 0)) {
    return CONCUR_EINVAL;
  }
  for (size_t i = 0; i < n; i++) {
    if (results != NULL) {
      results[i] = NULL;
    }
    if (codes != NULL) {
      codes[i] = CONCUR_ECANCELED;
    }
  }
  concur_imap *m = NULL;
  int rc =
      imap_create(&m, ex, fn, args, n, NULL, NULL, options, results != NULL);
  if (rc != 0) {
    return rc;
  }
  int item_error = 0, other_error = 0;
  for (;;) {
    concur_map_item item;
    memset(&item, 0, sizeof item);
    int r = imap_next(m, CONCUR__NO_DEADLINE, &item);
    if (r == 0) {
      break;
    }
    if (r == 1 || r == CONCUR_ETASK || r == CONCUR_ECANCELED) {
      if (results != NULL && r == 1) {
        results[item.index] = item.result;
      }
      if (codes != NULL) {
        codes[item.index] = item.code;
      }
      if (r != 1 && item_error == 0) {
        item_error = r;
      }
    } else if (other_error == 0) {
      other_error = r;
    }
  }
  if (other_error != CONCUR_ETIMEDOUT) {
    drain(m);
  }
  run_pending_cleanup(m);
  imap_unref(m);
  if (other_error == CONCUR_ETIMEDOUT) {
    return other_error;
  }
  return item_error != 0 ? item_error : other_error;
}
