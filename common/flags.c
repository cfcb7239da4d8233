/* flags.c: table-driven options from argv, the program's <PREFIX>* environment and a JSON file
 * (see flags.h). */
#include "flags.h"

#include <ctype.h>
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "version.h"

void flags_env_name(const char *prefix, const char *name, char *out, size_t outlen)
{
    size_t o = (size_t)snprintf(out, outlen, "%s", prefix);
    if (o >= outlen)
        o = outlen - 1;
    for (; *name && o + 1 < outlen; name++)
        out[o++] = *name == '-' ? '_' : (char)toupper((unsigned char)*name);
    out[o < outlen ? o : outlen - 1] = 0;
}

int flags_parse_duration(const char *s, int64_t *out_us)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (end == s || errno || v < 0 || !isfinite(v))
        return -1;
    double mul;
    if (*end == 0)
        mul = 1e6; /* a bare number is seconds, for every duration flag (DESIGN.md) */
    else if (strcmp(end, "ns") == 0)
        mul = 0.001;
    else if (strcmp(end, "us") == 0)
        mul = 1;
    else if (strcmp(end, "ms") == 0)
        mul = 1000;
    else if (strcmp(end, "s") == 0)
        mul = 1e6;
    else if (strcmp(end, "m") == 0)
        mul = 60e6;
    else if (strcmp(end, "h") == 0)
        mul = 3600e6;
    else
        return -1;
    double us = v * mul;
    if (us > 9e18)
        return -1;
    *out_us = (int64_t)llround(us);
    return 0;
}

static int parse_int(const char *s, int64_t *out)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 0);
    if (end == s || errno)
        return -1;
    int64_t mul = 1;
    switch (*end) {
    case 0: break;
    case 'k': case 'K': mul = 1024; end++; break;
    case 'm': case 'M': mul = 1024 * 1024; end++; break;
    case 'g': case 'G': mul = 1024 * 1024 * 1024; end++; break;
    default: return -1;
    }
    if (*end && !((*end == 'b' || *end == 'B') && end[1] == 0))
        return -1;
    if (v > INT64_MAX / mul || v < INT64_MIN / mul)
        return -1;
    *out = (int64_t)v * mul;
    return 0;
}

static int parse_bool(const char *s, bool *out)
{
    static const char *const yes[] = {"1", "true", "yes", "on"};
    static const char *const no[] = {"0", "false", "no", "off"};
    for (int i = 0; i < 4; i++) {
        if (strcasecmp(s, yes[i]) == 0) {
            *out = true;
            return 0;
        }
        if (strcasecmp(s, no[i]) == 0) {
            *out = false;
            return 0;
        }
    }
    return -1;
}

/* Stores text `val` into f's destination. `src` names where it came from for the error. */
static int set_value(const flag_t *f, const char *val, const char *src, char *err)
{
    switch (f->type) {
    case FLAG_STR:
        /* Values point into storage that lives as long as the process: literals (defaults),
         * argv, environ, or the kept JSON document of --config. Nothing to free. */
        *(const char **)f->dst = val ? val : "";
        return 0;
    case FLAG_INT: {
        int64_t v = 0;
        if (val && *val && parse_int(val, &v) < 0) {
            snprintf(err, FLAGS_ERR_LEN, "%s: --%s: not an integer: '%s'", src, f->name, val);
            return -1;
        }
        if ((f->min || f->max) && (v < f->min || v > f->max)) {
            snprintf(err, FLAGS_ERR_LEN, "%s: --%s: %lld is out of range [%lld, %lld]", src,
                     f->name, (long long)v, (long long)f->min, (long long)f->max);
            return -1;
        }
        *(int64_t *)f->dst = v;
        return 0;
    }
    case FLAG_BOOL: {
        bool v = false;
        if (val && *val && parse_bool(val, &v) < 0) {
            snprintf(err, FLAGS_ERR_LEN, "%s: --%s: not a boolean: '%s'", src, f->name, val);
            return -1;
        }
        *(bool *)f->dst = v;
        return 0;
    }
    case FLAG_BOOL_AUTO: {
        bool v = false;
        if (val && strcasecmp(val, "auto") == 0) {
            *(int *)f->dst = FLAGS_AUTO;
            return 0;
        }
        if (val && *val && parse_bool(val, &v) < 0) {
            snprintf(err, FLAGS_ERR_LEN, "%s: --%s: not a boolean nor auto: '%s'", src, f->name,
                     val);
            return -1;
        }
        *(int *)f->dst = v;
        return 0;
    }
    case FLAG_DURATION_AUTO:
    case FLAG_DURATION: {
        if (f->type == FLAG_DURATION_AUTO && val && strcasecmp(val, "auto") == 0) {
            *(int64_t *)f->dst = FLAGS_AUTO;
            return 0;
        }
        int64_t us = 0;
        if (val && *val && flags_parse_duration(val, &us) < 0) {
            snprintf(err, FLAGS_ERR_LEN,
                     "%s: --%s: not a duration: '%s' (e.g. 500us, 250ms, 2s, 1m; a bare number "
                     "is seconds)%s", src, f->name, val,
                     f->type == FLAG_DURATION_AUTO ? ", nor auto" : "");
            return -1;
        }
        if ((f->min || f->max) && (us < f->min || us > f->max)) {
            snprintf(err, FLAGS_ERR_LEN, "%s: --%s: '%s' is out of range [%gs, %gs]", src,
                     f->name, val, (double)f->min / 1e6, (double)f->max / 1e6);
            return -1;
        }
        *(int64_t *)f->dst = us;
        return 0;
    }
    case FLAG_DOUBLE: {
        double v = 0;
        if (val && *val) {
            char *end;
            errno = 0;
            v = strtod(val, &end);
            if (end == val || *end || errno) {
                snprintf(err, FLAGS_ERR_LEN, "%s: --%s: not a number: '%s'", src, f->name, val);
                return -1;
            }
        }
        *(double *)f->dst = v;
        return 0;
    }
    }
    return -1;
}

