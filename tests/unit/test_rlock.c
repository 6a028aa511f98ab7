/*
 * RLock (threading.RLock): RLK-01..03 of the reliability catalogue, every
 * documented error, timeouts, the recursion bound, and the private
 * save/restore pair that Condition uses.
 */
#include "harness.h"
#include "sync/sync_internal.h"

#include <limits.h>
#include <signal.h>

#define TIMEOUT_NS 500000000LL

static concur_rlock *new_rlock(void) {
  concur_rlock *rlock = NULL;
  ck_assert_rc(concur_rlock_new(&rlock), 0);
  ck_assert_ptr_nonnull(rlock);
  return rlock;
}

static pthread_t spawn(void *(*fn)(void *), void *arg) {
  pthread_t t;
  ck_assert_rc(concur__thread_spawn(&t, 0, true, fn, arg), 0);
  return t;
}

/* What another thread sees of an RLock, and what it gets trying it. */
typedef struct probe {
  concur_rlock *rlock;
  int64_t timeout_ns;
  bool acquire; /* try to acquire (and then release) */
  int acquire_rc;
  int release_rc; /* release attempted without owning, or after acquire */
  int64_t elapsed_ns;
  unsigned count; /* recursion_count as seen by this thread */
  bool is_owned;
  bool locked;
  int save_rc; /* concur__rlock_release_save by a non-owner */
} probe;

static void *look(void *arg) {
  probe *p = arg;
  p->count = concur_rlock_recursion_count(p->rlock);
  p->is_owned = concur_rlock_is_owned(p->rlock);
  p->locked = concur_rlock_locked(p->rlock);
  unsigned saved = 12345;
  p->save_rc = concur__rlock_release_save(p->rlock, &saved);
  if (p->acquire) {
    int64_t t0 = harness_now_ns();
    p->acquire_rc = concur_rlock_acquire(p->rlock, p->timeout_ns);
    p->elapsed_ns = harness_now_ns() - t0;
    if (p->acquire_rc == 0) {
      p->count = concur_rlock_recursion_count(p->rlock);
      p->is_owned = concur_rlock_is_owned(p->rlock);
      p->release_rc = concur_rlock_release(p->rlock);
    }
  } else {
    p->release_rc = concur_rlock_release(p->rlock);
  }
  return NULL;
}

START_TEST(RLK_01_nested_acquires_need_as_many_releases) {
  concur_rlock *rlock = new_rlock();
  ck_assert_uint_eq(concur_rlock_recursion_count(rlock), 0);
  for (unsigned i = 1; i <= 5; i++) {
    ck_assert_rc(concur_rlock_acquire(rlock, CONCUR_FOREVER), 0);
    ck_assert_uint_eq(concur_rlock_recursion_count(rlock), i);
  }
  /* Re-entry never blocks, whatever the timeout. */
  ck_assert_rc(concur_rlock_acquire(rlock, CONCUR_NOWAIT), 0);
  ck_assert_uint_eq(concur_rlock_recursion_count(rlock), 6);
  ck_assert_rc(concur_rlock_release(rlock), 0);

  /* Another thread sees count 0 and cannot take it. */
  probe p = {.rlock = rlock, .timeout_ns = CONCUR_NOWAIT, .acquire = true};
  pthread_join(spawn(look, &p), NULL);
  ck_assert_uint_eq(p.count, 0);
  ck_assert_rc(p.acquire_rc, CONCUR_ETIMEDOUT);

  for (unsigned i = 5; i >= 1; i--) {
    ck_assert(concur_rlock_locked(rlock));
    ck_assert_rc(concur_rlock_release(rlock), 0);
    ck_assert_uint_eq(concur_rlock_recursion_count(rlock), i - 1);
  }
  ck_assert(!concur_rlock_locked(rlock));
  ck_assert(!concur_rlock_is_owned(rlock));
  ck_assert_rc(concur_rlock_release(rlock), CONCUR_EPERM);

  /* Free again: another thread takes it, with its own count. */
  p = (probe){.rlock = rlock, .timeout_ns = CONCUR_NOWAIT, .acquire = true};
  pthread_join(spawn(look, &p), NULL);
  ck_assert_rc(p.acquire_rc, 0);
  ck_assert_uint_eq(p.count, 1);
  ck_assert(p.is_owned);
  ck_assert_rc(p.release_rc, 0);
  ck_assert(!concur_rlock_locked(rlock));
  concur_rlock_free(rlock);
}
END_TEST

