/*
 * Barrier: BAR-01..08 of the reliability catalogue, every documented error,
 * timeouts, the action's contract, lifetime and the free() misuse check.
 */
#include "harness.h"

#include <signal.h>

#define MAX_PARTIES 8
#define MAX_PASSES 16

/* ---- helpers
 * ------------------------------------------------------------------ */

typedef struct parties {
  concur_barrier *barrier;
  int n;        /* threads started */
  int passes;   /* waits per thread */
  int expected; /* parties of the barrier, for the checks */
  int64_t timeout_ns;
  _Atomic int next_id;
  _Atomic int arrived[MAX_PASSES];
  _Atomic int returned[MAX_PASSES];
  _Atomic int actions;
  _Atomic int violations;
  int action_rc; /* what the action returns */
  pthread_t action_thread[MAX_PASSES];
  int rc[MAX_PARTIES][MAX_PASSES];
  int64_t elapsed[MAX_PARTIES];
  pthread_t threads[MAX_PARTIES];
} parties;

/* The action: checks that all arrived and nobody left, once per pass. */
static int check_action(void *arg) {
  parties *p = arg;
  int g = atomic_load(&p->actions);
  if (g >= MAX_PASSES || atomic_load(&p->arrived[g]) != p->expected ||
      atomic_load(&p->returned[g]) != 0) {
    atomic_fetch_add(&p->violations, 1);
  }
  if (g < MAX_PASSES) {
    p->action_thread[g] = pthread_self();
  }
  atomic_fetch_add(&p->actions, 1);
  return p->action_rc;
}

static void *party(void *arg) {
  parties *p = arg;
  int id = atomic_fetch_add(&p->next_id, 1);
  int64_t t0 = harness_now_ns();
  for (int g = 0; g < p->passes; g++) {
    atomic_fetch_add(&p->arrived[g], 1);
    int rc = concur_barrier_wait(p->barrier, p->timeout_ns);
    p->rc[id][g] = rc;
    if (rc < 0) {
      break;
    }
    /* Lockstep: nobody passes before everyone arrived. */
    if (atomic_load(&p->arrived[g]) != p->expected) {
      atomic_fetch_add(&p->violations, 1);
    }
    atomic_fetch_add(&p->returned[g], 1);
    if (rc == p->expected - 1 && g < MAX_PASSES &&
        atomic_load(&p->actions) > g &&
        !pthread_equal(p->action_thread[g], pthread_self())) {
      atomic_fetch_add(&p->violations, 1); /* action in the wrong thread */
    }
  }
  p->elapsed[id] = harness_now_ns() - t0;
  return NULL;
}

static void parties_init(parties *p, concur_barrier *b, int expected,
                         int passes, int64_t timeout_ns) {
  *p = (parties){.barrier = b,
                 .expected = expected,
                 .passes = passes,
                 .timeout_ns = timeout_ns};
  for (int i = 0; i < MAX_PARTIES; i++) {
    for (int g = 0; g < MAX_PASSES; g++) {
      p->rc[i][g] = 1; /* not a code wait returns */
    }
  }
}

static void parties_spawn(parties *p, int n) {
  for (int i = 0; i < n; i++) {
    ck_assert_rc(concur__thread_spawn(&p->threads[p->n + i], 0, true, party, p),
                 0);
  }
  p->n += n;
}

static void parties_join(parties *p) {
  for (int i = 0; i < p->n; i++) {
    pthread_join(p->threads[i], NULL);
  }
}

/* Every thread passed every generation with distinct indices 0..n-1. */
static void assert_clean_passes(parties *p) {
  ck_assert_int_eq(atomic_load(&p->violations), 0);
  for (int g = 0; g < p->passes; g++) {
    int seen = 0;
    for (int i = 0; i < p->n; i++) {
      int rc = p->rc[i][g];
      ck_assert_msg(rc >= 0 && rc < p->expected, "pass %d: %s (%d)", g,
                    concur_err_name(rc), rc);
      ck_assert_msg((seen & (1 << rc)) == 0, "pass %d: index %d twice", g, rc);
      seen |= 1 << rc;
    }
  }
}

/* ---- errors
 * -------------------------------------------------------------------- */

