/*
 * Lock (threading.Lock): LCK-01..06 of the reliability catalogue, every
 * documented error, timeouts, and the free-while-blocked abort. LCK-07 (fork)
 * is in test_lock_fork.c, LCK-08 (clock jumps) in test_lock_clock_plain.c.
 */
#include "harness.h"

#include <signal.h>

#if defined(__GLIBC__) &&                                                      \
    (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 32))
#include <sys/single_threaded.h>
#define SINGLE_THREADED() (__libc_single_threaded != 0)
#else
#define SINGLE_THREADED() true
#endif

/* TSan's runtime starts a thread of its own: no process is single-threaded
 * there, so the single-threaded case only checks the threaded paths. */
#if defined(__SANITIZE_THREAD__)
#define UNDER_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define UNDER_TSAN 1
#endif
#endif

#define TIMEOUT_NS 500000000LL /* the catalogue's 0.5 s window */

static concur_lock *new_lock(void) {
  concur_lock *lock = NULL;
  ck_assert_rc(concur_lock_new(&lock), 0);
  ck_assert_ptr_nonnull(lock);
  return lock;
}

static pthread_t spawn(void *(*fn)(void *), void *arg) {
  pthread_t t;
  ck_assert_rc(concur__thread_spawn(&t, 0, true, fn, arg), 0);
  return t;
}

/* A worker that acquires with a timeout and records what it saw. */
typedef struct attempt {
  concur_lock *lock;
  int64_t timeout_ns;
  int rc;
  int64_t elapsed_ns;
  bool release_after; /* release at once if it got the lock */
  int release_rc;
} attempt;

static void *try_acquire(void *arg) {
  attempt *a = arg;
  int64_t t0 = harness_now_ns();
  a->rc = concur_lock_acquire(a->lock, a->timeout_ns);
  a->elapsed_ns = harness_now_ns() - t0;
  if (a->rc == 0 && a->release_after) {
    a->release_rc = concur_lock_release(a->lock);
  }
  return NULL;
}

START_TEST(LCK_01_acquire_release_and_try_acquire) {
  concur_lock *lock = new_lock();
  ck_assert(!concur_lock_locked(lock));
  ck_assert_rc(concur_lock_acquire(lock, CONCUR_FOREVER), 0);
  ck_assert(concur_lock_locked(lock));
  ck_assert_rc(concur_lock_release(lock), 0);
  ck_assert(!concur_lock_locked(lock));

  /* A try-acquire succeeds on a free lock... */
  ck_assert_rc(concur_lock_acquire(lock, CONCUR_NOWAIT), 0);
  ck_assert(concur_lock_locked(lock));
  /* ...and fails, at once, from another thread on a held one. */
  attempt a = {.lock = lock, .timeout_ns = CONCUR_NOWAIT};
  pthread_join(spawn(try_acquire, &a), NULL);
  ck_assert_rc(a.rc, CONCUR_ETIMEDOUT);
  ck_assert_int_lt(a.elapsed_ns, HARNESS_LONG_NS);
  ck_assert(concur_lock_locked(lock));
  ck_assert_rc(concur_lock_release(lock), 0);

  /* Once free again, the other thread's try-acquire succeeds. */
  a = (attempt){
      .lock = lock, .timeout_ns = CONCUR_NOWAIT, .release_after = true};
  pthread_join(spawn(try_acquire, &a), NULL);
  ck_assert_rc(a.rc, 0);
  ck_assert_rc(a.release_rc, 0);
  ck_assert(!concur_lock_locked(lock));
  concur_lock_free(lock);
}
END_TEST

START_TEST(LCK_01_null_handles_and_bad_arguments) {
  ck_assert_rc(concur_lock_new(NULL), CONCUR_EINVAL);
  ck_assert_rc(concur_lock_acquire(NULL, CONCUR_FOREVER), CONCUR_EINVAL);
  ck_assert_rc(concur_lock_acquire(NULL, CONCUR_NOWAIT), CONCUR_EINVAL);
  ck_assert_rc(concur_lock_release(NULL), CONCUR_EINVAL);
  ck_assert(!concur_lock_locked(NULL));
  ck_assert_rc(concur_lock_at_fork_reinit(NULL), CONCUR_EINVAL);
  concur_lock_free(NULL); /* a no-op */
}
END_TEST

