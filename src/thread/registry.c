/*
 * The process-wide thread registry: the one piece of global mutable state
 * ARCHITECTURE.md allows.
 *
 * Design
 * - What it holds: the list of live concur threads (from the moment their
 *   start succeeds until their function and failure hook returned), the
 *   list of members (objects that exit must shut down: thread pools, see
 *   registry.h), the failure hook, and counters for identifiers, default
 *   names and fork generations. Everything is guarded by one concur__mutex,
 * `reg_lock`, except the counters, which are atomics.
 * - Off the hot paths: the lock is taken when a thread starts and ends, by
 *   renames, counts and the failure hook, never by a join, a local or a
 *   once that has already run.
 * - Process exit: an atexit handler, registered at the first start or the
 *   first member, first calls every member's at_exit (pinning it under the
 *   lock, calling without it, so that a concurrent remove waits), then joins
 *   every non-daemon thread in the list, one at a time, taking a reference
 *   to it under the lock and joining without the lock, until neither pass
 *   finds anything; threads started meanwhile are found on the next pass. A
 * concur thread that calls exit() skips this (see thread.h), except in a forked
 * child where the forking thread is the main thread.
 * - Fork: pthread_atfork handlers, registered at the first start or the
 *   first once, take the lock in prepare, so the child always inherits a
 *   consistent list, and release it in the parent. The child resets the lock,
 *   bumps the fork generation, keeps only the forking thread in the list
 *   (moved to the new generation, with its new kernel id) and marks every
 *   other handle DONE, dropping the reference its vanished thread held.
 *   Threads that had already left the list are recognized later by their
 *   older generation: nobody pthread_joins them in the child.
 * - Lock order: reg_lock is a leaf: nothing else is taken while it is held
 *   except the OS calls of thread creation and naming.
 * - Nothing here is ever torn down, so daemon threads may keep using it
 *   while the process exits.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "thread/registry.h"
#include "thread/thread_internal.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The registry's lock and everything it guards. */
static concur__mutex reg_lock = CONCUR__MUTEX_INIT;
static concur_thread *reg_head;         /* guarded by reg_lock */
static size_t reg_count;                /* guarded by reg_lock */
static concur__reg_member *member_head; /* guarded by reg_lock */
static concur_excepthook_fn hook_fn;    /* guarded by reg_lock; NULL: default */
static void *hook_arg;                  /* guarded by reg_lock */

/* Atomic counters. Relaxed is enough for all of them: each only has to hand
 * out distinct values, and nothing else is published through them. */
static _Atomic uint64_t next_ident = 1;
static _Atomic uint64_t next_name = 1;
static _Atomic uint32_t fork_gen;
/* Written only by the child handler while the child is single-threaded. */
static _Atomic uint64_t fork_survivor;

/* The calling thread's handle (concur threads only) and identifier. */
static _Thread_local concur_thread *my_thread;
static _Thread_local uint64_t my_ident;

static pthread_once_t fork_once = PTHREAD_ONCE_INIT;
static pthread_once_t exit_once = PTHREAD_ONCE_INIT;

void concur__registry_lock(void) {
  concur__mutex_lock(&reg_lock, &reg_lock);
}

void concur__registry_unlock(void) {
  (void)concur__mutex_unlock(&reg_lock);
}

void concur__registry_add_locked(concur_thread *thread) {
  assert(concur__mutex_is_locked(&reg_lock));
  thread->reg_prev = NULL;
  thread->reg_next = reg_head;
  if (reg_head != NULL) {
    reg_head->reg_prev = thread;
  }
  reg_head = thread;
  thread->registered = true;
  reg_count++;
}

void concur__registry_remove_locked(concur_thread *thread) {
  assert(concur__mutex_is_locked(&reg_lock));
  if (!thread->registered) {
    return;
  }
  if (thread->reg_prev != NULL) {
    thread->reg_prev->reg_next = thread->reg_next;
  } else {
    reg_head = thread->reg_next;
  }
  if (thread->reg_next != NULL) {
    thread->reg_next->reg_prev = thread->reg_prev;
  }
  thread->reg_prev = NULL;
  thread->reg_next = NULL;
  thread->registered = false;
  reg_count--;
}

uint32_t concur__fork_generation(void) {
  return atomic_load_explicit(&fork_gen, memory_order_relaxed);
}