START_TEST(bar_null_handles_are_einval) {
  ck_assert_rc(concur_barrier_new(NULL, 2, NULL, NULL, CONCUR_FOREVER),
               CONCUR_EINVAL);
  ck_assert_rc(concur_barrier_wait(NULL, CONCUR_FOREVER), CONCUR_EINVAL);
  ck_assert_rc(concur_barrier_wait(NULL, CONCUR_DEFAULT), CONCUR_EINVAL);
  ck_assert_rc(concur_barrier_reset(NULL), CONCUR_EINVAL);
  ck_assert_rc(concur_barrier_abort(NULL), CONCUR_EINVAL);
  ck_assert_int_eq(concur_barrier_parties(NULL), 0);
  ck_assert_int_eq(concur_barrier_n_waiting(NULL), 0);
  ck_assert(!concur_barrier_broken(NULL));
  concur_barrier_free(NULL); /* a no-op */
}
END_TEST

START_TEST(bar_negative_timeouts_are_einval) {
  concur_barrier *b;
  ck_assert_rc(concur_barrier_new(&b, 2, NULL, NULL, -5), CONCUR_EINVAL);
  ck_assert_rc(concur_barrier_new(&b, 2, NULL, NULL, CONCUR_DEFAULT),
               CONCUR_EINVAL);
  ck_assert_rc(concur_barrier_new(&b, 2, NULL, NULL, CONCUR_FOREVER), 0);
  ck_assert_rc(concur_barrier_wait(b, -2), CONCUR_EINVAL);
  ck_assert_rc(concur_barrier_wait(b, INT64_MIN), CONCUR_EINVAL);
  /* A rejected call neither arrives nor breaks anything. */
  ck_assert_int_eq(concur_barrier_n_waiting(b), 0);
  ck_assert(!concur_barrier_broken(b));
  concur_barrier_free(b);
}
END_TEST

/* ---- BAR-01
 * ---------------------------------------------------------------------- */

START_TEST(BAR_01_parties_below_one_is_einval) {
  concur_barrier *b = NULL;
  ck_assert_rc(concur_barrier_new(&b, 0, NULL, NULL, CONCUR_FOREVER),
               CONCUR_EINVAL);
  ck_assert_rc(concur_barrier_new(&b, -1, NULL, NULL, CONCUR_FOREVER),
               CONCUR_EINVAL);
  ck_assert_rc(concur_barrier_new(&b, INT32_MIN, NULL, NULL, CONCUR_FOREVER),
               CONCUR_EINVAL);
  ck_assert_ptr_null(b);
}
END_TEST

START_TEST(BAR_01_single_party_passes_repeatedly) {
  parties p;
  concur_barrier *b;
  ck_assert_rc(concur_barrier_new(&b, 1, check_action, &p, CONCUR_NOWAIT), 0);
  parties_init(&p, b, 1, 0, 0);
  ck_assert_int_eq(concur_barrier_parties(b), 1);
  for (int g = 0; g < MAX_PASSES; g++) {
    atomic_store(&p.arrived[g], 1);
    /* The default timeout is NOWAIT: the lone party never waits anyway. */
    ck_assert_rc(concur_barrier_wait(b, g % 2 ? CONCUR_DEFAULT : CONCUR_NOWAIT),
                 0);
    ck_assert_int_eq(concur_barrier_n_waiting(b), 0);
  }
  ck_assert_int_eq(atomic_load(&p.actions), MAX_PASSES);
  ck_assert_int_eq(atomic_load(&p.violations), 0);
  ck_assert(!concur_barrier_broken(b));
  concur_barrier_free(b);
}
END_TEST

/* ---- BAR-02
 * ---------------------------------------------------------------------- */

static void run_lockstep(int passes) {
  concur_barrier *b;
  ck_assert_rc(concur_barrier_new(&b, 5, NULL, NULL, CONCUR_FOREVER), 0);
  parties p;
  parties_init(&p, b, 5, passes, CONCUR_FOREVER);
  parties_spawn(&p, 5);
  parties_join(&p);
  assert_clean_passes(&p);
  ck_assert(!concur_barrier_broken(b));
  ck_assert_int_eq(concur_barrier_n_waiting(b), 0);
  concur_barrier_free(b);
}

START_TEST(BAR_02_five_threads_in_lockstep_once) {
  run_lockstep(1);
}
END_TEST

