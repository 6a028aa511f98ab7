/*
 * LCK-08: timed waits run on CLOCK_MONOTONIC, so stepping the wall clock by
 * +1 h or -1 h during a 0.5 s timed acquire neither shortens nor stretches
 * it.
 *
 * The case re-executes this binary (/proc/self/exe) with libfaketime
 * preloaded, told to leave CLOCK_MONOTONIC alone and to re-read its offset
 * from a file on every call; CONCUR_LCK08_CHILD=1 in that environment makes
 * the same case run the measurement instead. In the child a second thread
 * waits until the main thread is blocked in its timed acquire, then steps
 * the wall clock by rewriting the offset file, and checks with time() that
 * the step took effect: a preload that did not take fails the case, it is
 * never skipped. The parent passes when the child's suite passed.
 *
 * Labelled "plain" by its name: the sanitizer runtimes refuse the preload.
 */
#include "harness.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define CHILD_ENV "CONCUR_LCK08_CHILD"
#define DEFAULT_LIBFAKETIME                                                    \
  "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1"
#define WAIT_NS 500000000LL
#define STEP_S 3600

extern char **environ;

/* Replaces the offset file in one step, so libfaketime never reads half. */
static int write_offset(const char *path, const char *offset) {
  char tmp[512];
  snprintf(tmp, sizeof tmp, "%s.new", path);
  FILE *f = fopen(tmp, "w");
  if (f == NULL) {
    return -1;
  }
  int rc = fprintf(f, "%s\n", offset) < 0 ? -1 : 0;
  if (fclose(f) != 0) {
    rc = -1;
  }
  return rc == 0 ? rename(tmp, path) : rc;
}

/* ---- the child: measure under libfaketime ----------------------------------
 */

typedef struct stepper {
  const char *path;
  concur_lock *first; /* the main thread waits here while the clock jumps +1h */
  concur_lock *second; /* ...and here while it jumps back to -1h */
  int rc;
  long long forward_s; /* the wall-clock jumps time() saw */
  long long backward_s;
} stepper;

static void *step_the_wall_clock(void *arg) {
  stepper *s = arg;
  s->rc = concur__test_await_parked(s->first, 1, HARNESS_LONG_NS);
  if (s->rc != 0) {
    return NULL;
  }
  time_t before = time(NULL);
  s->rc = write_offset(s->path, "+3600");
  s->forward_s = (long long)(time(NULL) - before);
  if (s->rc != 0) {
    return NULL;
  }
  s->rc = concur__test_await_parked(s->second, 1, HARNESS_LONG_NS);
  if (s->rc != 0) {
    return NULL;
  }
  before = time(NULL);
  s->rc = write_offset(s->path, "-3600");
  s->backward_s = (long long)(time(NULL) - before);
  return NULL;
}

static void measure_in_child(void) {
  const char *path = getenv("FAKETIME_TIMESTAMP_FILE");
  ck_assert_ptr_nonnull(path);
  stepper s = {.path = path};
  ck_assert_rc(concur_lock_new(&s.first), 0);
  ck_assert_rc(concur_lock_new(&s.second), 0);
  ck_assert_rc(concur_lock_acquire(s.first, CONCUR_NOWAIT), 0);
  ck_assert_rc(concur_lock_acquire(s.second, CONCUR_NOWAIT), 0);
  pthread_t t;
  ck_assert_rc(concur__thread_spawn(&t, 0, true, step_the_wall_clock, &s), 0);

  /* The wall clock jumps forward an hour during this wait... */
  int64_t t0 = harness_now_ns();
  int rc_forward = concur_lock_acquire(s.first, WAIT_NS);
  int64_t forward_ns = harness_now_ns() - t0;
  /* ...and back two hours during this one. */
  t0 = harness_now_ns();
  int rc_backward = concur_lock_acquire(s.second, WAIT_NS);
  int64_t backward_ns = harness_now_ns() - t0;
  pthread_join(t, NULL);

  ck_assert_rc(s.rc, 0);
  ck_assert_msg(s.forward_s >= STEP_S - 60 && s.forward_s <= STEP_S + 60,
                "the preload did not move the wall clock: time() moved %lld s",
                s.forward_s);
  ck_assert_msg(
      s.backward_s >= -2 * STEP_S - 60 && s.backward_s <= -2 * STEP_S + 60,
      "the wall clock did not step back: time() moved %lld s", s.backward_s);
  ck_assert_rc(rc_forward, CONCUR_ETIMEDOUT);
  ck_assert_rc(rc_backward, CONCUR_ETIMEDOUT);
  /* Never early, never an hour late: bounds of [0.5 s, 5 s]. */
  ck_assert_int_ge(forward_ns, WAIT_NS);
  ck_assert_int_le(forward_ns, 10 * WAIT_NS);
  ck_assert_int_ge(backward_ns, WAIT_NS);
  ck_assert_int_le(backward_ns, 10 * WAIT_NS);
  ck_assert_rc(concur_lock_release(s.first), 0);
  ck_assert_rc(concur_lock_release(s.second), 0);
  concur_lock_free(s.first);
  concur_lock_free(s.second);
}

