/* test_log.c: logfmt quoting, level check before argument evaluation, rate limiting. */
#include <stdlib.h>
#include <unistd.h>

#include "log.h"
#include "test.h"

static int evaluated;
static int side_effect(void)
{
    return ++evaluated;
}

static void test_level_checked_before_args(void)
{
    log_level = LOG_WARN;
    log_debug("never", "x=%d", side_effect());
    log_info("never", "x=%d", side_effect());
    CHECK_EQ(evaluated, 0);
    log_warn("shown", "x=%d", side_effect());
    CHECK_EQ(evaluated, 1);
    CHECK_EQ(log_set_level("debug"), 0);
    CHECK_EQ(log_level, LOG_DEBUG);
    CHECK_EQ(log_set_level("loud"), -1);
    log_level = LOG_INFO;
}

static void test_quote(void)
{
    char q[64];
    CHECK_STR(log_quote(q, sizeof q, "plain"), "plain");
    CHECK_STR(log_quote(q, sizeof q, "two words"), "\"two words\"");
    CHECK_STR(log_quote(q, sizeof q, "a\"b"), "\"a\\\"b\"");
    CHECK_STR(log_quote(q, sizeof q, "k=v"), "\"k=v\"");
    CHECK_STR(log_quote(q, sizeof q, ""), "\"\"");
    CHECK_STR(log_quote(q, sizeof q, "nl\n"), "\"nl\\x0a\"");
    char small[6];
    log_quote(small, sizeof small, "a long value with spaces");
    CHECK(strlen(small) < sizeof small);
}

/* Redirect stderr to a pipe and check the line format and the rate limit. */
static void test_line_format_and_ratelimit(void)
{
    int p[2];
    REQUIRE(pipe(p) == 0);
    int saved = dup(2);
    dup2(p[1], 2);
    log_info("conn closed", "code=%d reason=%s", 1008, "slow");
    for (int i = 0; i < 5; i++)
        log_rl_warn("ring full", "thread=%d", i);
    dup2(saved, 2);
    close(saved);
    close(p[1]);
    char buf[2048] = {0};
    ssize_t n = read(p[0], buf, sizeof buf - 1);
    close(p[0]);
    CHECK(n > 0);
    CHECK(strncmp(buf, "ts=", 3) == 0);
    CHECK(strstr(buf, " level=info msg=\"conn closed\" code=1008 reason=slow\n") != NULL);
    /* five calls within a second: one line */
    const char *first = strstr(buf, "msg=\"ring full\" thread=0 suppressed=0\n");
    CHECK(first != NULL);
    CHECK(first && strstr(first + 16, "ring full") == NULL);
}

int main(void)
{
    RUN(test_level_checked_before_args);
    RUN(test_quote);
    RUN(test_line_format_and_ratelimit);
    return TEST_REPORT();
}
