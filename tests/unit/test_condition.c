/*
 * Condition (threading.Condition): CND-01..05 of the reliability catalogue
 * over its own RLock, a Lock and an RLock; every documented error;
 * timeouts; FIFO wake order; a notify that meets a timed-out waiter.
 * CND-06 (lost wake-ups under stress) is in test_condition_stress.c.
 */
#include "harness.h"

#include <limits.h>
#include <signal.h>
#include <stdatomic.h>

#define TIMEOUT_NS 500000000LL

enum kind { OWN_RLOCK, WITH_LOCK, WITH_RLOCK, KINDS };

/* A Condition and the lock it was made over (NULL for its own RLock). */
typedef struct fixture {
  concur_condition *cond;
  concur_lock *lock;
  concur_rlock *rlock;
} fixture;

static fixture make(enum kind kind) {
  fixture f = {NULL, NULL, NULL};
  switch (kind) {
  case OWN_RLOCK:
    ck_assert_rc(concur_condition_new(&f.cond), 0);
    break;
  case WITH_LOCK:
    ck_assert_rc(concur_lock_new(&f.lock), 0);
    ck_assert_rc(concur_condition_new_with_lock(&f.cond, f.lock), 0);
    break;
  default:
    ck_assert_rc(concur_rlock_new(&f.rlock), 0);
    ck_assert_rc(concur_condition_new_with_rlock(&f.cond, f.rlock), 0);
    break;
  }
  ck_assert_ptr_nonnull(f.cond);
  return f;
}

static void unmake(fixture *f) {
  concur_condition_free(f->cond);
  concur_lock_free(f->lock);
  concur_rlock_free(f->rlock);
}

static pthread_t spawn(void *(*fn)(void *), void *arg) {
  pthread_t t;
  ck_assert_rc(concur__thread_spawn(&t, 0, true, fn, arg), 0);
  return t;
}

/* A waiter: takes the lock, waits once, records, releases. */
typedef struct waiter {
  concur_condition *cond;
  int64_t timeout_ns;
  int acquire_rc;
  int wait_rc;
  int release_rc; /* 0 proves the lock was held when wait returned */
  int64_t elapsed_ns;
  atomic_bool returned;
} waiter;

static void *wait_once(void *arg) {
  waiter *w = arg;
  w->acquire_rc = concur_condition_acquire(w->cond, CONCUR_FOREVER);
  int64_t t0 = harness_now_ns();
  w->wait_rc = concur_condition_wait(w->cond, w->timeout_ns);
  w->elapsed_ns = harness_now_ns() - t0;
  atomic_store(&w->returned, true);
  w->release_rc = concur_condition_release(w->cond);
  return NULL;
}

static void notify_locked(concur_condition *cond, int n) {
  ck_assert_rc(concur_condition_acquire(cond, CONCUR_FOREVER), 0);
  if (n == INT_MAX) {
    ck_assert_rc(concur_condition_notify_all(cond), 0);
  } else {
    ck_assert_rc(concur_condition_notify(cond, n), 0);
  }
  ck_assert_rc(concur_condition_release(cond), 0);
}

/* Starts waiters one by one, each parked before the next starts: FIFO. */
static void start_waiters(fixture *f, waiter *w, pthread_t *t, int n,
                          size_t already_parked) {
  for (int i = 0; i < n; i++) {
    w[i] = (waiter){.cond = f->cond, .timeout_ns = CONCUR_FOREVER};
    atomic_init(&w[i].returned, false);
    t[i] = spawn(wait_once, &w[i]);
    ck_assert_rc(concur__test_await_parked(
                     f->cond, already_parked + 1 + (size_t)i, HARNESS_LONG_NS),
                 0);
  }
}

static void join_notified(waiter *w, pthread_t *t, int n) {
  for (int i = 0; i < n; i++) {
    pthread_join(t[i], NULL);
    ck_assert_rc(w[i].acquire_rc, 0);
    ck_assert_rc(w[i].wait_rc, 0);
    ck_assert_rc(w[i].release_rc, 0);
  }
}

/* ---- CND-01 ----------------------------------------------------------------
 */

static bool always_true(void *arg) {
  (void)arg;
  return true;
}