START_TEST(BAR_02_five_threads_in_lockstep_ten_generations) {
  run_lockstep(10);
}
END_TEST

START_TEST(BAR_02_timed_waits_pass_in_lockstep) {
  concur_barrier *b;
  ck_assert_rc(concur_barrier_new(&b, 4, NULL, NULL, HARNESS_LONG_NS), 0);
  parties p;
  parties_init(&p, b, 4, 10, CONCUR_DEFAULT);
  parties_spawn(&p, 4);
  parties_join(&p);
  assert_clean_passes(&p);
  concur_barrier_free(b);
}
END_TEST

/* ---- BAR-03
 * ---------------------------------------------------------------------- */

START_TEST(BAR_03_indices_follow_arrival_order) {
  concur_barrier *b;
  ck_assert_rc(concur_barrier_new(&b, 3, NULL, NULL, CONCUR_FOREVER), 0);
  ck_assert_int_eq(concur_barrier_parties(b), 3);
  for (int g = 0; g < 3; g++) {
    parties p;
    parties_init(&p, b, 3, 1, CONCUR_FOREVER);
    parties_spawn(&p, 1);
    ck_assert_rc(concur__test_await_parked(b, 1, HARNESS_LONG_NS), 0);
    ck_assert_int_eq(concur_barrier_n_waiting(b), 1);
    parties_spawn(&p, 1);
    ck_assert_rc(concur__test_await_parked(b, 2, HARNESS_LONG_NS), 0);
    ck_assert_int_eq(concur_barrier_n_waiting(b), 2);
    ck_assert(!concur_barrier_broken(b));
    atomic_fetch_add(&p.arrived[0], 1);
    ck_assert_rc(concur_barrier_wait(b, CONCUR_FOREVER), 2);
    parties_join(&p);
    ck_assert_rc(p.rc[0][0], 0);
    ck_assert_rc(p.rc[1][0], 1);
    ck_assert_int_eq(concur_barrier_n_waiting(b), 0);
  }
  concur_barrier_free(b);
}
END_TEST

START_TEST(BAR_03_indices_distinct_each_generation) {
  concur_barrier *b;
  ck_assert_rc(concur_barrier_new(&b, 6, NULL, NULL, CONCUR_FOREVER), 0);
  parties p;
  parties_init(&p, b, 6, MAX_PASSES, CONCUR_FOREVER);
  parties_spawn(&p, 6);
  parties_join(&p);
  assert_clean_passes(&p);
  concur_barrier_free(b);
}
END_TEST

/* ---- BAR-04
 * ---------------------------------------------------------------------- */

START_TEST(BAR_04_action_once_per_generation_before_release) {
  parties p;
  concur_barrier *b;
  ck_assert_rc(concur_barrier_new(&b, 5, check_action, &p, CONCUR_FOREVER), 0);
  parties_init(&p, b, 5, 10, CONCUR_FOREVER);
  parties_spawn(&p, 5);
  parties_join(&p);
  assert_clean_passes(&p);
  ck_assert_int_eq(atomic_load(&p.actions), 10);
  concur_barrier_free(b);
}
END_TEST

typedef struct peek {
  concur_barrier *barrier;
  int32_t n_waiting;
  bool broken;
  int calls;
} peek;

static int peek_action(void *arg) {
  peek *k = arg;
  /* The action runs unlocked: the snapshots must not deadlock. */
  k->n_waiting = concur_barrier_n_waiting(k->barrier);
  k->broken = concur_barrier_broken(k->barrier);
  k->calls++;
  return 0;
}

START_TEST(BAR_04_action_may_read_the_barrier) {
  peek k = {0};
  ck_assert_rc(
      concur_barrier_new(&k.barrier, 2, peek_action, &k, CONCUR_FOREVER), 0);
  parties p;
  parties_init(&p, k.barrier, 2, 1, CONCUR_FOREVER);
  parties_spawn(&p, 1);
  ck_assert_rc(concur__test_await_parked(k.barrier, 1, HARNESS_LONG_NS), 0);
  atomic_fetch_add(&p.arrived[0], 1);
  ck_assert_rc(concur_barrier_wait(k.barrier, CONCUR_FOREVER), 1);
  parties_join(&p);
  ck_assert_rc(p.rc[0][0], 0);
  ck_assert_int_eq(k.calls, 1);
  ck_assert_int_eq(k.n_waiting, 0); /* the next generation is empty */
  ck_assert(!k.broken);
  concur_barrier_free(k.barrier);
}
END_TEST

