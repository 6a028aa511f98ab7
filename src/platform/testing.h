/*
 * Test-only hooks of the platform seam. Compiled in only when the library is
 * built with CONCUR_TESTING (builds that build the tests); release builds do
 * not have these symbols. Tests include this header directly.
 */
#ifndef CONCUR_PLATFORM_TESTING_H
#define CONCUR_PLATFORM_TESTING_H

#include <stddef.h>
#include <stdint.h>

typedef enum concur__fault_kind {
  CONCUR__FAULT_ALLOC,  /* concur__malloc and concur__calloc return NULL */
  CONCUR__FAULT_THREAD, /* concur__thread_spawn returns CONCUR_EAGAIN */
  CONCUR__FAULT_KINDS
} concur__fault_kind;

/**
 * Arms a fault: the nth call of that kind from now fails (1 = the next one),
 * and, when persistent, every call after it too. n = 0 disarms. Resets the
 * call counter.
 */
void concur__fault_arm(concur__fault_kind kind, long n, int persistent);

/** Calls of that kind since it was last armed. */
long concur__fault_calls(concur__fault_kind kind);

/** Threads parked right now with this key (see concur__park). */
size_t concur__test_parked(const void *key);

/**
 * Blocks until at least k threads are parked with this key: 0, or
 * CONCUR_ETIMEDOUT. Lets a test wait for waiters instead of sleeping.
 */
int concur__test_await_parked(const void *key, size_t k, int64_t timeout_ns);

#endif /* CONCUR_PLATFORM_TESTING_H */
