/*
 * Stress for the thread module, sized by CONCUR_TEST_SCALE and randomized
 * from the printed seed: start/join/free-while-running cycles, many joiners
 * with random timeouts, renames racing with the end of a thread, Timer
 * cancel racing with expiry, and once under contention.
 */
#include "harness.h"

#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static uint64_t seeded(uint64_t salt) {
  uint64_t s = harness_seed() ^ (salt * 0x9E3779B97F4A7C15ULL);
  return s != 0 ? s : 1;
}

/* A random pause: nothing, a spin, a yield, or a short sleep. */
static void random_pause(uint64_t r) {
  switch (r % 4) {
  case 0:
    break;
  case 1:
    for (uint64_t i = 0; i < (r >> 8) % 20000; i++) {
      concur__cpu_relax();
    }
    break;
  case 2:
    sched_yield();
    break;
  default: {
    struct timespec ts = {0, (long)((r >> 8) % 200000)};
    nanosleep(&ts, NULL);
    break;
  }
  }
}

static void quiet_hook(void *arg, concur_thread *thread, int code) {
  (void)thread;
  (void)code;
  atomic_fetch_add((_Atomic int *)arg, 1);
}

typedef struct work {
  uint64_t pause;
  int code;
  _Atomic int *runs;
} work;

static int do_work(void *arg, void **result) {
  work *w = arg;
  random_pause(w->pause);
  int code = w->code;
  *result = w;
  /* The last touch of w: the main thread frees the records after reading
   * runs, and this increment is what orders the reads above before that. */
  atomic_fetch_add(w->runs, 1);
  return code;
}

START_TEST(thread_stress_start_join_free_cycles) {
  int threads = harness_thread_count();
  size_t active = concur_thread_active_count();
  _Atomic int failures_hooked = 0;
  concur_thread_set_excepthook(quiet_hook, &failures_hooked);
  uint64_t rng = seeded(1);
  _Atomic int runs = 0;
  int started = 0;
  int failing = 0;
  const int rounds = (int)(400 * harness_scale());
  enum { K = 6 };
  /* Detached threads still use their work records: keep them all. */
  work *works = calloc((size_t)rounds * K, sizeof *works);
  ck_assert_ptr_nonnull(works);
  for (int round = 0; round < rounds; round++) {
    int k = 1 + (int)(harness_rand(&rng) % K);
    concur_thread *t[K];
    work *w = &works[round * K];
    for (int i = 0; i < k; i++) {
      w[i].pause = harness_rand(&rng);
      w[i].code = harness_rand(&rng) % 8 == 0 ? 1 + (int)(w[i].pause % 50) : 0;
      w[i].runs = &runs;
      ck_assert_rc(concur_thread_run(&t[i], do_work, &w[i], NULL), 0);
      started++;
      failing += w[i].code != 0;
    }
    for (int i = 0; i < k; i++) {
      uint64_t how = harness_rand(&rng) % 3;
      int expect = w[i].code == 0 ? 0 : CONCUR_ETASK;
      void *res = NULL;
      if (how == 0) {
        ck_assert_rc(concur_thread_join(t[i], CONCUR_FOREVER, &res), expect);
      } else if (how == 1) {
        int64_t timeout = (int64_t)(harness_rand(&rng) % 300000);
        int rc = concur_thread_join(t[i], timeout, &res);
        ck_assert_msg(rc == expect || rc == CONCUR_ETIMEDOUT, "join: %s",
                      concur_err_name(rc));
        if (rc == CONCUR_ETIMEDOUT) {
          ck_assert_rc(concur_thread_join(t[i], CONCUR_FOREVER, &res), expect);
        }
      } else {
        concur_thread_free(t[i]); /* maybe still running: detached */
        t[i] = NULL;
        continue;
      }
      if (expect == 0) {
        ck_assert_ptr_eq(res, &w[i]);
      } else {
        ck_assert_int_eq(concur_thread_exit_code(t[i]), w[i].code);
      }
      ck_assert(!concur_thread_is_alive(t[i]));
      concur_thread_free(t[i]);
    }
  }
  ck_assert(harness_await_thread_count(threads));
  ck_assert_int_eq(concur_thread_active_count(), active);
  ck_assert_int_eq(atomic_load(&runs), started);
  ck_assert_int_eq(atomic_load(&failures_hooked), failing);
  concur_thread_set_excepthook(NULL, NULL);
  free(works);
}
END_TEST

typedef struct target_arg {
  uint64_t delay_ns;
  int token;
} target_arg;

