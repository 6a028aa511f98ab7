/*
 * Futures under races, seeded from harness_seed() (the harness prints it):
 * FUT-06 callbacks added while another thread completes, WAI-05 many
 * completions against one waiter (wait and as_completed), references
 * dropped in random order by racing holders, and help calls racing workers.
 * Sizes scale with CONCUR_TEST_SCALE; CI sizes stay small.
 */
#include "harness.h"

#include "concur/future.h"

#include <pthread.h>
#include <stdlib.h>

/* For results a case deliberately does not check (the compiler insists). */
static void ignore_rc(int rc) {
  (void)rc;
}

static int dummy_value;
#define VALUE ((void *)&dummy_value)

static pthread_t spawn(void *(*fn)(void *), void *arg) {
  pthread_t t;
  ck_assert_int_eq(pthread_create(&t, NULL, fn, arg), 0);
  return t;
}

static void join(pthread_t t) {
  ck_assert_int_eq(pthread_join(t, NULL), 0);
}

/* Spins a random short while, to shake the interleavings. */
static void jitter(uint64_t *rng) {
  int n = (int)(harness_rand(rng) % 64);
  for (int i = 0; i < n; i++) {
    concur__cpu_relax();
  }
}

/*
 * A reusable rendezvous for a fixed party of threads: each round, everyone
 * arrives, then everyone leaves together. Parks instead of spinning.
 */
typedef struct rendezvous {
  _Atomic uint32_t arrived;
  _Atomic uint32_t round;
  uint32_t parties;
} rendezvous;

static void rendezvous_wait(rendezvous *r) {
  uint32_t round = atomic_load(&r->round);
  if (atomic_fetch_add(&r->arrived, 1) + 1 == r->parties) {
    atomic_store(&r->arrived, 0);
    atomic_fetch_add(&r->round, 1);
    concur__unpark(&r->round, INT32_MAX);
    return;
  }
  while (atomic_load(&r->round) == round) {
    ignore_rc(concur__park(&r->round, round, CONCUR__NO_DEADLINE, NULL));
  }
}

/* ---- FUT-06
 * ------------------------------------------------------------------- */

typedef struct cb_race {
  rendezvous rv;
  concur_future *f;
  long rounds;
  uint64_t seed;
  _Atomic int calls;
  int errors;
} cb_race;

static void count_cb(concur_future *f, void *arg) {
  (void)f;
  atomic_fetch_add(&((cb_race *)arg)->calls, 1);
}

static void *cb_race_completer(void *arg) {
  cb_race *r = arg;
  uint64_t rng = r->seed ^ 0x9e3779b97f4a7c15u;
  for (long i = 0; i < r->rounds; i++) {
    rendezvous_wait(&r->rv); /* f is ready */
    jitter(&rng);
    if (concur_future_set_result(r->f, VALUE) != 0) {
      r->errors++;
    }
    rendezvous_wait(&r->rv); /* round over */
  }
  return NULL;
}

START_TEST(FUT_06_callback_vs_completion_race) {
  cb_race r = {.rv = {.parties = 2},
               .rounds = 5000 * harness_scale(),
               .seed = harness_seed() | 1};
  uint64_t rng = r.seed;
  pthread_t t = spawn(cb_race_completer, &r);
  for (long i = 0; i < r.rounds; i++) {
    ck_assert_rc(concur_future_new(&r.f), 0);
    atomic_store(&r.calls, 0);
    rendezvous_wait(&r.rv);
    jitter(&rng);
    int rc = concur_future_add_done_callback(r.f, count_cb, &r);
    int rc2 = concur_future_add_done_callback(r.f, count_cb, &r);
    rendezvous_wait(&r.rv);
    ck_assert_rc(rc, 0);
    ck_assert_rc(rc2, 0);
    int calls = atomic_load(&r.calls);
    ck_assert_int_eq(calls, 2);
    concur_future_unref(r.f);
  }
  join(t);
  ck_assert_int_eq(r.errors, 0);
}
END_TEST

