/*
 * Stress for the thread pool: create/submit/shutdown cycles with random
 * options and random wait/cancel/now flags where the counters add up
 * exactly and nothing hangs; many submitters, cancellers and stats readers
 * at once; the pool's queue alone with many producers and consumers across
 * segment recycling; idle pools created and freed in a loop; a large idle
 * pool shutting down at once; streams of tiny tasks (taken in batches) cut
 * by shutdown_now. Sizes scale with CONCUR_TEST_SCALE; the
 * randomness comes from harness_seed().
 */
#include "../unit/test_thread_pool_util.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

/* ---- cycles ---------------------------------------------------------------
 */

typedef struct cycle_ctx {
  _Atomic long ran;      /* task bodies that ran */
  _Atomic long cleanups; /* cleanups that ran */
  _Atomic long unrun;    /* tasks handed back by shutdown_now */
} cycle_ctx;

static int cycle_task(void *arg, void **result) {
  (void)result;
  cycle_ctx *c = arg;
  long n = atomic_fetch_add(&c->ran, 1);
  return (n % 7) == 3 ? 9 : 0; /* some fail */
}

static void cycle_cleanup(void *arg, void *result) {
  (void)result;
  atomic_fetch_add(&((cycle_ctx *)arg)->cleanups, 1);
}

static void cycle_unrun(void *ctx, concur_task_fn fn, void *arg) {
  (void)fn;
  (void)arg;
  atomic_fetch_add(&((cycle_ctx *)ctx)->unrun, 1);
}

START_TEST(cycles_with_random_flags_add_up) {
  uint64_t rng = harness_seed();
  long cycles = 10000 * harness_scale();
  for (long cycle = 0; cycle < cycles; cycle++) {
    concur_thread_pool_options o = CONCUR_THREAD_POOL_OPTIONS_INIT;
    o.max_workers = 1 + (int)(harness_rand(&rng) % 4);
    o.core_workers = (int)(harness_rand(&rng) % (uint64_t)(o.max_workers + 1));
    uint64_t q = harness_rand(&rng) % 4;
    o.queue_capacity = q == 0 ? CONCUR_UNBOUNDED : (int64_t)(q - 1) * 4;
    o.rejection = (concur_rejection_policy)(harness_rand(&rng) % 5);
    o.block_timeout_ns = 1000000;
    o.idle_timeout_ns = harness_rand(&rng) % 2 ? 0 : CONCUR_DEFAULT;
    o.allow_core_timeout = harness_rand(&rng) % 2;
    concur_executor *ex = tp_new(&o);
    cycle_ctx c = {0, 0, 0};
    int n = (int)(harness_rand(&rng) % 40);
    concur_future *fs[40];
    int nf = 0;
    long accepted = 0;
    for (int i = 0; i < n; i++) {
      concur_task t = CONCUR_TASK_INIT(cycle_task, &c);
      t.cleanup = cycle_cleanup;
      bool want = harness_rand(&rng) % 2;
      concur_future *f = NULL;
      int rc = concur_executor_submit_task(ex, &t, want ? &f : NULL);
      ck_assert_msg(rc == 0 || rc == CONCUR_EREJECTED || rc == CONCUR_ETIMEDOUT,
                    "submit: %s", concur_err_name(rc));
      if (rc != 0) {
        continue;
      }
      accepted++;
      if (f != NULL) {
        if (harness_rand(&rng) % 4 == 0) {
          (void)concur_future_cancel(f);
        }
        fs[nf++] = f;
      }
    }
    uint64_t how = harness_rand(&rng) % 5;
    if (how == 0) {
      ck_assert_rc(concur_executor_shutdown(ex, CONCUR_SHUTDOWN_WAIT), 0);
    } else if (how == 1) {
      ck_assert_rc(
          concur_executor_shutdown(ex, CONCUR_SHUTDOWN_WAIT |
                                           CONCUR_SHUTDOWN_CANCEL_FUTURES),
          0);
    } else if (how == 2) {
      ck_assert_int_ge(concur_executor_shutdown_now(ex, cycle_unrun, &c), 0);
      ck_assert_rc(concur_executor_await_termination(ex, HARNESS_LONG_NS), 0);
    } else if (how == 3) {
      ck_assert_rc(concur_executor_shutdown(ex, CONCUR_SHUTDOWN_CANCEL_FUTURES),
                   0);
      ck_assert_rc(concur_executor_await_termination(ex, HARNESS_LONG_NS), 0);
    }
    if (how != 4) {
      concur_executor_stats s = tp_stats(ex);
      ck_assert_uint_eq(s.submitted, (uint64_t)accepted);
      ck_assert_uint_eq(s.queued, 0);
      ck_assert_uint_eq(s.running, 0);
      ck_assert_uint_eq(s.completed + s.failed, (uint64_t)atomic_load(&c.ran));
      ck_assert_uint_eq(s.workers, 0);
      ck_assert_uint_eq(s.rejected, (uint64_t)(n - accepted));
      ck_assert(concur_executor_is_terminated(ex));
    }
    concur_executor_free(ex); /* how == 4: free does it all */
    for (int i = 0; i < nf; i++) {
      ck_assert(concur_future_done(fs[i])); /* none left pending */
      concur_future_unref(fs[i]);
    }
    /* Every accepted task: cleaned up once, or handed back. */
    ck_assert_int_eq(atomic_load(&c.cleanups) + atomic_load(&c.unrun),
                     accepted);
  }
}
END_TEST

