/*
 * Floor 1: the operating-system seam. Private: no public header includes it.
 *
 * Design
 * - Time: every deadline is an absolute CLOCK_MONOTONIC instant in
 *   nanoseconds (concur__deadline); CONCUR__NO_DEADLINE means none. A
 *   timeout is turned into a deadline once, on entry to a blocking call.
 * - Parking: concur__park() blocks the caller while a 32-bit word still holds
 *   an expected value, until concur__unpark() on that word, the deadline, or
 *   a spurious wake-up. Callers always re-check their own condition in a
 *   loop, so a spurious return is harmless. On Linux it is a futex waiting on
 *   CLOCK_MONOTONIC; the fallback (forced by the CMake option
 *   CONCUR_PARK_CONDVAR) hashes the word's address onto a table of
 *   mutex + condition variable buckets.
 * - concur__mutex: the library's own small lock, built on parking, used for
 *   internal state. It does not know its owner; see src/sync for the public
 *   Lock that wraps it.
 * - Fault seam: allocation and thread creation go through concur__malloc,
 *   concur__calloc and concur__thread_spawn so that test builds
 *   (CONCUR_TESTING) can make the Nth call fail; see testing.h.
 */
#ifndef CONCUR_PLATFORM_H
#define CONCUR_PLATFORM_H

#include "concur/base.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- time ---------------------------------------------------------------- */

/** An absolute CLOCK_MONOTONIC instant in nanoseconds. */
typedef int64_t concur__deadline;
#define CONCUR__NO_DEADLINE INT64_MAX

/** Now, on CLOCK_MONOTONIC, in nanoseconds. */
int64_t concur__now_ns(void);

/**
 * Turns a relative timeout into an absolute deadline, saturating at
 * CONCUR__NO_DEADLINE. CONCUR_FOREVER gives no deadline; CONCUR_NOWAIT gives
 * "now". Returns CONCUR_EINVAL for a negative timeout (out untouched).
 */
int concur__deadline_from_timeout(int64_t timeout_ns, concur__deadline *out);

/** True once the deadline has passed. Never true for CONCUR__NO_DEADLINE. */
bool concur__deadline_passed(concur__deadline deadline);

/* ---- parking ---------------------------------------------------------------
 */

/**
 * Blocks while *word == expected, until woken, the deadline passes, or a
 * spurious wake-up. Returns CONCUR_ETIMEDOUT once the deadline has passed
 * (checked before blocking too), else 0; never any other value.
 *
 * `key` names the object the caller waits in (a Lock, a queue, ...). Test
 * builds count parked threads per key so that tests can wait until k threads
 * are blocked (concur__test_await_parked); other builds ignore it. May be
 * NULL.
 */
int concur__park(_Atomic uint32_t *word, uint32_t expected,
                 concur__deadline deadline, const void *key);

/** Wakes up to n threads parked on word (INT32_MAX: all of them). */
void concur__unpark(_Atomic uint32_t *word, int32_t n);

/** One iteration of a bounded spin: a CPU pause hint. */
static inline void concur__cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  __asm__ __volatile__("yield" ::: "memory");
#else
  atomic_signal_fence(memory_order_seq_cst);
#endif
}

/*
 * Asks for the cache line at p with the intent to write it, so that a later
 * store finds it owned. x86's PREFETCHW is a no-op on processors without it
 * (its opcode has always decoded as one), so it needs no feature test;
 * elsewhere the compiler's write prefetch.
 */
static inline void concur__prefetch_write(const void *p) {
#if defined(__x86_64__) || defined(__i386__)
  __asm__ __volatile__("prefetchw %0" : : "m"(*(const char *)p));
#else
  __builtin_prefetch(p, 1, 3);
#endif
}

/* ---- asymmetric fences ---------------------------------------------------
 */

