/*
 * A tiny test-only executor backend for the executor tests: a fixed number
 * of threads sharing one FIFO queue under a pthread mutex. It fills the
 * operations table of src/executor/executor_internal.h, which shows that a
 * new backend is one new file, and lets the algorithm tests run on real
 * threads whatever other backends exist.
 *
 * Every task gets a future with a help hook (a waiter runs the task inline
 * if it is still queued), fire-and-forget included; the cleanup runs at the
 * future's last unref and on_done after the task's end, outside the lock.
 */
#ifndef CONCUR_TEST_EXECUTOR_BACKEND_H
#define CONCUR_TEST_EXECUTOR_BACKEND_H

#include "concur/sync.h"
#include "concur/thread_pool.h"
#include "executor/executor_internal.h"
#include "platform/platform.h"

#include <pthread.h>
#include <stdlib.h>
#include <time.h>

#define TB_MAX_THREADS 8

typedef struct tb_node {
  concur__task_record rec;
  concur_future *future;
  struct tb_node *next;
} tb_node;

typedef struct tb_exec {
  struct concur_executor base;
  pthread_mutex_t mu;
  pthread_cond_t work; /* queue not empty or shut down */
  pthread_cond_t idle; /* a worker left or a task ended */
  tb_node *head, *tail;
  bool shut;
  int nthreads, alive;
  bool joined;
  bool no_help; /* waiters never run tasks inline (for timeout tests) */
  pthread_t threads[TB_MAX_THREADS];
  concur_executor_stats st;
} tb_exec;

static inline tb_exec *tb_of(concur_executor *ex) {
  return (tb_exec *)(void *)ex;
}

static inline void tb_finish(tb_exec *tb, tb_node *node, int run_rc) {
  concur__outcome outcome = CONCUR__OUTCOME_CANCELLED;
  int code = 0;
  if (run_rc == 0) {
    concur_future_snapshot snap = CONCUR_FUTURE_SNAPSHOT_INIT;
    if (concur_future_get_snapshot(node->future, &snap) == 0) {
      code = snap.code;
    }
    outcome = code == 0 ? CONCUR__OUTCOME_OK : CONCUR__OUTCOME_FAILED;
  }
  pthread_mutex_lock(&tb->mu);
  if (run_rc == 0) {
    tb->st.running--;
    if (code == 0) {
      tb->st.completed++;
    } else {
      tb->st.failed++;
    }
  } else {
    tb->st.queued--;
    tb->st.cancelled++;
  }
  pthread_cond_broadcast(&tb->idle);
  pthread_mutex_unlock(&tb->mu);
  concur_future_unref(node->future);
  if (node->rec.on_done != NULL) {
    node->rec.on_done(node->rec.ctx, outcome, code);
  }
  free(node);
}

/* Runs a node taken off the queue (lock not held). */
static inline void tb_run(tb_exec *tb, tb_node *node) {
  pthread_mutex_lock(&tb->mu);
  bool cancelled = concur_future_cancelled(node->future);
  if (!cancelled) {
    tb->st.queued--;
    tb->st.running++;
  }
  pthread_mutex_unlock(&tb->mu);
  int rc = cancelled ? CONCUR_ECANCELED : concur_future_run(node->future);
  if (rc != 0 && !cancelled) {
    /* Cancelled between the check and the run: undo the running count. */
    pthread_mutex_lock(&tb->mu);
    tb->st.running--;
    tb->st.queued++;
    pthread_mutex_unlock(&tb->mu);
  }
  tb_finish(tb, node, rc == 0 ? 0 : CONCUR_ECANCELED);
}

static inline tb_node *tb_pop_locked(tb_exec *tb) {
  tb_node *n = tb->head;
  if (n != NULL) {
    tb->head = n->next;
    if (tb->head == NULL) {
      tb->tail = NULL;
    }
  }
  return n;
}

static void *tb_worker(void *arg) {
  tb_exec *tb = arg;
  pthread_mutex_lock(&tb->mu);
  for (;;) {
    tb_node *n = tb_pop_locked(tb);
    if (n == NULL) {
      if (tb->shut) {
        break;
      }
      pthread_cond_wait(&tb->work, &tb->mu);
      continue;
    }
    pthread_mutex_unlock(&tb->mu);
    tb_run(tb, n);
    pthread_mutex_lock(&tb->mu);
  }
  tb->alive--;
  pthread_cond_broadcast(&tb->idle);
  pthread_mutex_unlock(&tb->mu);
  return NULL;
}

