/*
 * concur/queue.h: every QUE scenario of the reliability catalogue (the ID is
 * in the test's name) and every function's success, errors and timeouts.
 *
 * Not tested, because the API leaves them out on purpose (see queue.h):
 * custom priority comparators, a failing comparator (the QUE-13 variant),
 * remove(item) and push_front (the rest of QUE-18), and draining a queue
 * into itself (QUE-16: get_many writes to a caller's array, not a queue).
 */
#include "harness.h"

#include "concur/queue.h"

#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define V(x) ((void *)(uintptr_t)(x))
#define U(p) ((uintptr_t)(p))
#define MS ((int64_t)1000000)

static const concur_queue_kind all_kinds[] = {
    CONCUR_QUEUE_FIFO, CONCUR_QUEUE_LIFO, CONCUR_QUEUE_PRIORITY,
    CONCUR_QUEUE_SIMPLE};
/* Loop tests over kinds that take a bound and track tasks: the first 3. */
#define BOUNDED_KINDS 3
#define ALL_KINDS 4

static concur_queue *make_full(concur_queue_kind kind, int64_t maxsize,
                               concur_item_free_fn item_free, void *arg) {
  concur_queue_options o = CONCUR_QUEUE_OPTIONS_INIT;
  o.kind = kind;
  o.maxsize = maxsize;
  o.item_free = item_free;
  o.item_free_arg = arg;
  concur_queue *q = NULL;
  ck_assert_rc(concur_queue_new(&q, &o), 0);
  ck_assert_ptr_nonnull(q);
  return q;
}

static concur_queue *make(concur_queue_kind kind, int64_t maxsize) {
  return make_full(kind, maxsize, NULL, NULL);
}

static pthread_t spawn(void *(*fn)(void *), void *arg) {
  pthread_t t;
  ck_assert_rc(concur__thread_spawn(&t, 0, true, fn, arg), 0);
  return t;
}

/* A queue call run in another thread; the main thread asserts on it. */
enum { OP_PUT, OP_GET, OP_GET_MANY, OP_JOIN };

typedef struct call {
  concur_queue *q;
  int op;
  void *item;
  int64_t timeout_ns;
  int rc;
  void *got[8];
} call;

static void *run_call(void *arg) {
  call *c = arg;
  switch (c->op) {
  case OP_PUT:
    c->rc = concur_queue_put(c->q, c->item, c->timeout_ns);
    break;
  case OP_GET:
    c->rc = concur_queue_get(c->q, &c->got[0], c->timeout_ns);
    break;
  case OP_GET_MANY:
    c->rc = concur_queue_get_many(c->q, c->got, 8, c->timeout_ns);
    break;
  default:
    c->rc = concur_queue_join(c->q, c->timeout_ns);
    break;
  }
  return NULL;
}

static call call_make(concur_queue *q, int op, void *item, int64_t timeout) {
  call c;
  memset(&c, 0, sizeof c);
  c.q = q;
  c.op = op;
  c.item = item;
  c.timeout_ns = timeout;
  c.rc = 1; /* not run yet */
  return c;
}

/* Puts with a priority equal to the value on PRIORITY queues. */
static int put_value(concur_queue *q, concur_queue_kind kind, uintptr_t v,
                     int64_t timeout) {
  if (kind == CONCUR_QUEUE_PRIORITY) {
    return concur_queue_put_priority(q, V(v), (int64_t)v, timeout);
  }
  return concur_queue_put(q, V(v), timeout);
}

static uintptr_t get_value(concur_queue *q) {
  void *item = V(0xdead);
  ck_assert_rc(concur_queue_get(q, &item, CONCUR_NOWAIT), 0);
  return U(item);
}

/* Counts item_free calls per item value (values < 4096). */
typedef struct freed {
  _Atomic int count[4096];
  _Atomic int total;
} freed;

static void count_free(void *item, void *arg) {
  freed *f = arg;
  atomic_fetch_add(&f->count[U(item) % 4096], 1);
  atomic_fetch_add(&f->total, 1);
}

/* ---- API: construction and bad input ----------------------------------- */

START_TEST(new_rejects_bad_options) {
  concur_queue *q = V(0x1);
  ck_assert_rc(concur_queue_new(NULL, NULL), CONCUR_EINVAL);
  concur_queue_options o = CONCUR_QUEUE_OPTIONS_INIT;
  o.size = sizeof o - 1;
  ck_assert_rc(concur_queue_new(&q, &o), CONCUR_EINVAL);
  o = (concur_queue_options)CONCUR_QUEUE_OPTIONS_INIT;
  o.kind = (concur_queue_kind)7;
  ck_assert_rc(concur_queue_new(&q, &o), CONCUR_EINVAL);
  const int64_t bad[] = {0, -1, CONCUR_DEFAULT, -3, INT64_MIN};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    o = (concur_queue_options)CONCUR_QUEUE_OPTIONS_INIT;
    o.maxsize = bad[i];
    ck_assert_rc(concur_queue_new(&q, &o), CONCUR_EINVAL);
  }
  o = (concur_queue_options)CONCUR_QUEUE_OPTIONS_INIT;
  o.kind = CONCUR_QUEUE_SIMPLE;
  o.maxsize = 10;
  ck_assert_rc(concur_queue_new(&q, &o), CONCUR_EINVAL);
  ck_assert_ptr_eq(q, V(0x1)); /* untouched on every error */
}
END_TEST

START_TEST(new_defaults_to_an_unbounded_fifo) {
  concur_queue *q = NULL;
  ck_assert_rc(concur_queue_new(&q, NULL), 0);
  ck_assert_int_eq(concur_queue_maxsize(q), CONCUR_UNBOUNDED);
  ck_assert(concur_queue_empty(q));
  ck_assert(!concur_queue_full(q));
  ck_assert(!concur_queue_is_shutdown(q));
  for (uintptr_t i = 1; i <= 1000; i++) {
    ck_assert_rc(concur_queue_put(q, V(i), CONCUR_NOWAIT), 0);
  }
  ck_assert(!concur_queue_full(q));
  ck_assert_uint_eq(concur_queue_qsize(q), 1000);
  for (uintptr_t i = 1; i <= 1000; i++) {
    ck_assert_uint_eq(get_value(q), i);
  }
  concur_queue_free(q);
  concur_queue_free(NULL); /* a no-op */
}
END_TEST

START_TEST(null_handles_are_einval) {
  void *item = V(7);
  void *items[2];
  ck_assert_rc(concur_queue_put(NULL, item, 0), CONCUR_EINVAL);
  ck_assert_rc(concur_queue_put_priority(NULL, item, 1, 0), CONCUR_EINVAL);
  ck_assert_rc(concur_queue_get(NULL, &item, 0), CONCUR_EINVAL);
  ck_assert_rc(concur_queue_get_many(NULL, items, 2, 0), CONCUR_EINVAL);
  ck_assert_rc(concur_queue_set_maxsize(NULL, 3), CONCUR_EINVAL);
  ck_assert_rc(concur_queue_task_done(NULL), CONCUR_EINVAL);
  ck_assert_rc(concur_queue_join(NULL, 0), CONCUR_EINVAL);
  ck_assert_rc(concur_queue_shutdown(NULL, false), CONCUR_EINVAL);
  ck_assert_int_eq(concur_queue_maxsize(NULL), CONCUR_EINVAL);
  ck_assert_uint_eq(concur_queue_qsize(NULL), 0);
  ck_assert(!concur_queue_empty(NULL));
  ck_assert(!concur_queue_full(NULL));
  ck_assert(!concur_queue_is_shutdown(NULL));
  ck_assert_ptr_eq(item, V(7));

  concur_queue *q = make(CONCUR_QUEUE_FIFO, 4);
  ck_assert_rc(concur_queue_put(q, V(1), 0), 0);
  ck_assert_rc(concur_queue_get(q, NULL, 0), CONCUR_EINVAL);
  ck_assert_rc(concur_queue_get_many(q, NULL, 2, 0), CONCUR_EINVAL);
  ck_assert_rc(concur_queue_get_many(q, items, 0, 0), CONCUR_EINVAL);
  ck_assert_uint_eq(concur_queue_qsize(q), 1); /* nothing taken */
  concur_queue_free(q);
}
END_TEST

