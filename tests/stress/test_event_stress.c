/*
 * Event stress: EVT-03 rounds (set immediately followed by clear, with every
 * waiter parked or still arriving), timed waiters racing a toggling setter,
 * and the free-after-wait pattern. A lost wake-up hangs a waiter and the
 * case times out.
 */
#include "harness.h"

#define WAITERS 6

static void spin(uint64_t *rng, unsigned max) {
  unsigned n = (unsigned)(harness_rand(rng) % (max + 1));
  for (unsigned i = 0; i < n; i++) {
    concur__cpu_relax();
  }
}

static uint64_t thread_rng(_Atomic uint64_t *base) {
  uint64_t r = harness_seed() ^ atomic_fetch_add(base, 0x9E3779B97F4A7C15ull);
  return r == 0 ? 1 : r;
}

/* ---- EVT-03 rounds
 * ------------------------------------------------------------ */

typedef struct rounds {
  concur_event *event;
  concur_barrier *start; /* WAITERS + 1 parties */
  concur_barrier *end;   /* WAITERS + 1 parties */
  long n;
  _Atomic uint64_t seed_base;
  _Atomic long bad;
} rounds;

static void *round_waiter(void *arg) {
  rounds *r = arg;
  uint64_t rng = thread_rng(&r->seed_base);
  for (long i = 0; i < r->n; i++) {
    if (concur_barrier_wait(r->start, CONCUR_FOREVER) < 0) {
      atomic_fetch_add(&r->bad, 1);
      return NULL;
    }
    spin(&rng, 200);
    int64_t timeout = harness_rand(&rng) % 2 ? CONCUR_FOREVER : HARNESS_LONG_NS;
    if (concur_event_wait(r->event, timeout) != 0) {
      atomic_fetch_add(&r->bad, 1);
    }
    if (concur_barrier_wait(r->end, CONCUR_FOREVER) < 0) {
      atomic_fetch_add(&r->bad, 1);
      return NULL;
    }
  }
  return NULL;
}

START_TEST(EVT_03_stress_set_clear_rounds) {
  rounds r = {.n = 8000 * harness_scale()};
  ck_assert_rc(concur_event_new(&r.event), 0);
  ck_assert_rc(
      concur_barrier_new(&r.start, WAITERS + 1, NULL, NULL, CONCUR_FOREVER), 0);
  ck_assert_rc(
      concur_barrier_new(&r.end, WAITERS + 1, NULL, NULL, CONCUR_FOREVER), 0);
  pthread_t t[WAITERS];
  for (int i = 0; i < WAITERS; i++) {
    ck_assert_rc(concur__thread_spawn(&t[i], 0, true, round_waiter, &r), 0);
  }
  uint64_t rng = thread_rng(&r.seed_base);
  for (long i = 0; i < r.n; i++) {
    ck_assert_int_ge(concur_barrier_wait(r.start, CONCUR_FOREVER), 0);
    if (harness_rand(&rng) % 2) {
      /* Everyone parked: set then clear at once must release them all. */
      ck_assert_rc(concur__test_await_parked(r.event, WAITERS, HARNESS_LONG_NS),
                   0);
      ck_assert_rc(concur_event_set(r.event), 0);
      ck_assert_rc(concur_event_clear(r.event), 0);
      ck_assert_int_ge(concur_barrier_wait(r.end, CONCUR_FOREVER), 0);
    } else {
      /* Waiters still arriving: set at a random moment, clear once all
       * of them are through. */
      spin(&rng, 200);
      ck_assert_rc(concur_event_set(r.event), 0);
      ck_assert_int_ge(concur_barrier_wait(r.end, CONCUR_FOREVER), 0);
      ck_assert_rc(concur_event_clear(r.event), 0);
    }
  }
  for (int i = 0; i < WAITERS; i++) {
    pthread_join(t[i], NULL);
  }
  ck_assert_int_eq(atomic_load(&r.bad), 0);
  concur_barrier_free(r.start);
  concur_barrier_free(r.end);
  concur_event_free(r.event);
}
END_TEST

/* ---- timed waiters against a toggling setter
 * ---------------------------------- */

typedef struct toggle {
  concur_event *event;
  _Atomic int stop;
  long waits;
  _Atomic uint64_t seed_base;
  _Atomic long set_seen;
  _Atomic long timed_out;
  _Atomic long bad;
} toggle;

