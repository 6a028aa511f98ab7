/*
 * Semaphore stress (SEM-06): many threads acquiring and releasing with
 * random timing, timeouts and batch releases; no permit is ever lost
 * (threads would hang: the case times out) or duplicated (more holders than
 * permits, or a bounded release refused at the end).
 */
#include "harness.h"

#define THREADS 8

typedef struct shared {
  concur_semaphore *sem;
  int32_t value;
  long rounds;
  _Atomic uint64_t seed_base;
  _Atomic int in_use;
  _Atomic int max_in_use;
  _Atomic long violations;
  _Atomic long failures;
  _Atomic long timeouts;
} shared;

static void spin(uint64_t *rng, unsigned max) {
  unsigned n = (unsigned)(harness_rand(rng) % (max + 1));
  for (unsigned i = 0; i < n; i++) {
    concur__cpu_relax();
  }
}

static void hold(shared *s, int k, uint64_t *rng) {
  int now = atomic_fetch_add(&s->in_use, k) + k;
  if (now > s->value) {
    atomic_fetch_add(&s->violations, 1);
  }
  int seen = atomic_load(&s->max_in_use);
  while (now > seen &&
         !atomic_compare_exchange_weak(&s->max_in_use, &seen, now)) {
  }
  spin(rng, 64);
  atomic_fetch_sub(&s->in_use, k);
}

static void *worker(void *arg) {
  shared *s = arg;
  uint64_t rng =
      harness_seed() ^ atomic_fetch_add(&s->seed_base, 0x9E3779B97F4A7C15ull);
  if (rng == 0) {
    rng = 1;
  }
  for (long i = 0; i < s->rounds; i++) {
    uint64_t r = harness_rand(&rng);
    int k = 1;
    int rc;
    switch (r % 4) {
    case 0: /* untimed */
      rc = concur_semaphore_acquire(s->sem, CONCUR_FOREVER);
      break;
    case 1: /* short timeout, retried: exercises the give-up path */
      while ((rc = concur_semaphore_acquire(
                  s->sem, (int64_t)(harness_rand(&rng) % 20000))) ==
             CONCUR_ETIMEDOUT) {
        atomic_fetch_add(&s->timeouts, 1);
      }
      break;
    case 2: /* poll, retried */
      while ((rc = concur_semaphore_acquire(s->sem, CONCUR_NOWAIT)) ==
             CONCUR_ETIMEDOUT) {
        concur__cpu_relax();
      }
      break;
    default: /* take two if free, give both back in one release(2) */
      rc = concur_semaphore_acquire(s->sem, CONCUR_FOREVER);
      /* Never hold one while blocking for another: that could deadlock. */
      if (rc == 0 && concur_semaphore_acquire(s->sem, CONCUR_NOWAIT) == 0) {
        k = 2;
      }
      break;
    }
    if (rc != 0) {
      atomic_fetch_add(&s->failures, 1);
      continue;
    }
    hold(s, k, &rng);
    if (concur_semaphore_release(s->sem, k) != 0) {
      atomic_fetch_add(&s->failures, 1);
    }
    spin(&rng, 32);
  }
  return NULL;
}

static void run(bool bounded, int32_t value, long rounds) {
  shared s = {.value = value, .rounds = rounds};
  ck_assert_rc(bounded ? concur_semaphore_new_bounded(&s.sem, value)
                       : concur_semaphore_new(&s.sem, value),
               0);
  pthread_t t[THREADS];
  for (int i = 0; i < THREADS; i++) {
    ck_assert_rc(concur__thread_spawn(&t[i], 0, true, worker, &s), 0);
  }
  for (int i = 0; i < THREADS; i++) {
    pthread_join(t[i], NULL);
  }
  ck_assert_int_eq(atomic_load(&s.violations), 0);
  ck_assert_int_eq(atomic_load(&s.failures), 0);
  ck_assert_int_eq(atomic_load(&s.in_use), 0);
  ck_assert_int_le(atomic_load(&s.max_in_use), value);
  ck_assert_int_eq(concur_semaphore_value(s.sem), value);
  if (bounded) {
    ck_assert_rc(concur_semaphore_release(s.sem, 1), CONCUR_EOVERFLOW);
  }
  ck_assert_uint_eq(concur__test_parked(s.sem), 0);
  concur_semaphore_free(s.sem);
}

START_TEST(SEM_06_stress_bounded_three_permits) {
  run(true, 3, 100000 * harness_scale());
}
END_TEST

START_TEST(SEM_06_stress_plain_two_permits) {
  run(false, 2, 50000 * harness_scale());
}
END_TEST

/* ---- the completion-signal pattern: free right after acquire ----------------
 */

typedef struct relay {
  concur_semaphore *go;      /* main -> partner: a new one is ready */
  concur_semaphore *current; /* written before go is released */
  long rounds;
} relay;

static void *partner(void *arg) {
  relay *r = arg;
  for (long i = 0; i < r->rounds; i++) {
    if (concur_semaphore_acquire(r->go, CONCUR_FOREVER) != 0) {
      return NULL;
    }
    (void)concur_semaphore_release(r->current, 1);
  }
  return NULL;
}

/* Distinct objects a case may park on: the test build's parked-thread table
 * (src/platform) keeps one slot per key ever parked on, 1024 per process,
 * and ASan's quarantine never hands a freed address back. */
#define MAX_PARKING_OBJECTS 250

START_TEST(SEM_06_stress_free_right_after_acquire) {
  relay r = {.rounds = 5000 * harness_scale()};
  ck_assert_rc(concur_semaphore_new(&r.go, 0), 0);
  pthread_t t;
  ck_assert_rc(concur__thread_spawn(&t, 0, true, partner, &r), 0);
  long parking = 0;
  for (long i = 0; i < r.rounds; i++) {
    concur_semaphore *sem;
    ck_assert_rc(concur_semaphore_new(&sem, 0), 0);
    r.current = sem;
    ck_assert_rc(concur_semaphore_release(r.go, 1), 0);
    if (i % 16 == 0 && parking < MAX_PARKING_OBJECTS) {
      parking++; /* the release then takes its wake-up path */
      ck_assert_rc(concur_semaphore_acquire(sem, CONCUR_FOREVER), 0);
    } else {
      while (concur_semaphore_acquire(sem, CONCUR_NOWAIT) != 0) {
        concur__cpu_relax(); /* bounded by the partner's progress */
      }
    }
    /* The partner may still be inside release(): ASan and TSan check that
     * release no longer touches the semaphore. */
    concur_semaphore_free(sem);
  }
  pthread_join(t, NULL);
  concur_semaphore_free(r.go);
}
END_TEST

Suite *concur_test_suite(void) {
  Suite *s = suite_create("semaphore_stress");
  TCase *tc = harness_tcase("semaphore_stress", 120);
  tcase_add_test(tc, SEM_06_stress_bounded_three_permits);
  tcase_add_test(tc, SEM_06_stress_plain_two_permits);
  tcase_add_test(tc, SEM_06_stress_free_right_after_acquire);
  suite_add_tcase(s, tc);
  return s;
}