/* ---- the parent: run the child under libfaketime
 * ----------------------------- */

static bool is_ours(const char *entry) {
  static const char *const names[] = {"LD_PRELOAD=", "FAKETIME", CHILD_ENV};
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
    if (strncmp(entry, names[i], strlen(names[i])) == 0) {
      return true;
    }
  }
  return false;
}

static void run_child_under_faketime(void) {
  const char *lib = getenv("CONCUR_LIBFAKETIME");
  lib = lib != NULL && *lib != '\0' ? lib : DEFAULT_LIBFAKETIME;
  ck_assert_msg(access(lib, R_OK) == 0, "libfaketime not found at %s", lib);

  char path[] = "/tmp/concur-lck08-XXXXXX";
  int fd = mkstemp(path);
  ck_assert_int_ge(fd, 0);
  ck_assert_int_eq(close(fd), 0);
  ck_assert_int_eq(write_offset(path, "+0"), 0);

  /* The environment is built before fork: the child only calls execve. */
  size_t n = 0;
  while (environ[n] != NULL) {
    n++;
  }
  char **env = calloc(n + 6, sizeof *env);
  ck_assert_ptr_nonnull(env);
  char preload[600];
  char stamp[128];
  snprintf(preload, sizeof preload, "LD_PRELOAD=%s", lib);
  snprintf(stamp, sizeof stamp, "FAKETIME_TIMESTAMP_FILE=%s", path);
  size_t k = 0;
  for (size_t i = 0; i < n; i++) {
    if (!is_ours(environ[i])) {
      env[k++] = environ[i];
    }
  }
  env[k++] = preload;
  env[k++] = stamp;
  env[k++] = "FAKETIME_DONT_FAKE_MONOTONIC=1";
  env[k++] = "FAKETIME_NO_CACHE=1";
  env[k++] = CHILD_ENV "=1";
  env[k] = NULL;
  char *argv[] = {"/proc/self/exe", NULL};

  fflush(NULL);
  pid_t pid = fork();
  if (pid == 0) {
    execve("/proc/self/exe", argv, env);
    _exit(127);
  }
  free(env);
  int status = 0;
  pid_t waited = pid > 0 ? waitpid(pid, &status, 0) : -1;
  unlink(path);
  ck_assert_int_gt(pid, 0);
  ck_assert_int_eq(waited, pid);
  ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
                "the child under libfaketime failed (status %#x); its output "
                "is above",
                status);
}

START_TEST(LCK_08_wall_clock_steps_do_not_change_a_timed_acquire) {
  const char *mode = getenv(CHILD_ENV);
  if (mode != NULL && strcmp(mode, "1") == 0) {
    measure_in_child();
  } else {
    run_child_under_faketime();
  }
}
END_TEST

Suite *concur_test_suite(void) {
  Suite *s = suite_create("lock_clock");
  TCase *tc = harness_tcase("lock_clock", 60);
  tcase_add_test(tc, LCK_08_wall_clock_steps_do_not_change_a_timed_acquire);
  suite_add_tcase(s, tc);
  return s;
}
