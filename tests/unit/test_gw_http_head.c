/* test_gw_http_head.c: the HTTP/1.1 request head parser of the client port (common/http1.c). */
#include <stdlib.h>

#include "http1.h"
#include "test.h"

static const char UPGRADE[] =
    "GET /gateway/ws?user=al%20ice&token=t HTTP/1.1\r\n"
    "Host: x\r\n"
    "Upgrade:  websocket \r\n"
    "Connection: keep-alive, Upgrade\r\n"
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    "Sec-WebSocket-Version: 13\r\n"
    "\r\n";

static int slice_is(gw_slice_t s, const char *want)
{
    return s.n == strlen(want) && memcmp(s.p, want, s.n) == 0;
}

static void test_upgrade_request(void)
{
    char buf[sizeof UPGRADE + 8];
    memcpy(buf, UPGRADE, sizeof UPGRADE - 1);
    memcpy(buf + sizeof UPGRADE - 1, "\x81\x85", 2); /* a frame right behind the head */
    gw_http_req_t r;
    CHECK_EQ(gw_http_parse(buf, sizeof UPGRADE + 1, &r), GW_HTTP_OK);
    CHECK_EQ(r.head_len, sizeof UPGRADE - 1);
    CHECK(slice_is(r.method, "GET"));
    CHECK(slice_is(r.path, "/gateway/ws"));
    CHECK(slice_is(r.query, "user=al%20ice&token=t"));
    CHECK_EQ(r.minor, 1);
    CHECK_EQ(r.nhdr, 5);
    const gw_slice_t *up = gw_http_header(&r, "UPGRADE");
    CHECK(up && slice_is(*up, "websocket")); /* blanks around the value trimmed */
    CHECK(gw_http_has_token(gw_http_header(&r, "connection"), "upgrade"));
    CHECK(!gw_http_has_token(gw_http_header(&r, "connection"), "upgrad"));
    CHECK(!gw_http_has_token(NULL, "upgrade"));
    CHECK(gw_http_header(&r, "origin") == NULL);
    char v[64];
    CHECK_EQ(gw_http_query_arg(r.query, "user", v, sizeof v), 6);
    CHECK_STR(v, "al ice");
    CHECK_EQ(gw_http_query_arg(r.query, "token", v, sizeof v), 1);
    CHECK_EQ(gw_http_query_arg(r.query, "ser", v, sizeof v), -1);
    CHECK_EQ(gw_http_query_arg(r.query, "nope", v, sizeof v), -1);
}

static void test_every_prefix_waits(void)
{
    gw_http_req_t r;
    for (size_t n = 0; n < sizeof UPGRADE - 1; n++)
        if (gw_http_parse(UPGRADE, n, &r) != GW_HTTP_AGAIN) {
            fprintf(stderr, "prefix of %zu bytes not AGAIN\n", n);
            CHECK(0);
            return;
        }
    /* one empty line before the request line is allowed (RFC 9112 §2.2) */
    char buf[sizeof UPGRADE + 2] = "\r\n";
    memcpy(buf + 2, UPGRADE, sizeof UPGRADE);
    CHECK_EQ(gw_http_parse(buf, sizeof buf - 1, &r), GW_HTTP_OK);
    CHECK(slice_is(r.path, "/gateway/ws"));
}

static void test_malformed(void)
{
    static const char *bad[] = {
        "GET /healthz HTTP/1.1\nHost: x\n\n",               /* bare LF */
        "GET /healthz HTTP/1.1\rHost: x\r\n\r\n",           /* CR without LF */
        "GET /healthz HTTP/1.1\r\nHost : x\r\n\r\n",        /* blank before the colon */
        "GET /healthz HTTP/1.1\r\nA: b\r\n  folded\r\n\r\n", /* obs-fold */
        "GET healthz HTTP/1.1\r\n\r\n",                     /* not origin-form */
        "GET http://x/healthz HTTP/1.1\r\n\r\n",            /* absolute-form */
        "GET /healthz HTTP/2.0\r\n\r\n",
        "GET /healthz HTTP/1.2\r\n\r\n",
        "GET /healthz\r\n\r\n",                             /* HTTP/0.9 */
        "GET  /healthz HTTP/1.1\r\n\r\n",                   /* two blanks */
        "G(T /healthz HTTP/1.1\r\n\r\n",                    /* not a token */
        "GET /a\x01 HTTP/1.1\r\n\r\n",                      /* control char in the target */
        "GET /healthz HTTP/1.1\r\nA: b\x01\r\n\r\n",        /* control char in a value */
        "GET /healthz HTTP/1.1\r\n: b\r\n\r\n",             /* empty name */
    };
    gw_http_req_t r;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        if (gw_http_parse(bad[i], strlen(bad[i]), &r) != GW_HTTP_BAD) {
            fprintf(stderr, "not refused: case %zu\n", i);
            CHECK(0);
        }
}

