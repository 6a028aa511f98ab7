/*
 * map, imap and imap over a source (src/executor/map.c) on every backend
 * of the test matrix: order, chunksize, buffersize, timeouts, the error
 * policies, early close and the cleanup rule (WAI-07 to WAI-11, WAI-08).
 */
#include "harness.h"

#include "concur/executor.h"
#include "test_executor_backend.h"

#include <pthread.h>
#include <string.h>

#define N 200

static void *args_of(intptr_t i) {
  return (void *)(i + 1);
}

static int task_square(void *arg, void **result) {
  intptr_t v = (intptr_t)arg;
  *result = (void *)(v * v);
  return 0;
}

/* Fails the items whose value is a multiple of 7. */
static int task_sevens_fail(void *arg, void **result) {
  intptr_t v = (intptr_t)arg;
  if (v % 7 == 0) {
    return (int)v;
  }
  *result = (void *)(v * v);
  return 0;
}

START_TEST(WAI_08_map_returns_results_in_input_order) {
  concur_executor *ex = make_exec(_i);
  void *args[N], *results[N];
  int codes[N];
  for (intptr_t i = 0; i < N; i++) {
    args[i] = args_of(i);
  }
  ck_assert_rc(
      concur_executor_map(ex, task_square, args, N, results, codes, NULL), 0);
  for (intptr_t i = 0; i < N; i++) {
    ck_assert_ptr_eq(results[i], (void *)((i + 1) * (i + 1)));
    ck_assert_int_eq(codes[i], 0);
  }
  /* Empty input. */
  ck_assert_rc(concur_executor_map(ex, task_square, NULL, 0, NULL, NULL, NULL),
               0);
  concur_executor_free(ex);
}
END_TEST

START_TEST(WAI_08_map_failure_at_its_position_later_items_delivered) {
  concur_executor *ex = make_exec(_i);
  void *args[N], *results[N];
  int codes[N];
  for (intptr_t i = 0; i < N; i++) {
    args[i] = args_of(i);
  }
  concur_map_options o = CONCUR_MAP_OPTIONS_INIT;
  o.errors = CONCUR_MAP_COLLECT;
  ck_assert_rc(
      concur_executor_map(ex, task_sevens_fail, args, N, results, codes, &o),
      CONCUR_ETASK);
  for (intptr_t i = 0; i < N; i++) {
    intptr_t v = i + 1;
    if (v % 7 == 0) {
      ck_assert_int_eq(codes[i], (int)v);
      ck_assert_ptr_null(results[i]);
    } else {
      ck_assert_int_eq(codes[i], 0);
      ck_assert_ptr_eq(results[i], (void *)(v * v));
    }
  }
  concur_executor_free(ex);
}
END_TEST

START_TEST(WAI_08_map_stop_policy_stops_at_first_failure_in_order) {
  concur_executor *ex = make_exec(_i);
  void *args[N], *results[N];
  int codes[N];
  for (intptr_t i = 0; i < N; i++) {
    args[i] = args_of(i);
  }
  ck_assert_rc(
      concur_executor_map(ex, task_sevens_fail, args, N, results, codes, NULL),
      CONCUR_ETASK);
  for (intptr_t i = 0; i < 6; i++) {
    ck_assert_int_eq(codes[i], 0);
    ck_assert_ptr_eq(results[i], (void *)((i + 1) * (i + 1)));
  }
  ck_assert_int_eq(codes[6], 7);
  for (intptr_t i = 7; i < N; i++) {
    ck_assert_int_eq(codes[i], CONCUR_ECANCELED); /* not waited for */
    ck_assert_ptr_null(results[i]);
  }
  concur_executor_free(ex);
}
END_TEST

