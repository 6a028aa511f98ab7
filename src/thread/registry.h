/*
 * Private to the library: what other modules (the thread pool) may keep in
 * the process-wide registry of registry.c, the one piece of global mutable
 * state ARCHITECTURE.md allows. Off every hot path: members are added when
 * an object is made and removed when it is freed.
 */
#ifndef CONCUR_REGISTRY_H
#define CONCUR_REGISTRY_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

/*
 * An object that process exit must shut down (a thread pool), embedded in
 * it. At exit, before the non-daemon threads are joined, the registry calls
 * at_exit(member) once for every member still listed, one at a time and
 * without its lock; a concurrent remove waits until that call returned. In
 * a forked child the list starts empty: the inherited members have no
 * threads there, and removing one changes nothing.
 */
typedef struct concur__reg_member {
  void (*at_exit)(struct concur__reg_member *member); /* immutable */
  /* The registry lock: */
  struct concur__reg_member *prev, *next;
  uint32_t gen;   /* the fork generation it was listed in */
  int exit_state; /* what the exit handler did with it */
  bool listed;
  _Atomic uint32_t released; /* atomic: 1 once at_exit returned */
} concur__reg_member;

/* Lists a member (registers the exit and fork handlers the first time). */
void concur__registry_member_add(concur__reg_member *member,
                                 void (*at_exit)(concur__reg_member *member));

/* Unlists it, first waiting for an at_exit call in progress on it. */
void concur__registry_member_remove(concur__reg_member *member);

#endif /* CONCUR_REGISTRY_H */
