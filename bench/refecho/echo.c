/* echo.c: ws-refecho's service threads: lws context on a libuv loop per thread, accept on the
 * thread's own SO_REUSEPORT socket, and the echo protocol (see refecho.h). Every function but
 * refecho_listen/refecho_svc_start/refecho_svc_stop runs on the service thread. */
#include <errno.h>
#include <libwebsockets.h>
#include <netdb.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "listen.h"
#include "log.h"
#include "raw.h"
#include "refecho.h"

#define WRITES_PER_WRITEABLE 16
#define ACCEPT_BURST 64
#define MAX_MESSAGE (16 * 1024 * 1024)

refecho_cfg_t refecho_cfg;

typedef struct msg {
    struct msg *next;
    uint32_t len;
    uint32_t cap; /* payload capacity while reassembling */
    uint8_t binary;
    uint8_t data[]; /* LWS_PRE + payload */
} msg_t;

typedef struct sess {
    msg_t *head, *tail; /* replies waiting for WRITEABLE, oldest first */
    msg_t *rx;          /* message being reassembled from fragments */
    uint64_t queued;    /* payload bytes in head..tail */
    uint8_t paused;     /* rx flow control off */
} sess_t;

static refecho_svc_t *svc_of(struct lws *wsi)
{
    return lws_context_user(lws_get_context(wsi));
}

static void sess_free(sess_t *s)
{
    for (msg_t *m = s->head; m;) {
        msg_t *n = m->next;
        free(m);
        m = n;
    }
    free(s->rx);
    memset(s, 0, sizeof *s);
}

static int close_with(struct lws *wsi, int code, const char *why)
{
    lws_close_reason(wsi, (enum lws_close_status)code, (unsigned char *)why, strlen(why));
    return -1;
}

static void enqueue(struct lws *wsi, sess_t *s, msg_t *m)
{
    m->next = NULL;
    if (s->tail)
        s->tail->next = m;
    else
        s->head = m;
    s->tail = m;
    s->queued += m->len;
    if (!s->paused && s->queued > (uint64_t)refecho_cfg.max_queue) {
        /* the client does not read its echoes: stop reading it until they drain */
        s->paused = 1;
        lws_rx_flow_control(wsi, 0);
    }
    lws_callback_on_writable(wsi);
}

static int on_receive(struct lws *wsi, sess_t *s, const void *in, size_t len)
{
    bool final = lws_is_final_fragment(wsi);
    if (!s->rx && final) { /* whole message in one callback */
        msg_t *m = malloc(sizeof *m + LWS_PRE + len);
        if (!m)
            return close_with(wsi, 1011, "out of memory");
        m->len = (uint32_t)len;
        m->binary = (uint8_t)lws_frame_is_binary(wsi);
        memcpy(m->data + LWS_PRE, in, len);
        enqueue(wsi, s, m);
        atomic_fetch_add_explicit(&svc_of(wsi)->messages, 1, memory_order_relaxed);
        return 0;
    }
    msg_t *m = s->rx;
    size_t have = m ? m->len : 0;
    if (have + len > MAX_MESSAGE)
        return close_with(wsi, 1009, "message too big");
    if (!m || have + len > m->cap) {
        size_t cap = have + len + lws_remaining_packet_payload(wsi);
        if (m && cap < (size_t)m->cap * 2)
            cap = (size_t)m->cap * 2;
        msg_t *nm = realloc(m, sizeof *nm + LWS_PRE + cap);
        if (!nm)
            return close_with(wsi, 1011, "out of memory");
        if (!m) {
            nm->len = 0;
            nm->binary = (uint8_t)lws_frame_is_binary(wsi);
        }
        nm->cap = (uint32_t)cap;
        s->rx = m = nm;
    }
    memcpy(m->data + LWS_PRE + m->len, in, len);
    m->len += (uint32_t)len;
    if (final) {
        s->rx = NULL;
        enqueue(wsi, s, m);
        atomic_fetch_add_explicit(&svc_of(wsi)->messages, 1, memory_order_relaxed);
    }
    return 0;
}

