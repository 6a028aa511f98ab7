/*
 * Threads and fork (label "fork": excluded from TSan, which kills a child
 * that starts threads after a multithreaded fork). THR-06 (join of
 * non-daemon threads at exit), THR-13 (fork from a non-main thread), THR-14
 * (many threads forking at once), and a once across fork.
 *
 * Every child is reaped and every fd closed; a child arms alarm() so that a
 * hang fails the test (the parent sees SIGALRM) instead of lingering.
 */
#include "harness.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static void sleep_ms(int ms) {
  struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
}

/* The child's safety net: a hang ends in SIGALRM, seen by the parent. The
 * default action is restored first: Check's runner handles SIGALRM itself. */
static void child_alarm(void) {
  signal(SIGALRM, SIG_DFL);
  alarm((unsigned)(20 * harness_slack()));
}

static pid_t fork_flushed(void) {
  fflush(stdout);
  fflush(stderr);
  return fork();
}

static int wait_child(pid_t pid) {
  int status = 0;
  pid_t r;
  do {
    r = waitpid(pid, &status, 0);
  } while (r < 0 && errno == EINTR);
  ck_assert_int_eq(r, pid);
  return status;
}

/* Reads the pipe to its end (every writer gone) into buf. */
static size_t read_all(int fd, char *buf, size_t len) {
  size_t n = 0;
  while (n < len - 1) {
    ssize_t r = read(fd, buf + n, len - 1 - n);
    if (r < 0 && errno == EINTR) {
      continue;
    }
    if (r <= 0) {
      break;
    }
    n += (size_t)r;
  }
  buf[n] = '\0';
  return n;
}

/* ---- THR-06 ------------------------------------------------------------- */

/* Opened by an atexit handler registered after the first start, so it runs
 * before concur's join: the marker threads know exit has begun. */
static harness_gate exit_began;
static int marker_fd = -1;

static void signal_exit_began(void) {
  harness_gate_open(&exit_began);
}

static int write_marker_after_exit_began(void *arg, void **result) {
  (void)result;
  harness_gate_wait(&exit_began);
  /* Long enough that an exit that does not wait would end us first. */
  sleep_ms(150);
  char c = (char)(intptr_t)arg;
  ssize_t w = write(marker_fd, &c, 1);
  return w == 1 ? 0 : 1;
}

static int start_a_marker_thread(void *arg, void **result) {
  (void)result;
  concur_thread *inner;
  int rc = concur_thread_run(&inner, write_marker_after_exit_began, arg, NULL);
  if (rc != 0) {
    return 1;
  }
  concur_thread_free(inner); /* detached: only the at-exit join waits */
  return 0;
}

static _Atomic int daemons_spinning;

static int busy_daemon(void *arg, void **result) {
  (void)arg;
  (void)result;
  atomic_fetch_add(&daemons_spinning, 1);
  /* Busy until the process ends, using concur while exit runs. */
  for (;;) {
    (void)concur_thread_active_count();
    (void)concur_thread_get_ident();
    sched_yield();
  }
  return 0;
}

