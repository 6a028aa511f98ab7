/*
 * Barrier stress: many generations with random timing (indices distinct per
 * generation, the action exactly once per generation, before anyone leaves);
 * rounds where an abort or one party's short timeout races the arrivals
 * (every generation ends all-or-nothing); and a party freeing the barrier
 * right after its own wait.
 */
#include "harness.h"

#include <stdlib.h>

#define MAX_PARTIES 8

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

/* ---- generations
 * ------------------------------------------------------------------ */

typedef struct gens {
  concur_barrier *barrier;
  int parties;
  long n;
  _Atomic uint64_t seed_base;
  _Atomic int *arrived;  /* per generation */
  _Atomic int *returned; /* per generation */
  int *index;            /* [generation * parties + thread] */
  _Atomic long actions;
  _Atomic long bad;
  _Atomic int next_id;
} gens;

static int gen_action(void *arg) {
  gens *g = arg;
  long k = atomic_load(&g->actions);
  if (k >= g->n || atomic_load(&g->arrived[k]) != g->parties ||
      atomic_load(&g->returned[k]) != 0) {
    atomic_fetch_add(&g->bad, 1);
  }
  atomic_store(&g->actions, k + 1);
  return 0;
}

static void *gen_party(void *arg) {
  gens *g = arg;
  int id = atomic_fetch_add(&g->next_id, 1);
  uint64_t rng = thread_rng(&g->seed_base);
  for (long k = 0; k < g->n; k++) {
    spin(&rng, harness_rand(&rng) % 8 == 0 ? 5000 : 100);
    atomic_fetch_add(&g->arrived[k], 1);
    int64_t timeout = harness_rand(&rng) % 2 ? CONCUR_FOREVER : HARNESS_LONG_NS;
    int rc = concur_barrier_wait(g->barrier, timeout);
    g->index[k * g->parties + id] = rc;
    if (rc < 0) {
      atomic_fetch_add(&g->bad, 1);
      return NULL;
    }
    /* The action ran exactly once for this generation, before we left. */
    if (atomic_load(&g->actions) != k + 1) {
      atomic_fetch_add(&g->bad, 1);
    }
    atomic_fetch_add(&g->returned[k], 1);
  }
  return NULL;
}

static void run_generations(int parties, long n) {
  gens g = {.parties = parties, .n = n};
  g.arrived = calloc((size_t)n, sizeof *g.arrived);
  g.returned = calloc((size_t)n, sizeof *g.returned);
  g.index = calloc((size_t)(n * parties), sizeof *g.index);
  ck_assert(g.arrived != NULL && g.returned != NULL && g.index != NULL);
  ck_assert_rc(
      concur_barrier_new(&g.barrier, parties, gen_action, &g, CONCUR_FOREVER),
      0);
  pthread_t t[MAX_PARTIES];
  for (int i = 0; i < parties; i++) {
    ck_assert_rc(concur__thread_spawn(&t[i], 0, true, gen_party, &g), 0);
  }
  for (int i = 0; i < parties; i++) {
    pthread_join(t[i], NULL);
  }
  ck_assert_int_eq(atomic_load(&g.bad), 0);
  ck_assert_int_eq(atomic_load(&g.actions), n);
  for (long k = 0; k < n; k++) {
    unsigned seen = 0;
    for (int i = 0; i < parties; i++) {
      int rc = g.index[k * parties + i];
      ck_assert_msg(rc >= 0 && rc < parties, "generation %ld: %s", k,
                    concur_err_name(rc));
      seen |= 1u << rc;
    }
    ck_assert_msg(seen == (1u << parties) - 1,
                  "generation %ld: indices not distinct", k);
  }
  ck_assert(!concur_barrier_broken(g.barrier));
  concur_barrier_free(g.barrier);
  free(g.arrived);
  free(g.returned);
  free(g.index);
}

START_TEST(BAR_02_stress_many_generations_four_parties) {
  run_generations(4, 15000 * harness_scale());
}
END_TEST