START_TEST(CND_01_wait_or_notify_without_the_lock_is_eperm) {
  for (int k = 0; k < KINDS; k++) {
    fixture f = make((enum kind)k);
    ck_assert_rc(concur_condition_wait(f.cond, CONCUR_NOWAIT), CONCUR_EPERM);
    ck_assert_rc(concur_condition_wait(f.cond, CONCUR_FOREVER), CONCUR_EPERM);
    ck_assert_rc(
        concur_condition_wait_for(f.cond, always_true, NULL, CONCUR_FOREVER),
        CONCUR_EPERM);
    ck_assert_rc(concur_condition_notify(f.cond, 1), CONCUR_EPERM);
    ck_assert_rc(concur_condition_notify(f.cond, 0), CONCUR_EPERM);
    ck_assert_rc(concur_condition_notify_all(f.cond), CONCUR_EPERM);
    ck_assert_rc(concur_condition_release(f.cond), CONCUR_EPERM);
    unmake(&f);
  }
}
END_TEST

typedef struct intruder {
  concur_condition *cond;
  int wait_rc;
  int notify_rc;
  int notify_all_rc;
  int release_rc;
} intruder;

static void *intrude(void *arg) {
  intruder *in = arg;
  in->wait_rc = concur_condition_wait(in->cond, CONCUR_FOREVER);
  in->notify_rc = concur_condition_notify(in->cond, 1);
  in->notify_all_rc = concur_condition_notify_all(in->cond);
  in->release_rc = concur_condition_release(in->cond);
  return NULL;
}

START_TEST(CND_01_an_rlock_held_by_another_thread_is_not_held) {
  for (int k = 0; k < KINDS; k++) {
    if (k == WITH_LOCK) {
      continue; /* a Lock has no owner: "held" means locked by anyone */
    }
    fixture f = make((enum kind)k);
    ck_assert_rc(concur_condition_acquire(f.cond, CONCUR_FOREVER), 0);
    intruder in = {.cond = f.cond};
    pthread_join(spawn(intrude, &in), NULL);
    ck_assert_rc(in.wait_rc, CONCUR_EPERM);
    ck_assert_rc(in.notify_rc, CONCUR_EPERM);
    ck_assert_rc(in.notify_all_rc, CONCUR_EPERM);
    ck_assert_rc(in.release_rc, CONCUR_EPERM);
    ck_assert_rc(concur_condition_release(f.cond), 0);
    unmake(&f);
  }
}
END_TEST

START_TEST(CND_01_null_handles_and_bad_arguments) {
  concur_condition *cond = NULL;
  concur_lock *lock;
  concur_rlock *rlock;
  ck_assert_rc(concur_lock_new(&lock), 0);
  ck_assert_rc(concur_rlock_new(&rlock), 0);
  ck_assert_rc(concur_condition_new(NULL), CONCUR_EINVAL);
  ck_assert_rc(concur_condition_new_with_lock(NULL, lock), CONCUR_EINVAL);
  ck_assert_rc(concur_condition_new_with_lock(&cond, NULL), CONCUR_EINVAL);
  ck_assert_rc(concur_condition_new_with_rlock(NULL, rlock), CONCUR_EINVAL);
  ck_assert_rc(concur_condition_new_with_rlock(&cond, NULL), CONCUR_EINVAL);
  ck_assert_ptr_null(cond);
  ck_assert_rc(concur_condition_acquire(NULL, CONCUR_FOREVER), CONCUR_EINVAL);
  ck_assert_rc(concur_condition_release(NULL), CONCUR_EINVAL);
  ck_assert_rc(concur_condition_wait(NULL, CONCUR_FOREVER), CONCUR_EINVAL);
  ck_assert_rc(concur_condition_wait_for(NULL, always_true, NULL, 0),
               CONCUR_EINVAL);
  ck_assert_rc(concur_condition_notify(NULL, 1), CONCUR_EINVAL);
  ck_assert_rc(concur_condition_notify_all(NULL), CONCUR_EINVAL);
  concur_condition_free(NULL);

  for (int k = 0; k < KINDS; k++) {
    fixture f = make((enum kind)k);
    ck_assert_rc(concur_condition_acquire(f.cond, -1), CONCUR_EINVAL);
    ck_assert_rc(concur_condition_acquire(f.cond, CONCUR_FOREVER), 0);
    /* Bad arguments change nothing: the lock stays held. */
    ck_assert_rc(concur_condition_wait(f.cond, -1), CONCUR_EINVAL);
    ck_assert_rc(concur_condition_wait(f.cond, INT64_MIN), CONCUR_EINVAL);
    ck_assert_rc(concur_condition_wait_for(f.cond, NULL, NULL, 0),
                 CONCUR_EINVAL);
    ck_assert_rc(concur_condition_wait_for(f.cond, always_true, NULL, -1),
                 CONCUR_EINVAL);
    ck_assert_rc(concur_condition_notify(f.cond, -1), CONCUR_EINVAL);
    ck_assert_rc(concur_condition_notify(f.cond, INT_MIN), CONCUR_EINVAL);
    ck_assert_rc(concur_condition_notify(f.cond, 0), 0);
    ck_assert_rc(concur_condition_notify(f.cond, 5), 0); /* no waiters */
    ck_assert_rc(concur_condition_notify_all(f.cond), 0);
    ck_assert_rc(concur_condition_release(f.cond), 0);
    ck_assert_rc(concur_condition_release(f.cond), CONCUR_EPERM);
    unmake(&f);
  }
  concur_lock_free(lock);
  concur_rlock_free(rlock);
}
END_TEST

