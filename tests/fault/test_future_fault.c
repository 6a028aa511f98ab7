/*
 * Allocation failure on every allocating path of the future module: each
 * constructor, add_done_callback, set_exception's message copy,
 * concur_task_set_message, concur_wait and as_completed. For each, the nth
 * allocation fails for n = 1, 2, ... until the call succeeds; every failure
 * must be CONCUR_ENOMEM with the objects unchanged and usable, and nothing
 * leaked (ASan's leak check runs at the end of every case).
 */
#include "harness.h"

#include "concur/future.h"

static int dummy_value;
#define VALUE ((void *)&dummy_value)

/* Arms the nth allocation to fail, persistently from there on. */
static void fail_from(long n) {
  concur__fault_arm(CONCUR__FAULT_ALLOC, n, 1);
}

static void disarm(void) {
  concur__fault_arm(CONCUR__FAULT_ALLOC, 0, 0);
}

typedef struct counted {
  int cleanups;
} counted;

static void count_cleanup(void *arg, void *result) {
  (void)result;
  ((counted *)arg)->cleanups++;
}

static int ok_task(void *arg, void **result) {
  (void)arg;
  *result = VALUE;
  return 0;
}

START_TEST(constructors_fail_cleanly_at_every_allocation) {
  for (int which = 0; which < 3; which++) {
    counted c = {0};
    int rc = CONCUR_ENOMEM;
    concur_future *f = NULL;
    long n;
    for (n = 1; n < 10; n++) {
      f = NULL;
      fail_from(n);
      switch (which) {
      case 0:
        rc = concur_future_new(&f);
        break;
      case 1:
        rc = concur_future_new_task(&f, ok_task, &c, count_cleanup);
        break;
      default:
        rc = concur_future_new_full(&f, NULL, &c, count_cleanup, NULL);
        break;
      }
      disarm();
      if (rc == 0) {
        break;
      }
      ck_assert_rc(rc, CONCUR_ENOMEM);
      ck_assert_ptr_null(f);
      ck_assert_int_eq(c.cleanups, 0); /* the caller keeps arg */
    }
    ck_assert_rc(rc, 0);
    ck_assert_int_eq(n, 2); /* one allocation: the future itself */
    concur_future_unref(f);
    ck_assert_int_eq(c.cleanups, which == 0 ? 0 : 1);
  }
}
END_TEST

typedef struct cb_count {
  int calls;
} cb_count;

static void count_cb(concur_future *f, void *arg) {
  (void)f;
  ((cb_count *)arg)->calls++;
}

START_TEST(add_done_callback_fails_cleanly) {
  concur_future *f = NULL;
  ck_assert_rc(concur_future_new(&f), 0);
  cb_count first = {0}, second = {0}, third = {0};
  /* The first callback needs no allocation. */
  fail_from(1);
  ck_assert_rc(concur_future_add_done_callback(f, count_cb, &first), 0);
  /* The second does: it fails, registering nothing and running nothing. */
  ck_assert_rc(concur_future_add_done_callback(f, count_cb, &second),
               CONCUR_ENOMEM);
  disarm();
  ck_assert_rc(concur_future_add_done_callback(f, count_cb, &third), 0);
  ck_assert_rc(concur_future_set_result(f, VALUE), 0);
  ck_assert_int_eq(first.calls, 1);
  ck_assert_int_eq(second.calls, 0);
  ck_assert_int_eq(third.calls, 1);
  /* On a done future nothing is allocated: it runs at once. */
  fail_from(1);
  ck_assert_rc(concur_future_add_done_callback(f, count_cb, &second), 0);
  disarm();
  ck_assert_int_eq(second.calls, 1);
  concur_future_unref(f);
}
END_TEST

START_TEST(set_exception_fails_cleanly_when_the_message_cannot_be_copied) {
  concur_future *f = NULL;
  ck_assert_rc(concur_future_new(&f), 0);
  fail_from(1);
  ck_assert_rc(concur_future_set_exception(f, 5, "lost"), CONCUR_ENOMEM);
  ck_assert(!concur_future_done(f)); /* unchanged */
  /* Without a message nothing is allocated. */
  ck_assert_rc(concur_future_set_exception(f, 5, NULL), 0);
  disarm();
  int code = 0;
  ck_assert_rc(concur_future_exception(f, CONCUR_NOWAIT, &code, NULL), 0);
  ck_assert_int_eq(code, 5);
  concur_future_unref(f);
}
END_TEST

static int message_task(void *arg, void **result) {
  int *rc = arg;
  rc[0] = concur_task_set_message("kept");
  fail_from(1);
  rc[1] = concur_task_set_message("lost");
  disarm();
  *result = NULL;
  return 3;
}

START_TEST(task_set_message_fails_cleanly_and_keeps_the_earlier_one) {
  int rc[2] = {-1, -1};
  concur_future *f = NULL;
  ck_assert_rc(concur_future_new_task(&f, message_task, rc, NULL), 0);
  ck_assert_rc(concur_future_run(f), 0);
  ck_assert_rc(rc[0], 0);
  ck_assert_rc(rc[1], CONCUR_ENOMEM);
  const char *msg = NULL;
  ck_assert_rc(concur_future_exception(f, CONCUR_NOWAIT, NULL, &msg), 0);
  ck_assert_str_eq(msg, "kept");
  concur_future_unref(f);
}
END_TEST