static void test_limits(void)
{
    gw_http_req_t r;
    /* GW_HTTP_MAX_HEADERS headers pass, one more is refused */
    char *b = malloc(64 * (GW_HTTP_MAX_HEADERS + 2));
    for (int extra = 0; extra <= 1; extra++) {
        size_t n = (size_t)sprintf(b, "GET / HTTP/1.1\r\n");
        for (int i = 0; i < GW_HTTP_MAX_HEADERS + extra; i++)
            n += (size_t)sprintf(b + n, "h%d: v\r\n", i);
        n += (size_t)sprintf(b + n, "\r\n");
        CHECK_EQ(gw_http_parse(b, n, &r), extra ? GW_HTTP_BAD : GW_HTTP_OK);
    }
    free(b);
    /* a head that goes on past GW_HTTP_MAX_HEAD is refused, not waited for */
    size_t big = GW_HTTP_MAX_HEAD + 10;
    b = malloc(big);
    memcpy(b, "GET / HTTP/1.1\r\nX: ", 19);
    memset(b + 19, 'a', big - 19);
    CHECK_EQ(gw_http_parse(b, GW_HTTP_MAX_HEAD - 1, &r), GW_HTTP_AGAIN);
    CHECK_EQ(gw_http_parse(b, GW_HTTP_MAX_HEAD, &r), GW_HTTP_BAD);
    CHECK_EQ(gw_http_parse(b, big, &r), GW_HTTP_BAD);
    /* ... also when its end is there, but beyond the limit */
    memcpy(b + big - 4, "\r\n\r\n", 4);
    CHECK_EQ(gw_http_parse(b, big, &r), GW_HTTP_BAD);
    free(b);
}

static void test_decoding(void)
{
    char out[16];
    gw_slice_t s = {"a%2Fb+c", 7};
    CHECK_EQ(gw_http_decode(s, false, out, sizeof out), 5);
    CHECK_STR(out, "a/b+c"); /* a path keeps '+' */
    CHECK_EQ(gw_http_decode(s, true, out, sizeof out), 5);
    CHECK_STR(out, "a/b c"); /* a query argument does not */
    static const char *bad[] = {"%zz", "%4", "%", "a%00b"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        CHECK_EQ(gw_http_decode((gw_slice_t){bad[i], strlen(bad[i])}, true, out, sizeof out), -1);
    CHECK_EQ(gw_http_decode((gw_slice_t){"abcd", 4}, true, out, 4), -1); /* no room for NUL */
    CHECK_EQ(gw_http_decode((gw_slice_t){"abc", 3}, true, out, 4), 3);
    gw_slice_t q = {"x=1&user=&y", 11};
    CHECK_EQ(gw_http_query_arg(q, "user", out, sizeof out), 0); /* present, empty */
    CHECK_EQ(gw_http_query_arg(q, "y", out, sizeof out), -1);   /* no '=': absent */
    CHECK_EQ(gw_http_query_arg(q, "", out, sizeof out), -1);
    CHECK_EQ(gw_http_copy((gw_slice_t){"abcd", 4}, out, 4), -1);
    CHECK_EQ(gw_http_copy((gw_slice_t){"abc", 3}, out, 4), 3);
    CHECK_STR(out, "abc");
}

int main(void)
{
    RUN(test_upgrade_request);
    RUN(test_every_prefix_waits);
    RUN(test_malformed);
    RUN(test_limits);
    RUN(test_decoding);
    return TEST_REPORT();
}