START_TEST(BAR_04_stress_many_generations_seven_parties) {
  run_generations(7, 5000 * harness_scale());
}
END_TEST

/* ---- rounds where an abort or a timeout races the arrivals
 * ------------------------- */

#define ROUND_PARTIES 4

typedef struct rounds {
  concur_barrier *barrier; /* under test */
  concur_barrier *control; /* ROUND_PARTIES + 1: start and end of a round */
  long n;
  _Atomic int timed_id; /* this round's party with a short timeout, or -1 */
  _Atomic uint64_t seed_base;
  _Atomic int next_id;
  int rc[ROUND_PARTIES];
  _Atomic long bad;
} rounds;

static void *round_party(void *arg) {
  rounds *r = arg;
  int id = atomic_fetch_add(&r->next_id, 1);
  uint64_t rng = thread_rng(&r->seed_base);
  for (long k = 0; k < r->n; k++) {
    if (concur_barrier_wait(r->control, CONCUR_FOREVER) < 0) {
      atomic_fetch_add(&r->bad, 1);
      return NULL;
    }
    spin(&rng, 300);
    int64_t timeout = atomic_load(&r->timed_id) == id
                          ? (int64_t)(harness_rand(&rng) % 100000)
                          : CONCUR_FOREVER;
    r->rc[id] = concur_barrier_wait(r->barrier, timeout);
    if (concur_barrier_wait(r->control, CONCUR_FOREVER) < 0) {
      atomic_fetch_add(&r->bad, 1);
      return NULL;
    }
  }
  return NULL;
}

/* A generation either completes for all or breaks for all. */
static void check_round(rounds *r, long k, int timed_id) {
  int ok = 0;
  int broken = 0;
  int timed_out = 0;
  unsigned seen = 0;
  for (int i = 0; i < ROUND_PARTIES; i++) {
    int rc = r->rc[i];
    if (rc >= 0 && rc < ROUND_PARTIES) {
      ok++;
      seen |= 1u << rc;
    } else if (rc == CONCUR_EBROKEN) {
      broken++;
    } else if (rc == CONCUR_ETIMEDOUT && i == timed_id) {
      timed_out++;
    } else {
      ck_abort_msg("round %ld: party %d got %s", k, i, concur_err_name(rc));
    }
  }
  if (ok > 0) {
    ck_assert_msg(ok == ROUND_PARTIES && seen == (1u << ROUND_PARTIES) - 1,
                  "round %ld: %d passed, %d broken, %d timed out", k, ok,
                  broken, timed_out);
  } else {
    ck_assert_msg(broken + timed_out == ROUND_PARTIES,
                  "round %ld: mixed outcome", k);
  }
}

START_TEST(BAR_08_stress_abort_or_timeout_is_all_or_nothing) {
  rounds r = {.n = 5000 * harness_scale()};
  ck_assert_rc(
      concur_barrier_new(&r.barrier, ROUND_PARTIES, NULL, NULL, CONCUR_FOREVER),
      0);
  ck_assert_rc(concur_barrier_new(&r.control, ROUND_PARTIES + 1, NULL, NULL,
                                  CONCUR_FOREVER),
               0);
  atomic_store(&r.timed_id, -1);
  pthread_t t[ROUND_PARTIES];
  for (int i = 0; i < ROUND_PARTIES; i++) {
    ck_assert_rc(concur__thread_spawn(&t[i], 0, true, round_party, &r), 0);
  }
  uint64_t rng = thread_rng(&r.seed_base);
  long broke = 0;
  for (long k = 0; k < r.n; k++) {
    uint64_t mode = harness_rand(&rng) % 3; /* 0 clean, 1 abort, 2 timeout */
    int timed_id = mode == 2 ? (int)(harness_rand(&rng) % ROUND_PARTIES) : -1;
    atomic_store(&r.timed_id, timed_id);
    ck_assert_int_ge(concur_barrier_wait(r.control, CONCUR_FOREVER), 0);
    if (mode == 1) {
      spin(&rng, 400);
      ck_assert_rc(concur_barrier_abort(r.barrier), 0);
    }
    ck_assert_int_ge(concur_barrier_wait(r.control, CONCUR_FOREVER), 0);
    check_round(&r, k, timed_id);
    if (concur_barrier_broken(r.barrier)) {
      broke++;
      ck_assert_rc(concur_barrier_reset(r.barrier), 0);
    }
    ck_assert_int_eq(concur_barrier_n_waiting(r.barrier), 0);
  }
  for (int i = 0; i < ROUND_PARTIES; i++) {
    pthread_join(t[i], NULL);
  }
  ck_assert_int_eq(atomic_load(&r.bad), 0);
  ck_assert_int_gt(broke, 0); /* the races did happen */
  concur_barrier_free(r.barrier);
  concur_barrier_free(r.control);
}
END_TEST

