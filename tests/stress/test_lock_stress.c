/*
 * Stress for Lock and RLock: contended counters with mixed timeouts, a
 * baton passed by cross-thread releases, and recursive RLock use. Sizes
 * scale with CONCUR_TEST_SCALE; randomness comes from harness_seed().
 */
#include "harness.h"

#include <stdatomic.h>

#define THREADS 4

static long rounds(long base) {
  return base * harness_scale();
}

static pthread_t spawn(void *(*fn)(void *), void *arg) {
  pthread_t t;
  ck_assert_rc(concur__thread_spawn(&t, 0, true, fn, arg), 0);
  return t;
}

/* ---- contended counter with every kind of timeout ---------------------------
 */

typedef struct shared_counter {
  concur_lock *lock;
  long value;        /* guarded by lock */
  atomic_int inside; /* threads between acquire and release: must be <= 1 */
  atomic_int overlaps;
  long iterations;
} shared_counter;

typedef struct counter_worker {
  shared_counter *shared;
  uint64_t rng;
  long acquired;
  long timed_out;
  int errors;
} counter_worker;

static void *count_with_mixed_timeouts(void *arg) {
  counter_worker *w = arg;
  shared_counter *s = w->shared;
  for (long i = 0; i < s->iterations; i++) {
    uint64_t r = harness_rand(&w->rng);
    int64_t timeout;
    switch (r % 4) {
    case 0:
      timeout = CONCUR_NOWAIT;
      break;
    case 1:
      timeout = (int64_t)(r >> 40) % 20000; /* up to 20 us */
      break;
    case 2:
      timeout = HARNESS_LONG_NS;
      break;
    default:
      timeout = CONCUR_FOREVER;
      break;
    }
    int rc = concur_lock_acquire(s->lock, timeout);
    if (rc == CONCUR_ETIMEDOUT && timeout != CONCUR_FOREVER) {
      w->timed_out++;
      continue;
    }
    if (rc != 0) {
      w->errors++;
      continue;
    }
    if (atomic_fetch_add(&s->inside, 1) != 0) {
      atomic_fetch_add(&s->overlaps, 1);
    }
    s->value++;
    atomic_fetch_sub(&s->inside, 1);
    w->acquired++;
    if (concur_lock_release(s->lock) != 0) {
      w->errors++;
    }
  }
  return NULL;
}

START_TEST(lock_counter_with_mixed_timeouts_loses_no_update) {
  shared_counter s = {.iterations = rounds(200000)};
  atomic_init(&s.inside, 0);
  atomic_init(&s.overlaps, 0);
  ck_assert_rc(concur_lock_new(&s.lock), 0);
  uint64_t seed = harness_seed();
  counter_worker w[THREADS];
  pthread_t t[THREADS];
  for (int i = 0; i < THREADS; i++) {
    w[i] = (counter_worker){.shared = &s, .rng = seed + (uint64_t)i * 7919};
    t[i] = spawn(count_with_mixed_timeouts, &w[i]);
  }
  long acquired = 0;
  for (int i = 0; i < THREADS; i++) {
    pthread_join(t[i], NULL);
    ck_assert_int_eq(w[i].errors, 0);
    ck_assert_int_eq(w[i].acquired + w[i].timed_out, s.iterations);
    acquired += w[i].acquired;
  }
  ck_assert_int_eq(atomic_load(&s.overlaps), 0);
  ck_assert_int_eq(s.value, acquired);
  ck_assert_int_gt(acquired, 0);
  ck_assert(!concur_lock_locked(s.lock));
  ck_assert_uint_eq(concur__test_parked(s.lock), 0);
  concur_lock_free(s.lock); /* aborts if a waiter were still counted */
}
END_TEST

/* ---- a baton passed by releases from the other thread ----------------------
 */

typedef struct baton {
  concur_lock *to_a; /* released by B to let A run */
  concur_lock *to_b; /* released by A to let B run */
  long value;        /* handed over by the Lock's happens-before only */
  long rounds;
  int errors;
} baton;

static void *run_a(void *arg) {
  baton *b = arg;
  for (long i = 0; i < b->rounds; i++) {
    if (concur_lock_acquire(b->to_a, CONCUR_FOREVER) != 0) {
      b->errors++;
    }
    if (b->value != 2 * i) {
      b->errors++;
    }
    b->value++;
    if (concur_lock_release(b->to_b) != 0) {
      b->errors++;
    }
  }
  return NULL;
}

static void *run_b(void *arg) {
  baton *b = arg;
  int errors = 0;
  for (long i = 0; i < b->rounds; i++) {
    if (concur_lock_acquire(b->to_b, CONCUR_FOREVER) != 0) {
      errors++;
    }
    if (b->value != 2 * i + 1) {
      errors++;
    }
    b->value++;
    if (concur_lock_release(b->to_a) != 0) {
      errors++;
    }
  }
  return (void *)(intptr_t)errors;
}

