/* A program built against an installed concur: it uses the umbrella header
 * and checks it runs against the version it was compiled with. */
#include <concur.h>
#include <stdio.h>

int main(void) {
  concur_lock *lock = NULL;
  if (concur_lock_new(&lock) != 0) {
    return 1;
  }
  int rc = concur_lock_acquire(lock, CONCUR_NOWAIT);
  rc = rc == 0 ? concur_lock_release(lock) : rc;
  concur_lock_free(lock);
  if (rc != 0 || concur_version_hex() != CONCUR_VERSION_HEX) {
    fprintf(stderr, "consumer: %s\n", concur_strerror(rc));
    return 1;
  }
  printf("consumer linked against concur %s\n", concur_version());
  return 0;
}
