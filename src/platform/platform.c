/*
 * Floor 1: time, parking, the internal mutex, memory and threads.
 *
 * Design
 * - Parking on Linux is FUTEX_WAIT_BITSET, whose timeout is an absolute
 *   CLOCK_MONOTONIC instant: a wall-clock step cannot shorten or stretch it,
 *   and EINTR is just a spurious return the caller's loop absorbs.
 * - The fallback (CONCUR_PARK_CONDVAR) hashes a word's address onto one of
 *   PARK_BUCKETS buckets, each a pthread mutex and a condition variable on
 *   CLOCK_MONOTONIC. A parker checks the word under the bucket's mutex; an
 *   unparker, which has already changed the word, takes the same mutex before
 *   broadcasting, so no wake-up is lost. Broadcast wakes more threads than
 *   asked; callers re-check, so that is only spurious wake-ups.
 * - concur__mutex is the classic three-state futex mutex (0 free, 1 locked,
 *   2 locked and maybe contended), with a short bounded spin before parking:
 *   about the cost of one futex round trip, never longer.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "platform.h"

#include <errno.h>
#include <limits.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#if defined(__linux__) && !defined(CONCUR_PARK_CONDVAR)
#define USE_FUTEX 1
#include <linux/futex.h>
#include <sys/syscall.h>
#else
#define USE_FUTEX 0
#endif

#if defined(__linux__)
#include <linux/membarrier.h>
#include <sys/syscall.h>
#endif

#ifdef CONCUR_TESTING
#include "testing.h"
static _Atomic uint32_t parked_generation;
static void parked_add(const void *key, int delta);
static bool fault_hit(concur__fault_kind kind);
#endif

/* ---- asymmetric fences -----------------------------------------------------
 */

/* 0: not asked yet, 1: registered, 2: unavailable. Registration is
 * idempotent, so threads racing to ask all get the same answer. */
static _Atomic int asym_state;

bool concur__asym_fence_ready(void) {
  int st = atomic_load_explicit(&asym_state, memory_order_acquire);
  if (st == 0) {
    st = 2;
#if defined(__linux__) && !defined(CONCUR_PARK_CONDVAR) &&                     \
    defined(__NR_membarrier)
    long cmds = syscall(__NR_membarrier, MEMBARRIER_CMD_QUERY, 0, 0);
    if (cmds > 0 && (cmds & MEMBARRIER_CMD_PRIVATE_EXPEDITED) &&
        syscall(__NR_membarrier, MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED, 0,
                0) == 0) {
      st = 1;
    }
#endif
    atomic_store_explicit(&asym_state, st, memory_order_release);
  }
  return st == 1;
}

bool concur__asym_fence_heavy(void) {
#if defined(__linux__) && !defined(CONCUR_PARK_CONDVAR) &&                     \
    defined(__NR_membarrier)
  return syscall(__NR_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED, 0, 0) == 0;
#else
  return false;
#endif
}

/* ---- time ------------------------------------------------------------------
 */

int64_t concur__now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int concur__deadline_from_timeout(int64_t timeout_ns, concur__deadline *out) {
  if (timeout_ns < 0) {
    return CONCUR_EINVAL;
  }
  if (timeout_ns == CONCUR_FOREVER) {
    *out = CONCUR__NO_DEADLINE;
    return 0;
  }
  int64_t now = concur__now_ns();
  *out = timeout_ns > CONCUR__NO_DEADLINE - 1 - now ? CONCUR__NO_DEADLINE - 1
                                                    : now + timeout_ns;
  return 0;
}

bool concur__deadline_passed(concur__deadline deadline) {
  return deadline != CONCUR__NO_DEADLINE && concur__now_ns() >= deadline;
}

static struct timespec to_timespec(concur__deadline deadline) {
  struct timespec ts;
  ts.tv_sec = (time_t)(deadline / 1000000000);
  ts.tv_nsec = (long)(deadline % 1000000000);
  return ts;
}

/* ---- parking ----------------------------------------------------------------
 */

#if USE_FUTEX

static int park_os(_Atomic uint32_t *word, uint32_t expected,
                   concur__deadline deadline) {
  struct timespec ts;
  struct timespec *tsp = NULL;
  if (deadline != CONCUR__NO_DEADLINE) {
    ts = to_timespec(deadline);
    tsp = &ts;
  }
  long rc = syscall(SYS_futex, (uint32_t *)(uintptr_t)word,
                    FUTEX_WAIT_BITSET | FUTEX_PRIVATE_FLAG, expected, tsp, NULL,
                    FUTEX_BITSET_MATCH_ANY);
  if (rc == -1 && errno == ETIMEDOUT) {
    return CONCUR_ETIMEDOUT;
  }
  return 0; /* woken, value changed (EAGAIN), or EINTR: caller re-checks */
}

