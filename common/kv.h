/* Ultralytics-style key=value command-line arguments, with typed getters whose errors name the
 * key, and a check that every given key was used (so a typo is an error, not ignored). */
#pragma once
#include <stdbool.h>
#include <stddef.h>

typedef struct kv_pair {
    char *key, *val;
    bool used;
} kv_pair;

typedef struct kv_args {
    int n;
    kv_pair *items;
} kv_args;

/* Every argv[i] must be key=value. 0, or -1 with a message naming the argument. */
int kv_parse(int argc, char **argv, kv_args *out, char *err, size_t errlen);
void kv_free(kv_args *a);
void kv_set(kv_args *a, const char *key, const char *val); /* add or replace */

/* NULL when absent. Marks the key used. */
const char *kv_get(kv_args *a, const char *key);
/* Return 0 and store the value (or def when absent); -1 with "key=val: expected ..." on bad value.
 */
int kv_get_str(kv_args *a, const char *key, const char *def, const char **out);
int kv_get_long(kv_args *a, const char *key, long def, long *out, char *err, size_t errlen);
int kv_get_double(kv_args *a, const char *key, double def, double *out, char *err, size_t errlen);
/* Accepts True/False, true/false, 1/0, yes/no. */
int kv_get_bool(kv_args *a, const char *key, bool def, bool *out, char *err, size_t errlen);
/* -1 with "unknown argument 'key'" for the first key never read. */
int kv_check_unused(const kv_args *a, char *err, size_t errlen);

/* The flat `key: value` lines of an args.yaml text (as train_args_yaml_text writes it), in order,
 * values as written (null included). Lines without ": " are skipped. */
void kv_from_args_yaml(const char *text, kv_args *out);
/* The value of `key: value` in such a text; "" when absent. */
void kv_args_yaml_value(const char *text, const char *key, char *out, size_t n);

/* Number parsing shared by yaml readers etc.: the whole string must be a number. */
bool parse_long(const char *s, long *out);
bool parse_double(const char *s, double *out);
bool parse_bool(const char *s, bool *out);
