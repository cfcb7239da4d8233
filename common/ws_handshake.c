/* ws_handshake.c: RFC 6455 §4.1 client handshake (see ws_handshake.h). */
#include "ws_handshake.h"

#include <ctype.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include <openssl/evp.h>
#include <openssl/rand.h>

#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11" /* §1.3 */

int hs_key(char out[HS_KEY_LEN + 1])
{
    unsigned char raw[16];
    if (RAND_bytes(raw, sizeof raw) != 1)
        return -1;
    EVP_EncodeBlock((unsigned char *)out, raw, sizeof raw);
    return 0;
}

void hs_accept(const char *key, char out[HS_ACCEPT_LEN + 1])
{
    char buf[128];
    int n = snprintf(buf, sizeof buf, "%s%s", key, WS_GUID);
    if (n < 0 || (size_t)n >= sizeof buf)
        n = (int)sizeof buf - 1;
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    EVP_Digest(buf, (size_t)n, md, &mdlen, EVP_sha1(), NULL);
    EVP_EncodeBlock((unsigned char *)out, md, (int)mdlen);
}

size_t hs_request(char *out, size_t cap, const char *host, const char *path, const char *key,
                  const char *extra)
{
    int n = snprintf(out, cap,
                     "GET %s HTTP/1.1\r\n"
                     "Host: %s\r\n"
                     "Upgrade: websocket\r\n"
                     "Connection: Upgrade\r\n"
                     "Sec-WebSocket-Key: %s\r\n"
                     "Sec-WebSocket-Version: 13\r\n"
                     "%s\r\n",
                     path, host, key, extra ? extra : "");
    if (n < 0 || (size_t)n >= cap)
        return 0;
    return (size_t)n;
}

/* true when the comma-separated header value v (length n) holds token tok (case-insensitive) */
static bool has_token(const char *v, size_t n, const char *tok)
{
    size_t tl = strlen(tok);
    size_t i = 0;
    while (i < n) {
        while (i < n && (v[i] == ' ' || v[i] == '\t' || v[i] == ','))
            i++;
        size_t s = i;
        while (i < n && v[i] != ',')
            i++;
        size_t e = i;
        while (e > s && (v[e - 1] == ' ' || v[e - 1] == '\t'))
            e--;
        if (e - s == tl && strncasecmp(v + s, tok, tl) == 0)
            return true;
    }
    return false;
}

int hs_response(const char *buf, size_t len, const char *expect_accept, int *status,
                size_t *hdr_len)
{
    *status = 0;
    const char *eol = memchr(buf, '\n', len);
    if (eol) {
        /* "HTTP/1.1 101 Switching Protocols" */
        if (len < 12 || strncmp(buf, "HTTP/1.", 7) != 0 || buf[8] != ' ' ||
            !isdigit((unsigned char)buf[9]) || !isdigit((unsigned char)buf[10]) ||
            !isdigit((unsigned char)buf[11]))
            return HS_ERR_INVALID;
        *status = (buf[9] - '0') * 100 + (buf[10] - '0') * 10 + (buf[11] - '0');
    }
    const char *end = NULL;
    for (size_t i = 3; i < len; i++) {
        if (buf[i] == '\n' && buf[i - 1] == '\r' && buf[i - 2] == '\n' && buf[i - 3] == '\r') {
            end = buf + i + 1;
            break;
        }
    }
    if (!end)
        return len >= HS_MAX_RESPONSE ? HS_ERR_TOO_LONG : HS_AGAIN;
    *hdr_len = (size_t)(end - buf);
    if (*status != 101)
        return HS_ERR_STATUS;

    bool upgrade = false, connection = false, accept = false;
    const char *line = eol + 1;
    while (line < end - 2) {
        const char *le = memchr(line, '\n', (size_t)(end - line));
        if (!le)
            break;
        size_t ll = (size_t)(le - line);
        if (ll && line[ll - 1] == '\r')
            ll--;
        const char *colon = memchr(line, ':', ll);
        if (colon) {
            size_t nl = (size_t)(colon - line);
            const char *v = colon + 1;
            size_t vl = ll - nl - 1;
            while (vl && (*v == ' ' || *v == '\t')) {
                v++;
                vl--;
            }
            while (vl && (v[vl - 1] == ' ' || v[vl - 1] == '\t'))
                vl--;
            if (nl == 7 && strncasecmp(line, "Upgrade", 7) == 0)
                upgrade = vl == 9 && strncasecmp(v, "websocket", 9) == 0;
            else if (nl == 10 && strncasecmp(line, "Connection", 10) == 0)
                connection = has_token(v, vl, "upgrade");
            else if (nl == 20 && strncasecmp(line, "Sec-WebSocket-Accept", 20) == 0)
                accept = vl == HS_ACCEPT_LEN && memcmp(v, expect_accept, HS_ACCEPT_LEN) == 0;
            else if (nl == 24 && strncasecmp(line, "Sec-WebSocket-Extensions", 24) == 0)
                return HS_ERR_INVALID; /* §4.1: an extension we did not ask for */
        }
        line = le + 1;
    }
    return upgrade && connection && accept ? HS_OK : HS_ERR_INVALID;
}