START_TEST(THR_06_non_daemon_threads_joined_at_exit_daemons_not) {
  int fds[2];
  ck_assert_int_eq(pipe(fds), 0);
  pid_t pid = fork_flushed();
  ck_assert_int_ge(pid, 0);
  if (pid == 0) {
    child_alarm();
    close(fds[0]);
    marker_fd = fds[1];
    concur_thread *a;
    concur_thread *b;
    if (concur_thread_run(&a, write_marker_after_exit_began,
                          (void *)(intptr_t)'A', NULL) != 0 ||
        concur_thread_run(&b, start_a_marker_thread, (void *)(intptr_t)'C',
                          NULL) != 0) {
      _exit(2);
    }
    /* B has started C by the time it is joined; C outlives B. */
    if (concur_thread_join(b, CONCUR_FOREVER, NULL) != 0) {
      _exit(3);
    }
    concur_thread_free(b);
    concur_thread_options opts = CONCUR_THREAD_OPTIONS_INIT;
    opts.daemon = true;
    for (int i = 0; i < 40; i++) {
      concur_thread *d;
      if (concur_thread_run(&d, busy_daemon, NULL, &opts) != 0) {
        _exit(4);
      }
      concur_thread_free(d);
    }
    while (atomic_load(&daemons_spinning) < 40) {
      sched_yield();
    }
    if (atexit(signal_exit_began) != 0) {
      _exit(5);
    }
    (void)a; /* never joined nor freed: the exit path joins it */
    exit(0);
  }
  close(fds[1]);
  char buf[64];
  read_all(fds[0], buf, sizeof buf);
  close(fds[0]);
  int status = wait_child(pid);
  ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
                "child status 0x%x", status);
  ck_assert_msg(strchr(buf, 'A') != NULL, "markers: '%s'", buf);
  ck_assert_msg(strchr(buf, 'C') != NULL, "markers: '%s'", buf);
  ck_assert_uint_eq(strlen(buf), 2);
}
END_TEST

static harness_gate never;

static int block_forever(void *arg, void **result) {
  (void)arg;
  (void)result;
  harness_gate_wait(&never);
  return 0;
}

static int block_on(void *arg, void **result) {
  (void)result;
  harness_gate_wait(arg);
  return 0;
}

static int call_exit(void *arg, void **result) {
  (void)result;
  exit((int)(intptr_t)arg);
}

START_TEST(THR_06_concur_thread_calling_exit_skips_the_join) {
  pid_t pid = fork_flushed();
  ck_assert_int_ge(pid, 0);
  if (pid == 0) {
    child_alarm();
    concur_thread *blocked;
    concur_thread *exiter;
    if (concur_thread_run(&blocked, block_forever, NULL, NULL) != 0) {
      _exit(2);
    }
    if (concur_thread_run(&exiter, call_exit, (void *)(intptr_t)7, NULL) != 0) {
      _exit(3);
    }
    harness_gate_wait(&never); /* the process ends through the exiter */
    _exit(4);
  }
  int status = wait_child(pid);
  ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 7,
                "child status 0x%x", status);
}
END_TEST

START_TEST(THR_06_blocked_daemon_thread_does_not_delay_exit) {
  pid_t pid = fork_flushed();
  ck_assert_int_ge(pid, 0);
  if (pid == 0) {
    child_alarm();
    concur_thread_options opts = CONCUR_THREAD_OPTIONS_INIT;
    opts.daemon = true;
    static harness_gate daemons_stay; /* never opened */
    static harness_gate release_n;
    concur_thread *d;
    if (concur_thread_run(&d, block_on, &daemons_stay, &opts) != 0) {
      _exit(2);
    }
    concur_thread *n;
    if (concur_thread_run(&n, block_on, &release_n, NULL) != 0) {
      _exit(3);
    }
    /* A thread made daemon before start is not waited for either. */
    concur_thread *m;
    if (concur_thread_new(&m, block_on, &daemons_stay, NULL) != 0 ||
        concur_thread_set_daemon(m, true) != 0 || concur_thread_start(m) != 0) {
      _exit(4);
    }
    /* n is non-daemon: let it end; exit must not wait for d and m. */
    harness_gate_open(&release_n);
    exit(0);
  }
  int status = wait_child(pid);
  ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
                "child status 0x%x", status);
}
END_TEST

/* A concur thread forks; in the child it is the main thread, so its exit()
 * does join the non-daemon threads it starts there. */
static _Atomic bool marker_written;
static bool in_exit_child;

static int write_marker_and_flag(void *arg, void **result) {
  int rc = write_marker_after_exit_began(arg, result);
  atomic_store(&marker_written, true);
  return rc;
}

/*
 * An atexit handler registered before the first start: it runs after
 * concur's join, so in the child the marker thread must have finished. It
 * ends the child there with _exit: the child was forked from a non-main
 * thread, and LeakSanitizer's exit check would take the Check runner's
 * memory, reachable only from the vanished main thread's stack, for leaks.
 */