START_TEST(negative_timeouts_are_einval_and_change_nothing) {
  concur_queue_kind kind = all_kinds[_i];
  concur_queue *q = make(kind, CONCUR_UNBOUNDED);
  ck_assert_rc(put_value(q, kind, 5, 0), 0);
  void *item = V(9);
  void *items[4] = {0};
  ck_assert_rc(concur_queue_put(q, V(6), -1), CONCUR_EINVAL);
  ck_assert_rc(concur_queue_put(q, V(6), INT64_MIN), CONCUR_EINVAL);
  ck_assert_rc(concur_queue_get(q, &item, -1), CONCUR_EINVAL);
  ck_assert_rc(concur_queue_get_many(q, items, 4, -5), CONCUR_EINVAL);
  if (kind == CONCUR_QUEUE_PRIORITY) {
    ck_assert_rc(concur_queue_put_priority(q, V(6), 0, -1), CONCUR_EINVAL);
  }
  if (kind != CONCUR_QUEUE_SIMPLE) {
    ck_assert_rc(concur_queue_join(q, -1), CONCUR_EINVAL);
  }
  ck_assert_ptr_eq(item, V(9));
  ck_assert_ptr_null(items[0]);
  ck_assert_uint_eq(concur_queue_qsize(q), 1);
  ck_assert_uint_eq(get_value(q), 5);
  concur_queue_free(q);
}
END_TEST

START_TEST(put_priority_needs_a_priority_queue) {
  for (int k = 0; k < ALL_KINDS; k++) {
    concur_queue *q = make(all_kinds[k], CONCUR_UNBOUNDED);
    int want = all_kinds[k] == CONCUR_QUEUE_PRIORITY ? 0 : CONCUR_EINVAL;
    ck_assert_rc(concur_queue_put_priority(q, V(1), 3, 0), want);
    ck_assert_uint_eq(concur_queue_qsize(q), want == 0 ? 1 : 0);
    concur_queue_free(q);
  }
}
END_TEST

START_TEST(simple_queue_has_no_bound_and_no_task_tracking) {
  concur_queue *q = make(CONCUR_QUEUE_SIMPLE, CONCUR_UNBOUNDED);
  ck_assert_rc(concur_queue_set_maxsize(q, 4), CONCUR_EINVAL);
  ck_assert_rc(concur_queue_set_maxsize(q, CONCUR_UNBOUNDED), CONCUR_EINVAL);
  ck_assert_int_eq(concur_queue_maxsize(q), CONCUR_UNBOUNDED);
  ck_assert_rc(concur_queue_put(q, V(1), 0), 0);
  ck_assert_rc(concur_queue_task_done(q), CONCUR_EINVAL);
  ck_assert_rc(concur_queue_join(q, 0), CONCUR_EINVAL);
  ck_assert_uint_eq(get_value(q), 1);
  concur_queue_free(q);
}
END_TEST

/* A thread that writes plain memory, then puts a pointer to it: the getter
 * must see the writes (TSan reports any missing happens-before). */
typedef struct message {
  int a;
  long b;
  char text[16];
} message;

typedef struct hb_arg {
  concur_queue *q;
  message *m;
  int rc;
} hb_arg;

static void *hb_producer(void *arg) {
  hb_arg *h = arg;
  for (int i = 0; i < 100; i++) {
    h->m[i].a = i;
    h->m[i].b = 1000L * i;
    snprintf(h->m[i].text, sizeof h->m[i].text, "m%d", i);
    int rc = concur_queue_put(h->q, &h->m[i], CONCUR_FOREVER);
    if (rc != 0) {
      h->rc = rc;
    }
  }
  return NULL;
}

static void *hb_worker(void *arg) {
  hb_arg *h = arg;
  for (int i = 0; i < 100; i++) {
    void *item;
    int rc = concur_queue_get(h->q, &item, CONCUR_FOREVER);
    if (rc != 0) {
      h->rc = rc;
      break;
    }
    ((message *)item)->b += 1; /* then marked done: visible to join */
    rc = concur_queue_task_done(h->q);
    if (rc != 0) {
      h->rc = rc;
    }
  }
  return NULL;
}

START_TEST(put_happens_before_get_and_task_done_before_join) {
  concur_queue_kind kind = all_kinds[_i];
  concur_queue *q =
      make(kind, kind == CONCUR_QUEUE_SIMPLE ? CONCUR_UNBOUNDED : 8);
  message m[100];
  hb_arg h = {q, m, 0};
  pthread_t t = spawn(hb_producer, &h);
  for (int i = 0; i < 100; i++) {
    void *item;
    ck_assert_rc(concur_queue_get(q, &item, HARNESS_LONG_NS), 0);
    message *got = item;
    ck_assert_int_eq(got->b, 1000L * got->a);
    ck_assert_int_eq(got->text[0], 'm');
  }
  pthread_join(t, NULL);
  ck_assert_int_eq(h.rc, 0);
  if (kind != CONCUR_QUEUE_SIMPLE) {
    ck_assert_rc(concur_queue_set_maxsize(q, CONCUR_UNBOUNDED), 0);
    for (int i = 0; i < 100; i++) {
      ck_assert_rc(concur_queue_task_done(q), 0); /* the first 100 puts */
      ck_assert_rc(concur_queue_put(q, &m[i], 0), 0);
    }
    pthread_t w = spawn(hb_worker, &h);
    ck_assert_rc(concur_queue_join(q, HARNESS_LONG_NS), 0);
    for (int i = 0; i < 100; i++) {
      ck_assert_int_eq(m[i].b, 1000L * i + 1);
    }
    pthread_join(w, NULL);
    ck_assert_int_eq(h.rc, 0);
  }
  concur_queue_free(q);
}
END_TEST

/* ---- QUE-01 .. QUE-04: order, bounds, blocking, timeouts ----------------- */

START_TEST(QUE_01_fifo_lifo_priority_orders) {
  static const uintptr_t want[ALL_KINDS][3] = {
      {111, 333, 222}, {222, 333, 111}, {111, 222, 333}, {111, 333, 222}};
  concur_queue_kind kind = all_kinds[_i];
  concur_queue *q = make(kind, CONCUR_UNBOUNDED);
  for (int round = 0; round < 2; round++) { /* reusing it gives the same */
    ck_assert_rc(put_value(q, kind, 111, 0), 0);
    ck_assert_rc(put_value(q, kind, 333, 0), 0);
    ck_assert_rc(put_value(q, kind, 222, 0), 0);
    for (int i = 0; i < 3; i++) {
      ck_assert_uint_eq(get_value(q), want[_i][i]);
    }
    ck_assert(concur_queue_empty(q));
  }
  concur_queue_free(q);
}
END_TEST

START_TEST(QUE_02_bounded_nowait_full_and_empty) {
  concur_queue_kind kind = all_kinds[_i];
  concur_queue *q = make(kind, 5);
  ck_assert_int_eq(concur_queue_maxsize(q), 5);
  ck_assert(concur_queue_empty(q));
  ck_assert(!concur_queue_full(q));
  ck_assert_uint_eq(concur_queue_qsize(q), 0);
  for (uintptr_t i = 1; i <= 5; i++) {
    ck_assert_rc(put_value(q, kind, i, CONCUR_NOWAIT), 0);
    ck_assert_uint_eq(concur_queue_qsize(q), i);
    ck_assert(!concur_queue_empty(q));
    ck_assert(concur_queue_full(q) == (i == 5));
  }
  ck_assert_rc(put_value(q, kind, 6, CONCUR_NOWAIT), CONCUR_ETIMEDOUT);
  ck_assert_rc(put_value(q, kind, 6, 1 * MS), CONCUR_ETIMEDOUT);
  ck_assert_uint_eq(concur_queue_qsize(q), 5);
  for (int i = 0; i < 5; i++) {
    (void)get_value(q);
  }
  void *item = V(77);
  ck_assert_rc(concur_queue_get(q, &item, CONCUR_NOWAIT), CONCUR_ETIMEDOUT);
  ck_assert_rc(concur_queue_get(q, &item, 1 * MS), CONCUR_ETIMEDOUT);
  ck_assert_ptr_eq(item, V(77));
  ck_assert(concur_queue_empty(q));
  concur_queue_free(q);
}
END_TEST