/* ---- a party frees the barrier right after its own wait
 * --------------------------- */

typedef struct freeing {
  concur_barrier *control; /* ROUND_PARTIES + 1 */
  concur_barrier *current; /* written before the round's start */
  long n;
  _Atomic int next_id;
  _Atomic long bad;
} freeing;

static void *freeing_party(void *arg) {
  freeing *f = arg;
  for (long k = 0; k < f->n; k++) {
    if (concur_barrier_wait(f->control, CONCUR_FOREVER) < 0) {
      atomic_fetch_add(&f->bad, 1);
      return NULL;
    }
    concur_barrier *b = f->current;
    int rc = concur_barrier_wait(b, CONCUR_FOREVER);
    if (rc < 0) {
      atomic_fetch_add(&f->bad, 1);
    } else if (rc == 0) {
      concur_barrier_free(b); /* others may still be leaving wait() */
    }
    if (concur_barrier_wait(f->control, CONCUR_FOREVER) < 0) {
      atomic_fetch_add(&f->bad, 1);
      return NULL;
    }
  }
  return NULL;
}

/* Each fresh barrier may add up to three keys (waiters, the internal lock,
 * free() waiting for leavers) to the test build's parked-thread table,
 * which holds 1024 per process; ASan never reuses a freed address. */
#define FRESH_BARRIERS 250

START_TEST(BAR_03_stress_first_arrival_frees_after_its_wait) {
  freeing f = {.n = FRESH_BARRIERS};
  ck_assert_rc(concur_barrier_new(&f.control, ROUND_PARTIES + 1, NULL, NULL,
                                  CONCUR_FOREVER),
               0);
  pthread_t t[ROUND_PARTIES];
  for (int i = 0; i < ROUND_PARTIES; i++) {
    ck_assert_rc(concur__thread_spawn(&t[i], 0, true, freeing_party, &f), 0);
  }
  for (long k = 0; k < f.n; k++) {
    ck_assert_rc(concur_barrier_new(&f.current, ROUND_PARTIES, NULL, NULL,
                                    CONCUR_FOREVER),
                 0);
    ck_assert_int_ge(concur_barrier_wait(f.control, CONCUR_FOREVER), 0);
    ck_assert_int_ge(concur_barrier_wait(f.control, CONCUR_FOREVER), 0);
  }
  for (int i = 0; i < ROUND_PARTIES; i++) {
    pthread_join(t[i], NULL);
  }
  ck_assert_int_eq(atomic_load(&f.bad), 0);
  concur_barrier_free(f.control);
}
END_TEST

Suite *concur_test_suite(void) {
  Suite *s = suite_create("barrier_stress");
  TCase *tc = harness_tcase("barrier_stress", 120);
  tcase_add_test(tc, BAR_02_stress_many_generations_four_parties);
  tcase_add_test(tc, BAR_04_stress_many_generations_seven_parties);
  tcase_add_test(tc, BAR_08_stress_abort_or_timeout_is_all_or_nothing);
  tcase_add_test(tc, BAR_03_stress_first_arrival_frees_after_its_wait);
  suite_add_tcase(s, tc);
  return s;
}
