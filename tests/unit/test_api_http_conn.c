/* test_api_http_conn.c: ws-api's HTTP/1.1 request state machine (api/http_conn.c): pipelining
 * whole and byte by byte, framing refusals (smuggling shapes), 413/411/408, Expect, HEAD,
 * keep-alive and close, backpressure while answers pile up, answers given later (deferred:
 * --redis) still in order. */
#include <stdio.h>
#include <stdlib.h>

#include "../../api/http_conn.h"
#include "test.h"

/* The handler under test: answers "<METHOD> <path> <body length>:<body>". */
typedef struct seen {
    int n;
    char last[256];
    bool close_next;
} seen_t;

static void handler(void *ud, http_conn_t *c, const http_req_t *r)
{
    seen_t *s = ud;
    s->n++;
    int k = snprintf(s->last, sizeof s->last, "%.*s %.*s %zu:%.*s", (int)r->head->method.n,
                     r->head->method.p, (int)r->head->path.n, r->head->path.p, r->body_len,
                     (int)r->body_len, r->body ? (const char *)r->body : "");
    if (s->close_next)
        http_conn_close_after(c);
    http_conn_respond(c, 200, "text/plain", s->last, (size_t)k);
}

#define FEED(c, lit) http_conn_input((c), (lit), strlen(lit))

/* Everything the connection queued, as a string (taken). */
static char *take(http_conn_t *c)
{
    const uint8_t *p;
    size_t n = http_conn_output(c, &p);
    char *s = malloc(n + 1);
    memcpy(s, p, n);
    s[n] = 0;
    http_conn_sent(c, n);
    return s;
}

static int count(const char *hay, const char *needle)
{
    int n = 0;
    for (const char *p = hay; (p = strstr(p, needle)); p++)
        n++;
    return n;
}

#define SETUP(mb)                                                                              \
    seen_t seen = {0};                                                                         \
    http_conn_cfg_t cfg = {.max_body = (mb), .handler = handler, .ud = &seen};                \
    http_conn_t c;                                                                             \
    http_conn_init(&c, &cfg)

static const char PAIR[] = "POST /v1/push HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}"
                           "POST /v1/push HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}";

static void test_pipelined_pair_whole_and_bytewise(void)
{
    for (int bytewise = 0; bytewise < 2; bytewise++) {
        SETUP(1024);
        if (bytewise)
            for (size_t i = 0; i < sizeof PAIR - 1; i++)
                CHECK_EQ(http_conn_input(&c, PAIR + i, 1), 0);
        else
            CHECK_EQ(http_conn_input(&c, PAIR, sizeof PAIR - 1), 0);
        CHECK_EQ(seen.n, 2);
        char *out = take(&c);
        CHECK_EQ(count(out, "HTTP/1.1 200 OK\r\n"), 2);
        CHECK_EQ(count(out, "POST /v1/push 2:{}"), 2);
        CHECK(!strstr(out, "Connection: close"));
        CHECK_EQ(http_conn_phase(&c), HTTP_PHASE_IDLE);
        CHECK(http_conn_wants_input(&c));
        free(out);
        http_conn_free(&c);
    }
}

static void test_partial_phases(void)
{
    SETUP(1024);
    CHECK_EQ(http_conn_phase(&c), HTTP_PHASE_IDLE);
    FEED(&c, "POST /x HTTP/1.1\r\nHo");
    CHECK_EQ(http_conn_phase(&c), HTTP_PHASE_HEAD);
    FEED(&c, "st: a\r\nContent-Length: 5\r\n\r\nab");
    CHECK_EQ(http_conn_phase(&c), HTTP_PHASE_BODY);
    CHECK_EQ(seen.n, 0);
    FEED(&c, "cde");
    CHECK_EQ(seen.n, 1);
    CHECK_STR(seen.last, "POST /x 5:abcde");
    CHECK_EQ(http_conn_phase(&c), HTTP_PHASE_IDLE);
    http_conn_free(&c);
}

