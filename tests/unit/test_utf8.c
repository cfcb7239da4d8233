/* test_utf8.c: common/utf8.c against a reference written from RFC 3629 in another way (code
 * point ranges, not byte ranges): every 1- and 2-byte input and every 3-byte input whose
 * bytes are of interest, random strings biased toward UTF-8, and for each the incremental
 * verdict when fed in slices (it must fail in the slice holding the first bad byte, never
 * earlier or later) and the state at the end (0 only on a character boundary). */
#include <stdlib.h>

#include "test.h"
#include "utf8.h"

/* Whether p[0..n) can still be extended to valid UTF-8: each sequence's lead gives its length
 * and the smallest code point of that length; the bytes present bound the code point to
 * [lo, hi] (missing 6-bit groups all 0 or all 1), which must meet the valid set
 * [min, D7FF] U [E000, 10FFFF]. */
static bool ref_extendable(const uint8_t *p, size_t n, bool *complete)
{
    size_t i = 0;
    *complete = true;
    while (i < n) {
        uint8_t c = p[i];
        unsigned len;
        uint32_t min, v;
        if (c < 0x80) {
            i++;
            continue;
        } else if (c >= 0xC0 && c < 0xE0) {
            len = 2, min = 0x80, v = c & 0x1F;
        } else if (c >= 0xE0 && c < 0xF0) {
            len = 3, min = 0x800, v = c & 0x0F;
        } else if (c >= 0xF0 && c < 0xF8) {
            len = 4, min = 0x10000, v = c & 0x07;
        } else {
            return false; /* a continuation byte, or F8..FF */
        }
        unsigned have = 1;
        while (have < len && i + have < n) {
            if ((p[i + have] & 0xC0) != 0x80)
                return false;
            v = v << 6 | (p[i + have] & 0x3F);
            have++;
        }
        uint32_t lo = v, hi = v;
        for (unsigned k = have; k < len; k++) {
            lo = lo << 6;
            hi = hi << 6 | 0x3F;
        }
        bool meets = (lo <= 0xD7FF && hi >= min) || (lo <= 0x10FFFF && hi >= 0xE000);
        if (hi < min || lo > 0x10FFFF || !meets)
            return false;
        if (have < len) {
            *complete = false;
            return true; /* the input ends inside this character */
        }
        i += len;
    }
    return true;
}

/* The index of the first byte after which p cannot be valid any more, or n (a prefix that
 * cannot be extended stays so: binary search). */
static size_t ref_first_bad(const uint8_t *p, size_t n, bool *complete)
{
    if (ref_extendable(p, n, complete))
        return n;
    size_t lo = 0, hi = n; /* p[0..lo) extendable, p[0..hi) not */
    while (hi - lo > 1) {
        size_t mid = lo + (hi - lo) / 2;
        bool c;
        if (ref_extendable(p, mid, &c))
            lo = mid;
        else
            hi = mid;
    }
    return hi - 1;
}

static int mismatches;

/* ours whole and in slices (cuts at every position given by `cuts` bits) vs the reference */
static void compare(const uint8_t *p, size_t n, uint32_t cuts)
{
    bool complete;
    size_t bad = ref_first_bad(p, n, &complete);
    bool valid = bad == n && complete;
    if (gw_utf8_valid(p, n) != valid)
        mismatches++;
    uint8_t st = 0;
    size_t from = 0;
    for (size_t i = 1; i <= n; i++) {
        if (i < n && !(cuts >> (i % 32) & 1))
            continue;
        bool ok = gw_utf8_feed(&st, p + from, i - from);
        bool should = bad >= i; /* the first bad byte is not in this slice or before */
        if (ok != should) {
            mismatches++;
            return;
        }
        if (!ok)
            return;
        from = i;
    }
    if ((st == 0) != (bad == n && complete))
        mismatches++;
}

