#include "common/log.h"
#include "coordinator/commands.h"

int cmd_data(int argc, char **argv) {
    (void)argc;
    (void)argv;
    log_error("data: not implemented yet");
    return 1;
}