START_TEST(QUE_03_blocked_put_and_get_return_after_the_other_side) {
  concur_queue_kind kind = all_kinds[_i];
  const int64_t timeouts[] = {CONCUR_FOREVER, 10000 * MS};
  for (int t = 0; t < 2; t++) {
    concur_queue *q = make(kind, 1);
    ck_assert_rc(put_value(q, kind, 1, 0), 0);
    call c = call_make(q, OP_PUT, V(2), timeouts[t]);
    if (kind == CONCUR_QUEUE_PRIORITY) {
      c.item = V(2); /* plain put: priority 0, still leaves after 1's get */
    }
    pthread_t th = spawn(run_call, &c);
    ck_assert_rc(concur__test_await_parked(q, 1, HARNESS_LONG_NS), 0);
    ck_assert_uint_eq(get_value(q), 1);
    pthread_join(th, NULL);
    ck_assert_rc(c.rc, 0);
    ck_assert_uint_eq(get_value(q), 2);

    c = call_make(q, OP_GET, NULL, timeouts[t]);
    th = spawn(run_call, &c);
    ck_assert_rc(concur__test_await_parked(q, 1, HARNESS_LONG_NS), 0);
    ck_assert_rc(put_value(q, kind, 3, 0), 0);
    pthread_join(th, NULL);
    ck_assert_rc(c.rc, 0);
    ck_assert_ptr_eq(c.got[0], V(3));
    ck_assert(concur_queue_empty(q));
    concur_queue_free(q);
  }
}
END_TEST

START_TEST(QUE_04_timed_put_and_get_time_out_in_the_window) {
  concur_queue_kind kind = all_kinds[_i];
  const int64_t timeout = 50 * MS;
  concur_queue *q = make(kind, 1);
  void *items[4];
  void *item = V(5);
  int64_t t0 = harness_now_ns();
  ck_assert_rc(concur_queue_get(q, &item, timeout), CONCUR_ETIMEDOUT);
  HARNESS_ASSERT_TIMED_OUT(harness_now_ns() - t0, timeout);
  t0 = harness_now_ns();
  ck_assert_rc(concur_queue_get_many(q, items, 4, timeout), CONCUR_ETIMEDOUT);
  HARNESS_ASSERT_TIMED_OUT(harness_now_ns() - t0, timeout);
  ck_assert_ptr_eq(item, V(5));

  ck_assert_rc(put_value(q, kind, 1, 0), 0);
  t0 = harness_now_ns();
  ck_assert_rc(put_value(q, kind, 2, timeout), CONCUR_ETIMEDOUT);
  HARNESS_ASSERT_TIMED_OUT(harness_now_ns() - t0, timeout);
  /* A zero timeout polls: it fails at once, well inside the bound. */
  t0 = harness_now_ns();
  ck_assert_rc(put_value(q, kind, 2, CONCUR_NOWAIT), CONCUR_ETIMEDOUT);
  ck_assert_int_lt(harness_now_ns() - t0, HARNESS_LONG_NS);
  ck_assert_rc(put_value(q, kind, 2, -1), CONCUR_EINVAL);
  ck_assert_uint_eq(concur_queue_qsize(q), 1);
  ck_assert_uint_eq(get_value(q), 1);
  concur_queue_free(q);
}
END_TEST

/* ---- QUE-05, QUE-06: task_done/join, maxsize at run time -------------------
 */

typedef struct worker_arg {
  concur_queue *q;
  int items;
  _Atomic int *done;
  int rc;
} worker_arg;

static void *task_worker(void *arg) {
  worker_arg *w = arg;
  for (int i = 0; i < w->items; i++) {
    void *item;
    int rc = concur_queue_get(w->q, &item, CONCUR_FOREVER);
    if (rc != 0) {
      w->rc = rc;
      return NULL;
    }
    atomic_fetch_add(w->done, 1); /* before task_done: join must see it */
    rc = concur_queue_task_done(w->q);
    if (rc != 0) {
      w->rc = rc;
    }
  }
  return NULL;
}

START_TEST(QUE_05_task_done_and_join) {
  concur_queue_kind kind = all_kinds[_i];
  concur_queue *q = make(kind, CONCUR_UNBOUNDED);
  ck_assert_rc(concur_queue_task_done(q), CONCUR_EOVERFLOW);
  ck_assert_rc(concur_queue_join(q, CONCUR_NOWAIT), 0);
  ck_assert_rc(concur_queue_join(q, CONCUR_FOREVER), 0);
  for (uintptr_t i = 0; i < 100; i++) {
    ck_assert_rc(put_value(q, kind, i, 0), 0);
  }
  ck_assert_rc(concur_queue_join(q, CONCUR_NOWAIT), CONCUR_ETIMEDOUT);
  int64_t t0 = harness_now_ns();
  ck_assert_rc(concur_queue_join(q, 20 * MS), CONCUR_ETIMEDOUT);
  HARNESS_ASSERT_TIMED_OUT(harness_now_ns() - t0, 20 * MS);

  _Atomic int done = 0;
  worker_arg w[2] = {{q, 50, &done, 0}, {q, 50, &done, 0}};
  pthread_t t[2] = {spawn(task_worker, &w[0]), spawn(task_worker, &w[1])};
  ck_assert_rc(concur_queue_join(q, HARNESS_LONG_NS), 0);
  ck_assert_int_eq(atomic_load(&done), 100);
  ck_assert_rc(concur_queue_join(q, CONCUR_NOWAIT), 0); /* works twice */
  for (int i = 0; i < 2; i++) {
    pthread_join(t[i], NULL);
    ck_assert_int_eq(w[i].rc, 0);
  }
  ck_assert_rc(concur_queue_task_done(q), CONCUR_EOVERFLOW);
  /* task_done may run ahead of gets, as in Python: it counts puts. */
  ck_assert_rc(put_value(q, kind, 1, 0), 0);
  ck_assert_rc(concur_queue_task_done(q), 0);
  ck_assert_rc(concur_queue_join(q, CONCUR_NOWAIT), 0);
  ck_assert_rc(concur_queue_task_done(q), CONCUR_EOVERFLOW);
  ck_assert_uint_eq(concur_queue_qsize(q), 1);
  concur_queue_free(q);
}
END_TEST

START_TEST(QUE_06_maxsize_changes_at_run_time) {
  concur_queue_kind kind = all_kinds[_i];
  concur_queue *q = make(kind, 5);
  for (uintptr_t i = 1; i <= 3; i++) {
    ck_assert_rc(put_value(q, kind, i, 0), 0);
  }
  /* Lowering takes effect for the next put; queued items stay. */
  ck_assert_rc(concur_queue_set_maxsize(q, 2), 0);
  ck_assert_int_eq(concur_queue_maxsize(q), 2);
  ck_assert(concur_queue_full(q));
  ck_assert_uint_eq(concur_queue_qsize(q), 3);
  ck_assert_rc(put_value(q, kind, 4, CONCUR_NOWAIT), CONCUR_ETIMEDOUT);
  (void)get_value(q);
  ck_assert_rc(put_value(q, kind, 4, CONCUR_NOWAIT), CONCUR_ETIMEDOUT);
  (void)get_value(q);
  ck_assert(!concur_queue_full(q));
  ck_assert_rc(put_value(q, kind, 4, CONCUR_NOWAIT), 0);
  ck_assert(concur_queue_full(q));
  /* Bad values change nothing. */
  ck_assert_rc(concur_queue_set_maxsize(q, 0), CONCUR_EINVAL);
  ck_assert_rc(concur_queue_set_maxsize(q, -7), CONCUR_EINVAL);
  ck_assert_int_eq(concur_queue_maxsize(q), 2);
  /* Raising wakes a blocked putter. */
  call c = call_make(q, OP_PUT, V(5), CONCUR_FOREVER);
  pthread_t t = spawn(run_call, &c);
  ck_assert_rc(concur__test_await_parked(q, 1, HARNESS_LONG_NS), 0);
  ck_assert_rc(concur_queue_set_maxsize(q, 3), 0);
  pthread_join(t, NULL);
  ck_assert_rc(c.rc, 0);
  ck_assert_uint_eq(concur_queue_qsize(q), 3);
  /* Unbounded: the storage grows past any earlier bound. */
  ck_assert_rc(concur_queue_set_maxsize(q, CONCUR_UNBOUNDED), 0);
  ck_assert_int_eq(concur_queue_maxsize(q), CONCUR_UNBOUNDED);
  for (uintptr_t i = 10; i < 10010; i++) {
    ck_assert_rc(put_value(q, kind, i, CONCUR_NOWAIT), 0);
  }
  ck_assert(!concur_queue_full(q));
  ck_assert_uint_eq(concur_queue_qsize(q), 10003);
  /* And back to a bound far below the count. */
  ck_assert_rc(concur_queue_set_maxsize(q, 100), 0);
  ck_assert(concur_queue_full(q));
  ck_assert_rc(put_value(q, kind, 1, CONCUR_NOWAIT), CONCUR_ETIMEDOUT);
  concur_queue_free(q);
}
END_TEST

