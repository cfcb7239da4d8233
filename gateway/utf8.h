/* utf8.h: strict UTF-8 validation (RFC 3629: no overlongs, no surrogates, <= U+10FFFF), as
 * RFC 6455 §8.1 requires of text messages (invalid: close 1007). */
#ifndef GW_UTF8_H
#define GW_UTF8_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* gw_utf8_valid: true when p[0..len) is well-formed UTF-8. Any thread. */
bool gw_utf8_valid(const uint8_t *p, size_t len);

#endif