/* ---- WAI-05
 * ------------------------------------------------------------------- */

enum { MANY = 100, COMPLETERS = 4 };

typedef struct batch {
  rendezvous rv;
  concur_future *fs[MANY];
  long rounds;
  int first;
  uint64_t seed;
} batch;

typedef struct batch_worker {
  batch *b;
  int first;
} batch_worker;

static void *batch_completer(void *arg) {
  batch_worker *w = arg;
  batch *b = w->b;
  uint64_t rng = b->seed + (uint64_t)w->first;
  for (long i = 0; i < b->rounds; i++) {
    rendezvous_wait(&b->rv);
    for (int k = w->first; k < MANY; k += COMPLETERS) {
      switch (harness_rand(&rng) % 3) {
      case 0:
        ignore_rc(concur_future_set_result(b->fs[k], VALUE));
        break;
      case 1:
        ignore_rc(concur_future_set_exception(b->fs[k], 1, NULL));
        break;
      default:
        ignore_rc(concur_future_cancel(b->fs[k]));
        break;
      }
    }
    rendezvous_wait(&b->rv);
  }
  return NULL;
}

START_TEST(WAI_05_wait_all_while_many_complete_together) {
  batch b = {.rv = {.parties = COMPLETERS + 1},
             .rounds = 50 * harness_scale(),
             .seed = harness_seed() | 1};
  batch_worker w[COMPLETERS];
  pthread_t t[COMPLETERS];
  for (int i = 0; i < COMPLETERS; i++) {
    w[i] = (batch_worker){&b, i};
    t[i] = spawn(batch_completer, &w[i]);
  }
  for (long r = 0; r < b.rounds; r++) {
    for (int k = 0; k < MANY; k++) {
      ck_assert_rc(concur_future_new(&b.fs[k]), 0);
    }
    rendezvous_wait(&b.rv);
    size_t nd = 0;
    int rc = concur_wait(b.fs, MANY, CONCUR_FOREVER, CONCUR_ALL_COMPLETED, NULL,
                         &nd, NULL, NULL);
    rendezvous_wait(&b.rv);
    ck_assert_rc(rc, 0);
    ck_assert_uint_eq(nd, MANY);
    for (int k = 0; k < MANY; k++) {
      concur_future_unref(b.fs[k]);
    }
  }
  for (int i = 0; i < COMPLETERS; i++) {
    join(t[i]);
  }
}
END_TEST

START_TEST(WAI_05_as_completed_while_many_complete_together) {
  batch b = {.rv = {.parties = COMPLETERS + 1},
             .rounds = 50 * harness_scale(),
             .seed = harness_seed() | 1};
  batch_worker w[COMPLETERS];
  pthread_t t[COMPLETERS];
  for (int i = 0; i < COMPLETERS; i++) {
    w[i] = (batch_worker){&b, i};
    t[i] = spawn(batch_completer, &w[i]);
  }
  for (long r = 0; r < b.rounds; r++) {
    for (int k = 0; k < MANY; k++) {
      ck_assert_rc(concur_future_new(&b.fs[k]), 0);
    }
    concur_as_completed *it = NULL;
    ck_assert_rc(concur_as_completed_new(&it, b.fs, MANY, CONCUR_FOREVER), 0);
    rendezvous_wait(&b.rv);
    int seen = 0;
    int rc;
    concur_future *f;
    while ((rc = concur_as_completed_next(it, &f)) == 1) {
      if (!concur_future_done(f)) {
        seen = -MANY * 2;
      }
      concur_future_unref(f);
      seen++;
    }
    rendezvous_wait(&b.rv);
    ck_assert_rc(rc, 0);
    ck_assert_int_eq(seen, MANY);
    concur_as_completed_free(it);
    for (int k = 0; k < MANY; k++) {
      concur_future_unref(b.fs[k]);
    }
  }
  for (int i = 0; i < COMPLETERS; i++) {
    join(t[i]);
  }
}
END_TEST