START_TEST(WAI_08_chunksize_gives_the_unchunked_result) {
  concur_executor *ex = make_exec(_i);
  void *args[N], *plain[N], *chunked[N];
  int codes[N];
  for (intptr_t i = 0; i < N; i++) {
    args[i] = args_of(i);
  }
  concur_map_options o = CONCUR_MAP_OPTIONS_INIT;
  o.errors = CONCUR_MAP_COLLECT;
  ck_assert_rc(
      concur_executor_map(ex, task_sevens_fail, args, N, plain, NULL, &o),
      CONCUR_ETASK);
  const int64_t sizes[] = {6, 40, 50, N, 1000};
  for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
    o.chunksize = sizes[k];
    ck_assert_rc(
        concur_executor_map(ex, task_sevens_fail, args, N, chunked, codes, &o),
        CONCUR_ETASK);
    ck_assert_int_eq(memcmp(plain, chunked, sizeof plain), 0);
    o.buffersize = 13; /* and with a bounded buffer */
    ck_assert_rc(
        concur_executor_map(ex, task_sevens_fail, args, N, chunked, codes, &o),
        CONCUR_ETASK);
    ck_assert_int_eq(memcmp(plain, chunked, sizeof plain), 0);
    o.buffersize = CONCUR_UNBOUNDED;
  }
  o.chunksize = 0;
  ck_assert_rc(concur_executor_map(ex, task_square, args, N, NULL, NULL, &o),
               CONCUR_EINVAL);
  o.chunksize = -5;
  ck_assert_rc(concur_executor_map(ex, task_square, args, N, NULL, NULL, &o),
               CONCUR_EINVAL);
  concur_executor_free(ex);
}
END_TEST

START_TEST(map_rejects_bad_arguments) {
  concur_executor *ex = make_exec(_i);
  void *args[2] = {args_of(0), args_of(1)};
  concur_map_options o = CONCUR_MAP_OPTIONS_INIT;
  ck_assert_rc(
      concur_executor_map(NULL, task_square, args, 2, NULL, NULL, NULL),
      CONCUR_EINVAL);
  ck_assert_rc(concur_executor_map(ex, NULL, args, 2, NULL, NULL, NULL),
               CONCUR_EINVAL);
  ck_assert_rc(concur_executor_map(ex, task_square, NULL, 2, NULL, NULL, NULL),
               CONCUR_EINVAL);
  o.size = 4;
  ck_assert_rc(concur_executor_map(ex, task_square, args, 2, NULL, NULL, &o),
               CONCUR_EINVAL);
  o.size = sizeof o;
  o.timeout_ns = -1;
  ck_assert_rc(concur_executor_map(ex, task_square, args, 2, NULL, NULL, &o),
               CONCUR_EINVAL);
  o.timeout_ns = CONCUR_FOREVER;
  o.errors = (concur_map_errors)7;
  ck_assert_rc(concur_executor_map(ex, task_square, args, 2, NULL, NULL, &o),
               CONCUR_EINVAL);
  o.errors = CONCUR_MAP_STOP;
  concur_imap *it = (concur_imap *)&it;
  ck_assert_rc(concur_imap_new(NULL, ex, task_square, args, 2, NULL),
               CONCUR_EINVAL);
  ck_assert_rc(concur_imap_new(&it, NULL, task_square, args, 2, NULL),
               CONCUR_EINVAL);
  ck_assert_ptr_null(it);
  ck_assert_rc(concur_imap_new(&it, ex, NULL, args, 2, NULL), CONCUR_EINVAL);
  ck_assert_rc(concur_imap_new(&it, ex, task_square, NULL, 1, NULL),
               CONCUR_EINVAL);
  ck_assert_rc(concur_imap_new_source(NULL, ex, task_square, NULL, NULL, NULL),
               CONCUR_EINVAL);
  ck_assert_rc(concur_imap_new_source(&it, ex, task_square, NULL, NULL, NULL),
               CONCUR_EINVAL);
  ck_assert_rc(concur_imap_new(&it, ex, task_square, args, 2, NULL), 0);
  concur_map_item item;
  ck_assert_rc(concur_imap_next(NULL, 0, &item), CONCUR_EINVAL);
  ck_assert_rc(concur_imap_next(it, 0, NULL), CONCUR_EINVAL);
  ck_assert_rc(concur_imap_next(it, -1, &item), CONCUR_EINVAL);
  concur_imap_free(it);
  concur_imap_free(NULL);
  /* A refused first submit: nothing taken, no cleanup. */
  atomic_store(&cleanups, 0);
  o.cleanup = count_cleanup;
  ck_assert_rc(concur_executor_shutdown(ex, 0), 0);
  ck_assert_rc(concur_executor_map(ex, task_square, args, 2, NULL, NULL, &o),
               CONCUR_ESHUTDOWN);
  ck_assert_rc(concur_imap_new(&it, ex, task_square, args, 2, &o),
               CONCUR_ESHUTDOWN);
  ck_assert_int_eq(atomic_load(&cleanups), 0);
  concur_executor_free(ex);
}
END_TEST

