/* test_gw_envelope.c: wsgw.v1.json server frames (gateway/envelope.h) parse back as JSON with
 * the same fields: escapes, binary and non-UTF-8 payloads as base64, channels that are not
 * UTF-8. */
#include <jansson.h>
#include <stdlib.h>

#include "../../gateway/envelope.h"
#include "test.h"

static json_t *parse(gw_payload_t *p)
{
    json_error_t e;
    json_t *j = json_loadb((const char *)gw_payload_data(p), p->len, 0, &e);
    if (!j)
        fprintf(stderr, "not JSON (%s): %.*s\n", e.text, (int)p->len, gw_payload_data(p));
    return j;
}

static void test_message_fields_and_escapes(void)
{
    const char *data = "he said \"hi\"\\\n\t\x01 é ✓";
    gw_payload_t *p = gw_env_message("user:al\"ice", 11, 18, "k3x9", 4, (const uint8_t *)data,
                                     strlen(data), false, 0);
    REQUIRE(p);
    CHECK(!p->binary);
    json_t *j = parse(p);
    REQUIRE(j);
    CHECK_STR(json_string_value(json_object_get(j, "type")), "message");
    CHECK_STR(json_string_value(json_object_get(j, "channel")), "user:al\"ice");
    CHECK_EQ(json_integer_value(json_object_get(j, "offset")), 18);
    CHECK_STR(json_string_value(json_object_get(j, "epoch")), "k3x9");
    CHECK_STR(json_string_value(json_object_get(j, "data")), data);
    json_decref(j);
    gw_payload_unref(p);
}

static void test_no_channel_no_offset(void)
{
    gw_payload_t *p = gw_env_message(NULL, 0, 0, NULL, 0, (const uint8_t *)"", 0, false, 0);
    REQUIRE(p);
    CHECK_EQ(p->len, strlen("{\"type\":\"message\",\"data\":\"\"}"));
    CHECK(memcmp(gw_payload_data(p), "{\"type\":\"message\",\"data\":\"\"}", p->len) == 0);
    gw_payload_unref(p);
}

static void test_binary_and_bad_utf8_as_base64(void)
{
    const uint8_t bin[] = {0, 1, 2, 0xff};
    gw_payload_t *p = gw_env_message("room:r", 6, 0, NULL, 0, bin, sizeof bin, true, 0);
    REQUIRE(p);
    json_t *j = parse(p);
    REQUIRE(j);
    CHECK_STR(json_string_value(json_object_get(j, "data_base64")), "AAEC/w==");
    CHECK(!json_object_get(j, "data"));
    CHECK(!json_object_get(j, "offset"));
    json_decref(j);
    gw_payload_unref(p);
    const uint8_t bad[] = {'a', 0xc3, 0x28};
    for (size_t n = 0; n <= sizeof bad; n++) { /* every length: base64 padding 0, 1, 2 */
        p = gw_env_message(NULL, 0, 0, NULL, 0, bad, n, false, 0);
        REQUIRE(p);
        j = parse(p);
        REQUIRE(j);
        CHECK(n < 2 ? json_object_get(j, "data") != NULL
                    : json_object_get(j, "data_base64") != NULL);
        json_decref(j);
        gw_payload_unref(p);
    }
}

static void test_channel_not_utf8(void)
{
    gw_payload_t *p = gw_env_recovery("room:\xff", 6, false, 7, "e", 1, 0);
    REQUIRE(p);
    json_t *j = parse(p);
    REQUIRE(j);
    CHECK_STR(json_string_value(json_object_get(j, "channel")), "room:\xef\xbf\xbd");
    CHECK_STR(json_string_value(json_object_get(j, "type")), "recovery");
    CHECK(json_is_false(json_object_get(j, "recovered")));
    CHECK_EQ(json_integer_value(json_object_get(j, "offset")), 7);
    json_decref(j);
    gw_payload_unref(p);
}

int main(void)
{
    RUN(test_message_fields_and_escapes);
    RUN(test_no_channel_no_offset);
    RUN(test_binary_and_bad_utf8_as_base64);
    RUN(test_channel_not_utf8);
    return TEST_REPORT();
}
