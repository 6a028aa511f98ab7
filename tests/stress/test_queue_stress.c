/*
 * Stress tests for concur/queue.h, sized by CONCUR_TEST_SCALE, randomised
 * by the printed seed:
 * - MPMC 4 producers x 4 consumers on each kind: per-producer order (FIFO,
 *   SIMPLE, and PRIORITY with rising priorities), no loss, no duplicate,
 *   the sum; then a concurrent drain of a prefilled PRIORITY (and LIFO)
 *   queue, where every consumer's sequence must be in priority (stack)
 *   order.
 * - Shutdown races: shutdown, normal or immediate at random, while 8 threads
 *   put and get with random timing, and while 8 threads are blocked in put
 *   or in get; every round, items got + dropped + left equals items put.
 * - Wake-ups: bursts of puts (gets) against many parked getters (putters)
 *   must wake every one of them: a lost wake-up shows as a timeout.
 */
#include "harness.h"

#include "concur/queue.h"

#include <sched.h>
#include <stdlib.h>
#include <string.h>

#define V(x) ((void *)(uintptr_t)(x))
#define U(p) ((uintptr_t)(p))

static const concur_queue_kind all_kinds[] = {
    CONCUR_QUEUE_FIFO, CONCUR_QUEUE_LIFO, CONCUR_QUEUE_PRIORITY,
    CONCUR_QUEUE_SIMPLE};
#define BOUNDED_KINDS 3
#define ALL_KINDS 4

static concur_queue *make(concur_queue_kind kind, int64_t maxsize,
                          concur_item_free_fn item_free, void *arg) {
  concur_queue_options o = CONCUR_QUEUE_OPTIONS_INIT;
  o.kind = kind;
  o.maxsize = kind == CONCUR_QUEUE_SIMPLE ? CONCUR_UNBOUNDED : maxsize;
  o.item_free = item_free;
  o.item_free_arg = arg;
  concur_queue *q = NULL;
  ck_assert_rc(concur_queue_new(&q, &o), 0);
  return q;
}

static pthread_t spawn(void *(*fn)(void *), void *arg) {
  pthread_t t;
  ck_assert_rc(concur__thread_spawn(&t, 0, true, fn, arg), 0);
  return t;
}

static uint64_t seed_for(int salt) {
  uint64_t s = harness_seed() ^ ((uint64_t)salt * 0x9E3779B97F4A7C15u);
  return s == 0 ? 1 : s;
}

/* ---- MPMC 4 x 4 ------------------------------------------------------------
 */

#define PRODUCERS 4
#define CONSUMERS 4

typedef struct mpmc {
  concur_queue *q;
  concur_queue_kind kind;
  long per_producer;
  _Atomic unsigned char *seen; /* PRODUCERS * per_producer counters */
} mpmc;

typedef struct mpmc_thread {
  mpmc *m;
  int index;
  int rc;
  long count;
  unsigned long long sum;
  long order_errors;
} mpmc_thread;

/* Items are (producer << 32) | (seq + 1); PRIORITY puts use seq as the
 * priority, so each producer's items rise in priority too. */
static void *mpmc_producer(void *arg) {
  mpmc_thread *t = arg;
  mpmc *m = t->m;
  for (long i = 0; i < m->per_producer; i++) {
    uintptr_t v = ((uintptr_t)t->index << 32) | (uintptr_t)(i + 1);
    int rc = m->kind == CONCUR_QUEUE_PRIORITY
                 ? concur_queue_put_priority(m->q, V(v), i, CONCUR_FOREVER)
                 : concur_queue_put(m->q, V(v), CONCUR_FOREVER);
    if (rc != 0) {
      t->rc = rc;
      return NULL;
    }
  }
  return NULL;
}

static void *mpmc_consumer(void *arg) {
  mpmc_thread *t = arg;
  mpmc *m = t->m;
  long last[PRODUCERS] = {0};
  bool ordered = m->kind != CONCUR_QUEUE_LIFO;
  void *batch[16];
  uint64_t rng = seed_for(t->index + 100);
  for (;;) {
    /* Mix single gets and batches. */
    int n = harness_rand(&rng) % 4 == 0
                ? concur_queue_get_many(m->q, batch, 16, CONCUR_FOREVER)
                : (concur_queue_get(m->q, &batch[0], CONCUR_FOREVER) == 0
                       ? 1
                       : CONCUR_ESHUTDOWN);
    if (n < 0) {
      t->rc = n;
      return NULL;
    }
    for (int i = 0; i < n; i++) {
      uintptr_t v = U(batch[i]);
      int p = (int)(v >> 32);
      long seq = (long)(v & 0xffffffffu);
      if (p >= PRODUCERS || seq < 1 || seq > m->per_producer) {
        t->order_errors++;
        continue;
      }
      if (ordered && seq <= last[p]) {
        t->order_errors++;
      }
      last[p] = seq;
      atomic_fetch_add(&m->seen[(long)p * m->per_producer + seq - 1], 1);
      t->count++;
      t->sum += v;
      if (m->kind != CONCUR_QUEUE_SIMPLE) {
        int rc = concur_queue_task_done(m->q);
        if (rc != 0) {
          t->rc = rc;
        }
      }
    }
  }
}

