/*
 * Seeded stress of the executor interface and its algorithms on the inline
 * executor and the test-only threaded backends: random create / submit /
 * shutdown cycles whose counters must add up exactly, random maps and
 * imaps (chunksize, buffersize, order, error policy, early free) checked
 * item by item with an exact cleanup count, task groups and parallel_for
 * racing with each other on one executor.
 */
#include "harness.h"

#include "../unit/test_executor_backend.h"
#include "concur/executor.h"

#include <pthread.h>

static uint64_t rnd(uint64_t *s, uint64_t n) {
  return harness_rand(s) % n;
}

START_TEST(create_submit_shutdown_cycles_counters_add_up) {
  uint64_t seed = harness_seed() | 1;
  long cycles = 2000 * harness_scale();
  for (long c = 0; c < cycles; c++) {
    int kind = (int)rnd(&seed, KIND_COUNT);
    concur_executor *ex = make_exec(kind);
    atomic_store(&cleanups, 0);
    long n = (long)rnd(&seed, 40);
    long accepted = 0;
    concur_future *keep[40];
    long kept = 0;
    unsigned flags = (unsigned)rnd(&seed, 4);
    bool now = rnd(&seed, 4) == 0;
    long shut_at = (long)rnd(&seed, n + 1);
    for (long i = 0; i < n; i++) {
      if (i == shut_at) {
        if (now) {
          (void)concur_executor_shutdown_now(ex, NULL, NULL);
        } else {
          ck_assert_rc(concur_executor_shutdown(ex, flags), 0);
        }
      }
      concur_task t = CONCUR_TASK_INIT(task_odd_fails, (void *)(intptr_t)i);
      t.cleanup = count_cleanup;
      bool want = rnd(&seed, 2) == 0;
      concur_future *f = NULL;
      int rc = concur_executor_submit_task(ex, &t, want ? &f : NULL);
      if (rc == 0) {
        accepted++;
        if (want) {
          if (rnd(&seed, 3) == 0) {
            (void)concur_future_cancel(f);
          }
          keep[kept++] = f;
        }
      } else {
        ck_assert_rc(rc, CONCUR_ESHUTDOWN);
        ck_assert(i >= shut_at);
      }
    }
    ck_assert_rc(concur_executor_shutdown(ex, CONCUR_SHUTDOWN_WAIT), 0);
    ck_assert(concur_executor_is_terminated(ex));
    concur_executor_stats st = CONCUR_EXECUTOR_STATS_INIT;
    ck_assert_rc(concur_executor_get_stats(ex, &st), 0);
    ck_assert_uint_eq(st.submitted, (uint64_t)accepted);
    ck_assert_uint_eq(st.rejected, (uint64_t)(n - accepted));
    ck_assert_uint_eq(st.queued + st.running, 0);
    ck_assert_uint_eq(st.submitted, st.completed + st.failed + st.cancelled);
    for (long i = 0; i < kept; i++) {
      ck_assert(concur_future_done(keep[i]));
      concur_future_unref(keep[i]);
    }
    ck_assert_int_eq(atomic_load(&cleanups), accepted);
    concur_executor_free(ex);
  }
}
END_TEST

static int task_value(void *arg, void **result) {
  intptr_t v = (intptr_t)arg;
  if (v % 97 == 0) {
    return (int)v;
  }
  *result = (void *)(3 * v);
  return 0;
}

START_TEST(random_maps_check_every_item_and_cleanup) {
  uint64_t seed = harness_seed() | 1;
  long rounds = 400 * harness_scale();
  enum { MAXN = 600 };
  static void *args[MAXN], *results[MAXN];
  static int codes[MAXN];
  for (intptr_t i = 0; i < MAXN; i++) {
    args[i] = (void *)(i + 1);
  }
  for (long r = 0; r < rounds; r++) {
    concur_executor *ex = make_exec((int)rnd(&seed, KIND_COUNT));
    size_t n = (size_t)rnd(&seed, MAXN);
    concur_map_options o = CONCUR_MAP_OPTIONS_INIT;
    o.chunksize =
        rnd(&seed, 3) == 0 ? CONCUR_DEFAULT : (int64_t)rnd(&seed, 50) + 1;
    o.buffersize =
        rnd(&seed, 2) == 0 ? CONCUR_UNBOUNDED : (int64_t)rnd(&seed, 20) + 1;
    o.unordered = rnd(&seed, 2) == 0;
    o.errors = rnd(&seed, 2) == 0 ? CONCUR_MAP_STOP : CONCUR_MAP_COLLECT;
    o.cleanup = count_cleanup;
    atomic_store(&cleanups, 0);
    if (rnd(&seed, 2) == 0) {
      int rc = concur_executor_map(ex, task_value, args, n, results, codes, &o);
      bool any_fail = false;
      for (size_t i = 0; i < n; i++) {
        intptr_t v = (intptr_t)(i + 1);
        if (codes[i] == 0) {
          ck_assert_ptr_eq(results[i], (void *)(3 * v));
        } else if (codes[i] != CONCUR_ECANCELED) {
          ck_assert_int_eq(codes[i], (int)v);
          any_fail = true;
        }
        if (o.errors == CONCUR_MAP_COLLECT) {
          ck_assert_int_eq(codes[i], v % 97 == 0 ? (int)v : 0);
        }
      }
      ck_assert_rc(rc, any_fail ? CONCUR_ETASK : 0);
    } else {
      concur_imap *it = NULL;
      ck_assert_rc(concur_imap_new(&it, ex, task_value, args, n, &o), 0);
      size_t stop_after = (size_t)rnd(&seed, n + 2);
      size_t got = 0, expect_index = 0;
      for (;;) {
        if (got == stop_after) {
          break; /* freed early */
        }
        concur_map_item item;
        int rc = concur_imap_next(it, HARNESS_LONG_NS, &item);
        if (rc == 0) {
          break;
        }
        intptr_t v = (intptr_t)item.index + 1;
        ck_assert_ptr_eq(item.arg, (void *)v);
        if (!o.unordered) {
          ck_assert_uint_eq(item.index, expect_index++);
        }
        if (v % 97 == 0) {
          ck_assert_rc(rc, CONCUR_ETASK);
          ck_assert_int_eq(item.code, (int)v);
        } else {
          ck_assert_int_eq(rc, 1);
          ck_assert_ptr_eq(item.result, (void *)(3 * v));
        }
        got++;
      }
      concur_imap_free(it);
    }
    /* Every item's cleanup ran once, also for tasks still running. */
    ck_assert_rc(concur_executor_shutdown(ex, CONCUR_SHUTDOWN_WAIT), 0);
    ck_assert_int_eq(atomic_load(&cleanups), (long)n);
    concur_executor_free(ex);
  }
}
END_TEST

