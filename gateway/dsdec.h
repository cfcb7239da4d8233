/* dsdec.h: hand-written decoding of wsgw.v1.Downstream (the hot path: every echo crosses it;
 * why by hand and which rules: common/pbwire.h).
 *
 * dsdec_check validates the whole message first, as protobuf-c's unpack did (a bad message is
 * refused before any command is acted on); dsdec_next then walks its commands as views into
 * the message bytes (no allocation, payloads not copied). Strings are seen as protobuf-c's
 * NUL-terminated copies were: up to their first NUL byte. Repeated Target fields of one Send or
 * Kick merge as protobuf-c merges them (conn_ids and user_ids concatenated, the last room, the
 * last occurrence's `all`). A Recovered (history replay, rare) is checked and left to
 * protobuf-c. Pure; writer thread (any thread for its own data). */
#ifndef GW_DSDEC_H
#define GW_DSDEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The Target of a Send or Kick. */
typedef struct dsdec_target {
    bool present;
    size_t n_conn_ids, n_user_ids;
    const uint8_t *room;     /* NUL-truncated; room_len 0: none */
    size_t room_len;
    bool all;
    const uint8_t *owner;    /* the Send or Kick message (its target fields are read again) */
    size_t owner_len;
} dsdec_target_t;

/* Command's oneof: the member's field number (wsgw.proto). */
typedef enum {
    DSDEC_NONE = 0,
    DSDEC_SEND = 1,
    DSDEC_KICK = 2,
    DSDEC_JOIN = 3,
    DSDEC_LEAVE = 4,
    DSDEC_RECOVERED = 5,
} dsdec_kind_t;

/* One Command. Fields of the other kinds are zero. */
typedef struct dsdec_cmd {
    dsdec_kind_t kind;
    dsdec_target_t target;   /* Send, Kick */
    const uint8_t *payload;  /* Send: payload (bytes); Kick: reason (string, NUL-truncated) */
    size_t payload_len;
    bool binary;             /* Send */
    int64_t api_ns;          /* Send */
    const uint8_t *channel;  /* Send (NUL-truncated; channel_len 0: none) */
    size_t channel_len;
    const uint8_t *epoch;    /* Send (NUL-truncated) */
    size_t epoch_len;
    uint64_t offset;         /* Send */
    int32_t code;            /* Kick */
    uint64_t conn_id;        /* Join, Leave */
    const uint8_t *room;     /* Join, Leave (NUL-truncated) */
    size_t room_len;
    const uint8_t *raw;      /* Recovered: the encoded message (rare: the caller unpacks it with
                              * wsgw__v1__recovered__unpack, which dsdec_check ran on it) */
    size_t raw_len;
} dsdec_cmd_t;

typedef struct dsdec {
    const uint8_t *p, *end;  /* the commands not walked yet */
    size_t ncommands;
    uint64_t ack;
} dsdec_t;

/* dsdec_check: validates msg[0..len) as a Downstream and sets d up to walk it (d->ack,
 * d->ncommands). Returns 0, or -1 when protobuf-c would refuse it. msg must outlive d. */
int dsdec_check(dsdec_t *d, const uint8_t *msg, size_t len);

/* dsdec_next: the next command of a checked message. Returns true (c filled) or false at the
 * end. The views point into msg. */
bool dsdec_next(dsdec_t *d, dsdec_cmd_t *c);

/* dsdec_conn_ids: the target's conn_ids in order into out[0..t->n_conn_ids). */
void dsdec_conn_ids(const dsdec_target_t *t, uint64_t *out);

/* dsdec_user_ids: the first max user_ids into ptrs/lens (NUL-truncated views); returns how
 * many (min(max, t->n_user_ids)). */
size_t dsdec_user_ids(const dsdec_target_t *t, const uint8_t **ptrs, size_t *lens, size_t max);

#endif
