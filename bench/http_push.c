/* http_push.c: blocking HTTP/1.1 keep-alive POST client (see http_push.h). */
#include "http_push.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>
#include <unistd.h>

int push_client_init(push_client_t *pc, const char *url, const char *token, int timeout_ms,
                     char err[PUSH_ERR_LEN])
{
    memset(pc, 0, sizeof *pc);
    pc->fd = -1;
    pc->token = token && *token ? token : NULL;
    pc->timeout_ms = timeout_ms;
    if (strncmp(url, "http://", 7) != 0) {
        snprintf(err, PUSH_ERR_LEN, "push url must start with http://: '%s'", url);
        return -1;
    }
    const char *hp = url + 7;
    const char *slash = strchr(hp, '/');
    size_t hl = slash ? (size_t)(slash - hp) : strlen(hp);
    if (hl == 0 || hl >= sizeof pc->hostport) {
        snprintf(err, PUSH_ERR_LEN, "bad host in push url '%s'", url);
        return -1;
    }
    memcpy(pc->hostport, hp, hl);
    pc->hostport[hl] = 0;
    snprintf(pc->base_path, sizeof pc->base_path, "%s", slash ? slash : "");
    size_t bl = strlen(pc->base_path);
    if (bl && pc->base_path[bl - 1] == '/')
        pc->base_path[bl - 1] = 0;

    char host[128], port[16] = "80";
    const char *h = pc->hostport;
    const char *colon;
    if (h[0] == '[') { /* [v6]:port */
        const char *rb = strchr(h, ']');
        if (!rb) {
            snprintf(err, PUSH_ERR_LEN, "bad IPv6 host in '%s'", url);
            return -1;
        }
        snprintf(host, sizeof host, "%.*s", (int)(rb - h - 1), h + 1);
        colon = rb[1] == ':' ? rb + 1 : NULL;
    } else {
        colon = strrchr(h, ':');
        snprintf(host, sizeof host, "%.*s", (int)(colon ? (size_t)(colon - h) : strlen(h)), h);
    }
    if (colon)
        snprintf(port, sizeof port, "%s", colon + 1);
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    struct addrinfo *res = NULL;
    int rv = getaddrinfo(host, port, &hints, &res);
    if (rv || !res) {
        snprintf(err, PUSH_ERR_LEN, "cannot resolve '%s': %s", pc->hostport, gai_strerror(rv));
        return -1;
    }
    memcpy(&pc->addr, res->ai_addr, res->ai_addrlen);
    pc->addr_len = res->ai_addrlen;
    freeaddrinfo(res);
    return 0;
}