/* ---- many threads at once ---------------------------------------------------
 */

typedef struct crowd {
  concur_executor *ex;
  _Atomic long ran;
  _Atomic long accepted;
  _Atomic long cancelled_ok;
  _Atomic int stop_readers;
  _Atomic long bad_reads;
  uint64_t seed;
  int per_thread;
} crowd;

static int crowd_task(void *arg, void **result) {
  (void)result;
  atomic_fetch_add(&((crowd *)arg)->ran, 1);
  return 0;
}

static void *crowd_submitter(void *arg) {
  crowd *c = arg;
  uint64_t rng = c->seed ^ (uint64_t)(uintptr_t)&rng;
  if (rng == 0) {
    rng = 1;
  }
  for (int i = 0; i < c->per_thread; i++) {
    concur_future *f = NULL;
    bool want = harness_rand(&rng) % 3 == 0;
    if (concur_executor_submit(c->ex, crowd_task, c, want ? &f : NULL) == 0) {
      atomic_fetch_add(&c->accepted, 1);
      if (f != NULL) {
        if (harness_rand(&rng) % 2 && concur_future_cancel(f)) {
          atomic_fetch_add(&c->cancelled_ok, 1);
        }
        concur_future_unref(f);
      }
    }
  }
  return NULL;
}

static void *crowd_reader(void *arg) {
  crowd *c = arg;
  while (!atomic_load(&c->stop_readers)) {
    concur_executor_stats s = CONCUR_EXECUTOR_STATS_INIT;
    if (concur_executor_get_stats(c->ex, &s) != 0 ||
        s.submitted !=
            s.queued + s.running + s.completed + s.failed + s.cancelled ||
        s.active > s.workers || s.running > (1u << 20)) {
      atomic_fetch_add(&c->bad_reads, 1);
    }
    (void)concur_executor_help(c->ex);
  }
  return NULL;
}

START_TEST(submitters_cancellers_and_readers_at_once) {
  for (int round = 0; round < 4; round++) {
    concur_thread_pool_options o = CONCUR_THREAD_POOL_OPTIONS_INIT;
    o.max_workers = 1 + round;
    o.core_workers = round % 2;
    o.queue_capacity = round == 3 ? 64 : CONCUR_UNBOUNDED;
    o.rejection = round == 3 ? CONCUR_REJECT_CALLER_RUNS : CONCUR_REJECT_ABORT;
    o.idle_timeout_ns = 100000;
    crowd c;
    memset(&c, 0, sizeof c);
    c.ex = tp_new(&o);
    c.seed = harness_seed() + (uint64_t)round;
    c.per_thread = (int)(5000 * harness_scale());
    pthread_t sub[3], rd;
    ck_assert_int_eq(pthread_create(&rd, NULL, crowd_reader, &c), 0);
    for (int i = 0; i < 3; i++) {
      ck_assert_int_eq(pthread_create(&sub[i], NULL, crowd_submitter, &c), 0);
    }
    for (int i = 0; i < 3; i++) {
      pthread_join(sub[i], NULL);
    }
    ck_assert_rc(concur_executor_shutdown(c.ex, CONCUR_SHUTDOWN_WAIT), 0);
    atomic_store(&c.stop_readers, 1);
    pthread_join(rd, NULL);
    ck_assert_int_eq(atomic_load(&c.bad_reads), 0);
    concur_executor_stats s = tp_stats(c.ex);
    ck_assert_uint_eq(s.submitted, (uint64_t)atomic_load(&c.accepted));
    ck_assert_uint_eq(s.cancelled, (uint64_t)atomic_load(&c.cancelled_ok));
    ck_assert_uint_eq(s.completed, (uint64_t)atomic_load(&c.ran));
    ck_assert_uint_eq(s.queued + s.running + s.failed, 0);
    concur_executor_free(c.ex);
  }
}
END_TEST

