/* bin/lifecycle: what happens to a trained version next (docs/lifecycle.md): val, predict, gate,
 * drift. It runs the model in this process through the worker's model code, on the backend of
 * device=; `coordinator val ...` (and predict, gate, drift) runs this binary. */
#include "common/log.h"
#include "lifecycle/commands.h"

#include <stdio.h>
#include <string.h>

typedef struct command {
    const char *name, *help;
    int (*run)(int argc, char **argv);
} command;

static const command commands[] = {
    {"val", "model=... [data=...]  validation metrics of a version (Ultralytics' table)", cmd_val},
    {"predict", "model=... source=...  boxes as JSON lines, annotated images", cmd_predict},
    {"gate", "candidate=... baseline=... data=...  pass/fail a candidate against a baseline",
     cmd_gate},
    {"drift", "model=... reference=... new=...  data drift and images worth annotating", cmd_drift},
};

int main(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "help") || !strcmp(argv[1], "--help")) {
        FILE *f = argc < 2 ? stderr : stdout;
        fprintf(f, "usage: lifecycle <command> [key=value ...]   (also: coordinator <command>)\n");
        for (size_t i = 0; i < sizeof commands / sizeof *commands; i++)
            fprintf(f, "  %-8s %s\n", commands[i].name, commands[i].help);
        return argc < 2 ? 2 : 0;
    }
    for (size_t i = 0; i < sizeof commands / sizeof *commands; i++)
        if (!strcmp(argv[1], commands[i].name)) {
            log_set_program(commands[i].name);
            return commands[i].run(argc - 2, argv + 2);
        }
    log_set_program("lifecycle");
    log_error("unknown command '%s' (try: lifecycle help)", argv[1]);
    return 2;
}