/* A task gated per item: item i waits for gates[i] if set. */
typedef struct gated_items {
  gate *gates[8];
  _Atomic long started;
} gated_items;

static gated_items *current_items;

static int task_gated_item(void *arg, void **result) {
  intptr_t i = (intptr_t)arg;
  atomic_fetch_add(&current_items->started, 1);
  if (i < 8 && current_items->gates[i] != NULL) {
    return task_gate(current_items->gates[i], result);
  }
  *result = arg;
  return 0;
}

START_TEST(imap_unordered_gives_completion_order_ordered_waits) {
  /* Item 0 blocks until the test opens its gate; item 1 is quick. */
  for (int unordered = 0; unordered < 2; unordered++) {
    concur_executor *ex = make_exec(KIND_NOHELP2);
    gate g0;
    gate_init(&g0);
    gated_items items = {{&g0}, 0};
    current_items = &items;
    void *args[2] = {(void *)0, (void *)1};
    concur_map_options o = CONCUR_MAP_OPTIONS_INIT;
    o.unordered = unordered != 0;
    concur_imap *it = NULL;
    ck_assert_rc(concur_imap_new(&it, ex, task_gated_item, args, 2, &o), 0);
    concur_map_item item;
    if (unordered) {
      ck_assert_int_eq(concur_imap_next(it, HARNESS_LONG_NS, &item), 1);
      ck_assert_uint_eq(item.index, 1);
      (void)concur_event_set(g0.open);
      ck_assert_int_eq(concur_imap_next(it, HARNESS_LONG_NS, &item), 1);
      ck_assert_uint_eq(item.index, 0);
    } else {
      /* A timed-out next leaves the iterator usable. */
      int64_t t0 = harness_now_ns();
      ck_assert_rc(concur_imap_next(it, 20000000, &item), CONCUR_ETIMEDOUT);
      HARNESS_ASSERT_TIMED_OUT(harness_now_ns() - t0, 20000000);
      ck_assert_rc(concur_imap_next(it, CONCUR_NOWAIT, &item),
                   CONCUR_ETIMEDOUT);
      (void)concur_event_set(g0.open);
      ck_assert_int_eq(concur_imap_next(it, HARNESS_LONG_NS, &item), 1);
      ck_assert_uint_eq(item.index, 0);
      ck_assert_ptr_eq(item.result, &g0);
      ck_assert_int_eq(concur_imap_next(it, HARNESS_LONG_NS, &item), 1);
      ck_assert_uint_eq(item.index, 1);
      ck_assert_ptr_eq(item.arg, (void *)1);
    }
    ck_assert_int_eq(concur_imap_next(it, HARNESS_LONG_NS, &item), 0);
    ck_assert_int_eq(concur_imap_next(it, HARNESS_LONG_NS, &item), 0);
    concur_imap_free(it);
    gate_destroy(&g0);
    concur_executor_free(ex);
  }
}
END_TEST

typedef struct nexter {
  concur_imap *it;
  int rc;
  concur_map_item item;
  pthread_t thread;
} nexter;

static void *next_thread(void *arg) {
  nexter *n = arg;
  n->rc = concur_imap_next(n->it, CONCUR_FOREVER, &n->item);
  return NULL;
}

