/* test_api_push_json.c: HTTP push/kick body parsing, base64, uint64 conn ids. */
#include <stdlib.h>

#include "../../api/push_json.h"
#include "test.h"

static int parse(const char *body, push_req_t *r, char *err)
{
    return push_json_parse_push(body, strlen(body), r, err);
}

static void test_push_text_to_everything(void)
{
    char err[PUSH_JSON_ERR_LEN];
    push_req_t r;
    REQUIRE(parse("{\"conn_ids\":[1,\"18446744073709551615\",42],\"user_ids\":[\"alice\",\"b\"],"
                  "\"room\":\"lobby\",\"all\":true,\"data\":\"hello\"}",
                  &r, err) == 0);
    CHECK_EQ(r.target.n_conn_ids, 3);
    CHECK(r.target.conn_ids[0] == 1);
    CHECK(r.target.conn_ids[1] == UINT64_MAX);
    CHECK(r.target.conn_ids[2] == 42);
    CHECK_EQ(r.target.n_user_ids, 2);
    CHECK_STR(r.target.user_ids[0], "alice");
    CHECK_STR(r.target.room, "lobby");
    CHECK(r.target.all);
    CHECK_EQ(r.len, 5);
    CHECK(memcmp(r.data, "hello", 5) == 0);
    CHECK(!r.binary);
    push_req_free(&r);
}

static void test_push_binary_base64(void)
{
    char err[PUSH_JSON_ERR_LEN];
    push_req_t r;
    REQUIRE(parse("{\"room\":\"r\",\"data_base64\":\"AAEC/w==\"}", &r, err) == 0);
    CHECK(r.binary);
    CHECK_EQ(r.len, 4);
    CHECK(r.data[0] == 0 && r.data[1] == 1 && r.data[2] == 2 && r.data[3] == 0xff);
    push_req_free(&r);
    /* unpadded is accepted */
    REQUIRE(parse("{\"all\":true,\"data_base64\":\"AAEC/w\"}", &r, err) == 0);
    CHECK_EQ(r.len, 4);
    push_req_free(&r);
    /* empty payload */
    REQUIRE(parse("{\"all\":true,\"data_base64\":\"\"}", &r, err) == 0);
    CHECK_EQ(r.len, 0);
    push_req_free(&r);
}

static void test_push_text_with_nul_and_unicode(void)
{
    char err[PUSH_JSON_ERR_LEN];
    push_req_t r;
    REQUIRE(parse("{\"all\":true,\"data\":\"a\\u0000b \\u00e9\"}", &r, err) == 0);
    CHECK_EQ(r.len, 6); /* a NUL b space + 2-byte é */
    CHECK(r.data[1] == 0);
    push_req_free(&r);
}

static void expect_error(const char *body, const char *fragment)
{
    char err[PUSH_JSON_ERR_LEN] = "";
    push_req_t r;
    int rv = parse(body, &r, err);
    CHECK_EQ(rv, -1);
    if (!strstr(err, fragment)) {
        fprintf(stderr, "body %s: error '%s' lacks '%s'\n", body, err, fragment);
        CHECK(0);
    }
    CHECK(r.data == NULL && r.target.conn_ids == NULL); /* emptied on error */
}