/* ---- QUE-07 .. QUE-11: shutdown --------------------------------------------
 */

START_TEST(QUE_07_shutdown_fails_puts_and_drains_gets) {
  concur_queue_kind kind = all_kinds[_i];
  concur_queue *q = make(kind, CONCUR_UNBOUNDED);
  ck_assert_rc(put_value(q, kind, 1, 0), 0);
  ck_assert_rc(put_value(q, kind, 2, 0), 0);
  ck_assert_rc(concur_queue_shutdown(q, false), 0);
  ck_assert(concur_queue_is_shutdown(q));
  ck_assert_rc(concur_queue_put(q, V(3), CONCUR_NOWAIT), CONCUR_ESHUTDOWN);
  ck_assert_rc(concur_queue_put(q, V(3), CONCUR_FOREVER), CONCUR_ESHUTDOWN);
  if (kind == CONCUR_QUEUE_PRIORITY) {
    ck_assert_rc(concur_queue_put_priority(q, V(3), 0, 0), CONCUR_ESHUTDOWN);
  }
  ck_assert_uint_eq(concur_queue_qsize(q), 2);
  (void)get_value(q);
  (void)get_value(q);
  void *item = V(9);
  void *items[2];
  ck_assert_rc(concur_queue_get(q, &item, CONCUR_NOWAIT), CONCUR_ESHUTDOWN);
  ck_assert_rc(concur_queue_get(q, &item, CONCUR_FOREVER), CONCUR_ESHUTDOWN);
  ck_assert_rc(concur_queue_get_many(q, items, 2, CONCUR_FOREVER),
               CONCUR_ESHUTDOWN);
  ck_assert_ptr_eq(item, V(9));
  concur_queue_free(q);

  /* Getters already blocked on an empty queue wake with ESHUTDOWN. */
  q = make(kind, CONCUR_UNBOUNDED);
  call c[3] = {call_make(q, OP_GET, NULL, CONCUR_FOREVER),
               call_make(q, OP_GET, NULL, 10000 * MS),
               call_make(q, OP_GET_MANY, NULL, CONCUR_FOREVER)};
  pthread_t t[3];
  for (int i = 0; i < 3; i++) {
    t[i] = spawn(run_call, &c[i]);
  }
  ck_assert_rc(concur__test_await_parked(q, 3, HARNESS_LONG_NS), 0);
  ck_assert_rc(concur_queue_shutdown(q, false), 0);
  for (int i = 0; i < 3; i++) {
    pthread_join(t[i], NULL);
    ck_assert_rc(c[i].rc, CONCUR_ESHUTDOWN);
  }
  concur_queue_free(q);
}
END_TEST

START_TEST(QUE_08_shutdown_immediate_drops_and_releases_join) {
  concur_queue_kind kind = all_kinds[_i];
  bool tracked = kind != CONCUR_QUEUE_SIMPLE;
  freed f;
  memset(&f, 0, sizeof f);
  concur_queue *q = make_full(kind, CONCUR_UNBOUNDED, count_free, &f);
  for (uintptr_t i = 1; i <= 3; i++) {
    ck_assert_rc(put_value(q, kind, i, 0), 0);
  }
  uintptr_t taken = get_value(q); /* got, not yet done */
  ck_assert_rc(concur_queue_shutdown(q, true), 0);
  ck_assert(concur_queue_is_shutdown(q));
  ck_assert_int_eq(atomic_load(&f.total), 2);
  ck_assert_int_eq(atomic_load(&f.count[taken]), 0);
  ck_assert_uint_eq(concur_queue_qsize(q), 0);
  void *item;
  ck_assert_rc(concur_queue_get(q, &item, CONCUR_FOREVER), CONCUR_ESHUTDOWN);
  ck_assert_rc(concur_queue_put(q, V(4), 0), CONCUR_ESHUTDOWN);
  if (tracked) {
    /* Dropped items count as done; the taken one is still unfinished. */
    ck_assert_rc(concur_queue_join(q, CONCUR_NOWAIT), CONCUR_ETIMEDOUT);
    ck_assert_rc(concur_queue_task_done(q), 0);
    ck_assert_rc(concur_queue_join(q, CONCUR_NOWAIT), 0);
    ck_assert_rc(concur_queue_task_done(q), CONCUR_EOVERFLOW);
  }
  /* Idempotent, and immediate may follow immediate or normal. */
  ck_assert_rc(concur_queue_shutdown(q, true), 0);
  ck_assert_rc(concur_queue_shutdown(q, false), 0);
  ck_assert(concur_queue_is_shutdown(q));
  concur_queue_free(q);
  ck_assert_int_eq(atomic_load(&f.total), 2); /* never twice */

  /* Normal, then immediate: the second drops what the first left. */
  memset(&f, 0, sizeof f);
  q = make_full(kind, CONCUR_UNBOUNDED, count_free, &f);
  ck_assert_rc(put_value(q, kind, 1, 0), 0);
  ck_assert_rc(put_value(q, kind, 2, 0), 0);
  ck_assert_rc(concur_queue_shutdown(q, false), 0);
  ck_assert_int_eq(atomic_load(&f.total), 0);
  (void)get_value(q);
  ck_assert_rc(concur_queue_shutdown(q, true), 0);
  ck_assert_int_eq(atomic_load(&f.total), 1);
  ck_assert_rc(concur_queue_get(q, &item, 0), CONCUR_ESHUTDOWN);
  if (tracked) {
    ck_assert_rc(concur_queue_task_done(q), 0);
    ck_assert_rc(concur_queue_join(q, 0), 0);
  }
  concur_queue_free(q);
  ck_assert_int_eq(atomic_load(&f.total), 1);
}
END_TEST

START_TEST(QUE_09_blocked_putters_wake_with_eshutdown) {
  concur_queue_kind kind = all_kinds[_i];
  for (int immediate = 0; immediate < 2; immediate++) {
    freed f;
    memset(&f, 0, sizeof f);
    concur_queue *q = make_full(kind, 2, count_free, &f);
    ck_assert_rc(put_value(q, kind, 1, 0), 0);
    ck_assert_rc(put_value(q, kind, 2, 0), 0);
    call c[3] = {call_make(q, OP_PUT, V(100), CONCUR_FOREVER),
                 call_make(q, OP_PUT, V(101), CONCUR_FOREVER),
                 call_make(q, OP_PUT, V(102), 10000 * MS)};
    pthread_t t[3];
    for (int i = 0; i < 3; i++) {
      t[i] = spawn(run_call, &c[i]);
    }
    ck_assert_rc(concur__test_await_parked(q, 3, HARNESS_LONG_NS), 0);
    ck_assert_rc(concur_queue_shutdown(q, immediate != 0), 0);
    for (int i = 0; i < 3; i++) {
      pthread_join(t[i], NULL);
      ck_assert_rc(c[i].rc, CONCUR_ESHUTDOWN);
    }
    /* A failed put's item stays the caller's: never handed to item_free. */
    ck_assert_int_eq(atomic_load(&f.total), immediate ? 2 : 0);
    ck_assert_uint_eq(concur_queue_qsize(q), immediate ? 0 : 2);
    concur_queue_free(q);
    ck_assert_int_eq(atomic_load(&f.total), 2);
    ck_assert_int_eq(atomic_load(&f.count[100]), 0);
  }
}
END_TEST

