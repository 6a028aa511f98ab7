/*
 * Allocation failure at every allocation the queue makes: concur_queue_new
 * (the queue, its storage) and the growth of the storage inside put. Each
 * failure must return CONCUR_ENOMEM, change nothing, leak nothing (ASan
 * checks), and leave the queue usable. Every other function must not
 * allocate at all.
 */
#include "harness.h"

#include "concur/queue.h"

#include <string.h>

#define V(x) ((void *)(uintptr_t)(x))
#define U(p) ((uintptr_t)(p))

static const concur_queue_kind all_kinds[] = {
    CONCUR_QUEUE_FIFO, CONCUR_QUEUE_LIFO, CONCUR_QUEUE_PRIORITY,
    CONCUR_QUEUE_SIMPLE};
#define ALL_KINDS 4

static int put_value(concur_queue *q, concur_queue_kind kind, uintptr_t v,
                     int64_t timeout) {
  if (kind == CONCUR_QUEUE_PRIORITY) {
    return concur_queue_put_priority(q, V(v), (int64_t)v, timeout);
  }
  return concur_queue_put(q, V(v), timeout);
}

static void count_free(void *item, void *arg) {
  (void)item;
  (*(long *)arg)++;
}

START_TEST(new_fails_cleanly_at_every_allocation) {
  const int64_t sizes[] = {CONCUR_UNBOUNDED, 1, 100, 4096, 5000, INT64_MAX};
  for (int k = 0; k < ALL_KINDS; k++) {
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
      if (all_kinds[k] == CONCUR_QUEUE_SIMPLE && s > 0) {
        break;
      }
      concur_queue_options o = CONCUR_QUEUE_OPTIONS_INIT;
      o.kind = all_kinds[k];
      o.maxsize = sizes[s];
      long n = 1;
      for (;; n++) {
        concur_queue *q = V(0x5);
        concur__fault_arm(CONCUR__FAULT_ALLOC, n, 0);
        int rc = concur_queue_new(&q, &o);
        concur__fault_arm(CONCUR__FAULT_ALLOC, 0, 0);
        if (rc == 0) {
          ck_assert_ptr_ne(q, V(0x5));
          ck_assert_rc(concur_queue_put(q, V(1), 0), 0);
          concur_queue_free(q);
          break;
        }
        ck_assert_rc(rc, CONCUR_ENOMEM);
        ck_assert_ptr_eq(q, V(0x5));
        ck_assert_int_lt(n, 10);
      }
      ck_assert_int_ge(n, 2); /* the queue and its storage were both hit */
    }
  }
}
END_TEST

/* Every put is made once with its first allocation failing: each put that
 * must grow the storage fails with ENOMEM, changing nothing, and succeeds
 * on the retry. */
static void grow_under_faults(concur_queue_kind kind, int64_t maxsize,
                              uintptr_t items) {
  concur_queue_options o = CONCUR_QUEUE_OPTIONS_INIT;
  o.kind = kind;
  o.maxsize = maxsize;
  concur_queue *q;
  ck_assert_rc(concur_queue_new(&q, &o), 0);
  long failures = 0;
  for (uintptr_t v = 1; v <= items; v++) {
    concur__fault_arm(CONCUR__FAULT_ALLOC, 1, 0);
    int rc = put_value(q, kind, v, CONCUR_NOWAIT);
    concur__fault_arm(CONCUR__FAULT_ALLOC, 0, 0);
    if (rc == CONCUR_ENOMEM) {
      failures++;
      ck_assert_uint_eq(concur_queue_qsize(q), v - 1);
      rc = put_value(q, kind, v, CONCUR_NOWAIT);
    }
    ck_assert_rc(rc, 0);
  }
  ck_assert_int_gt(failures, 0);
  /* The failed puts added no task: exactly `items` task_done calls fit. */
  if (kind != CONCUR_QUEUE_SIMPLE) {
    for (uintptr_t i = 0; i < items; i++) {
      ck_assert_rc(concur_queue_task_done(q), 0);
    }
    ck_assert_rc(concur_queue_task_done(q), CONCUR_EOVERFLOW);
  }
  /* Every item is there once, in the kind's order. */
  uintptr_t sum = 0;
  for (uintptr_t i = 0; i < items; i++) {
    void *item;
    ck_assert_rc(concur_queue_get(q, &item, CONCUR_NOWAIT), 0);
    uintptr_t want = kind == CONCUR_QUEUE_LIFO ? items - i : i + 1;
    ck_assert_uint_eq(U(item), want);
    sum += U(item);
  }
  ck_assert_uint_eq(sum, items * (items + 1) / 2);
  ck_assert(concur_queue_empty(q));
  concur_queue_free(q);
}

START_TEST(put_fails_cleanly_at_every_growth) {
  grow_under_faults(all_kinds[_i], CONCUR_UNBOUNDED, 3000);
}
END_TEST

START_TEST(bounded_put_above_the_preallocated_size_fails_cleanly) {
  if (all_kinds[_i] != CONCUR_QUEUE_SIMPLE) {
    grow_under_faults(all_kinds[_i], 10000, 10000);
  }
}
END_TEST