typedef struct racer {
  concur_executor *ex;
  uint64_t seed;
  int failures;
  pthread_t thread;
} racer;

static int add_body(void *arg, int64_t lo, int64_t hi) {
  atomic_fetch_add((_Atomic long *)arg, (long)(hi - lo));
  return 0;
}

static void *race_thread(void *arg) {
  racer *r = arg;
  long rounds = 200 * harness_scale();
  for (long k = 0; k < rounds; k++) {
    switch (rnd(&r->seed, 3)) {
    case 0: {
      _Atomic long total = 0;
      int64_t n = (int64_t)rnd(&r->seed, 20000);
      if (concur_executor_parallel_for(r->ex, 0, n, add_body, &total, NULL) !=
              0 ||
          atomic_load(&total) != n) {
        r->failures++;
      }
      break;
    }
    case 1: {
      concur_task_group *g = NULL;
      _Atomic long runs = 0;
      if (concur_task_group_new(&g, r->ex) != 0) {
        r->failures++;
        break;
      }
      long n = (long)rnd(&r->seed, 50);
      for (long i = 0; i < n; i++) {
        if (concur_task_group_submit(g, task_count, &runs) != 0) {
          r->failures++;
        }
      }
      if (concur_task_group_wait(g, HARNESS_LONG_NS, NULL) != 0 ||
          atomic_load(&runs) != n) {
        r->failures++;
      }
      concur_task_group_free(g);
      break;
    }
    default: {
      concur_task ts[4];
      for (intptr_t i = 0; i < 4; i++) {
        concur_task t = CONCUR_TASK_INIT(task_odd_fails, (void *)(i + 1));
        ts[i] = t;
      }
      size_t index = 0;
      void *res = NULL;
      if (concur_executor_invoke_any(r->ex, ts, 4, HARNESS_LONG_NS, &index,
                                     &res, NULL) != 0 ||
          (intptr_t)res % 2 != 0 || res == NULL) {
        r->failures++;
      }
      break;
    }
    }
  }
  return NULL;
}

START_TEST(algorithms_race_on_one_executor) {
  uint64_t seed = harness_seed() | 1;
  for (int kind = 0; kind < KIND_COUNT; kind++) {
    concur_executor *ex = make_exec(kind);
    racer rs[3];
    for (int i = 0; i < 3; i++) {
      rs[i].ex = ex;
      rs[i].seed = harness_rand(&seed) | 1;
      rs[i].failures = 0;
      pthread_create(&rs[i].thread, NULL, race_thread, &rs[i]);
    }
    for (int i = 0; i < 3; i++) {
      pthread_join(rs[i].thread, NULL);
      ck_assert_int_eq(rs[i].failures, 0);
    }

    ck_assert_rc(concur_executor_shutdown(ex, CONCUR_SHUTDOWN_WAIT), 0);
    concur_executor_stats st = CONCUR_EXECUTOR_STATS_INIT;
    ck_assert_rc(concur_executor_get_stats(ex, &st), 0);
    ck_assert_uint_eq(st.submitted, st.completed + st.failed + st.cancelled);
    concur_executor_free(ex);
  }
}
END_TEST

Suite *concur_test_suite(void) {
  Suite *s = suite_create("executor_stress");
  TCase *tc = harness_tcase("stress", 300);
  tcase_add_test(tc, create_submit_shutdown_cycles_counters_add_up);
  tcase_add_test(tc, random_maps_check_every_item_and_cleanup);
  tcase_add_test(tc, algorithms_race_on_one_executor);
  suite_add_tcase(s, tc);
  return s;
}
