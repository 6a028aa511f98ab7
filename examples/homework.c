/*
 * The seed article's CPU-bound scenario in C: a "personalised homework
 * recommendation" for 3,000 users, computed sequentially and then on a
 * thread pool with concur_executor_map, with both times, the speedup and a
 * checksum that must match (the program exits 1 if it does not). Then the
 * article's two idioms: map gives results in input order, as_completed in
 * completion order.
 *
 * The data set is generated, so every run sees the same one: a bank of
 * questions, each with a difficulty and a weight per topic, and for each
 * user a deterministic pseudo-random answer history (seeded by the user's
 * id) from which the user's mastery of each topic is estimated. A user's
 * recommendation is the few questions whose predicted chance of success is
 * closest to 70 % (hard enough to learn from, easy enough to succeed).
 *
 * Run: ./build/<preset>/examples/homework
 */
#define _POSIX_C_SOURCE 200809L /* clock_gettime, nanosleep */

#include "concur/executor.h"
#include "concur/future.h"
#include "concur/thread_pool.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define USERS 3000
#define QUESTIONS 12000
#define TOPICS 32
#define HISTORY 400
#define PICKS 5

typedef struct question {
  float difficulty;
  float weight[TOPICS]; /* how much each topic matters, summing to 1 */
} question;

typedef struct recommendation {
  int user;
  int picks[PICKS];
  float fit[PICKS]; /* |predicted success - 0.7|, smaller is better */
} recommendation;

static question bank[QUESTIONS];