START_TEST(mpmc_4x4_order_no_loss_no_duplicate) {
  mpmc m;
  m.kind = all_kinds[_i];
  m.per_producer = 20000 * harness_scale();
  m.q = make(m.kind, 64, NULL, NULL);
  size_t total = (size_t)(PRODUCERS * m.per_producer);
  m.seen = calloc(total, sizeof *m.seen);
  ck_assert_ptr_nonnull(m.seen);
  mpmc_thread p[PRODUCERS];
  mpmc_thread c[CONSUMERS];
  pthread_t tp[PRODUCERS];
  pthread_t tc[CONSUMERS];
  for (int i = 0; i < CONSUMERS; i++) {
    c[i] = (mpmc_thread){&m, i, 0, 0, 0, 0};
    tc[i] = spawn(mpmc_consumer, &c[i]);
  }
  for (int i = 0; i < PRODUCERS; i++) {
    p[i] = (mpmc_thread){&m, i, 0, 0, 0, 0};
    tp[i] = spawn(mpmc_producer, &p[i]);
  }
  for (int i = 0; i < PRODUCERS; i++) {
    pthread_join(tp[i], NULL);
    ck_assert_rc(p[i].rc, 0);
  }
  ck_assert_rc(concur_queue_shutdown(m.q, false), 0);
  long count = 0;
  unsigned long long sum = 0;
  for (int i = 0; i < CONSUMERS; i++) {
    pthread_join(tc[i], NULL);
    ck_assert_rc(c[i].rc, CONCUR_ESHUTDOWN);
    ck_assert_int_eq(c[i].order_errors, 0);
    count += c[i].count;
    sum += c[i].sum;
  }
  ck_assert_int_eq(count, (long)total);
  unsigned long long want = 0;
  for (int pi = 0; pi < PRODUCERS; pi++) {
    for (long s = 1; s <= m.per_producer; s++) {
      want += ((unsigned long long)pi << 32) | (unsigned long long)s;
      ck_assert_msg(atomic_load(&m.seen[(long)pi * m.per_producer + s - 1]) ==
                        1,
                    "item %d/%ld seen %d times", pi, s,
                    atomic_load(&m.seen[(long)pi * m.per_producer + s - 1]));
    }
  }
  ck_assert_uint_eq(sum, want);
  if (m.kind != CONCUR_QUEUE_SIMPLE) {
    ck_assert_rc(concur_queue_join(m.q, CONCUR_NOWAIT), 0);
  }
  free(m.seen);
  concur_queue_free(m.q);
}
END_TEST

/* Prefilled by 4 threads with random priorities, drained by 4: each
 * consumer's own sequence must be sorted, since nothing is put meanwhile. */
typedef struct drain_thread {
  concur_queue *q;
  concur_queue_kind kind;
  int index;
  long per;
  int rc;
  long errors;
  long count;
} drain_thread;

/* Items: (priority << 40) | (thread << 32) | seq. */
static void *drain_filler(void *arg) {
  drain_thread *t = arg;
  uint64_t rng = seed_for(t->index + 200);
  for (long i = 0; i < t->per; i++) {
    uint64_t prio = harness_rand(&rng) % 64;
    uintptr_t v =
        (uintptr_t)((prio << 40) | ((uint64_t)t->index << 32) | (uint64_t)i);
    int rc = t->kind == CONCUR_QUEUE_PRIORITY
                 ? concur_queue_put_priority(t->q, V(v), (int64_t)prio, 0)
                 : concur_queue_put(t->q, V(v), 0);
    if (rc != 0) {
      t->rc = rc;
      return NULL;
    }
  }
  return NULL;
}

