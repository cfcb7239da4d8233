/* push_json.c: push/kick body parsing (see push_json.h). */
#include "push_json.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void push_req_free(push_req_t *r)
{
    target_free(&r->target);
    free(r->data);
    free(r->reason);
    memset(r, 0, sizeof *r);
}

int push_json_parse_u64(const char *s, uint64_t *out)
{
    if (!s || *s < '0' || *s > '9')
        return -1;
    uint64_t v = 0;
    for (; *s; s++) {
        if (*s < '0' || *s > '9')
            return -1;
        unsigned d = (unsigned)(*s - '0');
        if (v > (UINT64_MAX - d) / 10)
            return -1;
        v = v * 10 + d;
    }
    *out = v;
    return 0;
}

static int b64val(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == '/')
        return 63;
    return -1;
}

int push_json_base64_decode(const char *in, size_t len, uint8_t **out, size_t *outlen)
{
    /* Strip up to two '=' of padding; with padding the length must be a multiple of 4. */
    size_t n = len;
    if (n % 4 == 0 && n > 0 && in[n - 1] == '=') {
        n--;
        if (in[n - 1] == '=')
            n--;
    }
    if (n % 4 == 1)
        return -1;
    uint8_t *o = malloc(n / 4 * 3 + 3 + 1);
    if (!o)
        return -1;
    size_t ol = 0;
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < n; i++) {
        int v = b64val((unsigned char)in[i]);
        if (v < 0) {
            free(o);
            return -1;
        }
        acc = acc << 6 | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            o[ol++] = (uint8_t)(acc >> bits);
        }
    }
    /* Leftover bits must be zero (canonical encoding). */
    if (bits && (acc & ((1u << bits) - 1))) {
        free(o);
        return -1;
    }
    o[ol] = 0;
    *out = o;
    *outlen = ol;
    return 0;
}

#define FAIL(...)                                                                              \
    do {                                                                                       \
        snprintf(err, PUSH_JSON_ERR_LEN, __VA_ARGS__);                                         \
        goto fail;                                                                             \
    } while (0)

/* Fills out->target from root. Returns 0 or -1 with err set. */
static int parse_target(json_t *root, target_t *t, char err[PUSH_JSON_ERR_LEN])
{
    json_t *v;
    if ((v = json_object_get(root, "conn_ids")) && !json_is_null(v)) {
        if (!json_is_array(v))
            FAIL("conn_ids must be an array");
        size_t n = json_array_size(v);
        if (n) {
            t->conn_ids = malloc(n * sizeof *t->conn_ids);
            if (!t->conn_ids)
                FAIL("out of memory");
        }
        for (size_t i = 0; i < n; i++) {
            json_t *e = json_array_get(v, i);
            uint64_t id = 0;
            bool ok = false;
            if (json_is_integer(e) && json_integer_value(e) >= 0) {
                id = (uint64_t)json_integer_value(e);
                ok = true;
            } else if (json_is_string(e)) {
                ok = push_json_parse_u64(json_string_value(e), &id) == 0;
            }
            if (!ok)
                FAIL("conn_ids[%zu] must be a non-negative integer or a decimal string", i);
            t->conn_ids[t->n_conn_ids++] = id;
        }
    }
    if ((v = json_object_get(root, "user_ids")) && !json_is_null(v)) {
        if (!json_is_array(v))
            FAIL("user_ids must be an array");
        size_t n = json_array_size(v);
        if (n) {
            t->user_ids = calloc(n, sizeof *t->user_ids);
            if (!t->user_ids)
                FAIL("out of memory");
        }
        for (size_t i = 0; i < n; i++) {
            json_t *e = json_array_get(v, i);
            const char *s = json_string_value(e);
            if (!s || !*s || strlen(s) != json_string_length(e))
                FAIL("user_ids[%zu] must be a non-empty string without NUL", i);
            if (!(t->user_ids[t->n_user_ids] = strdup(s)))
                FAIL("out of memory");
            t->n_user_ids++;
        }
    }
    if ((v = json_object_get(root, "room")) && !json_is_null(v)) {
        if (!json_is_string(v) || strlen(json_string_value(v)) != json_string_length(v))
            FAIL("room must be a string without NUL");
        if (json_string_length(v) > 0 && !(t->room = strdup(json_string_value(v))))
            FAIL("out of memory");
    }
    if ((v = json_object_get(root, "all")) && !json_is_null(v)) {
        if (!json_is_boolean(v))
            FAIL("all must be a boolean");
        t->all = json_is_true(v);
    }
    if (target_empty(t))
        FAIL("empty target: give conn_ids, user_ids, room or all");
    return 0;
fail:
    return -1;
}

