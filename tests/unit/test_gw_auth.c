/* test_gw_auth.c: HS256 JWT checks (gateway/auth.c) and the Origin/address admission. */
#include <openssl/hmac.h>
#include <stdlib.h>

#include "../../gateway/admit.h"
#include "../../gateway/auth.h"
#include "test.h"

static void b64url(const unsigned char *in, size_t n, char *out)
{
    static const char a[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    size_t o = 0;
    for (size_t i = 0; i < n; i += 3) {
        unsigned v = in[i] << 16 | (i + 1 < n ? in[i + 1] << 8 : 0) | (i + 2 < n ? in[i + 2] : 0);
        out[o++] = a[v >> 18 & 63];
        out[o++] = a[v >> 12 & 63];
        if (i + 1 < n)
            out[o++] = a[v >> 6 & 63];
        if (i + 2 < n)
            out[o++] = a[v & 63];
    }
    out[o] = 0;
}

/* header and payload JSON -> token signed with HMAC-SHA256(secret) (sign=0: empty signature) */
static char *make(const char *header, const char *payload, const char *secret, int sign)
{
    static char tok[2048];
    char h[512], p[1024];
    b64url((const unsigned char *)header, strlen(header), h);
    b64url((const unsigned char *)payload, strlen(payload), p);
    int n = snprintf(tok, sizeof tok, "%s.%s.", h, p);
    if (sign) {
        unsigned char mac[32];
        unsigned ml = 0;
        HMAC(EVP_sha256(), secret, (int)strlen(secret), (unsigned char *)tok, (size_t)n - 1, mac,
             &ml);
        b64url(mac, ml, tok + n);
    }
    return tok;
}

/* gw_admit_origin on a C string */
static bool origin_ok(const char *o, bool require)
{
    return gw_admit_origin(o, o ? strlen(o) : 0, require);
}

#define HS "{\"alg\":\"HS256\",\"typ\":\"JWT\"}"
#define NOW 1800000000

static void test_valid_token_gives_sub(void)
{
    char user[64];
    CHECK_EQ(gw_auth_check(make(HS, "{\"sub\":\"alice\",\"exp\":1800000060}", "k", 1), "k", NOW, 0,
                           user, sizeof user), GW_AUTH_OK);
    CHECK_STR(user, "alice");
    /* no exp: valid (RFC 7519: optional) */
    CHECK_EQ(gw_auth_check(make(HS, "{\"sub\":\"bob\"}", "k", 1), "k", NOW, 0, user, sizeof user),
             GW_AUTH_OK);
}

static void test_refusals(void)
{
    char user[8];
    CHECK_EQ(gw_auth_check(NULL, "k", NOW, 0, user, sizeof user), GW_AUTH_MISSING);
    CHECK_EQ(gw_auth_check("", "k", NOW, 0, user, sizeof user), GW_AUTH_MISSING);
    CHECK_EQ(gw_auth_check("nodots", "k", NOW, 0, user, sizeof user), GW_AUTH_INVALID);
    CHECK_EQ(gw_auth_check(make(HS, "{\"sub\":\"a\"}", "other", 1), "k", NOW, 0, user, sizeof user),
             GW_AUTH_INVALID);
    CHECK_EQ(gw_auth_check(make(HS, "{\"sub\":\"a\",\"exp\":1799999999}", "k", 1), "k", NOW, 0, user,
                           sizeof user), GW_AUTH_EXPIRED);
    CHECK_EQ(gw_auth_check(make(HS, "{\"sub\":\"a\",\"exp\":1800000000}", "k", 1), "k", NOW, 0, user,
                           sizeof user), GW_AUTH_EXPIRED); /* exp == now: expired */
    CHECK_EQ(gw_auth_check(make(HS, "{\"sub\":\"a\",\"nbf\":1800000001}", "k", 1), "k", NOW, 0, user,
                           sizeof user), GW_AUTH_NOT_YET);
    /* a non-numeric exp is refused (libjwt reads it as 0: expired) */
    CHECK(gw_auth_check(make(HS, "{\"sub\":\"a\",\"exp\":\"soon\"}", "k", 1), "k", NOW, 0, user,
                        sizeof user) != GW_AUTH_OK);
    CHECK_EQ(gw_auth_check(make("{\"alg\":\"none\"}", "{\"sub\":\"a\"}", "k", 0), "k", NOW, 0, user,
                           sizeof user), GW_AUTH_ALG);
    CHECK_EQ(gw_auth_check(make("{\"alg\":\"HS512\"}", "{\"sub\":\"a\"}", "k", 1), "k", NOW, 0, user,
                           sizeof user), GW_AUTH_ALG);
    CHECK_EQ(gw_auth_check(make(HS, "{\"exp\":1800000060}", "k", 1), "k", NOW, 0, user, sizeof user),
             GW_AUTH_NO_SUB);
    CHECK_EQ(gw_auth_check(make(HS, "{\"sub\":\"far-too-long-user\"}", "k", 1), "k", NOW, 0, user,
                           sizeof user), GW_AUTH_NO_SUB); /* never truncated */
    CHECK_STR(gw_auth_reason(GW_AUTH_EXPIRED), "expired");
}

/* RFC 7519 §2: NumericDates may be fractional; libjwt's integer getter read 1800000000.5 as
 * absent (nbf) or 0 (exp: expired). */
static void test_fractional_dates_and_leeway(void)
{
    char user[64];
    CHECK_EQ(gw_auth_check(make(HS, "{\"sub\":\"a\",\"exp\":1800000060.5}", "k", 1), "k", NOW, 0,
                           user, sizeof user), GW_AUTH_OK);
    CHECK_EQ(gw_auth_check(make(HS, "{\"sub\":\"a\",\"exp\":1800000000.25}", "k", 1), "k",
                           NOW + 0.5, 0, user, sizeof user), GW_AUTH_EXPIRED);
    CHECK_EQ(gw_auth_check(make(HS, "{\"sub\":\"a\",\"nbf\":1800000000.5}", "k", 1), "k", NOW, 0,
                           user, sizeof user), GW_AUTH_NOT_YET);
    CHECK_EQ(gw_auth_check(make(HS, "{\"sub\":\"a\",\"nbf\":1799999999.5}", "k", 1), "k", NOW, 0,
                           user, sizeof user), GW_AUTH_OK);
    CHECK_EQ(gw_auth_check(make(HS, "{\"sub\":\"a\",\"nbf\":1800000000.0}", "k", 1), "k", NOW, 0,
                           user, sizeof user), GW_AUTH_OK); /* nbf == now: valid */
    /* leeway: 30 s either side */
    CHECK_EQ(gw_auth_check(make(HS, "{\"sub\":\"a\",\"exp\":1799999980}", "k", 1), "k", NOW, 30,
                           user, sizeof user), GW_AUTH_OK);
    CHECK_EQ(gw_auth_check(make(HS, "{\"sub\":\"a\",\"exp\":1799999970}", "k", 1), "k", NOW, 30,
                           user, sizeof user), GW_AUTH_EXPIRED);
    CHECK_EQ(gw_auth_check(make(HS, "{\"sub\":\"a\",\"nbf\":1800000029.9}", "k", 1), "k", NOW,
                           30, user, sizeof user), GW_AUTH_OK);
    CHECK_EQ(gw_auth_check(make(HS, "{\"sub\":\"a\",\"nbf\":1800000030.1}", "k", 1), "k", NOW,
                           30, user, sizeof user), GW_AUTH_NOT_YET);
    /* not a number: refused, whatever the leeway */
    CHECK_EQ(gw_auth_check(make(HS, "{\"sub\":\"a\",\"nbf\":\"now\"}", "k", 1), "k", NOW, 30,
                           user, sizeof user), GW_AUTH_INVALID);
    CHECK_EQ(gw_auth_check(make(HS, "{\"sub\":\"a\",\"exp\":null}", "k", 1), "k", NOW, 30,
                           user, sizeof user), GW_AUTH_INVALID);
    CHECK_EQ(gw_auth_check(make(HS, "{\"sub\":\"a\",\"exp\":true}", "k", 1), "k", NOW, 30,
                           user, sizeof user), GW_AUTH_INVALID);
}

static void test_origins_and_addresses(void)
{
    CHECK(origin_ok("https://any.example", false)); /* no list: any */
    CHECK(origin_ok(NULL, false));
    CHECK(!origin_ok(NULL, true));
    REQUIRE(gw_admit_init("https://a.example/, http://b.example:8080") == 0);
    CHECK(origin_ok("https://a.example", false));
    CHECK(origin_ok("HTTPS://A.EXAMPLE", false));
    CHECK(origin_ok("http://b.example:8080", false));
    CHECK(!origin_ok("http://b.example", false));
    CHECK(!origin_ok("https://a.example.evil", false));
    CHECK(origin_ok("", false));
    CHECK(!origin_ok("", true));
    /* compared whole, whatever the length: a 600-byte Origin once overflowed a 512-byte copy
     * and counted as absent (allowed) */
    char longo[700];
    memset(longo, 'a', sizeof longo - 1);
    longo[sizeof longo - 1] = 0;
    memcpy(longo, "https://a.example", 17);
    CHECK(!origin_ok(longo, false));
    CHECK(!origin_ok(longo, true));
    CHECK(!gw_admit_origin("https://a.example\0x", 19, false)); /* NUL inside */

    CHECK(gw_admit_ip_take(7, 2));
    CHECK(gw_admit_ip_take(7, 2));
    CHECK(!gw_admit_ip_take(7, 2));
    CHECK(gw_admit_ip_take(9, 2));
    CHECK_EQ(gw_admit_ip_count(7), 2);
    gw_admit_ip_put(7);
    CHECK(gw_admit_ip_take(7, 2));
    gw_admit_ip_put(7);
    gw_admit_ip_put(7);
    gw_admit_ip_put(9);
    CHECK_EQ(gw_admit_ip_count(7), 0);
}

int main(void)
{
    RUN(test_valid_token_gives_sub);
    RUN(test_refusals);
    RUN(test_fractional_dates_and_leeway);
    RUN(test_origins_and_addresses);
    return TEST_REPORT();
}