/* LCK-02: 5 threads blocked on a held lock all finish after one release. */
START_TEST(LCK_02_five_blocked_threads_all_finish_after_one_release) {
  concur_lock *lock = new_lock();
  ck_assert_rc(concur_lock_acquire(lock, CONCUR_FOREVER), 0);
  attempt a[5];
  pthread_t t[5];
  for (int i = 0; i < 5; i++) {
    a[i] = (attempt){
        .lock = lock, .timeout_ns = CONCUR_FOREVER, .release_after = true};
    t[i] = spawn(try_acquire, &a[i]);
  }
  ck_assert_rc(concur__test_await_parked(lock, 5, HARNESS_LONG_NS), 0);
  ck_assert(concur_lock_locked(lock));
  ck_assert_rc(concur_lock_release(lock), 0);
  for (int i = 0; i < 5; i++) {
    pthread_join(t[i], NULL);
    ck_assert_rc(a[i].rc, 0);
    ck_assert_rc(a[i].release_rc, 0);
  }
  ck_assert(!concur_lock_locked(lock));
  ck_assert_uint_eq(concur__test_parked(lock), 0);
  concur_lock_free(lock);
}
END_TEST

/* The same with timed acquires: a release well before the deadline wins. */
START_TEST(LCK_02_timed_waiters_get_the_lock_before_their_deadline) {
  concur_lock *lock = new_lock();
  ck_assert_rc(concur_lock_acquire(lock, CONCUR_FOREVER), 0);
  attempt a[5];
  pthread_t t[5];
  for (int i = 0; i < 5; i++) {
    a[i] = (attempt){
        .lock = lock, .timeout_ns = HARNESS_LONG_NS, .release_after = true};
    t[i] = spawn(try_acquire, &a[i]);
  }
  ck_assert_rc(concur__test_await_parked(lock, 5, HARNESS_LONG_NS), 0);
  ck_assert_rc(concur_lock_release(lock), 0);
  for (int i = 0; i < 5; i++) {
    pthread_join(t[i], NULL);
    ck_assert_rc(a[i].rc, 0);
  }
  ck_assert(!concur_lock_locked(lock));
  concur_lock_free(lock);
}
END_TEST

START_TEST(LCK_03_invalid_timeouts_are_rejected) {
  concur_lock *lock = new_lock();
  ck_assert_rc(concur_lock_acquire(lock, -1), CONCUR_EINVAL);
  ck_assert_rc(concur_lock_acquire(lock, INT64_MIN), CONCUR_EINVAL);
  ck_assert_rc(concur_lock_acquire(lock, CONCUR_DEFAULT), CONCUR_EINVAL);
  ck_assert(!concur_lock_locked(lock)); /* nothing changed */
  /* The largest finite timeout is valid (it saturates, never overflows). */
  ck_assert_rc(concur_lock_acquire(lock, CONCUR_FOREVER - 1), 0);
  ck_assert_rc(concur_lock_acquire(lock, -1), CONCUR_EINVAL);
  ck_assert(concur_lock_locked(lock));
  ck_assert_rc(concur_lock_release(lock), 0);
  concur_lock_free(lock);
}
END_TEST

START_TEST(LCK_03_timed_acquire_window) {
  concur_lock *lock = new_lock();
  ck_assert_rc(concur_lock_acquire(lock, CONCUR_FOREVER), 0);
  /* From the holder itself (it would block: the Lock is not recursive)... */
  int64_t t0 = harness_now_ns();
  ck_assert_rc(concur_lock_acquire(lock, TIMEOUT_NS), CONCUR_ETIMEDOUT);
  HARNESS_ASSERT_TIMED_OUT(harness_now_ns() - t0, TIMEOUT_NS);
  /* ...and from another thread. */
  attempt a = {.lock = lock, .timeout_ns = TIMEOUT_NS};
  pthread_join(spawn(try_acquire, &a), NULL);
  ck_assert_rc(a.rc, CONCUR_ETIMEDOUT);
  HARNESS_ASSERT_TIMED_OUT(a.elapsed_ns, TIMEOUT_NS);
  ck_assert_rc(concur_lock_release(lock), 0);
  concur_lock_free(lock);
}
END_TEST

