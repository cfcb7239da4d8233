/* redis_url.c: the --redis URL (see redis_url.h). */
#include "redis_url.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = tolower(c);
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

/* Percent-decodes [p, p + n) into out (cap bytes with the NUL). -1: bad escape, NUL or too
 * long. */
static int pct_decode(const char *p, size_t n, char *out, size_t cap)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        int c = (unsigned char)p[i];
        if (c == '%') {
            if (i + 2 >= n)
                return -1;
            int a = hexval((unsigned char)p[i + 1]), b = hexval((unsigned char)p[i + 2]);
            if (a < 0 || b < 0)
                return -1;
            c = a * 16 + b;
            i += 2;
        }
        if (c == 0 || o + 1 >= cap)
            return -1;
        out[o++] = (char)c;
    }
    out[o] = 0;
    return 0;
}

static int num(const char *p, size_t n, int max)
{
    if (n == 0 || n > 5)
        return -1;
    int v = 0;
    for (size_t i = 0; i < n; i++) {
        if (!isdigit((unsigned char)p[i]))
            return -1;
        v = v * 10 + (p[i] - '0');
    }
    return v <= max ? v : -1;
}

static int parse(const char *url, redis_url_t *out, char err[REDIS_URL_ERR_LEN])
{
    memset(out, 0, sizeof *out);
    out->port = 6379;
    if (!url || !*url) {
        snprintf(err, REDIS_URL_ERR_LEN, "empty Redis URL");
        return -1;
    }
    if (strlen(url) > REDIS_URL_MAX) {
        snprintf(err, REDIS_URL_ERR_LEN, "Redis URL longer than %d bytes", REDIS_URL_MAX);
        return -1;
    }
    if (strncmp(url, "rediss://", 9) == 0) {
        snprintf(err, REDIS_URL_ERR_LEN,
                 "rediss:// (TLS) is not supported: Debian's hiredis 0.14 has no TLS; use "
                 "redis:// over a private network or a local TLS tunnel");
        return -1;
    }
    if (strncmp(url, "redis://", 8) != 0) {
        snprintf(err, REDIS_URL_ERR_LEN, "Redis URL must start with redis://");
        return -1;
    }
    const char *p = url + 8;
    const char *end = p + strlen(p);
    const char *slash = strchr(p, '/');
    const char *auth_end = NULL;
    /* userinfo: up to the last '@' before the path (a password may contain '@' only as %40,
     * but take the last one to be forgiving) */
    for (const char *q = p; q < (slash ? slash : end); q++)
        if (*q == '@')
            auth_end = q;
    if (auth_end) {
        const char *colon = memchr(p, ':', (size_t)(auth_end - p));
        const char *uend = colon ? colon : auth_end;
        if (pct_decode(p, (size_t)(uend - p), out->user, sizeof out->user) < 0 ||
            (colon && pct_decode(colon + 1, (size_t)(auth_end - colon - 1), out->password,
                                 sizeof out->password) < 0)) {
            snprintf(err, REDIS_URL_ERR_LEN, "bad user or password in the Redis URL");
            memset(out->password, 0, sizeof out->password);
            return -1;
        }
        if (out->user[0] && !out->password[0]) {
            snprintf(err, REDIS_URL_ERR_LEN, "a Redis URL user needs a password (user:pass@)");
            return -1;
        }
        p = auth_end + 1;
    }
    const char *hend = slash ? slash : end;
    const char *pstart = NULL;
    if (*p == '[') {
        const char *rb = memchr(p, ']', (size_t)(hend - p));
        if (!rb || rb == p + 1 || (size_t)(rb - p - 1) >= sizeof out->host) {
            snprintf(err, REDIS_URL_ERR_LEN, "bad IPv6 host in the Redis URL");
            return -1;
        }
        memcpy(out->host, p + 1, (size_t)(rb - p - 1));
        if (rb + 1 < hend) {
            if (rb[1] != ':') {
                snprintf(err, REDIS_URL_ERR_LEN, "bad host in the Redis URL");
                return -1;
            }
            pstart = rb + 2;
        }
    } else {
        const char *colon = memchr(p, ':', (size_t)(hend - p));
        const char *h_end = colon ? colon : hend;
        if (h_end == p || (size_t)(h_end - p) >= sizeof out->host) {
            snprintf(err, REDIS_URL_ERR_LEN, "no host in the Redis URL");
            return -1;
        }
        for (const char *q = p; q < h_end; q++)
            if (!isalnum((unsigned char)*q) && *q != '.' && *q != '-' && *q != '_') {
                snprintf(err, REDIS_URL_ERR_LEN, "bad host in the Redis URL");
                return -1;
            }
        memcpy(out->host, p, (size_t)(h_end - p));
        if (colon)
            pstart = colon + 1;
    }
    if (pstart) {
        int port = num(pstart, (size_t)(hend - pstart), 65535);
        if (port < 1) {
            snprintf(err, REDIS_URL_ERR_LEN, "bad port in the Redis URL");
            return -1;
        }
        out->port = port;
    }
    if (slash && slash + 1 < end) {
        int db = num(slash + 1, (size_t)(end - slash - 1), 65535);
        if (db < 0) {
            snprintf(err, REDIS_URL_ERR_LEN, "bad database number in the Redis URL");
            return -1;
        }
        out->db = db;
    }
    return 0;
}

int redis_url_parse(const char *url, redis_url_t *out, char err[REDIS_URL_ERR_LEN])
{
    int rv = parse(url, out, err);
    if (rv < 0)
        memset(out->password, 0, sizeof out->password); /* nothing of it stays on failure */
    return rv;
}

void redis_url_describe(const redis_url_t *u, char *out, size_t len)
{
    int v6 = strchr(u->host, ':') != NULL;
    snprintf(out, len, "%s%s%s:%d/%d", v6 ? "[" : "", u->host, v6 ? "]" : "", u->port, u->db);
}
