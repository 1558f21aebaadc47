/* Argument parsing and output helpers of the inspection commands (cli.h). */
#include "coordinator/cli.h"

#include "common/log.h"

#include <cjson/cJSON.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Whether `word` is an item of the comma-separated list. */
static bool in_list(const char *list, const char *word, size_t len) {
    for (const char *p = list; p && *p;) {
        const char *e = strchr(p, ',');
        size_t l = e ? (size_t)(e - p) : strlen(p);
        if (l == len && !strncmp(p, word, len)) return true;
        p = e ? e + 1 : NULL;
    }
    return false;
}

int cli_usage_error(const cli_spec *spec, const char *fmt, ...) {
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    log_error("%s: %s (usage: coordinator %s %s)", spec->name, msg, spec->name, spec->usage);
    return 2;
}

int cli_help(const cli_spec *spec) {
    printf("usage: coordinator %s %s\n\n%s\n", spec->name, spec->usage, spec->help);
    return 0;
}

int cli_parse(const cli_spec *spec, int argc, char **argv, cli_args *a) {
    memset(a, 0, sizeof *a);
    snprintf(a->flags, sizeof a->flags, ",");
    for (int i = 0; i < argc; i++) {
        const char *w = argv[i];
        if (!strcmp(w, "--help") || !strcmp(w, "-h")) {
            a->help = true;
            return 0;
        }
        if (!strncmp(w, "--", 2)) {
            if (!in_list(spec->flags, w + 2, strlen(w + 2))) {
                cli_free(a);
                return cli_usage_error(spec, "unknown option '%s'", w);
            }
            size_t len = strlen(a->flags);
            snprintf(a->flags + len, sizeof a->flags - len, "%s,", w + 2);
            continue;
        }
        const char *eq = strchr(w, '=');
        if (eq && eq != w) {
            if (!in_list(spec->keys, w, (size_t)(eq - w))) {
                cli_free(a);
                return cli_usage_error(spec, "unknown argument '%.*s'", (int)(eq - w), w);
            }
            char key[64];
            snprintf(key, sizeof key, "%.*s", (int)(eq - w), w);
            kv_set(&a->kv, key, eq + 1);
            continue;
        }
        if (!*w || a->npos == CLI_MAX_POS || a->npos == spec->max_pos) {
            cli_free(a);
            return cli_usage_error(spec, "unexpected argument '%s'", w);
        }
        a->pos[a->npos++] = w;
    }
    if (a->npos < spec->min_pos) {
        cli_free(a);
        return cli_usage_error(spec, "missing arguments");
    }
    return 0;
}

void cli_free(cli_args *a) {
    kv_free(&a->kv);
    a->kv = (kv_args){0};
}

bool cli_flag(const cli_args *a, const char *flag) {
    char key[80];
    snprintf(key, sizeof key, ",%s,", flag);
    return strstr(a->flags, key) != NULL;
}

void cli_human_bytes(int64_t bytes, char *out, size_t n) {
    static const char *const unit[] = {"B", "kB", "MB", "GB", "TB"};
    double v = (double)bytes;
    int u = 0;
    while (v >= 1000 && u < 4) v /= 1000, u++;
    if (u == 0)
        snprintf(out, n, "%lld B", (long long)bytes);
    else
        snprintf(out, n, "%.1f %s", v, unit[u]);
}

void cli_print_json(cJSON *j) {
    char *s = cJSON_Print(j);
    if (s) printf("%s\n", s);
    free(s);
    cJSON_Delete(j);
}
