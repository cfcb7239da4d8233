/* utf8.h: strict UTF-8 validation (RFC 3629: no overlongs, no surrogates, <= U+10FFFF), as
 * RFC 6455 §8.1 requires of text messages (invalid: close 1007), whole or slice by slice as a
 * message arrives (§8.1 and the conformance suite's 6.4.x cases: fail at the first bad byte,
 * not at the end of the message). Shared: ws-gateway (text frames, close reasons) and ws-api
 * (text pushes on gRPC Push must be UTF-8 before they go out as text frames). The gw_utf8_
 * prefix dates from when only the gateway used it. Any thread; no shared state. */
#ifndef GW_UTF8_H
#define GW_UTF8_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* gw_utf8_valid: true when p[0..len) is well-formed UTF-8. One pass (the hot path of a text
 * message that arrived whole). */
bool gw_utf8_valid(const uint8_t *p, size_t len);

/* gw_utf8_feed: validates the next slice of a text message. *state is 0 at the start of the
 * message (and whenever the bytes so far end on a character boundary); a sequence cut by the
 * end of a slice is carried in *state into the next call. Returns false at the first byte that
 * can no longer be part of valid UTF-8 (a truncated sequence is not an error until the message
 * ends: then *state != 0 means it ended inside a character). */
bool gw_utf8_feed(uint8_t *state, const uint8_t *p, size_t len);

/* gw_utf8_cut: the length of the longest prefix of the valid UTF-8 string p[0..len) that has
 * at most max bytes and ends on a character boundary (close reasons, RFC 6455 §5.5). */
size_t gw_utf8_cut(const uint8_t *p, size_t len, size_t max);

#endif