static void test_push_errors(void)
{
    expect_error("{", "bad JSON");
    expect_error("", "bad JSON");
    expect_error("[1]", "must be a JSON object");
    expect_error("{\"data\":\"x\"}", "empty target");
    expect_error("{\"conn_ids\":[],\"user_ids\":[],\"room\":\"\",\"all\":false,\"data\":\"x\"}",
                 "empty target");
    expect_error("{\"all\":true,\"data\":\"x\",\"data_base64\":\"eA==\"}", "not both");
    expect_error("{\"all\":true}", "data or data_base64 is required");
    expect_error("{\"all\":true,\"data_base64\":\"***\"}", "not valid base64");
    expect_error("{\"all\":true,\"data_base64\":\"A\"}", "not valid base64");
    expect_error("{\"all\":true,\"data\":5}", "data must be a string");
    expect_error("{\"conn_ids\":[-1],\"data\":\"x\"}", "conn_ids[0]");
    expect_error("{\"conn_ids\":[1.5],\"data\":\"x\"}", "conn_ids[0]");
    expect_error("{\"conn_ids\":[1,\"18446744073709551616\"],\"data\":\"x\"}", "conn_ids[1]");
    expect_error("{\"conn_ids\":[\"12a\"],\"data\":\"x\"}", "conn_ids[0]");
    expect_error("{\"conn_ids\":[\" 1\"],\"data\":\"x\"}", "conn_ids[0]");
    expect_error("{\"conn_ids\":5,\"data\":\"x\"}", "conn_ids must be an array");
    expect_error("{\"user_ids\":[\"\"],\"data\":\"x\"}", "user_ids[0]");
    expect_error("{\"user_ids\":[\"a\\u0000b\"],\"data\":\"x\"}", "user_ids[0]");
    expect_error("{\"room\":7,\"data\":\"x\"}", "room must be");
    expect_error("{\"all\":\"yes\",\"data\":\"x\"}", "all must be a boolean");
    expect_error("{\"all\":true,\"all\":true,\"data\":\"x\"}", "bad JSON"); /* duplicate key */
}

static void test_kick(void)
{
    char err[PUSH_JSON_ERR_LEN];
    push_req_t r;
    const char *b = "{\"user_ids\":[\"u\"],\"code\":4001,\"reason\":\"bye\"}";
    REQUIRE(push_json_parse_kick(b, strlen(b), &r, err) == 0);
    CHECK_EQ(r.code, 4001);
    CHECK_STR(r.reason, "bye");
    push_req_free(&r);
    b = "{\"conn_ids\":[\"5\"]}";
    REQUIRE(push_json_parse_kick(b, strlen(b), &r, err) == 0);
    CHECK_EQ(r.code, PUSH_KICK_DEFAULT_CODE);
    CHECK_STR(r.reason, "");
    push_req_free(&r);
    b = "{\"conn_ids\":[5],\"code\":1006}";
    CHECK_EQ(push_json_parse_kick(b, strlen(b), &r, err), -1);
    CHECK(strstr(err, "code") != NULL);
    char big[300];
    snprintf(big, sizeof big, "{\"conn_ids\":[5],\"reason\":\"%0124d\"}", 0);
    CHECK_EQ(push_json_parse_kick(big, strlen(big), &r, err), -1);
    CHECK(strstr(err, "reason") != NULL);
    b = "{\"code\":4000}";
    CHECK_EQ(push_json_parse_kick(b, strlen(b), &r, err), -1);
    CHECK(strstr(err, "empty target") != NULL);
}

static void test_base64_and_u64_helpers(void)
{
    uint8_t *out;
    size_t n;
    REQUIRE(push_json_base64_decode("aGVsbG8=", 8, &out, &n) == 0);
    CHECK_EQ(n, 5);
    CHECK(memcmp(out, "hello", 5) == 0);
    free(out);
    CHECK_EQ(push_json_base64_decode("aGVsbG9=", 8, &out, &n), -1); /* non-canonical tail */
    CHECK_EQ(push_json_base64_decode("aG=sbG8=", 8, &out, &n), -1); /* '=' inside */
    uint64_t v;
    CHECK_EQ(push_json_parse_u64("0", &v), 0);
    CHECK(v == 0);
    CHECK_EQ(push_json_parse_u64("", &v), -1);
    CHECK_EQ(push_json_parse_u64("+1", &v), -1);
    CHECK_EQ(push_json_parse_u64("99999999999999999999", &v), -1);
}

int main(void)
{
    RUN(test_push_text_to_everything);
    RUN(test_push_binary_base64);
    RUN(test_push_text_with_nul_and_unicode);
    RUN(test_push_errors);
    RUN(test_kick);
    RUN(test_base64_and_u64_helpers);
    return TEST_REPORT();
}
