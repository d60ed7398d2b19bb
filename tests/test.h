/*
 * test.h - a tiny test framework: TEST(name) { ... } registers a test;
 * CHECK(cond) records a failure and continues, REQUIRE(cond) stops the test.
 * Each test runs in its own forked process (a crash fails only that test).
 * SKIP("why") marks a test skipped (only for data that is truly optional).
 */
#ifndef IMCAP_TEST_H
#define IMCAP_TEST_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef void (*test_fn)(void);
void test_register(const char *name, const char *file, test_fn fn);
void test_fail_at(const char *file, int line, const char *fmt, ...);
void test_skip(const char *why);
/* Path to ../shared (env IMCAP_SHARED, else ../shared from the repo root). */
const char *test_shared_dir(void);
/* Path to a file under the repo root (tests run from the repo root). */
const char *test_path(const char *rel);
/* A fresh temporary directory for this test (removed after the run). */
const char *test_tmpdir(void);
/* Path of the imcap CLI built next to the test binary (REQUIREs it exists). */
const char *test_imcap_bin(void);
/* Runs cmd through sh: its stdout into out (out_cap bytes, NUL-terminated;
 * discarded if out is NULL), its stderr into err (passed through if err is
 * NULL). Returns the exit status, -1 if it did not exit normally. */
int test_run(const char *cmd, char *out, size_t out_cap, char *err, size_t err_cap);

#define TEST(name)                                                                  \
    static void test_##name(void);                                                  \
    __attribute__((constructor)) static void test_reg_##name(void)                  \
    {                                                                               \
        test_register(#name, __FILE__, test_##name);                                \
    }                                                                               \
    static void test_##name(void)

#define CHECK(cond)                                                                 \
    do {                                                                            \
        if (!(cond)) test_fail_at(__FILE__, __LINE__, "CHECK(%s)", #cond);          \
    } while (0)
#define REQUIRE(cond)                                                               \
    do {                                                                            \
        if (!(cond)) {                                                              \
            test_fail_at(__FILE__, __LINE__, "REQUIRE(%s)", #cond);                 \
            exit(1);                                                                \
        }                                                                           \
    } while (0)
/* REQUIRE that an imcap call returned IMCAP_OK, printing imcap_last_error(). */
#define REQUIRE_OK(expr)                                                            \
    do {                                                                            \
        int st_ = (int)(expr);                                                      \
        if (st_ != 0) {                                                             \
            test_fail_at(__FILE__, __LINE__, "%s -> %d: %s", #expr, st_,            \
                         imcap_last_error());                                       \
            exit(1);                                                                \
        }                                                                           \
    } while (0)
#define CHECK_NEAR(a, b, tol)                                                       \
    do {                                                                            \
        double a_ = (double)(a), b_ = (double)(b);                                  \
        if (!(fabs(a_ - b_) <= (tol)))                                              \
            test_fail_at(__FILE__, __LINE__, "%s = %.9g, %s = %.9g, tol %g", #a, a_,\
                         #b, b_, (double)(tol));                                    \
    } while (0)
#define CHECK_STR(a, b)                                                             \
    do {                                                                            \
        const char *a_ = (a), *b_ = (b);                                            \
        if (!a_ || !b_ || strcmp(a_, b_) != 0)                                      \
            test_fail_at(__FILE__, __LINE__, "%s = \"%s\" != \"%s\"", #a,           \
                         a_ ? a_ : "(null)", b_ ? b_ : "(null)");                   \
    } while (0)
#define SKIP(why)                                                                   \
    do {                                                                            \
        test_skip(why);                                                             \
        return;                                                                     \
    } while (0)

#endif
