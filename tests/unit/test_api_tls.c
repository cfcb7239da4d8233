/* test_api_tls.c: ws-api's server TLS (tls_server.c) over non-blocking socket pairs:
 *   - handshake with ALPN h2; ALPN refused (http/1.1 only, or none); garbage; EOF;
 *   - partial writes and WANT_WRITE with the retry from a moved buffer, bytes intact;
 *   - TLS 1.3 KeyUpdate (update_requested) both ways, also while the server's socket is full;
 *   - TLS 1.2 renegotiation refused (no_renegotiation), connection usable afterwards.
 * The gRPC server over TLS end to end: test_api_tls_grpc.c. The certificate: tls_cert.h. */
#include <errno.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../../api/tls_server.h"
#include "../../api/wsapi_metrics.h"
#include "test.h"
#include "tls_cert.h"

/* ---- TLS over a socket pair ---------------------------------------------------------------- */

typedef struct pair {
    int sfd, cfd;
    SSL *srv, *cli;
    SSL_CTX *cctx;
    int key_updates_seen; /* KeyUpdate handshake messages the client received */
    int no_reneg_alerts;  /* no_renegotiation alerts the client received */
} pair_t;

/* Client-side message callback: counts what the server sent (KeyUpdate, alerts). */
static void cli_msg_cb(int write_p, int version, int content_type, const void *buf, size_t len,
                       SSL *ssl, void *arg)
{
    (void)version;
    (void)ssl;
    pair_t *p = arg;
    const unsigned char *b = buf;
    if (write_p || len < 1)
        return;
    if (content_type == SSL3_RT_HANDSHAKE && b[0] == 24 /* key_update */)
        p->key_updates_seen++;
    if (content_type == SSL3_RT_ALERT && len >= 2 && b[1] == SSL_AD_NO_RENEGOTIATION)
        p->no_reneg_alerts++;
}

static int pair_open(pair_t *p, tls_server_t *t, const char *alpn, int max_version)
{
    memset(p, 0, sizeof *p);
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) < 0)
        return -1;
    p->sfd = sv[0];
    p->cfd = sv[1];
    set_nonblock(p->sfd);
    set_nonblock(p->cfd);
    p->srv = tls_server_conn(t, p->sfd);
    p->cctx = client_ctx(alpn, max_version);
    p->cli = SSL_new(p->cctx);
    SSL_set_fd(p->cli, p->cfd);
    SSL_set_tlsext_host_name(p->cli, "localhost");
    SSL_set1_host(p->cli, "localhost");
    SSL_set_connect_state(p->cli);
    SSL_set_msg_callback(p->cli, cli_msg_cb);
    SSL_set_msg_callback_arg(p->cli, p);
    return p->srv && p->cli ? 0 : -1;
}

static void pair_close(pair_t *p)
{
    tls_server_conn_free(p->srv, 0);
    SSL_free(p->cli);
    SSL_CTX_free(p->cctx);
    close(p->sfd);
    close(p->cfd);
    ERR_clear_error();
}

/* Drives both handshakes; returns the server's final tls_server_handshake result. */
static int pair_handshake(pair_t *p, char err[TLS_SERVER_ERR_LEN])
{
    int srv_rv = TLS_IO_WANT_READ, cli_done = 0;
    for (int i = 0; i < 1000; i++) {
        if (!cli_done) {
            int r = SSL_do_handshake(p->cli);
            if (r == 1)
                cli_done = 1;
            else {
                int e = SSL_get_error(p->cli, r);
                if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE)
                    cli_done = -1;
                ERR_clear_error();
            }
        }
        if (srv_rv == TLS_IO_WANT_READ || srv_rv == TLS_IO_WANT_WRITE)
            srv_rv = tls_server_handshake(p->srv, err);
        if (srv_rv != TLS_IO_WANT_READ && srv_rv != TLS_IO_WANT_WRITE && cli_done)
            return srv_rv;
    }
    return srv_rv;
}

/* Client reads everything available into out (up to cap); returns bytes read. */
static size_t cli_drain(pair_t *p, uint8_t *out, size_t cap)
{
    size_t got = 0, n = 0;
    while (got < cap && SSL_read_ex(p->cli, out + got, cap - got, &n) == 1)
        got += n;
    ERR_clear_error();
    return got;
}