START_TEST(imap_next_blocks_on_the_iterator_until_an_item_ends) {
  concur_executor *ex = make_exec(KIND_NOHELP1);
  gate g0;
  gate_init(&g0);
  gated_items items = {{&g0}, 0};
  current_items = &items;
  void *args[1] = {(void *)0};
  concur_imap *it = NULL;
  ck_assert_rc(concur_imap_new(&it, ex, task_gated_item, args, 1, NULL), 0);
  nexter n = {it, -1, {0}, 0};
  pthread_create(&n.thread, NULL, next_thread, &n);
  ck_assert_rc(concur__test_await_parked(it, 1, HARNESS_LONG_NS), 0);
  (void)concur_event_set(g0.open);
  pthread_join(n.thread, NULL);
  ck_assert_int_eq(n.rc, 1);
  ck_assert_uint_eq(n.item.index, 0);
  concur_imap_free(it);
  gate_destroy(&g0);
  concur_executor_free(ex);
}
END_TEST

START_TEST(WAI_09_map_timeout_cancels_not_started_then_exhausted) {
  /* One worker that waiters never help: item 0 holds it past the deadline,
   * so items 1.. can only be cancelled. */
  concur_executor *ex = make_exec(KIND_NOHELP1);
  gate g0;
  gate_init(&g0);
  gated_items items = {{&g0}, 0};
  current_items = &items;
  void *args[5] = {(void *)0, (void *)1, (void *)2, (void *)3, (void *)4};
  atomic_store(&cleanups, 0);
  concur_map_options o = CONCUR_MAP_OPTIONS_INIT;
  o.timeout_ns = 30000000;
  o.cleanup = count_cleanup;
  concur_imap *it = NULL;
  int64_t t0 = harness_now_ns();
  ck_assert_rc(concur_imap_new(&it, ex, task_gated_item, args, 5, &o), 0);
  concur_map_item item;
  ck_assert_rc(concur_imap_next(it, CONCUR_FOREVER, &item), CONCUR_ETIMEDOUT);
  HARNESS_ASSERT_TIMED_OUT(harness_now_ns() - t0, 30000000);
  ck_assert_int_eq(concur_imap_next(it, CONCUR_FOREVER, &item), 0);
  concur_imap_free(it);
  (void)concur_event_set(g0.open);
  ck_assert_rc(concur_executor_shutdown(ex, CONCUR_SHUTDOWN_WAIT), 0);
  /* Items 1..4 never ran; item 0, if it started, was asked to stop. */
  ck_assert_int_le(atomic_load(&items.started), 1);
  ck_assert_int_eq(atomic_load(&g0.saw_cancel_request), atomic_load(&g0.runs));
  ck_assert_int_eq(atomic_load(&cleanups), 5);
  gate_destroy(&g0);
  concur_executor_free(ex);
}
END_TEST

START_TEST(WAI_09_blocking_map_timeout) {
  concur_executor *ex = make_exec(KIND_NOHELP2);
  gate g0;
  gate_init(&g0);
  gated_items items = {{NULL, NULL, &g0}, 0};
  current_items = &items;
  void *args[4] = {(void *)0, (void *)1, (void *)2, (void *)3};
  void *results[4];
  int codes[4];
  concur_map_options o = CONCUR_MAP_OPTIONS_INIT;
  o.timeout_ns = 30000000;
  int64_t t0 = harness_now_ns();
  ck_assert_rc(
      concur_executor_map(ex, task_gated_item, args, 4, results, codes, &o),
      CONCUR_ETIMEDOUT);
  HARNESS_ASSERT_TIMED_OUT(harness_now_ns() - t0, 30000000);
  /* What ended before the deadline was delivered in order. */
  ck_assert_int_eq(codes[0], 0);
  ck_assert_int_eq(codes[1], 0);
  ck_assert_int_eq(codes[2], CONCUR_ECANCELED);
  ck_assert_ptr_null(results[2]);
  (void)concur_event_set(g0.open);
  ck_assert_rc(concur_executor_shutdown(ex, CONCUR_SHUTDOWN_WAIT), 0);
  gate_destroy(&g0);
  concur_executor_free(ex);
}
END_TEST

static int task_returns_etimedout(void *arg, void **result) {
  (void)arg;
  (void)result;
  return CONCUR_ETIMEDOUT;
}