/* splitmix64: a tiny deterministic generator, one stream per seed. */
static uint64_t next_random(uint64_t *state) {
  uint64_t z = (*state += 0x9E3779B97F4A7C15ULL);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

static float uniform(uint64_t *state) {
  return (float)(next_random(state) >> 40) / (float)(1u << 24);
}

static void make_bank(void) {
  uint64_t s = 2024;
  for (int q = 0; q < QUESTIONS; q++) {
    float total = 0;
    for (int t = 0; t < TOPICS; t++) {
      float w = uniform(&s);
      w = w * w * w; /* most questions lean on a few topics */
      bank[q].weight[t] = w;
      total += w;
    }
    for (int t = 0; t < TOPICS; t++) {
      bank[q].weight[t] /= total;
    }
    bank[q].difficulty = uniform(&s) * 2.0f - 1.0f;
  }
}

/* A smooth squashing of x into (0, 1) that needs no libm. */
static float squash(float x) {
  float a = x < 0 ? -x : x;
  return 0.5f + 0.5f * x / (1.0f + a);
}

/* The CPU-bound work for one user: estimate mastery from the history,
 * then score every question of the bank. */
static void recommend(int user, recommendation *out) {
  uint64_t s = 0xC0FFEEULL ^ ((uint64_t)user * 0x100000001B3ULL);
  float mastery[TOPICS] = {0};
  float seen[TOPICS] = {0};
  float talent = uniform(&s) * 1.5f - 0.75f;
  for (int h = 0; h < HISTORY; h++) {
    const question *q = &bank[next_random(&s) % QUESTIONS];
    float skill = talent;
    for (int t = 0; t < TOPICS; t++) {
      skill += q->weight[t] * (mastery[t] / (1.0f + seen[t]));
    }
    bool correct = uniform(&s) < squash(2.0f * (skill - q->difficulty));
    for (int t = 0; t < TOPICS; t++) {
      mastery[t] += q->weight[t] * (correct ? 1.0f : -1.0f);
      seen[t] += q->weight[t];
    }
  }
  for (int t = 0; t < TOPICS; t++) {
    mastery[t] = talent + mastery[t] / (1.0f + seen[t]);
  }
  out->user = user;
  for (int k = 0; k < PICKS; k++) {
    out->picks[k] = -1;
    out->fit[k] = 2.0f;
  }
  for (int q = 0; q < QUESTIONS; q++) {
    float skill = 0;
    for (int t = 0; t < TOPICS; t++) {
      skill += bank[q].weight[t] * mastery[t];
    }
    float fit = squash(2.0f * (skill - bank[q].difficulty)) - 0.7f;
    fit = fit < 0 ? -fit : fit;
    if (fit < out->fit[PICKS - 1]) { /* insert into the sorted picks */
      int k = PICKS - 1;
      while (k > 0 && out->fit[k - 1] > fit) {
        out->fit[k] = out->fit[k - 1];
        out->picks[k] = out->picks[k - 1];
        k--;
      }
      out->fit[k] = fit;
      out->picks[k] = q;
    }
  }
}

/* The task form: arg is the user's slot, which becomes the result. */
static int recommend_task(void *arg, void **result) {
  recommendation *r = arg;
  recommend(r->user, r);
  *result = r;
  return 0;
}

static uint64_t checksum(const recommendation *recs) {
  uint64_t h = 0xCBF29CE484222325ULL; /* FNV-1a over users and picks */
  for (int u = 0; u < USERS; u++) {
    for (int k = 0; k < PICKS; k++) {
      uint64_t v = (uint64_t)recs[u].user * 7919u + (uint64_t)recs[u].picks[k];
      for (int b = 0; b < 8; b++) {
        h = (h ^ ((v >> (8 * b)) & 0xFF)) * 0x100000001B3ULL;
      }
    }
  }
  return h;
}

static double seconds_since(const struct timespec *t0) {
  struct timespec t1;
  clock_gettime(CLOCK_MONOTONIC, &t1);
  return (double)(t1.tv_sec - t0->tv_sec) +
         (double)(t1.tv_nsec - t0->tv_nsec) / 1e9;
}

/* ---- the two idioms ---------------------------------------------------- */

static int nap_task(void *arg, void **result) {
  long ms = (long)(intptr_t)arg;
  struct timespec d = {0, ms * 1000000L};
  while (nanosleep(&d, &d) != 0) {
  }
  *result = arg;
  return 0;
}

static int idioms(concur_executor *pool) {
  void *naps[5] = {(void *)50, (void *)10, (void *)40, (void *)20, (void *)30};
  void *results[5];
  printf("\nmap keeps input order (tasks nap 50, 10, 40, 20, 30 ms):\n ");
  if (concur_executor_map(pool, nap_task, naps, 5, results, NULL, NULL) != 0) {
    return 1;
  }
  for (int i = 0; i < 5; i++) {
    printf(" %ld", (long)(intptr_t)results[i]);
  }
  printf("\nas_completed gives completion order:\n ");
  concur_future *fs[5];
  for (int i = 0; i < 5; i++) {
    if (concur_executor_submit(pool, nap_task, naps[i], &fs[i]) != 0) {
      return 1;
    }
  }
  concur_as_completed *it = NULL;
  int rc = concur_as_completed_new(&it, fs, 5, CONCUR_FOREVER);
  for (int i = 0; i < 5; i++) {
    concur_future_unref(fs[i]); /* the iterator holds its own references */
  }
  if (rc != 0) {
    return 1;
  }
  concur_future *f = NULL;
  while (concur_as_completed_next(it, &f) == 1) {
    void *r = NULL;
    if (concur_future_result(f, CONCUR_NOWAIT, &r) == 0) {
      printf(" %ld", (long)(intptr_t)r);
    }
    concur_future_unref(f);
  }
  concur_as_completed_free(it);
  printf("\n");
  return 0;
}

int main(void) {
  static recommendation seq[USERS], par[USERS];
  static void *args[USERS], *results[USERS];
  make_bank();

  struct timespec t0;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  for (int u = 0; u < USERS; u++) {
    recommend(u, &seq[u]);
  }
  double t_seq = seconds_since(&t0);

  concur_executor *pool = NULL;
  if (concur_thread_pool_new(&pool, NULL) != 0) {
    fprintf(stderr, "homework: could not make a thread pool\n");
    return 1;
  }
  for (int u = 0; u < USERS; u++) {
    par[u].user = u;
    args[u] = &par[u];
  }
  clock_gettime(CLOCK_MONOTONIC, &t0);
  int rc = concur_executor_map(pool, recommend_task, args, USERS, results, NULL,
                               NULL);
  double t_par = seconds_since(&t0);
  if (rc != 0) {
    fprintf(stderr, "homework: map failed: %s\n", concur_strerror(rc));
    concur_executor_free(pool);
    return 1;
  }

  uint64_t c_seq = checksum(seq), c_par = checksum(par);
  printf("personalised homework for %d users (%d questions, %d topics)\n",
         USERS, QUESTIONS, TOPICS);
  printf("  user 0 gets questions %d %d %d %d %d\n", seq[0].picks[0],
         seq[0].picks[1], seq[0].picks[2], seq[0].picks[3], seq[0].picks[4]);
  printf("  sequential:            %.3f s  checksum %016llx\n", t_seq,
         (unsigned long long)c_seq);
  printf("  thread pool (%d workers): %.3f s  checksum %016llx\n",
         concur_executor_parallelism(pool), t_par, (unsigned long long)c_par);
  printf("  speedup: %.2fx\n", t_seq / t_par);
  if (c_seq != c_par) {
    fprintf(stderr, "homework: checksums differ\n");
    concur_executor_free(pool);
    return 1;
  }
  rc = idioms(pool);
  concur_executor_free(pool);
  return rc;
}
