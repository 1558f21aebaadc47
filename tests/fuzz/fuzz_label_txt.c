/* An Ultralytics label file (class cx cy w h per line) through the packer's parser: either one
 * line naming the file and line, or boxes that are all finite, inside the image and of a valid
 * class. */
#include "dataio/pack.h"
#include "tests/fuzz/fuzz_common.h"

#include <math.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static int ready;
    if (!ready) fuzz_init(), ready = 1;
    enum { NC = 80 };
    char *text = fuzz_text(data, size), err[512] = "";
    pack_stats st;
    pack_ctx *c = pack_ctx_new(&st, false);
    float *lab = NULL;
    int cap = 0, nb = 0;
    if (pack_parse_label_text(c, text, "fuzz.txt", NC, &lab, &cap, &nb, err, sizeof err) != 0) {
        fuzz_check_one_line(err);
    } else {
        for (int i = 0; i < nb; i++) {
            const float *b = lab + i * 5;
            int ok = b[0] >= 0 && b[0] < NC && b[0] == floorf(b[0]);
            for (int k = 1; k < 5; k++) ok = ok && isfinite(b[k]) && b[k] >= 0 && b[k] <= 1;
            if (!ok) __builtin_trap(); /* a box the dataset reader would refuse */
        }
    }
    free(lab);
    pack_ctx_free(c);
    free(text);
    return 0;
}
