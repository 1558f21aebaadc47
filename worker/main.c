/* bin/worker: with a subcommand (info) it runs offline; otherwise it is a training rank started
 * by mpirun next to the coordinator. */
#include "common/log.h"
#include "common/mpi_launch.h"
#include "worker/commands.h"
#include "worker/trainer.h"

#include <stdio.h>
#include <string.h>

int main(int argc, char **argv) {
    log_set_program("worker");
    if (argc >= 2 && !strcmp(argv[1], "info")) return worker_cmd_info(argc - 2, argv + 2);
    if (argc >= 2 && (!strcmp(argv[1], "help") || !strcmp(argv[1], "--help"))) {
        printf("usage: worker info model=<yaml> [nc=N] [imgsz=S]\n"
               "       (as a training rank: mpirun -np 1 coordinator train ... : -np N worker)\n");
        return 0;
    }
    if (argc >= 2) {
        log_error("unknown command '%s' (try: worker help)", argv[1]);
        return 2;
    }
    if (!launched_by_mpi()) {
        log_error("no command: `worker info model=...`, or a training rank under "
                  "`mpirun -np 1 coordinator train ... : -np N worker` (try: worker help)");
        return 2;
    }
    return worker_train_main();
}
