/*
 * Private to src/executor: what the algorithms (map, parallel_for, task
 * groups, invoke) include. They use a backend only through the operations
 * table (executor_internal.h), calling ex->ops->submit directly with
 * records they build themselves (fn never NULL), so each works on every
 * backend and skips the public calls' argument checks.
 */
#ifndef CONCUR_EXECUTOR_ALGO_H
#define CONCUR_EXECUTOR_ALGO_H

#include "executor/executor_internal.h"
#include "platform/platform.h"

#endif /* CONCUR_EXECUTOR_ALGO_H */