/*
 * A store-then-load pair (Dekker) where one side runs on every operation and
 * the other rarely: the frequent side stores, calls
 * concur__asym_fence_light() (a compiler barrier only: no instruction), then
 * loads; the rare side stores, calls concur__asym_fence_heavy(), which makes
 * every other running thread of the process pass a full barrier
 * (membarrier(2), private expedited), then loads. Either the frequent
 * side's store is visible to the rare side's load, or the frequent side's
 * load sees the rare side's store.
 *
 * Valid only where concur__asym_fence_ready() returned true: the process is
 * registered for the heavy fence (once; a fork child inherits it).
 * Otherwise both sides must use seq_cst operations. The CONCUR_PARK_CONDVAR
 * build (the portable fallback) always answers false, so that CI runs both
 * ways.
 */
bool concur__asym_fence_ready(void);

static inline void concur__asym_fence_light(void) {
  atomic_signal_fence(memory_order_seq_cst);
}

/*
 * The heavy side. Returns false if the fence could not be made (only if the
 * process lost access to membarrier(2) after it registered, for instance
 * under a seccomp filter installed later): the caller must then not rely on
 * the pair and wait by other means.
 */
bool concur__asym_fence_heavy(void);

/* ---- the library's internal mutex -----------------------------------------
 */

/* 0: unlocked, 1: locked, 2: locked and maybe contended. */
typedef struct concur__mutex {
  _Atomic uint32_t state; /* atomic */
} concur__mutex;
#define CONCUR__MUTEX_INIT                                                     \
  { 0 }

/** Locks, blocking without a deadline. */
void concur__mutex_lock(concur__mutex *m, const void *key);
/**
 * Locks before the deadline: 0, or CONCUR_ETIMEDOUT (then not locked).
 */
int concur__mutex_lock_until(concur__mutex *m, concur__deadline deadline,
                             const void *key);
/** Locks if free: true when it took the lock. */
static inline bool concur__mutex_trylock(concur__mutex *m) {
  uint32_t zero = 0;
  return atomic_compare_exchange_strong_explicit(
      &m->state, &zero, 1, memory_order_acquire, memory_order_relaxed);
}
/**
 * Unlocks. Returns false, changing nothing, when the mutex was not locked
 * (the caller decides whether that is an error or a bug).
 */
bool concur__mutex_unlock(concur__mutex *m);
/** True while locked (a snapshot). */
static inline bool concur__mutex_is_locked(concur__mutex *m) {
  return atomic_load_explicit(&m->state, memory_order_relaxed) != 0;
}

/* ---- memory, with the fault seam ------------------------------------------
 */

void *concur__malloc(size_t size);
void *concur__calloc(size_t count, size_t size);
void concur__free(void *ptr);

/* ---- threads ---------------------------------------------------------------
 */

/**
 * Starts a joinable OS thread. stack_size 0 means the platform default.
 * block_signals: the new thread starts with every asynchronous signal
 * blocked (library threads), else it inherits the caller's mask.
 * Returns 0, CONCUR_EAGAIN (no thread could be made, including an injected
 * fault), CONCUR_EINVAL (a stack size the platform refuses), CONCUR_ENOMEM.
 */
int concur__thread_spawn(pthread_t *out, size_t stack_size, bool block_signals,
                         void *(*fn)(void *), void *arg);

/** Applies a name to an OS thread, truncated to what the OS keeps (15 bytes on
 * Linux). */
void concur__thread_set_os_name(pthread_t thread, const char *name);

/** Reads an OS thread's name into buf (always NUL-terminated when len > 0). */
void concur__thread_get_os_name(pthread_t thread, char *buf, size_t len);

/** The kernel's id of the calling thread (gettid on Linux). */
uint64_t concur__native_id(void);

/** The number of CPUs this process may run on (at least 1). */
int concur__cpu_count(void);

/* ---- failure ----------------------------------------------------------------
 */

/** Prints "concur: fatal: <message>" to stderr and aborts: for misuse only. */
_Noreturn void concur__panic(const char *fmt, ...)
    __attribute__((format(printf, 1, 2)));

#endif /* CONCUR_PLATFORM_H */
