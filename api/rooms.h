/* rooms.h: room membership as this ws-api node made it: the Join and Leave commands its
 * handler sent, forgotten on the connection's Close. Rooms themselves live on the gateways
 * (DESIGN.md); this table answers GET /v1/rooms/{room} and wsgw.v1.Admin/RoomPresence.
 *
 * With several ws-api nodes each knows the joins it made (a connection's messages, so its
 * joins, go to the one node its user id hashes to): ask every node and merge, or share them
 * through --redis (issue 16). Members are checked against presence when listed, so a
 * connection that left without a Close reaching this node (its gateway vanished) is not
 * listed, and it is dropped then; rooms_sweep drops all such entries.
 *
 * Pure data structure: no I/O. Loop thread only. */
#ifndef WSGW_API_ROOMS_H
#define WSGW_API_ROOMS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "hmap.h"
#include "presence.h"

typedef struct room room_t;

typedef struct rooms {
    hmap_t by_name;  /* room_t, by name */
    hmap_t by_conn;  /* room_member_t, by conn_id (several per conn: one per room) */
    size_t nmembers; /* memberships in all rooms */
} rooms_t;

/* rooms_init / rooms_free: an empty table; free releases every room and membership. */
void rooms_init(rooms_t *rs);
void rooms_free(rooms_t *rs);

/* rooms_join: conn_id is a member of `room` (non-empty; copied). Joining twice is one
 * membership. Returns 0, or -1 when out of memory (nothing recorded). */
int rooms_join(rooms_t *rs, uint64_t conn_id, const char *room);

/* rooms_leave: conn_id leaves `room` (no-op when it was not in it). */
void rooms_leave(rooms_t *rs, uint64_t conn_id, const char *room);

/* rooms_of_conn: how many rooms conn_id is in (O(that count)). */
size_t rooms_of_conn(const rooms_t *rs, uint64_t conn_id);

/* rooms_is_member: whether conn_id is in `room`. */
bool rooms_is_member(const rooms_t *rs, uint64_t conn_id, const char *room);

/* rooms_forget_conn: conn_id leaves every room (its Close). */
void rooms_forget_conn(rooms_t *rs, uint64_t conn_id);

/* rooms_each_member: calls fn for every member of `room` that is in presence p (in join
 * order), drops the members that are not, and returns how many fn saw. */
size_t rooms_each_member(rooms_t *rs, const presence_t *p, const char *room,
                         void (*fn)(void *ud, const pres_conn_t *c), void *ud);

/* rooms_sweep: drops every membership whose connection is not in presence p. Returns how many
 * were dropped. O(memberships): call it rarely (exchange.c: when memberships outnumber
 * presence by far). */
size_t rooms_sweep(rooms_t *rs, const presence_t *p);

#endif