static void *drain_consumer(void *arg) {
  drain_thread *t = arg;
  uint64_t last_prio = 0;
  long last_seq[PRODUCERS][64];
  for (int p = 0; p < PRODUCERS; p++) {
    for (int k = 0; k < 64; k++) {
      last_seq[p][k] = t->kind == CONCUR_QUEUE_LIFO ? t->per : -1;
    }
  }
  for (;;) {
    void *item;
    int rc = concur_queue_get(t->q, &item, CONCUR_NOWAIT);
    if (rc != 0) {
      t->rc = rc;
      return NULL;
    }
    uint64_t v = U(item);
    uint64_t prio = v >> 40;
    int p = (int)((v >> 32) & 0xff);
    long seq = (long)(v & 0xffffffffu);
    if (t->kind == CONCUR_QUEUE_PRIORITY) {
      if (prio < last_prio || seq <= last_seq[p][prio]) {
        t->errors++;
      }
      last_prio = prio;
      last_seq[p][prio] = seq;
    } else if (seq >= last_seq[p][0]) { /* a stack: each producer's falls */
      t->errors++;
    } else {
      last_seq[p][0] = seq;
    }
    t->count++;
  }
}

START_TEST(mpmc_concurrent_drain_keeps_priority_and_stack_order) {
  concur_queue_kind kind = _i == 0 ? CONCUR_QUEUE_PRIORITY : CONCUR_QUEUE_LIFO;
  long per = 10000 * harness_scale();
  concur_queue *q = make(kind, CONCUR_UNBOUNDED, NULL, NULL);
  drain_thread f[PRODUCERS];
  drain_thread d[CONSUMERS];
  pthread_t t[PRODUCERS > CONSUMERS ? PRODUCERS : CONSUMERS];
  for (int i = 0; i < PRODUCERS; i++) {
    f[i] = (drain_thread){q, kind, i, per, 0, 0, 0};
    t[i] = spawn(drain_filler, &f[i]);
  }
  for (int i = 0; i < PRODUCERS; i++) {
    pthread_join(t[i], NULL);
    ck_assert_rc(f[i].rc, 0);
  }
  ck_assert_uint_eq(concur_queue_qsize(q), (size_t)(PRODUCERS * per));
  for (int i = 0; i < CONSUMERS; i++) {
    d[i] = (drain_thread){q, kind, i, per, 0, 0, 0};
    t[i] = spawn(drain_consumer, &d[i]);
  }
  long count = 0;
  for (int i = 0; i < CONSUMERS; i++) {
    pthread_join(t[i], NULL);
    ck_assert_rc(d[i].rc, CONCUR_ETIMEDOUT);
    ck_assert_int_eq(d[i].errors, 0);
    count += d[i].count;
  }
  ck_assert_int_eq(count, PRODUCERS * per);
  concur_queue_free(q);
}
END_TEST

/* ---- shutdown races
 * ---------------------------------------------------------- */

typedef struct race {
  concur_queue *q;
  concur_queue_kind kind;
  _Atomic long put_ok;
  _Atomic long got;
  _Atomic long dropped;
} race;

typedef struct race_thread {
  race *r;
  int index;
  int rc;
} race_thread;

static void race_drop(void *item, void *arg) {
  (void)item;
  atomic_fetch_add(&((race *)arg)->dropped, 1);
}

static void *race_putter(void *arg) {
  race_thread *t = arg;
  uint64_t rng = seed_for(t->index + 300);
  for (uintptr_t i = 1;; i++) {
    int rc = t->r->kind == CONCUR_QUEUE_PRIORITY
                 ? concur_queue_put_priority(t->r->q, V(i),
                                             (int64_t)(harness_rand(&rng) % 8),
                                             CONCUR_FOREVER)
                 : concur_queue_put(t->r->q, V(i), CONCUR_FOREVER);
    if (rc != 0) {
      t->rc = rc;
      return NULL;
    }
    atomic_fetch_add(&t->r->put_ok, 1);
  }
}

static void *race_getter(void *arg) {
  race_thread *t = arg;
  uint64_t rng = seed_for(t->index + 400);
  for (;;) {
    void *batch[4];
    int n = harness_rand(&rng) % 2
                ? concur_queue_get_many(t->r->q, batch, 4, CONCUR_FOREVER)
                : (concur_queue_get(t->r->q, batch, CONCUR_FOREVER) == 0
                       ? 1
                       : CONCUR_ESHUTDOWN);
    if (n < 0) {
      t->rc = n;
      return NULL;
    }
    atomic_fetch_add(&t->r->got, n);
  }
}

/* Counts what a normal shutdown left in the queue. */
static long drain_left(concur_queue *q) {
  long left = 0;
  void *item;
  int rc;
  while ((rc = concur_queue_get(q, &item, CONCUR_NOWAIT)) == 0) {
    left++;
  }
  ck_assert_rc(rc, CONCUR_ESHUTDOWN);
  return left;
}