static void test_handshake_alpn_h2(void)
{
    char err[TLS_SERVER_ERR_LEN] = "";
    tls_server_t *t = tls_server_new(cert_path, key_path, "h2", err);
    REQUIRE(t != NULL);
    pair_t p;
    REQUIRE(pair_open(&p, t, "h2", 0) == 0);
    CHECK_EQ(pair_handshake(&p, err), 0);
    CHECK_EQ(SSL_get_verify_result(p.cli), X509_V_OK);
    char d[160];
    tls_server_describe(p.srv, d, sizeof d);
    CHECK(strstr(d, "TLSv1.3") != NULL);
    CHECK(strstr(d, "alpn=h2") != NULL);
    /* data both ways */
    size_t n = 0;
    CHECK(SSL_write_ex(p.cli, "hello", 5, &n) == 1 && n == 5);
    uint8_t buf[64];
    CHECK_EQ(tls_server_read(p.srv, buf, sizeof buf, err), 5);
    CHECK(memcmp(buf, "hello", 5) == 0);
    CHECK_EQ(tls_server_read(p.srv, buf, sizeof buf, err), TLS_IO_WANT_READ);
    CHECK_EQ(tls_server_write(p.srv, "world", 5, err), 5);
    CHECK_EQ(cli_drain(&p, buf, sizeof buf), 5);
    /* client close_notify: CLOSED */
    SSL_shutdown(p.cli);
    CHECK_EQ(tls_server_read(p.srv, buf, sizeof buf, err), TLS_IO_CLOSED);
    pair_close(&p);
    /* TLS 1.2 with h2 works too (ECDHE + AEAD suite) */
    REQUIRE(pair_open(&p, t, "h2", TLS1_2_VERSION) == 0);
    CHECK_EQ(pair_handshake(&p, err), 0);
    tls_server_describe(p.srv, d, sizeof d);
    CHECK(strstr(d, "TLSv1.2") != NULL && strstr(d, "ECDHE") != NULL && strstr(d, "GCM") != NULL);
    pair_close(&p);
    tls_server_free(t);
}

static void test_alpn_refused_garbage_eof(void)
{
    char err[TLS_SERVER_ERR_LEN] = "";
    tls_server_t *t = tls_server_new(cert_path, key_path, "h2", err);
    REQUIRE(t != NULL);
    pair_t p;
    /* only http/1.1 offered: fatal alert in the handshake */
    REQUIRE(pair_open(&p, t, "http/1.1", 0) == 0);
    CHECK_EQ(pair_handshake(&p, err), TLS_IO_ALPN);
    CHECK(strstr(err, "ALPN") != NULL);
    pair_close(&p);
    /* no ALPN at all: the handshake completes, the server refuses the connection */
    REQUIRE(pair_open(&p, t, NULL, 0) == 0);
    CHECK_EQ(pair_handshake(&p, err), TLS_IO_ALPN);
    CHECK(strstr(err, "did not offer ALPN h2") != NULL);
    pair_close(&p);
    /* not TLS */
    REQUIRE(pair_open(&p, t, "h2", 0) == 0);
    const char *garbage = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    CHECK(write(p.cfd, garbage, strlen(garbage)) == (ssize_t)strlen(garbage));
    CHECK_EQ(tls_server_handshake(p.srv, err), TLS_IO_ERROR);
    CHECK(err[0] != 0);
    CHECK_EQ(ERR_peek_error(), 0); /* queue left clean for the next connection */
    pair_close(&p);
    /* peer gone before a byte */
    REQUIRE(pair_open(&p, t, "h2", 0) == 0);
    shutdown(p.cfd, SHUT_WR);
    CHECK_EQ(tls_server_handshake(p.srv, err), TLS_IO_CLOSED);
    pair_close(&p);
    /* peer gone in the middle of the handshake */
    REQUIRE(pair_open(&p, t, "h2", 0) == 0);
    SSL_do_handshake(p.cli); /* ClientHello out */
    ERR_clear_error();
    CHECK_EQ(tls_server_handshake(p.srv, err), TLS_IO_WANT_READ); /* ServerHello... sent */
    shutdown(p.cfd, SHUT_WR);
    CHECK_EQ(tls_server_handshake(p.srv, err), TLS_IO_CLOSED);
    pair_close(&p);
    tls_server_free(t);
    /* bad files */
    CHECK(tls_server_new("/nonexistent/cert.pem", key_path, "h2", err) == NULL);
    CHECK(strstr(err, "/nonexistent/cert.pem") != NULL);
    CHECK(tls_server_new(cert_path, cert_path, "h2", err) == NULL);
    CHECK(strstr(err, "private key") != NULL);
}

static void small_buffers(pair_t *p)
{
    int sz = 4096;
    setsockopt(p->sfd, SOL_SOCKET, SO_SNDBUF, &sz, sizeof sz);
    setsockopt(p->cfd, SOL_SOCKET, SO_RCVBUF, &sz, sizeof sz);
}

