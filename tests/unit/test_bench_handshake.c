/* test_bench_handshake.c: ws-bench's RFC 6455 §4.1 client handshake: the §1.3 accept-key
 * example, random keys, the request, and checking responses (partial, wrong accept, other
 * statuses, missing headers, unasked-for extensions, frames behind the header). */
#include <openssl/evp.h>

#include "ws_handshake.h"
#include "test.h"

static void test_accept_rfc_example(void)
{
    char out[HS_ACCEPT_LEN + 1];
    hs_accept("dGhlIHNhbXBsZSBub25jZQ==", out); /* RFC 6455 §1.3 */
    CHECK_STR(out, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
}

static void test_key_random_and_16_bytes(void)
{
    char a[HS_KEY_LEN + 1], b[HS_KEY_LEN + 1];
    CHECK_EQ(hs_key(a), 0);
    CHECK_EQ(hs_key(b), 0);
    CHECK_EQ(strlen(a), 24);
    CHECK(strcmp(a, b) != 0);
    unsigned char raw[32];
    int n = EVP_DecodeBlock(raw, (const unsigned char *)a, 24);
    CHECK_EQ(n, 18); /* 16 bytes + 2 padding bytes counted by EVP_DecodeBlock */
    CHECK(a[22] == '=' && a[23] == '=');
}

static void test_request(void)
{
    char buf[512];
    size_t n = hs_request(buf, sizeof buf, "127.0.0.1:8080", "/gateway/ws?user=u7",
                          "dGhlIHNhbXBsZSBub25jZQ==", "X-Test: 1\r\n");
    REQUIRE(n > 0);
    CHECK_EQ(n, strlen(buf));
    CHECK(strncmp(buf, "GET /gateway/ws?user=u7 HTTP/1.1\r\n", 34) == 0);
    CHECK(strstr(buf, "\r\nHost: 127.0.0.1:8080\r\n") != NULL);
    CHECK(strstr(buf, "\r\nUpgrade: websocket\r\n") != NULL);
    CHECK(strstr(buf, "\r\nConnection: Upgrade\r\n") != NULL);
    CHECK(strstr(buf, "\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n") != NULL);
    CHECK(strstr(buf, "\r\nSec-WebSocket-Version: 13\r\n") != NULL);
    CHECK(strstr(buf, "\r\nX-Test: 1\r\n\r\n") != NULL);
    CHECK_EQ(hs_request(buf, 40, "h:1", "/", "k", NULL), 0);
}

static const char *ACC = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

static void test_response_ok_and_partial(void)
{
    const char *resp = "HTTP/1.1 101 Switching Protocols\r\n"
                       "upgrade: WebSocket\r\n"
                       "CONNECTION: keep-alive, Upgrade\r\n"
                       "Sec-WebSocket-Accept:   s3pPLMBiTxaQ9kYGzzhZRbK+xOo=  \r\n"
                       "Server: test\r\n"
                       "\r\n"
                       "\x81\x02hi";
    size_t full = strlen(resp);
    size_t hdr_expected = full - 4;
    int status;
    size_t hdr = 0;
    CHECK_EQ(hs_response(resp, full, ACC, &status, &hdr), HS_OK);
    CHECK_EQ(status, 101);
    CHECK_EQ(hdr, hdr_expected);
    for (size_t n = 0; n < hdr_expected; n++)
        CHECK_EQ(hs_response(resp, n, ACC, &status, &hdr), HS_AGAIN);
}

static void test_response_errors(void)
{
    int status;
    size_t hdr;
    const char *wrong = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                        "Connection: Upgrade\r\nSec-WebSocket-Accept: AAAAAAAAAAAAAAAAAAAAAAAAAAA=\r\n\r\n";
    CHECK_EQ(hs_response(wrong, strlen(wrong), ACC, &status, &hdr), HS_ERR_INVALID);
    const char *noup = "HTTP/1.1 101 Switching Protocols\r\n"
                       "Connection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n";
    CHECK_EQ(hs_response(noup, strlen(noup), ACC, &status, &hdr), HS_ERR_INVALID);
    const char *noconn = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                         "Connection: close\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n";
    CHECK_EQ(hs_response(noconn, strlen(noconn), ACC, &status, &hdr), HS_ERR_INVALID);
    const char *ext = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                      "Connection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
                      "Sec-WebSocket-Extensions: permessage-deflate\r\n\r\n";
    CHECK_EQ(hs_response(ext, strlen(ext), ACC, &status, &hdr), HS_ERR_INVALID);
    const char *nf = "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n";
    CHECK_EQ(hs_response(nf, strlen(nf), ACC, &status, &hdr), HS_ERR_STATUS);
    CHECK_EQ(status, 503);
    const char *un = "HTTP/1.1 401 Unauthorized\r\n";
    CHECK_EQ(hs_response(un, strlen(un), ACC, &status, &hdr), HS_AGAIN);
    CHECK_EQ(status, 401); /* known as soon as the status line is complete */
    const char *junk = "SSH-2.0-OpenSSH\r\n\r\n";
    CHECK_EQ(hs_response(junk, strlen(junk), ACC, &status, &hdr), HS_ERR_INVALID);
    static char big[HS_MAX_RESPONSE + 10];
    memset(big, 'a', sizeof big);
    memcpy(big, "HTTP/1.1 101 OK\r\nX: ", 20);
    CHECK_EQ(hs_response(big, sizeof big, ACC, &status, &hdr), HS_ERR_TOO_LONG);
}

int main(void)
{
    RUN(test_accept_rfc_example);
    RUN(test_key_random_and_16_bytes);
    RUN(test_request);
    RUN(test_response_ok_and_partial);
    RUN(test_response_errors);
    return TEST_REPORT();
}