static void after_concur_join(void) {
  if (in_exit_child) {
    _exit(atomic_load(&marker_written) ? 0 : 8);
  }
}
typedef struct fork_in_thread {
  int fd;
  int status;
} fork_in_thread;

static int fork_then_exit_in_child(void *arg, void **result) {
  (void)result;
  fork_in_thread *f = arg;
  pid_t pid = fork_flushed();
  if (pid < 0) {
    return 1;
  }
  if (pid == 0) {
    child_alarm();
    marker_fd = f->fd;
    concur_thread *m;
    if (concur_thread_run(&m, write_marker_and_flag, (void *)(intptr_t)'M',
                          NULL) != 0 ||
        atexit(signal_exit_began) != 0) {
      _exit(2);
    }
    in_exit_child = true;
    exit(0);
  }
  int status;
  pid_t r;
  do {
    r = waitpid(pid, &status, 0);
  } while (r < 0 && errno == EINTR);
  f->status = r == pid ? status : -1;
  return 0;
}

START_TEST(THR_06_exit_in_a_child_forked_by_a_concur_thread_joins) {
  int fds[2];
  ck_assert_int_eq(pipe(fds), 0);
  fork_in_thread f = {fds[1], -1};
  /* Registered before the first start, so it runs after concur's join. */
  ck_assert_int_eq(atexit(after_concur_join), 0);
  concur_thread *t;
  ck_assert_rc(concur_thread_run(&t, fork_then_exit_in_child, &f, NULL), 0);
  ck_assert_rc(concur_thread_join(t, CONCUR_FOREVER, NULL), 0);
  concur_thread_free(t);
  close(fds[1]);
  char buf[16];
  read_all(fds[0], buf, sizeof buf);
  close(fds[0]);
  ck_assert_msg(WIFEXITED(f.status) && WEXITSTATUS(f.status) == 0,
                "child status 0x%x", f.status);
  ck_assert_str_eq(buf, "M");
}
END_TEST

/* ---- THR-13 ------------------------------------------------------------- */

typedef struct forker {
  concur_thread *other; /* running in the parent, absent in the child */
  concur_thread *self;
  int status;
} forker;

/* Runs in the child; returns 0 or the number of the first failed check. */
static int check_child_after_fork(forker *f) {
  if (harness_thread_count() != 1) {
    return 10;
  }
  if (concur_thread_active_count() != 1) {
    return 11;
  }
  if (concur_thread_is_alive(f->other)) {
    return 12;
  }
  if (concur_thread_join(f->other, CONCUR_NOWAIT, NULL) != 0) {
    return 13;
  }
  (void)concur_thread_native_id(f->other); /* must not hang */
  if (concur_thread_current() != f->self || !concur_thread_is_alive(f->self)) {
    return 14;
  }
  char name[CONCUR_THREAD_NAME_MAX + 1];
  if (concur_thread_current_name(name, sizeof name) < 0 ||
      strcmp(name, "forker") != 0) {
    return 15;
  }
  if (concur_thread_get_native_id() != (uint64_t)getpid() ||
      concur_thread_native_id(f->self) != (uint64_t)getpid()) {
    return 16;
  }
  /* The child can start and join threads: the registry lock was reset. */
  concur_thread *t;
  void *res = NULL;
  static harness_gate hold;
  if (concur_thread_run(&t, block_on, &hold, NULL) != 0) {
    return 17;
  }
  if (concur_thread_active_count() != 2) {
    return 18;
  }
  harness_gate_open(&hold);
  if (concur_thread_join(t, CONCUR_FOREVER, &res) != 0 || res != NULL) {
    return 19;
  }
  concur_thread_free(t);
  if (concur_thread_active_count() != 1 || !harness_await_thread_count(1)) {
    return 20;
  }
  concur_thread_free(f->other);
  return 0;
}