START_TEST(QUE_10_joiners_across_shutdown) {
  concur_queue_kind kind = all_kinds[_i];
  /* Normal: joiners return once the remaining items are done. */
  concur_queue *q = make(kind, CONCUR_UNBOUNDED);
  ck_assert_rc(put_value(q, kind, 1, 0), 0);
  ck_assert_rc(put_value(q, kind, 2, 0), 0);
  call j[2] = {call_make(q, OP_JOIN, NULL, CONCUR_FOREVER),
               call_make(q, OP_JOIN, NULL, 10000 * MS)};
  pthread_t t[2] = {spawn(run_call, &j[0]), spawn(run_call, &j[1])};
  ck_assert_rc(concur__test_await_parked(q, 2, HARNESS_LONG_NS), 0);
  ck_assert_rc(concur_queue_shutdown(q, false), 0);
  ck_assert_rc(concur_queue_join(q, CONCUR_NOWAIT), CONCUR_ETIMEDOUT);
  for (int i = 0; i < 2; i++) {
    (void)get_value(q);
    ck_assert_rc(concur_queue_task_done(q), 0);
  }
  for (int i = 0; i < 2; i++) {
    pthread_join(t[i], NULL);
    ck_assert_rc(j[i].rc, 0);
  }
  concur_queue_free(q);

  /* Immediate: at once, when nothing taken is unfinished. */
  q = make(kind, CONCUR_UNBOUNDED);
  for (uintptr_t i = 1; i <= 3; i++) {
    ck_assert_rc(put_value(q, kind, i, 0), 0);
  }
  j[0] = call_make(q, OP_JOIN, NULL, CONCUR_FOREVER);
  j[1] = call_make(q, OP_JOIN, NULL, CONCUR_FOREVER);
  t[0] = spawn(run_call, &j[0]);
  t[1] = spawn(run_call, &j[1]);
  ck_assert_rc(concur__test_await_parked(q, 2, HARNESS_LONG_NS), 0);
  ck_assert_rc(concur_queue_shutdown(q, true), 0);
  for (int i = 0; i < 2; i++) {
    pthread_join(t[i], NULL);
    ck_assert_rc(j[i].rc, 0);
  }
  concur_queue_free(q);

  /* Mixed: getters and a joiner blocked, and a putter on a full queue. */
  q = make(kind, 1);
  ck_assert_rc(put_value(q, kind, 1, 0), 0);
  (void)get_value(q); /* taken, not done: the joiner must wait */
  ck_assert_rc(put_value(q, kind, 2, 0), 0);
  call p = call_make(q, OP_PUT, V(3), CONCUR_FOREVER);
  pthread_t tp = spawn(run_call, &p);
  ck_assert_rc(concur__test_await_parked(q, 1, HARNESS_LONG_NS), 0);
  (void)get_value(q); /* the putter's item goes in; taken, not done */
  pthread_join(tp, NULL);
  ck_assert_rc(p.rc, 0);
  (void)get_value(q);
  call g[2] = {call_make(q, OP_GET, NULL, CONCUR_FOREVER),
               call_make(q, OP_GET_MANY, NULL, CONCUR_FOREVER)};
  call jj = call_make(q, OP_JOIN, NULL, CONCUR_FOREVER);
  pthread_t tg[2] = {spawn(run_call, &g[0]), spawn(run_call, &g[1])};
  pthread_t tj = spawn(run_call, &jj);
  ck_assert_rc(concur__test_await_parked(q, 3, HARNESS_LONG_NS), 0);
  ck_assert_rc(concur_queue_shutdown(q, false), 0);
  for (int i = 0; i < 2; i++) {
    pthread_join(tg[i], NULL);
    ck_assert_rc(g[i].rc, CONCUR_ESHUTDOWN);
  }
  for (int i = 0; i < 3; i++) {
    ck_assert_rc(concur_queue_task_done(q), 0);
  }
  pthread_join(tj, NULL);
  ck_assert_rc(jj.rc, 0);
  concur_queue_free(q);
}
END_TEST

/* QUE-11: 4 writers, 6 readers, 2 joiners, 65,536 messages. */
#define LOAD_MESSAGES 65536
#define LOAD_WRITERS 4
#define LOAD_READERS 6

typedef struct load {
  concur_queue *q;
  concur_queue_kind kind;
  _Atomic long put_ok;
  _Atomic long got;
  _Atomic unsigned long long got_sum;
  _Atomic long dropped;
  _Atomic unsigned long long dropped_sum;
} load;

typedef struct load_thread {
  load *l;
  int index;
  int rc; /* the last result */
} load_thread;

static void load_drop(void *item, void *arg) {
  load *l = arg;
  atomic_fetch_add(&l->dropped, 1);
  atomic_fetch_add(&l->dropped_sum, U(item));
}

static void *load_writer(void *arg) {
  load_thread *t = arg;
  long per = LOAD_MESSAGES / LOAD_WRITERS;
  t->rc = 0;
  for (long i = 0; i < per; i++) {
    uintptr_t v = (uintptr_t)(t->index * per + i + 1);
    t->rc = put_value(t->l->q, t->l->kind, v, CONCUR_FOREVER);
    if (t->rc != 0) {
      break;
    }
    atomic_fetch_add(&t->l->put_ok, 1);
  }
  return NULL;
}

static void *load_reader(void *arg) {
  load_thread *t = arg;
  for (;;) {
    void *item;
    t->rc = concur_queue_get(t->l->q, &item, CONCUR_FOREVER);
    if (t->rc != 0) {
      break;
    }
    atomic_fetch_add(&t->l->got_sum, U(item));
    atomic_fetch_add(&t->l->got, 1);
    int rc = concur_queue_task_done(t->l->q);
    if (rc != 0) {
      t->rc = rc;
      break;
    }
  }
  return NULL;
}

static void *load_joiner(void *arg) {
  load_thread *t = arg;
  t->rc = concur_queue_join(t->l->q, CONCUR_FOREVER);
  return NULL;
}

static void shutdown_under_load(concur_queue_kind kind, bool immediate) {
  load l;
  memset(&l, 0, sizeof l);
  l.kind = kind;
  l.q = make_full(kind, 256, load_drop, &l);
  load_thread w[LOAD_WRITERS];
  load_thread r[LOAD_READERS];
  load_thread j[2];
  pthread_t tw[LOAD_WRITERS];
  pthread_t tr[LOAD_READERS];
  pthread_t tj[2];
  for (int i = 0; i < LOAD_WRITERS; i++) {
    w[i] = (load_thread){&l, i, 1};
    tw[i] = spawn(load_writer, &w[i]);
  }
  for (int i = 0; i < LOAD_READERS; i++) {
    r[i] = (load_thread){&l, i, 1};
    tr[i] = spawn(load_reader, &r[i]);
  }
  for (int i = 0; i < 2; i++) {
    j[i] = (load_thread){&l, i, 1};
    tj[i] = spawn(load_joiner, &j[i]);
  }
  if (immediate) {
    /* Shut down in mid-stream: once a quarter has gone through. */
    int64_t until = harness_now_ns() + HARNESS_LONG_NS;
    while (atomic_load(&l.got) < LOAD_MESSAGES / 4 &&
           harness_now_ns() < until) {
      sched_yield();
    }
    ck_assert_rc(concur_queue_shutdown(l.q, true), 0);
  }
  for (int i = 0; i < LOAD_WRITERS; i++) {
    pthread_join(tw[i], NULL);
    ck_assert(w[i].rc == 0 || (immediate && w[i].rc == CONCUR_ESHUTDOWN));
  }
  if (!immediate) {
    ck_assert_rc(concur_queue_shutdown(l.q, false), 0);
  }
  for (int i = 0; i < LOAD_READERS; i++) {
    pthread_join(tr[i], NULL);
    ck_assert_rc(r[i].rc, CONCUR_ESHUTDOWN);
  }
  for (int i = 0; i < 2; i++) {
    pthread_join(tj[i], NULL);
    ck_assert_rc(j[i].rc, 0);
  }
  ck_assert_uint_eq(concur_queue_qsize(l.q), 0);
  long put_ok = atomic_load(&l.put_ok);
  ck_assert_int_eq(atomic_load(&l.got) + atomic_load(&l.dropped), put_ok);
  if (!immediate) {
    unsigned long long n = LOAD_MESSAGES;
    ck_assert_int_eq(put_ok, LOAD_MESSAGES);
    ck_assert_uint_eq(atomic_load(&l.got_sum), n * (n + 1) / 2);
  }
  concur_queue_free(l.q);
}

START_TEST(QUE_11_shutdown_under_load) {
  shutdown_under_load(all_kinds[_i], false);
}
END_TEST

START_TEST(QUE_11_shutdown_immediate_under_load) {
  shutdown_under_load(all_kinds[_i], true);
}
END_TEST

/* ---- QUE-12: order and many producers/consumers ----------------------------
 */

typedef struct order_arg {
  concur_queue *q;
  int rc;
} order_arg;

static void *put_0_to_99(void *arg) {
  order_arg *o = arg;
  for (uintptr_t i = 0; i < 100; i++) {
    int rc = concur_queue_put(o->q, V(i + 1), CONCUR_FOREVER);
    if (rc != 0) {
      o->rc = rc;
    }
  }
  return NULL;
}