static inline void tb_help_hook(concur_future *f, void *arg) {
  tb_exec *tb = arg;
  pthread_mutex_lock(&tb->mu);
  tb_node *prev = NULL, *n = tb->head;
  while (n != NULL && n->future != f) {
    prev = n;
    n = n->next;
  }
  if (n != NULL) {
    if (prev != NULL) {
      prev->next = n->next;
    } else {
      tb->head = n->next;
    }
    if (tb->tail == n) {
      tb->tail = prev;
    }
  }
  pthread_mutex_unlock(&tb->mu);
  if (n != NULL) {
    tb_run(tb, n);
  }
}

static inline int tb_submit(concur_executor *ex, const concur__task_record *rec,
                            concur_future **out) {
  tb_exec *tb = tb_of(ex);
  tb_node *node = malloc(sizeof *node);
  if (node == NULL) {
    return CONCUR_ENOMEM;
  }
  int rc =
      concur_future_new_task(&node->future, rec->fn, rec->arg, rec->cleanup);
  if (rc != 0) {
    free(node);
    pthread_mutex_lock(&tb->mu);
    tb->st.rejected++;
    pthread_mutex_unlock(&tb->mu);
    return rc;
  }
  node->rec = *rec;
  node->next = NULL;
  if (!tb->no_help &&
      concur_future_set_help(node->future, tb_help_hook, tb) != 0) {
    abort();
  }
  pthread_mutex_lock(&tb->mu);
  if (tb->shut) {
    tb->st.rejected++;
    pthread_mutex_unlock(&tb->mu);
    if (concur_future_detach_task(node->future, NULL, NULL) != 0) {
      abort();
    }
    concur_future_unref(node->future);
    free(node);
    return CONCUR_ESHUTDOWN;
  }
  if (out != NULL) {
    *out = concur_future_ref(node->future);
  }
  tb->st.submitted++;
  tb->st.queued++;
  if (tb->tail != NULL) {
    tb->tail->next = node;
  } else {
    tb->head = node;
  }
  tb->tail = node;
  pthread_cond_signal(&tb->work);
  pthread_mutex_unlock(&tb->mu);
  return 0;
}

static inline int tb_parallelism(concur_executor *ex) {
  return tb_of(ex)->nthreads;
}

static inline int tb_help(concur_executor *ex) {
  tb_exec *tb = tb_of(ex);
  if (tb->no_help) {
    return 0;
  }
  pthread_mutex_lock(&tb->mu);
  tb_node *n = tb_pop_locked(tb);
  pthread_mutex_unlock(&tb->mu);
  if (n == NULL) {
    return 0;
  }
  tb_run(tb, n);
  return 1;
}

static inline bool tb_on_worker(tb_exec *tb) {
  for (int i = 0; i < tb->nthreads; i++) {
    if (pthread_equal(pthread_self(), tb->threads[i])) {
      return true;
    }
  }
  return false;
}

static inline void tb_join(tb_exec *tb) {
  pthread_mutex_lock(&tb->mu);
  bool join = !tb->joined;
  tb->joined = true;
  pthread_mutex_unlock(&tb->mu);
  if (join) {
    for (int i = 0; i < tb->nthreads; i++) {
      pthread_join(tb->threads[i], NULL);
    }
  }
}

static inline int tb_shutdown(concur_executor *ex, unsigned flags) {
  tb_exec *tb = tb_of(ex);
  tb_node *dropped = NULL;
  pthread_mutex_lock(&tb->mu);
  tb->shut = true;
  if (flags & CONCUR_SHUTDOWN_CANCEL_FUTURES) {
    dropped = tb->head;
    tb->head = tb->tail = NULL;
  }
  pthread_cond_broadcast(&tb->work);
  pthread_mutex_unlock(&tb->mu);
  while (dropped != NULL) {
    tb_node *next = dropped->next;
    (void)concur_future_cancel(dropped->future);
    tb_finish(tb, dropped, CONCUR_ECANCELED);
    dropped = next;
  }
  if (flags & CONCUR_SHUTDOWN_WAIT) {
    if (tb_on_worker(tb)) {
      return CONCUR_EDEADLK;
    }
    tb_join(tb);
  }
  return 0;
}

