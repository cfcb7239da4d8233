/* batch.h: Upstream batches. A batch is encoded once (protobuf-c) without its seq; the seq is
 * appended as field 2 at the end (protobuf fields may come in any order), so a batch replayed
 * on a new stream is renumbered by rewriting a few tail bytes, never re-encoded.
 * Wire form: [gRPC 5-byte prefix][Upstream.events ...][0x10 varint(seq)]. Writer thread. */
#ifndef GW_BATCH_H
#define GW_BATCH_H

#include <stddef.h>
#include <stdint.h>

#include "event.h"

typedef struct gw_batch {
    struct gw_batch *next;
    uint64_t seq;
    uint32_t nevents;
    uint32_t nmsgs;          /* Message events (for the lost-messages count) */
    uint32_t *tmsgs;         /* Message events per source service thread (writer sets) */
    int64_t gateway_ns;      /* wall-clock stamp of the first event (api stage) */
    size_t ev_len;           /* encoded events */
    size_t wire_len;         /* prefix + events + seq field */
    uint8_t *buf;
} gw_batch_t;

/* gw_batch_encode: encodes evs[0..n) (gateway_id goes into Open events). Returns NULL when
 * out of memory. The events stay the caller's. The batch has seq 0 until gw_batch_set_seq. */
gw_batch_t *gw_batch_encode(gw_event_t *const *evs, size_t n, const char *gateway_id);
/* gw_batch_set_seq: (re)numbers the batch and rewrites its prefix. */
void gw_batch_set_seq(gw_batch_t *b, uint64_t seq);
void gw_batch_free(gw_batch_t *b);
/* gw_batch_thread_cleanup: frees this thread's encoding scratch (writer exit). */
void gw_batch_thread_cleanup(void);

#endif
