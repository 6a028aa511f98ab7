/*
 * Error names and messages, generated from the one list in concur/base.h.
 */
#include "concur/base.h"

#include <errno.h>

#define CHECK_ERRNO(name, value, msg)                                          \
  _Static_assert((value) == -(name), "CONCUR_" #name " must equal -" #name);
CONCUR_ERRNO_MAP(CHECK_ERRNO)
#undef CHECK_ERRNO

const char *concur_strerror(int code) {
  if (code == 0) {
    return "success";
  }
  switch (code) {
#define MSG_CASE(name, value, msg)                                             \
  case (value):                                                                \
    return (msg);
    CONCUR_ERROR_MAP(MSG_CASE)
#undef MSG_CASE
  default:
    return "unknown error";
  }
}

const char *concur_err_name(int code) {
  if (code == 0) {
    return "CONCUR_OK";
  }
  switch (code) {
#define NAME_CASE(name, value, msg)                                            \
  case (value):                                                                \
    return "CONCUR_" #name;
    CONCUR_ERROR_MAP(NAME_CASE)
#undef NAME_CASE
  default:
    return "CONCUR_E?";
  }
}

const char *concur_version(void) {
  return CONCUR_VERSION_STRING;
}

int concur_version_hex(void) {
  return CONCUR_VERSION_HEX;
}