static void test_all_short_inputs(void)
{
    uint8_t b[4];
    for (unsigned x = 0; x < 256; x++) {
        b[0] = (uint8_t)x;
        compare(b, 1, 0);
        for (unsigned y = 0; y < 256; y++) {
            b[1] = (uint8_t)y;
            compare(b, 2, 0);
            compare(b, 2, ~0u);
        }
    }
    CHECK_EQ(mismatches, 0);
    /* three bytes: every lead and second byte, the third among the edges of the ranges */
    static const uint8_t third[] = {0x00, 0x41, 0x7F, 0x80, 0x8F, 0x90, 0x9F, 0xA0, 0xBF, 0xC0,
                                    0xC2, 0xE0, 0xED, 0xF0, 0xF4, 0xF5, 0xFF};
    for (unsigned x = 0x80; x < 256; x++)
        for (unsigned y = 0; y < 256; y++)
            for (size_t k = 0; k < sizeof third; k++) {
                b[0] = (uint8_t)x, b[1] = (uint8_t)y, b[2] = third[k];
                compare(b, 3, 0);
                compare(b, 3, ~0u);
                b[3] = 0x80 | (uint8_t)(k * 7 % 64);
                compare(b, 4, 0);
                compare(b, 4, 0x5555);
            }
    CHECK_EQ(mismatches, 0);
}

static uint64_t rs = 0x9E3779B97F4A7C15ULL;
static uint32_t rnd(void)
{
    rs ^= rs << 13;
    rs ^= rs >> 7;
    rs ^= rs << 17;
    return (uint32_t)(rs >> 16);
}

/* Random strings: mostly well-formed characters of every length (ASCII runs long enough for
 * the fast path), with a corruption now and then; cut at random places. */
static void test_random_against_reference(void)
{
    uint8_t buf[600];
    int invalid = 0;
    for (int it = 0; it < 100000; it++) {
        size_t n = 0, want = rnd() % 300;
        while (n + 4 < want) {
            uint32_t kind = rnd() % 10, cp;
            if (kind < 4) {
                size_t run = rnd() % 40;
                while (run-- && n < want)
                    buf[n++] = (uint8_t)(0x20 + rnd() % 95);
                continue;
            }
            if (kind < 6)
                cp = 0x80 + rnd() % (0x800 - 0x80);
            else if (kind < 8)
                cp = 0x800 + rnd() % (0x10000 - 0x800);
            else
                cp = 0x10000 + rnd() % (0x110000 - 0x10000);
            if (cp >= 0xD800 && cp <= 0xDFFF && rnd() % 2)
                cp += 0x800; /* mostly not a surrogate */
            if (cp < 0x800) {
                buf[n++] = (uint8_t)(0xC0 | cp >> 6);
                buf[n++] = (uint8_t)(0x80 | (cp & 0x3F));
            } else if (cp < 0x10000) {
                buf[n++] = (uint8_t)(0xE0 | cp >> 12);
                buf[n++] = (uint8_t)(0x80 | (cp >> 6 & 0x3F));
                buf[n++] = (uint8_t)(0x80 | (cp & 0x3F));
            } else {
                buf[n++] = (uint8_t)(0xF0 | cp >> 18);
                buf[n++] = (uint8_t)(0x80 | (cp >> 12 & 0x3F));
                buf[n++] = (uint8_t)(0x80 | (cp >> 6 & 0x3F));
                buf[n++] = (uint8_t)(0x80 | (cp & 0x3F));
            }
        }
        if (n && rnd() % 3 == 0)
            buf[rnd() % n] = (uint8_t)rnd(); /* corrupt one byte */
        if (n && rnd() % 8 == 0)
            n -= rnd() % (n < 4 ? n : 4); /* cut inside a character, maybe */
        bool complete;
        invalid += !(ref_first_bad(buf, n, &complete) == n && complete);
        compare(buf, n, rnd() | 1u << (rnd() % 32));
    }
    CHECK_EQ(mismatches, 0);
    CHECK(invalid > 10000 && invalid < 90000); /* both verdicts were exercised */
}

int main(void)
{
    RUN(test_all_short_inputs);
    RUN(test_random_against_reference);
    return TEST_REPORT();
}