/* ---- CND-02 ----------------------------------------------------------------
 */

static void notify_rounds(fixture *f) {
  waiter w[8];
  pthread_t t[8];
  /* Five waiters; notify(3) wakes exactly the three oldest. */
  start_waiters(f, w, t, 5, 0);
  notify_locked(f->cond, 3);
  join_notified(w, t, 3);
  ck_assert_rc(concur__test_await_parked(f->cond, 2, HARNESS_LONG_NS), 0);
  ck_assert(!atomic_load(&w[3].returned));
  ck_assert(!atomic_load(&w[4].returned));

  /* Three more; notify(5) wakes the two left and the three new ones. */
  start_waiters(f, &w[5], &t[5], 3, 2);
  notify_locked(f->cond, 5);
  join_notified(&w[3], &t[3], 5);
  ck_assert_uint_eq(concur__test_parked(f->cond), 0);

  /* notify_all wakes everyone. */
  start_waiters(f, w, t, 5, 0);
  notify_locked(f->cond, INT_MAX);
  join_notified(w, t, 5);
  ck_assert_uint_eq(concur__test_parked(f->cond), 0);
}

START_TEST(CND_02_notify_n_wakes_exactly_n_and_a_second_run_agrees) {
  for (int k = 0; k < KINDS; k++) {
    fixture f = make((enum kind)k);
    notify_rounds(&f);
    notify_rounds(&f); /* the same object, the same result */
    unmake(&f);
  }
}
END_TEST

START_TEST(CND_02_notify_one_wakes_in_wait_order) {
  fixture f = make(OWN_RLOCK);
  waiter w[4];
  pthread_t t[4];
  start_waiters(&f, w, t, 4, 0);
  for (int i = 0; i < 4; i++) {
    notify_locked(f.cond, 1);
    pthread_join(t[i], NULL); /* the oldest one, and only it */
    ck_assert_rc(w[i].wait_rc, 0);
    ck_assert_rc(w[i].release_rc, 0);
    for (int j = i + 1; j < 4; j++) {
      ck_assert(!atomic_load(&w[j].returned));
    }
  }
  unmake(&f);
}
END_TEST

/* ---- CND-03 ----------------------------------------------------------------
 */

START_TEST(CND_03_five_timed_waits_time_out_in_the_window) {
  for (int k = 0; k < KINDS; k++) {
    fixture f = make((enum kind)k);
    waiter w[5];
    pthread_t t[5];
    for (int i = 0; i < 5; i++) {
      w[i] = (waiter){.cond = f.cond, .timeout_ns = TIMEOUT_NS};
      atomic_init(&w[i].returned, false);
      t[i] = spawn(wait_once, &w[i]);
    }
    for (int i = 0; i < 5; i++) {
      pthread_join(t[i], NULL);
      ck_assert_rc(w[i].acquire_rc, 0);
      ck_assert_rc(w[i].wait_rc, CONCUR_ETIMEDOUT);
      HARNESS_ASSERT_TIMED_OUT(w[i].elapsed_ns, TIMEOUT_NS);
      ck_assert_rc(w[i].release_rc, 0); /* the lock was held again */
    }
    unmake(&f);
  }
}
END_TEST