START_TEST(RLK_01_null_handles_and_bad_arguments) {
  ck_assert_rc(concur_rlock_new(NULL), CONCUR_EINVAL);
  ck_assert_rc(concur_rlock_acquire(NULL, CONCUR_FOREVER), CONCUR_EINVAL);
  ck_assert_rc(concur_rlock_release(NULL), CONCUR_EINVAL);
  ck_assert_uint_eq(concur_rlock_recursion_count(NULL), 0);
  ck_assert(!concur_rlock_is_owned(NULL));
  ck_assert(!concur_rlock_locked(NULL));
  concur_rlock_free(NULL);

  concur_rlock *rlock = new_rlock();
  ck_assert_rc(concur_rlock_acquire(rlock, -1), CONCUR_EINVAL);
  ck_assert_rc(concur_rlock_acquire(rlock, INT64_MIN), CONCUR_EINVAL);
  ck_assert(!concur_rlock_locked(rlock));
  /* Negative is invalid for the owner too, and changes no count. */
  ck_assert_rc(concur_rlock_acquire(rlock, CONCUR_FOREVER - 1), 0);
  ck_assert_rc(concur_rlock_acquire(rlock, -5), CONCUR_EINVAL);
  ck_assert_uint_eq(concur_rlock_recursion_count(rlock), 1);
  ck_assert_rc(concur_rlock_release(rlock), 0);
  concur_rlock_free(rlock);
}
END_TEST

/* RLK-02: releases by a non-owner, or of a free RLock, are EPERM. */
START_TEST(RLK_02_release_by_non_owner_or_unheld_is_eperm) {
  concur_rlock *rlock = new_rlock();
  ck_assert_rc(concur_rlock_release(rlock), CONCUR_EPERM);
  unsigned saved = 777;
  ck_assert_rc(concur__rlock_release_save(rlock, &saved), CONCUR_EPERM);
  ck_assert_uint_eq(saved, 777);

  ck_assert_rc(concur_rlock_acquire(rlock, CONCUR_FOREVER), 0);
  ck_assert_rc(concur_rlock_acquire(rlock, CONCUR_FOREVER), 0);
  probe p = {.rlock = rlock};
  pthread_join(spawn(look, &p), NULL);
  ck_assert_rc(p.release_rc, CONCUR_EPERM);
  ck_assert_rc(p.save_rc, CONCUR_EPERM);
  /* Nothing changed for the owner. */
  ck_assert_uint_eq(concur_rlock_recursion_count(rlock), 2);
  ck_assert(concur_rlock_is_owned(rlock));
  ck_assert_rc(concur_rlock_release(rlock), 0);
  ck_assert_rc(concur_rlock_release(rlock), 0);
  ck_assert_rc(concur_rlock_release(rlock), CONCUR_EPERM);
  concur_rlock_free(rlock);
}
END_TEST

