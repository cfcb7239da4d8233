/* test_api_redis_url.c: the --redis URL (api/redis_url.c): defaults, user/password with
 * percent-escapes, IPv6, db, and the refusals (rediss://, other schemes, bad port/db, trailing
 * junk); error messages never carry the password. */
#include <string.h>

#include "../../api/redis_url.h"
#include "test.h"

static void test_defaults(void)
{
    redis_url_t u;
    char err[REDIS_URL_ERR_LEN];
    REQUIRE(redis_url_parse("redis://localhost", &u, err) == 0);
    CHECK_STR(u.host, "localhost");
    CHECK_EQ(u.port, 6379);
    CHECK_EQ(u.db, 0);
    CHECK_STR(u.user, "");
    CHECK_STR(u.password, "");
    REQUIRE(redis_url_parse("redis://redis-0.redis.wsgw.svc:6380/", &u, err) == 0);
    CHECK_STR(u.host, "redis-0.redis.wsgw.svc");
    CHECK_EQ(u.port, 6380);
    CHECK_EQ(u.db, 0);
    char d[64];
    redis_url_describe(&u, d, sizeof d);
    CHECK_STR(d, "redis-0.redis.wsgw.svc:6380/0");
}

static void test_auth_db_ipv6(void)
{
    redis_url_t u;
    char err[REDIS_URL_ERR_LEN];
    REQUIRE(redis_url_parse("redis://:s%40cr%3At@127.0.0.1:7000/5", &u, err) == 0);
    CHECK_STR(u.user, "");
    CHECK_STR(u.password, "s@cr:t");
    CHECK_STR(u.host, "127.0.0.1");
    CHECK_EQ(u.port, 7000);
    CHECK_EQ(u.db, 5);
    REQUIRE(redis_url_parse("redis://wsapi:pw@[::1]:6379/15", &u, err) == 0);
    CHECK_STR(u.user, "wsapi");
    CHECK_STR(u.password, "pw");
    CHECK_STR(u.host, "::1");
    CHECK_EQ(u.db, 15);
    char d[64];
    redis_url_describe(&u, d, sizeof d);
    CHECK_STR(d, "[::1]:6379/15");
    CHECK(strstr(d, "pw") == NULL);
    REQUIRE(redis_url_parse("redis://[::1]", &u, err) == 0);
    CHECK_EQ(u.port, 6379);
}

static void test_refusals(void)
{
    redis_url_t u;
    char err[REDIS_URL_ERR_LEN];
    static const char *const bad[] = {
        "", "localhost:6379", "http://localhost", "redis://", "redis://:6379", "redis://h:0",
        "redis://h:65536", "redis://h:12x", "redis://h/abc", "redis://h/1?x=y", "redis://h/1#f",
        "redis://h o", "redis://[::1", "redis://[]:1", "redis://[::1]x", "redis://u@h",
        "redis://:p%4@h", "redis://:p%00@h",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err[0] = 0;
        int rv = redis_url_parse(bad[i], &u, err);
        if (rv != -1)
            fprintf(stderr, "accepted: %s\n", bad[i]);
        CHECK_EQ(rv, -1);
        CHECK(err[0] != 0);
    }
    CHECK_EQ(redis_url_parse("rediss://h:6380", &u, err), -1);
    CHECK(strstr(err, "TLS") != NULL);
    CHECK_EQ(redis_url_parse("redis://:hunter2@h:bad", &u, err), -1);
    CHECK(strstr(err, "hunter2") == NULL);
    CHECK_STR(u.password, ""); /* cleared on failure */
}

int main(void)
{
    RUN(test_defaults);
    RUN(test_auth_db_ipv6);
    RUN(test_refusals);
    return TEST_REPORT();
}
