/*
 * The test harness shared by every test binary.
 *
 * A test file defines concur_test_suite() and nothing else at file scope
 * that main needs; harness.c runs the suite with Check in fork mode, so every
 * case runs in its own process with its own timeout. Cases made with
 * harness_tcase() check that they leave no thread and no fd behind.
 *
 * Rules for tests: worker threads record what they see, the main thread
 * asserts; timing checks are bounds, never exact times; a test that needs k
 * threads blocked asks concur__test_await_parked instead of sleeping.
 */
#ifndef CONCUR_TEST_HARNESS_H
#define CONCUR_TEST_HARNESS_H

#include <check.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "concur.h"
#include "platform/platform.h"
#include "platform/testing.h"

/** Defined by each test file: the suite to run. */
Suite *concur_test_suite(void);

/**
 * A test case with a timeout in seconds (Check scales it by
 * CK_TIMEOUT_MULTIPLIER) and a fixture that fails the case if it leaves a
 * thread or an fd behind.
 */
TCase *harness_tcase(const char *name, double timeout_s);

/** The factor by which timing upper bounds stretch in slow builds (>= 1). */
int64_t harness_slack(void);

/** CONCUR_TEST_SCALE (default 1): multiplies stress-test sizes. */
long harness_scale(void);

/**
 * The seed for randomized tests: CONCUR_TEST_SEED if set, else fresh. It is
 * printed once per process, so a failure can be replayed.
 */
uint64_t harness_seed(void);

/** A small fast PRNG (xorshift64*) for tests; state must start nonzero. */
uint64_t harness_rand(uint64_t *state);

/** Now on CLOCK_MONOTONIC in nanoseconds. */
int64_t harness_now_ns(void);

/** Threads in this process now (from /proc/self/task). */
int harness_thread_count(void);

/** Open fds in this process now (from /proc/self/fd). */
int harness_fd_count(void);

/**
 * Waits, bounded by HARNESS_LONG_NS, until the process has exactly n
 * threads: for detached threads, whose OS thread gives no notice when it is
 * gone. Returns false if the count never got there.
 */
bool harness_await_thread_count(int n);

/** A one-shot gate that threads park on (key = the gate) until it opens. */
typedef struct harness_gate {
  _Atomic uint32_t open;
} harness_gate;

/** Blocks until the gate is open. */
void harness_gate_wait(harness_gate *g);

/** Opens the gate and wakes every thread waiting at it. */
void harness_gate_open(harness_gate *g);

/**
 * Asserts that a timed wait that should have timed out took at least
 * timeout_ns and at most 10x (times the slack) of it plus 50 ms scheduling
 * allowance. Call with the measured elapsed time.
 */
#define HARNESS_ASSERT_TIMED_OUT(elapsed_ns, timeout_ns)                       \
  do {                                                                         \
    int64_t e_ = (elapsed_ns);                                                 \
    int64_t t_ = (timeout_ns);                                                 \
    ck_assert_msg(e_ >= t_, "returned early: %lld ns < %lld ns",               \
                  (long long)e_, (long long)t_);                               \
    ck_assert_msg(e_ <= (10 * t_ + 50000000) * harness_slack(),                \
                  "returned late: %lld ns for %lld ns", (long long)e_,         \
                  (long long)t_);                                              \
  } while (0)

/** ck_assert that a concur call returned the expected code, naming both. */
#define ck_assert_rc(expr, expected)                                           \
  do {                                                                         \
    int rc_ = (expr);                                                          \
    int ex_ = (expected);                                                      \
    ck_assert_msg(rc_ == ex_, "%s returned %s, expected %s", #expr,            \
                  concur_err_name(rc_), concur_err_name(ex_));                 \
  } while (0)

/** A generous bound for "this should happen promptly" waits: 10 s * slack. */
#define HARNESS_LONG_NS (10000000000LL * harness_slack())

#endif /* CONCUR_TEST_HARNESS_H */