/* RLK-02: the save/restore pair drops and restores every level at once. */
START_TEST(RLK_02_release_save_and_acquire_restore) {
  concur_rlock *rlock = new_rlock();
  for (int i = 0; i < 3; i++) {
    ck_assert_rc(concur_rlock_acquire(rlock, CONCUR_FOREVER), 0);
  }
  unsigned saved = 0;
  ck_assert_rc(concur__rlock_release_save(rlock, &saved), 0);
  ck_assert_uint_eq(saved, 3);
  ck_assert(!concur_rlock_locked(rlock));
  ck_assert(!concur_rlock_is_owned(rlock));
  ck_assert_uint_eq(concur_rlock_recursion_count(rlock), 0);
  ck_assert_rc(concur__rlock_release_save(rlock, &saved), CONCUR_EPERM);

  /* While saved, another thread can take and give it back. */
  probe p = {.rlock = rlock, .timeout_ns = CONCUR_NOWAIT, .acquire = true};
  pthread_join(spawn(look, &p), NULL);
  ck_assert_rc(p.acquire_rc, 0);
  ck_assert_rc(p.release_rc, 0);

  concur__rlock_acquire_restore(rlock, saved);
  ck_assert(concur_rlock_is_owned(rlock));
  ck_assert_uint_eq(concur_rlock_recursion_count(rlock), 3);
  for (int i = 0; i < 3; i++) {
    ck_assert_rc(concur_rlock_release(rlock), 0);
  }
  ck_assert(!concur_rlock_locked(rlock));
  concur_rlock_free(rlock);
}
END_TEST

START_TEST(RLK_01_recursion_count_overflow_is_eoverflow) {
  concur_rlock *rlock = new_rlock();
  /* Counting to UINT_MAX one acquire at a time takes too long: restore a
   * saved count at the bound instead. */
  concur__rlock_acquire_restore(rlock, UINT_MAX - 1);
  ck_assert_rc(concur_rlock_acquire(rlock, CONCUR_FOREVER), 0);
  ck_assert_uint_eq(concur_rlock_recursion_count(rlock), UINT_MAX);
  ck_assert_rc(concur_rlock_acquire(rlock, CONCUR_FOREVER), CONCUR_EOVERFLOW);
  ck_assert_rc(concur_rlock_acquire(rlock, CONCUR_NOWAIT), CONCUR_EOVERFLOW);
  ck_assert_uint_eq(concur_rlock_recursion_count(rlock), UINT_MAX);
  ck_assert_rc(concur_rlock_release(rlock), 0);
  ck_assert_uint_eq(concur_rlock_recursion_count(rlock), UINT_MAX - 1);
  unsigned saved = 0;
  ck_assert_rc(concur__rlock_release_save(rlock, &saved), 0);
  ck_assert_uint_eq(saved, UINT_MAX - 1);
  ck_assert(!concur_rlock_locked(rlock));
  concur_rlock_free(rlock);
}
END_TEST

/* RLK-03: is_owned only in the owner; locked() everywhere while held. */
START_TEST(RLK_03_is_owned_only_in_the_owner_locked_everywhere) {
  concur_rlock *rlock = new_rlock();
  probe p = {.rlock = rlock};
  pthread_join(spawn(look, &p), NULL);
  ck_assert(!p.is_owned);
  ck_assert(!p.locked);

  ck_assert_rc(concur_rlock_acquire(rlock, CONCUR_FOREVER), 0);
  ck_assert(concur_rlock_is_owned(rlock));
  ck_assert(concur_rlock_locked(rlock));
  p = (probe){.rlock = rlock};
  pthread_join(spawn(look, &p), NULL);
  ck_assert(!p.is_owned);
  ck_assert(p.locked);
  ck_assert_uint_eq(p.count, 0);
  ck_assert_rc(concur_rlock_release(rlock), 0);
  ck_assert(!concur_rlock_is_owned(rlock));
  ck_assert(!concur_rlock_locked(rlock));
  concur_rlock_free(rlock);
}
END_TEST

START_TEST(RLK_03_timed_acquire_by_another_thread_times_out) {
  concur_rlock *rlock = new_rlock();
  ck_assert_rc(concur_rlock_acquire(rlock, CONCUR_FOREVER), 0);
  probe p = {.rlock = rlock, .timeout_ns = TIMEOUT_NS, .acquire = true};
  pthread_join(spawn(look, &p), NULL);
  ck_assert_rc(p.acquire_rc, CONCUR_ETIMEDOUT);
  HARNESS_ASSERT_TIMED_OUT(p.elapsed_ns, TIMEOUT_NS);
  /* The failed acquire left the owner's state alone. */
  ck_assert(concur_rlock_is_owned(rlock));
  ck_assert_uint_eq(concur_rlock_recursion_count(rlock), 1);
  ck_assert_rc(concur_rlock_release(rlock), 0);
  concur_rlock_free(rlock);
}
END_TEST

