/* addr.c: listen-address parsing and listening sockets (see addr.h). */
#include "addr.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <stddef.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

/* "unix:PATH" into a sockaddr_un; the length bind(2) and connect(2) take, or 0 when too long. */
static socklen_t unix_addr(const char *path, struct sockaddr_storage *ss)
{
    struct sockaddr_un *un = (struct sockaddr_un *)ss;
    size_t n = strlen(path);
    if (n == 0 || n >= sizeof un->sun_path)
        return 0;
    memset(ss, 0, sizeof *ss);
    un->sun_family = AF_UNIX;
    memcpy(un->sun_path, path, n);
    return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + 1);
}

static socklen_t addr_len(const struct sockaddr_storage *ss)
{
    if (ss->ss_family == AF_UNIX)
        return (socklen_t)(offsetof(struct sockaddr_un, sun_path) +
                           strlen(((const struct sockaddr_un *)ss)->sun_path) + 1);
    return ss->ss_family == AF_INET ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6);
}

int addr_parse(const char *s, struct sockaddr_storage *ss, char host[64], int *port,
               char err[ADDR_ERR_LEN])
{
    const char *colon;
    size_t hl;
    const char *h = s;
    if (!s || !*s) {
        snprintf(err, ADDR_ERR_LEN, "empty address");
        return -1;
    }
    if (strncmp(s, "unix:", 5) == 0) {
        if (!unix_addr(s + 5, ss)) {
            snprintf(err, ADDR_ERR_LEN, "bad address '%.64s': want unix:PATH, PATH 1-%zu bytes",
                     s, sizeof ((struct sockaddr_un *)ss)->sun_path - 1);
            return -1;
        }
        snprintf(host, 64, "unix");
        *port = 0;
        return 0;
    }
    if (s[0] == '[') {
        const char *rb = strchr(s, ']');
        if (!rb || rb[1] != ':') {
            snprintf(err, ADDR_ERR_LEN, "bad address '%.64s': want [v6]:port", s);
            return -1;
        }
        h = s + 1;
        hl = (size_t)(rb - h);
        colon = rb + 1;
    } else {
        colon = strrchr(s, ':');
        if (!colon) {
            snprintf(err, ADDR_ERR_LEN, "bad address '%.64s': want host:port", s);
            return -1;
        }
        hl = (size_t)(colon - s);
    }
    char *end;
    long p = strtol(colon + 1, &end, 10);
    if (*end || end == colon + 1 || p < 0 || p > 65535) {
        snprintf(err, ADDR_ERR_LEN, "bad port in '%.64s'", s);
        return -1;
    }
    if (hl >= 64) {
        snprintf(err, ADDR_ERR_LEN, "host too long in '%.64s'", s);
        return -1;
    }
    memcpy(host, h, hl);
    host[hl] = 0;
    if (hl == 0)
        strcpy(host, "0.0.0.0");
    else if (strcmp(host, "localhost") == 0)
        strcpy(host, "127.0.0.1");
    memset(ss, 0, sizeof *ss);
    struct sockaddr_in *v4 = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)ss;
    if (inet_pton(AF_INET, host, &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        v4->sin_port = htons((uint16_t)p);
    } else if (inet_pton(AF_INET6, host, &v6->sin6_addr) == 1) {
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons((uint16_t)p);
    } else {
        snprintf(err, ADDR_ERR_LEN, "host '%s' is not a numeric IP address", host);
        return -1;
    }
    *port = (int)p;
    return 0;
}

/* A socket file left at path by a process that is gone is removed; one that a live process
 * listens on is not (-1 with a message: two servers on one path would each get half the
 * connections). Anything else at path stays for bind to refuse. */
static int unix_clear_stale(const struct sockaddr_storage *ss, char err[ADDR_ERR_LEN])
{
    const char *path = ((const struct sockaddr_un *)ss)->sun_path;
    struct stat st;
    if (lstat(path, &st) < 0 || !S_ISSOCK(st.st_mode))
        return 0;
    /* non-blocking: a blocking connect to a live server whose backlog is full (a stopped
     * process) would wait for it forever */
    int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (probe < 0)
        return 0;
    int rv = connect(probe, (const struct sockaddr *)ss, addr_len(ss));
    int e = errno;
    close(probe);
    if (rv == 0 || e == EAGAIN) { /* EAGAIN: its backlog is full, so it is alive */
        snprintf(err, ADDR_ERR_LEN, "bind: %s: a running process listens there", path);
        return -1;
    }
    if (e == ECONNREFUSED)
        unlink(path);
    return 0;
}

int addr_listen(const struct sockaddr_storage *ss, int backlog, char err[ADDR_ERR_LEN])
{
    if (ss->ss_family == AF_UNIX && unix_clear_stale(ss, err) < 0)
        return -1;
    int fd = socket(ss->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        snprintf(err, ADDR_ERR_LEN, "socket: %s", strerror(errno));
        return -1;
    }
    int one = 1;
    if (ss->ss_family != AF_UNIX)
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(fd, (const struct sockaddr *)ss, addr_len(ss)) < 0) {
        snprintf(err, ADDR_ERR_LEN, "bind: %s", strerror(errno));
        goto out_close_fd;
    }
    if (listen(fd, backlog) < 0) {
        snprintf(err, ADDR_ERR_LEN, "listen: %s", strerror(errno));
        goto out_close_fd;
    }
    return fd;
out_close_fd:
    close(fd);
    return -1;
}

int addr_local_port(int fd)
{
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    if (getsockname(fd, (struct sockaddr *)&ss, &sl) < 0)
        return -1;
    if (ss.ss_family == AF_INET)
        return ntohs(((struct sockaddr_in *)&ss)->sin_port);
    if (ss.ss_family == AF_INET6)
        return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    return -1;
}

const char *addr_format(const struct sockaddr_storage *ss, char *out, size_t n)
{
    if (ss->ss_family == AF_UNIX) { /* a connecting peer's socket is unnamed */
        snprintf(out, n, "unix");
        return out;
    }
    char host[INET6_ADDRSTRLEN] = "?";
    int port = 0;
    if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *a = (const struct sockaddr_in *)ss;
        inet_ntop(AF_INET, &a->sin_addr, host, sizeof host);
        port = ntohs(a->sin_port);
    } else if (ss->ss_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)ss;
        inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof host);
        port = ntohs(a->sin6_port);
    }
    snprintf(out, n, "%s:%d", host, port);
    return out;
}