/* ---- references dropped in random order
 * ------------------------------------------ */

enum { HOLDERS = 4 };

typedef struct ref_race {
  rendezvous rv;
  concur_future *f;
  long rounds;
  uint64_t seed;
  _Atomic int cleanups;
  _Atomic int callbacks;
  _Atomic int registered;
  _Atomic int bad_results;
} ref_race;

static void ref_cleanup(void *arg, void *result) {
  ref_race *r = arg;
  if (result != VALUE) {
    atomic_fetch_add(&r->bad_results, 1);
  }
  atomic_fetch_add(&r->cleanups, 1);
}

static void ref_cb(concur_future *f, void *arg) {
  atomic_fetch_add(&((ref_race *)arg)->callbacks, 1);
  concur_future_unref(f); /* the reference donated to this callback */
}

static int ref_task(void *arg, void **result) {
  (void)arg;
  *result = VALUE;
  return 0;
}

typedef struct holder {
  ref_race *r;
  int id;
} holder;

/*
 * Each round every holder owns one reference. Holder 0 runs the task; the
 * others wait for the result, register a callback that owns a reference of
 * its own, take a snapshot, or do nothing; then each lets go, at a random
 * moment. Whoever lets go last, a holder or a callback, runs the cleanup.
 */
static void *holder_main(void *arg) {
  holder *h = arg;
  ref_race *r = h->r;
  uint64_t rng = (r->seed * (uint64_t)(h->id + 1)) | 1;
  for (long i = 0; i < r->rounds; i++) {
    rendezvous_wait(&r->rv);
    concur_future *f = r->f;
    jitter(&rng);
    if (h->id == 0) {
      ignore_rc(concur_future_run(f));
    } else {
      void *v = NULL;
      concur_future_snapshot snap = CONCUR_FUTURE_SNAPSHOT_INIT;
      switch (harness_rand(&rng) % 4) {
      case 0:
        if (concur_future_result(f, CONCUR_FOREVER, &v) != 0 || v != VALUE) {
          atomic_fetch_add(&r->bad_results, 1);
        }
        break;
      case 1:
        concur_future_ref(f); /* donated to the callback */
        if (concur_future_add_done_callback(f, ref_cb, r) == 0) {
          atomic_fetch_add(&r->registered, 1);
        } else {
          concur_future_unref(f);
        }
        break;
      case 2:
        ignore_rc(concur_future_get_snapshot(f, &snap));
        break;
      default:
        break;
      }
    }
    jitter(&rng);
    concur_future_unref(f);
    rendezvous_wait(&r->rv); /* round over: every reference is gone */
  }
  return NULL;
}

START_TEST(refcount_races_with_random_unref_order) {
  ref_race r = {.rv = {.parties = HOLDERS + 1},
                .rounds = 2000 * harness_scale(),
                .seed = harness_seed() | 1};
  holder h[HOLDERS];
  pthread_t t[HOLDERS];
  for (int i = 0; i < HOLDERS; i++) {
    h[i] = (holder){&r, i};
    t[i] = spawn(holder_main, &h[i]);
  }
  for (long i = 0; i < r.rounds; i++) {
    atomic_store(&r.cleanups, 0);
    atomic_store(&r.callbacks, 0);
    atomic_store(&r.registered, 0);
    ck_assert_rc(concur_future_new_task(&r.f, ref_task, &r, ref_cleanup), 0);
    for (int k = 1; k < HOLDERS; k++) {
      concur_future_ref(r.f); /* one per holder; the main thread keeps none */
    }
    rendezvous_wait(&r.rv);
    rendezvous_wait(&r.rv);
    int cleanups = atomic_load(&r.cleanups);
    int callbacks = atomic_load(&r.callbacks);
    int registered = atomic_load(&r.registered);
    ck_assert_int_eq(cleanups, 1);
    ck_assert_int_eq(callbacks, registered);
  }
  for (int i = 0; i < HOLDERS; i++) {
    join(t[i]);
  }
  int bad = atomic_load(&r.bad_results);
  ck_assert_int_eq(bad, 0);
}
END_TEST

