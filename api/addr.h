/* addr.h: "host:port" listen addresses and non-blocking listening sockets (ws-api). */
#ifndef WSGW_API_ADDR_H
#define WSGW_API_ADDR_H

#include <stddef.h>
#include <sys/socket.h>

#define ADDR_ERR_LEN 256

/* addr_parse: "host:port", "[v6]:port", ":port" (all interfaces) or "unix:PATH" (a Unix
 * domain socket, as gRPC names them) into ss; host gets the numeric host text ("0.0.0.0" for
 * ":port", "unix" for a path), port the port (0 for a path). Host must be a numeric IPv4/IPv6
 * address or "localhost". Returns 0 or -1 with a message in err. */
int addr_parse(const char *s, struct sockaddr_storage *ss, char host[64], int *port,
               char err[ADDR_ERR_LEN]);

/* addr_listen: a non-blocking, close-on-exec TCP socket with SO_REUSEADDR bound to ss and
 * listening, or a Unix domain socket (a socket file left by a process that is gone is
 * replaced; one a live process listens on is refused). Returns the fd, or -1 with a message
 * (including errno text) in err. The caller owns the fd. */
int addr_listen(const struct sockaddr_storage *ss, int backlog, char err[ADDR_ERR_LEN]);

/* addr_local_port: the port a socket is bound to, or -1. */
int addr_local_port(int fd);

/* addr_format: "host:port" of a peer address into out (for logs); "unix" for a Unix domain
 * socket's peer, "?:0" for other families.
 * Returns out. */
const char *addr_format(const struct sockaddr_storage *ss, char *out, size_t n);

#endif
