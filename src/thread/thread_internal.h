/*
 * The thread module's private header: the thread handle and the
 * process-wide registry (registry.c) that thread.c, timer.c and once.c share.
 *
 * Design
 * - A concur_thread is reference counted: one reference for the user's
 *   handle, one for the running OS thread, and a temporary one for the
 *   at-exit joiner. Whoever drops the last one frees it, so a handle freed
 *   while its thread runs (detached) is released by the thread itself.
 * - State word (the futex word joiners park on, key = the handle):
 *   NEW -> RUNNING (the starter, under the registry lock, once the OS thread
 *   exists) -> DONE (the thread, under the registry lock, after the function
 *   and the failure hook returned). Both transitions happen under the
 *   registry lock, so a fork always sees a consistent registry and no thread
 *   is RUNNING without being registered.
 * - Reap word (second futex word, key = the handle): IDLE -> REAPING (one
 *   joiner, or free, owns the pthread_join/pthread_detach) -> GONE. A timed
 *   reaper that runs out of time goes back to IDLE.
 * - The registry lock guards the list of live threads, every handle's name,
 *   the daemon flag while not started, and the failure hook. It is the
 *   library's only lock in this module; it is never held while user code
 *   runs, and is taken only when a thread starts, ends, is renamed or
 *   counted, never on a join.
 */
#ifndef CONCUR_THREAD_INTERNAL_H
#define CONCUR_THREAD_INTERNAL_H

#include "concur/thread.h"
#include "platform/platform.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

enum {
  THREAD_NEW = 0,
  THREAD_RUNNING = 1,
  THREAD_DONE = 2,
};

enum {
  REAP_IDLE = 0,
  REAP_BUSY = 1,
  REAP_GONE = 2,
};

struct concur_thread {
  /* Immutable after concur_thread_new. */
  concur_task_fn fn;
  void *arg;
  size_t stack_size;
  /* Immutable after concur_thread_new: a library thread (a Timer's) blocks
   * every asynchronous signal. */
  bool library;

  /* Atomic: the user's handle, the running thread, an at-exit joiner. */
  _Atomic uint32_t refs;
  /* Atomic: THREAD_*; written under the registry lock, read anywhere. */
  _Atomic uint32_t state;
  /* Atomic: REAP_*. */
  _Atomic uint32_t reap;
  /* Atomic: user threads inside concur_thread_join (misuse check in free). */
  _Atomic uint32_t joiners;
  /* Atomic: 1 once native_id is published (the word native_id parks on). */
  _Atomic uint32_t id_ready;
  /* Atomic: the kernel id, published by the thread itself. */
  _Atomic uint64_t native_id;
  /* Atomic: set under the registry lock at start, 0 before. */
  _Atomic uint64_t ident;
  /* Atomic (read without the lock by concur_thread_is_daemon); written
   * only under the registry lock and only while THREAD_NEW. */
  _Atomic bool daemon;

  /* Written under the registry lock by the starter before state becomes
   * RUNNING (release), so whoever reads state != NEW (acquire) may read
   * them without the lock. The forked child's handler rewrites gen for the
   * forking thread while the child is single-threaded. */
  pthread_t os;
  uint32_t gen; /* the fork generation the OS thread belongs to */

  /* Written by the thread before state becomes DONE (release); read after
   * reading DONE (acquire). */
  void *result;
  int exit_code;

  /* Guarded by the registry lock. */
  char name[CONCUR_THREAD_NAME_MAX + 1];
  concur_thread *reg_prev;
  concur_thread *reg_next;
  bool registered;
};

/* ---- registry.c --------------------------------------------------------- */

/** Takes / releases the registry lock. */
void concur__registry_lock(void);
void concur__registry_unlock(void);

/** Adds a starting thread / removes an ending one; the lock must be held. */
void concur__registry_add_locked(concur_thread *thread);
void concur__registry_remove_locked(concur_thread *thread);

/**
 * Registers the fork handlers (once per process). Called before anything
 * whose correctness in a forked child depends on them: the first start, a
 * once's first run.
 */
void concur__registry_init_fork(void);

/** Registers the at-exit join (once per process); called at the first start. */
void concur__registry_init_exit(void);

/**
 * The process image's fork generation: 0 in the original process, bumped in
 * every forked child. A thread started in an older generation does not
 * exist in this process (unless it is the forking thread, whose handle the
 * child handler moves to the new generation).
 */
uint32_t concur__fork_generation(void);

/** The ident of the thread that forked this process image (0: none). */
uint64_t concur__fork_survivor(void);

/** A fresh, never-used thread identifier (nonzero). */
uint64_t concur__next_ident(void);

/** A fresh default-name number (1, 2, ...). */
uint64_t concur__next_name_number(void);

/** The calling thread's concur handle (NULL for other threads). */
concur_thread *concur__current(void);

/** Sets the calling thread's handle and identifier (the thread's entry). */
void concur__set_current(concur_thread *thread, uint64_t ident);

/** Reads the failure hook and its argument; the lock must be held. */
void concur__excepthook_get_locked(concur_excepthook_fn *fn, void **arg);

/* ---- thread.c ----------------------------------------------------------- */

/** Drops one reference; the last one frees the handle. */
void concur__thread_unref(concur_thread *thread);

/** Takes one more reference (the caller already holds one, or the lock). */
void concur__thread_ref(concur_thread *thread);

/**
 * Waits, without a deadline, until the thread is done and reaped: the
 * at-exit join. Not counted as a user joiner.
 */
void concur__thread_wait_exit(concur_thread *thread);

/** concur_thread_new with the library flag (a Timer's thread). */
int concur__thread_new_ex(concur_thread **out, concur_task_fn fn, void *arg,
                          const concur_thread_options *opts, bool library);

#endif /* CONCUR_THREAD_INTERNAL_H */