/* ---- BAR-05
 * ---------------------------------------------------------------------- */

START_TEST(BAR_05_abort_breaks_waiters_and_later_callers) {
  concur_barrier *b;
  ck_assert_rc(concur_barrier_new(&b, 3, NULL, NULL, CONCUR_FOREVER), 0);
  parties p;
  parties_init(&p, b, 3, 1, CONCUR_FOREVER);
  parties_spawn(&p, 2);
  ck_assert_rc(concur__test_await_parked(b, 2, HARNESS_LONG_NS), 0);
  ck_assert(!concur_barrier_broken(b));
  ck_assert_rc(concur_barrier_abort(b), 0);
  parties_join(&p);
  ck_assert_rc(p.rc[0][0], CONCUR_EBROKEN);
  ck_assert_rc(p.rc[1][0], CONCUR_EBROKEN);
  ck_assert(concur_barrier_broken(b));
  ck_assert_int_eq(concur_barrier_n_waiting(b), 0);
  ck_assert_rc(concur_barrier_wait(b, CONCUR_FOREVER), CONCUR_EBROKEN);
  ck_assert_rc(concur_barrier_wait(b, CONCUR_NOWAIT), CONCUR_EBROKEN);
  ck_assert_rc(concur_barrier_abort(b), 0); /* idempotent */
  ck_assert(concur_barrier_broken(b));
  concur_barrier_free(b);
}
END_TEST

/* ---- BAR-06
 * ---------------------------------------------------------------------- */

START_TEST(BAR_06_reset_breaks_waiters_then_barrier_is_usable) {
  concur_barrier *b;
  ck_assert_rc(concur_barrier_new(&b, 3, NULL, NULL, CONCUR_FOREVER), 0);
  ck_assert_rc(concur_barrier_reset(b), 0); /* nobody waiting: no effect */
  ck_assert(!concur_barrier_broken(b));
  parties p;
  parties_init(&p, b, 3, 1, CONCUR_FOREVER);
  parties_spawn(&p, 2);
  ck_assert_rc(concur__test_await_parked(b, 2, HARNESS_LONG_NS), 0);
  ck_assert_rc(concur_barrier_reset(b), 0);
  parties_join(&p);
  ck_assert_rc(p.rc[0][0], CONCUR_EBROKEN);
  ck_assert_rc(p.rc[1][0], CONCUR_EBROKEN);
  ck_assert(!concur_barrier_broken(b));
  ck_assert_int_eq(concur_barrier_n_waiting(b), 0);

  parties_init(&p, b, 3, 3, CONCUR_FOREVER);
  parties_spawn(&p, 3);
  parties_join(&p);
  assert_clean_passes(&p);
  concur_barrier_free(b);
}
END_TEST

/* ---- BAR-07
 * ---------------------------------------------------------------------- */

START_TEST(BAR_07_abort_then_reset_is_usable) {
  concur_barrier *b;
  ck_assert_rc(concur_barrier_new(&b, 3, NULL, NULL, CONCUR_FOREVER), 0);
  ck_assert_rc(concur_barrier_abort(b), 0);
  ck_assert(concur_barrier_broken(b));
  ck_assert_rc(concur_barrier_wait(b, CONCUR_FOREVER), CONCUR_EBROKEN);
  ck_assert_rc(concur_barrier_reset(b), 0);
  ck_assert(!concur_barrier_broken(b));
  parties p;
  parties_init(&p, b, 3, 2, CONCUR_FOREVER);
  parties_spawn(&p, 3);
  parties_join(&p);
  assert_clean_passes(&p);
  concur_barrier_free(b);
}
END_TEST

