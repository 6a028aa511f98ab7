/*
 * Allocation failure on every path of the executor interface and its
 * algorithms: the inline executor's constructor and submit, task groups,
 * parallel_for, map / imap (creation, chunk submits, a source read to its
 * end), apply and invoke_*. For n = 1, 2, ... the nth allocation fails
 * until the operation no longer reaches n allocations; each run must give
 * 0 or CONCUR_ENOMEM, leak nothing (ASan), leave no task pending and run
 * every cleanup exactly as the cleanup rule says.
 */
#include "harness.h"

#include "../unit/test_executor_backend.h"
#include "concur/executor.h"

#define FAULT_LIMIT 10000

/* Arms the nth allocation to fail; true while the operation reached it. */
static bool reached(long n) {
  return concur__fault_calls(CONCUR__FAULT_ALLOC) >= n;
}

static void assert_settled(concur_executor *ex) {
  ck_assert_rc(concur_executor_shutdown(ex, CONCUR_SHUTDOWN_WAIT), 0);
  concur_executor_stats st = CONCUR_EXECUTOR_STATS_INIT;
  ck_assert_rc(concur_executor_get_stats(ex, &st), 0);
  ck_assert_uint_eq(st.queued + st.running, 0);
  ck_assert_uint_eq(st.submitted, st.completed + st.failed + st.cancelled);
}

START_TEST(inline_new_and_submit_under_allocation_failure) {
  long n;
  for (n = 1; n < FAULT_LIMIT; n++) {
    concur_executor *ex = NULL;
    concur__fault_arm(CONCUR__FAULT_ALLOC, n, 0);
    int rc = concur_inline_executor_new(&ex);
    bool hit = reached(n);
    concur__fault_arm(CONCUR__FAULT_ALLOC, 0, 0);
    if (rc == 0) {
      ck_assert(!hit);
      concur_executor_free(ex);
      break;
    }
    ck_assert_rc(rc, CONCUR_ENOMEM);
    ck_assert_ptr_null(ex);
  }
  ck_assert_int_lt(n, FAULT_LIMIT);

  concur_executor *ex = make_exec(KIND_INLINE);
  for (n = 1; n < FAULT_LIMIT; n++) {
    atomic_store(&cleanups, 0);
    concur_task t = CONCUR_TASK_INIT(task_echo, &t);
    t.cleanup = count_cleanup;
    concur_future *f = NULL;
    concur__fault_arm(CONCUR__FAULT_ALLOC, n, 0);
    int rc = concur_executor_submit_task(ex, &t, &f);
    bool hit = reached(n);
    concur__fault_arm(CONCUR__FAULT_ALLOC, 0, 0);
    if (rc == 0) {
      ck_assert(!hit);
      concur_future_unref(f);
      ck_assert_int_eq(atomic_load(&cleanups), 1);
      break;
    }
    ck_assert_rc(rc, CONCUR_ENOMEM);
    ck_assert_ptr_null(f);
    ck_assert_int_eq(atomic_load(&cleanups), 0); /* the caller keeps arg */
  }
  ck_assert_int_lt(n, FAULT_LIMIT);
  concur_executor_stats st = CONCUR_EXECUTOR_STATS_INIT;
  ck_assert_rc(concur_executor_get_stats(ex, &st), 0);
  ck_assert_uint_eq(st.rejected, (uint64_t)(n - 1));
  assert_settled(ex);
  concur_executor_free(ex);
}
END_TEST