START_TEST(QUE_12_one_producer_one_consumer_keep_order) {
  concur_queue_kind kind = _i == 0 ? CONCUR_QUEUE_FIFO : CONCUR_QUEUE_SIMPLE;
  concur_queue *q =
      make(kind, kind == CONCUR_QUEUE_SIMPLE ? CONCUR_UNBOUNDED : 7);
  order_arg o = {q, 0};
  pthread_t t = spawn(put_0_to_99, &o);
  for (uintptr_t i = 0; i < 100; i++) {
    void *item;
    ck_assert_rc(concur_queue_get(q, &item, HARNESS_LONG_NS), 0);
    ck_assert_uint_eq(U(item), i + 1);
  }
  pthread_join(t, NULL);
  ck_assert_int_eq(o.rc, 0);
  concur_queue_free(q);
}
END_TEST

#define MANY 50
#define MANY_ITEMS 10000
enum { MODE_BLOCKING, MODE_NOWAIT, MODE_10US };

typedef struct many {
  concur_queue *q;
  concur_queue_kind kind;
  int mode;
  _Atomic int seen[MANY_ITEMS + 1];
} many;

typedef struct many_thread {
  many *m;
  int index;
  int rc;
  long count;
} many_thread;

static int64_t many_timeout(int mode) {
  return mode == MODE_BLOCKING ? CONCUR_FOREVER
         : mode == MODE_NOWAIT ? CONCUR_NOWAIT
                               : 10000;
}

static void *many_producer(void *arg) {
  many_thread *t = arg;
  int per = MANY_ITEMS / MANY;
  for (int i = 0; i < per;) {
    uintptr_t v = (uintptr_t)(t->index * per + i + 1);
    int rc = put_value(t->m->q, t->m->kind, v, many_timeout(t->m->mode));
    if (rc == CONCUR_ETIMEDOUT) {
      sched_yield();
      continue;
    }
    if (rc != 0) {
      t->rc = rc;
      return NULL;
    }
    i++;
  }
  return NULL;
}

static void *many_consumer(void *arg) {
  many_thread *t = arg;
  for (;;) {
    void *item;
    int rc = concur_queue_get(t->m->q, &item, many_timeout(t->m->mode));
    if (rc == CONCUR_ETIMEDOUT) {
      sched_yield();
      continue;
    }
    if (rc != 0) {
      t->rc = rc;
      return NULL;
    }
    uintptr_t v = U(item);
    if (v >= 1 && v <= MANY_ITEMS) {
      atomic_fetch_add(&t->m->seen[v], 1);
    }
    t->count++;
  }
}

static void many_threads(concur_queue_kind kind, int mode) {
  static many m;
  memset(&m, 0, sizeof m);
  m.kind = kind;
  m.mode = mode;
  m.q = make(kind, kind == CONCUR_QUEUE_SIMPLE ? CONCUR_UNBOUNDED : 100);
  many_thread p[MANY];
  many_thread c[MANY];
  pthread_t tp[MANY];
  pthread_t tc[MANY];
  for (int i = 0; i < MANY; i++) {
    p[i] = (many_thread){&m, i, 0, 0};
    c[i] = (many_thread){&m, i, 0, 0};
    tc[i] = spawn(many_consumer, &c[i]);
    tp[i] = spawn(many_producer, &p[i]);
  }
  for (int i = 0; i < MANY; i++) {
    pthread_join(tp[i], NULL);
    ck_assert_rc(p[i].rc, 0);
  }
  /* Consumers drain what is left, then stop on ESHUTDOWN. */
  ck_assert_rc(concur_queue_shutdown(m.q, false), 0);
  long total = 0;
  for (int i = 0; i < MANY; i++) {
    pthread_join(tc[i], NULL);
    ck_assert_rc(c[i].rc, CONCUR_ESHUTDOWN);
    total += c[i].count;
  }
  ck_assert_int_eq(total, MANY_ITEMS);
  for (int v = 1; v <= MANY_ITEMS; v++) {
    ck_assert_msg(atomic_load(&m.seen[v]) == 1, "item %d seen %d times", v,
                  atomic_load(&m.seen[v]));
  }
  concur_queue_free(m.q);
}

START_TEST(QUE_12_many_producers_consumers_blocking) {
  many_threads(all_kinds[_i], MODE_BLOCKING);
}
END_TEST

START_TEST(QUE_12_many_producers_consumers_nowait) {
  many_threads(all_kinds[_i], MODE_NOWAIT);
}
END_TEST

START_TEST(QUE_12_many_producers_consumers_10us_timeout) {
  many_threads(all_kinds[_i], MODE_10US);
}
END_TEST

/* ---- QUE-13 .. QUE-16 -------------------------------------------------------
 */

START_TEST(QUE_13_failed_allocation_in_put_leaves_the_queue_consistent) {
  concur_queue_kind kind = all_kinds[_i];
  bool tracked = kind != CONCUR_QUEUE_SIMPLE;
  concur_queue *q = make(kind, CONCUR_UNBOUNDED);
  /* Fill until the storage must grow, with every allocation failing. */
  concur__fault_arm(CONCUR__FAULT_ALLOC, 1, 1);
  uintptr_t n = 0;
  int rc;
  while ((rc = put_value(q, kind, n + 1, CONCUR_NOWAIT)) == 0) {
    n++;
    ck_assert_uint_lt(n, 1u << 20);
  }
  ck_assert_rc(rc, CONCUR_ENOMEM);
  ck_assert_rc(put_value(q, kind, n + 1, CONCUR_FOREVER), CONCUR_ENOMEM);
  concur__fault_arm(CONCUR__FAULT_ALLOC, 0, 0);
  ck_assert_uint_eq(concur_queue_qsize(q), n);
  ck_assert(!concur_queue_full(q));
  if (tracked) {
    ck_assert_rc(concur_queue_join(q, CONCUR_NOWAIT), CONCUR_ETIMEDOUT);
  }
  /* Usable: the next put grows the storage; every item is intact. */
  ck_assert_rc(put_value(q, kind, n + 1, CONCUR_NOWAIT), 0);
  ck_assert_uint_eq(concur_queue_qsize(q), n + 1);
  uintptr_t sum = 0;
  for (uintptr_t i = 0; i <= n; i++) {
    uintptr_t v = get_value(q);
    if (kind == CONCUR_QUEUE_FIFO || kind == CONCUR_QUEUE_SIMPLE ||
        kind == CONCUR_QUEUE_PRIORITY) {
      ck_assert_uint_eq(v, i + 1);
    } else {
      ck_assert_uint_eq(v, n + 1 - i);
    }
    sum += v;
  }
  ck_assert_uint_eq(sum, (n + 1) * (n + 2) / 2);
  if (tracked) {
    for (uintptr_t i = 0; i <= n; i++) {
      ck_assert_rc(concur_queue_task_done(q), 0);
    }
    ck_assert_rc(concur_queue_task_done(q), CONCUR_EOVERFLOW);
    ck_assert_rc(concur_queue_join(q, CONCUR_NOWAIT), 0);
  }
  concur_queue_free(q);
}
END_TEST

START_TEST(QUE_14_items_leave_on_get_and_the_rest_are_freed_once) {
  concur_queue_kind kind = all_kinds[_i];
  freed f;
  memset(&f, 0, sizeof f);
  concur_queue *q = make_full(kind, CONCUR_UNBOUNDED, count_free, &f);
  for (uintptr_t i = 0; i < 200; i++) {
    ck_assert_rc(put_value(q, kind, i, 0), 0);
  }
  uintptr_t taken[50];
  for (int i = 0; i < 50; i++) {
    taken[i] = get_value(q);
  }
  ck_assert_int_eq(atomic_load(&f.total), 0);
  concur_queue_free(q);
  ck_assert_int_eq(atomic_load(&f.total), 150);
  for (int i = 0; i < 50; i++) {
    ck_assert_int_eq(atomic_load(&f.count[taken[i]]), 0);
    f.count[taken[i]] = 1; /* so that the loop below expects 1 of each */
  }
  for (int v = 0; v < 200; v++) {
    ck_assert_int_eq(atomic_load(&f.count[v]), 1);
  }
  /* Without an item_free, freeing a non-empty queue is fine too. */
  q = make(kind, CONCUR_UNBOUNDED);
  ck_assert_rc(put_value(q, kind, 1, 0), 0);
  concur_queue_free(q);
}
END_TEST

