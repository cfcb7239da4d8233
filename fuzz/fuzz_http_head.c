/* fuzz_http_head.c: the HTTP/1.1 request head parser (common/http1.c: the gateway's client
 * port, ws-api's push API) on arbitrary bytes: every slice it returns lies inside the head, the head ends with its blank line, and
 * the decoders never write past their buffers or return lengths that disagree with them. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "http1.h"

static void inside(gw_slice_t s, const char *buf, size_t head)
{
    if (s.n && (s.p < buf || s.p + s.n > buf + head))
        abort();
}

static void decoded(long n, const char *out)
{
    if (n >= 0 && (size_t)n != strlen(out))
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *buf = malloc(size ? size : 1); /* exactly sized: ASan sees any overread */
    memcpy(buf, data, size);
    gw_http_req_t r;
    int rv = gw_http_parse(buf, size, &r);
    if (rv == GW_HTTP_AGAIN && size >= GW_HTTP_MAX_HEAD)
        abort();
    if (rv == GW_HTTP_OK) {
        size_t h = r.head_len;
        if (h < 4 || h > size || h > GW_HTTP_MAX_HEAD || memcmp(buf + h - 4, "\r\n\r\n", 4) ||
            r.nhdr > GW_HTTP_MAX_HEADERS || (r.minor != 0 && r.minor != 1) || !r.method.n ||
            !r.path.n || r.path.p[0] != '/')
            abort();
        inside(r.method, buf, h);
        inside(r.path, buf, h);
        inside(r.query, buf, h);
        for (unsigned i = 0; i < r.nhdr; i++) {
            inside(r.hdr[i].name, buf, h);
            inside(r.hdr[i].value, buf, h);
            if (!r.hdr[i].name.n)
                abort();
        }
        char out[24];
        decoded(gw_http_decode(r.path, false, out, sizeof out), out);
        decoded(gw_http_query_arg(r.query, "user", out, sizeof out), out);
        decoded(gw_http_query_arg(r.query, "token", out, 1), out);
        if (r.nhdr) {
            const gw_slice_t *v = gw_http_header(&r, "connection");
            (void)gw_http_has_token(v, "upgrade");
            decoded(gw_http_copy(r.hdr[0].value, out, sizeof out), out);
        }
    }
    free(buf);
    return 0;
}
