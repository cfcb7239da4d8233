/* http_push.h: a minimal blocking HTTP/1.1 keep-alive client for ws-api's push API
 * (POST /v1/push with a JSON body, DESIGN.md "Push API"). One connection, one request at a
 * time; reconnects once when the server closed the kept-alive connection.
 *
 * Thread: whichever thread owns the push_client_t (the bench's main thread). */
#ifndef WSGW_BENCH_HTTP_PUSH_H
#define WSGW_BENCH_HTTP_PUSH_H

#include <stddef.h>
#include <sys/socket.h>

#include "buf.h"

#define PUSH_ERR_LEN 256

typedef struct push_client {
    int fd;                       /* -1 while not connected */
    struct sockaddr_storage addr;
    socklen_t addr_len;
    char hostport[128];           /* Host header */
    char base_path[256];          /* path prefix of the URL ("" for none) */
    const char *token;            /* Authorization: Bearer token, or NULL */
    int timeout_ms;
    buf_t rbuf;                   /* response bytes */
    buf_t req;                    /* request being built */
} push_client_t;

/* push_client_init: parses url ("http://host:port[/prefix]", IPv4/IPv6 literal or name) and
 * resolves it. Does not connect yet. Returns 0 or -1 with a message in err. */
int push_client_init(push_client_t *pc, const char *url, const char *token, int timeout_ms,
                     char err[PUSH_ERR_LEN]);

/* push_post: POSTs body (JSON) to base_path + path and waits for the whole response.
 * On success returns 0 with the HTTP status in *status and the response body (NUL-terminated,
 * valid until the next call) in *body. Returns -1 on I/O or parse errors (message in err). */
int push_post(push_client_t *pc, const char *path, const char *body, size_t len, int *status,
              const char **resp_body, char err[PUSH_ERR_LEN]);

/* push_client_close: closes the connection and frees the buffers. */
void push_client_close(push_client_t *pc);

#endif