uint64_t concur__fork_survivor(void) {
  return atomic_load_explicit(&fork_survivor, memory_order_relaxed);
}

uint64_t concur__next_ident(void) {
  return atomic_fetch_add_explicit(&next_ident, 1, memory_order_relaxed);
}

uint64_t concur__next_name_number(void) {
  return atomic_fetch_add_explicit(&next_name, 1, memory_order_relaxed);
}

concur_thread *concur__current(void) {
  return my_thread;
}

void concur__set_current(concur_thread *thread, uint64_t ident) {
  my_thread = thread;
  if (ident != 0) {
    my_ident = ident;
  }
}

void concur__excepthook_get_locked(concur_excepthook_fn *fn, void **arg) {
  assert(concur__mutex_is_locked(&reg_lock));
  *fn = hook_fn;
  *arg = hook_arg;
}

void concur_thread_set_excepthook(concur_excepthook_fn fn, void *arg) {
  concur__registry_lock();
  hook_fn = fn;
  hook_arg = fn != NULL ? arg : NULL;
  concur__registry_unlock();
}

/* ---- fork --------------------------------------------------------------- */

static void fork_prepare(void) {
  concur__registry_lock();
}

static void fork_parent(void) {
  concur__registry_unlock();
}

static void fork_child(void) {
  /* Single-threaded from here until the child starts a thread. The forking
   * thread holds reg_lock (prepare) while the list is trimmed, then the lock
   * is reset rather than unlocked: there are no waiters left to wake. */
  uint32_t gen = atomic_load_explicit(&fork_gen, memory_order_relaxed) + 1;
  atomic_store_explicit(&fork_gen, gen, memory_order_relaxed);
  atomic_store_explicit(&fork_survivor, concur_thread_get_ident(),
                        memory_order_relaxed);

  concur_thread *self = my_thread;
  concur_thread *t = reg_head;
  while (t != NULL) {
    concur_thread *next = t->reg_next;
    if (t != self) {
      concur__registry_remove_locked(t);
      /* Not alive here: joins return at once, native_id does not wait. */
      atomic_store_explicit(&t->id_ready, 1, memory_order_relaxed);
      atomic_store_explicit(&t->state, THREAD_DONE, memory_order_relaxed);
      /* The vanished thread's own reference. */
      concur__thread_unref(t);
    }
    t = next;
  }
  if (self != NULL) {
    /* The forking thread lives on as the child's main thread; joiners it had
     * in the parent do not exist here. */
    self->gen = gen;
    atomic_store_explicit(&self->native_id, concur__native_id(),
                          memory_order_relaxed);
    atomic_store_explicit(&self->joiners, 0, memory_order_relaxed);
    if (atomic_load_explicit(&self->reap, memory_order_relaxed) == REAP_BUSY) {
      atomic_store_explicit(&self->reap, REAP_IDLE, memory_order_relaxed);
    }
  }
  /* The inherited members have no threads here (their removal is a no-op:
   * their generation is older). */
  member_head = NULL;
  atomic_store_explicit(&reg_lock.state, 0, memory_order_relaxed);
}

static void init_fork(void) {
  if (pthread_atfork(fork_prepare, fork_parent, fork_child) != 0) {
    concur__panic("pthread_atfork failed: no memory for the fork handlers");
  }
}

void concur__registry_init_fork(void) {
  (void)pthread_once(&fork_once, init_fork);
}

/* ---- process exit ------------------------------------------------------- */

enum { EXIT_UNSEEN = 0, EXIT_PINNED = 1, EXIT_RELEASED = 2 };

/* Calls at_exit on every member not yet seen; true if it called any. */
static bool members_at_exit(void) {
  bool any = false;
  for (;;) {
    concur__registry_lock();
    concur__reg_member *m = member_head;
    while (m != NULL && m->exit_state != EXIT_UNSEEN) {
      m = m->next;
    }
    if (m != NULL) {
      m->exit_state = EXIT_PINNED; /* a concurrent remove waits for us */
    }
    concur__registry_unlock();
    if (m == NULL) {
      return any;
    }
    any = true;
    m->at_exit(m);
    concur__registry_lock();
    m->exit_state = EXIT_RELEASED;
    atomic_store_explicit(&m->released, 1, memory_order_release);
    concur__registry_unlock();
    /* Only the address is used: m may already be freed. */
    concur__unpark(&m->released, INT32_MAX);
  }
}

