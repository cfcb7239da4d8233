/* recycle.h: memory goes home to be freed. Events are allocated by service threads and used up
 * by writers; commands and payloads the other way round. Freeing a block on another thread
 * than the one that allocated it makes glibc take the owning arena's lock (futex under load),
 * so the user hands the block back through a return ring and the owner frees it the next time
 * it runs. No wake-up is sent: both sides run often; a full ring means a plain free().
 * Each thread registers itself once; a thread that did not (main) frees directly. */
#ifndef GW_RECYCLE_H
#define GW_RECYCLE_H

#include <stdint.h>

#include "ring.h"

enum { GW_OWNER_NONE = -1 };
typedef enum { GW_RC_NONE = 0, GW_RC_SVC = 1, GW_RC_WRITER = 2 } gw_rc_kind_t;

/* gw_recycle_register: the calling thread is service thread (GW_RC_SVC) or writer
 * (GW_RC_WRITER) `idx`; to_peer[i] is the return ring toward peer i (writer i for a service
 * thread, service thread i for a writer). */
void gw_recycle_register(gw_rc_kind_t kind, int idx, ring_t **to_peer, int npeer);
/* gw_recycle_owner: idx of the calling thread if it is of kind `kind`, else GW_OWNER_NONE
 * (stamped into new objects). */
int gw_recycle_owner(gw_rc_kind_t kind);
/* gw_recycle: p is no longer needed; `owner` (a thread of the other kind than the caller, or
 * GW_OWNER_NONE) allocated it. Frees now or hands it home. */
void gw_recycle(void *p, int owner);
/* gw_recycle_drain: frees what came home through ring r (owner thread). */
void gw_recycle_drain(ring_t *r);

#endif
