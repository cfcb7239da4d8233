/* log.c: logfmt logging to stderr (see log.h). */
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"

int log_level = LOG_INFO;

static const char *const level_names[] = {"error", "warn", "info", "debug"};

int log_set_level(const char *name)
{
    for (int i = 0; i < 4; i++) {
        if (strcmp(name, level_names[i]) == 0) {
            log_level = i;
            return 0;
        }
    }
    return -1;
}

static bool needs_quote(const char *s)
{
    if (!*s)
        return true;
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c <= ' ' || c == '"' || c == '=' || c == '\\' || c == 0x7f)
            return true;
    }
    return false;
}

const char *log_quote(char *out, size_t outlen, const char *s)
{
    if (outlen == 0)
        return out;
    if (!s)
        s = "";
    if (!needs_quote(s)) {
        snprintf(out, outlen, "%s", s);
        return out;
    }
    size_t o = 0;
    if (o + 1 < outlen)
        out[o++] = '"';
    for (; *s && o + 3 < outlen; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') {
            out[o++] = '\\';
            out[o++] = (char)c;
        } else if (c < ' ' || c == 0x7f) {
            if (o + 5 >= outlen)
                break;
            o += (size_t)snprintf(out + o, outlen - o, "\\x%02x", c);
        } else {
            out[o++] = (char)c;
        }
    }
    if (o + 1 < outlen)
        out[o++] = '"';
    out[o] = 0;
    return out;
}

void log_write(int level, const char *msg, const char *fmt, ...)
{
    char line[2048];
    char q[256];
    struct timespec ts;
    struct tm tm;

    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    int n = snprintf(line, sizeof line, "ts=%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ level=%s msg=%s",
                     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
                     tm.tm_sec, ts.tv_nsec / 1000000, level_names[level & 3],
                     log_quote(q, sizeof q, msg));
    if (n < 0)
        return;
    /* Keep one byte for '\n'; snprintf output is at most sizeof line - 1 chars. */
    size_t len = (size_t)n < sizeof line - 1 ? (size_t)n : sizeof line - 2;
    if (fmt && *fmt && len + 2 < sizeof line) {
        line[len++] = ' ';
        size_t avail = sizeof line - 1 - len; /* room incl. vsnprintf's NUL */
        va_list ap;
        va_start(ap, fmt);
        int m = vsnprintf(line + len, avail, fmt, ap);
        va_end(ap);
        if (m > 0)
            len += (size_t)m < avail ? (size_t)m : avail - 1;
    }
    line[len++] = '\n';
    /* One write: lines from different threads never interleave (stderr is unbuffered). */
    ssize_t w = write(STDERR_FILENO, line, len);
    (void)w;
}

bool log__ratelimit(_Atomic int64_t *last_ns, _Atomic uint64_t *skipped, uint64_t *suppressed)
{
    int64_t now = clock_mono_ns();
    int64_t last = atomic_load_explicit(last_ns, memory_order_relaxed);
    if (last != 0 && now - last < 1000000000) {
        atomic_fetch_add_explicit(skipped, 1, memory_order_relaxed);
        return false;
    }
    if (!atomic_compare_exchange_strong(last_ns, &last, now)) {
        atomic_fetch_add_explicit(skipped, 1, memory_order_relaxed);
        return false;
    }
    *suppressed = atomic_exchange_explicit(skipped, 0, memory_order_relaxed);
    return true;
}
