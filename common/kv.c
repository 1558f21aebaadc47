#include "common/kv.h"

#include "common/log.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

bool parse_long(const char *s, long *out) {
    if (!s || !*s) return false;
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || *end) return false;
    *out = v;
    return true;
}

bool parse_double(const char *s, double *out) {
    if (!s || !*s) return false;
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || *end || !isfinite(v)) return false;
    *out = v;
    return true;
}

bool parse_bool(const char *s, bool *out) {
    if (!s) return false;
    if (!strcasecmp(s, "true") || !strcmp(s, "1") || !strcasecmp(s, "yes"))
        return *out = true, true;
    if (!strcasecmp(s, "false") || !strcmp(s, "0") || !strcasecmp(s, "no"))
        return *out = false, true;
    return false;
}

void kv_set(kv_args *a, const char *key, const char *val) {
    for (int i = 0; i < a->n; i++)
        if (!strcmp(a->items[i].key, key)) {
            free(a->items[i].val);
            a->items[i].val = xstrdup(val);
            return;
        }
    a->items = xrealloc(a->items, (size_t)(a->n + 1) * sizeof *a->items);
    a->items[a->n++] = (kv_pair){xstrdup(key), xstrdup(val), false};
}

int kv_parse(int argc, char **argv, kv_args *out, char *err, size_t errlen) {
    *out = (kv_args){0};
    for (int i = 0; i < argc; i++) {
        const char *eq = strchr(argv[i], '=');
        if (!eq || eq == argv[i]) {
            kv_free(out);
            return errf(err, errlen, "argument '%s' is not of the form key=value", argv[i]);
        }
        char key[256];
        size_t kn = (size_t)(eq - argv[i]);
        if (kn >= sizeof key) {
            kv_free(out);
            return errf(err, errlen, "argument key too long in '%s'", argv[i]);
        }
        memcpy(key, argv[i], kn);
        key[kn] = 0;
        kv_set(out, key, eq + 1);
    }
    return 0;
}

void kv_free(kv_args *a) {
    for (int i = 0; i < a->n; i++) free(a->items[i].key), free(a->items[i].val);
    free(a->items);
    *a = (kv_args){0};
}

const char *kv_get(kv_args *a, const char *key) {
    for (int i = 0; i < a->n; i++)
        if (!strcmp(a->items[i].key, key)) {
            a->items[i].used = true;
            return a->items[i].val;
        }
    return NULL;
}

int kv_get_str(kv_args *a, const char *key, const char *def, const char **out) {
    const char *v = kv_get(a, key);
    *out = v ? v : def;
    return 0;
}

int kv_get_long(kv_args *a, const char *key, long def, long *out, char *err, size_t errlen) {
    const char *v = kv_get(a, key);
    if (!v) return *out = def, 0;
    if (!parse_long(v, out)) return errf(err, errlen, "%s=%s: expected an integer", key, v);
    return 0;
}

int kv_get_double(kv_args *a, const char *key, double def, double *out, char *err, size_t errlen) {
    const char *v = kv_get(a, key);
    if (!v) return *out = def, 0;
    if (!parse_double(v, out)) return errf(err, errlen, "%s=%s: expected a number", key, v);
    return 0;
}

int kv_get_bool(kv_args *a, const char *key, bool def, bool *out, char *err, size_t errlen) {
    const char *v = kv_get(a, key);
    if (!v) return *out = def, 0;
    if (!parse_bool(v, out)) return errf(err, errlen, "%s=%s: expected True or False", key, v);
    return 0;
}

int kv_check_unused(const kv_args *a, char *err, size_t errlen) {
    for (int i = 0; i < a->n; i++)
        if (!a->items[i].used) return errf(err, errlen, "unknown argument '%s'", a->items[i].key);
    return 0;
}

void kv_from_args_yaml(const char *text, kv_args *out) {
    *out = (kv_args){0};
    for (const char *p = text; p && *p;) {
        const char *e = strchr(p, '\n'), *colon = strstr(p, ": ");
        size_t len = e ? (size_t)(e - p) : strlen(p);
        if (colon && colon < p + len && colon > p) {
            char key[256], val[4096];
            snprintf(key, sizeof key, "%.*s", (int)(colon - p), p);
            snprintf(val, sizeof val, "%.*s", (int)(p + len - colon - 2), colon + 2);
            kv_set(out, key, val);
        }
        p = e ? e + 1 : NULL;
    }
}

void kv_args_yaml_value(const char *text, const char *key, char *out, size_t n) {
    out[0] = 0;
    size_t kl = strlen(key);
    for (const char *p = text; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL)
        if (!strncmp(p, key, kl) && p[kl] == ':' && p[kl + 1] == ' ') {
            const char *v = p + kl + 2, *e = strchr(v, '\n');
            snprintf(out, n, "%.*s", (int)(e ? e - v : (long)strlen(v)), v);
            return;
        }
}
