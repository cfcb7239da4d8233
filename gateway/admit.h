/* admit.h: handshake admission beyond auth: the Origin allowlist and the per-address
 * connection limit. */
#ifndef GW_ADMIT_H
#define GW_ADMIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* gw_admit_init: parses --allowed-origins (comma list; "" = any) once. Main thread.
 * Returns 0 or -1 (memory). */
int gw_admit_init(const char *allowed_origins);

/* gw_admit_origin: may a handshake with this Origin header value origin[0..n) (NULL or n 0 =
 * none) go on? It is compared whole, whatever its length (a value longer than any allowed
 * origin simply does not match). require: refuse requests without Origin. Any thread
 * (read-only data). */
bool gw_admit_origin(const char *origin, size_t n, bool require);

/* Per-address counts, shared by all service threads. A mutex guards the table: it is taken
 * twice per connection (handshake, close), never per message.
 * gw_admit_ip_take: reserves one connection for the address hash h; false when `max` are
 * already open. gw_admit_ip_put: gives it back. h must not be 0. */
bool gw_admit_ip_take(uint64_t h, int64_t max);
void gw_admit_ip_put(uint64_t h);
/* gw_admit_ip_count: open connections of an address (tests). */
int64_t gw_admit_ip_count(uint64_t h);

#endif
