/* raw.c: ws-refecho --raw: the same echo with lws' WebSocket role left out. lws adopts each
 * accepted socket as a raw socket (its event loop, reads of up to pt_serv_buf_size, writes);
 * the HTTP upgrade and the RFC 6455 framing are done here (bench/handshake.c, bench/ws_frame.c).
 * It measures what lws' ws role costs per connection and per message (bench/RESULTS.md,
 * experiment 28). A benchmark reference only: a minimal upgrade (GET with Sec-WebSocket-Key),
 * no extensions, no UTF-8 check. Every function runs on the connection's service thread. */
#include <libwebsockets.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "ws_handshake.h"
#include "ws_frame.h"
#include "raw.h"
#include "refecho.h"

#define HS_MAX 8192


static void sess_free(raw_sess_t *s)
{
    free(s->hs);
    free(s->msg);
    ws_rx_free(&s->rx);
    s->hs = NULL;
    s->msg = NULL;
}

#define MSG_HEAD (LWS_PRE + 10) /* room for the largest unmasked header before the payload */

static int on_msg_begin(void *ctx, int opcode, const uint8_t *prefix, size_t prefix_len)
{
    raw_sess_t *s = ctx;
    (void)prefix;
    (void)prefix_len;
    s->opcode = (uint8_t)opcode;
    s->msg_len = 0;
    return 0;
}

static int reserve(raw_sess_t *s, size_t n)
{
    if (s->msg && MSG_HEAD + s->msg_len + n <= s->msg_cap)
        return 0;
    size_t cap = (MSG_HEAD + s->msg_len + n) * 2;
    uint8_t *m = realloc(s->msg, cap);
    if (!m)
        return 1;
    s->msg = m;
    s->msg_cap = cap;
    return 0;
}

static int on_data(void *ctx, const uint8_t *p, size_t n)
{
    raw_sess_t *s = ctx;
    if (reserve(s, n))
        return 1;
    memcpy(s->msg + MSG_HEAD + s->msg_len, p, n);
    s->msg_len += n;
    return 0;
}

/* Writes one unmasked frame whose payload sits at buf + MSG_HEAD. */
static int send_frame(raw_sess_t *s, int opcode, uint8_t *buf, size_t len)
{
    size_t h = ws_frame_header_len(len, false);
    uint8_t *f = buf + MSG_HEAD - h;
    ws_frame_header(f, opcode, true, len, NULL);
    /* lws keeps what the socket did not take and sends it on the next POLLOUT */
    return lws_write(s->wsi, f, h + len, LWS_WRITE_RAW) < 0 ? 1 : 0;
}

static int on_msg_end(void *ctx, uint64_t len)
{
    raw_sess_t *s = ctx;
    (void)len;
    if (reserve(s, 0)) /* an empty message still needs the header room */
        return 1;
    refecho_svc_t *svc = lws_context_user(lws_get_context(s->wsi));
    atomic_fetch_add_explicit(&svc->messages, 1, memory_order_relaxed);
    int rv = send_frame(s, s->opcode, s->msg, s->msg_len);
    if (s->msg_cap > 64 * 1024) { /* keep a large buffer only while it is in use */
        free(s->msg);
        s->msg = NULL;
        s->msg_cap = 0;
    }
    return rv;
}

static int on_control(void *ctx, int opcode, const uint8_t *p, size_t n)
{
    raw_sess_t *s = ctx;
    uint8_t buf[MSG_HEAD + WS_MAX_CONTROL];
    if (opcode == WS_OP_PONG)
        return 0;
    memcpy(buf + MSG_HEAD, p, n);
    if (opcode == WS_OP_PING)
        return send_frame(s, WS_OP_PONG, buf, n);
    send_frame(s, WS_OP_CLOSE, buf, n); /* echo the close, then hang up */
    return 1;
}

static const ws_rx_cb_t rx_cb = {on_msg_begin, on_data, on_msg_end, on_control};

/* Finds header `name` in the request head; copies its trimmed value into out. */
static int header(const char *req, const char *name, char *out, size_t cap)
{
    size_t nl = strlen(name);
    for (const char *l = strstr(req, "\r\n"); l; l = strstr(l + 2, "\r\n")) {
        const char *h = l + 2;
        if (strncasecmp(h, name, nl) == 0 && h[nl] == ':') {
            const char *v = h + nl + 1;
            while (*v == ' ' || *v == '\t')
                v++;
            const char *e = strstr(v, "\r\n");
            size_t vl = e ? (size_t)(e - v) : strlen(v);
            while (vl && (v[vl - 1] == ' ' || v[vl - 1] == '\t'))
                vl--;
            if (vl >= cap)
                return -1;
            memcpy(out, v, vl);
            out[vl] = 0;
            return 0;
        }
    }
    return -1;
}

/* Collects the request head; once it is whole, answers 101 and feeds what followed it. */
static int on_handshake(raw_sess_t *s, const uint8_t *in, size_t len)
{
    if (!s->hs && !(s->hs = malloc(HS_MAX + 1)))
        return -1;
    if (s->hs_len + len > HS_MAX)
        return -1;
    memcpy(s->hs + s->hs_len, in, len);
    s->hs_len += (uint32_t)len;
    s->hs[s->hs_len] = 0;
    char *end = strstr(s->hs, "\r\n\r\n");
    if (!end)
        return 0;
    char key[64], accept[HS_ACCEPT_LEN + 1];
    if (strncmp(s->hs, "GET ", 4) != 0 || header(s->hs, "Sec-WebSocket-Key", key, sizeof key))
        return -1;
    hs_accept(key, accept);
    uint8_t resp[LWS_PRE + 256];
    int n = snprintf((char *)resp + LWS_PRE, 256,
                     "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n", accept);
    if (lws_write(s->wsi, resp + LWS_PRE, (size_t)n, LWS_WRITE_RAW) < 0)
        return -1;
    size_t head = (size_t)(end + 4 - s->hs), rest = s->hs_len - head;
    uint8_t *tail = (uint8_t *)s->hs + head;
    s->upgraded = 1;
    s->rx.expect_masked = 1;
    int rv = rest ? ws_rx_feed(&s->rx, tail, rest, &rx_cb, s) : WS_OK;
    free(s->hs);
    s->hs = NULL;
    return rv == WS_OK ? 0 : -1;
}

int refecho_raw_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user,
                         void *in, size_t len)
{
    raw_sess_t *s = user;
    switch (reason) {
    case LWS_CALLBACK_RAW_ADOPT:
        memset(s, 0, sizeof *s);
        s->wsi = wsi;
        return 0;
    case LWS_CALLBACK_RAW_RX:
        if (!s->upgraded)
            return on_handshake(s, in, len);
        return ws_rx_feed(&s->rx, in, len, &rx_cb, s) == WS_OK ? 0 : -1;
    case LWS_CALLBACK_RAW_CLOSE:
        sess_free(s);
        return 0;
    default:
        return 0;
    }
}

