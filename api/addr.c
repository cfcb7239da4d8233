/* addr.c: listen-address parsing and listening sockets (see addr.h). */
#include "addr.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

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

int addr_listen(const struct sockaddr_storage *ss, int backlog, char err[ADDR_ERR_LEN])
{
    int fd = socket(ss->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        snprintf(err, ADDR_ERR_LEN, "socket: %s", strerror(errno));
        return -1;
    }
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    socklen_t sl = ss->ss_family == AF_INET ? sizeof(struct sockaddr_in)
                                            : sizeof(struct sockaddr_in6);
    if (bind(fd, (const struct sockaddr *)ss, sl) < 0) {
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