START_TEST(CND_03_wait_nowait_times_out_at_once_holding_the_lock) {
  for (int k = 0; k < KINDS; k++) {
    fixture f = make((enum kind)k);
    ck_assert_rc(concur_condition_acquire(f.cond, CONCUR_FOREVER), 0);
    ck_assert_rc(concur_condition_wait(f.cond, CONCUR_NOWAIT),
                 CONCUR_ETIMEDOUT);
    ck_assert_rc(concur_condition_notify(f.cond, 1), 0); /* still held */
    ck_assert_rc(concur_condition_release(f.cond), 0);
    unmake(&f);
  }
}
END_TEST

/*
 * A waiter whose deadline passed, but whose node a notifier took before it
 * got the lock back, counts as notified: the notify is not lost on it.
 */
START_TEST(CND_03_notify_after_the_deadline_but_before_relock_counts) {
  fixture f = make(WITH_LOCK);
  /* The main thread must take the Lock within this window. */
  const int64_t timeout = 200000000 * harness_slack();
  waiter w = {.cond = f.cond, .timeout_ns = timeout};
  atomic_init(&w.returned, false);
  pthread_t t = spawn(wait_once, &w);
  ck_assert_rc(concur__test_await_parked(f.cond, 1, HARNESS_LONG_NS), 0);
  ck_assert_rc(concur_condition_acquire(f.cond, CONCUR_FOREVER), 0);
  /* Timed out, it now blocks taking the Lock back, its node still queued. */
  ck_assert_rc(concur__test_await_parked(f.lock, 1, HARNESS_LONG_NS), 0);
  ck_assert_rc(concur_condition_notify(f.cond, 1), 0);
  ck_assert_rc(concur_condition_release(f.cond), 0);
  pthread_join(t, NULL);
  ck_assert_rc(w.wait_rc, 0);
  ck_assert_rc(w.release_rc, 0);
  ck_assert_int_ge(w.elapsed_ns, timeout);
  unmake(&f);
}
END_TEST

/* ---- CND-04 ----------------------------------------------------------------
 */

typedef struct counter_state {
  concur_condition *cond;
  concur_rlock *rlock; /* to check the predicate runs with it held */
  int value;           /* guarded by the condition's lock */
  int target;
  int evaluations;
  bool always_held;
  int64_t timeout_ns;
  int rc;
  int seen_at_return;
  int64_t elapsed_ns;
} counter_state;

static bool reached(void *arg) {
  counter_state *c = arg;
  c->evaluations++;
  if (c->rlock != NULL && !concur_rlock_is_owned(c->rlock)) {
    c->always_held = false;
  }
  return c->value >= c->target;
}

static void *wait_for_count(void *arg) {
  counter_state *c = arg;
  if (concur_condition_acquire(c->cond, CONCUR_FOREVER) != 0) {
    c->rc = -999;
    return NULL;
  }
  int64_t t0 = harness_now_ns();
  c->rc = concur_condition_wait_for(c->cond, reached, c, c->timeout_ns);
  c->elapsed_ns = harness_now_ns() - t0;
  c->seen_at_return = c->value;
  if (concur_condition_release(c->cond) != 0) {
    c->rc = -998;
  }
  return NULL;
}

START_TEST(CND_04_wait_for_returns_once_four_notifies_make_it_true) {
  fixture f = make(WITH_RLOCK);
  counter_state c = {.cond = f.cond,
                     .rlock = f.rlock,
                     .target = 4,
                     .always_held = true,
                     .timeout_ns = CONCUR_FOREVER};
  pthread_t t = spawn(wait_for_count, &c);
  ck_assert_rc(concur__test_await_parked(f.cond, 1, HARNESS_LONG_NS), 0);
  for (int i = 0; i < 4; i++) {
    ck_assert_rc(concur_condition_acquire(f.cond, CONCUR_FOREVER), 0);
    c.value++;
    ck_assert_rc(concur_condition_notify(f.cond, 1), 0);
    ck_assert_rc(concur_condition_release(f.cond), 0);
  }
  pthread_join(t, NULL);
  ck_assert_rc(c.rc, 0);
  ck_assert_int_eq(c.seen_at_return, 4);
  ck_assert_int_ge(c.evaluations, 2); /* false first, then true */
  ck_assert(c.always_held);
  unmake(&f);
}
END_TEST

