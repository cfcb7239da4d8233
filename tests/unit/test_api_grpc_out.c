/* test_api_grpc_out.c: a gRPC connection's gathered output (api/grpc_out.h): c->out's bytes
 * and chunks referred to among them leave in order, through a socket that takes a few bytes
 * at a time (every partial writev, the cursor inside a chunk and between two chunks at the
 * same position), each chunk freed once written and the rest at reset. */
#include <fcntl.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../../api/grpc_internal.h"
#include "test.h"

static chunk_t *chunk_of(const char *text, size_t off)
{
    chunk_t *ch = calloc(1, sizeof *ch);
    ch->len = strlen(text);
    ch->data = malloc(ch->len);
    memcpy(ch->data, text, ch->len);
    ch->off = off;
    return ch;
}

/* Sends everything through sv[0] (non-blocking, small buffer) while reading sv[1]. */
static void drain(gconn_t *c, int rd, buf_t *got)
{
    char why[TLS_SERVER_ERR_LEN];
    uint8_t tmp[7]; /* the reader takes 7 bytes at a time: the writer waits often */
    for (int rounds = 0; gout_pending(c) && rounds < 100000; rounds++) {
        ssize_t w = gout_send(c, why);
        REQUIRE(w > 0 || w == SOCKIO_AGAIN);
        ssize_t r = read(rd, tmp, sizeof tmp);
        if (r > 0)
            buf_append(got, tmp, (size_t)r);
    }
    CHECK_EQ(gout_pending(c), 0);
    ssize_t r;
    while ((r = read(rd, tmp, sizeof tmp)) > 0)
        buf_append(got, tmp, (size_t)r);
}

static void test_bytes_and_refs_leave_in_order(void)
{
    int sv[2];
    REQUIRE(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
    int small = 4096;
    setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &small, sizeof small);
    fcntl(sv[0], F_SETFL, O_NONBLOCK);
    fcntl(sv[1], F_SETFL, O_NONBLOCK);
    gconn_t *c = calloc(1, sizeof *c);
    c->io.fd = sv[0];
    /* "<hd1>" A B "<hd2>" C (C from offset 3) "<tail>", with a long chunk to make writes
     * partial inside it */
    char *big = malloc(200001);
    for (int i = 0; i < 200000; i++)
        big[i] = (char)('a' + i % 26);
    big[200000] = 0;
    buf_append(&c->out, "<hd1>", 5);
    REQUIRE(gout_ref(c, 5, chunk_of("AAAA", 0)) == 0);
    REQUIRE(gout_ref(c, 5, chunk_of(big, 0)) == 0); /* two refs at one position */
    buf_append(&c->out, "<hd2>", 5);
    REQUIRE(gout_ref(c, 10, chunk_of("xxxCCC", 3)) == 0);
    buf_append(&c->out, "<tail>", 6);
    CHECK_EQ(gout_pending(c), 5 + 4 + 200000 + 5 + 3 + 6);
    buf_t got = BUF_INIT;
    drain(c, sv[1], &got);
    buf_t want = BUF_INIT;
    buf_append(&want, "<hd1>AAAA", 9);
    buf_append(&want, big, 200000);
    buf_append(&want, "<hd2>CCC<tail>", 14);
    CHECK_EQ(got.len, want.len);
    CHECK(got.len == want.len && memcmp(got.data, want.data, want.len) == 0);
    CHECK_EQ(c->ref_done, 3); /* each chunk freed once written (LeakSanitizer: none left) */
    gout_reset(c);
    CHECK_EQ(c->nrefs, 0);
    CHECK_EQ(c->out.len, 0);
    /* without refs: one plain send of c->out */
    buf_append(&c->out, "plain", 5);
    buf_reset(&got);
    drain(c, sv[1], &got);
    CHECK(got.len == 5 && memcmp(got.data, "plain", 5) == 0);
    gout_reset(c);
    /* reset with refs not written frees their chunks (LeakSanitizer) */
    REQUIRE(gout_ref(c, 0, chunk_of("never sent", 0)) == 0);
    gout_reset(c);
    CHECK_EQ(gout_pending(c), 0);
    buf_free(&c->out);
    free(c->refs);
    free(c);
    free(big);
    buf_free(&got);
    buf_free(&want);
    close(sv[0]);
    close(sv[1]);
}

static void test_peer_gone_is_reported(void)
{
    int sv[2];
    REQUIRE(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
    close(sv[1]);
    gconn_t *c = calloc(1, sizeof *c);
    c->io.fd = sv[0];
    buf_append(&c->out, "hd", 2);
    REQUIRE(gout_ref(c, 2, chunk_of("data", 0)) == 0);
    char why[TLS_SERVER_ERR_LEN] = "";
    CHECK_EQ(gout_send(c, why), SOCKIO_CLOSED);
    CHECK(why[0] != 0);
    gout_reset(c);
    buf_free(&c->out);
    free(c->refs);
    free(c);
    close(sv[0]);
}

int main(void)
{
    RUN(test_bytes_and_refs_leave_in_order);
    RUN(test_peer_gone_is_reported);
    return TEST_REPORT();
}
