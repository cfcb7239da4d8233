/* tlspolicy.c: the wss:// policy (see tlspolicy.h). Main thread. */
#include "tlspolicy.h"

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <stdint.h>
#include <string.h>

/* The first queued OpenSSL error as text after `what`; clears the queue. */
static void ossl_err(char *err, size_t errlen, const char *what)
{
    unsigned long e = ERR_get_error();
    char buf[200] = "";
    if (e && ERR_SYSTEM_ERROR(e))
        snprintf(buf, sizeof buf, "%s", strerror((int)ERR_GET_REASON(e))); /* missing file */
    else if (e)
        ERR_error_string_n(e, buf, sizeof buf);
    snprintf(err, errlen, "%s%s%s", what, *buf ? ": " : "", buf);
    ERR_clear_error();
}

long gw_tls_options(const char *min_version)
{
    long o = SSL_OP_NO_SSLv3 | SSL_OP_NO_TLSv1 | SSL_OP_NO_TLSv1_1 | SSL_OP_NO_COMPRESSION |
             SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE;
    if (strcmp(min_version, "1.3") == 0)
        o |= SSL_OP_NO_TLSv1_2;
    return o;
}

int gw_tls_check(const char *cert, const char *key, const char *min_version, const char *ciphers,
                 char *err, size_t errlen)
{
    int rc = -1;
    char what[600];
    ERR_clear_error();
    if (strcmp(min_version, "1.2") != 0 && strcmp(min_version, "1.3") != 0) {
        snprintf(err, errlen, "--tls-min-version: '%s' (1.2 or 1.3)", min_version);
        return -1;
    }
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx) {
        ossl_err(err, errlen, "SSL_CTX_new");
        return -1;
    }
    SSL_CTX_set_options(ctx, (uint64_t)gw_tls_options(min_version));
    if (SSL_CTX_set_cipher_list(ctx, ciphers) != 1) {
        snprintf(what, sizeof what, "--tls-ciphers: no usable cipher in '%.200s'", ciphers);
        ossl_err(err, errlen, what);
        goto out;
    }
    if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1) {
        snprintf(what, sizeof what, "--tls-cert: cannot load a PEM certificate from '%.200s'",
                 cert);
        ossl_err(err, errlen, what);
        goto out;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1) {
        /* (OpenSSL 3 already compares it with the certificate here: "key values mismatch") */
        snprintf(what, sizeof what, "--tls-key: cannot use the PEM private key in '%.200s'",
                 key);
        ossl_err(err, errlen, what);
        goto out;
    }
    if (SSL_CTX_check_private_key(ctx) != 1) {
        ossl_err(err, errlen, "--tls-key does not match --tls-cert");
        goto out;
    }
    rc = 0;
out:
    SSL_CTX_free(ctx);
    return rc;
}
