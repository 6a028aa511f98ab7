/*
 * LCK-07: a Lock in a forked child, reset with concur_lock_at_fork_reinit,
 * whether another thread of the parent held it, waited on it, or neither at
 * the moment of fork. The child reports through its exit status (0: all
 * good, else the number of the first failed step) and is always reaped.
 *
 * Labelled "fork" by its name: the child starts a thread after a
 * multithreaded fork, which TSan does not support, so the TSan run skips it.
 */
#include "harness.h"

#include <stdatomic.h>
#include <stdio.h>
#include <sys/wait.h>
#include <unistd.h>

static pthread_t spawn(void *(*fn)(void *), void *arg) {
  pthread_t t;
  ck_assert_rc(concur__thread_spawn(&t, 0, true, fn, arg), 0);
  return t;
}

/* A parent thread that takes the lock and keeps it until told to let go. */
typedef struct holder {
  concur_lock *lock;
  concur_lock *gate; /* held by the main thread until the holder may go */
  atomic_bool holding;
  int rc;
} holder;

static void *hold_until_gate_opens(void *arg) {
  holder *h = arg;
  h->rc = concur_lock_acquire(h->lock, CONCUR_FOREVER);
  atomic_store(&h->holding, true);
  if (h->rc == 0) {
    /* Blocks on the gate: parked, so the main thread can tell. */
    int rc = concur_lock_acquire(h->gate, CONCUR_FOREVER);
    if (rc == 0) {
      rc = concur_lock_release(h->gate);
    }
    if (rc == 0) {
      rc = concur_lock_release(h->lock);
    }
    h->rc = rc;
  }
  return NULL;
}

static void *acquire_release(void *arg) {
  concur_lock *lock = arg;
  intptr_t rc = concur_lock_acquire(lock, CONCUR_FOREVER);
  if (rc == 0) {
    rc = concur_lock_release(lock);
  }
  return (void *)rc;
}

/* Runs in the child: only async-signal-safe-ish work and _exit. */
static int child_checks(concur_lock *lock, bool held_at_fork) {
  /* The test hook's parked counts are copied from the parent too, with the
   * parent's sleepers in them: count from there. */
  size_t inherited = concur__test_parked(lock);
  if (concur_lock_locked(lock) != held_at_fork) {
    return 1;
  }
  if (concur_lock_at_fork_reinit(lock) != 0) {
    return 2;
  }
  if (concur_lock_locked(lock)) {
    return 3;
  }
  if (concur_lock_acquire(lock, CONCUR_NOWAIT) != 0) {
    return 4;
  }
  /* A thread started in the child blocks on it and gets it on release. */
  pthread_t t;
  if (concur__thread_spawn(&t, 0, true, acquire_release, lock) != 0) {
    return 5;
  }
  if (concur__test_await_parked(lock, inherited + 1, HARNESS_LONG_NS) != 0) {
    return 6;
  }
  if (concur_lock_release(lock) != 0) {
    return 7;
  }
  void *result = (void *)-1;
  pthread_join(t, &result);
  if (result != NULL) {
    return 8;
  }
  if (concur_lock_locked(lock) || concur_lock_release(lock) != CONCUR_EPERM) {
    return 9;
  }
  /* No parent waiter is counted any more: freeing does not abort. */
  concur_lock_free(lock);
  return 0;
}

static void fork_and_check(concur_lock *lock, bool held_at_fork) {
  fflush(NULL);
  pid_t pid = fork();
  ck_assert_int_ge(pid, 0);
  if (pid == 0) {
    _exit(child_checks(lock, held_at_fork));
  }
  int status = 0;
  ck_assert_int_eq(waitpid(pid, &status, 0), pid);
  ck_assert_msg(WIFEXITED(status), "the child died (status %#x)", status);
  ck_assert_msg(WEXITSTATUS(status) == 0, "the child failed at step %d",
                WEXITSTATUS(status));
}

START_TEST(LCK_07_held_by_another_parent_thread_at_fork) {
  concur_lock *lock;
  concur_lock *gate;
  ck_assert_rc(concur_lock_new(&lock), 0);
  ck_assert_rc(concur_lock_new(&gate), 0);
  ck_assert_rc(concur_lock_acquire(gate, CONCUR_FOREVER), 0);
  holder h = {.lock = lock, .gate = gate};
  atomic_init(&h.holding, false);
  pthread_t t = spawn(hold_until_gate_opens, &h);
  ck_assert_rc(concur__test_await_parked(gate, 1, HARNESS_LONG_NS), 0);
  ck_assert(atomic_load(&h.holding));
  ck_assert(concur_lock_locked(lock));

  fork_and_check(lock, true);

  /* The parent's Lock is unaffected by what the child did. */
  ck_assert(concur_lock_locked(lock));
  ck_assert_rc(concur_lock_release(gate), 0);
  pthread_join(t, NULL);
  ck_assert_rc(h.rc, 0);
  ck_assert(!concur_lock_locked(lock));
  concur_lock_free(lock);
  concur_lock_free(gate);
}
END_TEST

START_TEST(LCK_07_free_at_fork) {
  concur_lock *lock;
  ck_assert_rc(concur_lock_new(&lock), 0);
  /* Make the parent multithreaded, as the catalogue's case is. */
  pthread_t t = spawn(acquire_release, lock);
  void *result = (void *)-1;
  pthread_join(t, &result);
  ck_assert_ptr_null(result);
  fork_and_check(lock, false);
  ck_assert(!concur_lock_locked(lock));
  concur_lock_free(lock);
}
END_TEST

START_TEST(LCK_07_held_with_a_parked_waiter_at_fork) {
  concur_lock *lock;
  ck_assert_rc(concur_lock_new(&lock), 0);
  ck_assert_rc(concur_lock_acquire(lock, CONCUR_FOREVER), 0);
  pthread_t t = spawn(acquire_release, lock);
  ck_assert_rc(concur__test_await_parked(lock, 1, HARNESS_LONG_NS), 0);

  fork_and_check(lock, true);

  ck_assert_rc(concur_lock_release(lock), 0);
  void *result = (void *)-1;
  pthread_join(t, &result);
  ck_assert_ptr_null(result);
  concur_lock_free(lock);
}
END_TEST

Suite *concur_test_suite(void) {
  Suite *s = suite_create("lock_fork");
  TCase *tc = harness_tcase("lock_fork", 30);
  tcase_add_test(tc, LCK_07_held_by_another_parent_thread_at_fork);
  tcase_add_test(tc, LCK_07_free_at_fork);
  tcase_add_test(tc, LCK_07_held_with_a_parked_waiter_at_fork);
  suite_add_tcase(s, tc);
  return s;
}
