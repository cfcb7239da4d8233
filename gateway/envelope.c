/* envelope.c: wsgw.v1.json server frames (see envelope.h). Any thread. */
#include "envelope.h"

#include <openssl/evp.h>
#include <stdio.h>
#include <string.h>

#include "utf8.h"

static const char hexd[] = "0123456789abcdef";

/* Escaped length of one byte that is copied as it is or escaped (valid UTF-8 input). */
static size_t esc_len(uint8_t c)
{
    if (c == '"' || c == '\\' || c == '\b' || c == '\f' || c == '\n' || c == '\r' || c == '\t')
        return 2;
    return c < 0x20 ? 6 : 1;
}

size_t gw_env_json_len(const uint8_t *s, size_t n)
{
    bool valid = gw_utf8_valid(s, n);
    size_t len = 0;
    for (size_t i = 0; i < n; i++)
        len += !valid && s[i] >= 0x80 ? 6 : esc_len(s[i]);
    return len;
}

size_t gw_env_json_put(char *out, const uint8_t *s, size_t n)
{
    bool valid = gw_utf8_valid(s, n);
    char *o = out;
    for (size_t i = 0; i < n; i++) {
        uint8_t c = s[i];
        if (!valid && c >= 0x80) {
            memcpy(o, "\\ufffd", 6);
            o += 6;
            continue;
        }
        switch (c) {
        case '"': *o++ = '\\'; *o++ = '"'; break;
        case '\\': *o++ = '\\'; *o++ = '\\'; break;
        case '\b': *o++ = '\\'; *o++ = 'b'; break;
        case '\f': *o++ = '\\'; *o++ = 'f'; break;
        case '\n': *o++ = '\\'; *o++ = 'n'; break;
        case '\r': *o++ = '\\'; *o++ = 'r'; break;
        case '\t': *o++ = '\\'; *o++ = 't'; break;
        default:
            if (c < 0x20) {
                memcpy(o, "\\u00", 4);
                o[4] = hexd[c >> 4];
                o[5] = hexd[c & 15];
                o += 6;
            } else {
                *o++ = (char)c;
            }
        }
    }
    return (size_t)(o - out);
}

static char *put_lit(char *o, const char *lit)
{
    size_t n = strlen(lit);
    memcpy(o, lit, n);
    return o + n;
}

static char *put_str(char *o, const char *key, const char *s, size_t n)
{
    o = put_lit(o, key);
    o += gw_env_json_put(o, (const uint8_t *)s, n);
    *o++ = '"';
    return o;
}

/* The common head: {"type":"T" [,"channel":"C"] */
static size_t head_len(const char *type, const char *chan, size_t chan_len)
{
    size_t n = strlen("{\"type\":\"\"") + strlen(type);
    if (chan_len)
        n += strlen(",\"channel\":\"\"") + gw_env_json_len((const uint8_t *)chan, chan_len);
    return n;
}

static char *put_head(char *o, const char *type, const char *chan, size_t chan_len)
{
    o = put_lit(o, "{\"type\":\"");
    o = put_lit(o, type);
    *o++ = '"';
    if (chan_len)
        o = put_str(o, ",\"channel\":\"", chan, chan_len);
    return o;
}

gw_payload_t *gw_env_message(const char *chan, size_t chan_len, uint64_t offset,
                             const char *epoch, size_t epoch_len, const uint8_t *data,
                             size_t len, bool binary, int64_t t_recv)
{
    char off[40] = "";
    if (offset)
        snprintf(off, sizeof off, ",\"offset\":%llu", (unsigned long long)offset);
    bool b64 = binary || !gw_utf8_valid(data, len);
    size_t n = head_len("message", chan, chan_len) + strlen(off) + 1;
    if (offset)
        n += strlen(",\"epoch\":\"\"") + gw_env_json_len((const uint8_t *)epoch, epoch_len);
    if (b64) {
        if (len > (size_t)UINT32_MAX / 2)
            return NULL;
        n += strlen(",\"data_base64\":\"\"") + 4 * ((len + 2) / 3);
    } else {
        n += strlen(",\"data\":\"\"") + gw_env_json_len(data, len);
    }
    gw_payload_t *p = gw_payload_alloc(n, false, t_recv);
    if (!p)
        return NULL;
    char *o = put_head((char *)gw_payload_data(p), "message", chan, chan_len);
    o = put_lit(o, off);
    if (offset)
        o = put_str(o, ",\"epoch\":\"", epoch, epoch_len);
    if (b64) {
        o = put_lit(o, ",\"data_base64\":\"");
        /* EVP_EncodeBlock writes a NUL after the text: the payload has a byte to spare there
         * only at the very end, so encode into place and let the quote overwrite it */
        int w = len ? EVP_EncodeBlock((unsigned char *)o, data, (int)len) : 0;
        o += w;
        *o++ = '"';
    } else {
        o = put_str(o, ",\"data\":\"", (const char *)data, len);
    }
    *o++ = '}';
    p->len = (uint32_t)(o - (char *)gw_payload_data(p)); /* == n */
    return p;
}

gw_payload_t *gw_env_recovery(const char *chan, size_t chan_len, bool recovered,
                              uint64_t offset, const char *epoch, size_t epoch_len,
                              int64_t t_recv)
{
    char mid[80];
    int m = snprintf(mid, sizeof mid, ",\"recovered\":%s,\"offset\":%llu",
                     recovered ? "true" : "false", (unsigned long long)offset);
    size_t n = head_len("recovery", chan, chan_len) + (size_t)m + strlen(",\"epoch\":\"\"") +
               gw_env_json_len((const uint8_t *)epoch, epoch_len) + 1;
    gw_payload_t *p = gw_payload_alloc(n, false, t_recv);
    if (!p)
        return NULL;
    char *o = put_head((char *)gw_payload_data(p), "recovery", chan, chan_len);
    o = put_lit(o, mid);
    o = put_str(o, ",\"epoch\":\"", epoch, epoch_len);
    *o++ = '}';
    p->len = (uint32_t)(o - (char *)gw_payload_data(p));
    return p;
}
