/* upsock.c: plain or TLS non-blocking transport for the writer (see upsock.h). */
#include "upsock.h"

#include <arpa/inet.h>
#include <errno.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

static void ssl_err(gw_sock_t *s, const char *what)
{
    unsigned long e = ERR_get_error();
    char buf[120] = "";
    if (e)
        ERR_error_string_n(e, buf, sizeof buf);
    else if (errno)
        snprintf(buf, sizeof buf, "%s", strerror(errno));
    snprintf(s->err, sizeof s->err, "%s: %s", what, *buf ? buf : "unknown error");
    ERR_clear_error();
}

SSL_CTX *gw_sock_client_ctx(const char *ca, char *err, size_t errlen)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx) {
        snprintf(err, errlen, "SSL_CTX_new failed");
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    static const unsigned char alpn[] = {2, 'h', '2'};
    SSL_CTX_set_alpn_protos(ctx, alpn, sizeof alpn);
    int ok = ca && *ca ? SSL_CTX_load_verify_locations(ctx, ca, NULL)
                       : SSL_CTX_set_default_verify_paths(ctx);
    if (ok != 1) {
        unsigned long e = ERR_get_error();
        char buf[120];
        ERR_error_string_n(e, buf, sizeof buf);
        snprintf(err, errlen, "--upstream-ca %s: %s", ca && *ca ? ca : "(system)", buf);
        SSL_CTX_free(ctx);
        return NULL;
    }
    return ctx;
}

int gw_sock_tls_begin(gw_sock_t *s, SSL_CTX *ctx, const char *host)
{
    s->ssl = SSL_new(ctx);
    if (!s->ssl || SSL_set_fd(s->ssl, s->fd) != 1) {
        ssl_err(s, "SSL_new");
        return GW_SOCK_ERR;
    }
    unsigned char addr[16];
    bool is_ip = inet_pton(AF_INET, host, addr) == 1 || inet_pton(AF_INET6, host, addr) == 1;
    X509_VERIFY_PARAM *vp = SSL_get0_param(s->ssl);
    if (is_ip) {
        X509_VERIFY_PARAM_set1_ip_asc(vp, host);
    } else {
        SSL_set_tlsext_host_name(s->ssl, host);
        SSL_set1_host(s->ssl, host);
    }
    SSL_set_connect_state(s->ssl);
    return 0;
}

/* Maps an SSL result; sets need_write. */
static int ssl_result(gw_sock_t *s, int rv, const char *what)
{
    int e = SSL_get_error(s->ssl, rv);
    s->need_write = false;
    switch (e) {
    case SSL_ERROR_WANT_READ:
        return GW_SOCK_AGAIN;
    case SSL_ERROR_WANT_WRITE:
        s->need_write = true;
        return GW_SOCK_AGAIN;
    case SSL_ERROR_ZERO_RETURN:
        return 0;
    default:
        ssl_err(s, what);
        return GW_SOCK_ERR;
    }
}

int gw_sock_handshake(gw_sock_t *s)
{
    ERR_clear_error();
    int rv = SSL_do_handshake(s->ssl);
    if (rv != 1) {
        int r = ssl_result(s, rv, "TLS handshake");
        if (r == 0)
            r = GW_SOCK_ERR;
        if (r == GW_SOCK_ERR && SSL_get_verify_result(s->ssl) != X509_V_OK)
            snprintf(s->err, sizeof s->err, "TLS handshake: certificate: %s",
                     X509_verify_cert_error_string(SSL_get_verify_result(s->ssl)));
        return r;
    }
    const unsigned char *proto = NULL;
    unsigned plen = 0;
    SSL_get0_alpn_selected(s->ssl, &proto, &plen);
    if (plen != 2 || memcmp(proto, "h2", 2) != 0) {
        snprintf(s->err, sizeof s->err, "TLS: the API node did not agree to ALPN h2");
        return GW_SOCK_ERR;
    }
    return 0;
}

ssize_t gw_sock_recv(gw_sock_t *s, void *buf, size_t len)
{
    if (!s->ssl) {
        for (;;) {
            ssize_t n = recv(s->fd, buf, len, 0);
            if (n >= 0)
                return n;
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return GW_SOCK_AGAIN;
            snprintf(s->err, sizeof s->err, "%s", strerror(errno));
            return GW_SOCK_ERR;
        }
    }
    ERR_clear_error();
    int n = SSL_read(s->ssl, buf, (int)(len > 1 << 30 ? 1 << 30 : len));
    return n > 0 ? n : ssl_result(s, n, "TLS read");
}

ssize_t gw_sock_send(gw_sock_t *s, const void *buf, size_t len)
{
    if (!s->ssl) {
        struct iovec v = {(void *)buf, len};
        return gw_sock_sendv(s, &v, 1);
    }
    ERR_clear_error();
    int n = SSL_write(s->ssl, buf, (int)(len > 1 << 30 ? 1 << 30 : len));
    if (n > 0)
        return n;
    int r = ssl_result(s, n, "TLS write");
    return r == 0 ? GW_SOCK_ERR : r;
}

ssize_t gw_sock_sendv(gw_sock_t *s, const struct iovec *iov, int n)
{
    struct msghdr m = {.msg_iov = (struct iovec *)iov, .msg_iovlen = (size_t)n};
    for (;;) {
        ssize_t w = sendmsg(s->fd, &m, MSG_NOSIGNAL);
        if (w >= 0)
            return w;
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            s->need_write = true;
            return GW_SOCK_AGAIN;
        }
        snprintf(s->err, sizeof s->err, "%s", strerror(errno));
        return GW_SOCK_ERR;
    }
}

void gw_sock_close(gw_sock_t *s)
{
    if (s->ssl)
        SSL_free(s->ssl);
    s->ssl = NULL;
    if (s->fd >= 0)
        close(s->fd);
    s->fd = -1;
    s->need_write = false;
}
