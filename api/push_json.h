/* push_json.h: parsing the JSON bodies of the HTTP push API (pure functions, fuzzed).
 *
 *   POST /v1/push  {"conn_ids":[..],"user_ids":[..],"room":"R","all":false,
 *                   "data":"text"} | ..."data_base64":"..."}      (binary frame)
 *                   optional "history": true (keep it: history.h)
 *   POST /v1/kick  {"conn_ids"|"user_ids"|"room"|"all":..., "code":4000, "reason":"..."}
 *
 * conn_ids: JSON integers or decimal strings (uint64 exceeds JavaScript's safe integers).
 * Unknown fields are ignored. Every error names what is wrong, for {"error":"..."}. */
#ifndef WSGW_API_PUSH_JSON_H
#define WSGW_API_PUSH_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "target.h"

#define PUSH_JSON_ERR_LEN 256
#define PUSH_KICK_DEFAULT_CODE 4000

typedef struct push_req {
    target_t target;
    uint8_t *data; /* push: payload (owned; may be NULL when len 0) */
    size_t len;
    bool binary;   /* push: came as data_base64 */
    bool history;  /* push: "history": true, keep it in the users' and room's history */
    int code;      /* kick: close code (1000 or 3000..4999) */
    char *reason;  /* kick: close reason (owned, <= 123 bytes, may be "") */
} push_req_t;

/* push_json_parse_push / push_json_parse_kick: parse body[0..len) into out. Return 0, or -1
 * with a message in err (bad JSON, wrong types, empty target, both or neither of
 * data/data_base64, bad base64, bad close code/reason); out is then empty. The caller owns
 * out on success (push_req_free). */
int push_json_parse_push(const char *body, size_t len, push_req_t *out,
                         char err[PUSH_JSON_ERR_LEN]);
int push_json_parse_kick(const char *body, size_t len, push_req_t *out,
                         char err[PUSH_JSON_ERR_LEN]);
void push_req_free(push_req_t *r);

/* push_json_base64_decode: RFC 4648 §4 base64 (padding optional, no whitespace) into a new
 * buffer (*out, NUL-terminated, owned by the caller). Returns 0 or -1 (invalid input / memory). */
int push_json_base64_decode(const char *in, size_t len, uint8_t **out, size_t *outlen);

/* push_json_parse_u64: a decimal uint64 without sign, spaces or leading '+'. Returns 0 or -1. */
int push_json_parse_u64(const char *s, uint64_t *out);

#endif
