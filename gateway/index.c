/* index.c: per-thread user and room indexes on uthash (see index.h). Service thread only. */
#include "index.h"

#include "route.h"

#include <stdlib.h>
#include <string.h>

static uint64_t user_key(const char *user, size_t len)
{
    return gw_hash64(user, len, 0x75736572) | 1; /* u64map keys are never 0 */
}

static bool same_user(const gw_conn_t *c, const char *user, size_t len)
{
    return c->user && strncmp(c->user, user, len) == 0 && c->user[len] == 0;
}

int gw_index_add_user(gw_index_t *ix, gw_conn_t *c)
{
    if (!c->user)
        return 0;
    uint64_t k = user_key(c->user, strlen(c->user));
    gw_conn_t *head = u64map_get(&ix->users, k);
    if (u64map_put(&ix->users, k, c, NULL) < 0)
        return -1;
    c->user_prev = NULL;
    c->user_next = head;
    if (head)
        head->user_prev = c;
    c->indexed = true;
    return 0;
}

gw_conn_t *gw_index_next_user(gw_conn_t *c, const char *user, size_t len)
{
    while (c && !same_user(c, user, len))
        c = c->user_next;
    return c;
}

gw_conn_t *gw_index_find_user(gw_index_t *ix, const char *user, size_t len)
{
    return gw_index_next_user(u64map_get(&ix->users, user_key(user, len)), user, len);
}

gw_room_t *gw_index_find_room(gw_index_t *ix, const char *room, size_t len)
{
    gw_room_t *r;
    HASH_FIND(hh, ix->rooms, room, len, r);
    return r;
}

int gw_index_join(gw_index_t *ix, gw_conn_t *c, const char *room, size_t len, size_t max)
{
    gw_room_t *r = gw_index_find_room(ix, room, len);
    size_t n = 0; /* c's rooms: a walk of at most max (no counter in the connection) */
    for (gw_member_t *m = c->rooms; m; m = m->conn_next, n++)
        if (r && m->room == r)
            return 0;
    if (n >= max)
        return GW_INDEX_TOO_MANY;
    if (!r) {
        r = calloc(1, sizeof *r + len + 1);
        if (!r)
            return GW_INDEX_NOMEM;
        memcpy(r->name, room, len);
        HASH_ADD(hh, ix->rooms, name[0], len, r);
        ix->nrooms++;
    }
    gw_member_t *m = calloc(1, sizeof *m);
    if (!m) {
        if (!r->head) {
            HASH_DEL(ix->rooms, r);
            ix->nrooms--;
            free(r);
        }
        return GW_INDEX_NOMEM;
    }
    m->room = r;
    m->conn = c;
    m->room_next = r->head;
    if (r->head)
        r->head->room_prev = m;
    r->head = m;
    r->n++;
    m->conn_next = c->rooms;
    c->rooms = m;
    return 0;
}

static void unlink_member(gw_index_t *ix, gw_member_t *m)
{
    gw_room_t *r = m->room;
    if (m->room_prev)
        m->room_prev->room_next = m->room_next;
    else
        r->head = m->room_next;
    if (m->room_next)
        m->room_next->room_prev = m->room_prev;
    r->n--;
    if (!r->head) {
        HASH_DEL(ix->rooms, r);
        ix->nrooms--;
        free(r);
    }
    free(m);
}

void gw_index_leave(gw_index_t *ix, gw_conn_t *c, const char *room, size_t len)
{
    gw_room_t *r = gw_index_find_room(ix, room, len);
    if (!r)
        return;
    for (gw_member_t **pp = &c->rooms; *pp; pp = &(*pp)->conn_next) {
        if ((*pp)->room == r) {
            gw_member_t *m = *pp;
            *pp = m->conn_next;
            unlink_member(ix, m);
            return;
        }
    }
}

void gw_index_remove_conn(gw_index_t *ix, gw_conn_t *c)
{
    while (c->rooms) {
        gw_member_t *m = c->rooms;
        c->rooms = m->conn_next;
        unlink_member(ix, m);
    }
    if (c->indexed) {
        if (c->user_prev) {
            c->user_prev->user_next = c->user_next;
        } else {
            uint64_t k = user_key(c->user, strlen(c->user));
            if (c->user_next)
                u64map_put(&ix->users, k, c->user_next, NULL); /* replaces: cannot fail */
            else
                u64map_del(&ix->users, k);
        }
        if (c->user_next)
            c->user_next->user_prev = c->user_prev;
        c->indexed = false;
        c->user_prev = c->user_next = NULL;
    }
}

void gw_index_free(gw_index_t *ix)
{
    u64map_free(&ix->users);
    gw_room_t *r, *rt;
    HASH_ITER(hh, ix->rooms, r, rt) {
        while (r->head) {
            gw_member_t *m = r->head;
            r->head = m->room_next;
            free(m);
        }
        HASH_DEL(ix->rooms, r);
        free(r);
    }
    ix->nrooms = 0;
}