static inline int tb_shutdown_now(concur_executor *ex, concur_unrun_fn unrun,
                                  void *ctx) {
  tb_exec *tb = tb_of(ex);
  pthread_mutex_lock(&tb->mu);
  tb->shut = true;
  tb_node *dropped = tb->head;
  tb->head = tb->tail = NULL;
  pthread_cond_broadcast(&tb->work);
  pthread_mutex_unlock(&tb->mu);
  int count = 0;
  while (dropped != NULL) {
    tb_node *next = dropped->next;
    concur_task_fn fn = NULL;
    void *arg = NULL;
    if (unrun != NULL &&
        concur_future_detach_task(dropped->future, &fn, &arg) == 0) {
      unrun(ctx, fn, arg);
    } else {
      (void)concur_future_cancel(dropped->future);
    }
    count++;
    tb_finish(tb, dropped, CONCUR_ECANCELED);
    dropped = next;
  }
  return count;
}

static inline int tb_await(concur_executor *ex, int64_t timeout_ns) {
  tb_exec *tb = tb_of(ex);
  concur__deadline deadline;
  if (concur__deadline_from_timeout(timeout_ns, &deadline) != 0) {
    return CONCUR_EINVAL;
  }
  pthread_mutex_lock(&tb->mu);
  if (!tb->shut) {
    pthread_mutex_unlock(&tb->mu);
    return CONCUR_ESTATE;
  }
  int rc = 0;
  while (tb->alive > 0 || tb->st.running > 0) {
    if (deadline == CONCUR__NO_DEADLINE) {
      pthread_cond_wait(&tb->idle, &tb->mu);
      continue;
    }
    struct timespec ts = {deadline / 1000000000, deadline % 1000000000};
    if (pthread_cond_timedwait(&tb->idle, &tb->mu, &ts) != 0 &&
        concur__deadline_passed(deadline)) {
      rc = tb->alive > 0 || tb->st.running > 0 ? CONCUR_ETIMEDOUT : 0;
      break;
    }
  }
  pthread_mutex_unlock(&tb->mu);
  return rc;
}

static inline bool tb_is_shutdown(concur_executor *ex) {
  tb_exec *tb = tb_of(ex);
  pthread_mutex_lock(&tb->mu);
  bool s = tb->shut;
  pthread_mutex_unlock(&tb->mu);
  return s;
}

static inline bool tb_is_terminated(concur_executor *ex) {
  tb_exec *tb = tb_of(ex);
  pthread_mutex_lock(&tb->mu);
  bool t = tb->shut && tb->alive == 0 && tb->st.running == 0;
  pthread_mutex_unlock(&tb->mu);
  return t;
}

static inline void tb_stats(concur_executor *ex, concur_executor_stats *out) {
  tb_exec *tb = tb_of(ex);
  pthread_mutex_lock(&tb->mu);
  size_t size = out->size;
  *out = tb->st;
  out->size = size;
  out->workers = (uint64_t)tb->alive;
  out->active = tb->st.running;
  out->largest = (uint64_t)tb->nthreads;
  pthread_mutex_unlock(&tb->mu);
}

static inline void tb_free(concur_executor *ex) {
  tb_exec *tb = tb_of(ex);
  (void)tb_shutdown(ex, CONCUR_SHUTDOWN_WAIT);
  tb_join(tb);
  pthread_mutex_destroy(&tb->mu);
  pthread_cond_destroy(&tb->work);
  pthread_cond_destroy(&tb->idle);
  free(tb);
}

static const concur__executor_ops tb_ops = {
    "test-threads",   tb_submit,       tb_parallelism, tb_help,
    tb_shutdown,      tb_shutdown_now, tb_await,       tb_is_shutdown,
    tb_is_terminated, tb_stats,        tb_free,
};

/* Makes the test backend with nthreads (1..TB_MAX_THREADS) workers; with
 * no_help, waiters never run its tasks inline, so that a test can keep a
 * blocking task on a worker while the main thread waits with a timeout. */
static inline int tb_new_full(concur_executor **out, int nthreads,
                              bool no_help) {
  tb_exec *tb = calloc(1, sizeof *tb);
  if (tb == NULL) {
    return CONCUR_ENOMEM;
  }
  tb->base.ops = &tb_ops;
  pthread_mutex_init(&tb->mu, NULL);
  pthread_condattr_t attr;
  pthread_condattr_init(&attr);
  pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
  pthread_cond_init(&tb->work, &attr);
  pthread_cond_init(&tb->idle, &attr);
  pthread_condattr_destroy(&attr);
  tb->st.size = sizeof tb->st;
  tb->nthreads = nthreads;
  tb->alive = nthreads;
  tb->no_help = no_help;
  for (int i = 0; i < nthreads; i++) {
    if (pthread_create(&tb->threads[i], NULL, tb_worker, tb) != 0) {
      abort();
    }
  }
  *out = &tb->base;
  return 0;
}

