/* idmap.h: a small map from connection id to a 32-bit number (open addressing, linear probing;
 * id 0 never occurs). The delivery machine keeps, per service thread, the connections whose
 * messages it handed back and the Reroute that took the last of them (delivery.c).
 * Single-threaded. */
#ifndef GW_IDMAP_H
#define GW_IDMAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct gw_idmap {
    uint64_t *id;
    uint32_t *n;
    size_t count, cap;
} gw_idmap_t;

bool gw_idmap_has(const gw_idmap_t *m, uint64_t id);
/* gw_idmap_put: sets id -> n. Returns 0, or -1 when out of memory (nothing changed). */
int gw_idmap_put(gw_idmap_t *m, uint64_t id, uint32_t n);
/* gw_idmap_drop_upto: removes every entry whose number is n or before it (wrapping compare). */
void gw_idmap_drop_upto(gw_idmap_t *m, uint32_t n);
void gw_idmap_free(gw_idmap_t *m);

#endif
