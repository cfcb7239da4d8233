/* test.h: minimal unit-test harness. Each TEST prints "ok NAME" or "FAIL NAME"; the program
 * ends with "N passed, N failed" and exits non-zero on any failure. tests/run.sh counts them. */
#ifndef WSGW_TEST_H
#define WSGW_TEST_H

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

static int t__pass, t__fail, t__case_failed;

#define CHECK(cond)                                                                            \
    do {                                                                                       \
        if (!(cond)) {                                                                         \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);           \
            t__case_failed = 1;                                                                \
        }                                                                                      \
    } while (0)

#define CHECK_EQ(a, b)                                                                         \
    do {                                                                                       \
        long long t__a = (long long)(a), t__b = (long long)(b);                                \
        if (t__a != t__b) {                                                                    \
            fprintf(stderr, "%s:%d: CHECK_EQ failed: %s == %s (%lld != %lld)\n", __FILE__,     \
                    __LINE__, #a, #b, t__a, t__b);                                             \
            t__case_failed = 1;                                                                \
        }                                                                                      \
    } while (0)

#define CHECK_STR(a, b)                                                                        \
    do {                                                                                       \
        const char *t__a = (a), *t__b = (b);                                                   \
        if (!t__a || !t__b || strcmp(t__a, t__b) != 0) {                                       \
            fprintf(stderr, "%s:%d: CHECK_STR failed: '%s' != '%s'\n", __FILE__, __LINE__,     \
                    t__a ? t__a : "(null)", t__b ? t__b : "(null)");                           \
            t__case_failed = 1;                                                                \
        }                                                                                      \
    } while (0)

/* Stop the current test (after CHECKs that make the rest meaningless). */
#define REQUIRE(cond)                                                                          \
    do {                                                                                       \
        CHECK(cond);                                                                           \
        if (t__case_failed)                                                                    \
            return;                                                                            \
    } while (0)

#define RUN(fn)                                                                                \
    do {                                                                                       \
        t__case_failed = 0;                                                                    \
        fn();                                                                                  \
        if (t__case_failed) {                                                                  \
            t__fail++;                                                                         \
            printf("FAIL %s\n", #fn);                                                          \
        } else {                                                                               \
            t__pass++;                                                                         \
            printf("ok %s\n", #fn);                                                            \
        }                                                                                      \
        fflush(stdout);                                                                        \
    } while (0)

#define TEST_REPORT()                                                                          \
    (printf("%d passed, %d failed\n", t__pass, t__fail), t__fail ? 1 : 0)

#endif