static inline int tb_new(concur_executor **out, int nthreads) {
  return tb_new_full(out, nthreads, false);
}

#endif /* CONCUR_TEST_EXECUTOR_BACKEND_H */

/* ---- shared helpers of the executor tests -------------------------------- */
#ifndef CONCUR_TEST_EXECUTOR_HELPERS
#define CONCUR_TEST_EXECUTOR_HELPERS

#include <stdatomic.h>
#include <stdint.h>

/* The backends every algorithm test runs on (a Check loop index). Kinds
 * from KIND_FIRST_THREADED on run tasks on other threads. */
enum {
  KIND_INLINE,
  KIND_THREADS2,
  KIND_THREADS1,
  KIND_POOL2, /* the thread pool, 2 workers */
  KIND_POOL1, /* the thread pool, 1 worker */
  KIND_COUNT,
  /* Outside the loop: threaded backends whose waiters never help. */
  KIND_NOHELP2 = KIND_COUNT,
  KIND_NOHELP1
};
#define KIND_FIRST_THREADED KIND_THREADS2

static inline const char *kind_name(int kind) {
  static const char *names[] = {"inline", "threads2", "threads1", "pool2",
                                "pool1",  "nohelp2",  "nohelp1"};
  return names[kind];
}

static inline concur_executor *make_exec(int kind) {
  concur_executor *ex = NULL;
  int rc;
  switch (kind) {
  case KIND_INLINE:
    rc = concur_inline_executor_new(&ex);
    break;
  case KIND_THREADS1:
    rc = tb_new(&ex, 1);
    break;
  case KIND_POOL2:
  case KIND_POOL1: {
    concur_thread_pool_options o = CONCUR_THREAD_POOL_OPTIONS_INIT;
    o.max_workers = kind == KIND_POOL2 ? 2 : 1;
    rc = concur_thread_pool_new(&ex, &o);
    break;
  }
  case KIND_NOHELP2:
    rc = tb_new_full(&ex, 2, true);
    break;
  case KIND_NOHELP1:
    rc = tb_new_full(&ex, 1, true);
    break;
  default:
    rc = tb_new(&ex, 2);
    break;
  }
  if (rc != 0 || ex == NULL) {
    abort();
  }
  return ex;
}

/* Returns arg as its result. */
static inline int task_echo(void *arg, void **result) {
  *result = arg;
  return 0;
}

/* Fails with the code in arg (nonzero). */
static inline int task_fail(void *arg, void **result) {
  (void)result;
  return (int)(intptr_t)arg;
}

/* Fails for odd args, echoes even ones. */
static inline int task_odd_fails(void *arg, void **result) {
  intptr_t v = (intptr_t)arg;
  if (v % 2 != 0) {
    return (int)(1000 + v);
  }
  *result = arg;
  return 0;
}

/* Cleanups counted, with what they got. */
static _Atomic long cleanups __attribute__((unused));
static _Atomic long cleanups_with_result __attribute__((unused));

static inline void count_cleanup(void *arg, void *result) {
  (void)arg;
  atomic_fetch_add(&cleanups, 1);
  if (result != NULL) {
    atomic_fetch_add(&cleanups_with_result, 1);
  }
}

/* A gate a task blocks on until the test opens it. */
typedef struct gate {
  concur_event *started; /* set by the task when it starts */
  concur_event *open;    /* the task waits for it */
  _Atomic int runs;
  _Atomic int saw_cancel_request;
} gate;

static inline void gate_init(gate *g) {
  if (concur_event_new(&g->started) != 0 || concur_event_new(&g->open) != 0) {
    abort();
  }
  atomic_init(&g->runs, 0);
  atomic_init(&g->saw_cancel_request, 0);
}

static inline void gate_destroy(gate *g) {
  concur_event_free(g->started);
  concur_event_free(g->open);
}

/* Signals started, waits for the gate, returns 0 with the gate as result. */
static inline int task_gate(void *arg, void **result) {
  gate *g = arg;
  atomic_fetch_add(&g->runs, 1);
  (void)concur_event_set(g->started);
  if (concur_event_wait(g->open, CONCUR_FOREVER) != 0) {
    abort();
  }
  if (concur_task_cancel_requested()) {
    atomic_store(&g->saw_cancel_request, 1);
  }
  *result = g;
  return 0;
}

/* Counts runs in the _Atomic long pointed to by arg. */
static inline int task_count(void *arg, void **result) {
  (void)result;
  atomic_fetch_add((_Atomic long *)arg, 1);
  return 0;
}

#endif /* CONCUR_TEST_EXECUTOR_HELPERS */
