/* updec.h: hand-written decoding of wsgw.v1.Upstream in ws-api (the hot path: every client
 * message crosses it; why by hand and which rules: common/pbwire.h).
 *
 * updec_check validates the whole batch first, as protobuf-c's unpack did (a bad batch is
 * refused before any event is handled); updec_next then walks its events as views into the
 * message bytes (no allocation, payloads not copied). Strings are seen as protobuf-c's
 * NUL-terminated copies were: up to their first NUL byte (lengths given; the views are not
 * NUL-terminated). Pure; loop thread (any thread for its own data). */
#ifndef WSGW_API_UPDEC_H
#define WSGW_API_UPDEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum {
    UPDEC_NONE = 0,
    UPDEC_OPEN = 10,
    UPDEC_MESSAGE = 11,
    UPDEC_CLOSE = 12,
    UPDEC_RECOVER = 13,
} updec_kind_t;

typedef struct updec_str {
    const uint8_t *p;
    size_t len;
} updec_str_t;

/* One Event. Fields of the other kinds are zero. */
typedef struct updec_event {
    uint64_t conn_id;
    updec_str_t user_id;
    int64_t gateway_ns;
    updec_kind_t kind;
    updec_str_t remote_addr, path, query, gateway_id; /* Open */
    size_t nrooms;                                    /* Open: rooms (updec_room) */
    updec_str_t open_body;                            /* Open: its bytes */
    updec_str_t payload;                              /* Message (bytes) */
    bool binary;                                      /* Message */
    uint64_t seq;                                     /* Message */
    int32_t code;                                     /* Close */
    updec_str_t reason;                               /* Close */
    updec_str_t channel, epoch;                       /* Recover */
    uint64_t offset;                                  /* Recover */
    uint32_t id;                                      /* Recover */
} updec_event_t;

typedef struct updec {
    const uint8_t *p, *end; /* the events not walked yet */
    size_t nevents;
    uint64_t seq;
    bool presence_complete;
} updec_t;

/* updec_check: validates msg[0..len) as an Upstream and sets u up to walk it (seq,
 * presence_complete, nevents). Returns 0, or -1 when protobuf-c would refuse it. msg must
 * outlive u. */
int updec_check(updec_t *u, const uint8_t *msg, size_t len);

/* updec_next: the next event of a checked batch. Returns true (e filled) or false at the end.
 * The views point into msg. */
bool updec_next(updec_t *u, updec_event_t *e);

/* updec_room: the next of an Open's rooms (Open.rooms, a presence resync's): *cursor NULL
 * starts at the first. Returns true (room filled: a view up to its first NUL, possibly
 * empty) or false after the last. */
bool updec_room(const updec_event_t *e, const uint8_t **cursor, updec_str_t *room);

#endif
