/* A control request (the bytes a client sends to a run's REP socket) through the same handler the
 * socket uses: the reply is always a JSON object with a boolean "ok", and "ok":false changes
 * nothing. A real server (sockets in the scratch folder) is opened once. */
#include "coordinator/telemetry.h"
#include "tests/fuzz/fuzz_common.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static telemetry *server(void) {
    static telemetry *t;
    if (!t) {
        fuzz_init();
        char err[512];
        t = telemetry_open(fuzz_scratch(), NULL, err, sizeof err);
        if (!t) {
            fprintf(stderr, "fuzz: %s\n", err);
            abort();
        }
    }
    return t;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    telemetry *t = server();
    bool stop_before = telemetry_stop_requested(t);
    char *text = telemetry_reply(t, (const char *)data, size, 1 + (size && data[0] == 0xff));
    cJSON *r = cJSON_Parse(text);
    cJSON *ok = cJSON_GetObjectItemCaseSensitive(r, "ok");
    if (!cJSON_IsObject(r) || !cJSON_IsBool(ok)) __builtin_trap();
    if (cJSON_IsFalse(ok) && telemetry_stop_requested(t) != stop_before) __builtin_trap();
    telemetry_take_save(t);
    cJSON_Delete(r);
    free(text);
    return 0;
}