static int delayed_target(void *arg, void **result) {
  target_arg *a = arg;
  struct timespec ts = {0, (long)a->delay_ns};
  nanosleep(&ts, NULL);
  *result = &a->token;
  return 0;
}

typedef struct timed_joiner {
  concur_thread *target;
  int64_t timeout;
  bool retry; /* keep joining with short timeouts until done */
  int rc;
  int attempts;
  int64_t elapsed;
  void *result;
} timed_joiner;

static int join_randomly(void *arg, void **result) {
  (void)result;
  timed_joiner *j = arg;
  do {
    int64_t t0 = harness_now_ns();
    j->rc = concur_thread_join(j->target, j->timeout, &j->result);
    j->elapsed = harness_now_ns() - t0;
    j->attempts++;
    if (j->rc == CONCUR_ETIMEDOUT && j->elapsed < j->timeout) {
      return 1; /* early: recorded for the main thread */
    }
  } while (j->retry && j->rc == CONCUR_ETIMEDOUT);
  return 0;
}

START_TEST(thread_stress_many_joiners_with_random_timeouts) {
  uint64_t rng = seeded(2);
  const int rounds = (int)(100 * harness_scale());
  enum { M = 8 };
  for (int round = 0; round < rounds; round++) {
    target_arg ta = {harness_rand(&rng) % 2000000, round};
    concur_thread *target;
    ck_assert_rc(concur_thread_run(&target, delayed_target, &ta, NULL), 0);
    int m = 2 + (int)(harness_rand(&rng) % (M - 1));
    timed_joiner j[M];
    concur_thread *jt[M];
    for (int i = 0; i < m; i++) {
      uint64_t r = harness_rand(&rng);
      int64_t timeout = r % 5 == 0   ? CONCUR_FOREVER
                        : r % 5 == 1 ? CONCUR_NOWAIT
                                     : (int64_t)((r >> 8) % 3000000);
      j[i] = (timed_joiner){target, timeout, (r >> 40) % 2 == 0, 1, 0, 0, NULL};
      ck_assert_rc(concur_thread_run(&jt[i], join_randomly, &j[i], NULL), 0);
    }
    for (int i = 0; i < m; i++) {
      ck_assert_rc(concur_thread_join(jt[i], CONCUR_FOREVER, NULL), 0);
      concur_thread_free(jt[i]);
      ck_assert_msg(j[i].rc == 0 || j[i].rc == CONCUR_ETIMEDOUT, "rc %s",
                    concur_err_name(j[i].rc));
      if (j[i].rc == 0) {
        ck_assert_ptr_eq(j[i].result, &ta.token);
      } else {
        ck_assert(j[i].timeout != CONCUR_FOREVER);
        ck_assert(!j[i].retry);
        ck_assert_int_ge(j[i].elapsed, j[i].timeout);
      }
    }
    void *res = NULL;
    ck_assert_rc(concur_thread_join(target, CONCUR_FOREVER, &res), 0);
    ck_assert_ptr_eq(res, &ta.token);
    concur_thread_free(target);
  }
}
END_TEST

typedef struct renamer {
  concur_thread *target;
  uint64_t seed;
  int count;
} renamer;

static int rename_repeatedly(void *arg, void **result) {
  (void)result;
  renamer *r = arg;
  char name[32];
  for (int i = 0; i < r->count; i++) {
    snprintf(name, sizeof name, "renamed-%d", i);
    if (concur_thread_set_name(r->target, name) != 0) {
      return 1;
    }
    random_pause(harness_rand(&r->seed) & ~(uint64_t)3); /* no sleeps */
  }
  return 0;
}

static int short_life(void *arg, void **result) {
  (void)result;
  random_pause((uint64_t)(uintptr_t)arg);
  char buf[CONCUR_THREAD_NAME_MAX + 1];
  return concur_thread_current_name(buf, sizeof buf) > 0 ? 0 : 1;
}

START_TEST(thread_stress_renames_race_with_start_and_end) {
  uint64_t rng = seeded(3);
  const int rounds = (int)(150 * harness_scale());
  for (int round = 0; round < rounds; round++) {
    concur_thread *t;
    ck_assert_rc(concur_thread_new(&t, short_life,
                                   (void *)(uintptr_t)harness_rand(&rng), NULL),
                 0);
    renamer r = {t, seeded((uint64_t)round + 100), 20};
    concur_thread *rt;
    ck_assert_rc(concur_thread_run(&rt, rename_repeatedly, &r, NULL), 0);
    random_pause(harness_rand(&rng) & ~(uint64_t)3);
    ck_assert_rc(concur_thread_start(t), 0);
    ck_assert_rc(concur_thread_join(rt, CONCUR_FOREVER, NULL), 0);
    ck_assert_rc(concur_thread_join(t, CONCUR_FOREVER, NULL), 0);
    char name[32];
    ck_assert_int_gt(concur_thread_get_name(t, name, sizeof name), 0);
    ck_assert_str_eq(name, "renamed-19");
    concur_thread_free(rt);
    concur_thread_free(t);
  }
}
END_TEST