START_TEST(group_under_allocation_failure) {
  concur_executor *ex = make_exec(KIND_INLINE);
  long n;
  for (n = 1; n < FAULT_LIMIT; n++) {
    concur_task_group *g = NULL;
    concur__fault_arm(CONCUR__FAULT_ALLOC, n, 0);
    int rc = concur_task_group_new(&g, ex);
    concur__fault_arm(CONCUR__FAULT_ALLOC, 0, 0);
    if (rc == 0) {
      concur_task_group_free(g);
      break;
    }
    ck_assert_rc(rc, CONCUR_ENOMEM);
    ck_assert_ptr_null(g);
  }
  ck_assert_int_lt(n, FAULT_LIMIT);

  concur_task_group *g = NULL;
  ck_assert_rc(concur_task_group_new(&g, ex), 0);
  atomic_store(&cleanups, 0);
  long accepted = 0;
  for (n = 1; n < 40; n++) {
    concur_task t = CONCUR_TASK_INIT(task_echo, &t);
    t.cleanup = count_cleanup;
    /* Every third allocation fails, over a batch of ten submits. */
    concur__fault_arm(CONCUR__FAULT_ALLOC, n % 3 + 1, 0);
    for (int k = 0; k < 10; k++) {
      int rc = concur_task_group_submit_task(g, &t);
      if (rc == 0) {
        accepted++;
      } else {
        ck_assert_rc(rc, CONCUR_ENOMEM);
      }
    }
    concur__fault_arm(CONCUR__FAULT_ALLOC, 0, 0);
  }
  ck_assert_rc(concur_task_group_wait(g, HARNESS_LONG_NS, NULL), 0);
  concur_task_group_counts c = CONCUR_TASK_GROUP_COUNTS_INIT;
  ck_assert_rc(concur_task_group_get_counts(g, &c), 0);
  ck_assert_uint_eq(c.submitted, (uint64_t)accepted);
  ck_assert_uint_eq(c.ok, (uint64_t)accepted);
  ck_assert_uint_eq(c.pending, 0);
  ck_assert_int_eq(atomic_load(&cleanups), accepted);
  ck_assert_int_lt(accepted, 39 * 10);
  concur_task_group_free(g);
  assert_settled(ex);
  concur_executor_free(ex);
}
END_TEST

static int sum_body(void *arg, int64_t lo, int64_t hi) {
  atomic_fetch_add((_Atomic long *)arg, (long)(hi - lo));
  return 0;
}

START_TEST(parallel_for_under_allocation_failure) {
  concur_executor *ex = NULL;
  if (_i == 0) {
    ex = make_exec(KIND_THREADS2);
  } else {
    /* Workers started before the faults are armed. */
    concur_thread_pool_options o = CONCUR_THREAD_POOL_OPTIONS_INIT;
    o.max_workers = 2;
    o.prestart = true;
    ck_assert_rc(concur_thread_pool_new(&ex, &o), 0);
  }
  long n;
  int enomem = 0;
  for (n = 1; n < FAULT_LIMIT; n++) {
    _Atomic long total = 0;
    concur__fault_arm(CONCUR__FAULT_ALLOC, n, 0);
    int rc =
        concur_executor_parallel_for(ex, 0, 100000, sum_body, &total, NULL);
    bool hit = reached(n);
    concur__fault_arm(CONCUR__FAULT_ALLOC, 0, 0);
    if (rc == CONCUR_ENOMEM) {
      enomem++;
      ck_assert_int_eq(atomic_load(&total), 0); /* nothing ran */
      continue;
    }
    ck_assert_rc(rc, 0);
    /* A helper that could not be enlisted is no error. */
    ck_assert_int_eq(atomic_load(&total), 100000);
    if (!hit) {
      break;
    }
  }
  ck_assert_int_lt(n, FAULT_LIMIT);
  ck_assert_int_ge(enomem, 1);
  assert_settled(ex);
  concur_executor_free(ex);
}
END_TEST

static int square_task(void *arg, void **result) {
  intptr_t v = (intptr_t)arg;
  *result = (void *)(v * v);
  return 0;
}

#define MAP_N 40

/* Runs one map (kind 0: blocking, 1: imap, 2: imap over a drained source,
 * 3: imap over a bounded source) and checks the cleanup rule. */
typedef struct array_source {
  void **items;
  size_t n, next;
} array_source;

static int array_source_next(void *arg, void **item) {
  array_source *s = arg;
  if (s->next == s->n) {
    return 0;
  }
  *item = s->items[s->next++];
  return 1;
}