static void test_partial_writes_moving_buffer(void)
{
    char err[TLS_SERVER_ERR_LEN] = "";
    tls_server_t *t = tls_server_new(cert_path, key_path, "h2", err);
    REQUIRE(t != NULL);
    pair_t p;
    REQUIRE(pair_open(&p, t, "h2", 0) == 0);
    REQUIRE(pair_handshake(&p, err) == 0);
    size_t total = 4 << 20;
    uint8_t *src = malloc(total), *got = malloc(total);
    REQUIRE(src && got);
    for (size_t i = 0; i < total; i++)
        src[i] = (uint8_t)(i * 7 + (i >> 13));
    size_t sent = 0, recvd = 0;
    int want_write = 0, partial = 0, moves = 0;
    uint8_t *moved = NULL; /* the unsent rest, copied to a new address after each WANT_WRITE */
    for (int iter = 0; iter < 1000000 && recvd < total; iter++) {
        if (sent < total) {
            const uint8_t *from = moved ? moved : src + sent;
            size_t len = total - sent;
            ssize_t n = tls_server_write(p.srv, from, len, err);
            if (n == TLS_IO_WANT_WRITE) {
                want_write++;
                /* the retry comes from another buffer with the same bytes
                 * (SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER) */
                free(moved);
                moved = malloc(len);
                REQUIRE(moved);
                memcpy(moved, src + sent, len);
                moves++;
                /* the client reads only now: the server really had to wait */
                recvd += cli_drain(&p, got + recvd, total - recvd);
            } else {
                REQUIRE(n > 0);
                if ((size_t)n < len)
                    partial++;
                sent += (size_t)n;
                free(moved);
                moved = NULL;
            }
        } else {
            recvd += cli_drain(&p, got + recvd, total - recvd);
        }
    }
    free(moved);
    CHECK_EQ(recvd, total);
    CHECK(memcmp(src, got, total) == 0);
    /* OpenSSL semantics seen here: with SSL_MODE_ENABLE_PARTIAL_WRITE a call returns after
     * one record when the socket takes it at once (partial count); a call that returned
     * WANT_WRITE is completed by a retry that may report more than one record. */
    CHECK(want_write > 0);
    CHECK(partial > 0);
    CHECK(moves > 0);
    free(src);
    free(got);
    pair_close(&p);
    tls_server_free(t);
}

/* Server reads until it has `want` bytes (the client writes as needed), checking content. */
static bool srv_read_exact(pair_t *p, uint8_t *buf, size_t want, int *rd_wants_write)
{
    char err[TLS_SERVER_ERR_LEN];
    size_t got = 0;
    for (int i = 0; i < 100000 && got < want; i++) {
        ssize_t n = tls_server_read(p->srv, buf + got, want - got, err);
        if (n > 0)
            got += (size_t)n;
        else if (n == TLS_IO_WANT_WRITE)
            (*rd_wants_write)++;
        else if (n != TLS_IO_WANT_READ)
            return false;
        uint8_t sink[4096];
        cli_drain(p, sink, sizeof sink); /* keep the server's writes flowing */
    }
    return got == want;
}