void concur__unpark(_Atomic uint32_t *word, int32_t n) {
  syscall(SYS_futex, (uint32_t *)(uintptr_t)word,
          FUTEX_WAKE | FUTEX_PRIVATE_FLAG, n, NULL, NULL, 0);
}

#else /* condvar fallback */

#define PARK_BUCKETS 64

typedef struct park_bucket {
  pthread_mutex_t mutex;
  pthread_cond_t cond;
} park_bucket;

/*
 * One bucket more than the hash spreads over: test builds give the word that
 * announces parked-count changes (parked_generation) a bucket of its own.
 * Sharing one would make every park broadcast to the threads parked there,
 * which would wake, leave, park again and announce again: a feedback loop
 * in which a test waiting for k parked threads might never see k.
 */
static park_bucket park_table[PARK_BUCKETS + 1];
static pthread_once_t park_once = PTHREAD_ONCE_INIT;

static void park_init_buckets(void) {
  for (size_t i = 0; i < PARK_BUCKETS + 1; i++) {
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_mutex_init(&park_table[i].mutex, NULL);
    pthread_cond_init(&park_table[i].cond, &attr);
    pthread_condattr_destroy(&attr);
  }
}

/*
 * In a forked child the buckets may hold the parent's vanished waiters (a
 * broadcast would then wait for them forever) or a mutex locked by a thread
 * that does not exist: start the child with fresh buckets. No prepare
 * handler locks them, since other modules' prepare handlers take
 * concur__mutex, which parks in these very buckets.
 */
static void park_init(void) {
  park_init_buckets();
  pthread_atfork(NULL, NULL, park_init_buckets);
}

static park_bucket *bucket_of(const void *addr) {
#ifdef CONCUR_TESTING
  if (addr == (const void *)(uintptr_t)&parked_generation) {
    return &park_table[PARK_BUCKETS];
  }
#endif
  uintptr_t h = (uintptr_t)addr;
  h ^= h >> 17;
  h *= (uintptr_t)0x9E3779B97F4A7C15u;
  return &park_table[(h >> 7) % PARK_BUCKETS];
}

static int park_os(_Atomic uint32_t *word, uint32_t expected,
                   concur__deadline deadline) {
  pthread_once(&park_once, park_init);
  park_bucket *b = bucket_of(word);
  int result = 0;
  pthread_mutex_lock(&b->mutex);
  if (atomic_load_explicit(word, memory_order_relaxed) == expected) {
    if (deadline == CONCUR__NO_DEADLINE) {
      pthread_cond_wait(&b->cond, &b->mutex);
    } else {
      struct timespec ts = to_timespec(deadline);
      if (pthread_cond_timedwait(&b->cond, &b->mutex, &ts) == ETIMEDOUT) {
        result = CONCUR_ETIMEDOUT;
      }
    }
  }
  pthread_mutex_unlock(&b->mutex);
  return result;
}

void concur__unpark(_Atomic uint32_t *word, int32_t n) {
  (void)n;
  pthread_once(&park_once, park_init);
  park_bucket *b = bucket_of(word);
  pthread_mutex_lock(&b->mutex);
  pthread_mutex_unlock(&b->mutex);
  pthread_cond_broadcast(&b->cond);
}

#endif

int concur__park(_Atomic uint32_t *word, uint32_t expected,
                 concur__deadline deadline, const void *key) {
  if (concur__deadline_passed(deadline)) {
    return CONCUR_ETIMEDOUT;
  }
#ifdef CONCUR_TESTING
  if (key != NULL) {
    parked_add(key, 1);
  }
#else
  (void)key;
#endif
  int rc = park_os(word, expected, deadline);
#ifdef CONCUR_TESTING
  if (key != NULL) {
    parked_add(key, -1);
  }
#endif
  /* A wake-up that raced with the deadline is reported as a wake-up; the
   * caller's own re-check decides. A timeout is never reported early. */
  if (rc == CONCUR_ETIMEDOUT && !concur__deadline_passed(deadline)) {
    rc = 0;
  }
  return rc;
}

/* ---- the internal mutex
 * ------------------------------------------------------ */

/* About one futex round trip on current x86 machines. */
#define MUTEX_SPINS 100

