/*
 * Timer: Python's threading.Timer, a thread that calls a function after a
 * delay unless cancelled first.
 *
 * Design
 * - Threads involved: the timer's own concur thread (a library thread: all
 *   asynchronous signals blocked), whoever starts, cancels, joins or frees.
 * - The state word: WAITING -> FIRED (the timer thread, when the deadline
 *   passes) or WAITING -> CANCELLED (concur_timer_cancel); whichever
 *   compare-and-swap wins decides, so a cancel either stops the call or is
 *   harmless. The timer thread parks on the word, key = the timer, until the
 *   deadline or a change.
 * - The deadline is taken once, in concur_timer_start, from CLOCK_MONOTONIC,
 *   and written before the thread is created (happens-before through
 *   pthread_create); a separate `started` flag keeps a second start from
 *   rewriting it under a running timer thread.
 * - Lifetime: reference counted, the user's handle plus the timer thread
 *   while it runs, so freeing a timer whose function runs is safe; the inner
 *   concur_thread is detached by concur_thread_free in that case.
 * - Join: the inner thread's join; a run that ended without calling the
 *   function reports CONCUR_ECANCELED.
 */
#include "thread/thread_internal.h"

enum {
  TIMER_WAITING = 0,
  TIMER_CANCELLED = 1,
  TIMER_FIRED = 2,
};

struct concur_timer {
  concur_thread *thread; /* immutable after init */
  concur_task_fn fn;     /* immutable after init */
  void *arg;             /* immutable after init */
  int64_t interval_ns;   /* immutable after init */
  /* Written by concur_timer_start before the thread exists, only while
   * `started` was just won; read by the timer thread. */
  concur__deadline deadline;
  _Atomic uint32_t state; /* atomic: TIMER_* (the word the thread parks on) */
  _Atomic bool started;   /* atomic: a start is done or in progress */
  _Atomic uint32_t refs;  /* atomic: the handle and a running timer thread */
};

static void timer_unref(concur_timer *timer) {
  /* acq_rel: as concur__thread_unref. */
  if (atomic_fetch_sub_explicit(&timer->refs, 1, memory_order_acq_rel) == 1) {
    concur__free(timer);
  }
}

static int timer_main(void *arg, void **result) {
  concur_timer *timer = arg;
  int rc = 0;
  for (;;) {
    if (atomic_load_explicit(&timer->state, memory_order_acquire) !=
        TIMER_WAITING) {
      break;
    }
    if (concur__park(&timer->state, TIMER_WAITING, timer->deadline, timer) ==
        CONCUR_ETIMEDOUT) {
      break;
    }
  }
  uint32_t waiting = TIMER_WAITING;
  if (atomic_compare_exchange_strong_explicit(&timer->state, &waiting,
                                              TIMER_FIRED, memory_order_acq_rel,
                                              memory_order_acquire)) {
    rc = timer->fn(timer->arg, result);
  }
  timer_unref(timer);
  return rc;
}

int concur_timer_new(concur_timer **out, int64_t interval_ns, concur_task_fn fn,
                     void *arg, const concur_thread_options *opts) {
  if (out == NULL || fn == NULL || interval_ns < 0 ||
      (opts != NULL && opts->size < sizeof(concur_thread_options))) {
    return CONCUR_EINVAL;
  }
  concur_timer *timer = concur__calloc(1, sizeof *timer);
  if (timer == NULL) {
    return CONCUR_ENOMEM;
  }
  int rc = concur__thread_new_ex(&timer->thread, timer_main, timer, opts, true);
  if (rc != 0) {
    concur__free(timer);
    return rc;
  }
  timer->fn = fn;
  timer->arg = arg;
  timer->interval_ns = interval_ns;
  atomic_init(&timer->state, TIMER_WAITING);
  atomic_init(&timer->started, false);
  atomic_init(&timer->refs, 1);
  *out = timer;
  return 0;
}

int concur_timer_start(concur_timer *timer) {
  if (timer == NULL) {
    return CONCUR_EINVAL;
  }
  bool no = false;
  if (!atomic_compare_exchange_strong_explicit(&timer->started, &no, true,
                                               memory_order_acquire,
                                               memory_order_relaxed)) {
    return CONCUR_ESTATE;
  }
  if (concur__deadline_from_timeout(timer->interval_ns, &timer->deadline) !=
      0) {
    timer->deadline = CONCUR__NO_DEADLINE; /* unreachable: checked in new */
  }
  atomic_fetch_add_explicit(&timer->refs, 1, memory_order_relaxed);
  int rc = concur_thread_start(timer->thread);
  if (rc != 0) {
    atomic_fetch_sub_explicit(&timer->refs, 1, memory_order_relaxed);
    atomic_store_explicit(&timer->started, false, memory_order_release);
  }
  return rc;
}

int concur_timer_cancel(concur_timer *timer) {
  if (timer == NULL) {
    return CONCUR_EINVAL;
  }
  uint32_t waiting = TIMER_WAITING;
  if (atomic_compare_exchange_strong_explicit(
          &timer->state, &waiting, TIMER_CANCELLED, memory_order_acq_rel,
          memory_order_relaxed)) {
    concur__unpark(&timer->state, INT32_MAX);
  }
  return 0;
}

int concur_timer_join(concur_timer *timer, int64_t timeout_ns, void **result) {
  if (timer == NULL) {
    return CONCUR_EINVAL;
  }
  void *value = NULL;
  int rc = concur_thread_join(timer->thread, timeout_ns, &value);
  if (rc == 0 && atomic_load_explicit(&timer->state, memory_order_acquire) ==
                     TIMER_CANCELLED) {
    /* The thread read CANCELLED before it ended, and the join made its end
     * visible: the function never ran. */
    return CONCUR_ECANCELED;
  }
  if (rc == 0 && result != NULL) {
    *result = value;
  }
  return rc;
}

int concur_timer_exit_code(const concur_timer *timer) {
  return timer == NULL ? 0 : concur_thread_exit_code(timer->thread);
}

bool concur_timer_is_alive(const concur_timer *timer) {
  return timer != NULL && concur_thread_is_alive(timer->thread);
}

void concur_timer_free(concur_timer *timer) {
  if (timer == NULL) {
    return;
  }
  (void)concur_timer_cancel(timer);
  concur_thread_free(timer->thread);
  timer_unref(timer);
}