START_TEST(lock_released_by_the_other_thread_passes_a_baton) {
  baton b = {.rounds = rounds(50000)};
  ck_assert_rc(concur_lock_new(&b.to_a), 0);
  ck_assert_rc(concur_lock_new(&b.to_b), 0);
  /* Both start held: each thread's acquire waits for the other's release,
   * except A's first, which the main thread's release below allows. */
  ck_assert_rc(concur_lock_acquire(b.to_a, CONCUR_NOWAIT), 0);
  ck_assert_rc(concur_lock_acquire(b.to_b, CONCUR_NOWAIT), 0);
  pthread_t ta = spawn(run_a, &b);
  pthread_t tb = spawn(run_b, &b);
  ck_assert_rc(concur_lock_release(b.to_a), 0);
  void *b_errors = NULL;
  pthread_join(ta, NULL);
  pthread_join(tb, &b_errors);
  ck_assert_int_eq(b.errors, 0);
  ck_assert_ptr_null(b_errors);
  ck_assert_int_eq(b.value, 2 * b.rounds);
  /* B's last release gave to_a back; A's last release gave to_b to B,
   * which took it: to_a free, to_b held. */
  ck_assert(!concur_lock_locked(b.to_a));
  ck_assert(concur_lock_locked(b.to_b));
  ck_assert_rc(concur_lock_release(b.to_b), 0);
  concur_lock_free(b.to_a);
  concur_lock_free(b.to_b);
}
END_TEST

/* ---- recursive RLock use under contention ----------------------------------
 */

typedef struct rlock_shared {
  concur_rlock *rlock;
  long value; /* guarded by rlock */
  atomic_int inside;
  atomic_int overlaps;
  long iterations;
} rlock_shared;

typedef struct rlock_worker {
  rlock_shared *shared;
  uint64_t rng;
  long acquired;
  int errors;
} rlock_worker;

static void *count_recursively(void *arg) {
  rlock_worker *w = arg;
  rlock_shared *s = w->shared;
  for (long i = 0; i < s->iterations; i++) {
    uint64_t r = harness_rand(&w->rng);
    unsigned depth = 1 + (unsigned)(r % 3);
    int64_t timeout = r & 8 ? CONCUR_FOREVER : (int64_t)(r >> 44) % 50000;
    int rc = concur_rlock_acquire(s->rlock, timeout);
    if (rc == CONCUR_ETIMEDOUT && timeout != CONCUR_FOREVER) {
      continue;
    }
    if (rc != 0) {
      w->errors++;
      continue;
    }
    if (atomic_fetch_add(&s->inside, 1) != 0) {
      atomic_fetch_add(&s->overlaps, 1);
    }
    for (unsigned d = 1; d < depth; d++) {
      /* Re-entry never blocks, even when polled. */
      if (concur_rlock_acquire(s->rlock, CONCUR_NOWAIT) != 0) {
        w->errors++;
      }
    }
    if (concur_rlock_recursion_count(s->rlock) != depth) {
      w->errors++;
    }
    s->value++;
    atomic_fetch_sub(&s->inside, 1);
    w->acquired++;
    for (unsigned d = 0; d < depth; d++) {
      if (concur_rlock_release(s->rlock) != 0) {
        w->errors++;
      }
    }
    if (concur_rlock_is_owned(s->rlock)) {
      w->errors++;
    }
  }
  return NULL;
}

START_TEST(rlock_recursive_counter_loses_no_update) {
  rlock_shared s = {.iterations = rounds(200000)};
  atomic_init(&s.inside, 0);
  atomic_init(&s.overlaps, 0);
  ck_assert_rc(concur_rlock_new(&s.rlock), 0);
  uint64_t seed = harness_seed();
  rlock_worker w[THREADS];
  pthread_t t[THREADS];
  for (int i = 0; i < THREADS; i++) {
    w[i] = (rlock_worker){.shared = &s, .rng = seed * 31 + (uint64_t)i + 1};
    t[i] = spawn(count_recursively, &w[i]);
  }
  long acquired = 0;
  for (int i = 0; i < THREADS; i++) {
    pthread_join(t[i], NULL);
    ck_assert_int_eq(w[i].errors, 0);
    acquired += w[i].acquired;
  }
  ck_assert_int_eq(atomic_load(&s.overlaps), 0);
  ck_assert_int_eq(s.value, acquired);
  ck_assert(!concur_rlock_locked(s.rlock));
  concur_rlock_free(s.rlock);
}
END_TEST

Suite *concur_test_suite(void) {
  Suite *s = suite_create("lock_stress");
  TCase *tc_counter = harness_tcase("counter", 120);
  tcase_add_test(tc_counter, lock_counter_with_mixed_timeouts_loses_no_update);
  suite_add_tcase(s, tc_counter);
  TCase *tc_baton = harness_tcase("baton", 120);
  tcase_add_test(tc_baton, lock_released_by_the_other_thread_passes_a_baton);
  suite_add_tcase(s, tc_baton);
  TCase *tc_rlock = harness_tcase("rlock", 120);
  tcase_add_test(tc_rlock, rlock_recursive_counter_loses_no_update);
  suite_add_tcase(s, tc_rlock);
  return s;
}