static int fork_from_thread(void *arg, void **result) {
  (void)result;
  forker *f = arg;
  pid_t pid = fork_flushed();
  if (pid < 0) {
    return 1;
  }
  if (pid == 0) {
    child_alarm();
    _exit(check_child_after_fork(f));
  }
  int status;
  pid_t r;
  do {
    r = waitpid(pid, &status, 0);
  } while (r < 0 && errno == EINTR);
  f->status = r == pid ? status : -1;
  return 0;
}

START_TEST(THR_13_fork_from_non_main_thread_child_sees_one_thread) {
  forker f = {NULL, NULL, -1};
  ck_assert_rc(concur_thread_run(&f.other, block_forever, NULL, NULL), 0);
  concur_thread_options opts = CONCUR_THREAD_OPTIONS_INIT;
  opts.name = "forker";
  ck_assert_rc(concur_thread_new(&f.self, fork_from_thread, &f, &opts), 0);
  ck_assert_rc(concur_thread_start(f.self), 0);
  ck_assert_rc(concur_thread_join(f.self, CONCUR_FOREVER, NULL), 0);
  ck_assert_msg(WIFEXITED(f.status) && WEXITSTATUS(f.status) == 0,
                "child status 0x%x (exit code = failed check)", f.status);
  /* The parent is untouched: the other thread still runs. */
  ck_assert(concur_thread_is_alive(f.other));
  harness_gate_open(&never);
  ck_assert_rc(concur_thread_join(f.other, CONCUR_FOREVER, NULL), 0);
  concur_thread_free(f.other);
  concur_thread_free(f.self);
}
END_TEST

/* ---- THR-14 ------------------------------------------------------------- */

typedef struct simultaneous {
  harness_gate *go;
  concur_local *local;
  int status;
} simultaneous;

static int child_work(concur_local *local) {
  char name[CONCUR_THREAD_NAME_MAX + 1];
  if (concur_thread_current_name(name, sizeof name) <= 0) {
    return 10;
  }
  if (concur_thread_get_ident() == 0) {
    return 11;
  }
  int v;
  if (concur_local_set(local, &v) != 0 || concur_local_get(local) != &v) {
    return 12;
  }
  if (concur_thread_active_count() != 1) {
    return 13;
  }
  return 0;
}

static int fork_at_once(void *arg, void **result) {
  (void)result;
  simultaneous *s = arg;
  int v;
  (void)concur_local_set(s->local, &v);
  harness_gate_wait(s->go);
  pid_t pid = fork_flushed();
  if (pid < 0) {
    return 1;
  }
  if (pid == 0) {
    child_alarm();
    _exit(child_work(s->local));
  }
  int status;
  pid_t r;
  do {
    r = waitpid(pid, &status, 0);
  } while (r < 0 && errno == EINTR);
  s->status = r == pid ? status : -1;
  return concur_local_get(s->local) == &v ? 0 : 2;
}

START_TEST(THR_14_sixteen_threads_fork_and_wait_at_once) {
  enum { N = 16 };
  harness_gate go = {0};
  concur_local *local;
  ck_assert_rc(concur_local_new(&local, NULL), 0);
  simultaneous s[N];
  concur_thread *t[N];
  for (int i = 0; i < N; i++) {
    s[i] = (simultaneous){&go, local, -1};
    ck_assert_rc(concur_thread_run(&t[i], fork_at_once, &s[i], NULL), 0);
  }
  ck_assert_rc(concur__test_await_parked(&go, N, HARNESS_LONG_NS), 0);
  harness_gate_open(&go);
  for (int i = 0; i < N; i++) {
    ck_assert_rc(concur_thread_join(t[i], CONCUR_FOREVER, NULL), 0);
    concur_thread_free(t[i]);
    ck_assert_msg(WIFEXITED(s[i].status) && WEXITSTATUS(s[i].status) == 0,
                  "child %d status 0x%x", i, s[i].status);
  }
  concur_local_free(local);
}
END_TEST