/* ---- the queue alone
 * ---------------------------------------------------------- */

typedef struct qctx {
  concur__pool_queue q;
  long per_producer;
  _Atomic long popped;
  _Atomic uint64_t sum;
  _Atomic int producers_left;
  long total;
} qctx;

typedef struct qarg {
  qctx *c;
  long id;
} qarg;

static void *q_producer(void *arg) {
  qarg *a = arg;
  for (long i = 0; i < a->c->per_producer; i++) {
    concur__task_record rec;
    memset(&rec, 0, sizeof rec);
    rec.arg = (void *)(intptr_t)(a->id * a->c->per_producer + i + 1);
    while (concur__pool_queue_push(&a->c->q, NULL, &rec, 0, NULL) != 0) {
    }
  }
  atomic_fetch_sub(&a->c->producers_left, 1);
  return NULL;
}

static void *q_consumer(void *arg) {
  qctx *c = arg;
  concur__pool_entry e;
  while (atomic_load(&c->popped) < c->total) {
    if (concur__pool_queue_pop(&c->q, &e)) {
      atomic_fetch_add(&c->sum, (uint64_t)(intptr_t)e.rec.arg);
      atomic_fetch_add(&c->popped, 1);
    } else {
      sched_yield();
    }
  }
  return NULL;
}

START_TEST(queue_many_producers_and_consumers_lose_nothing) {
  qctx c;
  memset(&c, 0, sizeof c);
  ck_assert_rc(concur__pool_queue_init(&c.q), 0);
  c.per_producer = 20000 * harness_scale();
  c.total = 3 * c.per_producer;
  atomic_store(&c.producers_left, 3);
  pthread_t p[3], k[3];
  qarg args[3];
  for (int i = 0; i < 3; i++) {
    args[i].c = &c;
    args[i].id = i;
    ck_assert_int_eq(pthread_create(&k[i], NULL, q_consumer, &c), 0);
  }
  for (int i = 0; i < 3; i++) {
    ck_assert_int_eq(pthread_create(&p[i], NULL, q_producer, &args[i]), 0);
  }
  for (int i = 0; i < 3; i++) {
    pthread_join(p[i], NULL);
    pthread_join(k[i], NULL);
  }
  uint64_t n = (uint64_t)c.total;
  ck_assert_int_eq(atomic_load(&c.popped), c.total);
  ck_assert_uint_eq(atomic_load(&c.sum), n * (n + 1) / 2);
  concur__pool_entry e;
  ck_assert(!concur__pool_queue_pop(&c.q, &e));
  concur__pool_queue_close(&c.q, false);
  ck_assert_rc(concur__pool_queue_push(&c.q, NULL, NULL, 0, NULL),
               CONCUR_ESHUTDOWN);
  concur__pool_queue_destroy(&c.q);
}
END_TEST

/* ---- idle pools (XC-06) and a large idle pool (XC-07)
 * ------------------------------ */

START_TEST(idle_pools_created_and_freed) {
  long n = 300 * harness_scale();
  for (long i = 0; i < n; i++) {
    concur_thread_pool_options o = CONCUR_THREAD_POOL_OPTIONS_INIT;
    o.max_workers = 2;
    o.prestart = i % 2 == 0;
    concur_executor *ex = tp_new(&o);
    if (i % 3 == 0) {
      ck_assert_rc(concur_executor_submit(ex, tp_task_echo, NULL, NULL), 0);
    }
    concur_executor_free(ex);
  }
}
END_TEST

START_TEST(large_idle_pool_shuts_down_at_once) {
  concur_thread_pool_options o = CONCUR_THREAD_POOL_OPTIONS_INIT;
  o.max_workers = 256;
  o.prestart = true;
  concur_executor *ex = tp_new(&o);
  TP_AWAIT_PARKED(ex, 256);
  int64_t t0 = harness_now_ns();
  concur_executor_free(ex);
  int64_t took = harness_now_ns() - t0;
  ck_assert_msg(took < 2000000000LL * harness_slack(),
                "256 idle workers took %lld ns to shut down", (long long)took);
}
END_TEST

