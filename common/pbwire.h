/* pbwire.h: protobuf wire-format primitives for the hand-written codecs of the hot path.
 *
 * Why by hand: in the closed loop every message crosses protobuf four times (the gateway
 * encodes an Upstream event, ws-api decodes it and encodes the answer, the gateway decodes the
 * Downstream), and protobuf-c's generic, descriptor-driven code cost ~2.5 k instructions per
 * message per decode, plus an allocation and a copy of every payload (bench/RESULTS.md,
 * issue 18). The codecs built on this header read fields straight out of the received bytes
 * (payloads are not copied) and write them straight into the outgoing buffer.
 *
 * The wire format is proto/wsgw.proto's, and the accept/reject rules are those of protobuf-c
 * 1.4.1, which the rest of the code (and every earlier release) used, quirks included, so that
 * a message is refused exactly when protobuf-c refuses it: fields in any order, unknown fields
 * skipped (wire types 0, 1, 2 and 5; 3, 4, 6, 7 refused), packed and unpacked repeated
 * scalars, a tag of at most 5 bytes whose first byte has a nonzero field part, a varint of at
 * most 10 bytes, a length prefix of at most 5 bytes and at most INT_MAX. Checked against
 * protobuf-c by tests/unit/test_pbcodec.c (randomized round trips both ways) and
 * fuzz/fuzz_pbcodec.c (both decoders on arbitrary bytes). Pure; any thread. */
#ifndef WSGW_PBWIRE_H
#define WSGW_PBWIRE_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

enum { PBW_VARINT = 0, PBW_I64 = 1, PBW_LEN = 2, PBW_I32 = 5 };

/* A reader over p[0..end). */
typedef struct pbw {
    const uint8_t *p, *end;
} pbw_t;

/* One field as read. */
typedef struct pbw_field {
    uint32_t num;        /* field number (protobuf-c's arithmetic: the low 32 bits) */
    uint8_t wt;          /* wire type: PBW_* */
    const uint8_t *val;  /* varint or fixed bytes; PBW_LEN: the bytes after the length */
    size_t len;          /* their count */
    const uint8_t *raw;  /* the value with its length prefix (what protobuf-c reads a bool
                            from, whatever the wire type) */
    size_t raw_len;
} pbw_field_t;

static inline pbw_t pbw_init(const uint8_t *p, size_t len)
{
    return (pbw_t){p, p + len};
}

/* pbw_next: reads the next field. Returns 1 (f filled), 0 at the end, -1 when malformed. */
static inline __attribute__((always_inline)) int pbw_next(pbw_t *r, pbw_field_t *f)
{
    const uint8_t *p = r->p;
    size_t rem = (size_t)(r->end - p);
    if (!rem)
        return 0;
    /* the common case first: a one-byte key, then a one-byte varint or length */
    if (rem >= 2 && p[0] >= 0x08 && p[0] < 0x80 && p[1] < 0x80) {
        uint8_t wt = p[0] & 7;
        if (wt == PBW_VARINT) {
            f->num = p[0] >> 3;
            f->wt = wt;
            f->val = f->raw = p + 1;
            f->len = f->raw_len = 1;
            r->p = p + 2;
            return 1;
        }
        if (wt == PBW_LEN && (size_t)p[1] <= rem - 2) {
            f->num = p[0] >> 3;
            f->wt = wt;
            f->raw = p + 1;
            f->raw_len = 1 + (size_t)p[1];
            f->val = p + 2;
            f->len = p[1];
            r->p = p + 2 + p[1];
            return 1;
        }
    }
    if ((p[0] & 0xf8) == 0)
        return -1; /* field number 0 (as protobuf-c checks it: first byte only) */
    uint32_t num = (uint32_t)(p[0] & 0x7f) >> 3;
    size_t used = 0;
    if (!(p[0] & 0x80)) {
        used = 1;
    } else {
        size_t max = rem > 5 ? 5 : rem;
        unsigned shift = 4;
        for (size_t i = 1; i < max; i++) {
            if (p[i] & 0x80) {
                num |= (uint32_t)(p[i] & 0x7f) << shift;
                shift += 7;
            } else {
                num |= (uint32_t)p[i] << shift;
                used = i + 1;
                break;
            }
        }
        if (!used)
            return -1;
    }
    f->num = num;
    f->wt = p[0] & 7;
    p += used;
    rem -= used;
    switch (f->wt) {
    case PBW_VARINT: {
        size_t max = rem < 10 ? rem : 10, i;
        for (i = 0; i < max; i++)
            if (!(p[i] & 0x80))
                break;
        if (i == max)
            return -1;
        f->val = f->raw = p;
        f->len = f->raw_len = i + 1;
        break;
    }
    case PBW_I64:
        if (rem < 8)
            return -1;
        f->val = f->raw = p;
        f->len = f->raw_len = 8;
        break;
    case PBW_I32:
        if (rem < 4)
            return -1;
        f->val = f->raw = p;
        f->len = f->raw_len = 4;
        break;
    case PBW_LEN: {
        size_t max = rem < 5 ? rem : 5, i, n = 0;
        unsigned shift = 0;
        for (i = 0; i < max; i++) {
            n |= (size_t)(p[i] & 0x7f) << shift;
            shift += 7;
            if (!(p[i] & 0x80))
                break;
        }
        if (i == max || n > INT_MAX || i + 1 + n > rem)
            return -1;
        f->raw = p;
        f->raw_len = i + 1 + n;
        f->val = p + i + 1;
        f->len = n;
        break;
    }
    default:
        return -1; /* groups (3, 4) and 6, 7 */
    }
    r->p = f->raw + f->raw_len;
    return 1;
}

