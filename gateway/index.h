/* index.h: per-thread user index (user id -> connections on this thread) and rooms
 * (room -> member connections on this thread). Rooms live on the gateways: ws-api sends Join
 * and Leave, and a Send to a room is fanned out here. Service thread only. */
#ifndef GW_INDEX_H
#define GW_INDEX_H

#include <stdbool.h>
#include <stddef.h>
#include <uthash.h>

#include "conn.h"
#include "u64map.h"


typedef struct gw_room {
    UT_hash_handle hh;
    gw_member_t *head;      /* members, via room_next/room_prev */
    size_t n;
    char name[];
} gw_room_t;

struct gw_member {
    gw_room_t *room;
    gw_conn_t *conn;
    gw_member_t *room_prev, *room_next;
    gw_member_t *conn_next; /* the connection's other memberships */
};

typedef struct gw_index {
    u64map_t users;         /* hash of the user id -> first connection; the connections of
                               users with that hash are chained by user_next/user_prev (16
                               bytes per user instead of a uthash entry of ~100) */
    gw_room_t *rooms;       /* uthash head */
    size_t nrooms;
} gw_index_t;

/* gw_index_add_user: links c (with c->user set) under its user. Returns 0 or -1 (memory). */
int gw_index_add_user(gw_index_t *ix, gw_conn_t *c);
/* gw_index_find_user: first connection on this thread whose user hashes like this one, or
 * NULL; walk with gw_index_next_user, which skips other users sharing the hash. */
gw_conn_t *gw_index_find_user(gw_index_t *ix, const char *user, size_t len);
gw_conn_t *gw_index_next_user(gw_conn_t *c, const char *user, size_t len);

enum {
    GW_INDEX_NOMEM = -1,
    GW_INDEX_TOO_MANY = -2,      /* c is already in max rooms */
    GW_INDEX_NAME_TOO_LONG = -3, /* (the caller's check: a room name over its limit) */
};

/* gw_index_join: adds c to room (idempotent: joining a room c is in always succeeds), unless
 * c is in max rooms already. Returns 0, GW_INDEX_TOO_MANY or GW_INDEX_NOMEM. */
int gw_index_join(gw_index_t *ix, gw_conn_t *c, const char *room, size_t len, size_t max);
/* gw_index_leave: removes c from room if member. */
void gw_index_leave(gw_index_t *ix, gw_conn_t *c, const char *room, size_t len);
/* gw_index_find_room: the room or NULL. */
gw_room_t *gw_index_find_room(gw_index_t *ix, const char *room, size_t len);

/* gw_index_remove_conn: unlinks c from its user and every room (on close). */
void gw_index_remove_conn(gw_index_t *ix, gw_conn_t *c);

/* gw_index_free: drops everything (thread exit; connections are gone). */
void gw_index_free(gw_index_t *ix);

#endif