static int pc_connect(push_client_t *pc, char *err)
{
    int fd = socket(pc->addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        snprintf(err, PUSH_ERR_LEN, "socket: %s", strerror(errno));
        return -1;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct timeval tv = {pc->timeout_ms / 1000, (pc->timeout_ms % 1000) * 1000};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    if (connect(fd, (struct sockaddr *)&pc->addr, pc->addr_len) < 0) {
        snprintf(err, PUSH_ERR_LEN, "connect %s: %s", pc->hostport, strerror(errno));
        close(fd);
        return -1;
    }
    pc->fd = fd;
    return 0;
}

static void pc_disconnect(push_client_t *pc)
{
    if (pc->fd >= 0)
        close(pc->fd);
    pc->fd = -1;
}

static int write_all(int fd, const uint8_t *p, size_t n)
{
    while (n) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Reads one response. Returns 0, -1 on error, -2 when the connection was closed before any
 * byte arrived (a kept-alive connection the server dropped: worth one retry). */
static int read_response(push_client_t *pc, int *status, const char **body, bool *keep,
                         char *err)
{
    buf_reset(&pc->rbuf);
    size_t hdr_end = 0;
    long clen = -1;
    for (;;) {
        if (hdr_end && clen >= 0 && pc->rbuf.len >= hdr_end + (size_t)clen)
            break;
        if (buf_reserve(&pc->rbuf, 4096) < 0) {
            snprintf(err, PUSH_ERR_LEN, "out of memory");
            return -1;
        }
        ssize_t r = recv(pc->fd, pc->rbuf.data + pc->rbuf.len, pc->rbuf.cap - pc->rbuf.len - 1, 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            if (r == 0 && pc->rbuf.len == 0)
                return -2;
            if (r == 0 && hdr_end && clen < 0)
                break; /* body delimited by close */
            snprintf(err, PUSH_ERR_LEN, "reading response: %s",
                     r == 0 ? "connection closed" : strerror(errno));
            return r == 0 || errno == ECONNRESET ? (pc->rbuf.len ? -1 : -2) : -1;
        }
        pc->rbuf.len += (size_t)r;
        pc->rbuf.data[pc->rbuf.len] = 0;
        if (!hdr_end) {
            char *e = strstr((char *)pc->rbuf.data, "\r\n\r\n");
            if (!e)
                continue;
            hdr_end = (size_t)(e + 4 - (char *)pc->rbuf.data);
            const char *d = (const char *)pc->rbuf.data;
            if (strncmp(d, "HTTP/1.", 7) != 0 || strlen(d) < 12) {
                snprintf(err, PUSH_ERR_LEN, "not an HTTP response");
                return -1;
            }
            *status = atoi(d + 9);
            *keep = d[7] == '1';
            for (const char *l = strstr(d, "\r\n"); l && l < e; l = strstr(l + 2, "\r\n")) {
                const char *h = l + 2;
                if (strncasecmp(h, "Content-Length:", 15) == 0)
                    clen = strtol(h + 15, NULL, 10);
                else if (strncasecmp(h, "Connection:", 11) == 0) {
                    const char *v = h + 11;
                    while (*v == ' ')
                        v++;
                    if (strncasecmp(v, "close", 5) == 0)
                        *keep = false;
                    else if (strncasecmp(v, "keep-alive", 10) == 0)
                        *keep = true;
                } else if (strncasecmp(h, "Transfer-Encoding:", 18) == 0) {
                    snprintf(err, PUSH_ERR_LEN, "chunked responses are not supported");
                    return -1;
                }
            }
            if (clen < 0)
                *keep = false;
        }
    }
    *body = (const char *)pc->rbuf.data + hdr_end;
    return 0;
}

int push_post(push_client_t *pc, const char *path, const char *body, size_t len, int *status,
              const char **resp_body, char err[PUSH_ERR_LEN])
{
    buf_reset(&pc->req);
    if (buf_appendf(&pc->req,
                    "POST %s%s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\n"
                    "Content-Length: %zu\r\n",
                    pc->base_path, path, pc->hostport, len) < 0 ||
        (pc->token && buf_appendf(&pc->req, "Authorization: Bearer %s\r\n", pc->token) < 0) ||
        buf_append(&pc->req, "\r\n", 2) < 0 || buf_append(&pc->req, body, len) < 0) {
        snprintf(err, PUSH_ERR_LEN, "out of memory");
        return -1;
    }
    for (int attempt = 0; attempt < 2; attempt++) {
        bool fresh = pc->fd < 0;
        if (fresh && pc_connect(pc, err) < 0)
            return -1;
        bool keep = true;
        int rv = write_all(pc->fd, pc->req.data, pc->req.len);
        if (rv == 0)
            rv = read_response(pc, status, resp_body, &keep, err);
        else
            rv = -2;
        if (rv == 0) {
            if (!keep)
                pc_disconnect(pc);
            return 0;
        }
        pc_disconnect(pc);
        if (rv == -1 || fresh) {
            if (rv == -2)
                snprintf(err, PUSH_ERR_LEN, "connection to %s closed without a response",
                         pc->hostport);
            return -1;
        }
        /* a kept-alive connection the server had closed: once more on a new one */
    }
    return -1;
}

void push_client_close(push_client_t *pc)
{
    pc_disconnect(pc);
    buf_free(&pc->rbuf);
    buf_free(&pc->req);
}
