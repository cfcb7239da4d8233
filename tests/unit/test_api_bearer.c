/* test_api_bearer.c: bearer token checks (api/bearer.c): scheme and spacing rules, missing vs
 * wrong, prefixes and extensions of the token, disabled check, only a digest kept. */
#include <string.h>

#include "../../api/bearer.h"
#include "test.h"

static void test_bearer(void)
{
    bearer_t off, b;
    CHECK_EQ(bearer_init(&off, ""), 0);
    CHECK(!off.enabled);
    CHECK_EQ(bearer_check(&off, NULL), BEARER_OK);
    CHECK_EQ(bearer_check(&off, "Bearer anything"), BEARER_OK);
    CHECK_EQ(bearer_init(&b, "s3cret-Tok"), 0);
    CHECK(b.enabled);
    CHECK_EQ(bearer_check(&b, "Bearer s3cret-Tok"), BEARER_OK);
    CHECK_EQ(bearer_check(&b, "bearer s3cret-Tok"), BEARER_OK);  /* scheme case-insensitive */
    CHECK_EQ(bearer_check(&b, "BEARER   s3cret-Tok  "), BEARER_OK);
    CHECK_EQ(bearer_check(&b, "Bearer s3cret-tok"), BEARER_WRONG); /* token case-sensitive */
    CHECK_EQ(bearer_check(&b, "Bearer s3cret-To"), BEARER_WRONG);  /* prefix */
    CHECK_EQ(bearer_check(&b, "Bearer s3cret-Tok2"), BEARER_WRONG);
    CHECK_EQ(bearer_check(&b, "Bearer s3cret-Tok x"), BEARER_WRONG);
    CHECK_EQ(bearer_check(&b, NULL), BEARER_MISSING);
    CHECK_EQ(bearer_check(&b, ""), BEARER_MISSING);
    CHECK_EQ(bearer_check(&b, "Bearer"), BEARER_MISSING);
    CHECK_EQ(bearer_check(&b, "Bearer   "), BEARER_MISSING);
    CHECK_EQ(bearer_check(&b, "Bearers3cret-Tok"), BEARER_MISSING);
    CHECK_EQ(bearer_check(&b, "Basic s3cret-Tok"), BEARER_MISSING);
    CHECK_EQ(bearer_check(&b, "s3cret-Tok"), BEARER_MISSING);
    CHECK_STR(bearer_result_name(BEARER_MISSING), "missing");
    CHECK_STR(bearer_result_name(BEARER_WRONG), "wrong");
    CHECK_STR(bearer_result_name(BEARER_OK), "ok");
    /* the digest is what is kept, not the token */
    bearer_t b2;
    bearer_init(&b2, "s3cret-Tok");
    CHECK(memcmp(b.digest, b2.digest, sizeof b.digest) == 0);
    CHECK(memmem(&b, sizeof b, "s3cret", 6) == NULL);
}

int main(void)
{
    RUN(test_bearer);
    return TEST_REPORT();
}