static int mutex_lock_slow(concur__mutex *m, concur__deadline deadline,
                           const void *key) {
  for (int i = 0; i < MUTEX_SPINS; i++) {
    uint32_t s = atomic_load_explicit(&m->state, memory_order_relaxed);
    if (s == 0 && concur__mutex_trylock(m)) {
      return 0;
    }
    if (s == 2) {
      break; /* others are already parked: spinning would only steal a core */
    }
    concur__cpu_relax();
  }
  while (atomic_exchange_explicit(&m->state, 2, memory_order_acquire) != 0) {
    if (concur__park(&m->state, 2, deadline, key) == CONCUR_ETIMEDOUT) {
      /* One last try: a release may have raced with the deadline. */
      if (atomic_exchange_explicit(&m->state, 2, memory_order_acquire) == 0) {
        return 0;
      }
      return CONCUR_ETIMEDOUT;
    }
  }
  return 0;
}

void concur__mutex_lock(concur__mutex *m, const void *key) {
  if (!concur__mutex_trylock(m)) {
    (void)mutex_lock_slow(m, CONCUR__NO_DEADLINE, key);
  }
}

int concur__mutex_lock_until(concur__mutex *m, concur__deadline deadline,
                             const void *key) {
  if (concur__mutex_trylock(m)) {
    return 0;
  }
  return mutex_lock_slow(m, deadline, key);
}

bool concur__mutex_unlock(concur__mutex *m) {
  uint32_t prev = atomic_exchange_explicit(&m->state, 0, memory_order_release);
  if (prev == 2) {
    concur__unpark(&m->state, 1);
  }
  return prev != 0;
}

/* ---- memory
 * ------------------------------------------------------------------- */

void *concur__malloc(size_t size) {
#ifdef CONCUR_TESTING
  if (fault_hit(CONCUR__FAULT_ALLOC)) {
    return NULL;
  }
#endif
  return malloc(size);
}

void *concur__calloc(size_t count, size_t size) {
#ifdef CONCUR_TESTING
  if (fault_hit(CONCUR__FAULT_ALLOC)) {
    return NULL;
  }
#endif
  return calloc(count, size);
}

void concur__free(void *ptr) {
  free(ptr);
}

/* ---- threads
 * -------------------------------------------------------------------- */

int concur__thread_spawn(pthread_t *out, size_t stack_size, bool block_signals,
                         void *(*fn)(void *), void *arg) {
#ifdef CONCUR_TESTING
  if (fault_hit(CONCUR__FAULT_THREAD)) {
    return CONCUR_EAGAIN;
  }
#endif
  pthread_attr_t attr;
  if (pthread_attr_init(&attr) != 0) {
    return CONCUR_ENOMEM;
  }
  int rc = 0;
  if (stack_size != 0 && pthread_attr_setstacksize(&attr, stack_size) != 0) {
    rc = CONCUR_EINVAL;
  }
  sigset_t all;
  sigset_t old;
  if (rc == 0 && block_signals) {
    /* The new thread inherits the mask in force at creation; synchronous
     * signals (SIGSEGV, SIGFPE, ...) are delivered whatever the mask. */
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
  }
  if (rc == 0) {
    int err = pthread_create(out, &attr, fn, arg);
    if (err == EAGAIN) {
      rc = CONCUR_EAGAIN;
    } else if (err == EINVAL) {
      rc = CONCUR_EINVAL;
    } else if (err != 0) {
      rc = CONCUR_ENOMEM;
    }
  }
  if (block_signals) {
    pthread_sigmask(SIG_SETMASK, &old, NULL);
  }
  pthread_attr_destroy(&attr);
  return rc;
}

void concur__thread_set_os_name(pthread_t thread, const char *name) {
#if defined(__linux__)
  char buf[16];
  size_t n = strlen(name);
  if (n > sizeof buf - 1) {
    n = sizeof buf - 1;
  }
  memcpy(buf, name, n);
  buf[n] = '\0';
  (void)pthread_setname_np(thread, buf);
#else
  (void)thread;
  (void)name;
#endif
}

void concur__thread_get_os_name(pthread_t thread, char *buf, size_t len) {
  if (len == 0) {
    return;
  }
  buf[0] = '\0';
#if defined(__linux__)
  char tmp[16];
  if (pthread_getname_np(thread, tmp, sizeof tmp) == 0) {
    snprintf(buf, len, "%s", tmp);
  }
#else
  (void)thread;
#endif
}

uint64_t concur__native_id(void) {
#if defined(__linux__)
  return (uint64_t)syscall(SYS_gettid);
#else
  return (uint64_t)(uintptr_t)pthread_self();
#endif
}