START_TEST(CND_04_wait_for_times_out_with_a_false_predicate) {
  for (int k = 0; k < KINDS; k++) {
    fixture f = make((enum kind)k);
    counter_state c = {.cond = f.cond,
                       .rlock = f.rlock,
                       .target = 1,
                       .always_held = true,
                       .timeout_ns = 100000000};
    pthread_join(spawn(wait_for_count, &c), NULL);
    ck_assert_rc(c.rc, CONCUR_ETIMEDOUT);
    HARNESS_ASSERT_TIMED_OUT(c.elapsed_ns, 100000000);
    ck_assert_int_ge(c.evaluations, 2); /* before the wait and at the end */
    ck_assert(c.always_held);
    unmake(&f);
  }
}
END_TEST

START_TEST(CND_04_wait_for_checks_the_predicate_before_waiting) {
  fixture f = make(OWN_RLOCK);
  counter_state c = {.cond = f.cond, .target = 0, .always_held = true};
  ck_assert_rc(concur_condition_acquire(f.cond, CONCUR_FOREVER), 0);
  ck_assert_rc(concur_condition_wait_for(f.cond, reached, &c, CONCUR_NOWAIT),
               0);
  ck_assert_int_eq(c.evaluations, 1);
  c.target = 1;
  ck_assert_rc(concur_condition_wait_for(f.cond, reached, &c, CONCUR_NOWAIT),
               CONCUR_ETIMEDOUT);
  ck_assert_rc(concur_condition_release(f.cond), 0);
  unmake(&f);
}
END_TEST

/* ---- CND-05 ----------------------------------------------------------------
 */

typedef struct outsider {
  fixture *f;
  int lock_rc;
  int cond_rc;
  unsigned count_seen;
  int notify_rc;
} outsider;

static void *try_from_outside(void *arg) {
  outsider *o = arg;
  o->cond_rc = concur_condition_acquire(o->f->cond, CONCUR_NOWAIT);
  if (o->cond_rc == 0) {
    (void)concur_condition_release(o->f->cond);
  }
  o->lock_rc = concur_lock_acquire(o->f->lock, CONCUR_NOWAIT);
  if (o->lock_rc == 0) {
    (void)concur_lock_release(o->f->lock);
  }
  return NULL;
}

START_TEST(CND_05_a_condition_over_a_lock_excludes_other_acquirers) {
  fixture f = make(WITH_LOCK);
  ck_assert_rc(concur_condition_acquire(f.cond, CONCUR_FOREVER), 0);
  ck_assert(concur_lock_locked(f.lock));
  outsider o = {.f = &f};
  pthread_join(spawn(try_from_outside, &o), NULL);
  ck_assert_rc(o.cond_rc, CONCUR_ETIMEDOUT);
  ck_assert_rc(o.lock_rc, CONCUR_ETIMEDOUT);
  /* A timed acquire through the Condition times out in the window. */
  int64_t t0 = harness_now_ns();
  ck_assert_rc(concur_condition_acquire(f.cond, 50000000), CONCUR_ETIMEDOUT);
  HARNESS_ASSERT_TIMED_OUT(harness_now_ns() - t0, 50000000);
  ck_assert_rc(concur_condition_release(f.cond), 0);
  ck_assert(!concur_lock_locked(f.lock));
  /* Acquiring the Lock directly excludes the Condition's users as well. */
  ck_assert_rc(concur_lock_acquire(f.lock, CONCUR_FOREVER), 0);
  ck_assert_rc(concur_condition_acquire(f.cond, CONCUR_NOWAIT),
               CONCUR_ETIMEDOUT);
  ck_assert_rc(concur_condition_release(f.cond), 0); /* any thread may */
  ck_assert(!concur_lock_locked(f.lock));
  unmake(&f);
}
END_TEST

