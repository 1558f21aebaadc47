/* Image decode on arbitrary bytes: our own PNG path (chunk walk, libdeflate, unfiltering) and
 * TurboJPEG with DCT scaling. Either one line of error and no image, or an image of the size the
 * header gives (PNG, and JPEG at full size; a scaled JPEG never below the asked size unless that
 * is larger than the image) whose every byte can be read.
 *
 * Input: byte 0 picks the encoding (bit 0: JPEG, else PNG), bytes 1 and 2 the minimum height and
 * width (0 = full size); the rest are the encoded bytes. */
#include "dataio/decode.h"
#include "tests/fuzz/fuzz_common.h"

#include <stdlib.h>

static volatile unsigned sink;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static int ready;
    if (!ready) fuzz_init(), ready = 1;
    if (size < 3) return 0;
    image_encoding enc = data[0] & 1 ? IMG_JPEG : IMG_PNG;
    int min_h = data[1], min_w = data[2];
    const uint8_t *bytes = data + 3;
    size_t n = size - 3;
    char err[512] = "";
    uint8_t *rgb = NULL;
    int h = 0, w = 0;
    if (image_decode(bytes, n, enc, min_h, min_w, &rgb, &h, &w, err, sizeof err) != 0) {
        fuzz_check_one_line(err);
        if (rgb) __builtin_trap();
        return 0;
    }
    if (!rgb || h < 1 || w < 1) __builtin_trap();
    unsigned sum = 0; /* every byte read: ASan reports a short buffer */
    for (size_t i = 0; i < (size_t)h * w * 3; i++) sum += rgb[i];
    sink = sum;
    free(rgb);
    int fh, fw;
    char err2[512] = "";
    if (image_decode_size(bytes, n, enc, &fh, &fw, err2, sizeof err2) != 0) __builtin_trap();
    if (enc == IMG_PNG || (!min_h && !min_w)) {
        if (h != fh || w != fw) __builtin_trap();
    } else if (h > fh || w > fw || ((h < min_h || w < min_w) && (h != fh || w != fw))) {
        __builtin_trap();
    }
    return 0;
}
