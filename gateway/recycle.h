/* recycle.h: memory goes home to be freed. Events are allocated by service threads and used up
 * by writers; commands and payloads the other way round. Freeing a block on another thread
 * than the one that allocated it makes glibc take the owning arena's lock (futex under load),
 * so the user hands the block back through a return ring and the owner frees it the next time
 * it runs. No wake-up is sent: both sides run often; a full ring means a plain free().
 * Each thread registers itself once; a thread that did not (main) frees directly.
 *
 * Blocks of up to 16 KiB are kept rather than freed, in per-thread stacks by size class
 * (128 B to 16 KiB in powers of two; 1 MiB and 1 024 blocks a class at most: 1 600 messages
 * in flight took 2 of the gateway's 12 points of malloc time away, 256 KiB a class none), for
 * gw_rc_alloc on the same thread. Past glibc's per-thread tcache (chunks up to 1 032 B, 7 of a
 * size) a 1.4 KB message's event or payload went through the arena's bins, ~300 instructions a
 * malloc and as many a free; the small commands a writer makes by the hundred per turn
 * overflowed the tcache the same way (_int_malloc, _int_free and unlink_chunk: 5 % of the
 * gateway's cycles in the closed loop). A registered thread's frees of such blocks (what comes
 * home, or what it cannot send home) cost a push, its allocations a pop, and neither touches
 * the block. Unregistering (GW_RC_NONE) frees the thread's stacks. */
#ifndef GW_RECYCLE_H
#define GW_RECYCLE_H

#include <stddef.h>
#include <stdint.h>

#include "ring.h"

enum { GW_OWNER_NONE = -1 };
typedef enum { GW_RC_NONE = 0, GW_RC_SVC = 1, GW_RC_WRITER = 2 } gw_rc_kind_t;

/* gw_recycle_register: the calling thread is service thread (GW_RC_SVC) or writer
 * (GW_RC_WRITER) `idx`; to_peer[i] is the return ring toward peer i (writer i for a service
 * thread, service thread i for a writer). GW_RC_NONE: the thread is leaving (its kept blocks
 * are freed). */
void gw_recycle_register(gw_rc_kind_t kind, int idx, ring_t **to_peer, int npeer);
/* gw_recycle_role (--inline-writers): a service thread running a writer's turn takes the
 * writer's role for it (returns the role it had; the kept stacks stay the thread's), and
 * gw_recycle_role_back restores it afterwards. */
typedef struct {
    gw_rc_kind_t kind;
    int idx;
    ring_t **to_peer;
    int npeer;
} gw_rc_role_t;
gw_rc_role_t gw_recycle_role(gw_rc_kind_t kind, int idx, ring_t **to_peer, int npeer);
void gw_recycle_role_back(gw_rc_role_t r);
/* gw_rc_alloc: malloc(n) for blocks that travel between threads (events, payloads, commands),
 * from the calling thread's stack of n's size class when it has one (the block may be larger
 * than n). *rc gets the block's class tag (0: none): the object carries it and gives it to
 * gw_recycle, so that no thread reads a block to learn its size. Free with gw_recycle,
 * gw_recycle_drain or free(). */
void *gw_rc_alloc(size_t n, uint8_t *rc);

/* gw_rc_kept: blocks the calling thread keeps in the size class of `size` bytes (a power of
 * two from 128 to 16 384; 0 for any other size). */
unsigned gw_rc_kept(size_t size);

/* gw_recycle_owner: idx of the calling thread if it is of kind `kind`, else GW_OWNER_NONE
 * (stamped into new objects). */
int gw_recycle_owner(gw_rc_kind_t kind);
/* gw_recycle: p is no longer needed; `owner` (a thread of the other kind than the caller, or
 * GW_OWNER_NONE) allocated it, with class tag rc from gw_rc_alloc (0: a plain malloc block).
 * Frees now or hands it home (the tag rides in the pointer's low bits). */
void gw_recycle(void *p, int owner, uint8_t rc);
/* gw_recycle_drain: frees what came home through ring r (owner thread). */
void gw_recycle_drain(ring_t *r);

#endif
