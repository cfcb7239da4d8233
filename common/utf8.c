/* utf8.c: UTF-8 validation (see utf8.h), byte ranges from RFC 3629 §4 (Table 3-7).
 *
 * Two parts: an ASCII fast path that skips runs of bytes < 0x80 (64, then 16 bytes per step
 * with SSE2, which every x86-64 has, then 8 with plain 64-bit words, then single bytes), and
 * for everything else an exact DFA over Table 3-7 run byte by byte. The DFA is "shift-based": each byte's table entry
 * is one 64-bit word holding the next state for every current state, each state a 6-bit field
 * at its own offset, so one step is a load, a shift and a mask (no class lookup, no branch).
 * The reject state is absorbing: a slice is checked once at its end, which still fails the
 * slice that holds the first bad byte (RFC 6455 §8.1: fail fast, not at the message end). */
#include "utf8.h"

#include <string.h>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

/* States, as bit offsets into a table word (ACCEPT must be 0: utf8.h's "state 0 between
 * characters"). */
enum {
    ACCEPT = 0,  /* between characters */
    REJECT = 6,  /* absorbing */
    NEED1 = 12,  /* one continuation byte 80..BF to go */
    NEED2 = 18,  /* two to go, any continuation */
    E0_2 = 24,   /* after E0: A0..BF (no overlongs), then one */
    ED_2 = 30,   /* after ED: 80..9F (no surrogates), then one */
    NEED3 = 36,  /* three to go */
    F0_3 = 42,   /* after F0: 90..BF (no overlongs), then two */
    F4_3 = 48,   /* after F4: 80..8F (<= U+10FFFF), then two */
};

/* The word for a byte: for each state s, the state after this byte, at bit offset s. */
#define T(s, next) ((uint64_t)(next) << (s))
/* every state not named goes to REJECT */
#define ROW(acc, n1, n2, e0, ed, n3, f0, f4)                                                   \
    (T(ACCEPT, acc) | T(REJECT, REJECT) | T(NEED1, n1) | T(NEED2, n2) | T(E0_2, e0) |          \
     T(ED_2, ed) | T(NEED3, n3) | T(F0_3, f0) | T(F4_3, f4))
#define R REJECT
#define ASCII ROW(ACCEPT, R, R, R, R, R, R, R)
#define C80 ROW(R, ACCEPT, NEED1, R, NEED1, NEED2, R, NEED2)   /* 80..8F */
#define C90 ROW(R, ACCEPT, NEED1, R, NEED1, NEED2, NEED2, R)   /* 90..9F */
#define CA0 ROW(R, ACCEPT, NEED1, NEED1, R, NEED2, NEED2, R)   /* A0..BF */
#define BAD ROW(R, R, R, R, R, R, R, R)                        /* C0 C1 F5..FF */
#define L2 ROW(NEED1, R, R, R, R, R, R, R)                     /* C2..DF */
#define LE0 ROW(E0_2, R, R, R, R, R, R, R)
#define L3 ROW(NEED2, R, R, R, R, R, R, R)                     /* E1..EC EE EF */
#define LED ROW(ED_2, R, R, R, R, R, R, R)
#define LF0 ROW(F0_3, R, R, R, R, R, R, R)
#define L4 ROW(NEED3, R, R, R, R, R, R, R)                     /* F1..F3 */
#define LF4 ROW(F4_3, R, R, R, R, R, R, R)
#define X4(r) r, r, r, r
#define X16(r) X4(r), X4(r), X4(r), X4(r)

static const uint64_t dfa[256] = {
    X16(ASCII), X16(ASCII), X16(ASCII), X16(ASCII), X16(ASCII), X16(ASCII), X16(ASCII),
    X16(ASCII),                                      /* 00..7F */
    X16(C80), X16(C90), X16(CA0), X16(CA0),          /* 80..BF */
    BAD, BAD, X4(L2), X4(L2), X4(L2), X4(L2), X4(L2), X4(L2), X4(L2), L2, L2, /* C0..DF */
    LE0, X4(L3), X4(L3), X4(L3), LED, L3, L3,        /* E0..EF */
    LF0, L4, L4, L4, LF4, X4(BAD), X4(BAD), BAD, BAD, BAD, /* F0..FF */
};

/* How many bytes from p on are ASCII (at most len). */
static inline size_t ascii_run(const uint8_t *p, size_t len)
{
    size_t i = 0;
#if defined(__SSE2__)
    for (; i + 64 <= len; i += 64) {
        const __m128i *q = (const __m128i *)(const void *)(p + i);
        __m128i v = _mm_or_si128(_mm_or_si128(_mm_loadu_si128(q), _mm_loadu_si128(q + 1)),
                                 _mm_or_si128(_mm_loadu_si128(q + 2), _mm_loadu_si128(q + 3)));
        if (_mm_movemask_epi8(v))
            break;
    }
    for (; i + 16 <= len; i += 16) {
        __m128i v = _mm_loadu_si128((const __m128i *)(const void *)(p + i));
        if (_mm_movemask_epi8(v))
            break;
    }
#endif
    for (; i + 8 <= len; i += 8) { /* (with SSE2: the tail of a short message) */
        uint64_t w;
        memcpy(&w, p + i, 8);
        if (w & 0x8080808080808080ULL)
            break;
    }
    while (i < len && p[i] < 0x80)
        i++;
    return i;
}

bool gw_utf8_feed(uint8_t *state, const uint8_t *p, size_t len)
{
    uint64_t st = *state;
    size_t i = 0;
    while (i < len) {
        if (st == ACCEPT) {
            i += ascii_run(p + i, len - i);
            if (i == len)
                break;
        }
        /* the DFA over a block (up to 16 bytes; to the end of a short slice) */
        size_t end = len - i > 16 ? i + 16 : len;
        for (; i < end; i++)
            st = (dfa[p[i]] >> st) & 63;
        if (st == REJECT)
            return false;
    }
    *state = (uint8_t)st;
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
