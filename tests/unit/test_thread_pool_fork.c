/*
 * The thread pool and fork(2), and process exit with live pools.
 *
 * Labelled "fork" (the file name ends in _fork) and so left out of the TSan
 * build: these children start threads after a fork of a multithreaded
 * process, and TSan kills such children. They run in the plain and ASan
 * builds.
 */
#include "test_thread_pool_util.h"

#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

/* In a child: make a pool, run n tasks with futures, check every result.
 * Returns 0 when all is well (the child's exit status). */
static int child_uses_a_new_pool(int n) {
  concur_thread_pool_options o = CONCUR_THREAD_POOL_OPTIONS_INIT;
  o.max_workers = 2;
  concur_executor *ex = NULL;
  if (concur_thread_pool_new(&ex, &o) != 0) {
    return 10;
  }
  int bad = 0;
  for (int i = 0; i < n; i++) {
    concur_future *f;
    if (concur_executor_submit(ex, tp_task_echo, (void *)(intptr_t)(i + 1),
                               &f) != 0) {
      bad = 11;
      break;
    }
    void *v = NULL;
    if (concur_future_result(f, 10000000000LL, &v) != 0 ||
        v != (void *)(intptr_t)(i + 1)) {
      bad = 12;
    }
    concur_future_unref(f);
  }
  if (concur_executor_shutdown(ex, CONCUR_SHUTDOWN_WAIT) != 0) {
    bad = 13;
  }
  concur_executor_stats s = CONCUR_EXECUTOR_STATS_INIT;
  if (concur_executor_get_stats(ex, &s) != 0 || s.completed != (uint64_t)n) {
    bad = 14;
  }
  concur_executor_free(ex);
  return bad;
}

static int wait_child(pid_t pid) {
  int status = 0;
  while (waitpid(pid, &status, 0) < 0) {
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : 100 + WTERMSIG(status);
}

START_TEST(TPE_21_fork_while_busy_child_builds_a_new_pool) {
  concur_thread_pool_options o = CONCUR_THREAD_POOL_OPTIONS_INIT;
  o.max_workers = 2;
  concur_executor *ex = tp_new(&o);
  tp_gate g;
  tp_gate_init(&g);
  concur_future *f[6];
  for (int i = 0; i < 6; i++) {
    ck_assert_rc(concur_executor_submit(ex, tp_task_gate, &g, &f[i]), 0);
  }
  TP_AWAIT_PARKED(&g, 2);
  pid_t pid = fork();
  ck_assert_int_ge(pid, 0);
  if (pid == 0) {
    /* Only this thread exists here; the inherited pool is left alone. */
    _exit(child_uses_a_new_pool(200));
  }
  ck_assert_int_eq(wait_child(pid), 0);
  /* The parent's pool keeps working. */
  tp_gate_open(&g);
  for (int i = 0; i < 6; i++) {
    ck_assert_rc(concur_future_result(f[i], HARNESS_LONG_NS, NULL), 0);
    concur_future_unref(f[i]);
  }
  concur_future *h;
  ck_assert_rc(concur_executor_submit(ex, tp_task_echo, NULL, &h), 0);
  ck_assert_rc(concur_future_result(h, HARNESS_LONG_NS, NULL), 0);
  concur_future_unref(h);
  concur_executor_free(ex);
}
END_TEST

static int fork_from_task(void *arg, void **result) {
  (void)arg;
  pid_t pid = fork();
  if (pid < 0) {
    return 1;
  }
  if (pid == 0) {
    _exit(child_uses_a_new_pool(50));
  }
  *result = (void *)(intptr_t)wait_child(pid);
  return 0;
}

START_TEST(TPE_21_fork_from_a_pool_task) {
  /* One fork at a time, with the pool's other worker idle: a fork while
   * another thread is inside malloc leaves the sanitizer allocator's
   * internal lock held in the child (ASan in gcc 12 has no fork handler
   * for it), which is not what this test is about. */
  concur_thread_pool_options o = CONCUR_THREAD_POOL_OPTIONS_INIT;
  o.max_workers = 2;
  concur_executor *ex = tp_new(&o);
  for (int i = 0; i < 3; i++) {
    concur_future *f;
    ck_assert_rc(concur_executor_submit(ex, fork_from_task, NULL, &f), 0);
    void *v = (void *)1;
    ck_assert_rc(concur_future_result(f, HARNESS_LONG_NS, &v), 0);
    ck_assert_int_eq((int)(intptr_t)v, 0);
    concur_future_unref(f);
  }
  concur_executor_free(ex);
}
END_TEST

/* EXE-08: a child that exits with a live pool. Tasks report through a
 * pipe, so the parent sees what ran. */
static int exit_pipe = -1;
static concur_executor *exit_pool;

static int write_byte(void *arg, void **result) {
  (void)result;
  struct timespec ts = {0, 1000000};
  nanosleep(&ts, NULL); /* still queued when exit begins */
  char c = (char)(intptr_t)arg;
  return write(exit_pipe, &c, 1) == 1 ? 0 : 1;
}

/* Registered before the pool exists, so it runs after the pool's own
 * at-exit handler: a submit there must fail cleanly. */
static void submit_at_exit(void) {
  int rc = concur_executor_submit(exit_pool, write_byte, (void *)'x', NULL);
  char c = rc == CONCUR_ESHUTDOWN ? 'S' : 'X';
  (void)!write(exit_pipe, &c, 1);
}

START_TEST(EXE_08_process_exit_finishes_a_live_pools_work) {
  int fds[2];
  ck_assert_int_eq(pipe(fds), 0);
  pid_t pid = fork();
  ck_assert_int_ge(pid, 0);
  if (pid == 0) {
    close(fds[0]);
    exit_pipe = fds[1];
    if (atexit(submit_at_exit) != 0) {
      _exit(20);
    }
    concur_thread_pool_options o = CONCUR_THREAD_POOL_OPTIONS_INIT;
    o.max_workers = 2;
    if (concur_thread_pool_new(&exit_pool, &o) != 0) {
      _exit(21);
    }
    for (int i = 0; i < 20; i++) {
      if (concur_executor_submit(exit_pool, write_byte, (void *)'t', NULL) !=
          0) {
        _exit(22);
      }
    }
    exit(0); /* no shutdown, no free: the library's handler waits */
  }
  close(fds[1]);
  char buf[64];
  size_t got = 0;
  ssize_t n;
  while ((n = read(fds[0], buf + got, sizeof buf - got)) > 0) {
    got += (size_t)n;
  }
  close(fds[0]);
  ck_assert_int_eq(wait_child(pid), 0);
  int tasks = 0;
  int shutdown_seen = 0;
  for (size_t i = 0; i < got; i++) {
    tasks += buf[i] == 't';
    shutdown_seen += buf[i] == 'S';
  }
  ck_assert_int_eq(tasks, 20);
  ck_assert_int_eq(shutdown_seen, 1);
  ck_assert_uint_eq(got, 21);
}
END_TEST

Suite *concur_test_suite(void) {
  Suite *s = suite_create("thread_pool_fork");
  TCase *tc = harness_tcase("fork", 60);
  tcase_add_test(tc, TPE_21_fork_while_busy_child_builds_a_new_pool);
  tcase_add_test(tc, TPE_21_fork_from_a_pool_task);
  tcase_add_test(tc, EXE_08_process_exit_finishes_a_live_pools_work);
  suite_add_tcase(s, tc);
  return s;
}
