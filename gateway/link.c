/* link.c: the shared state of one service thread and one writer (see link.h). Main thread. */
#include "link.h"

#include <stddef.h>
#include <stdlib.h>

#include "event.h"
#include "recycle.h"

/* handoff.h: items start with their `next` link */
_Static_assert(offsetof(gw_event_t, next) == 0, "gw_event_t must start with next");
_Static_assert(offsetof(gw_cmd_t, next) == 0, "gw_cmd_t must start with next");

static void free_event(void *e) { gw_event_free(e); }
static void free_cmd(void *c) { gw_cmd_free(c); }

gw_link_t *gw_link_new(int k, int u, int nstreams, size_t ring_size,
                       gw_handoff_wake_fn wake_svc, void *svc_ud,
                       gw_handoff_wake_fn wake_writer, void *writer_ud)
{
    gw_link_t *l = calloc(1, sizeof *l);
    if (!l)
        return NULL;
    l->svc = k;
    l->node = u;
    l->nstreams = nstreams;
    l->wake_svc_fn = wake_svc;
    l->svc_ud = svc_ud;
    l->wake_writer_fn = wake_writer;
    l->writer_ud = writer_ud;
    atomic_init(&l->want_done, 0);
    /* the producer of `up` is the service thread: the writer wakes it for room, and back */
    if (gw_handoff_init(&l->up, ring_size, wake_svc, svc_ud) < 0 ||
        gw_handoff_init(&l->down, ring_size, wake_writer, writer_ud) < 0)
        goto fail;
    l->home_ev = ring_new(ring_size);
    l->home_cmd = ring_new(ring_size);
    l->done = calloc((size_t)nstreams, sizeof *l->done);
    if (!l->home_ev || !l->home_cmd || !l->done)
        goto fail;
    for (int i = 0; i < nstreams; i++)
        atomic_init(&l->done[i], 0);
    return l;
fail:
    gw_link_free(l);
    return NULL;
}

void gw_link_free(gw_link_t *l)
{
    if (!l)
        return;
    gw_handoff_free(&l->up, free_event);
    gw_handoff_free(&l->down, free_cmd);
    if (l->home_ev) {
        gw_recycle_drain(l->home_ev);
        ring_free(l->home_ev);
    }
    if (l->home_cmd) {
        gw_recycle_drain(l->home_cmd);
        ring_free(l->home_cmd);
    }
    free((void *)l->done);
    free(l);
}
