/*
 * Threads: Python's threading.Thread for C.
 *
 * Design
 * - Threads involved: the starter, the started thread, any number of
 *   joiners, the thread that frees the handle, and the at-exit joiner.
 * - States (thread_internal.h): NEW -> RUNNING -> DONE, on the state word;
 *   the OS thread is reaped separately, on the reap word. Joiners park on
 *   the state word until DONE, then one of them (or free) takes the reap
 *   word to REAP_BUSY and calls pthread_join; the others park on the reap
 *   word until REAP_GONE. Both parks use the handle as their key.
 * - Start: under the registry lock the starter takes an identifier, creates
 *   the OS thread, records its pthread_t, moves the state to RUNNING and
 *   lists it; the new thread's entry takes the same lock before running the
 *   function (to name itself), so the function never runs before start has
 *   finished, and a fork never sees a half-started thread. A failed creation
 *   undoes everything under the same lock: no registry entry, no reference.
 * - End: the thread stores the result and code, runs the failure hook when
 *   the code is nonzero, then, under the registry lock, leaves the list and
 *   sets DONE (release), wakes every joiner and drops its reference.
 * - Reaping: a joiner pthread_joins the OS thread after DONE, so a join that
 *   succeeds leaves no OS thread behind; that also waits for the thread's
 *   thread-local destructors, which run after the entry returns. A timed
 *   join does so with a timed pthread join on the same CLOCK_MONOTONIC
 *   deadline (see os_join_until). free reaps a DONE thread and detaches a
 *   running one.
 * - Happens-before: start -> function through pthread_create (and the
 *   registry lock the entry takes); function -> join through the release
 *   store of DONE and the joiner's acquire load, and through pthread_join
 *   for the thread-local destructors.
 * - Lock order: only the registry lock, a leaf; never held while user code
 *   (the function, the hook) runs.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "thread/thread_internal.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

/* Longest single pthread_timedjoin_np wait; see os_join_until. */
#define JOIN_SLICE_NS 50000000

static void copy_name(char *dst, const char *src) {
  size_t n = strlen(src);
  if (n > CONCUR_THREAD_NAME_MAX) {
    n = CONCUR_THREAD_NAME_MAX;
  }
  memcpy(dst, src, n);
  dst[n] = '\0';
}

/* Reads handle fields through a const pointer: the atomics must be loaded
 * from a non-const object, and the handle is never really const. */
static concur_thread *unconst(const concur_thread *thread) {
  return (concur_thread *)(uintptr_t)thread;
}

void concur__thread_ref(concur_thread *thread) {
  /* Relaxed: the caller already holds a reference (or the registry lock
   * while the thread's own reference is alive), as with any refcount. */
  atomic_fetch_add_explicit(&thread->refs, 1, memory_order_relaxed);
}

void concur__thread_unref(concur_thread *thread) {
  /* acq_rel: every use of the handle by the other holders happens-before
   * the free by the last one. */
  if (atomic_fetch_sub_explicit(&thread->refs, 1, memory_order_acq_rel) == 1) {
    concur__free(thread);
  }
}

int concur__thread_new_ex(concur_thread **out, concur_task_fn fn, void *arg,
                          const concur_thread_options *opts, bool library) {
  if (out == NULL || fn == NULL ||
      (opts != NULL && opts->size < sizeof(concur_thread_options))) {
    return CONCUR_EINVAL;
  }
  concur_thread *t = concur__calloc(1, sizeof *t);
  if (t == NULL) {
    return CONCUR_ENOMEM;
  }
  t->fn = fn;
  t->arg = arg;
  t->library = library;
  atomic_init(&t->refs, 1);
  atomic_init(&t->state, THREAD_NEW);
  atomic_init(&t->reap, REAP_IDLE);
  atomic_init(&t->joiners, 0);
  atomic_init(&t->id_ready, 0);
  atomic_init(&t->native_id, 0);
  atomic_init(&t->ident, 0);
  atomic_init(&t->daemon, opts != NULL && opts->daemon);
  if (opts != NULL) {
    t->stack_size = opts->stack_size;
  }
  if (opts != NULL && opts->name != NULL) {
    copy_name(t->name, opts->name);
  } else {
    snprintf(t->name, sizeof t->name, "Thread-%" PRIu64,
             concur__next_name_number());
  }
  *out = t;
  return 0;
}

