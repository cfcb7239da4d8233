/* flags.h: one static table of typed options per program, from which parsing, environment
 * variables (<PREFIX><NAME>: each program its own prefix, WSGW_ for ws-gateway, WSAPI_ for
 * ws-api, WSBENCH_ for ws-bench, so no variable is read by two programs), an optional JSON
 * config file, --help and --version all come.
 *
 * Precedence: command-line flag > environment variable > --config file > default.
 *
 * Durations: one rule for every duration flag. A value takes a unit (ns, us, ms, s, m, h:
 * "500us", "1ms", "25s", "2m"); a bare number means seconds ("0.0005" = 500us). */
#ifndef WSGW_FLAGS_H
#define WSGW_FLAGS_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#define FLAGS_ERR_LEN 256

typedef enum {
    FLAG_STR,      /* const char **dst; the string stays valid for the life of the process */
    FLAG_INT,      /* int64_t *dst; accepts k/m/g suffixes (x1024); checked against min/max */
    FLAG_BOOL,     /* bool *dst; "--x" alone means true; values true/false/1/0/yes/no */
    FLAG_DURATION, /* int64_t *dst in microseconds; "250ms", "1.5s", "2m"; a bare number is
                      seconds, for every duration flag */
    FLAG_DOUBLE,   /* double *dst */
    FLAG_DURATION_AUTO, /* int64_t *dst: a duration as FLAG_DURATION (min/max apply), or the
                           word "auto", stored as FLAGS_AUTO: the program decides by itself */
    FLAG_BOOL_AUTO,     /* int *dst: 1, 0, or FLAGS_AUTO for the word "auto"; "--x" alone
                           means true, as for FLAG_BOOL */
} flag_type_t;

#define FLAGS_AUTO (-1) /* FLAG_DURATION_AUTO, FLAG_BOOL_AUTO: "auto" */

typedef struct flag {
    const char *name;  /* "send-queue": the flag is --send-queue, the env var <PREFIX>SEND_QUEUE */
    flag_type_t type;
    const char *def;   /* default as text (NULL = empty / 0 / false) */
    void *dst;
    const char *help;
    int64_t min, max;  /* FLAG_INT and FLAG_DURATION (in microseconds) bounds, inclusive;
                          both 0 = unbounded */
    const char *alias; /* optional second name (e.g. the seed tool's camelCase spelling) */
} flag_t;

/* The program a table belongs to. */
typedef struct flags_prog {
    const char *name;       /* "ws-api": --version prints "ws-api VERSION" */
    const char *env_prefix; /* "WSAPI_": --send-queue is also WSAPI_SEND_QUEUE */
    const char *usage;      /* printed above the options by --help (may be NULL) */
} flags_prog_t;

enum { FLAGS_OK = 0, FLAGS_HELP = 1, FLAGS_ERROR = -1 };

/* flags_parse: applies defaults, then the file named by --config (or <PREFIX>CONFIG), then the
 * environment (<PREFIX><NAME>), then argv[1..argc). `tab` ends with an entry whose name is
 * NULL. Arguments that are not flags are left in order at argv[0..*npos) (argv[0] excluded)
 * when npos is non-NULL; otherwise they are an error. --help prints the table to stdout,
 * --version prints "NAME VERSION" to stdout; both return FLAGS_HELP (the caller exits 0).
 * Returns FLAGS_OK, FLAGS_HELP, or FLAGS_ERROR with a message in err that ends with
 * "(see --help)" where the flag name or value was wrong. */
int flags_parse(const flag_t *tab, const flags_prog_t *prog, int argc, char **argv, int *npos,
                char err[FLAGS_ERR_LEN]);

/* flags_print_help: the usage, the duration rule, and the table with env names, defaults
 * and help text. */
void flags_print_help(const flag_t *tab, const flags_prog_t *prog, FILE *out);

/* flags_parse_duration: "250ms", "1.5s", "2m" into microseconds; a bare number is seconds.
 * Returns 0 or -1 (not a duration: no digits, negative, unknown unit, too large). */
int flags_parse_duration(const char *s, int64_t *out_us);

/* flags_env_name: ("WSAPI_", "send-queue") -> "WSAPI_SEND_QUEUE" into out. */
void flags_env_name(const char *prefix, const char *name, char *out, size_t outlen);

#endif
