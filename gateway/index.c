/* index.c: per-thread user and room indexes on uthash (see index.h). Service thread only. */
#include "index.h"

#include <stdlib.h>
#include <string.h>

int gw_index_add_user(gw_index_t *ix, gw_conn_t *c)
{
    if (!c->user)
        return 0;
    size_t len = strlen(c->user);
    gw_user_t *u;
    HASH_FIND(hh, ix->users, c->user, len, u);
    if (!u) {
        u = calloc(1, sizeof *u + len + 1);
        if (!u)
            return -1;
        memcpy(u->name, c->user, len);
        HASH_ADD(hh, ix->users, name[0], len, u);
    }
    c->uentry = u;
    c->user_prev = NULL;
    c->user_next = u->head;
    if (u->head)
        u->head->user_prev = c;
    u->head = c;
    return 0;
}

gw_conn_t *gw_index_find_user(gw_index_t *ix, const char *user, size_t len)
{
    gw_user_t *u;
    HASH_FIND(hh, ix->users, user, len, u);
    return u ? u->head : NULL;
}

gw_room_t *gw_index_find_room(gw_index_t *ix, const char *room, size_t len)
{
    gw_room_t *r;
    HASH_FIND(hh, ix->rooms, room, len, r);
    return r;
}

int gw_index_join(gw_index_t *ix, gw_conn_t *c, const char *room, size_t len)
{
    gw_room_t *r = gw_index_find_room(ix, room, len);
    if (r) {
        for (gw_member_t *m = c->rooms; m; m = m->conn_next)
            if (m->room == r)
                return 0;
    } else {
        r = calloc(1, sizeof *r + len + 1);
        if (!r)
            return -1;
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
        return -1;
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
    gw_user_t *u = c->uentry;
    if (u) {
        if (c->user_prev)
            c->user_prev->user_next = c->user_next;
        else
            u->head = c->user_next;
        if (c->user_next)
            c->user_next->user_prev = c->user_prev;
        if (!u->head) {
            HASH_DEL(ix->users, u);
            free(u);
        }
        c->uentry = NULL;
        c->user_prev = c->user_next = NULL;
    }
}

void gw_index_free(gw_index_t *ix)
{
    gw_user_t *u, *ut;
    HASH_ITER(hh, ix->users, u, ut) {
        HASH_DEL(ix->users, u);
        free(u);
    }
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