int concur_thread_new(concur_thread **out, concur_task_fn fn, void *arg,
                      const concur_thread_options *opts) {
  return concur__thread_new_ex(out, fn, arg, opts, false);
}

/* ---- the thread's own side ---------------------------------------------- */

static void run_hook(concur_thread *t, int code) {
  concur_excepthook_fn fn;
  void *arg;
  concur__registry_lock();
  concur__excepthook_get_locked(&fn, &arg);
  concur__registry_unlock();
  if (fn == NULL) {
    fn = concur_thread_default_excepthook;
  }
  fn(arg, t, code);
}

static void *thread_entry(void *p) {
  concur_thread *t = p;
  /* ident was stored before pthread_create: visible here. */
  concur__set_current(t, atomic_load_explicit(&t->ident, memory_order_relaxed));
  /* Release: concur_thread_native_id reads native_id after id_ready. */
  atomic_store_explicit(&t->native_id, concur__native_id(),
                        memory_order_relaxed);
  atomic_store_explicit(&t->id_ready, 1, memory_order_release);
  concur__unpark(&t->id_ready, INT32_MAX);

  /* Waits for the starter to finish its critical section, and names the OS
   * thread with the latest name (a rename may have come in between). */
  concur__registry_lock();
  concur__thread_set_os_name(pthread_self(), t->name);
  concur__registry_unlock();

  void *result = NULL;
  int code = t->fn(t->arg, &result);
  t->result = result;
  t->exit_code = code;
  if (code != 0) {
    run_hook(t, code);
  }

  concur__registry_lock();
  concur__registry_remove_locked(t);
  /* Release: publishes result, exit_code and everything fn did. */
  atomic_store_explicit(&t->state, THREAD_DONE, memory_order_release);
  concur__registry_unlock();
  concur__unpark(&t->state, INT32_MAX);

  concur__set_current(NULL, 0);
  concur__thread_unref(t);
  return NULL;
}

/* ---- start -------------------------------------------------------------- */

static int start(concur_thread *t) {
  if (t == NULL) {
    return CONCUR_EINVAL;
  }
  concur__registry_init_fork();
  concur__registry_init_exit();

  concur__registry_lock();
  if (atomic_load_explicit(&t->state, memory_order_relaxed) != THREAD_NEW) {
    concur__registry_unlock();
    return CONCUR_ESTATE;
  }
  /* The thread's own reference, taken before it can run. */
  concur__thread_ref(t);
  atomic_store_explicit(&t->ident, concur__next_ident(), memory_order_relaxed);
  t->gen = concur__fork_generation();
  pthread_t os;
  int rc =
      concur__thread_spawn(&os, t->stack_size, t->library, thread_entry, t);
  if (rc != 0) {
    atomic_store_explicit(&t->ident, 0, memory_order_relaxed);
    concur__registry_unlock();
    /* Not the last reference: the caller's handle still holds one. */
    concur__thread_unref(t);
    return rc;
  }
  t->os = os;
  concur__registry_add_locked(t);
  /* Release: publishes os and gen to whoever sees RUNNING. */
  atomic_store_explicit(&t->state, THREAD_RUNNING, memory_order_release);
  concur__registry_unlock();
  return 0;
}

int concur_thread_start(concur_thread *thread) {
  return start(thread);
}

int concur_thread_run(concur_thread **out, concur_task_fn fn, void *arg,
                      const concur_thread_options *opts) {
  if (out == NULL) {
    return CONCUR_EINVAL;
  }
  concur_thread *t;
  int rc = concur_thread_new(&t, fn, arg, opts);
  if (rc != 0) {
    return rc;
  }
  rc = start(t);
  if (rc != 0) {
    concur_thread_free(t);
    return rc;
  }
  *out = t;
  return 0;
}

