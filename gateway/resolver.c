/* resolver.c: dns:/// upstream resolution (see resolver.h). Main thread. */
#include "resolver.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "log.h"
#include "upstream.h"

int gw_resolver_init(gw_resolver_t *r, const char *spec, int first, int n, char *err,
                     size_t errlen)
{
    memset(r, 0, sizeof *r);
    const char *colon = strrchr(spec, ':');
    if (!colon || colon == spec || !colon[1] || (size_t)(colon - spec) >= sizeof r->host ||
        strlen(colon + 1) >= sizeof r->port) {
        snprintf(err, errlen, "--upstream: '%s' is not name:port", spec);
        return -1;
    }
    memcpy(r->host, spec, (size_t)(colon - spec));
    snprintf(r->port, sizeof r->port, "%s", colon + 1);
    r->first = first;
    r->n = n;
    r->set_addr = gw_up_set_addr;
    r->assigned = calloc((size_t)n, sizeof *r->assigned);
    if (!r->assigned) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    return 0;
}

static bool in_list(char (*list)[300], int n, const char *a)
{
    for (int i = 0; i < n; i++)
        if (strcmp(list[i], a) == 0)
            return true;
    return false;
}

void gw_resolver_tick(gw_resolver_t *r, gw_t *g)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    struct addrinfo *res = NULL;
    int rv = getaddrinfo(r->host, r->port, &hints, &res);
    if (rv != 0) {
        /* keep what we have: a DNS hiccup must not drop healthy nodes */
        log_rl_warn("cannot resolve API nodes", "name=%s err=%s", r->host, gai_strerror(rv));
        return;
    }
    char found[64][300];
    int nf = 0;
    for (struct addrinfo *a = res; a && nf < 64; a = a->ai_next) {
        char ip[INET6_ADDRSTRLEN];
        char one[300];
        if (a->ai_family == AF_INET) {
            inet_ntop(AF_INET, &((struct sockaddr_in *)a->ai_addr)->sin_addr, ip, sizeof ip);
            snprintf(one, sizeof one, "%s:%s", ip, r->port);
        } else if (a->ai_family == AF_INET6) {
            inet_ntop(AF_INET6, &((struct sockaddr_in6 *)a->ai_addr)->sin6_addr, ip, sizeof ip);
            snprintf(one, sizeof one, "[%s]:%s", ip, r->port);
        } else {
            continue;
        }
        if (!in_list(found, nf, one))
            snprintf(found[nf++], sizeof found[0], "%s", one);
    }
    freeaddrinfo(res);
    gw_resolver_apply(r, g, found, nf);
}

void gw_resolver_apply(gw_resolver_t *r, gw_t *g, char (*found)[300], int nf)
{
    /* gone: free their slots */
    for (int i = 0; i < r->n; i++) {
        if (r->assigned[i][0] && !in_list(found, nf, r->assigned[i])) {
            r->assigned[i][0] = 0;
            r->set_addr(g->up[r->first + i], "");
        }
    }
    /* new: take free slots */
    for (int k = 0; k < nf; k++) {
        if (in_list(r->assigned, r->n, found[k]))
            continue;
        int slot = -1;
        for (int i = 0; i < r->n && slot < 0; i++)
            if (!r->assigned[i][0])
                slot = i;
        if (slot < 0) {
            log_rl_warn("more API nodes than --max-upstreams", "name=%s records=%d slots=%d",
                        r->host, nf, r->n);
            break;
        }
        memcpy(r->assigned[slot], found[k], sizeof r->assigned[slot]); /* both char[300] */
        r->set_addr(g->up[r->first + slot], found[k]);
    }
}

void gw_resolver_free(gw_resolver_t *r)
{
    free(r->assigned);
    r->assigned = NULL;
}
