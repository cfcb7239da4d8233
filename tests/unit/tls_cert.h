/* tls_cert.h: what ws-api's TLS unit tests share (test_api_tls.c, test_api_tls_grpc.c): a
 * self-signed P-256 certificate for localhost/127.0.0.1 made with OpenSSL in a temporary
 * directory, and a client context that trusts it. Static: each test program has its own. */
#ifndef WSGW_TEST_TLS_CERT_H
#define WSGW_TEST_TLS_CERT_H

#include <fcntl.h>
#include <signal.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../api/wsapi_metrics.h"

static char cert_path[256], key_path[256], tmp_dir[128];

/* ---- test certificate ---------------------------------------------------------------------- */

static int make_cert(void)
{
    snprintf(tmp_dir, sizeof tmp_dir, "/tmp/wsgw-tls-test-XXXXXX");
    if (!mkdtemp(tmp_dir))
        return -1;
    snprintf(cert_path, sizeof cert_path, "%s/cert.pem", tmp_dir);
    snprintf(key_path, sizeof key_path, "%s/key.pem", tmp_dir);
    EVP_PKEY *pk = EVP_EC_gen("P-256");
    X509 *x = X509_new();
    if (!pk || !x)
        return -1;
    ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
    X509_gmtime_adj(X509_getm_notBefore(x), -60);
    X509_gmtime_adj(X509_getm_notAfter(x), 86400);
    X509_set_pubkey(x, pk);
    X509_NAME *name = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)"localhost", -1,
                               -1, 0);
    X509_set_issuer_name(x, name);
    X509V3_CTX v3;
    X509V3_set_ctx_nodb(&v3);
    X509V3_set_ctx(&v3, x, x, NULL, NULL, 0);
    X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, &v3, NID_subject_alt_name,
                                              "DNS:localhost,IP:127.0.0.1");
    if (!ext || !X509_add_ext(x, ext, -1))
        return -1;
    X509_EXTENSION_free(ext);
    if (!X509_sign(x, pk, EVP_sha256()))
        return -1;
    FILE *f = fopen(cert_path, "w");
    FILE *g = fopen(key_path, "w");
    int ok = f && g && PEM_write_X509(f, x) && PEM_write_PrivateKey(g, pk, NULL, NULL, 0, NULL, NULL);
    if (f)
        fclose(f);
    if (g)
        fclose(g);
    X509_free(x);
    EVP_PKEY_free(pk);
    return ok ? 0 : -1;
}

/* remove_cert: the files and directory make_cert made. */
static void remove_cert(void)
{
    unlink(cert_path);
    unlink(key_path);
    rmdir(tmp_dir);
}

static void set_nonblock(int fd)
{
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
}

static SSL_CTX *client_ctx(const char *alpn, int max_version)
{
    SSL_CTX *c = SSL_CTX_new(TLS_client_method());
    SSL_CTX_load_verify_locations(c, cert_path, NULL);
    SSL_CTX_set_verify(c, SSL_VERIFY_PEER, NULL);
    if (alpn) {
        unsigned char wire[32];
        size_t n = strlen(alpn);
        wire[0] = (unsigned char)n;
        memcpy(wire + 1, alpn, n);
        SSL_CTX_set_alpn_protos(c, wire, (unsigned int)n + 1);
    }
    if (max_version)
        SSL_CTX_set_max_proto_version(c, max_version);
    return c;
}

/* tls_test_init: what each test program does first (SIGPIPE ignored: a peer may close while
 * we write; ws-api's metrics; the certificate). Returns 0, or -1 after saying why. */
static int tls_test_init(void)
{
    signal(SIGPIPE, SIG_IGN);
    wsapi_metrics_init();
    if (make_cert() < 0) {
        fprintf(stderr, "cannot make a test certificate\n");
        return -1;
    }
    return 0;
}

#endif