static json_t *load_object(const char *body, size_t len, char err[PUSH_JSON_ERR_LEN])
{
    json_error_t je;
    json_t *root = json_loadb(body, len, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &je);
    if (!root) {
        snprintf(err, PUSH_JSON_ERR_LEN, "bad JSON: %.160s (line %d column %d)", je.text, je.line,
                 je.column);
        return NULL;
    }
    if (!json_is_object(root)) {
        snprintf(err, PUSH_JSON_ERR_LEN, "body must be a JSON object");
        json_decref(root);
        return NULL;
    }
    return root;
}

int push_json_parse_push(const char *body, size_t len, push_req_t *out,
                         char err[PUSH_JSON_ERR_LEN])
{
    memset(out, 0, sizeof *out);
    json_t *root = load_object(body, len, err);
    if (!root)
        return -1;
    if (parse_target(root, &out->target, err) < 0)
        goto fail;
    json_t *d = json_object_get(root, "data");
    json_t *d64 = json_object_get(root, "data_base64");
    if (json_is_null(d))
        d = NULL;
    if (json_is_null(d64))
        d64 = NULL;
    if (d && d64)
        FAIL("give either data or data_base64, not both");
    if (!d && !d64)
        FAIL("data or data_base64 is required");
    if (d) {
        if (!json_is_string(d))
            FAIL("data must be a string");
        size_t n = json_string_length(d);
        if (!(out->data = malloc(n + 1)))
            FAIL("out of memory");
        memcpy(out->data, json_string_value(d), n + 1);
        out->len = n;
    } else {
        if (!json_is_string(d64))
            FAIL("data_base64 must be a string");
        if (push_json_base64_decode(json_string_value(d64), json_string_length(d64), &out->data,
                                    &out->len) < 0)
            FAIL("data_base64 is not valid base64");
        out->binary = true;
    }
    json_t *hv = json_object_get(root, "history");
    if (hv && !json_is_null(hv)) {
        if (!json_is_boolean(hv))
            FAIL("history must be true or false");
        out->history = json_is_true(hv);
    }
    json_decref(root);
    return 0;
fail:
    json_decref(root);
    push_req_free(out);
    return -1;
}

int push_json_parse_kick(const char *body, size_t len, push_req_t *out,
                         char err[PUSH_JSON_ERR_LEN])
{
    memset(out, 0, sizeof *out);
    json_t *root = load_object(body, len, err);
    if (!root)
        return -1;
    if (parse_target(root, &out->target, err) < 0)
        goto fail;
    json_t *v = json_object_get(root, "code");
    out->code = PUSH_KICK_DEFAULT_CODE;
    if (v && !json_is_null(v)) {
        json_int_t c = json_integer_value(v);
        /* RFC 6455 §7.4: 1000 (normal) or the 3000-4999 range reserved for applications. */
        if (!json_is_integer(v) || !(c == 1000 || (c >= 3000 && c <= 4999)))
            FAIL("code must be 1000 or 3000..4999");
        out->code = (int)c;
    }
    v = json_object_get(root, "reason");
    const char *reason = "";
    if (v && !json_is_null(v)) {
        if (!json_is_string(v))
            FAIL("reason must be a string");
        reason = json_string_value(v);
        /* A close frame's payload is at most 125 bytes: 2 for the code (RFC 6455 §5.5). */
        if (json_string_length(v) > 123 || strlen(reason) != json_string_length(v))
            FAIL("reason must be at most 123 bytes without NUL");
    }
    if (!(out->reason = strdup(reason)))
        FAIL("out of memory");
    json_decref(root);
    return 0;
fail:
    json_decref(root);
    push_req_free(out);
    return -1;
}
