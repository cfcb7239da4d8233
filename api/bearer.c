/* bearer.c: constant-time bearer token checks (see bearer.h). */
#include "bearer.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <string.h>
#include <strings.h>

static int sha256(const void *p, size_t n, uint8_t out[32])
{
    unsigned int len = 0;
    if (EVP_Digest(p, n, out, &len, EVP_sha256(), NULL) != 1 || len != 32)
        return -1;
    return 0;
}

int bearer_init(bearer_t *b, const char *token)
{
    memset(b, 0, sizeof *b);
    if (!token || !*token)
        return 0;
    b->enabled = true;
    if (sha256(token, strlen(token), b->digest) < 0) {
        memset(b->digest, 0, sizeof b->digest);
        return -1;
    }
    return 0;
}

bearer_result_t bearer_check(const bearer_t *b, const char *authorization)
{
    if (!b->enabled)
        return BEARER_OK;
    const char *a = authorization;
    if (!a)
        return BEARER_MISSING;
    while (*a == ' ' || *a == '\t')
        a++;
    if (strncasecmp(a, "Bearer", 6) != 0 || (a[6] != ' ' && a[6] != '\t'))
        return BEARER_MISSING;
    a += 6;
    while (*a == ' ' || *a == '\t')
        a++;
    size_t n = strlen(a);
    while (n && (a[n - 1] == ' ' || a[n - 1] == '\t'))
        n--;
    if (n == 0)
        return BEARER_MISSING;
    uint8_t got[32];
    if (sha256(a, n, got) < 0)
        return BEARER_WRONG;
    return CRYPTO_memcmp(got, b->digest, sizeof got) == 0 ? BEARER_OK : BEARER_WRONG;
}

const char *bearer_result_name(bearer_result_t r)
{
    switch (r) {
    case BEARER_OK:
        return "ok";
    case BEARER_MISSING:
        return "missing";
    case BEARER_WRONG:
        return "wrong";
    }
    return "?";
}
