/* redis_url.h: ws-api's --redis URL, parsed (no I/O).
 *
 *   redis://[[USER]:PASSWORD@]HOST[:PORT][/DB]
 *
 * HOST is a name, an IPv4 address or a bracketed IPv6 address ([::1]); PORT defaults to 6379,
 * DB to 0 (0..65535; Redis Cluster only has 0). USER and PASSWORD are percent-decoded (RFC
 * 3986 userinfo): with a password ws-api sends AUTH [USER] PASSWORD, Redis 6 ACL users
 * included. Nothing may follow the DB (no query string, no fragment).
 *
 * "rediss://" (TLS) is refused with a clear message: hiredis 0.14.1, the version Debian 12
 * ships, has no TLS (hiredis_ssl came with 1.0). Reach a remote Redis over a private network,
 * or through a local TLS tunnel (stunnel, spiped, a service mesh sidecar) at redis://127.0.0.1.
 *
 * Pure functions; any thread. */
#ifndef WSGW_API_REDIS_URL_H
#define WSGW_API_REDIS_URL_H

#include <stddef.h>

#define REDIS_URL_ERR_LEN 160
#define REDIS_URL_MAX 512

typedef struct redis_url {
    char host[256];     /* without brackets */
    int port;
    int db;
    char user[128];     /* "" when none */
    char password[256]; /* "" when none */
} redis_url_t;

/* redis_url_parse: fills out from url. Returns 0, or -1 with a message in err (which never
 * contains the password; out->password is cleared). */
int redis_url_parse(const char *url, redis_url_t *out, char err[REDIS_URL_ERR_LEN]);

/* redis_url_describe: "HOST:PORT/DB" (IPv6 in brackets), for logs: never the password. */
void redis_url_describe(const redis_url_t *u, char *out, size_t len);

#endif