/* Each shape: one 400/411 answer with Connection: close, nothing after it is a request. */
static void test_smuggling_shapes_refused(void)
{
    static const struct {
        const char *hdrs;
        int status;
        http_limit_t limit;
    } shapes[] = {
        {"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n", 400, HTTP_LIMIT_FRAMING},
        {"Transfer-Encoding: chunked\r\nContent-Length: 5\r\n", 400, HTTP_LIMIT_FRAMING},
        {"Content-Length: 2\r\nContent-Length: 40\r\n", 400, HTTP_LIMIT_FRAMING},
        {"Content-Length: 2,40\r\n", 400, HTTP_LIMIT_FRAMING},
        {"Content-Length: -2\r\n", 400, HTTP_LIMIT_FRAMING},
        {"Content-Length: \r\n", 400, HTTP_LIMIT_FRAMING},
        {"Content-Length: 99999999999999999999999\r\n", 400, HTTP_LIMIT_FRAMING},
        {"Transfer-Encoding: identity\r\n", 400, HTTP_LIMIT_FRAMING},
        {"Transfer-Encoding: chunked\r\n", 411, HTTP_LIMIT_CHUNKED},
        {"Content-Length: 2000\r\n", 413, HTTP_LIMIT_BODY_SIZE},
        {"Host: y\r\nContent-Length: 2\r\n", 400, HTTP_LIMIT_BAD_REQUEST},
    };
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        SETUP(1024);
        char req[512];
        int n = snprintf(req, sizeof req,
                         "POST /v1/push HTTP/1.1\r\nHost: x\r\n%s\r\n0\r\n\r\n"
                         "GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n",
                         shapes[i].hdrs);
        CHECK_EQ(http_conn_input(&c, req, (size_t)n), 0);
        CHECK_EQ(seen.n, 0);
        char *out = take(&c);
        char want[64];
        snprintf(want, sizeof want, "HTTP/1.1 %d ", shapes[i].status);
        if (strncmp(out, want, strlen(want)) != 0 || count(out, "HTTP/1.1 ") != 1 ||
            !strstr(out, "Connection: close\r\n"))
            fprintf(stderr, "shape %zu: %s\n", i, out);
        CHECK(strncmp(out, want, strlen(want)) == 0);
        CHECK_EQ(count(out, "HTTP/1.1 "), 1);
        CHECK(strstr(out, "Connection: close\r\n") != NULL);
        const char *msg, *path;
        int status;
        CHECK_EQ(http_conn_take_limit(&c, &msg, &status, &path), shapes[i].limit);
        CHECK_EQ(status, shapes[i].status);
        CHECK_STR(path, "/v1/push");
        CHECK(http_conn_done(&c));
        CHECK(!http_conn_wants_input(&c));
        /* more bytes after the refusal are ignored */
        FEED(&c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n");
        CHECK_EQ(seen.n, 0);
        free(out);
        http_conn_free(&c);
    }
}

static void test_equal_content_lengths_and_no_length(void)
{
    SETUP(1024);
    const char req[] = "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 2, 2\r\nContent-Length: 2"
                       "\r\n\r\n{}POST /b HTTP/1.1\r\nHost: x\r\n\r\nGET /c HTTP/1.0\r\n\r\n"
                       "GET /never HTTP/1.1\r\nHost: x\r\n\r\n";
    http_conn_input(&c, req, sizeof req - 1);
    CHECK_EQ(seen.n, 3); /* the HTTP/1.0 request ends the connection */
    CHECK_STR(seen.last, "GET /c 0:");
    char *out = take(&c);
    CHECK_EQ(count(out, "200 OK"), 3);
    CHECK_EQ(count(out, "Connection: close"), 1);
    CHECK(http_conn_done(&c));
    free(out);
    http_conn_free(&c);
}