int concur__cpu_count(void) {
#if defined(__linux__)
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof set, &set) == 0) {
    int n = CPU_COUNT(&set);
    if (n > 0) {
      return n;
    }
  }
#endif
  long n = sysconf(_SC_NPROCESSORS_ONLN);
  return n > 0 ? (int)n : 1;
}

/* ---- failure
 * --------------------------------------------------------------------- */

void concur__panic(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fputs("concur: fatal: ", stderr);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
  abort();
}

/* ---- test hooks
 * --------------------------------------------------------------------- */

#ifdef CONCUR_TESTING

/*
 * Fault counters and the parked-thread table use relaxed atomics only, so the
 * test hooks add no happens-before edges that could hide a race from TSan.
 */
static _Atomic long fault_nth[CONCUR__FAULT_KINDS];
static _Atomic long fault_count[CONCUR__FAULT_KINDS];
static _Atomic int fault_persistent[CONCUR__FAULT_KINDS];

void concur__fault_arm(concur__fault_kind kind, long n, int persistent) {
  atomic_store_explicit(&fault_count[kind], 0, memory_order_relaxed);
  atomic_store_explicit(&fault_persistent[kind], persistent,
                        memory_order_relaxed);
  atomic_store_explicit(&fault_nth[kind], n, memory_order_relaxed);
}

long concur__fault_calls(concur__fault_kind kind) {
  return atomic_load_explicit(&fault_count[kind], memory_order_relaxed);
}

static bool fault_hit(concur__fault_kind kind) {
  long call =
      atomic_fetch_add_explicit(&fault_count[kind], 1, memory_order_relaxed) +
      1;
  long nth = atomic_load_explicit(&fault_nth[kind], memory_order_relaxed);
  if (nth <= 0) {
    return false;
  }
  if (call == nth) {
    return true;
  }
  return call > nth &&
         atomic_load_explicit(&fault_persistent[kind], memory_order_relaxed);
}

/* Keys are never removed (a lookup may race with a removal); under ASan
 * freed addresses are not reused, so size for tens of thousands of objects. */
#define PARKED_SLOTS 65536

typedef struct parked_slot {
  _Atomic(const void *) key;
  _Atomic long count;
} parked_slot;

static parked_slot parked_table[PARKED_SLOTS];

static parked_slot *parked_find(const void *key, bool insert) {
  uintptr_t h = ((uintptr_t)key >> 4) * (uintptr_t)0x9E3779B97F4A7C15u;
  for (size_t i = 0; i < PARKED_SLOTS; i++) {
    parked_slot *s = &parked_table[(h + i) % PARKED_SLOTS];
    const void *k = atomic_load_explicit(&s->key, memory_order_relaxed);
    if (k == key) {
      return s;
    }
    if (k == NULL) {
      if (!insert) {
        return NULL;
      }
      const void *expected = NULL;
      if (atomic_compare_exchange_strong_explicit(&s->key, &expected, key,
                                                  memory_order_relaxed,
                                                  memory_order_relaxed) ||
          expected == key) {
        return s;
      }
    }
  }
  concur__panic("test parked-thread table is full");
}

static void parked_add(const void *key, int delta) {
  parked_slot *s = parked_find(key, true);
  atomic_fetch_add_explicit(&s->count, delta, memory_order_relaxed);
  atomic_fetch_add_explicit(&parked_generation, 1, memory_order_relaxed);
  concur__unpark(&parked_generation, INT32_MAX);
}

size_t concur__test_parked(const void *key) {
  parked_slot *s = parked_find(key, false);
  long n =
      s == NULL ? 0 : atomic_load_explicit(&s->count, memory_order_relaxed);
  return n < 0 ? 0 : (size_t)n;
}

int concur__test_await_parked(const void *key, size_t k, int64_t timeout_ns) {
  concur__deadline deadline;
  int rc = concur__deadline_from_timeout(timeout_ns, &deadline);
  if (rc != 0) {
    return rc;
  }
  for (;;) {
    uint32_t gen =
        atomic_load_explicit(&parked_generation, memory_order_relaxed);
    if (concur__test_parked(key) >= k) {
      return 0;
    }
    if (concur__park(&parked_generation, gen, deadline, NULL) ==
        CONCUR_ETIMEDOUT) {
      return concur__test_parked(key) >= k ? 0 : CONCUR_ETIMEDOUT;
    }
  }
}

#endif /* CONCUR_TESTING */
