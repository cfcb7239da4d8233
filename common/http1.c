/* http1.c: the HTTP/1.1 request head (see http1.h). */
#include "http1.h"

#include <string.h>
#include <strings.h>

/* RFC 9110 §5.6.2 tchar */
static bool is_tchar(unsigned char c)
{
    if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'))
        return true;
    return c && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

/* field-vchar, SP or HTAB (obs-text allowed) */
static bool is_value_char(unsigned char c)
{
    return c == '\t' || (c >= 0x20 && c != 0x7f);
}

/* The line starting at p: its length without the CRLF, or -1 when no CRLF is in buf yet,
 * -2 when a CR is not followed by LF or a bare LF ends it. */
static long line_len(const char *p, const char *end)
{
    for (const char *q = p; q < end; q++) {
        if (*q == '\n')
            return -2;
        if (*q == '\r') {
            if (q + 1 == end)
                return -1;
            return q[1] == '\n' ? q - p : -2;
        }
    }
    return -1;
}

static int request_line(const char *p, size_t n, gw_http_req_t *r)
{
    const char *end = p + n, *q = p;
    while (q < end && is_tchar((unsigned char)*q))
        q++;
    if (q == p || q == end || *q != ' ')
        return GW_HTTP_BAD;
    r->method = (gw_slice_t){p, (size_t)(q - p)};
    const char *t = ++q;
    if (q == end || *q != '/') /* origin-form only (§3.2.1) */
        return GW_HTTP_BAD;
    while (q < end && *q != ' ') {
        if ((unsigned char)*q <= 0x20 || *q == 0x7f)
            return GW_HTTP_BAD;
        q++;
    }
    if (q == end)
        return GW_HTTP_BAD;
    const char *qm = memchr(t, '?', (size_t)(q - t));
    if (qm) {
        r->path = (gw_slice_t){t, (size_t)(qm - t)};
        r->query = (gw_slice_t){qm + 1, (size_t)(q - qm - 1)};
    } else {
        r->path = (gw_slice_t){t, (size_t)(q - t)};
        r->query = (gw_slice_t){q, 0};
    }
    q++;
    if (end - q != 8 || memcmp(q, "HTTP/1.", 7) != 0 || (q[7] != '0' && q[7] != '1'))
        return GW_HTTP_BAD;
    r->minor = q[7] - '0';
    return GW_HTTP_OK;
}

static int header_line(const char *p, size_t n, gw_http_req_t *r)
{
    const char *end = p + n, *q = p;
    while (q < end && is_tchar((unsigned char)*q))
        q++;
    if (q == p || q == end || *q != ':') /* also obs-fold and a blank before the colon */
        return GW_HTTP_BAD;
    if (r->nhdr == GW_HTTP_MAX_HEADERS)
        return GW_HTTP_BAD;
    const char *name = p;
    size_t nlen = (size_t)(q - p);
    q++;
    for (const char *c = q; c < end; c++)
        if (!is_value_char((unsigned char)*c))
            return GW_HTTP_BAD;
    while (q < end && (*q == ' ' || *q == '\t'))
        q++;
    while (end > q && (end[-1] == ' ' || end[-1] == '\t'))
        end--;
    r->hdr[r->nhdr].name = (gw_slice_t){name, nlen};
    r->hdr[r->nhdr].value = (gw_slice_t){q, (size_t)(end - q)};
    r->nhdr++;
    return GW_HTTP_OK;
}

int gw_http_parse(const char *buf, size_t len, gw_http_req_t *r)
{
    const char *p = buf, *end = buf + len;
    memset(r, 0, sizeof *r);
    /* §2.2: a server SHOULD ignore at least one empty line before the request line */
    if (end - p >= 2 && p[0] == '\r' && p[1] == '\n')
        p += 2;
    bool first = true;
    for (;;) {
        long n = line_len(p, end);
        if (n == -2)
            return GW_HTTP_BAD;
        if (n == -1)
            return len >= GW_HTTP_MAX_HEAD ? GW_HTTP_BAD : GW_HTTP_AGAIN;
        if ((size_t)(p + n + 2 - buf) > GW_HTTP_MAX_HEAD)
            return GW_HTTP_BAD;
        if (first) {
            if (request_line(p, (size_t)n, r) != GW_HTTP_OK)
                return GW_HTTP_BAD;
            first = false;
        } else if (n == 0) {
            r->head_len = (size_t)(p + 2 - buf);
            return GW_HTTP_OK;
        } else if (header_line(p, (size_t)n, r) != GW_HTTP_OK) {
            return GW_HTTP_BAD;
        }
        p += n + 2;
    }
}

const gw_slice_t *gw_http_header(const gw_http_req_t *r, const char *name)
{
    size_t n = strlen(name);
    for (unsigned i = 0; i < r->nhdr; i++)
        if (r->hdr[i].name.n == n && strncasecmp(r->hdr[i].name.p, name, n) == 0)
            return &r->hdr[i].value;
    return NULL;
}

bool gw_http_has_token(const gw_slice_t *v, const char *tok)
{
    if (!v)
        return false;
    size_t tl = strlen(tok);
    const char *p = v->p, *end = v->p + v->n;
    while (p < end) {
        const char *c = memchr(p, ',', (size_t)(end - p));
        const char *e = c ? c : end, *s = p;
        while (s < e && (*s == ' ' || *s == '\t'))
            s++;
        const char *t = e;
        while (t > s && (t[-1] == ' ' || t[-1] == '\t'))
            t--;
        if ((size_t)(t - s) == tl && strncasecmp(s, tok, tl) == 0)
            return true;
        p = c ? c + 1 : end;
    }
    return false;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

long gw_http_decode(gw_slice_t s, bool plus, char *out, size_t cap)
{
    size_t o = 0;
    for (size_t i = 0; i < s.n; i++) {
        char c = s.p[i];
        if (c == '%') {
            int h, l;
            if (i + 2 >= s.n)
                return -1;
            if ((h = hexval(s.p[i + 1])) < 0 || (l = hexval(s.p[i + 2])) < 0)
                return -1;
            c = (char)(h << 4 | l);
            i += 2;
        } else if (c == '+' && plus) {
            c = ' ';
        }
        if (c == 0 || o + 1 >= cap)
            return -1;
        out[o++] = c;
    }
    if (!cap)
        return -1;
    out[o] = 0;
    return (long)o;
}

long gw_http_query_arg(gw_slice_t query, const char *name, char *out, size_t cap)
{
    size_t nl = strlen(name);
    const char *p = query.p, *end = query.p + query.n;
    if (!nl)
        return -1;
    while (p < end) {
        const char *amp = memchr(p, '&', (size_t)(end - p));
        const char *e = amp ? amp : end;
        if ((size_t)(e - p) > nl && p[nl] == '=' && memcmp(p, name, nl) == 0)
            return gw_http_decode((gw_slice_t){p + nl + 1, (size_t)(e - p - nl - 1)}, true, out,
                                  cap);
        p = amp ? amp + 1 : end;
    }
    return -1;
}

long gw_http_copy(gw_slice_t s, char *out, size_t cap)
{
    if (s.n >= cap)
        return -1;
    memcpy(out, s.p, s.n);
    out[s.n] = 0;
    return (long)s.n;
}