/* Takes the RLock while the owner waits, then notifies. */
static void *take_rlock_then_notify(void *arg) {
  outsider *o = arg;
  o->lock_rc = concur__test_await_parked(o->f->cond, 1, HARNESS_LONG_NS);
  if (o->lock_rc != 0) {
    return NULL;
  }
  o->lock_rc = concur_rlock_acquire(o->f->rlock, CONCUR_NOWAIT);
  if (o->lock_rc == 0) {
    o->count_seen = concur_rlock_recursion_count(o->f->rlock);
    o->notify_rc = concur_condition_notify(o->f->cond, 1);
    (void)concur_rlock_release(o->f->rlock);
  }
  return NULL;
}

START_TEST(CND_05_wait_releases_every_rlock_level_and_restores_them) {
  fixture f = make(WITH_RLOCK);
  for (int i = 0; i < 3; i++) {
    ck_assert_rc(concur_condition_acquire(f.cond, CONCUR_FOREVER), 0);
  }
  ck_assert_uint_eq(concur_rlock_recursion_count(f.rlock), 3);
  outsider o = {.f = &f};
  pthread_t t = spawn(take_rlock_then_notify, &o);
  ck_assert_rc(concur_condition_wait(f.cond, CONCUR_FOREVER), 0);
  pthread_join(t, NULL);
  ck_assert_rc(o.lock_rc, 0); /* the RLock was free during the wait */
  ck_assert_uint_eq(o.count_seen, 1);
  ck_assert_rc(o.notify_rc, 0);
  ck_assert(concur_rlock_is_owned(f.rlock));
  ck_assert_uint_eq(concur_rlock_recursion_count(f.rlock), 3);
  for (int i = 0; i < 3; i++) {
    ck_assert_rc(concur_condition_release(f.cond), 0);
  }
  ck_assert(!concur_rlock_locked(f.rlock));
  unmake(&f);
}
END_TEST

/* ---- misuse -----------------------------------------------------------------
 */

static void *wait_forever(void *arg) {
  concur_condition *cond = arg;
  if (concur_condition_acquire(cond, CONCUR_FOREVER) == 0) {
    int rc = concur_condition_wait(cond, CONCUR_FOREVER);
    (void)rc; /* never returns: the main thread aborts the process */
  }
  return NULL;
}

START_TEST(free_with_a_waiting_thread_aborts) {
  concur_condition *cond;
  ck_assert_rc(concur_condition_new(&cond), 0);
  pthread_t t = spawn(wait_forever, cond);
  (void)t;
  ck_assert_rc(concur__test_await_parked(cond, 1, HARNESS_LONG_NS), 0);
  concur_condition_free(cond); /* aborts: the case expects SIGABRT */
}
END_TEST

Suite *concur_test_suite(void) {
  Suite *s = suite_create("condition");
  TCase *tc = harness_tcase("condition", 60);
  tcase_add_test(tc, CND_01_wait_or_notify_without_the_lock_is_eperm);
  tcase_add_test(tc, CND_01_an_rlock_held_by_another_thread_is_not_held);
  tcase_add_test(tc, CND_01_null_handles_and_bad_arguments);
  tcase_add_test(tc, CND_02_notify_n_wakes_exactly_n_and_a_second_run_agrees);
  tcase_add_test(tc, CND_02_notify_one_wakes_in_wait_order);
  tcase_add_test(tc, CND_03_five_timed_waits_time_out_in_the_window);
  tcase_add_test(tc, CND_03_wait_nowait_times_out_at_once_holding_the_lock);
  tcase_add_test(tc, CND_03_notify_after_the_deadline_but_before_relock_counts);
  tcase_add_test(tc, CND_04_wait_for_returns_once_four_notifies_make_it_true);
  tcase_add_test(tc, CND_04_wait_for_times_out_with_a_false_predicate);
  tcase_add_test(tc, CND_04_wait_for_checks_the_predicate_before_waiting);
  tcase_add_test(tc, CND_05_a_condition_over_a_lock_excludes_other_acquirers);
  tcase_add_test(tc, CND_05_wait_releases_every_rlock_level_and_restores_them);
  suite_add_tcase(s, tc);

  /* No leak fixture: the case ends in abort() with a thread still waiting. */
  TCase *misuse = tcase_create("misuse");
  tcase_set_timeout(misuse, 30);
  tcase_add_test_raise_signal(misuse, free_with_a_waiting_thread_aborts,
                              SIGABRT);
  suite_add_tcase(s, misuse);
  return s;
}