START_TEST(BAR_07_failing_action_breaks_for_everyone_reset_recovers) {
  parties p;
  concur_barrier *b;
  ck_assert_rc(concur_barrier_new(&b, 3, check_action, &p, CONCUR_FOREVER), 0);
  parties_init(&p, b, 3, 1, CONCUR_FOREVER);
  p.action_rc = 7;
  parties_spawn(&p, 3);
  parties_join(&p);
  for (int i = 0; i < 3; i++) {
    ck_assert_rc(p.rc[i][0], CONCUR_EBROKEN); /* the action's thread too */
  }
  ck_assert_int_eq(atomic_load(&p.actions), 1);
  ck_assert(concur_barrier_broken(b));
  ck_assert_rc(concur_barrier_wait(b, CONCUR_FOREVER), CONCUR_EBROKEN);

  ck_assert_rc(concur_barrier_reset(b), 0);
  ck_assert(!concur_barrier_broken(b));
  parties_init(&p, b, 3, 2, CONCUR_FOREVER);
  parties_spawn(&p, 3);
  parties_join(&p);
  assert_clean_passes(&p);
  ck_assert_int_eq(atomic_load(&p.actions), 2);
  concur_barrier_free(b);
}
END_TEST

typedef struct meddler {
  concur_barrier *barrier;
  bool reset; /* else abort */
} meddler;

static int meddling_action(void *arg) {
  meddler *m = arg;
  if (m->reset) {
    (void)concur_barrier_reset(m->barrier);
  } else {
    (void)concur_barrier_abort(m->barrier);
  }
  return 0;
}

START_TEST(BAR_07_abort_or_reset_during_action_breaks_that_generation) {
  for (int reset = 0; reset <= 1; reset++) {
    meddler m = {NULL, reset};
    ck_assert_rc(
        concur_barrier_new(&m.barrier, 3, meddling_action, &m, CONCUR_FOREVER),
        0);
    parties p;
    parties_init(&p, m.barrier, 3, 1, CONCUR_FOREVER);
    parties_spawn(&p, 3);
    parties_join(&p);
    for (int i = 0; i < 3; i++) {
      ck_assert_rc(p.rc[i][0], CONCUR_EBROKEN);
    }
    ck_assert(concur_barrier_broken(m.barrier) == !reset);
    concur_barrier_free(m.barrier);
  }
}
END_TEST

/* ---- BAR-08
 * ---------------------------------------------------------------------- */

START_TEST(BAR_08_one_timeout_breaks_the_barrier_for_all) {
  concur_barrier *b;
  ck_assert_rc(concur_barrier_new(&b, 3, NULL, NULL, CONCUR_FOREVER), 0);
  parties p;
  parties_init(&p, b, 3, 1, CONCUR_FOREVER);
  parties_spawn(&p, 1);
  ck_assert_rc(concur__test_await_parked(b, 1, HARNESS_LONG_NS), 0);
  const int64_t timeout = 100000000;
  int64_t t0 = harness_now_ns();
  ck_assert_rc(concur_barrier_wait(b, timeout), CONCUR_ETIMEDOUT);
  HARNESS_ASSERT_TIMED_OUT(harness_now_ns() - t0, timeout);
  parties_join(&p);
  ck_assert_rc(p.rc[0][0], CONCUR_EBROKEN);
  ck_assert(concur_barrier_broken(b));
  ck_assert_int_eq(concur_barrier_n_waiting(b), 0);
  ck_assert_rc(concur_barrier_wait(b, CONCUR_FOREVER), CONCUR_EBROKEN);
  concur_barrier_free(b);
}
END_TEST

START_TEST(BAR_08_timed_waiters_all_fail_one_way_or_another) {
  concur_barrier *b;
  ck_assert_rc(concur_barrier_new(&b, 5, NULL, NULL, CONCUR_FOREVER), 0);
  parties p;
  const int64_t timeout = 100000000;
  parties_init(&p, b, 5, 1, timeout);
  parties_spawn(&p, 4);
  parties_join(&p);
  int timed_out = 0;
  for (int i = 0; i < 4; i++) {
    int rc = p.rc[i][0];
    ck_assert_msg(rc == CONCUR_ETIMEDOUT || rc == CONCUR_EBROKEN, "got %s",
                  concur_err_name(rc));
    timed_out += rc == CONCUR_ETIMEDOUT;
    if (rc == CONCUR_ETIMEDOUT) {
      HARNESS_ASSERT_TIMED_OUT(p.elapsed[i], timeout);
    }
  }
  ck_assert_int_ge(timed_out, 1);
  ck_assert(concur_barrier_broken(b));
  concur_barrier_free(b);
}
END_TEST

