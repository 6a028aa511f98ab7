/*
 * Platform stress: the asymmetric fence pair (concur__asym_fence_light on
 * the frequent side, concur__asym_fence_heavy on the rare side) as a
 * store-buffering litmus test. In every round each side stores its round
 * number, fences, then loads the other side's word; a broken pair lets both
 * loads miss the other's store of that round, which x86's store buffer
 * produces within a few thousand rounds when the fences are left out.
 * Where the process has no heavy fence (concur__asym_fence_ready false,
 * always so in the condvar build) the contract is seq_cst on both sides,
 * and the case checks that instead.
 */
#include "harness.h"

#include <stdlib.h>

typedef struct litmus {
  /* Both sides arrive here each round and spin until the other has (a
   * parking barrier would let one side finish before the other starts, and
   * the window to catch is a few instructions wide). */
  _Atomic long arrived;
  long rounds;
  bool asym;
  _Atomic long x; /* the frequent side's word */
  _Atomic long y; /* the rare side's word */
  long *seen_by_rare;
  bool heavy_failed;
} litmus;

/* Waits, spinning, until both sides arrived for round r (bounded by the
 * partner's progress: it is running, a few instructions behind). */
static void arrive(litmus *l, long r) {
  atomic_fetch_add_explicit(&l->arrived, 1, memory_order_acq_rel);
  while (atomic_load_explicit(&l->arrived, memory_order_acquire) < 2 * r) {
    concur__cpu_relax();
  }
}

static void *rare_side(void *arg) {
  litmus *l = arg;
  for (long r = 1; r <= l->rounds; r++) {
    arrive(l, r);
    atomic_store_explicit(&l->y, r, memory_order_relaxed);
    if (l->asym) {
      if (!concur__asym_fence_heavy()) {
        l->heavy_failed = true;
      }
    } else {
      atomic_thread_fence(memory_order_seq_cst);
    }
    l->seen_by_rare[r] = atomic_load_explicit(&l->x, memory_order_relaxed);
  }
  return NULL;
}

START_TEST(asym_fence_store_buffering_litmus) {
  litmus l = {.rounds = 100000 * harness_scale()};
  l.asym = concur__asym_fence_ready();
  /* Asked twice, the same answer. */
  ck_assert(concur__asym_fence_ready() == l.asym);
  atomic_init(&l.x, 0);
  atomic_init(&l.y, 0);
  long *seen_by_frequent = calloc((size_t)l.rounds + 1, sizeof(long));
  l.seen_by_rare = calloc((size_t)l.rounds + 1, sizeof(long));
  ck_assert_ptr_nonnull(seen_by_frequent);
  ck_assert_ptr_nonnull(l.seen_by_rare);
  atomic_init(&l.arrived, 0);
  pthread_t t;
  ck_assert_rc(concur__thread_spawn(&t, 0, true, rare_side, &l), 0);
  for (long r = 1; r <= l.rounds; r++) {
    arrive(&l, r);
    atomic_store_explicit(&l.x, r, memory_order_relaxed);
    if (l.asym) {
      concur__asym_fence_light();
    } else {
      atomic_thread_fence(memory_order_seq_cst);
    }
    seen_by_frequent[r] = atomic_load_explicit(&l.y, memory_order_relaxed);
  }
  ck_assert_int_eq(pthread_join(t, NULL), 0);
  ck_assert(!l.heavy_failed);
  long both_missed = 0;
  for (long r = 1; r <= l.rounds; r++) {
    if (seen_by_frequent[r] < r && l.seen_by_rare[r] < r) {
      both_missed++;
    }
  }
  ck_assert_int_eq(both_missed, 0);
  free(seen_by_frequent);
  free(l.seen_by_rare);
}
END_TEST

START_TEST(asym_fence_heavy_alone_is_harmless) {
  /* A heavy fence with no other thread running, and from a fresh thread. */
  if (concur__asym_fence_ready()) {
    ck_assert(concur__asym_fence_heavy());
    ck_assert(concur__asym_fence_heavy());
  } else {
    ck_assert(!concur__asym_fence_heavy());
  }
}
END_TEST

Suite *concur_test_suite(void) {
  Suite *s = suite_create("platform_stress");
  TCase *tc = harness_tcase("platform_stress", 120);
  tcase_add_test(tc, asym_fence_store_buffering_litmus);
  tcase_add_test(tc, asym_fence_heavy_alone_is_harmless);
  suite_add_tcase(s, tc);
  return s;
}