/* ---- help calls racing a worker
 * ---------------------------------------------------- */

enum { HELPERS = 3 };

typedef struct help_race {
  rendezvous rv;
  concur_future *f;
  _Atomic int queued;
  _Atomic int runs;
  _Atomic int bad;
  long rounds;
  uint64_t seed;
} help_race;

static int help_task(void *arg, void **result) {
  atomic_fetch_add(&((help_race *)arg)->runs, 1);
  *result = VALUE;
  return 0;
}

/* What an executor's hook does: run the task here if it is still queued. */
static void help_hook(concur_future *f, void *arg) {
  help_race *h = arg;
  int one = 1;
  if (atomic_compare_exchange_strong(&h->queued, &one, 0)) {
    if (concur_future_run(f) != 0) {
      atomic_fetch_add(&h->bad, 1);
    }
  }
}

typedef struct help_thread {
  help_race *h;
  int id;
} help_thread;

static void *help_thread_main(void *arg) {
  help_thread *t = arg;
  help_race *h = t->h;
  uint64_t rng = (h->seed + (uint64_t)t->id * 7919u) | 1;
  for (long i = 0; i < h->rounds; i++) {
    rendezvous_wait(&h->rv);
    concur_future *f = h->f;
    jitter(&rng);
    if (t->id == 0) {
      /* The worker: dequeue and run, as a pool worker would. */
      int one = 1;
      if (atomic_compare_exchange_strong(&h->queued, &one, 0) &&
          concur_future_run(f) != 0) {
        atomic_fetch_add(&h->bad, 1);
      }
    } else {
      void *v = NULL;
      int rc = t->id == 1
                   ? concur_future_result(f, CONCUR_FOREVER, &v)
                   : concur_wait(&f, 1, CONCUR_FOREVER, CONCUR_ALL_COMPLETED,
                                 NULL, NULL, NULL, NULL);
      if (rc != 0 || (t->id == 1 && v != VALUE)) {
        atomic_fetch_add(&h->bad, 1);
      }
    }
    rendezvous_wait(&h->rv);
  }
  return NULL;
}

START_TEST(help_calls_race_the_worker_and_the_task_runs_once) {
  help_race h = {.rv = {.parties = HELPERS + 1},
                 .rounds = 2000 * harness_scale(),
                 .seed = harness_seed() | 1};
  help_thread ht[HELPERS];
  pthread_t t[HELPERS];
  for (int i = 0; i < HELPERS; i++) {
    ht[i] = (help_thread){&h, i};
    t[i] = spawn(help_thread_main, &ht[i]);
  }
  for (long i = 0; i < h.rounds; i++) {
    atomic_store(&h.runs, 0);
    atomic_store(&h.queued, 1);
    ck_assert_rc(concur_future_new_task(&h.f, help_task, &h, NULL), 0);
    ck_assert_rc(concur_future_set_help(h.f, help_hook, &h), 0);
    rendezvous_wait(&h.rv);
    rendezvous_wait(&h.rv);
    int runs = atomic_load(&h.runs);
    ck_assert_int_eq(runs, 1);
    concur_future_unref(h.f);
  }
  for (int i = 0; i < HELPERS; i++) {
    join(t[i]);
  }
  int bad = atomic_load(&h.bad);
  ck_assert_int_eq(bad, 0);
}
END_TEST

Suite *concur_test_suite(void) {
  Suite *s = suite_create("future_stress");
  TCase *tc = harness_tcase("races", 300);
  tcase_add_test(tc, FUT_06_callback_vs_completion_race);
  tcase_add_test(tc, WAI_05_wait_all_while_many_complete_together);
  tcase_add_test(tc, WAI_05_as_completed_while_many_complete_together);
  tcase_add_test(tc, refcount_races_with_random_unref_order);
  tcase_add_test(tc, help_calls_race_the_worker_and_the_task_runs_once);
  suite_add_tcase(s, tc);
  return s;
}