/* ---- once across fork --------------------------------------------------- */

typedef struct once_fork {
  concur_once once;
  harness_gate go;
  _Atomic int calls;
} once_fork;

static void once_blocking(void *arg) {
  once_fork *o = arg;
  atomic_fetch_add(&o->calls, 1);
  harness_gate_wait(&o->go);
}

static void once_counting(void *arg) {
  atomic_fetch_add(&((once_fork *)arg)->calls, 1);
}

static int call_blocking_once(void *arg, void **result) {
  (void)result;
  once_fork *o = arg;
  return concur_once_call(&o->once, once_blocking, o);
}

START_TEST(once_running_in_a_vanished_thread_is_taken_over_in_the_child) {
  once_fork o = {CONCUR_ONCE_INIT, {0}, 0};
  concur_thread *t;
  ck_assert_rc(concur_thread_run(&t, call_blocking_once, &o, NULL), 0);
  ck_assert_rc(concur__test_await_parked(&o.go, 1, HARNESS_LONG_NS), 0);
  pid_t pid = fork_flushed();
  ck_assert_int_ge(pid, 0);
  if (pid == 0) {
    child_alarm();
    /* The runner does not exist here: this call must run it again. */
    int rc = concur_once_call(&o.once, once_counting, &o);
    int calls = atomic_load(&o.calls);
    int again = concur_once_call(&o.once, once_counting, &o);
    _exit(rc == 0 && again == 0 && calls == 2 && atomic_load(&o.calls) == 2
              ? 0
              : 9);
  }
  int status = wait_child(pid);
  harness_gate_open(&o.go);
  ck_assert_rc(concur_thread_join(t, CONCUR_FOREVER, NULL), 0);
  concur_thread_free(t);
  ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
                "child status 0x%x", status);
  ck_assert_int_eq(atomic_load(&o.calls), 1);
}
END_TEST

typedef struct once_forking {
  concur_once once;
  _Atomic int calls;
  pid_t pid;
} once_forking;

static void fork_inside(void *arg) {
  once_forking *o = arg;
  atomic_fetch_add(&o->calls, 1);
  o->pid = fork_flushed();
}

START_TEST(once_forked_from_inside_its_function_finishes_in_the_child) {
  once_forking o = {CONCUR_ONCE_INIT, 0, -1};
  int rc = concur_once_call(&o.once, fork_inside, &o);
  if (o.pid == 0) {
    child_alarm();
    /* The forking thread finished the function here: done, not rerun. */
    int again = concur_once_call(&o.once, fork_inside, &o);
    _exit(rc == 0 && again == 0 && atomic_load(&o.calls) == 1 ? 0 : 9);
  }
  ck_assert_int_gt(o.pid, 0);
  ck_assert_rc(rc, 0);
  int status = wait_child(o.pid);
  ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
                "child status 0x%x", status);
}
END_TEST

Suite *concur_test_suite(void) {
  Suite *s = suite_create("thread_fork");
  TCase *tc = harness_tcase("thread_fork", 60);
  tcase_add_test(tc, THR_06_non_daemon_threads_joined_at_exit_daemons_not);
  tcase_add_test(tc, THR_06_concur_thread_calling_exit_skips_the_join);
  tcase_add_test(tc, THR_06_blocked_daemon_thread_does_not_delay_exit);
  tcase_add_test(tc, THR_06_exit_in_a_child_forked_by_a_concur_thread_joins);
  tcase_add_test(tc, THR_13_fork_from_non_main_thread_child_sees_one_thread);
  tcase_add_test(tc, THR_14_sixteen_threads_fork_and_wait_at_once);
  tcase_add_test(tc,
                 once_running_in_a_vanished_thread_is_taken_over_in_the_child);
  tcase_add_test(tc,
                 once_forked_from_inside_its_function_finishes_in_the_child);
  suite_add_tcase(s, tc);
  return s;
}