/* Joins the non-daemon threads; true if it joined any. */
static bool join_threads(void) {
  bool any = false;
  for (;;) {
    concur__registry_lock();
    concur_thread *t = reg_head;
    while (t != NULL &&
           (t == my_thread ||
            atomic_load_explicit(&t->daemon, memory_order_relaxed))) {
      t = t->reg_next;
    }
    if (t != NULL) {
      /* The thread's own reference keeps t alive while it is listed. */
      concur__thread_ref(t);
    }
    concur__registry_unlock();
    if (t == NULL) {
      return any;
    }
    any = true;
    concur__thread_wait_exit(t);
    concur__thread_unref(t);
  }
}

/*
 * Process exit: the members first (Python shuts its executors down before
 * it joins threads), then the threads; again while either pass found
 * something (a joined thread may have made a pool, a pool's task a thread).
 */
static void at_exit(void) {
  bool threads =
      !(my_thread != NULL && concur__native_id() != (uint64_t)getpid());
  /* A concur thread that called exit() joins no thread: the others may be
   * waiting for it. */
  for (;;) {
    bool any = members_at_exit();
    if (threads && join_threads()) {
      any = true;
    }
    if (!any) {
      return;
    }
  }
}

static void init_exit(void) {
  if (atexit(at_exit) != 0) {
    concur__panic("atexit failed: cannot register the join of threads");
  }
}

void concur__registry_init_exit(void) {
  (void)pthread_once(&exit_once, init_exit);
}

/* ---- members ------------------------------------------------------------ */

void concur__registry_member_add(concur__reg_member *member,
                                 void (*at_exit_fn)(concur__reg_member *)) {
  concur__registry_init_fork();
  concur__registry_init_exit();
  member->at_exit = at_exit_fn;
  member->exit_state = EXIT_UNSEEN;
  atomic_init(&member->released, 0);
  concur__registry_lock();
  member->gen = concur__fork_generation();
  member->prev = NULL;
  member->next = member_head;
  if (member_head != NULL) {
    member_head->prev = member;
  }
  member_head = member;
  member->listed = true;
  concur__registry_unlock();
}

void concur__registry_member_remove(concur__reg_member *member) {
  for (;;) {
    concur__registry_lock();
    if (member->exit_state != EXIT_PINNED ||
        member->gen != concur__fork_generation()) {
      break;
    }
    concur__registry_unlock();
    /* The exit handler is shutting this member down: wait for it. */
    while (atomic_load_explicit(&member->released, memory_order_acquire) == 0) {
      (void)concur__park(&member->released, 0, CONCUR__NO_DEADLINE, NULL);
    }
  }
  if (member->listed && member->gen == concur__fork_generation()) {
    if (member->prev != NULL) {
      member->prev->next = member->next;
    } else {
      member_head = member->next;
    }
    if (member->next != NULL) {
      member->next->prev = member->prev;
    }
  }
  member->listed = false;
  concur__registry_unlock();
}

/* ---- identity of the calling thread ------------------------------------- */

uint64_t concur_thread_get_ident(void) {
  if (my_ident == 0) {
    my_ident = concur__next_ident();
  }
  return my_ident;
}

uint64_t concur_thread_get_native_id(void) {
  return concur__native_id();
}

concur_thread *concur_thread_current(void) {
  return my_thread;
}

int concur_thread_current_name(char *buf, size_t len) {
  if (buf == NULL || len == 0) {
    return CONCUR_EINVAL;
  }
  char name[CONCUR_THREAD_NAME_MAX + 1];
  if (my_thread != NULL) {
    concur__registry_lock();
    memcpy(name, my_thread->name, sizeof name);
    concur__registry_unlock();
  } else if (concur__native_id() == (uint64_t)getpid()) {
    strcpy(name, "MainThread");
  } else {
    concur__thread_get_os_name(pthread_self(), name, sizeof name);
  }
  size_t n = strlen(name);
  size_t copy = n < len - 1 ? n : len - 1;
  memcpy(buf, name, copy);
  buf[copy] = '\0';
  return (int)n;
}

size_t concur_thread_active_count(void) {
  concur__registry_lock();
  size_t n = reg_count;
  concur__registry_unlock();
  return n;
}
