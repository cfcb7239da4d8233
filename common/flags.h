/* flags.h: one static table of typed options per program, from which parsing, environment
 * variables (WSGW_<NAME>), an optional JSON config file and --help all come.
 *
 * Precedence: command-line flag > environment variable > --config file > default. */
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
                      in `unit_us` units (seconds when 0) */
    FLAG_DOUBLE,   /* double *dst */
} flag_type_t;

typedef struct flag {
    const char *name;  /* "send-queue": the flag is --send-queue, the env var WSGW_SEND_QUEUE */
    flag_type_t type;
    const char *def;   /* default as text (NULL = empty / 0 / false) */
    void *dst;
    const char *help;
    int64_t min, max;  /* FLAG_INT bounds, inclusive; both 0 = unbounded */
    int64_t unit_us;   /* FLAG_DURATION: unit of a bare number (0 = seconds) */
    const char *alias; /* optional second name (e.g. the seed tool's camelCase spelling) */
} flag_t;

enum { FLAGS_OK = 0, FLAGS_HELP = 1, FLAGS_ERROR = -1 };

/* flags_parse: applies defaults, then the file named by --config (or WSGW_CONFIG), then the
 * environment, then argv[1..argc). `tab` ends with an entry whose name is NULL. Arguments that
 * are not flags are left in order at argv[0..*npos) (argv[0] excluded) when npos is non-NULL;
 * otherwise they are an error. --help prints the table to stdout and returns FLAGS_HELP.
 * Returns FLAGS_OK, FLAGS_HELP, or FLAGS_ERROR with a message in err. */
int flags_parse(const flag_t *tab, int argc, char **argv, const char *usage, int *npos,
                char err[FLAGS_ERR_LEN]);

/* flags_print_help: the table with env names, defaults and help text. */
void flags_print_help(const flag_t *tab, const char *usage, FILE *out);

/* flags_parse_duration: "250ms" etc. into microseconds (bare number * unit_us).
 * Returns 0 or -1. */
int flags_parse_duration(const char *s, int64_t unit_us, int64_t *out_us);

/* flags_env_name: "send-queue" -> "WSGW_SEND_QUEUE" into out. */
void flags_env_name(const char *name, char *out, size_t outlen);

#endif