START_TEST(BAR_08_default_timeout_is_honored) {
  concur_barrier *b;
  const int64_t timeout = 100000000;
  ck_assert_rc(concur_barrier_new(&b, 2, NULL, NULL, timeout), 0);
  int64_t t0 = harness_now_ns();
  ck_assert_rc(concur_barrier_wait(b, CONCUR_DEFAULT), CONCUR_ETIMEDOUT);
  HARNESS_ASSERT_TIMED_OUT(harness_now_ns() - t0, timeout);
  ck_assert(concur_barrier_broken(b));
  ck_assert_rc(concur_barrier_reset(b), 0);
  /* An explicit timeout overrides the default. */
  parties p;
  parties_init(&p, b, 2, 1, CONCUR_FOREVER);
  parties_spawn(&p, 1);
  ck_assert_rc(concur__test_await_parked(b, 1, HARNESS_LONG_NS), 0);
  ck_assert_rc(concur_barrier_wait(b, CONCUR_FOREVER), 1);
  parties_join(&p);
  ck_assert_rc(p.rc[0][0], 0);
  concur_barrier_free(b);

  /* A default of NOWAIT: a wait alone breaks at once. */
  ck_assert_rc(concur_barrier_new(&b, 2, NULL, NULL, CONCUR_NOWAIT), 0);
  ck_assert_rc(concur_barrier_wait(b, CONCUR_DEFAULT), CONCUR_ETIMEDOUT);
  ck_assert(concur_barrier_broken(b));
  concur_barrier_free(b);
}
END_TEST

typedef struct gated {
  concur_event *gate;
  int calls;
} gated;

static int gated_action(void *arg) {
  gated *g = arg;
  g->calls++;
  return concur_event_wait(g->gate, CONCUR_FOREVER);
}

START_TEST(BAR_08_timeout_while_the_action_runs_does_not_break) {
  /* As in Python: once every party arrived, a waiter's timeout no longer
   * applies; it waits for the action's verdict. */
  gated g = {NULL, 0};
  ck_assert_rc(concur_event_new(&g.gate), 0);
  concur_barrier *b;
  ck_assert_rc(concur_barrier_new(&b, 2, gated_action, &g, CONCUR_FOREVER), 0);
  const int64_t timeout = 50000000;
  parties timed;
  parties_init(&timed, b, 2, 1, timeout);
  parties_spawn(&timed, 1);
  ck_assert_rc(concur__test_await_parked(b, 1, HARNESS_LONG_NS), 0);
  parties last;
  parties_init(&last, b, 2, 1, CONCUR_FOREVER);
  atomic_store(&last.arrived[0], 1); /* the timed one arrived before */
  parties_spawn(&last, 1);
  ck_assert_rc(concur__test_await_parked(g.gate, 1, HARNESS_LONG_NS), 0);
  /* Let the timed waiter's deadline pass (this is what is under test, not
   * a wait for a thread to block), then let it park again untimed. */
  concur_event *never;
  ck_assert_rc(concur_event_new(&never), 0);
  ck_assert_rc(concur_event_wait(never, 3 * timeout), CONCUR_ETIMEDOUT);
  concur_event_free(never);
  ck_assert_rc(concur__test_await_parked(b, 1, HARNESS_LONG_NS), 0);
  ck_assert(!concur_barrier_broken(b));
  ck_assert_rc(concur_event_set(g.gate), 0);
  parties_join(&timed);
  parties_join(&last);
  ck_assert_rc(timed.rc[0][0], 0);
  ck_assert_rc(last.rc[0][0], 1);
  ck_assert_int_eq(g.calls, 1);
  ck_assert(!concur_barrier_broken(b));
  concur_barrier_free(b);
  concur_event_free(g.gate);
}
END_TEST

/* ---- lifetime and misuse
 * ------------------------------------------------------------ */

typedef struct freer {
  concur_barrier *barrier;
  int rc[4];
  _Atomic int next_id;
} freer;

