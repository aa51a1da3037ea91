/*
 * testutil.h — the few assertions our tests need, header-only.
 *
 * CHECK(cond) records a failure with file:line and goes on; REQUIRE(cond)
 * records it and returns from the test function. TEST_MAIN runs the listed
 * functions and exits 1 if any check failed, so every test can fail.
 */
#ifndef PAR_TESTUTIL_H
#define PAR_TESTUTIL_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int tu_failures;
static int tu_checks;

#define CHECK(c)                                                               \
        do {                                                                   \
                tu_checks++;                                                   \
                if (!(c)) {                                                    \
                        tu_failures++;                                         \
                        fprintf(stderr, "FAIL %s:%d: %s\n", __FILE__,          \
                                __LINE__, #c);                                 \
                }                                                              \
        } while (0)

#define CHECKF(c, ...)                                                         \
        do {                                                                   \
                tu_checks++;                                                   \
                if (!(c)) {                                                    \
                        tu_failures++;                                         \
                        fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__,          \
                                __LINE__, #c);                                 \
                        fprintf(stderr, __VA_ARGS__);                          \
                        fputc('\n', stderr);                                   \
                }                                                              \
        } while (0)

#define REQUIRE(c)                                                             \
        do {                                                                   \
                tu_checks++;                                                   \
                if (!(c)) {                                                    \
                        tu_failures++;                                         \
                        fprintf(stderr, "FAIL %s:%d: %s (fatal)\n", __FILE__,  \
                                __LINE__, #c);                                 \
                        return;                                                \
                }                                                              \
        } while (0)

static inline int tu_streq(const char *a, const char *b)
{
        return a && b && !strcmp(a, b);
}

static inline const char *tu_str(const char *s)
{
        return s ? s : "(null)";
}

#define CHECK_STR(a, b)                                                        \
        CHECKF(tu_streq((a), (b)), "'%s' != '%s'", tu_str(a), tu_str(b))

#define RUN(fn)                                                                \
        do {                                                                   \
                int before = tu_failures;                                      \
                fprintf(stderr, "-- %s\n", #fn);                               \
                fn();                                                          \
                fprintf(stderr, "   %s %s\n", #fn,                             \
                        tu_failures == before ? "ok" : "FAILED");              \
        } while (0)

#define TEST_DONE()                                                            \
        do {                                                                   \
                fprintf(stderr, "%d checks, %d failed\n", tu_checks,           \
                        tu_failures);                                          \
                return tu_failures ? 1 : 0;                                    \
        } while (0)

/* An env var or a default (e.g. the stack's addresses). */
static inline const char *tu_env(const char *name, const char *def)
{
        const char *v = getenv(name);
        return v && *v ? v : def;
}

#endif