typedef struct blocked_put {
  concur_queue *q;
  int rc;
} blocked_put;

static void *put_forever(void *arg) {
  blocked_put *b = arg;
  b->rc = concur_queue_put(b->q, V(99), CONCUR_FOREVER);
  return NULL;
}

START_TEST(QUE_13_a_woken_putter_that_cannot_grow_gets_enomem) {
  concur_queue_kind kind = all_kinds[_i];
  if (kind == CONCUR_QUEUE_SIMPLE) {
    return;
  }
  concur_queue_options o = CONCUR_QUEUE_OPTIONS_INIT;
  o.kind = kind;
  o.maxsize = 64;
  concur_queue *q;
  ck_assert_rc(concur_queue_new(&q, &o), 0);
  for (uintptr_t v = 1; v <= 64; v++) {
    ck_assert_rc(put_value(q, kind, v, 0), 0);
  }
  blocked_put b = {q, 1};
  pthread_t t;
  ck_assert_rc(concur__thread_spawn(&t, 0, true, put_forever, &b), 0);
  ck_assert_rc(concur__test_await_parked(q, 1, HARNESS_LONG_NS), 0);
  concur__fault_arm(CONCUR__FAULT_ALLOC, 1, 1);
  ck_assert_rc(concur_queue_set_maxsize(q, 1000), 0); /* no allocation */
  pthread_join(t, NULL);
  concur__fault_arm(CONCUR__FAULT_ALLOC, 0, 0);
  ck_assert_rc(b.rc, CONCUR_ENOMEM);
  ck_assert_uint_eq(concur_queue_qsize(q), 64);
  ck_assert_rc(put_value(q, kind, 65, 0), 0); /* grows now */
  for (uintptr_t i = 0; i < 65; i++) {
    ck_assert_rc(concur_queue_task_done(q), 0);
  }
  ck_assert_rc(concur_queue_task_done(q), CONCUR_EOVERFLOW);
  concur_queue_free(q);
}
END_TEST

START_TEST(nothing_but_new_and_growth_allocates) {
  concur_queue_kind kind = all_kinds[_i];
  long dropped = 0;
  concur_queue_options o = CONCUR_QUEUE_OPTIONS_INIT;
  o.kind = kind;
  o.maxsize = kind == CONCUR_QUEUE_SIMPLE ? CONCUR_UNBOUNDED : 32;
  o.item_free = count_free;
  o.item_free_arg = &dropped;
  concur_queue *q;
  ck_assert_rc(concur_queue_new(&q, &o), 0);
  concur__fault_arm(CONCUR__FAULT_ALLOC, 1, 1); /* every allocation fails */
  for (uintptr_t v = 1; v <= 20; v++) {
    ck_assert_rc(put_value(q, kind, v, CONCUR_NOWAIT), 0);
  }
  void *item;
  void *items[8];
  ck_assert_rc(concur_queue_get(q, &item, 0), 0);
  ck_assert_int_eq(concur_queue_get_many(q, items, 8, 0), 8);
  ck_assert_uint_eq(concur_queue_qsize(q), 11);
  ck_assert(!concur_queue_empty(q));
  ck_assert(!concur_queue_full(q));
  if (kind != CONCUR_QUEUE_SIMPLE) {
    ck_assert_rc(concur_queue_task_done(q), 0);
    ck_assert_rc(concur_queue_join(q, 0), CONCUR_ETIMEDOUT);
    ck_assert_rc(concur_queue_set_maxsize(q, 12), 0);
    ck_assert_rc(concur_queue_set_maxsize(q, CONCUR_UNBOUNDED), 0);
  }
  ck_assert_rc(concur_queue_shutdown(q, false), 0);
  ck_assert_rc(concur_queue_get(q, &item, 0), 0);
  ck_assert_rc(concur_queue_shutdown(q, true), 0);
  ck_assert_int_eq(dropped, 10);
  concur_queue_free(q);
  ck_assert_int_eq(concur__fault_calls(CONCUR__FAULT_ALLOC), 0);
  concur__fault_arm(CONCUR__FAULT_ALLOC, 0, 0);
}
END_TEST

Suite *concur_test_suite(void) {
  Suite *s = suite_create("queue_fault");
  TCase *tc = harness_tcase("fault", 60);
  tcase_add_test(tc, new_fails_cleanly_at_every_allocation);
  tcase_add_loop_test(tc, put_fails_cleanly_at_every_growth, 0, ALL_KINDS);
  tcase_add_loop_test(tc, bounded_put_above_the_preallocated_size_fails_cleanly,
                      0, ALL_KINDS);
  tcase_add_loop_test(tc, QUE_13_a_woken_putter_that_cannot_grow_gets_enomem, 0,
                      ALL_KINDS);
  tcase_add_loop_test(tc, nothing_but_new_and_growth_allocates, 0, ALL_KINDS);
  suite_add_tcase(s, tc);
  return s;
}