static const flag_t *find_flag(const flag_t *tab, const char *name, size_t len)
{
    for (const flag_t *f = tab; f->name; f++) {
        if (strlen(f->name) == len && strncmp(f->name, name, len) == 0)
            return f;
        if (f->alias && strlen(f->alias) == len && strncmp(f->alias, name, len) == 0)
            return f;
    }
    return NULL;
}

/* The JSON config file: an object whose keys are flag names (dashes or underscores). */
/* The parsed config file and strings made from it: kept for the life of the process because
 * FLAG_STR destinations point into them. */
static json_t *config_doc;

static int apply_file(const flag_t *tab, const char *path, char *err)
{
    json_error_t jerr;
    json_t *root = json_load_file(path, 0, &jerr);
    if (!root) {
        snprintf(err, FLAGS_ERR_LEN, "--config %s: line %d: %s", path, jerr.line, jerr.text);
        return -1;
    }
    int rv = 0;
    if (!config_doc)
        config_doc = json_pack("{s:[], s:[]}", "docs", "strings");
    if (!config_doc || json_array_append(json_object_get(config_doc, "docs"), root) < 0) {
        snprintf(err, FLAGS_ERR_LEN, "out of memory");
        rv = -1;
        goto out;
    }
    if (!json_is_object(root)) {
        snprintf(err, FLAGS_ERR_LEN, "--config %s: top level must be an object", path);
        rv = -1;
        goto out;
    }
    const char *key;
    json_t *v;
    json_object_foreach(root, key, v) {
        char name[128];
        snprintf(name, sizeof name, "%s", key);
        for (char *p = name; *p; p++)
            if (*p == '_')
                *p = '-';
        const flag_t *f = find_flag(tab, name, strlen(name));
        if (!f) {
            snprintf(err, FLAGS_ERR_LEN, "--config %s: unknown option '%s'", path, key);
            rv = -1;
            goto out;
        }
        char text[64];
        const char *val;
        if (json_is_string(v))
            val = json_string_value(v);
        else if (json_is_integer(v))
            val = (snprintf(text, sizeof text, "%lld", (long long)json_integer_value(v)), text);
        else if (json_is_real(v))
            val = (snprintf(text, sizeof text, "%.17g", json_real_value(v)), text);
        else if (json_is_boolean(v))
            val = json_is_true(v) ? "true" : "false";
        else if (json_is_array(v) && f->type == FLAG_STR) {
            /* ["a","b"] -> "a,b" for list-valued flags such as upstream */
            char joined[4096];
            size_t o = 0;
            size_t i;
            json_t *e;
            joined[0] = 0;
            json_array_foreach(v, i, e) {
                if (!json_is_string(e) || o >= sizeof joined)
                    break;
                o += (size_t)snprintf(joined + o, sizeof joined - o, "%s%s", i ? "," : "",
                                      json_string_value(e));
            }
            json_t *s = json_string(joined);
            if (!s || json_array_append_new(json_object_get(config_doc, "strings"), s) < 0) {
                snprintf(err, FLAGS_ERR_LEN, "out of memory");
                rv = -1;
                goto out;
            }
            val = json_string_value(s);
        } else {
            snprintf(err, FLAGS_ERR_LEN, "--config %s: '%s' has an unsupported type", path, key);
            rv = -1;
            goto out;
        }
        char src[300];
        snprintf(src, sizeof src, "config %s", path);
        if (set_value(f, val, src, err) < 0) {
            rv = -1;
            goto out;
        }
    }
out:
    json_decref(root);
    return rv;
}