START_TEST(LCK_03_nowait_on_a_held_lock_does_not_block) {
  concur_lock *lock = new_lock();
  ck_assert_rc(concur_lock_acquire(lock, CONCUR_FOREVER), 0);
  for (int i = 0; i < 1000; i++) {
    ck_assert_rc(concur_lock_acquire(lock, CONCUR_NOWAIT), CONCUR_ETIMEDOUT);
  }
  ck_assert_uint_eq(concur__test_parked(lock), 0);
  ck_assert_rc(concur_lock_release(lock), 0);
  concur_lock_free(lock);
}
END_TEST

/* LCK-04: after a timed-out acquire the lock is still consistent. */
START_TEST(LCK_04_state_after_timeout) {
  concur_lock *lock = new_lock();
  ck_assert_rc(concur_lock_acquire(lock, CONCUR_FOREVER), 0);
  attempt a = {.lock = lock, .timeout_ns = 20000000};
  pthread_join(spawn(try_acquire, &a), NULL);
  ck_assert_rc(a.rc, CONCUR_ETIMEDOUT);
  HARNESS_ASSERT_TIMED_OUT(a.elapsed_ns, 20000000);
  ck_assert(concur_lock_locked(lock));
  ck_assert_rc(concur_lock_release(lock), 0);
  ck_assert(!concur_lock_locked(lock));
  /* Still acquirable, by this thread and by another one. */
  ck_assert_rc(concur_lock_acquire(lock, CONCUR_NOWAIT), 0);
  ck_assert_rc(concur_lock_release(lock), 0);
  a = (attempt){
      .lock = lock, .timeout_ns = CONCUR_NOWAIT, .release_after = true};
  pthread_join(spawn(try_acquire, &a), NULL);
  ck_assert_rc(a.rc, 0);
  ck_assert_rc(a.release_rc, 0);
  ck_assert(!concur_lock_locked(lock));
  ck_assert_rc(concur_lock_release(lock), CONCUR_EPERM);
  /* A timed-out waiter left nothing behind: free does not abort. */
  concur_lock_free(lock);
}
END_TEST

/*
 * LCK-04: a waiter that times out while another still sleeps must not take
 * the other's wake-up with it: the sleeper gets the lock on the release.
 */
START_TEST(LCK_04_a_timed_out_waiter_does_not_strand_another) {
  concur_lock *lock = new_lock();
  ck_assert_rc(concur_lock_acquire(lock, CONCUR_FOREVER), 0);
  attempt forever = {
      .lock = lock, .timeout_ns = CONCUR_FOREVER, .release_after = true};
  pthread_t tf = spawn(try_acquire, &forever);
  ck_assert_rc(concur__test_await_parked(lock, 1, HARNESS_LONG_NS), 0);
  attempt brief = {.lock = lock, .timeout_ns = 30000000};
  pthread_t tb = spawn(try_acquire, &brief);
  pthread_join(tb, NULL);
  ck_assert_rc(brief.rc, CONCUR_ETIMEDOUT);
  HARNESS_ASSERT_TIMED_OUT(brief.elapsed_ns, 30000000);
  ck_assert_rc(concur_lock_release(lock), 0);
  pthread_join(tf, NULL);
  ck_assert_rc(forever.rc, 0);
  ck_assert_rc(forever.release_rc, 0);
  ck_assert(!concur_lock_locked(lock));
  concur_lock_free(lock);
}
END_TEST

typedef struct release_job {
  concur_lock *lock;
  int rc;
} release_job;

static void *release_it(void *arg) {
  release_job *j = arg;
  j->rc = concur_lock_release(j->lock);
  return NULL;
}

/* LCK-05: any thread may release; releasing an unlocked Lock is EPERM. */
START_TEST(LCK_05_release_from_another_thread) {
  concur_lock *lock = new_lock();
  ck_assert_rc(concur_lock_acquire(lock, CONCUR_FOREVER), 0);
  release_job r = {lock, -999};
  pthread_join(spawn(release_it, &r), NULL);
  ck_assert_rc(r.rc, 0);
  ck_assert(!concur_lock_locked(lock));
  r.rc = -999;
  pthread_join(spawn(release_it, &r), NULL);
  ck_assert_rc(r.rc, CONCUR_EPERM);
  ck_assert(!concur_lock_locked(lock));
  concur_lock_free(lock);
}
END_TEST

