/* test_gw_pausewatch.c: the TCP-state check pausewatch uses on paused clients: an established
 * loopback connection is not gone, with unread data too; a peer's FIN (CLOSE_WAIT) and RST
 * (CLOSE) are gone, whatever is left unread; a socket that is not TCP is never gone. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../../gateway/pausewatch.h"
#include "test.h"

/* A connected loopback pair: *ours is the accepted side (the gateway's), *peer the client. */
static int tcp_pair(int *ours, int *peer)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t al = sizeof a;
    int l = socket(AF_INET, SOCK_STREAM, 0);
    if (l < 0 || bind(l, (struct sockaddr *)&a, sizeof a) < 0 || listen(l, 1) < 0 ||
        getsockname(l, (struct sockaddr *)&a, &al) < 0)
        return -1;
    *peer = socket(AF_INET, SOCK_STREAM, 0);
    if (*peer < 0 || connect(*peer, (struct sockaddr *)&a, sizeof a) < 0)
        return -1;
    *ours = accept(l, NULL, NULL);
    close(l);
    return *ours < 0 ? -1 : 0;
}

/* Up to ~1 s for the kernel to apply what the peer did (loopback: at once in practice). */
static bool gone_soon(int fd)
{
    for (int i = 0; i < 100; i++) {
        if (gw_pausewatch_peer_gone(fd))
            return true;
        usleep(10000);
    }
    return false;
}

static void test_established_with_unread_data_is_not_gone(void)
{
    int ours, peer;
    REQUIRE(tcp_pair(&ours, &peer) == 0);
    CHECK(!gw_pausewatch_peer_gone(ours));
    CHECK(write(peer, "unread", 6) == 6);
    usleep(20000);
    CHECK(!gw_pausewatch_peer_gone(ours));
    close(ours);
    close(peer);
}

static void test_fin_is_gone(void)
{
    int ours, peer;
    REQUIRE(tcp_pair(&ours, &peer) == 0);
    CHECK(write(peer, "left behind", 11) == 11);
    close(peer); /* FIN after the data */
    CHECK(gone_soon(ours));
    close(ours);
}

static void test_rst_is_gone(void)
{
    int ours, peer;
    REQUIRE(tcp_pair(&ours, &peer) == 0);
    struct linger lg = {1, 0};
    CHECK(setsockopt(peer, SOL_SOCKET, SO_LINGER, &lg, sizeof lg) == 0);
    close(peer); /* RST */
    CHECK(gone_soon(ours));
    close(ours);
}

static void test_half_close_by_peer_is_gone(void)
{
    int ours, peer;
    REQUIRE(tcp_pair(&ours, &peer) == 0);
    CHECK(shutdown(peer, SHUT_WR) == 0); /* a WebSocket client does not half-close */
    CHECK(gone_soon(ours));
    close(ours);
    close(peer);
}

static void test_not_tcp_is_never_gone(void)
{
    int sv[2];
    REQUIRE(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
    close(sv[1]);
    CHECK(!gw_pausewatch_peer_gone(sv[0]));
    close(sv[0]);
    CHECK(!gw_pausewatch_peer_gone(-1));
}

int main(void)
{
    RUN(test_established_with_unread_data_is_not_gone);
    RUN(test_fin_is_gone);
    RUN(test_rst_is_gone);
    RUN(test_half_close_by_peer_is_gone);
    RUN(test_not_tcp_is_never_gone);
    return TEST_REPORT();
}
