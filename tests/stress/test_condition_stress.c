/*
 * Stress for Condition. CND-06: no lost wake-up in a ping-pong where each
 * side waits (without a timeout, so a lost wake-up hangs the case until its
 * timeout fails it) for its turn, over each kind of lock; a bounded buffer
 * with two Conditions on one Lock; tickets handed to waiters with random
 * timeouts. Sizes scale with CONCUR_TEST_SCALE (the catalogue's 10^6
 * ping-pong rounds are the soak size); randomness comes from harness_seed().
 */
#include "harness.h"

#include <stdatomic.h>

static long rounds(long base) {
  return base * harness_scale();
}

static pthread_t spawn(void *(*fn)(void *), void *arg) {
  pthread_t t;
  ck_assert_rc(concur__thread_spawn(&t, 0, true, fn, arg), 0);
  return t;
}

enum kind { OWN_RLOCK, WITH_LOCK, WITH_RLOCK, KINDS };

typedef struct pingpong {
  concur_condition *cond;
  int turn; /* guarded by the condition's lock: whose move it is */
  long moves[2];
  long rounds;
  bool use_wait_for;
} pingpong;

typedef struct player {
  pingpong *game;
  int me;
  int errors;
} player;

static bool my_turn(void *arg) {
  player *p = arg;
  return p->game->turn == p->me;
}

static void *play(void *arg) {
  player *p = arg;
  pingpong *g = p->game;
  for (long i = 0; i < g->rounds; i++) {
    if (concur_condition_acquire(g->cond, CONCUR_FOREVER) != 0) {
      p->errors++;
      return NULL;
    }
    if (g->use_wait_for) {
      if (concur_condition_wait_for(g->cond, my_turn, p, CONCUR_FOREVER) != 0) {
        p->errors++;
      }
    } else {
      /* The predicate is checked with the lock held before each wait: a
       * notify that lands between that check and the sleep must not be
       * lost. */
      while (g->turn != p->me) {
        if (concur_condition_wait(g->cond, CONCUR_FOREVER) != 0) {
          p->errors++;
        }
      }
    }
    g->moves[p->me]++;
    g->turn = 1 - p->me;
    if (concur_condition_notify(g->cond, 1) != 0) {
      p->errors++;
    }
    if (concur_condition_release(g->cond) != 0) {
      p->errors++;
    }
  }
  return NULL;
}

static void run_pingpong(enum kind kind, bool use_wait_for, long n) {
  concur_lock *lock = NULL;
  concur_rlock *rlock = NULL;
  pingpong g = {.rounds = n, .use_wait_for = use_wait_for};
  if (kind == OWN_RLOCK) {
    ck_assert_rc(concur_condition_new(&g.cond), 0);
  } else if (kind == WITH_LOCK) {
    ck_assert_rc(concur_lock_new(&lock), 0);
    ck_assert_rc(concur_condition_new_with_lock(&g.cond, lock), 0);
  } else {
    ck_assert_rc(concur_rlock_new(&rlock), 0);
    ck_assert_rc(concur_condition_new_with_rlock(&g.cond, rlock), 0);
  }
  player p[2] = {{&g, 0, 0}, {&g, 1, 0}};
  pthread_t t[2] = {spawn(play, &p[0]), spawn(play, &p[1])};
  pthread_join(t[0], NULL);
  pthread_join(t[1], NULL);
  ck_assert_int_eq(p[0].errors, 0);
  ck_assert_int_eq(p[1].errors, 0);
  ck_assert_int_eq(g.moves[0], n);
  ck_assert_int_eq(g.moves[1], n);
  concur_condition_free(g.cond);
  concur_lock_free(lock);
  concur_rlock_free(rlock);
}

START_TEST(CND_06_pingpong_loses_no_wakeup) {
  long n = rounds(5000);
  for (int k = 0; k < KINDS; k++) {
    run_pingpong((enum kind)k, false, n);
    run_pingpong((enum kind)k, true, n);
  }
}
END_TEST

/* ---- a bounded buffer: two Conditions over one Lock ------------------------
 */

