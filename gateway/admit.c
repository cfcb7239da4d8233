/* admit.c: Origin allowlist and per-address connection counts (see admit.h). */
#include "admit.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "u64map.h"

static char **origins;
static size_t norigins;

int gw_admit_init(const char *list)
{
    if (!list || !*list)
        return 0;
    char *copy = strdup(list);
    if (!copy)
        return -1;
    for (char *s = copy, *tok; (tok = strsep(&s, ","));) {
        while (*tok == ' ')
            tok++;
        size_t n = strlen(tok);
        while (n && (tok[n - 1] == ' ' || tok[n - 1] == '/'))
            tok[--n] = 0; /* "https://a.example/" and "https://a.example" are the same origin */
        if (!n)
            continue;
        char **no = realloc(origins, (norigins + 1) * sizeof *no);
        if (!no) {
            free(copy);
            return -1;
        }
        origins = no;
        origins[norigins++] = strdup(tok);
    }
    free(copy);
    return 0;
}

bool gw_admit_origin(const char *origin, size_t n, bool require)
{
    if (!origin || !n)
        return !require;
    if (!norigins)
        return true;
    while (n && origin[n - 1] == '/')
        n--;
    for (size_t i = 0; i < norigins; i++) {
        if (strcmp(origins[i], "*") == 0)
            return true;
        /* RFC 6454: scheme and host compare case-insensitively */
        if (strlen(origins[i]) == n && strncasecmp(origins[i], origin, n) == 0 &&
            !memchr(origin, 0, n))
            return true;
    }
    return false;
}

/* Connection set-up and tear-down only: a plain mutex is the simplest correct choice here. */
static pthread_mutex_t ip_lock = PTHREAD_MUTEX_INITIALIZER;
static u64map_t ip_counts = U64MAP_INIT; /* address hash -> count (stored in the pointer) */

bool gw_admit_ip_take(uint64_t h, int64_t max)
{
    bool ok = false;
    pthread_mutex_lock(&ip_lock);
    intptr_t n = (intptr_t)u64map_get(&ip_counts, h);
    if (n < max && u64map_put(&ip_counts, h, (void *)(n + 1), NULL) == 0)
        ok = true;
    pthread_mutex_unlock(&ip_lock);
    return ok;
}

void gw_admit_ip_put(uint64_t h)
{
    pthread_mutex_lock(&ip_lock);
    intptr_t n = (intptr_t)u64map_get(&ip_counts, h);
    if (n <= 1)
        u64map_del(&ip_counts, h);
    else
        u64map_put(&ip_counts, h, (void *)(n - 1), NULL);
    pthread_mutex_unlock(&ip_lock);
}

int64_t gw_admit_ip_count(uint64_t h)
{
    pthread_mutex_lock(&ip_lock);
    intptr_t n = (intptr_t)u64map_get(&ip_counts, h);
    pthread_mutex_unlock(&ip_lock);
    return n;
}
