/*
 * Runs one test binary's suite with Check in fork mode and provides the
 * leak-checking fixture, timing slack, scale and seed.
 */
#include "harness.h"

#include <dirent.h>
#include <inttypes.h>
#include <pthread.h>
#include <sched.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static int count_entries(const char *path) {
  DIR *dir = opendir(path);
  if (dir == NULL) {
    return -1;
  }
  int n = 0;
  struct dirent *e;
  while ((e = readdir(dir)) != NULL) {
    if (e->d_name[0] != '.') {
      n++;
    }
  }
  closedir(dir);
  return n;
}

/* A thread that pthread_join has already reaped can linger in
 * /proc/self/task for a moment in the exiting (X) or zombie (Z) state: count
 * only the threads that can still run. */
static bool task_is_live(const char *tid) {
  char path[64];
  snprintf(path, sizeof path, "/proc/self/task/%s/stat", tid);
  FILE *f = fopen(path, "r");
  if (f == NULL) {
    return false; /* gone between readdir and open */
  }
  char buf[512];
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  buf[n] = '\0';
  const char *paren = strrchr(buf, ')'); /* the name may contain spaces */
  char state = paren != NULL && paren[1] == ' ' ? paren[2] : '?';
  return state != 'Z' && state != 'X';
}

static int count_live_threads(void) {
  DIR *dir = opendir("/proc/self/task");
  if (dir == NULL) {
    return -1;
  }
  int n = 0;
  struct dirent *e;
  while ((e = readdir(dir)) != NULL) {
    if (e->d_name[0] != '.' && task_is_live(e->d_name)) {
      n++;
    }
  }
  closedir(dir);
  return n;
}

int harness_thread_count(void) {
  return count_live_threads();
}

/* The count includes the fd opendir itself holds while reading. */
int harness_fd_count(void) {
  return count_entries("/proc/self/fd");
}

static int baseline_threads;
static int baseline_fds;

static void *record_tid(void *arg) {
  *(pid_t *)arg = (pid_t)syscall(SYS_gettid);
  return NULL;
}

/*
 * Waits, bounded, for a condition on /proc that no kernel event announces:
 * yields first (the usual case takes microseconds), then 1 ms naps up to
 * HARNESS_LONG_NS for a loaded or sanitized run. Only a failing case ever
 * waits that long. This is the harness's only timed wait on a condition and
 * it never decides a test's outcome alone: the caller re-checks and reports.
 */
static bool settle(bool (*done)(void *), void *arg) {
  for (int i = 0; i < 1000; i++) {
    if (done(arg)) {
      return true;
    }
    sched_yield();
  }
  int64_t end = harness_now_ns() + HARNESS_LONG_NS;
  while (!done(arg)) {
    if (harness_now_ns() > end) {
      return false;
    }
    nanosleep(&(struct timespec){0, 1000000}, NULL);
  }
  return true;
}

static bool count_is(void *arg) {
  return harness_thread_count() == *(int *)arg;
}

bool harness_await_thread_count(int n) {
  return settle(count_is, &n);
}

void harness_gate_wait(harness_gate *g) {
  while (atomic_load(&g->open) == 0) {
    (void)concur__park(&g->open, 0, CONCUR__NO_DEADLINE, g);
  }
}

void harness_gate_open(harness_gate *g) {
  atomic_store(&g->open, 1);
  concur__unpark(&g->open, INT32_MAX);
}

static bool task_gone(pid_t tid) {
  char name[32];
  snprintf(name, sizeof name, "%d", (int)tid);
  return !task_is_live(name);
}

static bool tid_gone(void *arg) {
  return task_gone(*(pid_t *)arg);
}

static bool threads_back(void *arg) {
  (void)arg;
  return harness_thread_count() <= baseline_threads;
}

static void leak_setup(void) {
  /* Sanitizer runtimes start a helper thread of their own at the first
   * pthread_create; start and join one thread so the baseline includes it,
   * and let that thread leave the kernel's list (bounded yields) so the
   * baseline does not count it. */
  pthread_t t;
  pid_t tid = 0;
  if (pthread_create(&t, NULL, record_tid, &tid) == 0) {
    pthread_join(t, NULL);
    (void)settle(tid_gone, &tid);
  }
  baseline_threads = harness_thread_count();
  baseline_fds = harness_fd_count();
}

static void leak_teardown(void) {
  /* An exiting thread may still be on its way out of the kernel after its
   * joiner returned. */
  (void)settle(threads_back, NULL);
  int threads = harness_thread_count();
  int fds = harness_fd_count();
  ck_assert_msg(threads == baseline_threads,
                "the case left threads behind: %d before, %d after",
                baseline_threads, threads);
  ck_assert_msg(fds == baseline_fds,
                "the case left fds behind: %d before, %d after", baseline_fds,
                fds);
}

TCase *harness_tcase(const char *name, double timeout_s) {
  TCase *tc = tcase_create(name);
  tcase_set_timeout(tc, timeout_s);
  tcase_add_checked_fixture(tc, leak_setup, leak_teardown);
  return tc;
}

static long env_long(const char *name, long fallback) {
  const char *s = getenv(name);
  if (s == NULL || *s == '\0') {
    return fallback;
  }
  long v = strtol(s, NULL, 10);
  return v > 0 ? v : fallback;
}

int64_t harness_slack(void) {
  return env_long("CONCUR_TEST_SLACK", 1);
}

long harness_scale(void) {
  return env_long("CONCUR_TEST_SCALE", 1);
}

int64_t harness_now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static uint64_t the_seed;

uint64_t harness_seed(void) {
  return the_seed;
}

uint64_t harness_rand(uint64_t *state) {
  uint64_t x = *state;
  x ^= x >> 12;
  x ^= x << 25;
  x ^= x >> 27;
  *state = x;
  return x * 0x2545F4914F6CDD1DULL;
}

int main(void) {
  const char *s = getenv("CONCUR_TEST_SEED");
  the_seed = s != NULL && *s != '\0'
                 ? strtoull(s, NULL, 0)
                 : (uint64_t)harness_now_ns() ^ ((uint64_t)getpid() << 32);
  if (the_seed == 0) {
    the_seed = 1;
  }
  printf("seed: CONCUR_TEST_SEED=%" PRIu64 "\n", the_seed);
  fflush(stdout);

  SRunner *runner = srunner_create(concur_test_suite());
  srunner_set_fork_status(runner, CK_FORK);
  srunner_run_all(runner, CK_NORMAL);
  int failed = srunner_ntests_failed(runner);
  srunner_free(runner);
  return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
