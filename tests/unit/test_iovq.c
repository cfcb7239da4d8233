/* test_iovq.c: the output queue of copied and referred bytes (common/iovq.h): bytes and refs
 * leave in order through a socket that takes a few bytes at a time (partial writes inside a
 * ref, between two refs at one position, inside the copied bytes), owners released once their
 * bytes are written or dropped, materialize copies what is ahead of the cursor. */
#include <fcntl.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include "iovq.h"
#include "test.h"

static int released[8];

static void release(void *owner)
{
    released[*(int *)owner]++;
}

/* Sends everything through wr (non-blocking, small buffer) while reading rd. */
static void drain(iovq_t *q, int wr, int rd, buf_t *got)
{
    uint8_t tmp[7]; /* the reader takes 7 bytes at a time: the writer waits often */
    for (int rounds = 0; iovq_pending(q) && rounds < 1000000; rounds++) {
        struct iovec iov[3]; /* few iovecs: several calls per pass over the queue */
        int n = iovq_iov(q, iov, 3);
        REQUIRE(n > 0);
        ssize_t w = writev(wr, iov, n);
        if (w > 0)
            iovq_advance(q, (size_t)w);
        ssize_t r = read(rd, tmp, sizeof tmp);
        if (r > 0)
            buf_append(got, tmp, (size_t)r);
    }
    CHECK_EQ(iovq_pending(q), 0);
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
    static int ids[] = {0, 1, 2, 3};
    memset(released, 0, sizeof released);
    iovq_t q = {.release = release};
    uint8_t *big = malloc(200000);
    for (int i = 0; i < 200000; i++)
        big[i] = (uint8_t)('a' + i % 26);
    /* "<hd1>" A big "<hd2>" C "<tail>": two refs at one position, a ref without owner */
    buf_append(&q.buf, "<hd1>", 5);
    REQUIRE(iovq_ref(&q, 5, (const uint8_t *)"AAAA", 4, &ids[0]) == 0);
    REQUIRE(iovq_ref(&q, 5, big, 200000, &ids[1]) == 0);
    buf_append(&q.buf, "<hd2>", 5);
    REQUIRE(iovq_ref(&q, 10, (const uint8_t *)"CCC", 3, NULL) == 0);
    buf_append(&q.buf, "<tail>", 6);
    CHECK_EQ(iovq_pending(&q), 5 + 4 + 200000 + 5 + 3 + 6);
    buf_t got = BUF_INIT, want = BUF_INIT;
    drain(&q, sv[0], sv[1], &got);
    buf_append(&want, "<hd1>AAAA", 9);
    buf_append(&want, big, 200000);
    buf_append(&want, "<hd2>CCC<tail>", 14);
    CHECK_EQ(got.len, want.len);
    CHECK(got.len == want.len && memcmp(got.data, want.data, want.len) == 0);
    CHECK_EQ(released[0], 1); /* each owner released once, when written */
    CHECK_EQ(released[1], 1);
    CHECK_EQ(q.nrefs, 0); /* all behind: plain bytes again */
    /* more after the first lot: positions go on from the buffer's length */
    iovq_reset(&q, 1 << 20);
    buf_append(&q.buf, "x", 1);
    REQUIRE(iovq_ref(&q, 1, (const uint8_t *)"yy", 2, &ids[2]) == 0);
    buf_reset(&got);
    drain(&q, sv[0], sv[1], &got);
    CHECK(got.len == 3 && memcmp(got.data, "xyy", 3) == 0);
    CHECK_EQ(released[2], 1);
    /* reset drops what is ahead of the cursor and releases its owners */
    iovq_reset(&q, 1 << 20);
    buf_append(&q.buf, "hd", 2);
    REQUIRE(iovq_ref(&q, 2, (const uint8_t *)"never", 5, &ids[3]) == 0);
    iovq_reset(&q, 1 << 20);
    CHECK_EQ(released[3], 1);
    CHECK_EQ(iovq_pending(&q), 0);
    iovq_free(&q);
    free(big);
    buf_free(&got);
    buf_free(&want);
    close(sv[0]);
    close(sv[1]);
}

/* materialize: what is ahead of the cursor becomes the queue's own bytes, in order (the
 * referred memory may change afterwards), owners released; a partly sent ref keeps its rest */
static void test_materialize(void)
{
    static int ids[] = {4, 5};
    memset(released, 0, sizeof released);
    iovq_t q = {.release = release};
    char a[] = "refAAAA", b[] = "refBB";
    buf_append(&q.buf, "h1", 2);
    REQUIRE(iovq_ref(&q, 2, (const uint8_t *)a, 7, &ids[0]) == 0);
    buf_append(&q.buf, "h2", 2);
    REQUIRE(iovq_ref(&q, 4, (const uint8_t *)b, 5, &ids[1]) == 0);
    buf_append(&q.buf, "end", 3);
    iovq_advance(&q, 5); /* "h1" and "ref" went out */
    REQUIRE(iovq_materialize(&q) == 0);
    CHECK_EQ(released[4], 1);
    CHECK_EQ(released[5], 1);
    CHECK_EQ(q.nrefs, 0);
    memset(a, '#', sizeof a - 1); /* the batches may now be freed or renumbered */
    memset(b, '#', sizeof b - 1);
    CHECK_EQ(iovq_pending(&q), 4 + 2 + 5 + 3);
    struct iovec iov[4];
    CHECK_EQ(iovq_iov(&q, iov, 4), 1);
    CHECK(iov[0].iov_len == 14 && memcmp(iov[0].iov_base, "AAAAh2refBBend", 14) == 0);
    iovq_free(&q);
}

int main(void)
{
    RUN(test_bytes_and_refs_leave_in_order);
    RUN(test_materialize);
    return TEST_REPORT();
}