static void *acquire_and_release(void *arg) {
  probe *p = arg;
  p->acquire_rc = concur_rlock_acquire(p->rlock, p->timeout_ns);
  if (p->acquire_rc == 0) {
    p->count = concur_rlock_recursion_count(p->rlock);
    p->release_rc = concur_rlock_release(p->rlock);
  }
  return NULL;
}

START_TEST(RLK_03_blocked_threads_get_it_after_the_last_release) {
  concur_rlock *rlock = new_rlock();
  ck_assert_rc(concur_rlock_acquire(rlock, CONCUR_FOREVER), 0);
  ck_assert_rc(concur_rlock_acquire(rlock, CONCUR_FOREVER), 0);
  probe p[4];
  pthread_t t[4];
  for (int i = 0; i < 4; i++) {
    p[i] = (probe){.rlock = rlock,
                   .timeout_ns = i % 2 ? CONCUR_FOREVER : HARNESS_LONG_NS};
    t[i] = spawn(acquire_and_release, &p[i]);
  }
  ck_assert_rc(concur__test_await_parked(rlock, 4, HARNESS_LONG_NS), 0);
  ck_assert_rc(concur_rlock_release(rlock), 0);
  /* One level is still held: nobody got it. */
  ck_assert_uint_eq(concur__test_parked(rlock), 4);
  ck_assert_rc(concur_rlock_release(rlock), 0);
  for (int i = 0; i < 4; i++) {
    pthread_join(t[i], NULL);
    ck_assert_rc(p[i].acquire_rc, 0);
    ck_assert_uint_eq(p[i].count, 1);
    ck_assert_rc(p[i].release_rc, 0);
  }
  ck_assert(!concur_rlock_locked(rlock));
  concur_rlock_free(rlock);
}
END_TEST

static void *block_forever(void *arg) {
  int rc = concur_rlock_acquire(arg, CONCUR_FOREVER);
  (void)rc; /* never returns: the main thread aborts the process */
  return NULL;
}

START_TEST(free_with_a_blocked_thread_aborts) {
  concur_rlock *rlock = new_rlock();
  ck_assert_rc(concur_rlock_acquire(rlock, CONCUR_FOREVER), 0);
  pthread_t t = spawn(block_forever, rlock);
  (void)t;
  ck_assert_rc(concur__test_await_parked(rlock, 1, HARNESS_LONG_NS), 0);
  concur_rlock_free(rlock); /* aborts: the case expects SIGABRT */
}
END_TEST

Suite *concur_test_suite(void) {
  Suite *s = suite_create("rlock");
  TCase *tc = harness_tcase("rlock", 30);
  tcase_add_test(tc, RLK_01_nested_acquires_need_as_many_releases);
  tcase_add_test(tc, RLK_01_null_handles_and_bad_arguments);
  tcase_add_test(tc, RLK_01_recursion_count_overflow_is_eoverflow);
  tcase_add_test(tc, RLK_02_release_by_non_owner_or_unheld_is_eperm);
  tcase_add_test(tc, RLK_02_release_save_and_acquire_restore);
  tcase_add_test(tc, RLK_03_is_owned_only_in_the_owner_locked_everywhere);
  tcase_add_test(tc, RLK_03_timed_acquire_by_another_thread_times_out);
  tcase_add_test(tc, RLK_03_blocked_threads_get_it_after_the_last_release);
  suite_add_tcase(s, tc);

  /* No leak fixture: the case ends in abort() with a thread still blocked. */
  TCase *misuse = tcase_create("misuse");
  tcase_set_timeout(misuse, 30);
  tcase_add_test_raise_signal(misuse, free_with_a_blocked_thread_aborts,
                              SIGABRT);
  suite_add_tcase(s, misuse);
  return s;
}