#define SLOTS 4
#define PRODUCERS 2
#define CONSUMERS 2

typedef struct buffer {
  concur_lock *lock;
  concur_condition *not_empty;
  concur_condition *not_full;
  long items[SLOTS]; /* guarded by lock */
  int head;
  int count;
  int producers_left;
  long per_producer;
} buffer;

typedef struct party {
  buffer *buf;
  int id;
  long sum;
  long count;
  int errors;
} party;

static void *produce(void *arg) {
  party *p = arg;
  buffer *b = p->buf;
  for (long i = 1; i <= b->per_producer; i++) {
    long item = i * PRODUCERS + p->id;
    if (concur_lock_acquire(b->lock, CONCUR_FOREVER) != 0) {
      p->errors++;
      return NULL;
    }
    while (b->count == SLOTS) {
      if (concur_condition_wait(b->not_full, CONCUR_FOREVER) != 0) {
        p->errors++;
      }
    }
    b->items[(b->head + b->count) % SLOTS] = item;
    b->count++;
    p->sum += item;
    p->count++;
    if (concur_condition_notify(b->not_empty, 1) != 0) {
      p->errors++;
    }
    if (concur_lock_release(b->lock) != 0) {
      p->errors++;
    }
  }
  if (concur_lock_acquire(b->lock, CONCUR_FOREVER) == 0) {
    b->producers_left--;
    /* Consumers waiting on an empty buffer must see the end. */
    if (concur_condition_notify_all(b->not_empty) != 0) {
      p->errors++;
    }
    if (concur_lock_release(b->lock) != 0) {
      p->errors++;
    }
  }
  return NULL;
}

static void *consume(void *arg) {
  party *p = arg;
  buffer *b = p->buf;
  for (;;) {
    if (concur_lock_acquire(b->lock, CONCUR_FOREVER) != 0) {
      p->errors++;
      return NULL;
    }
    while (b->count == 0 && b->producers_left > 0) {
      if (concur_condition_wait(b->not_empty, CONCUR_FOREVER) != 0) {
        p->errors++;
      }
    }
    if (b->count == 0) {
      (void)concur_lock_release(b->lock);
      return NULL;
    }
    p->sum += b->items[b->head];
    p->count++;
    b->head = (b->head + 1) % SLOTS;
    b->count--;
    if (concur_condition_notify(b->not_full, 1) != 0) {
      p->errors++;
    }
    if (concur_lock_release(b->lock) != 0) {
      p->errors++;
    }
  }
}

START_TEST(CND_06_bounded_buffer_with_two_conditions_on_one_lock) {
  buffer b = {.producers_left = PRODUCERS, .per_producer = rounds(10000)};
  ck_assert_rc(concur_lock_new(&b.lock), 0);
  ck_assert_rc(concur_condition_new_with_lock(&b.not_empty, b.lock), 0);
  ck_assert_rc(concur_condition_new_with_lock(&b.not_full, b.lock), 0);
  party p[PRODUCERS + CONSUMERS];
  pthread_t t[PRODUCERS + CONSUMERS];
  for (int i = 0; i < PRODUCERS + CONSUMERS; i++) {
    p[i] = (party){.buf = &b, .id = i};
    t[i] = spawn(i < PRODUCERS ? produce : consume, &p[i]);
  }
  long produced = 0;
  long consumed = 0;
  long produced_n = 0;
  long consumed_n = 0;
  for (int i = 0; i < PRODUCERS + CONSUMERS; i++) {
    pthread_join(t[i], NULL);
    ck_assert_int_eq(p[i].errors, 0);
    if (i < PRODUCERS) {
      produced += p[i].sum;
      produced_n += p[i].count;
    } else {
      consumed += p[i].sum;
      consumed_n += p[i].count;
    }
  }
  ck_assert_int_eq(produced_n, PRODUCERS * b.per_producer);
  ck_assert_int_eq(consumed_n, produced_n);
  ck_assert_int_eq(consumed, produced);
  concur_condition_free(b.not_empty);
  concur_condition_free(b.not_full);
  concur_lock_free(b.lock);
}
END_TEST

