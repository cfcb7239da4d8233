/* envelope.h: the server frames of the WebSocket subprotocol wsgw.v1.json (README "Client
 * protocol"): text frames, one JSON object each.
 *
 *   {"type":"message","channel":"user:alice","offset":18,"epoch":"k3x9","data":"hello"}
 *       a message; channel/offset/epoch only when the API gave them (offset: kept in the
 *       channel's history); "data_base64" instead of "data" for a binary payload (and for a
 *       text payload that is not UTF-8, which no JSON string can hold).
 *   {"type":"recovery","channel":"user:alice","recovered":true,"offset":118,"epoch":"k3x9"}
 *       the end of a recovery: what the client missed is delivered (recovered:true) or is no
 *       longer all there (false: refetch your state); offset/epoch: the channel's position now.
 *
 * Pure (allocation only); any thread. Payloads are made with gw_payload_new's layout (LWS_PRE
 * headroom) and owned by the caller (one reference). */
#ifndef GW_ENVELOPE_H
#define GW_ENVELOPE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "event.h"

/* gw_env_message: the envelope of one message (chan may be NULL/0: no channel; offset 0: no
 * offset; epoch: only with an offset). NULL when out of memory or too large (over 4 GiB). */
gw_payload_t *gw_env_message(const char *chan, size_t chan_len, uint64_t offset,
                             const char *epoch, size_t epoch_len, const uint8_t *data,
                             size_t len, bool binary, int64_t t_recv);

/* gw_env_recovery: the recovery notice of a channel. NULL when out of memory. */
gw_payload_t *gw_env_recovery(const char *chan, size_t chan_len, bool recovered,
                              uint64_t offset, const char *epoch, size_t epoch_len,
                              int64_t t_recv);

/* gw_env_json_len / gw_env_json_put: s as a JSON string body (no quotes): the length, and the
 * bytes written into out (gw_env_json_len bytes). Control characters, '"' and '\\' escaped;
 * when s is not UTF-8, every non-ASCII byte becomes \ufffd. */
size_t gw_env_json_len(const uint8_t *s, size_t n);
size_t gw_env_json_put(char *out, const uint8_t *s, size_t n);

#endif