/* ---- streams cut by shutdown_now (batches) --------------------------------
 */

#define STREAM_TASKS 4000

typedef struct stream_ctx {
  concur_executor *ex;
  _Atomic int ran[STREAM_TASKS];
  _Atomic int handed[STREAM_TASKS];
  bool accepted[STREAM_TASKS]; /* the submitter's; read after the join */
  _Atomic long submitted;
} stream_ctx;

static int stream_task(void *arg, void **result) {
  (void)result;
  atomic_fetch_add_explicit((_Atomic int *)arg, 1, memory_order_relaxed);
  return 0;
}

static void stream_unrun(void *ctx, concur_task_fn fn, void *arg) {
  stream_ctx *c = ctx;
  if (fn != stream_task) {
    return;
  }
  /* arg is &c->ran[i]: find i. */
  size_t i = (size_t)((_Atomic int *)arg - c->ran);
  if (i < STREAM_TASKS) {
    atomic_fetch_add_explicit(&c->handed[i], 1, memory_order_relaxed);
  }
}

static void *stream_submitter(void *arg) {
  stream_ctx *c = arg;
  for (int i = 0; i < STREAM_TASKS; i++) {
    c->accepted[i] =
        concur_executor_submit(c->ex, stream_task, &c->ran[i], NULL) == 0;
    atomic_fetch_add_explicit(&c->submitted, 1, memory_order_relaxed);
  }
  return NULL;
}

/* A stream of tiny fire-and-forget tasks (which workers take in batches)
 * cut by shutdown_now at a random moment: every accepted task either ran
 * or was handed back, exactly once; no refused one did either. */
START_TEST(streams_cut_by_shutdown_now_lose_and_repeat_nothing) {
  uint64_t rng = harness_seed();
  long rounds = 30 * harness_scale();
  stream_ctx *c = calloc(1, sizeof *c);
  ck_assert_ptr_nonnull(c);
  for (long round = 0; round < rounds; round++) {
    memset(c, 0, sizeof *c);
    concur_thread_pool_options o = CONCUR_THREAD_POOL_OPTIONS_INIT;
    o.max_workers = 1 + (int)(harness_rand(&rng) % 3);
    c->ex = tp_new(&o);
    pthread_t t;
    ck_assert_int_eq(pthread_create(&t, NULL, stream_submitter, c), 0);
    long cut = (long)(harness_rand(&rng) % STREAM_TASKS);
    while (atomic_load_explicit(&c->submitted, memory_order_relaxed) < cut) {
      concur__cpu_relax(); /* bounded by the submitter's progress */
    }
    int handed = concur_executor_shutdown_now(c->ex, stream_unrun, c);
    ck_assert_int_eq(pthread_join(t, NULL), 0);
    ck_assert_rc(concur_executor_await_termination(c->ex, HARNESS_LONG_NS), 0);
    long sum_handed = 0;
    for (int i = 0; i < STREAM_TASKS; i++) {
      int r = atomic_load(&c->ran[i]);
      int h = atomic_load(&c->handed[i]);
      sum_handed += h;
      if (c->accepted[i]) {
        ck_assert_msg(r + h == 1, "round %ld task %d: ran %d, handed %d", round,
                      i, r, h);
      } else {
        ck_assert_msg(r + h == 0, "round %ld refused task %d: ran %d", round, i,
                      r);
      }
    }
    ck_assert_int_eq(sum_handed, handed);
    concur_executor_free(c->ex);
  }
  free(c);
}
END_TEST

Suite *concur_test_suite(void) {
  Suite *s = suite_create("thread_pool_stress");
  TCase *tc = harness_tcase("stress", 600);
  tcase_add_test(tc, cycles_with_random_flags_add_up);
  tcase_add_test(tc, streams_cut_by_shutdown_now_lose_and_repeat_nothing);
  tcase_add_test(tc, submitters_cancellers_and_readers_at_once);
  tcase_add_test(tc, queue_many_producers_and_consumers_lose_nothing);
  tcase_add_test(tc, idle_pools_created_and_freed);
  tcase_add_test(tc, large_idle_pool_shuts_down_at_once);
  suite_add_tcase(s, tc);
  return s;
}
