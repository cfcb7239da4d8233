/* resolver.h: host-name upstreams (name:port, dns:///name:port): every A/AAAA record of name is
 * an API node. The main thread re-resolves periodically and assigns addresses to a fixed set
 * of dynamic writer slots, keeping existing assignments (a node keeps its slot while it
 * exists): nodes come and go without a restart (how Kubernetes scales ws-api behind a headless
 * Service, or compose --scale behind one service name). */
#ifndef GW_RESOLVER_H
#define GW_RESOLVER_H

#include <stdbool.h>
#include <stddef.h>

#include "gw.h"

typedef struct gw_resolver {
    char host[256];
    char port[16];
    int first, n;          /* writer slots g->up[first .. first+n) */
    bool tls_by_name;      /* plain name:port with --upstream-tls: the nodes' certificates must
                            * name host (dns:/// nodes are verified by address) */
    char (*assigned)[300]; /* [n] "ip:port" or "" */
    void (*set_addr)(gw_up_t *u, const char *addr); /* gw_up_set_addr (tests replace it) */
} gw_resolver_t;

/* gw_resolver_init: parses "name:port" (of dns:///name:port, the part after dns:///). Returns
 * 0 or -1 with a message in err. Main thread. */
int gw_resolver_init(gw_resolver_t *r, const char *spec, int first, int n, char *err,
                     size_t errlen);
/* gw_resolver_tick: resolves and reassigns (main thread; blocks in getaddrinfo). */
void gw_resolver_tick(gw_resolver_t *r, gw_t *g);
/* gw_resolver_apply: reassigns slots for the records found[0..nf): slots of vanished
 * addresses are emptied, new addresses take free slots, the rest keep theirs. */
void gw_resolver_apply(gw_resolver_t *r, gw_t *g, char (*found)[300], int nf);
void gw_resolver_free(gw_resolver_t *r);

#endif