START_TEST(shutdown_races_with_8_threads_putting_and_getting) {
  concur_queue_kind kind = all_kinds[_i];
  uint64_t rng = seed_for(_i + 1);
  long rounds = 60 * harness_scale();
  for (long round = 0; round < rounds; round++) {
    race r;
    memset(&r, 0, sizeof r);
    r.kind = kind;
    r.q = make(kind, 1 + (int64_t)(harness_rand(&rng) % 4), race_drop, &r);
    race_thread t[8];
    pthread_t th[8];
    for (int i = 0; i < 8; i++) {
      t[i] = (race_thread){&r, i, 0};
      th[i] = spawn(i % 2 == 0 ? race_putter : race_getter, &t[i]);
    }
    /* Random timing: wait for some number of blocked callers (which may
     * never all block at once: then the short wait just ends), or for
     * some number of items to have gone through. */
    if (harness_rand(&rng) % 2) {
      (void)concur__test_await_parked(r.q, 1 + harness_rand(&rng) % 4, 1000000);
    } else {
      long target = (long)(harness_rand(&rng) % 2000);
      int64_t until = harness_now_ns() + HARNESS_LONG_NS;
      while (atomic_load(&r.got) < target && harness_now_ns() < until) {
        sched_yield();
      }
    }
    bool immediate = harness_rand(&rng) % 2;
    ck_assert_rc(concur_queue_shutdown(r.q, immediate), 0);
    for (int i = 0; i < 8; i++) {
      pthread_join(th[i], NULL);
      ck_assert_rc(t[i].rc, CONCUR_ESHUTDOWN);
    }
    long left = drain_left(r.q);
    if (immediate) {
      ck_assert_int_eq(left, 0);
    }
    ck_assert_int_eq(atomic_load(&r.got) + atomic_load(&r.dropped) + left,
                     atomic_load(&r.put_ok));
    concur_queue_free(r.q);
  }
}
END_TEST

START_TEST(shutdown_while_8_threads_are_blocked) {
  concur_queue_kind kind = all_kinds[_i];
  uint64_t rng = seed_for(_i + 11);
  long rounds = 40 * harness_scale();
  for (long round = 0; round < rounds; round++) {
    race r;
    memset(&r, 0, sizeof r);
    r.kind = kind;
    /* Blocked in put needs a full bounded queue; SIMPLE never blocks put. */
    bool in_put = kind != CONCUR_QUEUE_SIMPLE && harness_rand(&rng) % 2;
    int64_t maxsize = 1 + (int64_t)(harness_rand(&rng) % 8);
    r.q = make(kind, maxsize, race_drop, &r);
    long prefill = in_put ? maxsize : 0;
    for (long i = 0; i < prefill; i++) {
      ck_assert_rc(concur_queue_put(r.q, V(i + 1), 0), 0);
    }
    atomic_store(&r.put_ok, prefill);
    race_thread t[8];
    pthread_t th[8];
    for (int i = 0; i < 8; i++) {
      t[i] = (race_thread){&r, i, 0};
      th[i] = spawn(in_put ? race_putter : race_getter, &t[i]);
    }
    ck_assert_rc(concur__test_await_parked(r.q, 8, HARNESS_LONG_NS), 0);
    bool immediate = harness_rand(&rng) % 2;
    ck_assert_rc(concur_queue_shutdown(r.q, immediate), 0);
    for (int i = 0; i < 8; i++) {
      pthread_join(th[i], NULL);
      ck_assert_rc(t[i].rc, CONCUR_ESHUTDOWN);
    }
    long left = drain_left(r.q);
    ck_assert_int_eq(atomic_load(&r.put_ok), prefill); /* none got in */
    ck_assert_int_eq(atomic_load(&r.got) + atomic_load(&r.dropped) + left,
                     prefill);
    ck_assert_int_eq(immediate ? atomic_load(&r.dropped) : left, prefill);
    concur_queue_free(r.q);
  }
}
END_TEST

/* ---- wake-ups
 * ------------------------------------------------------------------ */

typedef struct waker {
  concur_queue *q;
  int rc;
  int64_t timeout_ns;
} waker;

static void *get_one(void *arg) {
  waker *w = arg;
  void *item;
  w->rc = concur_queue_get(w->q, &item, w->timeout_ns);
  return NULL;
}

static void *put_one(void *arg) {
  waker *w = arg;
  w->rc = concur_queue_put(w->q, V(1), w->timeout_ns);
  return NULL;
}

#define WAITERS 8

