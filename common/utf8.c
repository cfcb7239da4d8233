/* utf8.c: UTF-8 validation (see utf8.h), byte ranges from RFC 3629 §4 (Table 3-7). */
#include "utf8.h"

#include <string.h>

/* The range allowed for the byte after a lead byte, by constraint index (0 = any
 * continuation byte). The state of gw_utf8_feed: bits 0-1 continuation bytes still needed,
 * bits 2-4 the constraint index of the next one. */
static const uint8_t lo_of[5] = {0x80, 0xA0, 0x80, 0x90, 0x80};
static const uint8_t hi_of[5] = {0xBF, 0xBF, 0x9F, 0xBF, 0x8F};

/* A lead byte >= 0x80: its continuation count (1-3) and the constraint index of its second
 * byte; 0 when c cannot start a sequence. */
static inline unsigned lead(uint8_t c, unsigned *k)
{
    *k = 0;
    if (c >= 0xC2 && c <= 0xDF)
        return 1;
    if (c >= 0xE0 && c <= 0xEF) {
        *k = c == 0xE0 ? 1 /* no overlongs */ : c == 0xED ? 2 /* no surrogates */ : 0;
        return 2;
    }
    if (c >= 0xF0 && c <= 0xF4) {
        *k = c == 0xF0 ? 3 : c == 0xF4 ? 4 /* <= U+10FFFF */ : 0;
        return 3;
    }
    return 0;
}

bool gw_utf8_feed(uint8_t *state, const uint8_t *p, size_t len)
{
    size_t i = 0;
    unsigned st = *state;
    /* the end of a sequence the previous slice cut */
    while (st && i < len) {
        unsigned k = st >> 2;
        if (p[i] < lo_of[k] || p[i] > hi_of[k])
            return false;
        i++;
        st = (st & 3) - 1; /* the next byte, if any, is a plain continuation byte */
    }
    if (st) {
        *state = (uint8_t)st;
        return true;
    }
    while (i < len) {
        /* ASCII fast path, 8 bytes at a time */
        while (i + 8 <= len) {
            uint64_t w;
            memcpy(&w, p + i, 8);
            if (w & 0x8080808080808080ULL)
                break;
            i += 8;
        }
        if (i >= len)
            break;
        uint8_t c = p[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        unsigned k, n = lead(c, &k);
        if (!n)
            return false;
        size_t have = len - i - 1; /* continuation bytes in this slice */
        if (have > n)
            have = n;
        if (have && (p[i + 1] < lo_of[k] || p[i + 1] > hi_of[k]))
            return false;
        for (size_t j = 2; j <= have; j++)
            if ((p[i + j] & 0xC0) != 0x80)
                return false;
        if (have < n) { /* the slice ends inside this character */
            *state = (uint8_t)((n - have) | (have ? 0 : k << 2));
            return true;
        }
        i += n + 1;
    }
    *state = 0;
    return true;
}

bool gw_utf8_valid(const uint8_t *p, size_t len)
{
    uint8_t st = 0;
    return gw_utf8_feed(&st, p, len) && st == 0;
}

size_t gw_utf8_cut(const uint8_t *p, size_t len, size_t max)
{
    if (len <= max)
        return len;
    size_t n = max;
    while (n && (p[n] & 0xC0) == 0x80) /* p[n] is the first byte left out */
        n--;
    return n;
}
