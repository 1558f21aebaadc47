/* Shared pieces of the inspection commands (`ckpt ...`, `runs ...`): one parse of a subcommand's
 * arguments into positional words, --flags and key=value pairs; --help; the one-line usage error
 * (exit 2); human-readable numbers; JSON output. */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/kv.h"

#define CLI_MAX_POS 16

/* A subcommand: its name ("ckpt ls"), the usage line after the name, and the flags it takes. */
typedef struct cli_spec {
    const char *name;  /* "ckpt ls" */
    const char *usage; /* "<run> [--json]" */
    const char *help;  /* what it does, printed by --help after the usage line */
    const char *flags; /* accepted --flags, comma separated ("json,tensors"); --help always */
    const char *keys;  /* accepted key=value keys, comma separated ("keep") */
    int min_pos, max_pos;
} cli_spec;

typedef struct cli_args {
    int npos;
    const char *pos[CLI_MAX_POS];
    char flags[256]; /* the flags given, ",json,tensors," */
    kv_args kv;
    bool help;
} cli_args;

/* Parses argv against spec. 0: parsed (a->help: --help was asked, the caller prints cli_help and
 * returns 0); 2: bad usage, one line already on stderr ("coordinator ckpt ls: ..., usage: ...").
 * cli_free in both cases. */
int cli_parse(const cli_spec *spec, int argc, char **argv, cli_args *a);
void cli_free(cli_args *a);
bool cli_flag(const cli_args *a, const char *flag);
/* The usage error line of spec (printf-style problem): returns 2. */
int cli_usage_error(const cli_spec *spec, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* `coordinator <name> <usage>` and the help text, on stdout; returns 0. */
int cli_help(const cli_spec *spec);

/* "61.1 MB" */
void cli_human_bytes(int64_t bytes, char *out, size_t n);

/* JSON output: prints the cJSON value pretty-printed on stdout and deletes it. */
struct cJSON;
void cli_print_json(struct cJSON *j);
