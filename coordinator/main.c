/* bin/coordinator: the CLI. Dispatches to one subcommand per module. */
#include "common/log.h"
#include "coordinator/commands.h"
#include "coordinator/launch.h"

#include <stdio.h>
#include <string.h>

typedef struct command {
    const char *name, *help;
    int (*run)(int argc, char **argv);
} command;

/* Evaluation needs the model kernels, which the coordinator does not link: these commands are
 * bin/lifecycle's (docs/lifecycle.md), run in its place with the same arguments. */
static const char *const lifecycle_commands[][2] = {
    {"val", "model=... [data=...]  validation metrics of a version"},
    {"predict", "model=... source=...  boxes as JSON lines, annotated images"},
    {"gate", "candidate=... baseline=... data=...  pass/fail against a baseline"},
    {"drift", "model=... reference=... new=...  data drift, images to annotate"},
};
#define NLIFECYCLE (sizeof lifecycle_commands / sizeof *lifecycle_commands)

static const command commands[] = {
    {"data", "pack | synth | info | verify  HDF5 datasets", cmd_data},
    {"train", "key=value ...  train a model (Ultralytics arguments)", cmd_train},
    {"watch", "<rundir>  live progress of a run (or its results.csv summary)", cmd_watch},
    {"ctl", "<rundir> status | save | stop  control a live run", cmd_ctl},
    {"ckpt", "ls | show | diff | verify | export | tag | untag | prune  model versions", cmd_ckpt},
    {"runs", "ls | compare  runs of a project side by side", cmd_runs},
};

static void usage(FILE *f) {
    fprintf(f, "usage: coordinator <command> [key=value ...]\ncommands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof *commands; i++)
        fprintf(f, "  %-8s %s\n", commands[i].name, commands[i].help);
    for (size_t i = 0; i < NLIFECYCLE; i++)
        fprintf(f, "  %-8s %s\n", lifecycle_commands[i][0], lifecycle_commands[i][1]);
}

int main(int argc, char **argv) {
    log_set_program("coordinator");
    if (argc < 2 || !strcmp(argv[1], "help") || !strcmp(argv[1], "--help")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    for (size_t i = 0; i < sizeof commands / sizeof *commands; i++)
        if (!strcmp(argv[1], commands[i].name)) return commands[i].run(argc - 2, argv + 2);
    for (size_t i = 0; i < NLIFECYCLE; i++)
        if (!strcmp(argv[1], lifecycle_commands[i][0]))
            return exec_sibling("lifecycle", argc - 1, argv + 1);
    log_error("unknown command '%s' (try: coordinator help)", argv[1]);
    return 2;
}