START_TEST(WAI_09_a_task_timeout_is_just_its_items_error) {
  concur_executor *ex = make_exec(_i);
  void *args[3] = {NULL, NULL, NULL};
  int codes[3];
  concur_map_options o = CONCUR_MAP_OPTIONS_INIT;
  o.errors = CONCUR_MAP_COLLECT;
  ck_assert_rc(
      concur_executor_map(ex, task_returns_etimedout, args, 3, NULL, codes, &o),
      CONCUR_ETASK);
  for (int i = 0; i < 3; i++) {
    ck_assert_int_eq(codes[i], CONCUR_ETIMEDOUT);
  }
  concur_executor_free(ex);
}
END_TEST

START_TEST(WAI_10_map_submits_every_item_without_iteration) {
  concur_executor *ex = make_exec(_i);
  static struct { _Atomic long n; /* task_count's counter */ } runs;
  atomic_store(&runs.n, 0);
  void *args[50];
  for (int i = 0; i < 50; i++) {
    args[i] = &runs;
  }
  concur_imap *it = NULL;
  ck_assert_rc(concur_imap_new(&it, ex, task_count, args, 50, NULL), 0);
  /* Never read: the work still happens. */
  ck_assert_rc(concur_executor_shutdown(ex, CONCUR_SHUTDOWN_WAIT), 0);
  ck_assert_int_eq(atomic_load(&runs.n), 50);
  concur_imap_free(it);
  concur_executor_free(ex);
}
END_TEST

START_TEST(WAI_10_closing_the_iterator_cancels_pending_items) {
  concur_executor *ex = make_exec(KIND_NOHELP1);
  gate g0;
  gate_init(&g0);
  gated_items items = {{&g0}, 0};
  current_items = &items;
  void *args[20];
  for (intptr_t i = 0; i < 20; i++) {
    args[i] = (void *)i;
  }
  atomic_store(&cleanups, 0);
  atomic_store(&cleanups_with_result, 0);
  concur_map_options o = CONCUR_MAP_OPTIONS_INIT;
  o.cleanup = count_cleanup;
  concur_imap *it = NULL;
  ck_assert_rc(concur_imap_new(&it, ex, task_gated_item, args, 20, &o), 0);
  ck_assert_rc(concur_event_wait(g0.started, HARNESS_LONG_NS), 0);
  concur_imap_free(it); /* never blocks on the running item */
  /* The item still running keeps its arg until it ends. */
  ck_assert_int_le(atomic_load(&cleanups), 19);
  (void)concur_event_set(g0.open);
  ck_assert_rc(concur_executor_shutdown(ex, CONCUR_SHUTDOWN_WAIT), 0);
  ck_assert_int_eq(atomic_load(&items.started), 1);
  ck_assert_int_eq(atomic_load(&g0.saw_cancel_request), 1);
  /* The running item's cleanup ran when it ended, with its result. */
  ck_assert_int_eq(atomic_load(&cleanups), 20);
  ck_assert_int_eq(atomic_load(&cleanups_with_result), 1);
  concur_executor_stats st = CONCUR_EXECUTOR_STATS_INIT;
  ck_assert_rc(concur_executor_get_stats(ex, &st), 0);
  ck_assert_uint_eq(st.cancelled, 19);
  gate_destroy(&g0);
  concur_executor_free(ex);
}
END_TEST

/* An endless source of 1, 2, 3, ... that checks the buffer bound. */
typedef struct counter_source {
  intptr_t next;
  intptr_t handed; /* items the consumer received */
  intptr_t budget;
  intptr_t stop_at; /* 0 for endless, else the end, or an error at it */
  int error;
  bool overrun;
} counter_source;

static int counting_source(void *arg, void **item) {
  counter_source *s = arg;
  if (s->stop_at != 0 && s->next >= s->stop_at) {
    return s->error;
  }
  s->next++;
  if (s->next - s->handed > s->budget) {
    s->overrun = true;
  }
  *item = (void *)s->next;
  return 1;
}