START_TEST(bursts_wake_every_parked_waiter) {
  concur_queue_kind kind = all_kinds[_i];
  uint64_t rng = seed_for(_i + 21);
  long rounds = 100 * harness_scale();
  for (long round = 0; round < rounds; round++) {
    bool getters = kind == CONCUR_QUEUE_SIMPLE || harness_rand(&rng) % 2;
    concur_queue *q = make(kind, WAITERS, NULL, NULL);
    if (!getters) {
      for (int i = 0; i < WAITERS; i++) {
        ck_assert_rc(concur_queue_put(q, V(1), 0), 0);
      }
    }
    waker w[WAITERS];
    pthread_t th[WAITERS];
    for (int i = 0; i < WAITERS; i++) {
      w[i] = (waker){q, 1, HARNESS_LONG_NS};
      th[i] = spawn(getters ? get_one : put_one, &w[i]);
    }
    ck_assert_rc(concur__test_await_parked(q, WAITERS, HARNESS_LONG_NS), 0);
    /* The burst: one call per waiter, or a single batch. */
    if (getters) {
      for (int i = 0; i < WAITERS; i++) {
        ck_assert_rc(concur_queue_put(q, V(1), 0), 0);
      }
    } else if (harness_rand(&rng) % 2) {
      void *items[WAITERS];
      ck_assert_int_eq(concur_queue_get_many(q, items, WAITERS, 0), WAITERS);
    } else {
      for (int i = 0; i < WAITERS; i++) {
        void *item;
        ck_assert_rc(concur_queue_get(q, &item, 0), 0);
      }
    }
    for (int i = 0; i < WAITERS; i++) {
      pthread_join(th[i], NULL);
      ck_assert_rc(w[i].rc, 0); /* a lost wake-up would time out */
    }
    ck_assert_uint_eq(concur_queue_qsize(q), getters ? 0 : WAITERS);
    concur_queue_free(q);
  }
}
END_TEST

/* Timed waiters that give up while wake-ups are in flight must not strand
 * the others: every item put is got by someone before the round ends. */
typedef struct timed {
  concur_queue *q;
  _Atomic long *got;
  long want;
  int index;
  int rc;
} timed;

static void *timed_getter(void *arg) {
  timed *t = arg;
  uint64_t rng = seed_for(t->index + 500);
  while (atomic_load(t->got) < t->want) {
    void *item;
    int64_t timeout = (int64_t)(harness_rand(&rng) % 50000);
    int rc = concur_queue_get(t->q, &item, timeout);
    if (rc == 0) {
      atomic_fetch_add(t->got, 1);
    } else if (rc != CONCUR_ETIMEDOUT) {
      t->rc = rc;
      return NULL;
    }
  }
  return NULL;
}

START_TEST(timed_waiters_giving_up_strand_nobody) {
  concur_queue_kind kind = all_kinds[_i];
  uint64_t rng = seed_for(_i + 31);
  long items = 20000 * harness_scale();
  concur_queue *q = make(kind, 16, NULL, NULL);
  _Atomic long got = 0;
  timed t[6];
  pthread_t th[6];
  for (int i = 0; i < 6; i++) {
    t[i] = (timed){q, &got, items, i, 0};
    th[i] = spawn(timed_getter, &t[i]);
  }
  for (long i = 0; i < items; i++) {
    int64_t timeout = (int64_t)(harness_rand(&rng) % 20000);
    int rc = concur_queue_put(q, V(i + 1), timeout);
    if (rc == CONCUR_ETIMEDOUT) {
      i--;
      continue;
    }
    ck_assert_rc(rc, 0);
  }
  for (int i = 0; i < 6; i++) {
    pthread_join(th[i], NULL);
    ck_assert_rc(t[i].rc, 0);
  }
  ck_assert_int_eq(atomic_load(&got), items);
  ck_assert_uint_eq(concur_queue_qsize(q), 0);
  concur_queue_free(q);
}
END_TEST

Suite *concur_test_suite(void) {
  Suite *s = suite_create("queue_stress");
  TCase *tc = harness_tcase("stress", 120);
  tcase_add_loop_test(tc, mpmc_4x4_order_no_loss_no_duplicate, 0, ALL_KINDS);
  tcase_add_loop_test(tc, mpmc_concurrent_drain_keeps_priority_and_stack_order,
                      0, 2);
  tcase_add_loop_test(tc, shutdown_races_with_8_threads_putting_and_getting, 0,
                      ALL_KINDS);
  tcase_add_loop_test(tc, shutdown_while_8_threads_are_blocked, 0, ALL_KINDS);
  tcase_add_loop_test(tc, bursts_wake_every_parked_waiter, 0, ALL_KINDS);
  tcase_add_loop_test(tc, timed_waiters_giving_up_strand_nobody, 0, ALL_KINDS);
  suite_add_tcase(s, tc);
  return s;
}
