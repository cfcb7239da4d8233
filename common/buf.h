/* buf.h: growable byte buffer (responses, metrics text, encoded messages). */
#ifndef WSGW_BUF_H
#define WSGW_BUF_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

typedef struct buf {
    uint8_t *data;
    size_t len;
    size_t cap;
} buf_t;

#define BUF_INIT {NULL, 0, 0}

/* buf_reserve: room for `extra` more bytes. Returns 0 or -1 (out of memory; buf unchanged). */
int buf_reserve(buf_t *b, size_t extra);
/* buf_append: appends n bytes. Returns 0 or -1. */
int buf_append(buf_t *b, const void *p, size_t n);
/* buf_appendf: appends printf-formatted text (no NUL counted in len; data stays NUL-terminated
 * when the call succeeds). Returns 0 or -1. */
int buf_appendf(buf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int buf_vappendf(buf_t *b, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));
/* buf_consume: drops the first n bytes (n <= len). */
void buf_consume(buf_t *b, size_t n);
/* buf_reset: len = 0, memory kept. buf_free: memory released. */
static inline void buf_reset(buf_t *b) { b->len = 0; }
void buf_free(buf_t *b);

#endif