/* ---- tickets for waiters with random timeouts ------------------------------
 */

#define TICKET_WAITERS 3

typedef struct tickets {
  concur_condition *cond;
  long available; /* guarded by the condition's lock */
  long issued_total;
  bool done; /* guarded: no more tickets will come */
} tickets;

typedef struct ticket_waiter {
  tickets *tk;
  uint64_t rng;
  long taken;
  long timeouts;
  int errors;
} ticket_waiter;

static bool ticket_or_done(void *arg) {
  tickets *tk = arg;
  return tk->available > 0 || tk->done;
}

static void *take_tickets(void *arg) {
  ticket_waiter *w = arg;
  tickets *tk = w->tk;
  if (concur_condition_acquire(tk->cond, CONCUR_FOREVER) != 0) {
    w->errors++;
    return NULL;
  }
  for (;;) {
    int64_t timeout = (int64_t)(harness_rand(&w->rng) % 200000); /* 0.2 ms */
    int rc = concur_condition_wait_for(tk->cond, ticket_or_done, tk, timeout);
    if (rc == CONCUR_ETIMEDOUT) {
      w->timeouts++;
      continue;
    }
    if (rc != 0) {
      w->errors++;
      break;
    }
    if (tk->available > 0) {
      tk->available--;
      w->taken++;
    } else {
      break; /* done and nothing left */
    }
  }
  if (concur_condition_release(tk->cond) != 0) {
    w->errors++;
  }
  return NULL;
}

START_TEST(CND_06_tickets_reach_waiters_with_random_timeouts) {
  tickets tk = {0};
  ck_assert_rc(concur_condition_new(&tk.cond), 0);
  uint64_t seed = harness_seed();
  ticket_waiter w[TICKET_WAITERS];
  pthread_t t[TICKET_WAITERS];
  for (int i = 0; i < TICKET_WAITERS; i++) {
    w[i] =
        (ticket_waiter){.tk = &tk, .rng = seed ^ (0x9E37u * (uint64_t)(i + 1))};
    t[i] = spawn(take_tickets, &w[i]);
  }
  uint64_t rng = seed | 1;
  long n = rounds(5000);
  for (long i = 0; i < n; i++) {
    ck_assert_rc(concur_condition_acquire(tk.cond, CONCUR_FOREVER), 0);
    tk.available++;
    tk.issued_total++;
    if (harness_rand(&rng) % 4 == 0) {
      ck_assert_rc(concur_condition_notify_all(tk.cond), 0);
    } else {
      ck_assert_rc(concur_condition_notify(tk.cond, 1), 0);
    }
    ck_assert_rc(concur_condition_release(tk.cond), 0);
  }
  ck_assert_rc(concur_condition_acquire(tk.cond, CONCUR_FOREVER), 0);
  tk.done = true;
  ck_assert_rc(concur_condition_notify_all(tk.cond), 0);
  ck_assert_rc(concur_condition_release(tk.cond), 0);
  long taken = 0;
  for (int i = 0; i < TICKET_WAITERS; i++) {
    pthread_join(t[i], NULL);
    ck_assert_int_eq(w[i].errors, 0);
    taken += w[i].taken;
  }
  ck_assert_int_eq(taken, n);
  ck_assert_int_eq(tk.available, 0);
  concur_condition_free(tk.cond);
}
END_TEST

Suite *concur_test_suite(void) {
  Suite *s = suite_create("condition_stress");
  TCase *tc_pingpong = harness_tcase("pingpong", 120);
  tcase_add_test(tc_pingpong, CND_06_pingpong_loses_no_wakeup);
  suite_add_tcase(s, tc_pingpong);
  TCase *tc_buffer = harness_tcase("buffer", 120);
  tcase_add_test(tc_buffer,
                 CND_06_bounded_buffer_with_two_conditions_on_one_lock);
  suite_add_tcase(s, tc_buffer);
  TCase *tc_tickets = harness_tcase("tickets", 120);
  tcase_add_test(tc_tickets, CND_06_tickets_reach_waiters_with_random_timeouts);
  suite_add_tcase(s, tc_tickets);
  return s;
}