/* ---- join --------------------------------------------------------------- */

/* True when the OS thread belongs to this process image (see fork_gen). */
static bool os_thread_here(const concur_thread *t) {
  return t->gen == concur__fork_generation();
}

static void os_join(pthread_t os) {
  int err = pthread_join(os, NULL);
  /* EINVAL/ESRCH: not joinable any more (a detach raced with a fork);
   * nothing is left to reap. Anything else is a corrupted handle. */
  if (err != 0 && err != EINVAL && err != ESRCH) {
    concur__panic("pthread_join failed: %s", strerror(err));
  }
}

/*
 * Joins the OS thread before the deadline: 0 or CONCUR_ETIMEDOUT. glibc's
 * pthread_clockjoin_np waits on CLOCK_MONOTONIC, exactly the deadline's
 * clock. ThreadSanitizer does not intercept it (it would miss the join and
 * report the thread as leaked), so TSan builds use pthread_timedjoin_np,
 * which only takes CLOCK_REALTIME, in slices of at most JOIN_SLICE_NS,
 * re-checking the monotonic deadline after each.
 */
#if defined(__SANITIZE_THREAD__)
#define UNDER_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define UNDER_TSAN 1
#endif
#endif

#if defined(__GLIBC__)
#if __GLIBC_PREREQ(2, 31) && !defined(UNDER_TSAN)
#define USE_CLOCKJOIN 1
#else
#define USE_TIMEDJOIN 1
#endif
#endif

static void check_join_error(int err) {
  /* EINVAL/ESRCH: not joinable any more (a detach raced with a fork). */
  if (err != 0 && err != ETIMEDOUT && err != EBUSY && err != EINVAL &&
      err != ESRCH) {
    concur__panic("joining a thread failed: %s", strerror(err));
  }
}

static int os_join_until(pthread_t os, concur__deadline deadline) {
  if (deadline == CONCUR__NO_DEADLINE) {
    os_join(os);
    return 0;
  }
#if defined(USE_CLOCKJOIN)
  struct timespec ts;
  ts.tv_sec = (time_t)(deadline / 1000000000);
  ts.tv_nsec = (long)(deadline % 1000000000);
  int err = pthread_clockjoin_np(os, NULL, CLOCK_MONOTONIC, &ts);
  check_join_error(err);
  return err == ETIMEDOUT ? CONCUR_ETIMEDOUT : 0;
#elif defined(USE_TIMEDJOIN)
  for (;;) {
    int64_t left = deadline - concur__now_ns();
    int err;
    if (left <= 0) {
      err = pthread_tryjoin_np(os, NULL);
      check_join_error(err);
      return err == EBUSY ? CONCUR_ETIMEDOUT : 0;
    }
    int64_t slice = left < JOIN_SLICE_NS ? left : JOIN_SLICE_NS;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    int64_t ns = (int64_t)ts.tv_nsec + slice;
    ts.tv_sec += (time_t)(ns / 1000000000);
    ts.tv_nsec = (long)(ns % 1000000000);
    err = pthread_timedjoin_np(os, NULL, &ts);
    check_join_error(err);
    if (err != ETIMEDOUT) {
      return 0;
    }
  }
#else
  /* No timed join: the thread has already returned from its function, so
   * this waits only for its thread-local destructors. */
  os_join(os);
  return 0;
#endif
}

/* Makes sure the OS thread of a DONE thread is gone: 0 or CONCUR_ETIMEDOUT. */
static int reap_until(concur_thread *t, concur__deadline deadline) {
  for (;;) {
    /* Acquire: a reaper's GONE publishes the thread's complete end. */
    uint32_t r = atomic_load_explicit(&t->reap, memory_order_acquire);
    if (r == REAP_GONE || !os_thread_here(t)) {
      return 0;
    }
    if (r == REAP_IDLE) {
      if (!atomic_compare_exchange_strong_explicit(&t->reap, &r, REAP_BUSY,
                                                   memory_order_acquire,
                                                   memory_order_relaxed)) {
        continue;
      }
      int rc = os_join_until(t->os, deadline);
      atomic_store_explicit(&t->reap, rc == 0 ? REAP_GONE : REAP_IDLE,
                            memory_order_release);
      concur__unpark(&t->reap, INT32_MAX);
      return rc;
    }
    if (concur__park(&t->reap, REAP_BUSY, deadline, t) == CONCUR_ETIMEDOUT) {
      r = atomic_load_explicit(&t->reap, memory_order_acquire);
      return r == REAP_GONE ? 0 : CONCUR_ETIMEDOUT;
    }
  }
}

