/**
 * @file concur/base.h
 * @brief Conventions shared by every concur module: error codes, timeouts,
 * sentinels, the task signature, the export macro and the version.
 *
 * Every fallible function returns 0 (or a count or index >= 0 where it says
 * so) on success and a negative `CONCUR_E*` code on failure. Codes that have
 * an errno equivalent are `-errno` (on Linux); the library's own codes live
 * in a reserved range below -30000 so they never collide with an errno.
 *
 * Every blocking call takes `int64_t timeout_ns`: `CONCUR_NOWAIT` (0) polls,
 * `CONCUR_FOREVER` (INT64_MAX) never times out, any other positive value is a
 * relative timeout turned once, on entry, into an absolute CLOCK_MONOTONIC
 * deadline. A timed wait never returns `CONCUR_ETIMEDOUT` before its timeout
 * has elapsed, whatever the wall clock does. A negative timeout is
 * `CONCUR_EINVAL` unless the function documents the `CONCUR_DEFAULT` sentinel.
 */
#ifndef CONCUR_BASE_H
#define CONCUR_BASE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/** Marks a function as part of the public ABI (symbols are hidden otherwise).
 */
#if defined(CONCUR_STATIC)
#define CONCUR_API
#elif defined(__GNUC__)
#define CONCUR_API __attribute__((visibility("default")))
#else
#define CONCUR_API
#endif

/** Marks a fallible function whose result must be checked. */
#if defined(__GNUC__)
#define CONCUR_NODISCARD __attribute__((warn_unused_result))
#else
#define CONCUR_NODISCARD
#endif

#define CONCUR_VERSION_MAJOR 0
#define CONCUR_VERSION_MINOR 1
#define CONCUR_VERSION_PATCH 0
/** The version as one comparable number: major * 10000 + minor * 100 + patch.
 */
#define CONCUR_VERSION_HEX                                                     \
  (CONCUR_VERSION_MAJOR * 10000 + CONCUR_VERSION_MINOR * 100 +                 \
   CONCUR_VERSION_PATCH)
#define CONCUR_VERSION_STRING "0.1.0"

/** Poll: a blocking call with this timeout never blocks. */
#define CONCUR_NOWAIT ((int64_t)0)
/** Wait without a deadline. */
#define CONCUR_FOREVER INT64_MAX
/**
 * Sentinel for "use the default" in options fields and in the few calls that
 * document it (such as concur_barrier_wait), where 0 is a meaningful value.
 */
#define CONCUR_DEFAULT (-1)
/** Sentinel for "no bound" in size options (such as a queue's maxsize). */
#define CONCUR_UNBOUNDED (-2)

/*
 * The error lists: X(NAME, value, message). Values of the errno-backed codes
 * are Linux's; src/base/error.c checks them against <errno.h> at build time.
 * The library's own codes follow in a reserved range.
 */
#define CONCUR_ERRNO_MAP(X)                                                    \
  X(EPERM, -1, "operation not permitted: the caller does not own it")          \
  X(EAGAIN, -11, "resource temporarily unavailable: no thread could be made")  \
  X(ENOMEM, -12, "out of memory")                                              \
  X(EINVAL, -22, "invalid argument")                                           \
  X(EDEADLK, -35, "operation would deadlock")                                  \
  X(EOVERFLOW, -75, "value too large: released above the bound")               \
  X(ETIMEDOUT, -110, "timed out")                                              \
  X(ECANCELED, -125, "cancelled")

#define CONCUR_OWN_ERROR_MAP(X)                                                \
  X(ESHUTDOWN, -30001, "shut down")                                            \
  X(EBROKEN, -30002, "broken")                                                 \
  X(ESTATE, -30003, "invalid state for this operation")                        \
  X(EREJECTED, -30004, "rejected: the executor is saturated")                  \
  X(ETASK, -30005, "the task failed; read its own code from its handle")       \
  X(EWORKER, -30006, "the worker running the task died")

/** Every error: the errno-backed ones, then the library's own. */
#define CONCUR_ERROR_MAP(X) CONCUR_ERRNO_MAP(X) CONCUR_OWN_ERROR_MAP(X)

/** Error codes. Every one is negative; 0 is success. */
typedef enum concur_error {
#define CONCUR_ERR_ENUM(name, value, msg) CONCUR_##name = (value),
  CONCUR_ERROR_MAP(CONCUR_ERR_ENUM)
#undef CONCUR_ERR_ENUM
} concur_error;

/**
 * A task: the signature shared by threads, timers and executors.
 *
 * @param arg     the caller's argument, owned by whoever the API says.
 * @param result  where the task may store its result pointer (initially NULL).
 * @return 0 on success; any nonzero value is the task's failure code, the C
 *         analogue of an exception, and is reported through CONCUR_ETASK.
 */
typedef int (*concur_task_fn)(void *arg, void **result);

/**
 * Describes an error code in words.
 *
 * @param code a value returned by a concur function (0 or negative).
 * @return a static string; "success" for 0, "unknown error" for a code that
 *         is not in the list. Never NULL. Thread-safe.
 */
CONCUR_API const char *concur_strerror(int code);

/**
 * Names an error code, such as "CONCUR_ETIMEDOUT".
 *
 * @return a static string; "CONCUR_OK" for 0, "CONCUR_E?" for an unknown
 *         code. Never NULL. Thread-safe.
 */
CONCUR_API const char *concur_err_name(int code);

/** The library's version string, such as "0.1.0", of the linked copy. */
CONCUR_API const char *concur_version(void);

/** The linked copy's version as CONCUR_VERSION_HEX computes it. */
CONCUR_API int concur_version_hex(void);

#ifdef __cplusplus
}
#endif

#endif /* CONCUR_BASE_H */
