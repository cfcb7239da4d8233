/* rooms.c: room membership table (see rooms.h). */
#include "rooms.h"

#include <stdlib.h>
#include <string.h>

typedef struct room_member {
    hmap_node_t by_conn; /* rooms.by_conn, by conn_id */
    uint64_t conn_id;
    room_t *room;
    struct room_member *prev, *next; /* room->members, in join order */
} room_member_t;

struct room {
    hmap_node_t node; /* rooms.by_name */
    char *name;
    room_member_t *members, *last;
    size_t n;
};

void rooms_init(rooms_t *rs)
{
    memset(rs, 0, sizeof *rs);
}

static room_t *find_room(const rooms_t *rs, const char *name)
{
    uint64_t h = hmap_hash_str(name);
    for (hmap_node_t *n = hmap_first(&rs->by_name, h); n; n = hmap_next(n, h)) {
        room_t *r = hmap_entry(n, room_t, node);
        if (strcmp(r->name, name) == 0)
            return r;
    }
    return NULL;
}

static room_member_t *find_member(const rooms_t *rs, uint64_t conn_id, const room_t *r)
{
    uint64_t h = hmap_hash_u64(conn_id);
    for (hmap_node_t *n = hmap_first(&rs->by_conn, h); n; n = hmap_next(n, h)) {
        room_member_t *m = hmap_entry(n, room_member_t, by_conn);
        if (m->conn_id == conn_id && (!r || m->room == r))
            return m;
    }
    return NULL;
}

static void free_room(rooms_t *rs, room_t *r)
{
    hmap_remove(&rs->by_name, &r->node);
    free(r->name);
    free(r);
}

static void drop_member(rooms_t *rs, room_member_t *m)
{
    room_t *r = m->room;
    hmap_remove(&rs->by_conn, &m->by_conn);
    if (m->prev)
        m->prev->next = m->next;
    else
        r->members = m->next;
    if (m->next)
        m->next->prev = m->prev;
    else
        r->last = m->prev;
    r->n--;
    rs->nmembers--;
    free(m);
    if (r->n == 0)
        free_room(rs, r);
}

size_t rooms_of_conn(const rooms_t *rs, uint64_t conn_id)
{
    uint64_t h = hmap_hash_u64(conn_id);
    size_t n = 0;
    for (hmap_node_t *p = hmap_first(&rs->by_conn, h); p; p = hmap_next(p, h))
        n += hmap_entry(p, room_member_t, by_conn)->conn_id == conn_id;
    return n;
}

bool rooms_is_member(const rooms_t *rs, uint64_t conn_id, const char *room)
{
    const room_t *r = room ? find_room(rs, room) : NULL;
    return r && find_member(rs, conn_id, r);
}

int rooms_join(rooms_t *rs, uint64_t conn_id, const char *room)
{
    if (!room || !*room)
        return 0;
    room_t *r = find_room(rs, room);
    bool fresh = false;
    if (!r) {
        r = calloc(1, sizeof *r);
        if (!r || !(r->name = strdup(room)) ||
            hmap_insert(&rs->by_name, &r->node, hmap_hash_str(room)) < 0) {
            if (r)
                free(r->name);
            free(r);
            return -1;
        }
        fresh = true;
    } else if (find_member(rs, conn_id, r)) {
        return 0;
    }
    room_member_t *m = calloc(1, sizeof *m);
    if (!m || hmap_insert(&rs->by_conn, &m->by_conn, hmap_hash_u64(conn_id)) < 0) {
        free(m);
        if (fresh)
            free_room(rs, r);
        return -1;
    }
    m->conn_id = conn_id;
    m->room = r;
    m->prev = r->last;
    if (r->last)
        r->last->next = m;
    else
        r->members = m;
    r->last = m;
    r->n++;
    rs->nmembers++;
    return 0;
}

void rooms_leave(rooms_t *rs, uint64_t conn_id, const char *room)
{
    room_t *r = room ? find_room(rs, room) : NULL;
    room_member_t *m = r ? find_member(rs, conn_id, r) : NULL;
    if (m)
        drop_member(rs, m);
}

void rooms_forget_conn(rooms_t *rs, uint64_t conn_id)
{
    room_member_t *m;
    while ((m = find_member(rs, conn_id, NULL)))
        drop_member(rs, m);
}

size_t rooms_each_member(rooms_t *rs, const presence_t *p, const char *room,
                         void (*fn)(void *ud, const pres_conn_t *c), void *ud)
{
    room_t *r = room ? find_room(rs, room) : NULL;
    size_t seen = 0;
    for (room_member_t *m = r ? r->members : NULL, *next; m; m = next) {
        next = m->next;
        const pres_conn_t *c = presence_conn(p, m->conn_id);
        if (!c) {
            bool last = r->n == 1;
            drop_member(rs, m); /* frees r with its last member */
            if (last)
                break;
            continue;
        }
        fn(ud, c);
        seen++;
    }
    return seen;
}

size_t rooms_sweep(rooms_t *rs, const presence_t *p)
{
    size_t dropped = 0;
    for (size_t b = 0; b < rs->by_conn.nbuckets; b++) {
        hmap_node_t *n = rs->by_conn.buckets[b];
        while (n) {
            hmap_node_t *next = n->next;
            room_member_t *m = hmap_entry(n, room_member_t, by_conn);
            if (!presence_conn(p, m->conn_id)) {
                drop_member(rs, m);
                dropped++;
            }
            n = next;
        }
    }
    return dropped;
}

void rooms_free(rooms_t *rs)
{
    for (size_t b = 0; b < rs->by_conn.nbuckets; b++) {
        hmap_node_t *n = rs->by_conn.buckets[b];
        while (n) {
            hmap_node_t *next = n->next;
            drop_member(rs, hmap_entry(n, room_member_t, by_conn));
            n = next;
        }
    }
    hmap_free(&rs->by_conn);
    hmap_free(&rs->by_name);
    rooms_init(rs);
}