/* QUE-15: the item-free callback calls back into the queue. */
typedef struct reentry {
  concur_queue *q;
  concur_queue *other;
  int calls;
  int put_rc;
  int get_rc;
  int shutdown_rc;
  size_t qsize;
  int other_rc;
} reentry;

static void reenter(void *item, void *arg) {
  reentry *r = arg;
  r->calls++;
  r->put_rc = concur_queue_put(r->q, item, CONCUR_FOREVER);
  void *got;
  r->get_rc = concur_queue_get(r->q, &got, CONCUR_FOREVER);
  r->shutdown_rc = concur_queue_shutdown(r->q, true);
  r->qsize = concur_queue_qsize(r->q);
  r->other_rc = concur_queue_put(r->other, item, CONCUR_NOWAIT);
}

START_TEST(QUE_15_item_free_may_call_back_into_the_queue) {
  concur_queue_kind kind = all_kinds[_i];
  for (int via_free = 0; via_free < 2; via_free++) {
    reentry r;
    memset(&r, 0, sizeof r);
    r.other = make(CONCUR_QUEUE_FIFO, CONCUR_UNBOUNDED);
    r.q = make_full(kind, kind == CONCUR_QUEUE_SIMPLE ? CONCUR_UNBOUNDED : 8,
                    reenter, &r);
    ck_assert_rc(put_value(r.q, kind, 1, 0), 0);
    ck_assert_rc(put_value(r.q, kind, 2, 0), 0);
    if (via_free) {
      concur_queue_free(r.q);
    } else {
      ck_assert_rc(concur_queue_shutdown(r.q, true), 0);
    }
    ck_assert_int_eq(r.calls, 2);
    ck_assert_rc(r.put_rc, CONCUR_ESHUTDOWN);
    ck_assert_rc(r.get_rc, CONCUR_ESHUTDOWN);
    ck_assert_rc(r.shutdown_rc, 0);
    ck_assert_uint_eq(r.qsize, 0);
    ck_assert_rc(r.other_rc, 0);
    ck_assert_uint_eq(concur_queue_qsize(r.other), 2);
    if (!via_free) {
      concur_queue_free(r.q);
      ck_assert_int_eq(r.calls, 2);
    }
    concur_queue_free(r.other);
  }
}
END_TEST

START_TEST(QUE_16_get_many_drains_up_to_n) {
  concur_queue_kind kind = all_kinds[_i];
  concur_queue *q = make(kind, CONCUR_UNBOUNDED);
  for (uintptr_t i = 1; i <= 10; i++) {
    ck_assert_rc(put_value(q, kind, i, 0), 0);
  }
  void *items[16];
  ck_assert_int_eq(concur_queue_get_many(q, items, 4, CONCUR_NOWAIT), 4);
  bool lifo = kind == CONCUR_QUEUE_LIFO;
  for (uintptr_t i = 0; i < 4; i++) {
    ck_assert_uint_eq(U(items[i]), lifo ? 10 - i : i + 1);
  }
  ck_assert_int_eq(concur_queue_get_many(q, items, 16, CONCUR_NOWAIT), 6);
  for (uintptr_t i = 0; i < 6; i++) {
    ck_assert_uint_eq(U(items[i]), lifo ? 6 - i : i + 5);
  }
  ck_assert_rc(concur_queue_get_many(q, items, 16, CONCUR_NOWAIT),
               CONCUR_ETIMEDOUT);
  ck_assert_rc(concur_queue_get_many(q, items, 0, 0), CONCUR_EINVAL);
  ck_assert_rc(concur_queue_get_many(q, NULL, 1, 0), CONCUR_EINVAL);
  /* A huge max_items is fine: it takes what is there. */
  ck_assert_rc(put_value(q, kind, 1, 0), 0);
  ck_assert_int_eq(concur_queue_get_many(q, items, SIZE_MAX, 0), 1);

  /* It blocks until at least one item is there. */
  call c = call_make(q, OP_GET_MANY, NULL, CONCUR_FOREVER);
  pthread_t t = spawn(run_call, &c);
  ck_assert_rc(concur__test_await_parked(q, 1, HARNESS_LONG_NS), 0);
  ck_assert_rc(put_value(q, kind, 42, 0), 0);
  pthread_join(t, NULL);
  ck_assert_int_eq(c.rc, 1);
  ck_assert_ptr_eq(c.got[0], V(42));
  concur_queue_free(q);

  /* On a full bounded queue it unblocks the waiting putters. */
  if (kind != CONCUR_QUEUE_SIMPLE) {
    q = make(kind, 3);
    for (uintptr_t i = 1; i <= 3; i++) {
      ck_assert_rc(put_value(q, kind, i, 0), 0);
    }
    call p[2] = {call_make(q, OP_PUT, V(7), CONCUR_FOREVER),
                 call_make(q, OP_PUT, V(8), CONCUR_FOREVER)};
    pthread_t tp[2] = {spawn(run_call, &p[0]), spawn(run_call, &p[1])};
    ck_assert_rc(concur__test_await_parked(q, 2, HARNESS_LONG_NS), 0);
    ck_assert_int_eq(concur_queue_get_many(q, items, 16, 0), 3);
    for (int i = 0; i < 2; i++) {
      pthread_join(tp[i], NULL);
      ck_assert_rc(p[i].rc, 0);
    }
    ck_assert_uint_eq(concur_queue_qsize(q), 2);
    concur_queue_free(q);
  }
}
END_TEST

/* ---- QUE-17 .. QUE-19 -------------------------------------------------------
 */

typedef struct poll_arg {
  concur_queue *q;
  concur_queue_kind kind;
  int index;
  long misses;
  int rc;
} poll_arg;

/* Each thread offers one item, then polls one: the poll may take another
 * thread's item, but at least one item is always there for it. */
static void *offer_then_poll(void *arg) {
  poll_arg *p = arg;
  for (int round = 0; round < 10; round++) {
    for (int i = 0; i < 1000; i++) {
      uintptr_t v = (uintptr_t)(p->index * 100000 + i + 1);
      int rc = put_value(p->q, p->kind, v, CONCUR_NOWAIT);
      if (rc != 0) {
        p->rc = rc;
        return NULL;
      }
      void *item;
      if (concur_queue_get(p->q, &item, CONCUR_NOWAIT) != 0) {
        p->misses++;
      }
    }
  }
  return NULL;
}

START_TEST(QUE_17_poll_never_misses_an_item_that_must_be_there) {
  concur_queue_kind kind = all_kinds[_i];
  concur_queue *q = make(kind, CONCUR_UNBOUNDED);
  poll_arg p[4];
  pthread_t t[4];
  for (int i = 0; i < 4; i++) {
    p[i] = (poll_arg){q, kind, i, 0, 0};
    t[i] = spawn(offer_then_poll, &p[i]);
  }
  long misses = 0;
  for (int i = 0; i < 4; i++) {
    pthread_join(t[i], NULL);
    ck_assert_int_eq(p[i].rc, 0);
    misses += p[i].misses;
  }
  ck_assert_int_eq(misses, 0);
  ck_assert_uint_eq(concur_queue_qsize(q), 0);
  concur_queue_free(q);
}
END_TEST

START_TEST(QUE_18_priority_ties_leave_in_insertion_order) {
  concur_queue *q = make(CONCUR_QUEUE_PRIORITY, CONCUR_UNBOUNDED);
  for (uintptr_t i = 0; i < 300; i++) {
    ck_assert_rc(concur_queue_put_priority(q, V(i), (int64_t)(i % 3), 0), 0);
  }
  for (uintptr_t i = 0; i < 300; i++) {
    /* all priority 0 in order, then 1, then 2 */
    ck_assert_uint_eq(get_value(q), (i % 100) * 3 + i / 100);
  }
  /* The whole int64_t range; plain put means priority 0. */
  ck_assert_rc(concur_queue_put_priority(q, V(4), INT64_MAX, 0), 0);
  ck_assert_rc(concur_queue_put_priority(q, V(1), INT64_MIN, 0), 0);
  ck_assert_rc(concur_queue_put(q, V(3), 0), 0);
  ck_assert_rc(concur_queue_put_priority(q, V(2), -1, 0), 0);
  for (uintptr_t i = 1; i <= 4; i++) {
    ck_assert_uint_eq(get_value(q), i);
  }
  concur_queue_free(q);
}
END_TEST

typedef struct prio_thread {
  concur_queue *q;
  uint64_t seed;
  int index;
  int rc;
} prio_thread;