static void *wait_then_maybe_free(void *arg) {
  freer *f = arg;
  int id = atomic_fetch_add(&f->next_id, 1);
  concur_barrier *b = f->barrier;
  int rc = concur_barrier_wait(b, CONCUR_FOREVER);
  f->rc[id] = rc;
  if (rc == 0) {
    concur_barrier_free(b); /* the others may not have left wait() yet */
  }
  return NULL;
}

START_TEST(bar_a_party_may_free_after_its_own_wait) {
  for (int round = 0; round < 100; round++) {
    freer f = {0};
    ck_assert_rc(concur_barrier_new(&f.barrier, 4, NULL, NULL, CONCUR_FOREVER),
                 0);
    pthread_t t[4];
    for (int i = 0; i < 4; i++) {
      ck_assert_rc(
          concur__thread_spawn(&t[i], 0, true, wait_then_maybe_free, &f), 0);
    }
    for (int i = 0; i < 4; i++) {
      pthread_join(t[i], NULL);
    }
    int seen = 0;
    for (int i = 0; i < 4; i++) {
      ck_assert(f.rc[i] >= 0 && f.rc[i] < 4);
      seen |= 1 << f.rc[i];
    }
    ck_assert_int_eq(seen, 0xf);
  }
}
END_TEST

static void *barrier_wait_forever(void *arg) {
  int rc = concur_barrier_wait(arg, CONCUR_FOREVER);
  (void)rc; /* never returns: the case aborts first */
  return NULL;
}

START_TEST(bar_free_with_a_waiter_aborts) {
  concur_barrier *b;
  ck_assert_rc(concur_barrier_new(&b, 2, NULL, NULL, CONCUR_FOREVER), 0);
  pthread_t t;
  ck_assert_rc(concur__thread_spawn(&t, 0, true, barrier_wait_forever, b), 0);
  ck_assert_rc(concur__test_await_parked(b, 1, HARNESS_LONG_NS), 0);
  concur_barrier_free(b); /* aborts: the case expects SIGABRT */
}
END_TEST

Suite *concur_test_suite(void) {
  Suite *s = suite_create("barrier");
  TCase *tc = harness_tcase("barrier", 30);
  tcase_add_test(tc, bar_null_handles_are_einval);
  tcase_add_test(tc, bar_negative_timeouts_are_einval);
  tcase_add_test(tc, BAR_01_parties_below_one_is_einval);
  tcase_add_test(tc, BAR_01_single_party_passes_repeatedly);
  tcase_add_test(tc, BAR_02_five_threads_in_lockstep_once);
  tcase_add_test(tc, BAR_02_five_threads_in_lockstep_ten_generations);
  tcase_add_test(tc, BAR_02_timed_waits_pass_in_lockstep);
  tcase_add_test(tc, BAR_03_indices_follow_arrival_order);
  tcase_add_test(tc, BAR_03_indices_distinct_each_generation);
  tcase_add_test(tc, BAR_04_action_once_per_generation_before_release);
  tcase_add_test(tc, BAR_04_action_may_read_the_barrier);
  tcase_add_test(tc, BAR_05_abort_breaks_waiters_and_later_callers);
  tcase_add_test(tc, BAR_06_reset_breaks_waiters_then_barrier_is_usable);
  tcase_add_test(tc, BAR_07_abort_then_reset_is_usable);
  tcase_add_test(tc, BAR_07_failing_action_breaks_for_everyone_reset_recovers);
  tcase_add_test(tc,
                 BAR_07_abort_or_reset_during_action_breaks_that_generation);
  tcase_add_test(tc, BAR_08_one_timeout_breaks_the_barrier_for_all);
  tcase_add_test(tc, BAR_08_timed_waiters_all_fail_one_way_or_another);
  tcase_add_test(tc, BAR_08_default_timeout_is_honored);
  tcase_add_test(tc, BAR_08_timeout_while_the_action_runs_does_not_break);
  tcase_add_test(tc, bar_a_party_may_free_after_its_own_wait);
  suite_add_tcase(s, tc);
  /* The aborting case leaves its blocked thread behind: no leak fixture. */
  TCase *abort_tc = tcase_create("barrier_misuse");
  tcase_set_timeout(abort_tc, 30);
  tcase_add_test_raise_signal(abort_tc, bar_free_with_a_waiter_aborts, SIGABRT);
  suite_add_tcase(s, abort_tc);
  return s;
}
