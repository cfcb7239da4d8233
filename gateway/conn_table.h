/* conn_table.h: per-thread table of live connections, indexed by conn_id slot with a
 * generation check: lookup is O(1) and a stale id (closed connection, reused slot) misses.
 * Service thread only. */
#ifndef GW_CONN_TABLE_H
#define GW_CONN_TABLE_H

#include <stdint.h>

#include "conn.h"

typedef struct gw_conn_table {
    gw_conn_t **slots;  /* NULL = free */
    uint32_t *gens;     /* generation of the id last issued from the slot */
    uint32_t cap;       /* slots allocated */
    uint32_t used;      /* slots ever handed out (high-water mark) */
    uint32_t live;      /* connections in the table */
    uint32_t *freeq;    /* FIFO of free slots: reuse spread over all slots */
    uint32_t fq_head, fq_len, fq_cap;
    uint32_t max_slots;
    uint16_t prefix;
    unsigned thread;
} gw_conn_table_t;

/* gw_conn_table_init: empty table for service thread `thread`, ids with `prefix`. */
void gw_conn_table_init(gw_conn_table_t *t, uint16_t prefix, unsigned thread, uint32_t max_slots);
void gw_conn_table_free(gw_conn_table_t *t);

/* gw_conn_table_add: gives c a fresh id and stores it. Returns 0, or -1 when full or out of
 * memory (the caller refuses the connection). The table does not own c. */
int gw_conn_table_add(gw_conn_table_t *t, gw_conn_t *c);

/* gw_conn_table_get: the live connection with this id, or NULL (other thread, closed, stale). */
gw_conn_t *gw_conn_table_get(const gw_conn_table_t *t, uint64_t id);

/* gw_conn_table_remove: frees c's slot (c->id must be its current id). */
void gw_conn_table_remove(gw_conn_table_t *t, gw_conn_t *c);

#endif