void flags_print_help(const flag_t *tab, const flags_prog_t *prog, FILE *out)
{
    if (prog->usage)
        fprintf(out, "%s\n\n", prog->usage);
    fprintf(out, "Options (each also read from the environment variable shown; precedence:\n"
                 "flag > environment > --config FILE (JSON) > default).\n"
                 "DUR: a duration with a unit (500us, 250ms, 25s, 2m, 1h); a bare number means\n"
                 "seconds, for every duration flag.\n");
    for (const flag_t *f = tab; f->name; f++) {
        char env[128];
        flags_env_name(prog->env_prefix, f->name, env, sizeof env);
        const char *arg = f->type == FLAG_BOOL ? "" : f->type == FLAG_BOOL_AUTO ? " [BOOL|auto]"
                        : f->type == FLAG_STR ? " STR"
                        : f->type == FLAG_DURATION ? " DUR"
                        : f->type == FLAG_DURATION_AUTO ? " DUR|auto"
                        : f->type == FLAG_INT ? " N" : " X";
        fprintf(out, "  --%s%s%s%s\n      %s (default: %s; env %s)\n", f->name, arg,
                f->alias ? ", --" : "", f->alias ? f->alias : "", f->help,
                f->def && *f->def ? f->def : "empty", env);
    }
    fprintf(out,
            "  --config FILE\n      JSON object of options, keys as above (env %sCONFIG)\n"
            "  --version\n      print \"%s %s\" and exit\n"
            "  --help\n      this text\n",
            prog->env_prefix, prog->name, wsgw_version);
}

static int parse(const flag_t *tab, const flags_prog_t *prog, int argc, char **argv, int *npos,
                 char *err)
{
    char cfg_env[64];
    flags_env_name(prog->env_prefix, "config", cfg_env, sizeof cfg_env);
    const char *config = getenv(cfg_env);

    /* 1. defaults */
    for (const flag_t *f = tab; f->name; f++)
        if (set_value(f, f->def, "default", err) < 0)
            return FLAGS_ERROR;

    /* --help and --config are looked for first: they change what the rest means. */
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--") == 0)
            break;
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            flags_print_help(tab, prog, stdout);
            return FLAGS_HELP;
        }
        if (strcmp(argv[i], "--version") == 0) {
            printf("%s %s\n", prog->name, wsgw_version);
            return FLAGS_HELP;
        }
        if (strcmp(argv[i], "--config") == 0 && i + 1 < argc)
            config = argv[i + 1];
        else if (strncmp(argv[i], "--config=", 9) == 0)
            config = argv[i] + 9;
    }

    /* 2. config file */
    if (config && *config && apply_file(tab, config, err) < 0)
        return FLAGS_ERROR;

    /* 3. environment */
    for (const flag_t *f = tab; f->name; f++) {
        char env[128];
        flags_env_name(prog->env_prefix, f->name, env, sizeof env);
        const char *v = getenv(env);
        if (v && set_value(f, v, env, err) < 0)
            return FLAGS_ERROR;
    }

    /* 4. command line */
    int pos = 0;
    for (int i = 1; i < argc; i++) {
        char *a = argv[i];
        if (strcmp(a, "--") == 0) {
            for (i++; i < argc; i++) {
                if (!npos) {
                    snprintf(err, FLAGS_ERR_LEN, "unexpected argument '%s'", argv[i]);
                    return FLAGS_ERROR;
                }
                argv[pos++] = argv[i];
            }
            break;
        }
        if (a[0] != '-' || a[1] == 0) {
            if (!npos) {
                snprintf(err, FLAGS_ERR_LEN, "unexpected argument '%s'", a);
                return FLAGS_ERROR;
            }
            argv[pos++] = a;
            continue;
        }
        const char *name = a + (a[1] == '-' ? 2 : 1);
        const char *eq = strchr(name, '=');
        size_t nlen = eq ? (size_t)(eq - name) : strlen(name);
        if (nlen == 6 && strncmp(name, "config", 6) == 0) {
            if (!eq)
                i++;
            continue;
        }
        const flag_t *f = find_flag(tab, name, nlen);
        if (!f) {
            snprintf(err, FLAGS_ERR_LEN, "unknown flag '%.*s'", (int)nlen + (a[1] == '-' ? 2 : 1),
                     a);
            return FLAGS_ERROR;
        }
        const char *val;
        if (eq)
            val = eq + 1;
        else if (f->type == FLAG_BOOL || f->type == FLAG_BOOL_AUTO) {
            bool tmp;
            /* "--x false" (or "--x auto") as well as "--x" */
            if (i + 1 < argc && (parse_bool(argv[i + 1], &tmp) == 0 ||
                                 (f->type == FLAG_BOOL_AUTO && strcasecmp(argv[i + 1], "auto") == 0)))
                val = argv[++i];
            else
                val = "true";
        } else if (i + 1 < argc)
            val = argv[++i];
        else {
            snprintf(err, FLAGS_ERR_LEN, "flag --%s needs a value", f->name);
            return FLAGS_ERROR;
        }
        if (set_value(f, val, "flag", err) < 0)
            return FLAGS_ERROR;
    }
    if (npos)
        *npos = pos;
    return FLAGS_OK;
}

int flags_parse(const flag_t *tab, const flags_prog_t *prog, int argc, char **argv, int *npos,
                char err[FLAGS_ERR_LEN])
{
    err[0] = 0;
    int rc = parse(tab, prog, argc, argv, npos, err);
    if (rc == FLAGS_ERROR) {
        /* the one place that points at --help: callers print err as it is */
        size_t n = strlen(err);
        snprintf(err + n, FLAGS_ERR_LEN - n, " (see --help)");
    }
    return rc;
}