START_TEST(LCK_05_releasing_an_unlocked_lock_is_eperm) {
  concur_lock *lock = new_lock();
  ck_assert_rc(concur_lock_release(lock), CONCUR_EPERM);
  ck_assert(!concur_lock_locked(lock));
  ck_assert_rc(concur_lock_acquire(lock, CONCUR_NOWAIT), 0);
  ck_assert_rc(concur_lock_release(lock), 0);
  ck_assert_rc(concur_lock_release(lock), CONCUR_EPERM);
  /* The failed release changed nothing: the lock still works. */
  ck_assert_rc(concur_lock_acquire(lock, CONCUR_NOWAIT), 0);
  ck_assert(concur_lock_locked(lock));
  ck_assert_rc(concur_lock_release(lock), 0);
  concur_lock_free(lock);
}
END_TEST

typedef struct releaser {
  concur_lock *lock;
  int await_rc;
  int release_rc;
} releaser;

/* Waits until the owner is blocked in its second acquire, then frees it. */
static void *release_when_parked(void *arg) {
  releaser *r = arg;
  r->await_rc = concur__test_await_parked(r->lock, 1, HARNESS_LONG_NS);
  r->release_rc = concur_lock_release(r->lock);
  return NULL;
}

/* LCK-06: a second acquire by the holder blocks until another releases. */
START_TEST(LCK_06_reacquire_blocks_until_another_thread_releases) {
  concur_lock *lock = new_lock();
  ck_assert_rc(concur_lock_acquire(lock, CONCUR_FOREVER), 0);
  releaser r = {.lock = lock};
  pthread_t t = spawn(release_when_parked, &r);
  ck_assert_rc(concur_lock_acquire(lock, CONCUR_FOREVER), 0);
  pthread_join(t, NULL);
  ck_assert_rc(r.await_rc, 0);
  ck_assert_rc(r.release_rc, 0);
  ck_assert(concur_lock_locked(lock));
  ck_assert_rc(concur_lock_release(lock), 0);
  concur_lock_free(lock);
}
END_TEST

/* Freeing a held Lock nobody waits for is allowed (Python drops such locks). */
START_TEST(free_of_a_held_lock_without_waiters_is_allowed) {
  concur_lock *lock = new_lock();
  ck_assert_rc(concur_lock_acquire(lock, CONCUR_FOREVER), 0);
  concur_lock_free(lock);
}
END_TEST

static void *block_forever(void *arg) {
  int rc = concur_lock_acquire(arg, CONCUR_FOREVER);
  (void)rc; /* never returns: the main thread aborts the process */
  return NULL;
}

/*
 * While the process has one thread the Lock uses plain loads and stores;
 * the first thread started switches it to atomics. Runs in a case without
 * the leak fixture, whose probe thread would make the process threaded.
 */
START_TEST(single_threaded_process_then_threaded) {
#ifndef UNDER_TSAN
  ck_assert_msg(SINGLE_THREADED(), "the case must start single-threaded");
#endif
  concur_lock *lock = new_lock();
  ck_assert_rc(concur_lock_release(lock), CONCUR_EPERM);
  ck_assert_rc(concur_lock_acquire(lock, CONCUR_FOREVER), 0);
  ck_assert(concur_lock_locked(lock));
  ck_assert_rc(concur_lock_acquire(lock, CONCUR_NOWAIT), CONCUR_ETIMEDOUT);
  int64_t t0 = harness_now_ns();
  ck_assert_rc(concur_lock_acquire(lock, 20000000), CONCUR_ETIMEDOUT);
  HARNESS_ASSERT_TIMED_OUT(harness_now_ns() - t0, 20000000);
  ck_assert_rc(concur_lock_release(lock), 0);
  ck_assert_rc(concur_lock_release(lock), CONCUR_EPERM);
  concur_rlock *rlock;
  ck_assert_rc(concur_rlock_new(&rlock), 0);
  ck_assert_rc(concur_rlock_acquire(rlock, CONCUR_FOREVER), 0);
  ck_assert_rc(concur_rlock_acquire(rlock, CONCUR_NOWAIT), 0);
  ck_assert_rc(concur_rlock_release(rlock), 0);
  ck_assert_rc(concur_rlock_release(rlock), 0);
  ck_assert(!concur_rlock_locked(rlock));
  concur_rlock_free(rlock);

  /* Taken single-threaded, released by a thread that made it threaded. */
  ck_assert_rc(concur_lock_acquire(lock, CONCUR_FOREVER), 0);
  release_job r = {lock, -999};
  pthread_join(spawn(release_it, &r), NULL);
  ck_assert(!SINGLE_THREADED());
  ck_assert_rc(r.rc, 0);
  ck_assert(!concur_lock_locked(lock));
  /* And the threaded paths work on the same Lock. */
  ck_assert_rc(concur_lock_acquire(lock, CONCUR_FOREVER), 0);
  attempt a = {
      .lock = lock, .timeout_ns = CONCUR_FOREVER, .release_after = true};
  pthread_t t = spawn(try_acquire, &a);
  ck_assert_rc(concur__test_await_parked(lock, 1, HARNESS_LONG_NS), 0);
  ck_assert_rc(concur_lock_release(lock), 0);
  pthread_join(t, NULL);
  ck_assert_rc(a.rc, 0);
  ck_assert_rc(a.release_rc, 0);
  concur_lock_free(lock);
}
END_TEST

