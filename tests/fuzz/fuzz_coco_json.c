/* A COCO instances json through the packer's parse half (categories, images, annotations,
 * boxes normalised and clipped): one line of error, or a clean parse. */
#include "dataio/pack.h"
#include "tests/fuzz/fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static int ready;
    if (!ready) fuzz_init(), ready = 1;
    char err[512] = "";
    pack_stats st;
    pack_ctx *c = pack_ctx_new(&st, false);
    if (pack_coco_check_text(c, (const char *)data, size, "fuzz.json", err, sizeof err) != 0)
        fuzz_check_one_line(err);
    pack_ctx_free(c);
    return 0;
}
