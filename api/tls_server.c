/* tls_server.c: server-side TLS contexts and non-blocking TLS I/O for ws-api (see
 * tls_server.h). */
#include "tls_server.h"

#include <errno.h>
#include <openssl/err.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* TLS 1.2 suites HTTP/2 accepts (RFC 9113 §9.2.2 / Appendix A: ephemeral key exchange and
 * AEAD only). TLS 1.3 suites are OpenSSL's defaults, all acceptable. */
#define TLS12_CIPHERS "ECDHE+AESGCM:ECDHE+CHACHA20:!aNULL:!eNULL"

struct tls_server {
    SSL_CTX *ctx;
    unsigned char alpn[256]; /* wire format: length-prefixed protocol name; alpn_len 0: none */
    unsigned int alpn_len;
    bool alpn_optional; /* a client without ALPN is fine (tls_server_alpn_optional) */
};

/* The first queued OpenSSL error as text (reason only when it has one), then clears the queue. */
static void queue_err(char err[TLS_SERVER_ERR_LEN], const char *what)
{
    unsigned long e = ERR_get_error();
    const char *reason = NULL;
    char buf[160];
    if (e && ERR_SYSTEM_ERROR(e))
        reason = strerror((int)ERR_GET_REASON(e)); /* e.g. a missing file: errno text */
    else if (e)
        reason = ERR_reason_error_string(e);
    if (!reason && e) {
        ERR_error_string_n(e, buf, sizeof buf);
        reason = buf;
    }
    snprintf(err, TLS_SERVER_ERR_LEN, "%s%s%s", what, reason ? ": " : "", reason ? reason : "");
    ERR_clear_error();
}

/* ALPN (RFC 7301): pick the required protocol from the client's list, or refuse fatally
 * (no_application_protocol alert). Runs inside SSL_do_handshake. */
static int alpn_select(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                       const unsigned char *in, unsigned int inlen, void *arg)
{
    (void)ssl;
    tls_server_t *t = arg;
    unsigned char *sel = NULL;
    unsigned char sellen = 0;
    if (SSL_select_next_proto(&sel, &sellen, t->alpn, t->alpn_len, in, inlen) !=
        OPENSSL_NPN_NEGOTIATED)
        return SSL_TLSEXT_ERR_ALERT_FATAL;
    *out = sel;
    *outlen = sellen;
    return SSL_TLSEXT_ERR_OK;
}

tls_server_t *tls_server_new(const char *cert_file, const char *key_file, const char *alpn,
                             char err[TLS_SERVER_ERR_LEN])
{
    ERR_clear_error();
    tls_server_t *t = calloc(1, sizeof *t);
    if (!t) {
        snprintf(err, TLS_SERVER_ERR_LEN, "out of memory");
        return NULL;
    }
    if (alpn && *alpn) {
        size_t n = strlen(alpn);
        if (n > 255) {
            snprintf(err, TLS_SERVER_ERR_LEN, "ALPN protocol name too long");
            goto out_free;
        }
        t->alpn[0] = (unsigned char)n;
        memcpy(t->alpn + 1, alpn, n);
        t->alpn_len = (unsigned int)n + 1;
    }
    t->ctx = SSL_CTX_new(TLS_server_method());
    if (!t->ctx) {
        queue_err(err, "SSL_CTX_new");
        goto out_free;
    }
    SSL_CTX *ctx = t->ctx;
    if (SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1 ||
        SSL_CTX_set_cipher_list(ctx, TLS12_CIPHERS) != 1) {
        queue_err(err, "TLS protocol settings");
        goto out_ctx;
    }
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION |
                                 SSL_OP_CIPHER_SERVER_PREFERENCE);
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                              SSL_MODE_RELEASE_BUFFERS);
    SSL_CTX_set_session_id_context(ctx, (const unsigned char *)"ws-api", 6);
    if (SSL_CTX_use_certificate_chain_file(ctx, cert_file) != 1) {
        char what[200];
        snprintf(what, sizeof what, "cannot load certificate %.150s", cert_file);
        queue_err(err, what);
        goto out_ctx;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, key_file, SSL_FILETYPE_PEM) != 1) {
        char what[200];
        snprintf(what, sizeof what, "cannot load private key %.150s", key_file);
        queue_err(err, what);
        goto out_ctx;
    }
    if (SSL_CTX_check_private_key(ctx) != 1) {
        queue_err(err, "private key does not match the certificate");
        goto out_ctx;
    }
    if (t->alpn_len)
        SSL_CTX_set_alpn_select_cb(ctx, alpn_select, t);
    return t;

out_ctx:
    SSL_CTX_free(t->ctx);
out_free:
    free(t);
    ERR_clear_error();
    return NULL;
}

void tls_server_alpn_optional(tls_server_t *t)
{
    t->alpn_optional = true;
}

void tls_server_free(tls_server_t *t)
{
    if (!t)
        return;
    SSL_CTX_free(t->ctx);
    free(t);
}