static void *timed_waiter(void *arg) {
  toggle *g = arg;
  uint64_t rng = thread_rng(&g->seed_base);
  for (long i = 0; i < g->waits; i++) {
    int64_t timeout = (int64_t)(harness_rand(&rng) % 200000); /* < 0.2 ms */
    int64_t t0 = harness_now_ns();
    int rc = concur_event_wait(g->event, timeout);
    int64_t elapsed = harness_now_ns() - t0;
    if (rc == 0) {
      atomic_fetch_add(&g->set_seen, 1);
    } else if (rc == CONCUR_ETIMEDOUT && elapsed >= timeout) {
      atomic_fetch_add(&g->timed_out, 1);
    } else {
      atomic_fetch_add(&g->bad, 1); /* an error, or an early timeout */
    }
  }
  return NULL;
}

static void *toggler(void *arg) {
  toggle *g = arg;
  uint64_t rng = thread_rng(&g->seed_base);
  while (!atomic_load(&g->stop)) {
    (void)concur_event_set(g->event);
    spin(&rng, 500);
    (void)concur_event_clear(g->event);
    spin(&rng, 2000);
  }
  return NULL;
}

START_TEST(EVT_02_stress_timed_waits_racing_set_and_clear) {
  toggle g = {.waits = 10000 * harness_scale()};
  ck_assert_rc(concur_event_new(&g.event), 0);
  pthread_t setter;
  pthread_t t[4];
  ck_assert_rc(concur__thread_spawn(&setter, 0, true, toggler, &g), 0);
  for (int i = 0; i < 4; i++) {
    ck_assert_rc(concur__thread_spawn(&t[i], 0, true, timed_waiter, &g), 0);
  }
  for (int i = 0; i < 4; i++) {
    pthread_join(t[i], NULL);
  }
  atomic_store(&g.stop, 1);
  pthread_join(setter, NULL);
  ck_assert_int_eq(atomic_load(&g.bad), 0);
  ck_assert_int_eq(atomic_load(&g.set_seen) + atomic_load(&g.timed_out),
                   4 * g.waits);
  concur_event_free(g.event);
}
END_TEST

/* ---- free right after a wait returned
 * ------------------------------------------- */

typedef struct relay {
  concur_semaphore *go;
  concur_event *current;
  long rounds;
} relay;

static void *partner(void *arg) {
  relay *r = arg;
  for (long i = 0; i < r->rounds; i++) {
    if (concur_semaphore_acquire(r->go, CONCUR_FOREVER) != 0) {
      return NULL;
    }
    (void)concur_event_set(r->current);
  }
  return NULL;
}

/* Distinct objects a case may park on: the test build's parked-thread table
 * (src/platform) keeps one slot per key ever parked on, 1024 per process,
 * and ASan's quarantine never hands a freed address back. */
#define MAX_PARKING_OBJECTS 250

START_TEST(EVT_01_stress_free_right_after_wait) {
  relay r = {.rounds = 5000 * harness_scale()};
  ck_assert_rc(concur_semaphore_new(&r.go, 0), 0);
  pthread_t t;
  ck_assert_rc(concur__thread_spawn(&t, 0, true, partner, &r), 0);
  long parking = 0;
  for (long i = 0; i < r.rounds; i++) {
    concur_event *e;
    ck_assert_rc(concur_event_new(&e), 0);
    r.current = e;
    ck_assert_rc(concur_semaphore_release(r.go, 1), 0);
    if (i % 16 == 0 && parking < MAX_PARKING_OBJECTS) {
      parking++; /* the set then takes its wake-up path */
      ck_assert_rc(concur_event_wait(e, CONCUR_FOREVER), 0);
    } else {
      while (concur_event_wait(e, CONCUR_NOWAIT) != 0) {
        concur__cpu_relax(); /* bounded by the partner's progress */
      }
    }
    concur_event_free(e); /* the setter may still be inside set() */
  }
  pthread_join(t, NULL);
  concur_semaphore_free(r.go);
}
END_TEST

Suite *concur_test_suite(void) {
  Suite *s = suite_create("event_stress");
  TCase *tc = harness_tcase("event_stress", 120);
  tcase_add_test(tc, EVT_03_stress_set_clear_rounds);
  tcase_add_test(tc, EVT_02_stress_timed_waits_racing_set_and_clear);
  tcase_add_test(tc, EVT_01_stress_free_right_after_wait);
  suite_add_tcase(s, tc);
  return s;
}