START_TEST(WAI_11_buffersize_bounds_items_in_flight_on_an_endless_source) {
  concur_executor *ex = make_exec(_i);
  const int64_t budgets[] = {1, 3, 8};
  const int64_t chunks[] = {1, 2, 5};
  for (int unordered = 0; unordered < 2; unordered++) {
    for (size_t b = 0; b < 3; b++) {
      for (size_t c = 0; c < 3; c++) {
        counter_source s = {0, 0, budgets[b], 0, 0, false};
        concur_map_options o = CONCUR_MAP_OPTIONS_INIT;
        o.buffersize = budgets[b];
        o.chunksize = chunks[c];
        o.unordered = unordered != 0;
        concur_imap *it = NULL;
        ck_assert_rc(concur_imap_new_source(&it, ex, task_square,
                                            counting_source, &s, &o),
                     0);
        intptr_t sum = 0;
        for (int k = 0; k < 300; k++) {
          concur_map_item item;
          ck_assert_int_eq(concur_imap_next(it, HARNESS_LONG_NS, &item), 1);
          s.handed++;
          intptr_t v = (intptr_t)item.arg;
          ck_assert_ptr_eq(item.result, (void *)(v * v));
          if (!unordered) {
            ck_assert_uint_eq(item.index, (size_t)k);
            ck_assert_int_eq(v, k + 1);
          }
          sum += v;
        }
        ck_assert(!s.overrun);
        if (!unordered) {
          ck_assert_int_eq(sum, 300 * 301 / 2);
        }
        concur_imap_free(it);
      }
    }
  }
  concur_map_options o = CONCUR_MAP_OPTIONS_INIT;
  concur_imap *it = NULL;
  counter_source s = {0, 0, 1, 0, 0, false};
  o.buffersize = 0;
  ck_assert_rc(
      concur_imap_new_source(&it, ex, task_square, counting_source, &s, &o),
      CONCUR_EINVAL);
  o.buffersize = -3;
  ck_assert_rc(
      concur_imap_new_source(&it, ex, task_square, counting_source, &s, &o),
      CONCUR_EINVAL);
  ck_assert_int_eq(s.next, 0);
  concur_executor_free(ex);
}
END_TEST

START_TEST(imap_source_end_and_error_are_reported_in_order) {
  concur_executor *ex = make_exec(_i);
  for (int bounded = 0; bounded < 2; bounded++) {
    for (int fail = 0; fail < 2; fail++) {
      counter_source s = {0, 0, 1000, 5, fail ? -42 : 0, false};
      concur_map_options o = CONCUR_MAP_OPTIONS_INIT;
      o.buffersize = bounded ? 2 : CONCUR_UNBOUNDED;
      concur_imap *it = NULL;
      ck_assert_rc(
          concur_imap_new_source(&it, ex, task_square, counting_source, &s, &o),
          0);
      concur_map_item item;
      for (int k = 0; k < 5; k++) {
        ck_assert_int_eq(concur_imap_next(it, HARNESS_LONG_NS, &item), 1);
        ck_assert_uint_eq(item.index, (size_t)k);
      }
      ck_assert_int_eq(concur_imap_next(it, HARNESS_LONG_NS, &item),
                       fail ? -42 : 0);
      ck_assert_int_eq(concur_imap_next(it, HARNESS_LONG_NS, &item), 0);
      concur_imap_free(it);
    }
  }
  concur_executor_free(ex);
}
END_TEST

START_TEST(imap_policies_stop_and_collect) {
  concur_executor *ex = make_exec(_i);
  void *args[20];
  for (intptr_t i = 0; i < 20; i++) {
    args[i] = args_of(i);
  }
  concur_map_options o = CONCUR_MAP_OPTIONS_INIT;
  concur_imap *it = NULL;
  concur_map_item item;
  ck_assert_rc(concur_imap_new(&it, ex, task_sevens_fail, args, 20, &o), 0);
  for (int k = 0; k < 6; k++) {
    ck_assert_int_eq(concur_imap_next(it, HARNESS_LONG_NS, &item), 1);
  }
  ck_assert_rc(concur_imap_next(it, HARNESS_LONG_NS, &item), CONCUR_ETASK);
  ck_assert_uint_eq(item.index, 6);
  ck_assert_int_eq(item.code, 7);
  ck_assert_int_eq(concur_imap_next(it, HARNESS_LONG_NS, &item), 0);
  concur_imap_free(it);
  o.errors = CONCUR_MAP_COLLECT;
  ck_assert_rc(concur_imap_new(&it, ex, task_sevens_fail, args, 20, &o), 0);
  int ok = 0, failed = 0;
  for (;;) {
    int rc = concur_imap_next(it, HARNESS_LONG_NS, &item);
    if (rc == 0) {
      break;
    }
    if (rc == 1) {
      ok++;
    } else {
      ck_assert_rc(rc, CONCUR_ETASK);
      ck_assert_int_eq(item.code, (int)item.index + 1);
      failed++;
    }
  }
  ck_assert_int_eq(ok, 18);
  ck_assert_int_eq(failed, 2);
  concur_imap_free(it);
  concur_executor_free(ex);
}
END_TEST

