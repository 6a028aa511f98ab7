/**
 * @file concur.h
 * @brief The umbrella header: every public concur module.
 */
#ifndef CONCUR_H
#define CONCUR_H

#include "concur/base.h"
#include "concur/executor.h"
#include "concur/future.h"
#include "concur/queue.h"
#include "concur/sync.h"
#include "concur/thread.h"
#include "concur/thread_pool.h"

#endif /* CONCUR_H */