static int run_map(concur_executor *ex, int kind, int64_t chunksize,
                   int64_t buffersize, long *delivered, long *pulled) {
  void *args[MAP_N];
  for (intptr_t i = 0; i < MAP_N; i++) {
    args[i] = (void *)(i + 1);
  }
  concur_map_options o = CONCUR_MAP_OPTIONS_INIT;
  o.chunksize = chunksize;
  o.buffersize = buffersize;
  o.cleanup = count_cleanup;
  *delivered = 0;
  *pulled = 0;
  if (kind == 0) {
    void *results[MAP_N];
    int codes[MAP_N];
    int rc =
        concur_executor_map(ex, square_task, args, MAP_N, results, codes, &o);
    for (intptr_t i = 0; i < MAP_N; i++) {
      if (codes[i] == 0) {
        ck_assert_ptr_eq(results[i], (void *)((i + 1) * (i + 1)));
        (*delivered)++;
      } else {
        ck_assert_int_eq(codes[i], CONCUR_ECANCELED);
      }
    }
    return rc;
  }
  concur_imap *it = NULL;
  array_source src = {args, MAP_N, 0};
  int rc = kind == 1 ? concur_imap_new(&it, ex, square_task, args, MAP_N, &o)
                     : concur_imap_new_source(&it, ex, square_task,
                                              array_source_next, &src, &o);
  *pulled = (long)src.next;
  if (rc != 0) {
    ck_assert_ptr_null(it);
    return rc;
  }
  int last = 0;
  for (;;) {
    concur_map_item item;
    int r = concur_imap_next(it, HARNESS_LONG_NS, &item);
    if (r == 1) {
      ck_assert_ptr_eq(item.result,
                       (void *)((intptr_t)item.arg * (intptr_t)item.arg));
      (*delivered)++;
      continue;
    }
    if (r == 0) {
      break;
    }
    last = r;
  }
  concur_imap_free(it);
  *pulled = (long)src.next;
  return last;
}

START_TEST(map_and_imap_under_allocation_failure) {
  const int64_t shapes[][2] = {{CONCUR_DEFAULT, CONCUR_UNBOUNDED},
                               {7, CONCUR_UNBOUNDED},
                               {3, 5},
                               {1, 2}};
  for (int kind = 0; kind < 3; kind++) {
    for (size_t sh = 0; sh < 4; sh++) {
      if (kind == 2 && sh == 0) {
        continue; /* covered with sh 1 */
      }
      concur_executor *ex = make_exec(KIND_INLINE);
      long n;
      for (n = 1; n < FAULT_LIMIT; n++) {
        atomic_store(&cleanups, 0);
        long delivered = 0, pulled = 0;
        concur__fault_arm(CONCUR__FAULT_ALLOC, n, 0);
        int rc = run_map(ex, kind, shapes[sh][0], shapes[sh][1], &delivered,
                         &pulled);
        bool hit = reached(n);
        concur__fault_arm(CONCUR__FAULT_ALLOC, 0, 0);
        long c = atomic_load(&cleanups);
        if (rc == 0) {
          ck_assert_int_eq(delivered, MAP_N);
          ck_assert_int_eq(c, MAP_N);
          if (!hit) {
            break;
          }
          continue;
        }
        ck_assert_msg(rc == CONCUR_ENOMEM, "kind %d shape %zu n %ld: %s", kind,
                      sh, n, concur_err_name(rc));
        /* Either nothing was taken (an array keeps its args) or every item
         * got exactly one cleanup; a source's items are taken as it gives
         * them. */
        if (kind == 2) {
          ck_assert_msg(c == pulled, "kind %d shape %zu n %ld: cleanups %ld",
                        kind, sh, n, c);
        } else {
          ck_assert_msg(c == 0 || c == MAP_N, "cleanups %ld", c);
          if (c == 0) {
            ck_assert_int_eq(delivered, 0);
          }
        }
      }
      ck_assert_int_lt(n, FAULT_LIMIT);
      assert_settled(ex);
      concur_executor_free(ex);
    }
  }
}
END_TEST

