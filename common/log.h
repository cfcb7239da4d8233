/* log.h: logfmt lines on stderr, one write(2) per line.
 *
 *   log_info("listening", "addr=%s threads=%d", addr, n);
 *   -> ts=2026-11-22T05:30:00.123Z level=info msg=listening addr=0.0.0.0:8080 threads=2
 *
 * The level is checked before the arguments are evaluated. log_rl_* variants print at most one
 * line per second per call site and report how many were suppressed (hot-path errors). */
#ifndef WSGW_LOG_H
#define WSGW_LOG_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum log_level { LOG_ERROR = 0, LOG_WARN = 1, LOG_INFO = 2, LOG_DEBUG = 3 };

extern int log_level; /* set once at start-up, read by every thread */

/* log_write: writes one line; `msg` is the event name (quoted if needed), `fmt` the
 * key=value tail (may be NULL). Any thread. */
void log_write(int level, const char *msg, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* log__ratelimit: true when this call site may print now; *suppressed gets the count skipped. */
bool log__ratelimit(_Atomic int64_t *last_ns, _Atomic uint64_t *skipped, uint64_t *suppressed);

/* log_set_level: "error", "warn", "info", "debug". Returns 0 or -1 for an unknown name. */
int log_set_level(const char *name);

/* log_quote: writes s as a logfmt value into out (quoted and escaped when it holds spaces,
 * quotes, '=' or control bytes; truncated to outlen). Returns out. */
const char *log_quote(char *out, size_t outlen, const char *s);

#define log_at(lvl, ...)                                                                       \
    do {                                                                                       \
        if ((lvl) <= log_level)                                                                \
            log_write((lvl), __VA_ARGS__);                                                     \
    } while (0)
#define log_error(...) log_at(LOG_ERROR, __VA_ARGS__)
#define log_warn(...) log_at(LOG_WARN, __VA_ARGS__)
#define log_info(...) log_at(LOG_INFO, __VA_ARGS__)
#define log_debug(...) log_at(LOG_DEBUG, __VA_ARGS__)

/* Rate-limited: msg is a literal, fmt a literal; "suppressed=N" is appended. */
#define log_rl(lvl, msg, fmt, ...)                                                             \
    do {                                                                                       \
        static _Atomic int64_t log__last;                                                      \
        static _Atomic uint64_t log__skipped;                                                  \
        uint64_t log__supp;                                                                    \
        if ((lvl) <= log_level && log__ratelimit(&log__last, &log__skipped, &log__supp))       \
            log_write((lvl), msg, fmt " suppressed=%llu", __VA_ARGS__,                         \
                      (unsigned long long)log__supp);                                          \
    } while (0)
#define log_rl_info(msg, fmt, ...) log_rl(LOG_INFO, msg, fmt, __VA_ARGS__)
#define log_rl_warn(msg, fmt, ...) log_rl(LOG_WARN, msg, fmt, __VA_ARGS__)
#define log_rl_error(msg, fmt, ...) log_rl(LOG_ERROR, msg, fmt, __VA_ARGS__)

#endif
