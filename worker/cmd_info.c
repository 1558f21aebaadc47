#include "common/log.h"
#include "worker/commands.h"

int worker_cmd_info(int argc, char **argv) {
    (void)argc;
    (void)argv;
    log_error("info: not implemented yet");
    return 1;
}
