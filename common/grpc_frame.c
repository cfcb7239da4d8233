/* grpc_frame.c: incremental gRPC message decoder and prefix encoder (see grpc_frame.h). */
#include "grpc_frame.h"

#include <stdlib.h>
#include <string.h>

/* Bodies larger than this are not kept buffered between messages unless grpc_dec_keep says so
 * (idle streams stay small). */
#define KEEP_BUF_MAX (64 * 1024)
/* First allocation for a message body that spans feeds, and the growth step past GROW_STEP. */
#define GROW_MIN 4096
#define GROW_STEP (64 * 1024)

void grpc_dec_init(grpc_dec_t *d, size_t max)
{
    memset(d, 0, sizeof *d);
    d->max = max;
    d->keep = KEEP_BUF_MAX;
}

void grpc_dec_trust(grpc_dec_t *d, size_t bytes)
{
    d->trust = bytes;
    if (bytes > d->keep)
        d->keep = bytes;
}

void grpc_dec_keep(grpc_dec_t *d, size_t bytes)
{
    d->keep = bytes;
}

size_t grpc_dec_shrink(grpc_dec_t *d)
{
    size_t n = d->cap;
    if (grpc_dec_partial(d) || !n)
        return 0;
    grpc_dec_free(d);
    return n;
}

void grpc_dec_free(grpc_dec_t *d)
{
    free(d->buf);
    d->buf = NULL;
    d->cap = 0;
}

bool grpc_dec_partial(const grpc_dec_t *d)
{
    return d->hdr_have > 0;
}

static uint32_t be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Validates a complete header; sets d->need. */
static int check_header(grpc_dec_t *d, const uint8_t *hdr)
{
    if (hdr[0] == 1)
        return GRPC_FRAME_ERR_COMPRESSED;
    if (hdr[0] != 0)
        return GRPC_FRAME_ERR_BAD_FLAG;
    uint32_t n = be32(hdr + 1);
    if (n > d->max)
        return GRPC_FRAME_ERR_TOO_LARGE;
    d->need = n;
    return 0;
}

static void message_done(grpc_dec_t *d)
{
    d->hdr_have = 0;
    d->need = 0;
    d->have = 0;
    if (d->cap > d->keep) {
        free(d->buf);
        d->buf = NULL;
        d->cap = 0;
    }
}

int grpc_dec_feed(grpc_dec_t *d, const uint8_t *data, size_t len, grpc_frame_cb cb, void *ud)
{
    int rv;

    if (d->error)
        return d->error;
    while (len > 0) {
        if (d->hdr_have == 0 && len >= GRPC_FRAME_HDR_LEN) {
            /* Fast path: the header is whole in this chunk. */
            if ((rv = check_header(d, data)) < 0)
                goto fail;
            if (len - GRPC_FRAME_HDR_LEN >= d->need) {
                size_t n = d->need;
                d->need = 0;
                if ((rv = cb(ud, data + GRPC_FRAME_HDR_LEN, n)) < 0)
                    goto fail;
                data += GRPC_FRAME_HDR_LEN + n;
                len -= GRPC_FRAME_HDR_LEN + n;
                continue;
            }
            memcpy(d->hdr, data, GRPC_FRAME_HDR_LEN);
            d->hdr_have = GRPC_FRAME_HDR_LEN;
            data += GRPC_FRAME_HDR_LEN;
            len -= GRPC_FRAME_HDR_LEN;
        } else if (d->hdr_have < GRPC_FRAME_HDR_LEN) {
            size_t take = GRPC_FRAME_HDR_LEN - d->hdr_have;
            if (take > len)
                take = len;
            memcpy(d->hdr + d->hdr_have, data, take);
            d->hdr_have += take;
            data += take;
            len -= take;
            if (d->hdr_have < GRPC_FRAME_HDR_LEN)
                break;
            if ((rv = check_header(d, d->hdr)) < 0)
                goto fail;
            d->have = 0;
        }
        /* Header complete; accumulate the body. The buffer grows with what arrives (doubling,
         * never past the declared length): a prefix alone reserves nothing, so a peer that
         * announces large messages and sends little holds little. */
        size_t take = d->need - d->have;
        if (take > len)
            take = len;
        if (d->have + take > d->cap) {
            /* doubling while small (cheap copies), then in GROW_STEP steps (large buffers are
             * mmap'd: realloc remaps them instead of copying) so that the capacity stays close
             * to what arrived */
            size_t ncap = d->cap < GROW_STEP ? (d->cap ? d->cap * 2 : GROW_MIN)
                                             : d->cap + GROW_STEP;
            if (d->need <= d->trust)
                ncap = d->need; /* grpc_dec_trust: whole at once */
            else if (ncap < d->have + take)
                ncap = (d->have + take + GROW_STEP - 1) / GROW_STEP * GROW_STEP;
            if (ncap > d->need)
                ncap = d->need;
            uint8_t *nb = realloc(d->buf, ncap);
            if (!nb) {
                rv = GRPC_FRAME_ERR_NOMEM;
                goto fail;
            }
            d->buf = nb;
            d->cap = ncap;
        }
        if (take)
            memcpy(d->buf + d->have, data, take);
        d->have += take;
        data += take;
        len -= take;
        if (d->have == d->need) {
            static const uint8_t empty[1];
            rv = cb(ud, d->buf ? d->buf : empty, d->need);
            message_done(d); /* after the callback: it may free buf */
            if (rv < 0)
                goto fail;
        }
    }
    return 0;
fail:
    d->error = rv;
    return rv;
}

void grpc_frame_header(uint8_t out[GRPC_FRAME_HDR_LEN], uint32_t len)
{
    out[0] = 0;
    out[1] = (uint8_t)(len >> 24);
    out[2] = (uint8_t)(len >> 16);
    out[3] = (uint8_t)(len >> 8);
    out[4] = (uint8_t)len;
}

const char *grpc_frame_strerror(int err)
{
    switch (err) {
    case GRPC_FRAME_OK: return "ok";
    case GRPC_FRAME_ERR_TOO_LARGE: return "message larger than the maximum";
    case GRPC_FRAME_ERR_COMPRESSED: return "compressed message but no compression negotiated";
    case GRPC_FRAME_ERR_BAD_FLAG: return "invalid compressed-flag byte";
    case GRPC_FRAME_ERR_NOMEM: return "out of memory";
    default: return "callback error";
    }
}