SSL *tls_server_conn(tls_server_t *t, int fd)
{
    ERR_clear_error();
    SSL *ssl = SSL_new(t->ctx);
    if (!ssl)
        goto fail;
    if (SSL_set_fd(ssl, fd) != 1) { /* socket BIO without BIO_CLOSE: fd stays ours */
        SSL_free(ssl);
        goto fail;
    }
    if (t->alpn_len)
        SSL_set_app_data(ssl, t); /* tls_server_handshake checks the ALPN outcome */
    SSL_set_accept_state(ssl);
    return ssl;
fail:
    ERR_clear_error();
    return NULL;
}

/* Maps a failed SSL call (its SSL_get_error and errno right after it) to TLS_IO_*. */
static int classify(SSL *ssl, int ret, int saved_errno, char err[TLS_SERVER_ERR_LEN])
{
    int e = SSL_get_error(ssl, ret);
    switch (e) {
    case SSL_ERROR_WANT_READ:
        ERR_clear_error();
        return TLS_IO_WANT_READ;
    case SSL_ERROR_WANT_WRITE:
        ERR_clear_error();
        return TLS_IO_WANT_WRITE;
    case SSL_ERROR_ZERO_RETURN:
        snprintf(err, TLS_SERVER_ERR_LEN, "peer sent close_notify");
        ERR_clear_error();
        return TLS_IO_CLOSED;
    case SSL_ERROR_SYSCALL:
        if (ERR_peek_error()) {
            queue_err(err, "TLS I/O");
            return TLS_IO_ERROR;
        }
        if (saved_errno == 0 || saved_errno == ECONNRESET || saved_errno == EPIPE) {
            snprintf(err, TLS_SERVER_ERR_LEN, "%s",
                     saved_errno ? strerror(saved_errno) : "unexpected EOF");
            return TLS_IO_CLOSED;
        }
        snprintf(err, TLS_SERVER_ERR_LEN, "%s", strerror(saved_errno));
        return TLS_IO_ERROR;
    case SSL_ERROR_SSL: {
        unsigned long l = ERR_peek_error();
        if (ERR_GET_LIB(l) == ERR_LIB_SSL) {
            if (ERR_GET_REASON(l) == SSL_R_UNEXPECTED_EOF_WHILE_READING) {
                snprintf(err, TLS_SERVER_ERR_LEN, "unexpected EOF");
                ERR_clear_error();
                return TLS_IO_CLOSED;
            }
            if (ERR_GET_REASON(l) == SSL_R_NO_APPLICATION_PROTOCOL) {
                queue_err(err, "ALPN");
                return TLS_IO_ALPN;
            }
        }
        queue_err(err, "TLS");
        return TLS_IO_ERROR;
    }
    default:
        snprintf(err, TLS_SERVER_ERR_LEN, "SSL error %d", e);
        ERR_clear_error();
        return TLS_IO_ERROR;
    }
}

int tls_server_handshake(SSL *ssl, char err[TLS_SERVER_ERR_LEN])
{
    ERR_clear_error();
    errno = 0;
    int ret = SSL_do_handshake(ssl);
    if (ret != 1)
        return classify(ssl, ret, errno, err);
    tls_server_t *t = SSL_get_app_data(ssl);
    if (t && t->alpn_len && !t->alpn_optional) {
        const unsigned char *p = NULL;
        unsigned int n = 0;
        SSL_get0_alpn_selected(ssl, &p, &n);
        if (n + 1 != t->alpn_len || memcmp(p, t->alpn + 1, n) != 0) {
            /* The client sent no ALPN extension (the select callback never ran). */
            snprintf(err, TLS_SERVER_ERR_LEN, "client did not offer ALPN %.*s",
                     (int)t->alpn_len - 1, (const char *)t->alpn + 1);
            return TLS_IO_ALPN;
        }
    }
    return 0;
}

ssize_t tls_server_read(SSL *ssl, void *buf, size_t len, char err[TLS_SERVER_ERR_LEN])
{
    ERR_clear_error();
    errno = 0;
    size_t got = 0;
    int ret = SSL_read_ex(ssl, buf, len, &got);
    if (ret == 1)
        return (ssize_t)got;
    return classify(ssl, ret, errno, err);
}

ssize_t tls_server_write(SSL *ssl, const void *buf, size_t len, char err[TLS_SERVER_ERR_LEN])
{
    ERR_clear_error();
    errno = 0;
    size_t put = 0;
    int ret = SSL_write_ex(ssl, buf, len, &put);
    if (ret == 1)
        return (ssize_t)put;
    return classify(ssl, ret, errno, err);
}

int tls_server_pending(const SSL *ssl)
{
    return SSL_has_pending(ssl);
}

void tls_server_describe(const SSL *ssl, char *out, size_t n)
{
    const unsigned char *p = NULL;
    unsigned int len = 0;
    SSL_get0_alpn_selected(ssl, &p, &len);
    snprintf(out, n, "%s %s alpn=%.*s", SSL_get_version(ssl), SSL_get_cipher_name(ssl),
             (int)len, p ? (const char *)p : "");
}

void tls_server_conn_free(SSL *ssl, int notify)
{
    if (!ssl)
        return;
    if (notify) {
        ERR_clear_error();
        (void)SSL_shutdown(ssl); /* one try: close_notify if the socket takes it now */
    }
    ERR_clear_error();
    SSL_free(ssl);
}