static int on_writeable(struct lws *wsi, sess_t *s)
{
    for (int n = 0; n < WRITES_PER_WRITEABLE && s->head; n++) {
        msg_t *m = s->head;
        int w = lws_write(wsi, m->data + LWS_PRE, m->len,
                          m->binary ? LWS_WRITE_BINARY : LWS_WRITE_TEXT);
        if (w < (int)m->len)
            return -1;
        s->head = m->next;
        if (!s->head)
            s->tail = NULL;
        s->queued -= m->len;
        free(m);
        if (lws_send_pipe_choked(wsi))
            break;
    }
    if (s->paused && s->queued <= (uint64_t)refecho_cfg.max_queue / 2) {
        s->paused = 0;
        lws_rx_flow_control(wsi, 1);
    }
    if (s->head)
        lws_callback_on_writable(wsi);
    return 0;
}

static void on_stop_timer(uv_timer_t *t);

static int echo_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                         size_t len)
{
    sess_t *s = user;
    switch (reason) {
    case LWS_CALLBACK_ESTABLISHED:
        memset(s, 0, sizeof *s);
        return 0;
    case LWS_CALLBACK_RECEIVE:
        return on_receive(wsi, s, in, len);
    case LWS_CALLBACK_SERVER_WRITEABLE:
        return on_writeable(wsi, s);
    case LWS_CALLBACK_CLOSED:
        sess_free(s);
        return 0;
    case LWS_CALLBACK_EVENT_WAIT_CANCELLED: {
        refecho_svc_t *svc = lws_context_user(lws_get_context(wsi));
        if (atomic_load(&svc->stop_req) == 1) {
            atomic_store(&svc->stop_req, 2);
            /* destroy the context from a timer, outside any lws callback */
            uv_timer_start(&svc->stop_timer, on_stop_timer, 0, 0);
        }
        return 0;
    }
    default:
        return lws_callback_http_dummy(wsi, reason, user, in, len);
    }
}

static const struct lws_protocols protocols[] = {
    /* rx_buffer_size 512 and tx_packet_size 256 KiB as in the gateway (without the latter lws
     * caps every send at rx_buffer_size + 20 bytes) */
    {"echo", echo_callback, sizeof(sess_t), 512, 0, NULL, 256 * 1024},
    /* --raw: lws raw sockets, the upgrade and the framing done by raw.c */
    {"raw-echo", refecho_raw_callback, sizeof(raw_sess_t), 0, 0, NULL, 0},
    {NULL, NULL, 0, 0, 0, NULL, 0},
};

int refecho_listen(const char *host, int port, char *err, size_t errlen)
{
    return net_listen(host, port, true, err, errlen); /* own socket per thread, one port */
}

static void on_accept_timer(uv_timer_t *t);

static void on_listen(uv_poll_t *h, int status, int events)
{
    refecho_svc_t *s = h->data;
    (void)events;
    if (status < 0)
        return;
    for (int i = 0; i < ACCEPT_BURST; i++) {
        int fd = accept4(s->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EMFILE || errno == ENFILE) {
                /* out of descriptors: pause accepting instead of spinning (FIELD-NOTES) */
                log_rl_warn("accept paused: out of file descriptors", "thread=%d", s->idx);
                uv_poll_stop(&s->listen_poll);
                uv_timer_start(&s->stop_timer, on_accept_timer, 100, 0);
            } else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
                log_rl_warn("accept failed", "thread=%d errno=%d", s->idx, errno);
            }
            return;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        struct lws *w;
        if (refecho_cfg.raw) {
            lws_sock_file_fd_type d = {.sockfd = fd};
            w = lws_adopt_descriptor_vhost(s->vh, LWS_ADOPT_SOCKET, d, "raw-echo", NULL);
        } else {
            w = lws_adopt_socket_vhost(s->vh, fd);
        }
        if (!w) {
            log_rl_warn("lws refused an accepted socket", "thread=%d fd=%d", s->idx, fd);
            close(fd);
            continue;
        }
        atomic_fetch_add_explicit(&s->accepted, 1, memory_order_relaxed);
    }
}

static void on_accept_timer(uv_timer_t *t)
{
    refecho_svc_t *s = t->data;
    if (atomic_load(&s->stop_req) == 0)
        uv_poll_start(&s->listen_poll, UV_READABLE, on_listen);
}

static void on_stop_timer(uv_timer_t *t)
{
    refecho_svc_t *s = t->data;
    if (atomic_load(&s->stop_req) == 0) { /* the accept back-off shares this timer */
        on_accept_timer(t);
        return;
    }
    uv_poll_stop(&s->listen_poll);
    uv_close((uv_handle_t *)&s->listen_poll, NULL);
    uv_close((uv_handle_t *)&s->stop_timer, NULL);
    close(s->listen_fd);
    s->listen_fd = -1;
    /* with a foreign loop lws closes its handles asynchronously; uv_run returns after */
    lws_context_destroy(s->ctx);
}

