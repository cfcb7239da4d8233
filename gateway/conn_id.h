/* conn_id.h: cluster-unique connection ids, routable in O(1) on their gateway.
 *
 *   63            48 47     42 41              22 21                0
 *   | prefix (16)   | thread  | slot (20)        | generation (22)   |
 *
 * prefix: derived from the gateway id and its start time, so a restarted gateway issues fresh
 * ids; thread: the owning service thread; slot: index in that thread's connection table;
 * generation: bumped each time the slot is reused. A slot whose generation would wrap is
 * retired, so within one gateway process an id is never issued twice. */
#ifndef GW_CONN_ID_H
#define GW_CONN_ID_H

#include <stdint.h>

#define CONN_ID_GEN_BITS 22
#define CONN_ID_SLOT_BITS 20
#define CONN_ID_THREAD_BITS 6
#define CONN_ID_PREFIX_BITS 16

#define CONN_ID_GEN_MAX ((1u << CONN_ID_GEN_BITS) - 1)
#define CONN_ID_SLOT_MAX ((1u << CONN_ID_SLOT_BITS) - 1)
#define CONN_ID_THREAD_MAX ((1u << CONN_ID_THREAD_BITS) - 1)

static inline uint64_t conn_id_make(uint16_t prefix, unsigned thread, uint32_t slot, uint32_t gen)
{
    return (uint64_t)prefix << 48 | (uint64_t)(thread & CONN_ID_THREAD_MAX) << 42 |
           (uint64_t)(slot & CONN_ID_SLOT_MAX) << 22 | (gen & CONN_ID_GEN_MAX);
}
static inline uint16_t conn_id_prefix(uint64_t id) { return (uint16_t)(id >> 48); }
static inline unsigned conn_id_thread(uint64_t id) { return (unsigned)(id >> 42) & CONN_ID_THREAD_MAX; }
static inline uint32_t conn_id_slot(uint64_t id) { return (uint32_t)(id >> 22) & CONN_ID_SLOT_MAX; }
static inline uint32_t conn_id_gen(uint64_t id) { return (uint32_t)id & CONN_ID_GEN_MAX; }

#endif