static void test_malformed_heads(void)
{
    static const char *bad[] = {
        "GET / HTTP/1.1\nHost: x\n\n",            /* bare LF */
        "GET / HTTP/2.0\r\nHost: x\r\n\r\n",      /* version */
        "GET http://x/ HTTP/1.1\r\nHost: x\r\n\r\n", /* absolute-form */
        "GET / HTTP/1.1\r\n\r\n",                 /* no Host */
        "GET / HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        SETUP(1024);
        http_conn_input(&c, bad[i], strlen(bad[i]));
        char *out = take(&c);
        CHECK(strncmp(out, "HTTP/1.1 400 ", 13) == 0);
        CHECK_EQ(seen.n, 0);
        CHECK(http_conn_done(&c));
        free(out);
        http_conn_free(&c);
    }
    /* a head that never ends: refused at 8 KB, whether or not it has line ends */
    SETUP(1024);
    char big[GW_HTTP_MAX_HEAD + 10];
    memset(big, 'a', sizeof big);
    http_conn_input(&c, big, sizeof big);
    char *out = take(&c);
    CHECK(strncmp(out, "HTTP/1.1 400 ", 13) == 0);
    free(out);
    http_conn_free(&c);
}

static void test_expect_continue_and_head(void)
{
    SETUP(1024);
    FEED(&c, "POST /p HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 3"
                        "\r\n\r\n");
    char *out = take(&c);
    CHECK_STR(out, "HTTP/1.1 100 Continue\r\n\r\n");
    free(out);
    FEED(&c, "abcHEAD /h HTTP/1.1\r\nHost: x\r\n\r\n");
    CHECK_EQ(seen.n, 2);
    out = take(&c);
    CHECK_EQ(count(out, "200 OK"), 2);
    CHECK(strstr(out, "POST /p 3:abc") != NULL);
    CHECK(strstr(out, "HEAD /h") == NULL); /* HEAD: headers only */
    CHECK(strstr(out, "Content-Length: 10\r\n") != NULL); /* of "HEAD /h 0:" */
    free(out);
    /* too large with Expect: 413 at once, no 100 */
    FEED(&c, "POST /p HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 5000"
                        "\r\n\r\n");
    out = take(&c);
    CHECK(strncmp(out, "HTTP/1.1 413 ", 13) == 0);
    CHECK(strstr(out, "larger than 1024") != NULL);
    free(out);
    http_conn_free(&c);
}

static void test_timeouts_and_eof(void)
{
    SETUP(1024);
    FEED(&c, "POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 9\r\n\r\nab");
    CHECK_EQ(http_conn_phase(&c), HTTP_PHASE_BODY);
    http_conn_timeout(&c);
    char *out = take(&c);
    CHECK(strncmp(out, "HTTP/1.1 408 ", 13) == 0);
    const char *msg, *path;
    int st;
    CHECK_EQ(http_conn_take_limit(&c, &msg, &st, &path), HTTP_LIMIT_BODY_TIMEOUT);
    CHECK_STR(path, "/p");
    CHECK(http_conn_done(&c));
    free(out);
    http_conn_free(&c);

    http_conn_init(&c, &cfg);
    FEED(&c, "GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HT");
    http_conn_eof(&c);
    CHECK_EQ(seen.n, 1);
    CHECK(http_conn_done(&c) == false); /* the answer to /a is still queued */
    out = take(&c);
    CHECK(http_conn_done(&c));
    free(out);
    http_conn_free(&c);
}

/* Pipelined requests stop being handled while OUT_HIGH bytes of answers wait, and the
 * connection stops asking for input; taking the output lets them go on. */
static void test_backpressure(void)
{
    SETUP(1024);
    char one[96];
    int n = snprintf(one, sizeof one, "GET /%040d HTTP/1.1\r\nHost: x\r\n\r\n", 0);
    int total = 4000;
    for (int i = 0; i < total; i++)
        http_conn_input(&c, one, (size_t)n);
    const uint8_t *p;
    CHECK(http_conn_output(&c, &p) < HTTP_CONN_OUT_HIGH + 1024);
    CHECK(seen.n < total);
    CHECK(!http_conn_wants_input(&c) || c.in.len - c.in_off < 1024 + GW_HTTP_MAX_HEAD);
    int rounds = 0;
    while (seen.n < total && rounds++ < 10000) {
        free(take(&c));
        http_conn_process(&c);
    }
    CHECK_EQ(seen.n, total);
    free(take(&c));
    CHECK_EQ(http_conn_phase(&c), HTTP_PHASE_IDLE);
    http_conn_free(&c);
}