START_TEST(WAI_07_imap_keeps_nothing_handed_out_cleanup_rule) {
  concur_executor *ex = make_exec(_i);
  void *args[10];
  for (intptr_t i = 0; i < 10; i++) {
    args[i] = args_of(i);
  }
  atomic_store(&cleanups, 0);
  atomic_store(&cleanups_with_result, 0);
  concur_map_options o = CONCUR_MAP_OPTIONS_INIT;
  o.cleanup = count_cleanup;
  o.chunksize = 3;
  concur_imap *it = NULL;
  ck_assert_rc(concur_imap_new(&it, ex, task_square, args, 10, &o), 0);
  concur_map_item item;
  for (long k = 0; k < 10; k++) {
    ck_assert_int_eq(concur_imap_next(it, HARNESS_LONG_NS, &item), 1);
    /* The item handed out keeps its arg until the next call... */
    ck_assert_int_eq(atomic_load(&cleanups), k);
  }
  ck_assert_int_eq(concur_imap_next(it, HARNESS_LONG_NS, &item), 0);
  /* ...and results handed out are the caller's: cleanup got NULL. */
  ck_assert_int_eq(atomic_load(&cleanups), 10);
  ck_assert_int_eq(atomic_load(&cleanups_with_result), 0);
  concur_imap_free(it);
  /* The blocking map without a results array: cleanup gets the results. */
  atomic_store(&cleanups, 0);
  ck_assert_rc(concur_executor_map(ex, task_square, args, 10, NULL, NULL, &o),
               0);
  ck_assert_int_eq(atomic_load(&cleanups), 10);
  ck_assert_int_eq(atomic_load(&cleanups_with_result), 10);
  /* Freed half way: every item still gets exactly one cleanup. */
  atomic_store(&cleanups, 0);
  ck_assert_rc(concur_imap_new(&it, ex, task_square, args, 10, &o), 0);
  for (int k = 0; k < 4; k++) {
    ck_assert_int_eq(concur_imap_next(it, HARNESS_LONG_NS, &item), 1);
  }
  concur_imap_free(it);
  ck_assert_rc(concur_executor_shutdown(ex, CONCUR_SHUTDOWN_WAIT), 0);
  ck_assert_int_eq(atomic_load(&cleanups), 10);
  concur_executor_free(ex);
}
END_TEST

START_TEST(map_items_cancelled_by_a_shutdown_are_reported) {
  concur_executor *ex = make_exec(KIND_NOHELP1);
  gate g0;
  gate_init(&g0);
  gated_items items = {{&g0}, 0};
  current_items = &items;
  void *args[6] = {(void *)0, (void *)1, (void *)2,
                   (void *)3, (void *)4, (void *)5};
  concur_map_options o = CONCUR_MAP_OPTIONS_INIT;
  o.errors = CONCUR_MAP_COLLECT;
  concur_imap *it = NULL;
  ck_assert_rc(concur_imap_new(&it, ex, task_gated_item, args, 6, &o), 0);
  ck_assert_rc(concur_event_wait(g0.started, HARNESS_LONG_NS), 0);
  ck_assert_rc(concur_executor_shutdown(ex, CONCUR_SHUTDOWN_CANCEL_FUTURES), 0);
  (void)concur_event_set(g0.open);
  concur_map_item item;
  ck_assert_int_eq(concur_imap_next(it, HARNESS_LONG_NS, &item), 1);
  for (size_t k = 1; k < 6; k++) {
    ck_assert_rc(concur_imap_next(it, HARNESS_LONG_NS, &item),
                 CONCUR_ECANCELED);
    ck_assert_uint_eq(item.index, k);
  }
  ck_assert_int_eq(concur_imap_next(it, HARNESS_LONG_NS, &item), 0);
  concur_imap_free(it);
  gate_destroy(&g0);
  concur_executor_free(ex);
}
END_TEST

