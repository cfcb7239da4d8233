/* test_flags.c: option table: defaults, env, config file, argv precedence, errors, help. */
#include <fcntl.h>
#include <stdbool.h>
#include <stdlib.h>
#include <unistd.h>

#include "flags.h"
#include "test.h"

static const char *listen_addr;
static int64_t send_queue, ping_us, connect_us, coalesce_us, pace_us;
static bool verbose;
static double ratio;
static int inline_w;

static const flag_t tab[] = {
    {"listen", FLAG_STR, "0.0.0.0:8080", &listen_addr, "listen address"},
    {"send-queue", FLAG_INT, "1048576", &send_queue, "bytes", 1, 1LL << 40},
    {"ping-interval", FLAG_DURATION, "25", &ping_us, "ping"},
    {"connect-interval", FLAG_DURATION, "0", &connect_us, "pause", 0, 0, "connectInterval"},
    {"coalesce", FLAG_DURATION, "0", &coalesce_us, "window", 0, 100000},
    {"pace", FLAG_DURATION_AUTO, "auto", &pace_us, "window or auto", 0, 100000},
    {"verbose", FLAG_BOOL, "false", &verbose, "chatty"},
    {"ratio", FLAG_DOUBLE, "0.5", &ratio, "a ratio"},
    {"inline", FLAG_BOOL_AUTO, "auto", &inline_w, "on, off or auto"},
    {NULL},
};

static const flags_prog_t prog = {"prog", "WSGW_", "usage: t"};

static int parse(int argc, char **argv, int *npos, char *err)
{
    return flags_parse(tab, &prog, argc, argv, npos, err);
}

static void test_defaults(void)
{
    char err[FLAGS_ERR_LEN];
    char *argv[] = {"prog", NULL};
    unsetenv("WSGW_SEND_QUEUE");
    CHECK_EQ(parse(1, argv, NULL, err), FLAGS_OK);
    CHECK_STR(listen_addr, "0.0.0.0:8080");
    CHECK_EQ(send_queue, 1048576);
    CHECK_EQ(ping_us, 25000000);
    CHECK(!verbose);
    CHECK(ratio == 0.5);
}

static void test_argv_forms_and_units(void)
{
    char err[FLAGS_ERR_LEN];
    char *argv[] = {"prog", "--listen", "127.0.0.1:1", "--send-queue=64k", "--ping-interval",
                    "250ms", "--verbose", "--connectInterval", "5", "pos1", NULL};
    int npos = -1;
    CHECK_EQ(parse(10, argv, &npos, err), FLAGS_OK);
    CHECK_STR(listen_addr, "127.0.0.1:1");
    CHECK_EQ(send_queue, 65536);
    CHECK_EQ(ping_us, 250000);
    CHECK_EQ(connect_us, 5000000); /* a bare number is seconds, for every duration flag */
    CHECK(verbose);
    CHECK_EQ(npos, 1);
    CHECK_STR(argv[0], "pos1");
}

static void test_env_and_precedence(void)
{
    char err[FLAGS_ERR_LEN];
    setenv("WSGW_SEND_QUEUE", "2048", 1);
    char *argv1[] = {"prog", NULL};
    CHECK_EQ(parse(1, argv1, NULL, err), FLAGS_OK);
    CHECK_EQ(send_queue, 2048);
    char *argv2[] = {"prog", "--send-queue", "4096", NULL};
    CHECK_EQ(parse(3, argv2, NULL, err), FLAGS_OK);
    CHECK_EQ(send_queue, 4096);
    unsetenv("WSGW_SEND_QUEUE");
}

static void test_config_file(void)
{
    char err[FLAGS_ERR_LEN];
    char path[] = "/tmp/wsgw-flags-XXXXXX";
    int fd = mkstemp(path);
    REQUIRE(fd >= 0);
    const char *json = "{\"listen\": \"10.0.0.1:9\", \"send_queue\": 777, \"verbose\": true}";
    CHECK(write(fd, json, strlen(json)) == (ssize_t)strlen(json));
    close(fd);
    setenv("WSGW_LISTEN", "10.0.0.2:9", 1);
    char *argv[] = {"prog", "--config", path, NULL};
    CHECK_EQ(parse(3, argv, NULL, err), FLAGS_OK);
    CHECK_STR(listen_addr, "10.0.0.2:9"); /* env beats file */
    CHECK_EQ(send_queue, 777);
    CHECK(verbose);
    unsetenv("WSGW_LISTEN");
    /* unknown key in the file is an error that names it */
    fd = open(path, O_WRONLY | O_TRUNC);
    REQUIRE(fd >= 0);
    CHECK(write(fd, "{\"nope\":1}", 10) == 10);
    close(fd);
    CHECK_EQ(parse(3, argv, NULL, err), FLAGS_ERROR);
    CHECK(strstr(err, "nope") != NULL);
    unlink(path);
}