/* Misuse that cannot be reported: the process aborts with a message. */
START_TEST(free_with_a_blocked_thread_aborts) {
  concur_lock *lock = new_lock();
  ck_assert_rc(concur_lock_acquire(lock, CONCUR_FOREVER), 0);
  pthread_t t = spawn(block_forever, lock);
  (void)t;
  ck_assert_rc(concur__test_await_parked(lock, 1, HARNESS_LONG_NS), 0);
  concur_lock_free(lock); /* aborts: the case expects SIGABRT */
}
END_TEST

START_TEST(at_fork_reinit_resets_a_held_lock) {
  /* In one process the call is only legal with no other user; it must
   * still leave a usable, free Lock. The forked case is LCK-07. */
  concur_lock *lock = new_lock();
  ck_assert_rc(concur_lock_acquire(lock, CONCUR_FOREVER), 0);
  ck_assert_rc(concur_lock_at_fork_reinit(lock), 0);
  ck_assert(!concur_lock_locked(lock));
  ck_assert_rc(concur_lock_acquire(lock, CONCUR_NOWAIT), 0);
  ck_assert_rc(concur_lock_release(lock), 0);
  concur_lock_free(lock);
}
END_TEST

Suite *concur_test_suite(void) {
  Suite *s = suite_create("lock");
  TCase *tc = harness_tcase("lock", 30);
  tcase_add_test(tc, LCK_01_acquire_release_and_try_acquire);
  tcase_add_test(tc, LCK_01_null_handles_and_bad_arguments);
  tcase_add_test(tc, LCK_02_five_blocked_threads_all_finish_after_one_release);
  tcase_add_test(tc, LCK_02_timed_waiters_get_the_lock_before_their_deadline);
  tcase_add_test(tc, LCK_03_invalid_timeouts_are_rejected);
  tcase_add_test(tc, LCK_03_timed_acquire_window);
  tcase_add_test(tc, LCK_03_nowait_on_a_held_lock_does_not_block);
  tcase_add_test(tc, LCK_04_state_after_timeout);
  tcase_add_test(tc, LCK_04_a_timed_out_waiter_does_not_strand_another);
  tcase_add_test(tc, LCK_05_release_from_another_thread);
  tcase_add_test(tc, LCK_05_releasing_an_unlocked_lock_is_eperm);
  tcase_add_test(tc, LCK_06_reacquire_blocks_until_another_thread_releases);
  tcase_add_test(tc, free_of_a_held_lock_without_waiters_is_allowed);
  tcase_add_test(tc, at_fork_reinit_resets_a_held_lock);
  suite_add_tcase(s, tc);

  TCase *single = tcase_create("single_threaded");
  tcase_set_timeout(single, 30);
  tcase_add_test(single, single_threaded_process_then_threaded);
  suite_add_tcase(s, single);

  /* No leak fixture: the case ends in abort() with a thread still blocked. */
  TCase *misuse = tcase_create("misuse");
  tcase_set_timeout(misuse, 30);
  tcase_add_test_raise_signal(misuse, free_with_a_blocked_thread_aborts,
                              SIGABRT);
  suite_add_tcase(s, misuse);
  return s;
}
