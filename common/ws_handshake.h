/* ws_handshake.h: the client side of the RFC 6455 §4.1 opening handshake: a random
 * Sec-WebSocket-Key, the GET request, and checking the server's 101 response, including
 * Sec-WebSocket-Accept = base64(SHA-1(key + GUID)) (§1.3, §4.2.2) computed with OpenSSL. */
#ifndef WSGW_WS_HANDSHAKE_H
#define WSGW_WS_HANDSHAKE_H

#include <stddef.h>

#define HS_KEY_LEN 24    /* base64 of 16 random bytes */
#define HS_ACCEPT_LEN 28 /* base64 of a 20-byte SHA-1 */
#define HS_MAX_RESPONSE 4096

enum {
    HS_OK = 0,
    HS_AGAIN = 1,          /* the response header is not complete yet */
    HS_ERR_STATUS = -1,    /* a well-formed response with a status other than 101 */
    HS_ERR_INVALID = -2,   /* malformed, or Upgrade/Connection/Accept wrong */
    HS_ERR_TOO_LONG = -3,  /* no end of header within HS_MAX_RESPONSE bytes */
};

/* hs_key: a fresh random key (16 bytes from OpenSSL's RAND_bytes, base64) into out.
 * Returns 0 or -1 when the random generator fails. */
int hs_key(char out[HS_KEY_LEN + 1]);

/* hs_accept: the Sec-WebSocket-Accept value the server must send for key. */
void hs_accept(const char *key, char out[HS_ACCEPT_LEN + 1]);

/* hs_request: writes the GET request for host ("h:p", sent as Host), path (with query) and key,
 * plus `extra` header lines (each ending in \r\n; may be NULL). Returns its length, or 0 when
 * cap is too small. */
size_t hs_request(char *out, size_t cap, const char *host, const char *path, const char *key,
                  const char *extra);

/* hs_response: examines the bytes received so far. On HS_OK *hdr_len is the size of the header
 * (frames may follow it in the same buffer). *status gets the HTTP status as soon as the status
 * line is complete (0 before). Returns HS_OK, HS_AGAIN or a negative HS_ERR_*. */
int hs_response(const char *buf, size_t len, const char *expect_accept, int *status,
                size_t *hdr_len);

#endif