static void test_errors(void)
{
    char err[FLAGS_ERR_LEN];
    char *a1[] = {"prog", "--bogus", "1", NULL};
    CHECK_EQ(parse(3, a1, NULL, err), FLAGS_ERROR);
    CHECK(strstr(err, "bogus") != NULL);
    char *a2[] = {"prog", "--send-queue", "abc", NULL};
    CHECK_EQ(parse(3, a2, NULL, err), FLAGS_ERROR);
    char *a3[] = {"prog", "--send-queue", "0", NULL};
    CHECK_EQ(parse(3, a3, NULL, err), FLAGS_ERROR); /* below min */
    CHECK(strstr(err, "out of range") != NULL);
    char *a4[] = {"prog", "--ping-interval", "5 parsecs", NULL};
    CHECK_EQ(parse(3, a4, NULL, err), FLAGS_ERROR);
    char *a5[] = {"prog", "--listen", NULL};
    CHECK_EQ(parse(2, a5, NULL, err), FLAGS_ERROR);
    char *a6[] = {"prog", "stray", NULL};
    CHECK_EQ(parse(2, a6, NULL, err), FLAGS_ERROR);
    setenv("WSGW_SEND_QUEUE", "lots", 1);
    char *a7[] = {"prog", NULL};
    CHECK_EQ(parse(1, a7, NULL, err), FLAGS_ERROR);
    CHECK(strstr(err, "WSGW_SEND_QUEUE") != NULL);
    unsetenv("WSGW_SEND_QUEUE");
}

static void test_help_lists_env_names(void)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    REQUIRE(f);
    flags_print_help(tab, &prog, f);
    fclose(f);
    CHECK(strstr(buf, "--send-queue") != NULL);
    CHECK(strstr(buf, "WSGW_SEND_QUEUE") != NULL);
    CHECK(strstr(buf, "1048576") != NULL);
    CHECK(strstr(buf, "a bare number means\nseconds, for every duration flag") != NULL);
    CHECK(strstr(buf, "--version") != NULL);
    free(buf);
}

static void test_duration_parser(void)
{
    int64_t us;
    CHECK(flags_parse_duration("1.5s", &us) == 0 && us == 1500000);
    CHECK(flags_parse_duration("2m", &us) == 0 && us == 120000000);
    CHECK(flags_parse_duration("10us", &us) == 0 && us == 10);
    CHECK(flags_parse_duration("3", &us) == 0 && us == 3000000);
    CHECK(flags_parse_duration("0.0005", &us) == 0 && us == 500);
    CHECK(flags_parse_duration("-1s", &us) < 0);
    CHECK(flags_parse_duration("", &us) < 0);
    CHECK(flags_parse_duration("5 parsecs", &us) < 0);
}

/* Every duration flag: a bare number is seconds, and bounds hold (issue 17 item 6: a bare
 * --coalesce 5 was 5 microseconds, a bare --ping-interval 5 five seconds). */
static void test_duration_bounds_and_one_rule(void)
{
    char err[FLAGS_ERR_LEN];
    char *a1[] = {"prog", "--coalesce", "0.0002", NULL};
    CHECK_EQ(parse(3, a1, NULL, err), FLAGS_OK);
    CHECK_EQ(coalesce_us, 200);
    char *a2[] = {"prog", "--coalesce", "5", NULL}; /* 5 s: past the 100 ms bound */
    CHECK_EQ(parse(3, a2, NULL, err), FLAGS_ERROR);
    CHECK(strstr(err, "out of range") != NULL);
    char *a3[] = {"prog", "--coalesce", "200us", NULL};
    CHECK_EQ(parse(3, a3, NULL, err), FLAGS_OK);
    CHECK_EQ(coalesce_us, 200);
}

/* FLAG_DURATION_AUTO: "auto" (any case, also from the environment) is FLAGS_AUTO and the
 * default; durations as FLAG_DURATION, bounds included; a bad value names both forms. */
static void test_duration_or_auto(void)
{
    char err[FLAGS_ERR_LEN];
    char *a0[] = {"prog", NULL};
    unsetenv("WSGW_PACE");
    CHECK_EQ(parse(1, a0, NULL, err), FLAGS_OK);
    CHECK_EQ(pace_us, FLAGS_AUTO);
    char *a1[] = {"prog", "--pace", "1ms", NULL};
    CHECK_EQ(parse(3, a1, NULL, err), FLAGS_OK);
    CHECK_EQ(pace_us, 1000);
    char *a2[] = {"prog", "--pace=0", NULL};
    CHECK_EQ(parse(2, a2, NULL, err), FLAGS_OK);
    CHECK_EQ(pace_us, 0);
    char *a3[] = {"prog", "--pace", "AUTO", NULL};
    CHECK_EQ(parse(3, a3, NULL, err), FLAGS_OK);
    CHECK_EQ(pace_us, FLAGS_AUTO);
    setenv("WSGW_PACE", "250us", 1);
    CHECK_EQ(parse(1, a0, NULL, err), FLAGS_OK);
    CHECK_EQ(pace_us, 250);
    setenv("WSGW_PACE", "auto", 1);
    CHECK_EQ(parse(1, a0, NULL, err), FLAGS_OK);
    CHECK_EQ(pace_us, FLAGS_AUTO);
    unsetenv("WSGW_PACE");
    char *a4[] = {"prog", "--pace", "5", NULL}; /* 5 s: past the 100 ms bound */
    CHECK_EQ(parse(3, a4, NULL, err), FLAGS_ERROR);
    CHECK(strstr(err, "out of range") != NULL);
    char *a5[] = {"prog", "--pace", "sometimes", NULL};
    CHECK_EQ(parse(3, a5, NULL, err), FLAGS_ERROR);
    CHECK(strstr(err, "nor auto") != NULL);
}