START_TEST(task_run_and_completion_allocate_nothing) {
  concur_future *f = NULL;
  ck_assert_rc(concur_future_new_task(&f, ok_task, NULL, NULL), 0);
  fail_from(1);
  ck_assert_rc(concur_future_run(f), 0);
  void *v = NULL;
  ck_assert_rc(concur_future_result(f, CONCUR_FOREVER, &v), 0);
  long calls = concur__fault_calls(CONCUR__FAULT_ALLOC);
  disarm();
  ck_assert_int_eq(calls, 0);
  ck_assert_ptr_eq(v, VALUE);
  concur_future_unref(f);
}
END_TEST

enum { BIG = 20 };

static void make_futures(concur_future **fs, size_t n) {
  for (size_t i = 0; i < n; i++) {
    ck_assert_rc(concur_future_new(&fs[i]), 0);
    if (i % 2 == 0) {
      ck_assert_rc(concur_future_set_result(fs[i], VALUE), 0);
    }
  }
}

static void unref_all(concur_future **fs, size_t n) {
  for (size_t i = 0; i < n; i++) {
    concur_future_unref(fs[i]);
  }
}

START_TEST(wait_fails_cleanly_beyond_eight_futures) {
  concur_future *fs[BIG];
  make_futures(fs, BIG);
  /* Up to eight futures: no allocation at all. */
  fail_from(1);
  size_t nd = 0;
  ck_assert_rc(concur_wait(fs, 8, CONCUR_NOWAIT, CONCUR_FIRST_COMPLETED, NULL,
                           &nd, NULL, NULL),
               0);
  ck_assert_uint_eq(nd, 4);
  /* More: one work array; its failure is CONCUR_ENOMEM, outputs untouched. */
  nd = 99;
  ck_assert_rc(concur_wait(fs, BIG, CONCUR_NOWAIT, CONCUR_FIRST_COMPLETED, NULL,
                           &nd, NULL, NULL),
               CONCUR_ENOMEM);
  ck_assert_uint_eq(nd, 99);
  disarm();
  ck_assert_rc(concur_wait(fs, BIG, CONCUR_NOWAIT, CONCUR_FIRST_COMPLETED, NULL,
                           &nd, NULL, NULL),
               0);
  ck_assert_uint_eq(nd, BIG / 2);
  /* Blocking waits register nodes but allocate nothing more. */
  for (size_t i = 1; i < BIG; i += 2) {
    if (i != BIG - 1) {
      ck_assert_rc(concur_future_set_result(fs[i], VALUE), 0);
    }
  }
  fail_from(2);
  ck_assert_rc(concur_wait(fs, BIG, 1000000, CONCUR_ALL_COMPLETED, NULL, &nd,
                           NULL, NULL),
               CONCUR_ETIMEDOUT);
  disarm();
  ck_assert_uint_eq(nd, BIG - 1);
  unref_all(fs, BIG);
}
END_TEST

START_TEST(as_completed_fails_cleanly_at_every_allocation) {
  const size_t sizes[] = {3, BIG};
  for (size_t s = 0; s < 2; s++) {
    size_t n = sizes[s];
    concur_future *fs[BIG];
    make_futures(fs, n);
    concur_as_completed *it = NULL;
    int rc = CONCUR_ENOMEM;
    long k;
    for (k = 1; k < 10; k++) {
      fail_from(k);
      rc = concur_as_completed_new(&it, fs, n, CONCUR_NOWAIT);
      disarm();
      if (rc == 0) {
        break;
      }
      ck_assert_rc(rc, CONCUR_ENOMEM);
    }
    ck_assert_rc(rc, 0);
    ck_assert_int_eq(k, n > 8 ? 3 : 2); /* the work array, the iterator */
    /* Iterating allocates nothing. */
    fail_from(1);
    concur_future *f;
    size_t got = 0;
    while ((rc = concur_as_completed_next(it, &f)) == 1) {
      concur_future_unref(f);
      got++;
    }
    disarm();
    ck_assert_rc(rc, CONCUR_ETIMEDOUT);
    ck_assert_uint_eq(got, (n + 1) / 2);
    concur_as_completed_free(it);
    unref_all(fs, n);
  }
}
END_TEST

Suite *concur_test_suite(void) {
  Suite *s = suite_create("future_fault");
  TCase *tc = harness_tcase("enomem", 30);
  tcase_add_test(tc, constructors_fail_cleanly_at_every_allocation);
  tcase_add_test(tc, add_done_callback_fails_cleanly);
  tcase_add_test(tc,
                 set_exception_fails_cleanly_when_the_message_cannot_be_copied);
  tcase_add_test(tc, task_set_message_fails_cleanly_and_keeps_the_earlier_one);
  tcase_add_test(tc, task_run_and_completion_allocate_nothing);
  tcase_add_test(tc, wait_fails_cleanly_beyond_eight_futures);
  tcase_add_test(tc, as_completed_fails_cleanly_at_every_allocation);
  suite_add_tcase(s, tc);
  return s;
}