/* Items carry (priority << 32) | (thread << 16) | sequence. */
static void *insert_random_priorities(void *arg) {
  prio_thread *p = arg;
  for (uint64_t i = 0; i < 1000; i++) {
    uint64_t prio = harness_rand(&p->seed) % 16;
    uintptr_t v = (uintptr_t)((prio << 32) | ((uint64_t)p->index << 16) | i);
    int rc =
        concur_queue_put_priority(p->q, V(v), (int64_t)prio, CONCUR_FOREVER);
    if (rc != 0) {
      p->rc = rc;
    }
  }
  return NULL;
}

START_TEST(QUE_18_priority_order_holds_under_concurrent_inserts) {
  concur_queue *q = make(CONCUR_QUEUE_PRIORITY, CONCUR_UNBOUNDED);
  prio_thread p[4];
  pthread_t t[4];
  for (int i = 0; i < 4; i++) {
    p[i] = (prio_thread){q, harness_seed() + (uint64_t)i * 7919 + 1, i, 0};
    t[i] = spawn(insert_random_priorities, &p[i]);
  }
  for (int i = 0; i < 4; i++) {
    pthread_join(t[i], NULL);
    ck_assert_int_eq(p[i].rc, 0);
  }
  ck_assert_uint_eq(concur_queue_qsize(q), 4000);
  uint64_t last_prio = 0;
  long last_seq[4][16];
  memset(last_seq, -1, sizeof last_seq);
  for (int i = 0; i < 4000; i++) {
    uint64_t v = get_value(q);
    uint64_t prio = v >> 32;
    int thread = (int)((v >> 16) & 0xffff);
    long seq = (long)(v & 0xffff);
    ck_assert_uint_ge(prio, last_prio);
    ck_assert_int_gt(seq, last_seq[thread][prio]); /* ties: put order */
    last_seq[thread][prio] = seq;
    last_prio = prio;
  }
  concur_queue_free(q);
}
END_TEST

typedef struct quota {
  concur_queue *q;
  int rc;
  long count;
  unsigned long long sum;
} quota;

/* Takes exactly 1000 items, so that every consumer surely gets work. */
static void *take_1000(void *arg) {
  quota *c = arg;
  for (int i = 0; i < 1000; i++) {
    void *item;
    c->rc = concur_queue_get(c->q, &item, CONCUR_FOREVER);
    if (c->rc != 0) {
      return NULL;
    }
    c->count++;
    c->sum += U(item);
  }
  return NULL;
}

START_TEST(QUE_19_ten_consumers_sum_and_count) {
  concur_queue_kind kind = all_kinds[_i];
  concur_queue *q =
      make(kind, kind == CONCUR_QUEUE_SIMPLE ? CONCUR_UNBOUNDED : 64);
  quota c[10];
  pthread_t t[10];
  for (int i = 0; i < 10; i++) {
    c[i] = (quota){q, 0, 0, 0};
    t[i] = spawn(take_1000, &c[i]);
  }
  for (uintptr_t v = 1; v <= 10000; v++) {
    ck_assert_rc(put_value(q, kind, v, HARNESS_LONG_NS), 0);
  }
  long count = 0;
  unsigned long long sum = 0;
  for (int i = 0; i < 10; i++) {
    pthread_join(t[i], NULL);
    ck_assert_rc(c[i].rc, 0);
    ck_assert_int_eq(c[i].count, 1000);
    count += c[i].count;
    sum += c[i].sum;
  }
  ck_assert_int_eq(count, 10000);
  ck_assert_uint_eq(sum, 10000ULL * 10001 / 2);
  ck_assert(concur_queue_empty(q));
  concur_queue_free(q);
}
END_TEST

/* ---- misuse
 * ------------------------------------------------------------------ */

START_TEST(free_while_a_getter_is_blocked_aborts) {
  concur_queue *q = make(CONCUR_QUEUE_FIFO, CONCUR_UNBOUNDED);
  static call c;
  c = call_make(q, OP_GET, NULL, CONCUR_FOREVER);
  pthread_t t = spawn(run_call, &c);
  ck_assert_rc(concur__test_await_parked(q, 1, HARNESS_LONG_NS), 0);
  concur_queue_free(q); /* aborts: the case expects SIGABRT */
  pthread_join(t, NULL);
}
END_TEST

Suite *concur_test_suite(void) {
  Suite *s = suite_create("queue");
  TCase *api = harness_tcase("api", 30);
  tcase_add_test(api, new_rejects_bad_options);
  tcase_add_test(api, new_defaults_to_an_unbounded_fifo);
  tcase_add_test(api, null_handles_are_einval);
  tcase_add_loop_test(api, negative_timeouts_are_einval_and_change_nothing, 0,
                      ALL_KINDS);
  tcase_add_test(api, put_priority_needs_a_priority_queue);
  tcase_add_test(api, simple_queue_has_no_bound_and_no_task_tracking);
  tcase_add_loop_test(api, put_happens_before_get_and_task_done_before_join, 0,
                      ALL_KINDS);
  suite_add_tcase(s, api);

  TCase *que = harness_tcase("que", 60);
  tcase_add_loop_test(que, QUE_01_fifo_lifo_priority_orders, 0, ALL_KINDS);
  tcase_add_loop_test(que, QUE_02_bounded_nowait_full_and_empty, 0,
                      BOUNDED_KINDS);
  tcase_add_loop_test(que,
                      QUE_03_blocked_put_and_get_return_after_the_other_side, 0,
                      BOUNDED_KINDS);
  tcase_add_loop_test(que, QUE_04_timed_put_and_get_time_out_in_the_window, 0,
                      BOUNDED_KINDS);
  tcase_add_loop_test(que, QUE_05_task_done_and_join, 0, BOUNDED_KINDS);
  tcase_add_loop_test(que, QUE_06_maxsize_changes_at_run_time, 0,
                      BOUNDED_KINDS);
  tcase_add_loop_test(que, QUE_07_shutdown_fails_puts_and_drains_gets, 0,
                      ALL_KINDS);
  tcase_add_loop_test(que, QUE_08_shutdown_immediate_drops_and_releases_join, 0,
                      ALL_KINDS);
  tcase_add_loop_test(que, QUE_09_blocked_putters_wake_with_eshutdown, 0,
                      BOUNDED_KINDS);
  tcase_add_loop_test(que, QUE_10_joiners_across_shutdown, 0, BOUNDED_KINDS);
  tcase_add_loop_test(que, QUE_11_shutdown_under_load, 0, BOUNDED_KINDS);
  tcase_add_loop_test(que, QUE_11_shutdown_immediate_under_load, 0,
                      BOUNDED_KINDS);
  tcase_add_loop_test(que, QUE_12_one_producer_one_consumer_keep_order, 0, 2);
  tcase_add_loop_test(que, QUE_12_many_producers_consumers_blocking, 0,
                      ALL_KINDS);
  tcase_add_loop_test(que, QUE_12_many_producers_consumers_nowait, 0,
                      ALL_KINDS);
  tcase_add_loop_test(que, QUE_12_many_producers_consumers_10us_timeout, 0,
                      ALL_KINDS);
  tcase_add_loop_test(
      que, QUE_13_failed_allocation_in_put_leaves_the_queue_consistent, 0,
      ALL_KINDS);
  tcase_add_loop_test(
      que, QUE_14_items_leave_on_get_and_the_rest_are_freed_once, 0, ALL_KINDS);
  tcase_add_loop_test(que, QUE_15_item_free_may_call_back_into_the_queue, 0,
                      ALL_KINDS);
  tcase_add_loop_test(que, QUE_16_get_many_drains_up_to_n, 0, ALL_KINDS);
  tcase_add_loop_test(que, QUE_17_poll_never_misses_an_item_that_must_be_there,
                      0, ALL_KINDS);
  tcase_add_test(que, QUE_18_priority_ties_leave_in_insertion_order);
  tcase_add_test(que, QUE_18_priority_order_holds_under_concurrent_inserts);
  tcase_add_loop_test(que, QUE_19_ten_consumers_sum_and_count, 0, ALL_KINDS);
  suite_add_tcase(s, que);

  /* No leak fixture: the process aborts with its threads still running. */
  TCase *misuse = tcase_create("misuse");
  tcase_set_timeout(misuse, 30);
  tcase_add_test_raise_signal(misuse, free_while_a_getter_is_blocked_aborts,
                              SIGABRT);
  suite_add_tcase(s, misuse);
  return s;
}