/* EXE-13 for map: from a task of a one-worker executor. */
typedef struct map_in_task {
  concur_executor *ex;
  int rc;
  void *results[30];
} map_in_task;

static int task_map_inside(void *arg, void **result) {
  (void)result;
  map_in_task *m = arg;
  void *args[30];
  for (intptr_t i = 0; i < 30; i++) {
    args[i] = args_of(i);
  }
  m->rc =
      concur_executor_map(m->ex, task_square, args, 30, m->results, NULL, NULL);
  return 0;
}

START_TEST(EXE_13_map_from_a_task_of_its_own_one_worker_executor) {
  concur_executor *ex = make_exec(_i);
  map_in_task m = {ex, -1, {0}};
  concur_future *f = NULL;
  ck_assert_rc(concur_executor_submit(ex, task_map_inside, &m, &f), 0);
  ck_assert_rc(concur_future_result(f, HARNESS_LONG_NS, NULL), 0);
  ck_assert_rc(m.rc, 0);
  for (intptr_t i = 0; i < 30; i++) {
    ck_assert_ptr_eq(m.results[i], (void *)((i + 1) * (i + 1)));
  }
  concur_future_unref(f);
  concur_executor_free(ex);
}
END_TEST

Suite *concur_test_suite(void) {
  Suite *s = suite_create("executor_map");
  TCase *tc = harness_tcase("map", 60);
  tcase_add_loop_test(tc, WAI_08_map_returns_results_in_input_order, 0,
                      KIND_COUNT);
  tcase_add_loop_test(tc,
                      WAI_08_map_failure_at_its_position_later_items_delivered,
                      0, KIND_COUNT);
  tcase_add_loop_test(tc,
                      WAI_08_map_stop_policy_stops_at_first_failure_in_order, 0,
                      KIND_COUNT);
  tcase_add_loop_test(tc, WAI_08_chunksize_gives_the_unchunked_result, 0,
                      KIND_COUNT);
  tcase_add_loop_test(tc, map_rejects_bad_arguments, 0, KIND_COUNT);
  tcase_add_loop_test(tc, WAI_09_a_task_timeout_is_just_its_items_error, 0,
                      KIND_COUNT);
  tcase_add_test(tc, WAI_09_blocking_map_timeout);
  tcase_add_loop_test(tc, EXE_13_map_from_a_task_of_its_own_one_worker_executor,
                      0, KIND_COUNT);
  suite_add_tcase(s, tc);

  tc = harness_tcase("imap", 60);
  tcase_add_test(tc, imap_unordered_gives_completion_order_ordered_waits);
  tcase_add_test(tc, imap_next_blocks_on_the_iterator_until_an_item_ends);
  tcase_add_test(tc, WAI_09_map_timeout_cancels_not_started_then_exhausted);
  tcase_add_loop_test(tc, WAI_10_map_submits_every_item_without_iteration, 0,
                      KIND_COUNT);
  tcase_add_test(tc, WAI_10_closing_the_iterator_cancels_pending_items);
  tcase_add_loop_test(
      tc, WAI_11_buffersize_bounds_items_in_flight_on_an_endless_source, 0,
      KIND_COUNT);
  tcase_add_loop_test(tc, imap_source_end_and_error_are_reported_in_order, 0,
                      KIND_COUNT);
  tcase_add_loop_test(tc, imap_policies_stop_and_collect, 0, KIND_COUNT);
  tcase_add_loop_test(tc, WAI_07_imap_keeps_nothing_handed_out_cleanup_rule, 0,
                      KIND_COUNT);
  tcase_add_test(tc, map_items_cancelled_by_a_shutdown_are_reported);
  suite_add_tcase(s, tc);
  return s;
}
