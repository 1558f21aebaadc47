/* coordinator ctl <rundir> status|save|stop [timeout=3] [key=<client key file>]
 * Sends one control request to a live run and prints its JSON reply. */
#include "common/kv.h"
#include "common/log.h"
#include "coordinator/commands.h"
#include "coordinator/telemetry.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int usage(void) {
    log_error("usage: coordinator ctl <rundir> status|save|stop [timeout=SECONDS] [key=FILE]");
    return 2;
}

int cmd_ctl(int argc, char **argv) {
    if (argc < 2 || strchr(argv[0], '=') || strchr(argv[1], '=')) return usage();
    const char *rundir = argv[0], *cmd = argv[1];
    if (strcmp(cmd, "status") && strcmp(cmd, "save") && strcmp(cmd, "stop")) {
        log_error("ctl: unknown request '%s' (expected status, save or stop)", cmd);
        return 2;
    }
    kv_args a;
    char err[1024];
    double timeout;
    const char *key;
    if (kv_parse(argc - 2, argv + 2, &a, err, sizeof err) != 0) {
        log_error("ctl: %s", err);
        return 2;
    }
    if (kv_get_double(&a, "timeout", 3.0, &timeout, err, sizeof err) != 0 ||
        kv_get_str(&a, "key", NULL, &key) != 0 || kv_check_unused(&a, err, sizeof err) != 0 ||
        (timeout <= 0 && errf(err, sizeof err, "timeout=%g: expected > 0", timeout))) {
        log_error("ctl: %s", err);
        kv_free(&a);
        return 2;
    }
    telemetry_client *c = telemetry_client_open(rundir, key, err, sizeof err);
    kv_free(&a);
    if (!c) {
        log_error("ctl: %s", err);
        return 1;
    }
    char req[64];
    int n = snprintf(req, sizeof req, "{\"cmd\":\"%s\"}", cmd);
    char *reply =
        telemetry_client_request(c, req, (size_t)n, (int)(timeout * 1000), err, sizeof err);
    telemetry_client_close(c);
    if (!reply) {
        log_error("ctl: %s", err);
        return 1;
    }
    cJSON *j = cJSON_Parse(reply);
    char *pretty = j ? cJSON_Print(j) : NULL;
    printf("%s\n", pretty ? pretty : reply);
    int ok = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(j, "ok"));
    free(pretty);
    cJSON_Delete(j);
    free(reply);
    return ok ? 0 : 1;
}
