/* listen.h: a non-blocking TCP listening socket, optionally SO_REUSEPORT so that each service
 * thread of a process can bind its own socket to one port (the kernel spreads connections;
 * FIELD-NOTES: lws' listen-share does nothing with LWS_MAX_SMP 1). */
#ifndef WSGW_LISTEN_H
#define WSGW_LISTEN_H

#include <stdbool.h>
#include <stddef.h>

/* net_listen: socket bound to host:port (host "" = any), listening with a backlog of 4096.
 * Returns the descriptor (the caller owns it) or -1 with a message in err. */
int net_listen(const char *host, int port, bool reuseport, char *err, size_t errlen);

#endif
