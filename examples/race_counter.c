/*
 * The lost-update race, and its cure with a Lock.
 *
 * Three threads each add 1 to a shared counter 100,000 times. Without a lock
 * the read-modify-write of one thread interleaves with another's and updates
 * are lost; with a concur Lock around the increment the total is always
 * exactly 300,000.
 *
 * In C a plain `counter++` from several threads is undefined behaviour (and
 * gcc -O2 folds the loop into a single add, hiding the race). The unprotected
 * version therefore does a relaxed atomic load followed by a relaxed atomic
 * store: race-free by the standard, yet still a non-atomic increment that
 * loses updates, exactly like Python's `counter += 1`.
 */
#include <concur.h>

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>

enum { THREADS = 3, INCREMENTS = 100000 };

typedef struct shared {
  _Atomic long counter;
  concur_lock *lock;     /* NULL: no protection */
  concur_barrier *start; /* lines the threads up so their loops overlap */
} shared;

static int add_many(void *arg, void **result) {
  (void)result;
  shared *s = arg;
  if (concur_barrier_wait(s->start, CONCUR_FOREVER) < 0) {
    return 1;
  }
  for (int i = 0; i < INCREMENTS; i++) {
    if (s->lock != NULL && concur_lock_acquire(s->lock, CONCUR_FOREVER) != 0) {
      return 1;
    }
    long v = atomic_load_explicit(&s->counter, memory_order_relaxed);
    atomic_store_explicit(&s->counter, v + 1, memory_order_relaxed);
    if (s->lock != NULL && concur_lock_release(s->lock) != 0) {
      return 1;
    }
  }
  return 0;
}

static void check(int rc, const char *what) {
  if (rc != 0) {
    fprintf(stderr, "%s: %s\n", what, concur_strerror(rc));
    exit(1);
  }
}

static long run(concur_lock *lock) {
  shared s = {0, lock, NULL};
  check(concur_barrier_new(&s.start, THREADS, NULL, NULL, CONCUR_FOREVER),
        "barrier");
  concur_thread *threads[THREADS];
  for (int i = 0; i < THREADS; i++) {
    check(concur_thread_run(&threads[i], add_many, &s, NULL), "thread start");
  }
  for (int i = 0; i < THREADS; i++) {
    check(concur_thread_join(threads[i], CONCUR_FOREVER, NULL), "thread join");
    concur_thread_free(threads[i]);
  }
  concur_barrier_free(s.start);
  return atomic_load(&s.counter);
}

int main(void) {
  const long expected = (long)THREADS * INCREMENTS;
  printf("race_counter: %d threads x %d increments of one counter\n", THREADS,
         INCREMENTS);

  long unlocked = run(NULL);
  printf("  without a lock: %7ld  (%ld updates lost)\n", unlocked,
         expected - unlocked);

  concur_lock *lock = NULL;
  check(concur_lock_new(&lock), "lock");
  long locked = run(lock);
  concur_lock_free(lock);
  printf("  with a Lock:    %7ld  (%s)\n", locked,
         locked == expected ? "exact" : "WRONG");
  return locked == expected ? 0 : 1;
}