/* FLAG_BOOL_AUTO: "auto" is FLAGS_AUTO (and here the default); "--x" alone is true and may be
 * followed by a value as a FLAG_BOOL, or by "auto"; anything else is an error, and a word
 * that is not a value is left to the next flag. */
static void test_bool_or_auto(void)
{
    char err[FLAGS_ERR_LEN];
    char *a0[] = {"prog", NULL};
    unsetenv("WSGW_INLINE");
    CHECK_EQ(parse(1, a0, NULL, err), FLAGS_OK);
    CHECK_EQ(inline_w, FLAGS_AUTO);
    char *a1[] = {"prog", "--inline", "--verbose", NULL};
    CHECK_EQ(parse(3, a1, NULL, err), FLAGS_OK);
    CHECK_EQ(inline_w, 1);
    CHECK(verbose);
    char *a2[] = {"prog", "--inline", "false", NULL};
    CHECK_EQ(parse(3, a2, NULL, err), FLAGS_OK);
    CHECK_EQ(inline_w, 0);
    char *a3[] = {"prog", "--inline=yes", NULL};
    CHECK_EQ(parse(2, a3, NULL, err), FLAGS_OK);
    CHECK_EQ(inline_w, 1);
    char *a4[] = {"prog", "--inline", "Auto", NULL};
    CHECK_EQ(parse(3, a4, NULL, err), FLAGS_OK);
    CHECK_EQ(inline_w, FLAGS_AUTO);
    setenv("WSGW_INLINE", "0", 1);
    CHECK_EQ(parse(1, a0, NULL, err), FLAGS_OK);
    CHECK_EQ(inline_w, 0);
    unsetenv("WSGW_INLINE");
    char *a5[] = {"prog", "--inline=sometimes", NULL};
    CHECK_EQ(parse(2, a5, NULL, err), FLAGS_ERROR);
    CHECK(strstr(err, "nor auto") != NULL);
    int npos = 0;
    char *a6[] = {"prog", "--inline", "file.txt", NULL}; /* not a value: a positional */
    CHECK_EQ(parse(3, a6, &npos, err), FLAGS_OK);
    CHECK_EQ(inline_w, 1);
    CHECK_EQ(npos, 1);
}

/* The env prefix is the program's (issue 17 item 5): another program's variable is not read. */
static void test_env_prefix_per_program(void)
{
    char err[FLAGS_ERR_LEN];
    static const flags_prog_t other = {"other", "WSAPI_", NULL};
    setenv("WSGW_SEND_QUEUE", "2048", 1);
    setenv("WSAPI_SEND_QUEUE", "4096", 1);
    char *a1[] = {"prog", NULL};
    CHECK_EQ(flags_parse(tab, &other, 1, a1, NULL, err), FLAGS_OK);
    CHECK_EQ(send_queue, 4096);
    CHECK_EQ(parse(1, a1, NULL, err), FLAGS_OK);
    CHECK_EQ(send_queue, 2048);
    unsetenv("WSGW_SEND_QUEUE");
    CHECK_EQ(flags_parse(tab, &other, 1, a1, NULL, err), FLAGS_OK);
    CHECK_EQ(send_queue, 4096);
    unsetenv("WSAPI_SEND_QUEUE");
}

/* "(see --help)" once, whatever went wrong (issue 17 item 10: ws-api printed it twice). */
static void test_error_points_at_help_once(void)
{
    char err[FLAGS_ERR_LEN];
    char *a1[] = {"prog", "--bogus", NULL};
    CHECK_EQ(parse(2, a1, NULL, err), FLAGS_ERROR);
    const char *h = strstr(err, "(see --help)");
    CHECK(h && strstr(h + 1, "(see --help)") == NULL);
    char *a2[] = {"prog", "-x", NULL};
    CHECK_EQ(parse(2, a2, NULL, err), FLAGS_ERROR);
    CHECK(strstr(err, "unknown flag '-x'") != NULL);
}

int main(void)
{
    RUN(test_defaults);
    RUN(test_argv_forms_and_units);
    RUN(test_env_and_precedence);
    RUN(test_config_file);
    RUN(test_errors);
    RUN(test_help_lists_env_names);
    RUN(test_duration_parser);
    RUN(test_duration_bounds_and_one_rule);
    RUN(test_duration_or_auto);
    RUN(test_bool_or_auto);
    RUN(test_env_prefix_per_program);
    RUN(test_error_points_at_help_once);
    return TEST_REPORT();
}