typedef struct timer_probe {
  _Atomic int calls;
} timer_probe;

static int timer_fn(void *arg, void **result) {
  timer_probe *p = arg;
  atomic_fetch_add(&p->calls, 1);
  *result = p;
  return 0;
}

START_TEST(timer_stress_cancel_races_with_expiry) {
  uint64_t rng = seeded(4);
  const int rounds = (int)(300 * harness_scale());
  int ran = 0;
  int cancelled = 0;
  for (int round = 0; round < rounds; round++) {
    timer_probe p = {0};
    concur_timer *tm;
    int64_t interval = (int64_t)(harness_rand(&rng) % 400000);
    ck_assert_rc(concur_timer_new(&tm, interval, timer_fn, &p, NULL), 0);
    bool cancel_first = harness_rand(&rng) % 8 == 0;
    if (cancel_first) {
      ck_assert_rc(concur_timer_cancel(tm), 0);
    }
    ck_assert_rc(concur_timer_start(tm), 0);
    random_pause(harness_rand(&rng));
    ck_assert_rc(concur_timer_cancel(tm), 0);
    void *res = NULL;
    int rc = concur_timer_join(tm, CONCUR_FOREVER, &res);
    if (rc == 0) {
      ck_assert(!cancel_first);
      ck_assert_int_eq(atomic_load(&p.calls), 1);
      ck_assert_ptr_eq(res, &p);
      ran++;
    } else {
      ck_assert_rc(rc, CONCUR_ECANCELED);
      ck_assert_int_eq(atomic_load(&p.calls), 0);
      cancelled++;
    }
    concur_timer_free(tm);
  }
  ck_assert_int_eq(ran + cancelled, rounds);
}
END_TEST

typedef struct once_race {
  concur_once once;
  _Atomic int calls;
  int value;
} once_race;

static void once_fn(void *arg) {
  once_race *o = arg;
  atomic_fetch_add(&o->calls, 1);
  random_pause((uint64_t)(uintptr_t)o & ~(uint64_t)3);
  o->value = 77;
}

typedef struct once_caller {
  once_race *o;
  uint64_t pause;
  int rc;
  int seen;
} once_caller;

static int race_once(void *arg, void **result) {
  (void)result;
  once_caller *c = arg;
  random_pause(c->pause);
  c->rc = concur_once_call(&c->o->once, once_fn, c->o);
  c->seen = c->o->value;
  return 0;
}

START_TEST(once_stress_racing_callers) {
  uint64_t rng = seeded(5);
  const int rounds = (int)(150 * harness_scale());
  enum { N = 6 };
  for (int round = 0; round < rounds; round++) {
    once_race o = {CONCUR_ONCE_INIT, 0, 0};
    once_caller c[N];
    concur_thread *t[N];
    for (int i = 0; i < N; i++) {
      c[i] = (once_caller){&o, harness_rand(&rng), 1, 0};
      ck_assert_rc(concur_thread_run(&t[i], race_once, &c[i], NULL), 0);
    }
    for (int i = 0; i < N; i++) {
      ck_assert_rc(concur_thread_join(t[i], CONCUR_FOREVER, NULL), 0);
      concur_thread_free(t[i]);
      ck_assert_rc(c[i].rc, 0);
      ck_assert_int_eq(c[i].seen, 77);
    }
    ck_assert_int_eq(atomic_load(&o.calls), 1);
  }
}
END_TEST

Suite *concur_test_suite(void) {
  Suite *s = suite_create("thread_stress");
  TCase *tc = harness_tcase("thread_stress", 120);
  tcase_add_test(tc, thread_stress_start_join_free_cycles);
  tcase_add_test(tc, thread_stress_many_joiners_with_random_timeouts);
  tcase_add_test(tc, thread_stress_renames_race_with_start_and_end);
  tcase_add_test(tc, timer_stress_cancel_races_with_expiry);
  tcase_add_test(tc, once_stress_racing_callers);
  suite_add_tcase(s, tc);
  return s;
}
