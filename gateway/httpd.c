/* httpd.c: plain HTTP requests on the client port (see httpd.h). Service thread. */
#include "httpd.h"

#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "buf.h"
#include "gw.h"
#include "log.h"
#include "metrics.h"
#include "svc.h"

#define WS_PATH "/gateway/ws"
#define STATIC_MAX (16 << 20) /* a larger file is not served: 404 (the demo is ~20 KB) */

static char static_dir[512];

const char *gw_static_dir(void)
{
    return static_dir[0] ? static_dir : NULL;
}

void gw_static_dir_init(const char *flag, const char *argv0)
{
    struct stat st;
    char cand[512];
    static_dir[0] = 0;
    if (flag && *flag) {
        snprintf(static_dir, sizeof static_dir, "%s", flag);
        goto trim;
    }
    if (stat("/usr/share/wsgw/demo", &st) == 0 && S_ISDIR(st.st_mode)) {
        snprintf(static_dir, sizeof static_dir, "/usr/share/wsgw/demo");
        return;
    }
    const char *slash = argv0 ? strrchr(argv0, '/') : NULL;
    if (slash) {
        snprintf(cand, sizeof cand, "%.*s/../demo", (int)(slash - argv0), argv0);
        if (stat(cand, &st) == 0 && S_ISDIR(st.st_mode))
            snprintf(static_dir, sizeof static_dir, "%s", cand);
    }
trim:
    for (size_t n = strlen(static_dir); n > 1 && static_dir[n - 1] == '/'; n--)
        static_dir[n - 1] = 0;
}

const char *gw_httpd_status_text(unsigned status)
{
    switch (status) {
    case 200: return "OK";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 429: return "Too Many Requests";
    case 500: return "Internal Server Error";
    case 503: return "Service Unavailable";
    default: return "Error";
    }
}

int gw_httpd_reply(struct lws *wsi, unsigned status, const char *ctype, const void *body,
                   size_t len, bool head)
{
    size_t cap = LWS_PRE + 256 + (head ? 0 : len);
    uint8_t *buf = malloc(cap);
    if (!buf)
        return -1;
    char *start = (char *)buf + LWS_PRE;
    int n = snprintf(start, 256,
                     "HTTP/1.1 %u %s\r\ncontent-type: %s\r\ncontent-length: %zu\r\n"
                     "cache-control: no-store\r\nconnection: close\r\n\r\n",
                     status, gw_httpd_status_text(status), ctype, len);
    if (n < 0 || n >= 256) {
        free(buf);
        return -1;
    }
    if (!head && len)
        memcpy(start + n, body, len);
    size_t total = (size_t)n + (head ? 0 : len);
    /* lws keeps what the socket does not take and sends it before it closes */
    int w = lws_write(wsi, (unsigned char *)start, total, LWS_WRITE_RAW);
    free(buf);
    return w < 0 ? -1 : 0;
}

static void text(struct lws *wsi, unsigned status, const char *t, bool head)
{
    gw_httpd_reply(wsi, status, "text/plain; charset=utf-8", t, strlen(t), head);
}

static const char *mime_of(const char *path)
{
    static const struct {
        const char *ext, *mime;
    } types[] = {
        {".html", "text/html; charset=utf-8"}, {".js", "text/javascript; charset=utf-8"},
        {".css", "text/css; charset=utf-8"},   {".svg", "image/svg+xml"},
        {".png", "image/png"},                 {".ico", "image/x-icon"},
        {".json", "application/json"},         {".txt", "text/plain; charset=utf-8"},
    };
    const char *dot = strrchr(path, '.');
    for (size_t i = 0; dot && i < sizeof types / sizeof types[0]; i++)
        if (strcmp(dot, types[i].ext) == 0)
            return types[i].mime;
    return "application/octet-stream";
}

/* Reads a regular file of at most STATIC_MAX bytes; NULL when it is not one. */
static char *slurp(const char *file, size_t *len)
{
    int fd = open(file, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return NULL;
    struct stat st;
    char *data = NULL;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size > STATIC_MAX)
        goto out;
    data = malloc((size_t)st.st_size + 1);
    size_t got = 0;
    while (data && got < (size_t)st.st_size) {
        ssize_t r = read(fd, data + got, (size_t)st.st_size - got);
        if (r <= 0) {
            free(data);
            data = NULL;
            break;
        }
        got += (size_t)r;
    }
    *len = got;
out:
    close(fd);
    return data;
}

/* GET of a file under --static-dir (the browser demo at /). The path is decoded first, so an
 * encoded "..", "\" or NUL is refused like a plain one. */
static void serve_static(struct lws *wsi, const char *path, bool head)
{
    const char *dir = gw_static_dir();
    if (!dir || path[0] != '/' || strstr(path, "..") || strchr(path, '\\') ||
        strlen(path) > 200) {
        text(wsi, 404, "not found\n", head);
        return;
    }
    char file[1024];
    snprintf(file, sizeof file, "%s%s%s", dir, path,
             path[strlen(path) - 1] == '/' ? "index.html" : "");
    size_t len = 0;
    char *data = slurp(file, &len);
    if (!data) {
        text(wsi, 404, "not found\n", head);
        return;
    }
    gw_httpd_reply(wsi, 200, mime_of(file), data, len, head);
    free(data);
}

void gw_httpd_serve(gw_svc_t *s, struct lws *wsi, const gw_http_req_t *r)
{
    bool head = r->method.n == 4 && memcmp(r->method.p, "HEAD", 4) == 0;
    if (!head && !(r->method.n == 3 && memcmp(r->method.p, "GET", 3) == 0)) {
        text(wsi, 405, "only GET and HEAD\n", false);
        return;
    }
    char path[256];
    if (gw_http_decode(r->path, false, path, sizeof path) < 0) {
        text(wsi, 404, "not found\n", head);
        return;
    }
    if (strcmp(path, "/healthz") == 0) {
        text(wsi, 200, "ok\n", head);
    } else if (strcmp(path, "/readyz") == 0) {
        if (atomic_load(&s->gw->draining))
            text(wsi, 503, "draining\n", head);
        else if (gw_ready(s->gw))
            text(wsi, 200, "ready\n", head);
        else
            text(wsi, 503, "no API node connected\n", head);
    } else if (strcmp(path, "/metrics") == 0) {
        buf_t b = BUF_INIT;
        if (metrics_render(&b) < 0)
            text(wsi, 500, "out of memory\n", head);
        else
            gw_httpd_reply(wsi, 200, "text/plain; version=0.0.4; charset=utf-8", b.data, b.len,
                           head);
        buf_free(&b);
    } else if (strcmp(path, WS_PATH) == 0) {
        text(wsi, 400, "WebSocket upgrade required\n", head);
    } else {
        serve_static(wsi, path, head);
    }
}