START_TEST(apply_and_invoke_under_allocation_failure) {
  concur_executor *ex = make_exec(KIND_INLINE);
  long n;
  for (n = 1; n < FAULT_LIMIT; n++) {
    atomic_store(&cleanups, 0);
    concur_task t = CONCUR_TASK_INIT(task_echo, &t);
    t.cleanup = count_cleanup;
    void *r = NULL;
    concur__fault_arm(CONCUR__FAULT_ALLOC, n, 0);
    int rc = concur_executor_apply_task(ex, &t, CONCUR_FOREVER, &r, NULL);
    bool hit = reached(n);
    concur__fault_arm(CONCUR__FAULT_ALLOC, 0, 0);
    if (rc == 0) {
      ck_assert_ptr_eq(r, &t);
      ck_assert_int_eq(atomic_load(&cleanups), 1);
      if (!hit) {
        break;
      }
      continue;
    }
    ck_assert_rc(rc, CONCUR_ENOMEM);
    ck_assert_int_eq(atomic_load(&cleanups), 0);
  }
  ck_assert_int_lt(n, FAULT_LIMIT);

  for (n = 1; n < FAULT_LIMIT; n++) {
    atomic_store(&cleanups, 0);
    concur_task ts[4];
    for (intptr_t i = 0; i < 4; i++) {
      concur_task t = CONCUR_TASK_INIT(task_odd_fails, (void *)(2 * i + 1));
      t.cleanup = count_cleanup;
      ts[i] = t;
    }
    ts[2].arg = (void *)(intptr_t)4;
    void *r = NULL;
    size_t index = 0;
    concur__fault_arm(CONCUR__FAULT_ALLOC, n, 0);
    int rc =
        concur_executor_invoke_any(ex, ts, 4, CONCUR_FOREVER, &index, &r, NULL);
    bool hit = reached(n);
    concur__fault_arm(CONCUR__FAULT_ALLOC, 0, 0);
    long c = atomic_load(&cleanups);
    if (rc == 0) {
      ck_assert_uint_eq(index, 2);
      ck_assert_ptr_eq(r, (void *)(intptr_t)4);
      ck_assert_int_eq(c, 4);
      if (!hit) {
        break;
      }
      continue;
    }
    ck_assert_rc(rc, CONCUR_ENOMEM);
    ck_assert_int_le(c, 4); /* the accepted ones only */
  }
  ck_assert_int_lt(n, FAULT_LIMIT);

  for (n = 1; n < FAULT_LIMIT; n++) {
    concur_task ts[3] = {CONCUR_TASK_INIT(task_echo, NULL),
                         CONCUR_TASK_INIT(task_echo, NULL),
                         CONCUR_TASK_INIT(task_echo, NULL)};
    concur_future *fs[3];
    concur__fault_arm(CONCUR__FAULT_ALLOC, n, 0);
    int rc = concur_executor_invoke_all(ex, ts, 3, CONCUR_FOREVER, fs);
    bool hit = reached(n);
    concur__fault_arm(CONCUR__FAULT_ALLOC, 0, 0);
    for (int i = 0; i < 3; i++) {
      if (rc == 0) {
        ck_assert(concur_future_done(fs[i]));
      }
      concur_future_unref(fs[i]);
    }
    if (rc == 0 && !hit) {
      break;
    }
    if (rc != 0) {
      ck_assert_rc(rc, CONCUR_ENOMEM);
    }
  }
  ck_assert_int_lt(n, FAULT_LIMIT);
  assert_settled(ex);
  concur_executor_free(ex);
}
END_TEST

Suite *concur_test_suite(void) {
  Suite *s = suite_create("executor_fault");
  TCase *tc = harness_tcase("alloc", 120);
  tcase_add_test(tc, inline_new_and_submit_under_allocation_failure);
  tcase_add_test(tc, group_under_allocation_failure);
  tcase_add_loop_test(tc, parallel_for_under_allocation_failure, 0, 2);
  tcase_add_test(tc, map_and_imap_under_allocation_failure);
  tcase_add_test(tc, apply_and_invoke_under_allocation_failure);
  suite_add_tcase(s, tc);
  return s;
}
