/*
 * Thread-local storage: Python's threading.local as one pointer per thread.
 *
 * Design
 * - A concur_local is a pthread key and the destructor given to it; the C
 *   library stores each thread's value and calls the destructor with a
 *   thread's non-NULL value when that thread ends (after its start routine
 *   returns), in that thread. For a concur thread that is after its
 *   function and failure hook returned and before any join of it returns,
 *   since join pthread_joins the OS thread.
 * - Threads involved: any; get and set touch only the caller's own value, so
 *   they need no lock. The struct is immutable after concur_local_new.
 * - Freeing the slot deletes the key: values still set are forgotten, not
 *   destroyed, as pthread_key_delete does (their owners free them).
 */
#include "thread/thread_internal.h"

#include <errno.h>

struct concur_local {
  pthread_key_t key;               /* immutable after init */
  concur_destructor_fn destructor; /* immutable after init */
};

int concur_local_new(concur_local **out, concur_destructor_fn destructor) {
  if (out == NULL) {
    return CONCUR_EINVAL;
  }
  concur_local *local = concur__malloc(sizeof *local);
  if (local == NULL) {
    return CONCUR_ENOMEM;
  }
  local->destructor = destructor;
  int err = pthread_key_create(&local->key, destructor);
  if (err != 0) {
    concur__free(local);
    return err == EAGAIN ? CONCUR_EAGAIN : CONCUR_ENOMEM;
  }
  *out = local;
  return 0;
}

void concur_local_free(concur_local *local) {
  if (local == NULL) {
    return;
  }
  (void)pthread_key_delete(local->key);
  concur__free(local);
}

void *concur_local_get(concur_local *local) {
  if (local == NULL) {
    return NULL;
  }
  return pthread_getspecific(local->key);
}

int concur_local_set(concur_local *local, void *value) {
  if (local == NULL) {
    return CONCUR_EINVAL;
  }
  int err = pthread_setspecific(local->key, value);
  if (err != 0) {
    return err == ENOMEM ? CONCUR_ENOMEM : CONCUR_EINVAL;
  }
  return 0;
}