static void test_key_update_both_ways(void)
{
    char err[TLS_SERVER_ERR_LEN] = "";
    tls_server_t *t = tls_server_new(cert_path, key_path, "h2", err);
    REQUIRE(t != NULL);
    pair_t p;
    REQUIRE(pair_open(&p, t, "h2", 0) == 0);
    REQUIRE(pair_handshake(&p, err) == 0);
    int rww = 0;
    uint8_t buf[8192];
    /* client asks for a key update: the server must answer with its own KeyUpdate */
    for (int round = 0; round < 5; round++) {
        CHECK(SSL_key_update(p.cli, SSL_KEY_UPDATE_REQUESTED) == 1);
        size_t n = 0;
        CHECK(SSL_write_ex(p.cli, "ping", 4, &n) == 1);
        CHECK(srv_read_exact(&p, buf, 4, &rww));
        CHECK(memcmp(buf, "ping", 4) == 0);
        CHECK_EQ(tls_server_write(p.srv, "pong", 4, err), 4);
        size_t got = cli_drain(&p, buf, sizeof buf);
        CHECK_EQ(got, 4);
        CHECK(memcmp(buf, "pong", 4) == 0);
        CHECK_EQ(p.key_updates_seen, round + 1);
    }
    /* server-initiated key update (OpenSSL call on our SSL): the client keeps reading */
    CHECK(SSL_key_update(p.srv, SSL_KEY_UPDATE_NOT_REQUESTED) == 1);
    CHECK_EQ(tls_server_write(p.srv, "after", 5, err), 5);
    CHECK_EQ(cli_drain(&p, buf, sizeof buf), 5);
    CHECK_EQ(p.key_updates_seen, 6);

    /* KeyUpdate (requested) arriving while the server's socket is full and a write pending */
    small_buffers(&p);
    static uint8_t big[1 << 20];
    memset(big, 'z', sizeof big);
    size_t sent = 0;
    ssize_t n;
    while ((n = tls_server_write(p.srv, big, sizeof big, err)) > 0)
        sent += (size_t)n;
    CHECK_EQ(n, TLS_IO_WANT_WRITE); /* pending: must be retried with the same bytes */
    CHECK(SSL_key_update(p.cli, SSL_KEY_UPDATE_REQUESTED) == 1);
    size_t cw = 0;
    int cr = SSL_write_ex(p.cli, "mid", 3, &cw);
    if (cr != 1) { /* the client's own socket may be full of nothing: retry after reading */
        ERR_clear_error();
    }
    /* server reads while its write is pending (allowed), then the write goes on */
    size_t got = 0, rest = sizeof big;
    bool have_mid = false;
    int ups_before = p.key_updates_seen;
    static uint8_t sink[1 << 16];
    for (int i = 0; i < 200000 && (!have_mid || got < sent + sizeof big); i++) {
        if (cr != 1 && SSL_write_ex(p.cli, "mid", 3, &cw) == 1)
            cr = 1;
        ERR_clear_error();
        if (!have_mid) {
            ssize_t r = tls_server_read(p.srv, buf, sizeof buf, err);
            if (r == 3 && memcmp(buf, "mid", 3) == 0)
                have_mid = true;
            else if (r == TLS_IO_WANT_WRITE)
                rww++;
            else if (r != TLS_IO_WANT_READ && r != TLS_IO_WANT_WRITE)
                break;
        }
        if (rest) {
            ssize_t w = tls_server_write(p.srv, big + (sizeof big - rest), rest, err);
            if (w > 0)
                rest -= (size_t)w;
            else if (w != TLS_IO_WANT_WRITE && w != TLS_IO_WANT_READ)
                break;
        }
        got += cli_drain(&p, sink, sizeof sink);
    }
    CHECK(have_mid);
    CHECK_EQ(rest, 0);
    CHECK_EQ(got, sent + sizeof big);
    /* RFC 8446 §4.6.3: the answering KeyUpdate must precede the server's next application
     * data; OpenSSL sends it at the start of the next write that has nothing pending. */
    CHECK_EQ(tls_server_write(p.srv, "end", 3, err), 3);
    CHECK_EQ(cli_drain(&p, buf, sizeof buf), 3);
    CHECK(memcmp(buf, "end", 3) == 0);
    CHECK_EQ(p.key_updates_seen, ups_before + 1); /* the server answered the request */
    (void)rww; /* OpenSSL 3.0 defers the answer to the next write: reads never WANT_WRITE */
    pair_close(&p);
    tls_server_free(t);
}

static void test_renegotiation_refused(void)
{
    char err[TLS_SERVER_ERR_LEN] = "";
    tls_server_t *t = tls_server_new(cert_path, key_path, "h2", err);
    REQUIRE(t != NULL);
    pair_t p;
    REQUIRE(pair_open(&p, t, "h2", TLS1_2_VERSION) == 0);
    REQUIRE(pair_handshake(&p, err) == 0);
    CHECK(SSL_renegotiate(p.cli) == 1);
    int r = SSL_do_handshake(p.cli); /* sends the new ClientHello */
    CHECK(r != 1);
    ERR_clear_error();
    uint8_t buf[64];
    /* the server refuses (warning alert no_renegotiation) and stays usable */
    CHECK_EQ(tls_server_read(p.srv, buf, sizeof buf, err), TLS_IO_WANT_READ);
    for (int i = 0; i < 10; i++) {
        SSL_do_handshake(p.cli);
        ERR_clear_error();
    }
    CHECK_EQ(p.no_reneg_alerts, 1);
    CHECK_EQ(SSL_renegotiate_pending(p.cli), 1); /* never completed */
    pair_close(&p);
    tls_server_free(t);
}

int main(void)
{
    if (tls_test_init() < 0)
        return 1;
    RUN(test_handshake_alpn_h2);
    RUN(test_alpn_refused_garbage_eof);
    RUN(test_partial_writes_moving_buffer);
    RUN(test_key_update_both_ways);
    RUN(test_renegotiation_refused);
    remove_cert();
    return TEST_REPORT();
}
