/*
 * testutil.h — the few assertions our tests need, and the one way a test
 * program's main() is written; part of the test harness (par_harness,
 * tests/harness/), compiled once and linked by every test.
 *
 * CHECK(cond) records a failure with file:line and goes on; REQUIRE(cond)
 * records it and returns from the test function. TEST_MAIN(a, b, …) is a
 * test program's main(): it runs the listed functions in order and exits 1
 * if any check failed, so every test can fail. TEST_MAIN_WITH(setup,
 * teardown, a, b, …) runs setup first (nonzero: the program fails at once)
 * and teardown after the last test.
 */
#ifndef PAR_TESTUTIL_H
#define PAR_TESTUTIL_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Counts over the whole program (shared by the harness's helpers). */
extern int tu_failures;
extern int tu_checks;

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

/* Both non-NULL and equal. */
int tu_streq(const char *a, const char *b);

/* s, or "(null)" for printing. */
const char *tu_str(const char *s);

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
const char *tu_env(const char *name, const char *def);

/* Writes text to dir/name; 0 on success. */
int tu_write_file(const char *dir, const char *name, const char *text);

/* tests/fixtures/recipes/<name>.json (under PARALLEL_SOURCE_DIR), loaded
 * with default_timeout_ms for its steps; NULL (the reason printed) when
 * it does not load. */
struct par_recipe;
struct par_recipe *tu_recipe_fixture(const char *name, int default_timeout_ms);

typedef void (*tu_test_fn)(void);

/* Runs setup (may be NULL; nonzero fails the program), every test in
 * order (names: the stringified list, for the report), then teardown (may
 * be NULL); returns main()'s exit code. */
int tu_main(int (*setup)(void), void (*teardown)(void), const tu_test_fn *tests,
            size_t n, const char *names);

#define TEST_MAIN_WITH(setup, teardown, ...)                                   \
        int main(void)                                                         \
        {                                                                      \
                static const tu_test_fn tu_tests_[] = {__VA_ARGS__};           \
                return tu_main(setup, teardown, tu_tests_,                     \
                               sizeof(tu_tests_) / sizeof(tu_tests_[0]),       \
                               #__VA_ARGS__);                                  \
        }

#define TEST_MAIN(...) TEST_MAIN_WITH(NULL, NULL, __VA_ARGS__)

/* TEST_MAIN_WITH for a test whose setup and teardown are a helper's, on
 * one context: setup(&ctx, what) (nonzero fails the program) and
 * teardown(&ctx); e.g. SU_TEST_MAIN, MU_TEST_MAIN. */
#define TEST_MAIN_CTX(setup, teardown, ctx, what, ...)                         \
        static int tu_setup_(void)                                             \
        {                                                                      \
                return setup(&(ctx), what);                                    \
        }                                                                      \
        static void tu_teardown_(void)                                         \
        {                                                                      \
                teardown(&(ctx));                                              \
        }                                                                      \
        TEST_MAIN_WITH(tu_setup_, tu_teardown_, __VA_ARGS__)

#endif