/* Waits until DONE: 0 or CONCUR_ETIMEDOUT. */
static int wait_done(concur_thread *t, concur__deadline deadline) {
  for (;;) {
    /* Acquire: pairs with the thread's release store of DONE. */
    uint32_t s = atomic_load_explicit(&t->state, memory_order_acquire);
    if (s == THREAD_DONE) {
      return 0;
    }
    if (concur__park(&t->state, s, deadline, t) == CONCUR_ETIMEDOUT) {
      s = atomic_load_explicit(&t->state, memory_order_acquire);
      return s == THREAD_DONE ? 0 : CONCUR_ETIMEDOUT;
    }
  }
}

int concur_thread_join(concur_thread *thread, int64_t timeout_ns,
                       void **result) {
  if (thread == NULL) {
    return CONCUR_EINVAL;
  }
  concur__deadline deadline;
  if (concur__deadline_from_timeout(timeout_ns, &deadline) != 0) {
    return CONCUR_EINVAL;
  }
  if (thread == concur__current()) {
    return CONCUR_EDEADLK;
  }
  if (atomic_load_explicit(&thread->state, memory_order_acquire) ==
      THREAD_NEW) {
    return CONCUR_ESTATE;
  }
  atomic_fetch_add_explicit(&thread->joiners, 1, memory_order_relaxed);
  int rc = wait_done(thread, deadline);
  if (rc == 0) {
    rc = reap_until(thread, deadline);
  }
  atomic_fetch_sub_explicit(&thread->joiners, 1, memory_order_relaxed);
  if (rc != 0) {
    return rc;
  }
  if (thread->exit_code != 0) {
    return CONCUR_ETASK;
  }
  if (result != NULL) {
    *result = thread->result;
  }
  return 0;
}

void concur__thread_wait_exit(concur_thread *thread) {
  (void)wait_done(thread, CONCUR__NO_DEADLINE);
  (void)reap_until(thread, CONCUR__NO_DEADLINE);
}

/* ---- free --------------------------------------------------------------- */

void concur_thread_free(concur_thread *thread) {
  if (thread == NULL) {
    return;
  }
  uint32_t s = atomic_load_explicit(&thread->state, memory_order_acquire);
  if (s != THREAD_NEW && os_thread_here(thread)) {
    if (atomic_load_explicit(&thread->joiners, memory_order_relaxed) != 0) {
      concur__panic("concur_thread_free: threads are joining this thread");
    }
    uint32_t idle = REAP_IDLE;
    if (atomic_compare_exchange_strong_explicit(&thread->reap, &idle, REAP_BUSY,
                                                memory_order_acquire,
                                                memory_order_relaxed)) {
      /* A DONE thread is only finishing: reap it so that it is gone when
       * free returns. A running one is detached and releases its own OS
       * resources when it ends. */
      if (atomic_load_explicit(&thread->state, memory_order_acquire) ==
          THREAD_DONE) {
        os_join(thread->os);
      } else {
        int err = pthread_detach(thread->os);
        if (err != 0 && err != EINVAL && err != ESRCH) {
          concur__panic("pthread_detach failed: %s", strerror(err));
        }
      }
      atomic_store_explicit(&thread->reap, REAP_GONE, memory_order_release);
      concur__unpark(&thread->reap, INT32_MAX);
    }
    /* Else the at-exit joiner is reaping it, holding its own reference. */
  }
  concur__thread_unref(thread);
}

/* ---- accessors ---------------------------------------------------------- */