static void test_handler_close_after(void)
{
    SETUP(1024);
    seen.close_next = true;
    FEED(&c, "GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n");
    CHECK_EQ(seen.n, 1);
    char *out = take(&c);
    CHECK(strstr(out, "Connection: close\r\n") != NULL);
    CHECK(http_conn_done(&c));
    free(out);
    http_conn_free(&c);
}

/* A handler that answers later: it defers every request (http_conn_defer), as push_http.c
 * does when Redis must be asked first. */
typedef struct later {
    int n;
    char path[8][64];
} later_t;

static void defer_handler(void *ud, http_conn_t *c, const http_req_t *r)
{
    later_t *l = ud;
    snprintf(l->path[l->n++ % 8], sizeof l->path[0], "%.*s", (int)r->head->path.n,
             r->head->path.p);
    http_conn_defer(c);
}

static void test_deferred_answers_keep_the_order(void)
{
    later_t l = {0};
    http_conn_cfg_t cfg = {.max_body = 1024, .handler = defer_handler, .ud = &l};
    http_conn_t c;
    http_conn_init(&c, &cfg);
    static const char two[] = "GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n";
    CHECK_EQ(http_conn_input(&c, two, sizeof two - 1), 0);
    /* the first is deferred: nothing answered, the second waits, no more input wanted */
    CHECK_EQ(l.n, 1);
    CHECK_STR(l.path[0], "/a");
    const uint8_t *p;
    CHECK_EQ(http_conn_output(&c, &p), 0);
    CHECK(!http_conn_wants_input(&c));
    CHECK(!http_conn_done(&c));
    CHECK_EQ(http_conn_process(&c), 0); /* (the owner looking again changes nothing) */
    CHECK_EQ(l.n, 1);
    /* its answer comes: then the second request is handled (and deferred too) */
    CHECK_EQ(http_conn_respond(&c, 200, "text/plain", "A", 1), 0);
    CHECK(!c.deferred);
    CHECK_EQ(http_conn_process(&c), 0);
    CHECK_EQ(l.n, 2);
    CHECK_STR(l.path[1], "/b");
    CHECK_EQ(http_conn_respond(&c, 503, "text/plain", "B", 1), 0);
    char *out = take(&c);
    const char *a = strstr(out, "\r\n\r\nA"), *b = strstr(out, "\r\n\r\nB");
    CHECK(a && b && a < b);
    CHECK(strstr(out, "HTTP/1.1 503 ") != NULL);
    free(out);
    CHECK(http_conn_wants_input(&c));
    /* the client half-closes while an answer is pending: it still gets it, then the end */
    FEED(&c, "GET /c HTTP/1.1\r\nHost: x\r\n\r\n");
    CHECK_EQ(l.n, 3);
    http_conn_eof(&c);
    CHECK(!http_conn_done(&c));
    CHECK_EQ(http_conn_respond(&c, 200, NULL, NULL, 0), 0);
    out = take(&c);
    CHECK(strstr(out, "HTTP/1.1 200 ") == out);
    CHECK(strstr(out, "Connection: close\r\n") != NULL);
    free(out);
    CHECK(http_conn_done(&c));
    http_conn_free(&c);
}

int main(void)
{
    RUN(test_pipelined_pair_whole_and_bytewise);
    RUN(test_partial_phases);
    RUN(test_smuggling_shapes_refused);
    RUN(test_equal_content_lengths_and_no_length);
    RUN(test_malformed_heads);
    RUN(test_expect_continue_and_head);
    RUN(test_timeouts_and_eof);
    RUN(test_backpressure);
    RUN(test_handler_close_after);
    RUN(test_deferred_answers_keep_the_order);
    return TEST_REPORT();
}