static void *svc_main(void *arg)
{
    refecho_svc_t *s = arg;
    char name[16];
    snprintf(name, sizeof name, "refecho-%d", s->idx);
    pthread_setname_np(pthread_self(), name);
    if (uv_loop_init(&s->loop) != 0) {
        log_error("uv_loop_init failed", "thread=%d", s->idx);
        return NULL;
    }
    void *loops[1] = {&s->loop};
    struct lws_context_creation_info info;
    memset(&info, 0, sizeof info);
    info.port = CONTEXT_PORT_NO_LISTEN_SERVER;
    info.protocols = protocols;
    info.options = LWS_SERVER_OPTION_LIBUV | LWS_SERVER_OPTION_UV_NO_SIGSEGV_SIGFPE_SPIN;
    info.foreign_loops = loops;
    info.user = s;
    info.max_http_header_pool = 64;
    info.timeout_secs = 10;
    info.pt_serv_buf_size = 16384;
    info.vhost_name = "default";
    /* no info.extensions: permessage-deflate stays off */
    struct lws_context *ctx = lws_create_context(&info);
    /* published for refecho_svc_stop (main thread) */
    __atomic_store_n(&s->ctx, ctx, __ATOMIC_SEQ_CST);
    if (!ctx) {
        log_error("lws_create_context failed", "thread=%d", s->idx);
        goto out_loop;
    }
    s->vh = lws_get_vhost_by_name(s->ctx, "default");
    uv_poll_init(&s->loop, &s->listen_poll, s->listen_fd);
    s->listen_poll.data = s;
    uv_timer_init(&s->loop, &s->stop_timer);
    s->stop_timer.data = s;
    if (!s->vh) {
        log_error("lws vhost missing", "thread=%d", s->idx);
        atomic_store(&s->stop_req, 2);
        uv_timer_start(&s->stop_timer, on_stop_timer, 0, 0);
    } else {
        uv_poll_start(&s->listen_poll, UV_READABLE, on_listen);
        if (atomic_load(&s->stop_req) == 1) { /* asked to stop before the context existed */
            atomic_store(&s->stop_req, 2);
            uv_timer_start(&s->stop_timer, on_stop_timer, 0, 0);
        }
    }
    uv_run(&s->loop, UV_RUN_DEFAULT);
    /* the second destroy after the loop ended completes lws' foreign-loop teardown */
    lws_context_destroy(s->ctx);
    uv_run(&s->loop, UV_RUN_DEFAULT);
out_loop:
    if (uv_loop_close(&s->loop) != 0)
        log_warn("uv loop closed with live handles", "thread=%d", s->idx);
    return NULL;
}

int refecho_svc_start(refecho_svc_t *s)
{
    atomic_init(&s->stop_req, 0);
    int rv = pthread_create(&s->tid, NULL, svc_main, s);
    return rv ? -rv : 0;
}

void refecho_svc_stop(refecho_svc_t *s)
{
    int expect = 0;
    if (!atomic_compare_exchange_strong(&s->stop_req, &expect, 1))
        return;
    /* lws_cancel_service is the one lws call that is safe off the service thread; the
     * context may not exist yet (the thread then sees stop_req itself) */
    struct lws_context *ctx = __atomic_load_n(&s->ctx, __ATOMIC_SEQ_CST);
    if (ctx)
        lws_cancel_service(ctx);
}

static void lws_log_emit(int level, const char *line)
{
    char msg[512];
    size_t n = strlen(line);
    while (n && (line[n - 1] == '\n' || line[n - 1] == '\r'))
        n--;
    if (n >= sizeof msg)
        n = sizeof msg - 1;
    memcpy(msg, line, n);
    msg[n] = 0;
    char q[600];
    if (level & LLL_ERR)
        log_error("lws", "detail=%s", log_quote(q, sizeof q, msg));
    else
        log_warn("lws", "detail=%s", log_quote(q, sizeof q, msg));
}

void refecho_log_init(void)
{
    lws_set_log_level(LLL_ERR | LLL_WARN, lws_log_emit);
}
