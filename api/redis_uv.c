/* redis_uv.c: hiredis' async context on a libuv loop (redis_uv.h says why not hiredis' own
 * adapter). Loop thread only. */
#include <stdlib.h>

#include "redis_uv.h"


typedef struct uvev {
    redisAsyncContext *ac;
    uv_poll_t poll;
    int events;
} uvev_t;

static void uvev_cb(uv_poll_t *h, int status, int events)
{
    uvev_t *e = h->data;
    if (status < 0) {
        events = 0;
        if (e->ac && (e->ac->c.flags & REDIS_CONNECTED))
            events = UV_READABLE;
        else if (e->ac)
            events = UV_WRITABLE; /* hiredis checks the connect's outcome on writable */
        e->events = 0; /* libuv stopped the poll */
    }
    if (e->ac && (events & UV_READABLE))
        redisAsyncHandleRead(e->ac);
    if (e->ac && (events & UV_WRITABLE))
        redisAsyncHandleWrite(e->ac);
}

static void uvev_update(uvev_t *e, int add, int del)
{
    int ev = (e->events | add) & ~del;
    if (ev == e->events)
        return;
    e->events = ev;
    if (ev)
        uv_poll_start(&e->poll, ev, uvev_cb);
    else
        uv_poll_stop(&e->poll);
}

static void uvev_add_read(void *p) { uvev_update(p, UV_READABLE, 0); }
static void uvev_del_read(void *p) { uvev_update(p, 0, UV_READABLE); }
static void uvev_add_write(void *p) { uvev_update(p, UV_WRITABLE, 0); }
static void uvev_del_write(void *p) { uvev_update(p, 0, UV_WRITABLE); }

static void uvev_closed(uv_handle_t *h)
{
    free(h->data);
}

static void uvev_cleanup(void *p)
{
    uvev_t *e = p;
    e->ac = NULL;
    uv_close((uv_handle_t *)&e->poll, uvev_closed);
}

int redis_uv_attach(redisAsyncContext *ac, uv_loop_t *loop)
{
    if (ac->ev.data)
        return -1;
    uvev_t *e = calloc(1, sizeof *e);
    if (!e)
        return -1;
    if (uv_poll_init(loop, &e->poll, ac->c.fd) != 0) {
        free(e);
        return -1;
    }
    e->ac = ac;
    e->poll.data = e;
    ac->ev.addRead = uvev_add_read;
    ac->ev.delRead = uvev_del_read;
    ac->ev.addWrite = uvev_add_write;
    ac->ev.delWrite = uvev_del_write;
    ac->ev.cleanup = uvev_cleanup;
    ac->ev.data = e;
    return 0;
}
