/* A model yaml through model_yaml_load and, when the model is small enough to build quickly,
 * model_create (the graph at the probe size) and the memory estimate at 64x64: a one-line error
 * or a model, never an abort. */
#include "tests/fuzz/fuzz_common.h"
#include "worker/model.h"

#include <stdbool.h>
#include <stddef.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static int ready;
    if (!ready) fuzz_init(), ready = 1;
    const char *path = fuzz_write("model.yaml", data, size);
    char err[512] = "";
    model_yaml y;
    if (model_yaml_load(path, 0, &y, err, sizeof err) != 0) {
        fuzz_check_one_line(err);
        return 0;
    }
    /* building allocates the parameters: only models of some millions (a rough upper bound) */
    double est = 0;
    for (int i = 0; i < y.nlayers; i++) {
        const model_layer *L = &y.layers[i];
        double c = L->c1 > L->c2 ? L->c1 : L->c2, k = L->k > 3 ? L->k : 3;
        for (int j = 0; j < 3; j++) c = L->ch[j] > c ? L->ch[j] : c;
        est += (L->n + L->n_pool + 2.0) * c * (c + y.nc + 64) * k * k;
    }
    bool small = est < 3e7;
    model_yaml_free(&y);
    if (!small) return 0;
    model *m = model_create(path, 0, 1, err, sizeof err);
    if (!m) {
        fuzz_check_one_line(err);
        return 0;
    }
    size_t bytes;
    if (model_plan_bytes(m, 64, 64, true, &bytes, err, sizeof err) != 0) fuzz_check_one_line(err);
    model_free(m);
    return 0;
}