int concur_thread_exit_code(const concur_thread *thread) {
  if (thread == NULL) {
    return 0;
  }
  concur_thread *t = unconst(thread);
  if (atomic_load_explicit(&t->state, memory_order_acquire) != THREAD_DONE) {
    return 0;
  }
  return t->exit_code;
}

bool concur_thread_is_alive(const concur_thread *thread) {
  if (thread == NULL) {
    return false;
  }
  return atomic_load_explicit(&unconst(thread)->state, memory_order_acquire) ==
         THREAD_RUNNING;
}

int concur_thread_set_daemon(concur_thread *thread, bool daemon) {
  if (thread == NULL) {
    return CONCUR_EINVAL;
  }
  int rc = 0;
  concur__registry_lock();
  if (atomic_load_explicit(&thread->state, memory_order_relaxed) !=
      THREAD_NEW) {
    rc = CONCUR_ESTATE;
  } else {
    atomic_store_explicit(&thread->daemon, daemon, memory_order_relaxed);
  }
  concur__registry_unlock();
  return rc;
}

bool concur_thread_is_daemon(const concur_thread *thread) {
  if (thread == NULL) {
    return false;
  }
  return atomic_load_explicit(&unconst(thread)->daemon, memory_order_relaxed);
}

int concur_thread_set_name(concur_thread *thread, const char *name) {
  if (thread == NULL || name == NULL) {
    return CONCUR_EINVAL;
  }
  concur__registry_lock();
  copy_name(thread->name, name);
  /* Listed means the OS thread exists and has not finished its function;
   * its entry names itself under this lock, so one of the two applies the
   * latest name. */
  if (thread->registered) {
    concur__thread_set_os_name(thread->os, thread->name);
  }
  concur__registry_unlock();
  return 0;
}

int concur_thread_get_name(const concur_thread *thread, char *buf, size_t len) {
  if (thread == NULL || buf == NULL || len == 0) {
    return CONCUR_EINVAL;
  }
  concur__registry_lock();
  size_t n = strlen(thread->name);
  size_t copy = n < len - 1 ? n : len - 1;
  memcpy(buf, thread->name, copy);
  concur__registry_unlock();
  buf[copy] = '\0';
  return (int)n;
}

uint64_t concur_thread_ident(const concur_thread *thread) {
  if (thread == NULL) {
    return 0;
  }
  concur_thread *t = unconst(thread);
  /* Acquire on state: a started handle shows its ident. */
  if (atomic_load_explicit(&t->state, memory_order_acquire) == THREAD_NEW) {
    return 0;
  }
  return atomic_load_explicit(&t->ident, memory_order_relaxed);
}

uint64_t concur_thread_native_id(const concur_thread *thread) {
  if (thread == NULL) {
    return 0;
  }
  concur_thread *t = unconst(thread);
  if (atomic_load_explicit(&t->state, memory_order_acquire) == THREAD_NEW) {
    return 0;
  }
  /* Only waits in the instant between the thread's creation and its first
   * instructions; the forked child's handler marks vanished threads ready. */
  while (atomic_load_explicit(&t->id_ready, memory_order_acquire) == 0) {
    (void)concur__park(&t->id_ready, 0, CONCUR__NO_DEADLINE, t);
  }
  return atomic_load_explicit(&t->native_id, memory_order_relaxed);
}

/* ---- the failure hook --------------------------------------------------- */

void concur_thread_default_excepthook(void *arg, concur_thread *thread,
                                      int code) {
  (void)arg;
  char name[CONCUR_THREAD_NAME_MAX + 1] = "?";
  if (thread != NULL) {
    (void)concur_thread_get_name(thread, name, sizeof name);
  }
  char line[256];
  int n = snprintf(
      line, sizeof line,
      "concur: exception in thread %s (ident %" PRIu64 ", native id %" PRIu64
      "): the thread function returned %d\n",
      name, concur_thread_ident(thread), concur_thread_native_id(thread), code);
  if (n > 0) {
    /* One write, so that lines of concurrent failures do not interleave. */
    fputs(line, stderr);
  }
}