/* pbw_u64: a PBW_VARINT field's value (bits past 64 dropped, as protobuf-c does). */
static inline uint64_t pbw_u64(const pbw_field_t *f)
{
    uint64_t v = 0;
    for (size_t i = 0; i < f->len; i++)
        v |= (uint64_t)(f->val[i] & 0x7f) << (7 * i);
    return v;
}

/* pbw_bool: protobuf-c's reading of a bool: true when any byte of the value (with its length
 * prefix, for any wire type) has a nonzero low 7 bits. */
static inline bool pbw_bool(const pbw_field_t *f)
{
    for (size_t i = 0; i < f->raw_len; i++)
        if (f->raw[i] & 0x7f)
            return true;
    return false;
}

/* pbw_str_len: a string field's length as C code sees protobuf-c's copy of it: up to the
 * first NUL byte. */
static inline size_t pbw_str_len(const pbw_field_t *f)
{
    const uint8_t *z = memchr(f->val, 0, f->len);
    return z ? (size_t)(z - f->val) : f->len;
}

/* pbw_packed_ok: a packed run of varints is well formed (each at most 10 bytes, the last one
 * terminated); *count gets how many. */
static inline bool pbw_packed_ok(const uint8_t *p, size_t len, size_t *count)
{
    size_t n = 0;
    while (len) {
        size_t max = len < 10 ? len : 10, i;
        for (i = 0; i < max; i++)
            if (!(p[i] & 0x80))
                break;
        if (i == max)
            return false;
        p += i + 1;
        len -= i + 1;
        n++;
    }
    *count = n;
    return true;
}

/* pbw_packed_next: the next varint of a well-formed packed run (pbw_packed_ok). */
static inline uint64_t pbw_packed_next(const uint8_t **p)
{
    uint64_t v = 0;
    unsigned shift = 0;
    const uint8_t *q = *p;
    for (;;) {
        uint8_t b = *q++;
        if (shift < 64)
            v |= (uint64_t)(b & 0x7f) << shift;
        shift += 7;
        if (!(b & 0x80))
            break;
    }
    *p = q;
    return v;
}

/* ---- writing ------------------------------------------------------------------------------- */

/* pbw_varint_len: bytes of v as a varint (1-10). */
static inline size_t pbw_varint_len(uint64_t v)
{
    size_t n = 1;
    while (v >= 0x80) {
        v >>= 7;
        n++;
    }
    return n;
}

/* pbw_put_varint: writes v at p (room for 10 bytes); returns the position after it. */
static inline uint8_t *pbw_put_varint(uint8_t *p, uint64_t v)
{
    while (v >= 0x80) {
        *p++ = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    *p++ = (uint8_t)v;
    return p;
}

/* pbw_key: the key byte of field num (1-15) with wire type wt. */
#define PBW_KEY(num, wt) ((uint8_t)((num) << 3 | (wt)))

/* Sizes of a field as protobuf-c packs proto3 fields (zero / empty values are left out):
 * key (fields 1-15: one byte) + value. */
static inline size_t pbw_size_varint_field(uint64_t v)
{
    return v ? 1 + pbw_varint_len(v) : 0;
}
static inline size_t pbw_size_len_field(size_t n) /* a string or bytes field, present if n */
{
    return n ? 1 + pbw_varint_len(n) + n : 0;
}
static inline size_t pbw_size_msg_field(size_t n) /* a sub-message: present even when empty */
{
    return 1 + pbw_varint_len(n) + n;
}

static inline uint8_t *pbw_put_varint_field(uint8_t *p, unsigned num, uint64_t v)
{
    if (!v)
        return p;
    *p++ = PBW_KEY(num, PBW_VARINT);
    return pbw_put_varint(p, v);
}
static inline uint8_t *pbw_put_len_field(uint8_t *p, unsigned num, const void *data, size_t n)
{
    if (!n)
        return p;
    *p++ = PBW_KEY(num, PBW_LEN);
    p = pbw_put_varint(p, n);
    memcpy(p, data, n);
    return p + n;
}
static inline uint8_t *pbw_put_msg_head(uint8_t *p, unsigned num, size_t n)
{
    *p++ = PBW_KEY(num, PBW_LEN);
    return pbw_put_varint(p, n);
}

#endif
