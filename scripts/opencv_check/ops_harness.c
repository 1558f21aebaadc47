/* Test harness: includes augment.c to reach its static affine_inverse (how the pipeline inverts
 * its matrix); the kernels are dataio/pixels.h's, vectorised when built for AVX-512. */
#include "dataio/augment.c"
#include <stdio.h>
/* usage: check mode h w args... < in.raw > out.raw */
int main(int argc, char **argv) {
    const char *mode = argv[1];
    int h = atoi(argv[2]), w = atoi(argv[3]);
    size_t n = (size_t)h * w * 3;
    uint8_t *in = malloc(n);
    if (fread(in, 1, n, stdin) != n) return 1;
    if (!strcmp(mode, "hsv")) {
        image_hsv(in, (size_t)h * w, atof(argv[4]), atof(argv[5]), atof(argv[6]));
        fwrite(in, 1, n, stdout);
    } else if (!strcmp(mode, "warp")) {
        int oh = atoi(argv[4]), ow = atoi(argv[5]);
        double M[3][3] = {{atof(argv[6]), atof(argv[7]), atof(argv[8])},
                          {atof(argv[9]), atof(argv[10]), atof(argv[11])},
                          {0, 0, 1}};
        double mi[3][3];
        affine_inverse(mi, M);
        uint8_t *out = malloc((size_t)oh * ow * 3);
        pixel_canvas c = {h, w, 1, {{in, (size_t)w * 3, 0, 0, w, h}}};
        image_warp(&c, mi, 0, out, oh, ow, 0, 0, NULL);
        fwrite(out, 1, (size_t)oh * ow * 3, stdout);
    } else if (!strcmp(mode, "resize")) {
        int oh = atoi(argv[4]), ow = atoi(argv[5]);
        uint8_t *out = malloc((size_t)oh * ow * 3);
        image_resize_bilinear(in, h, w, out, oh, ow);
        fwrite(out, 1, (size_t)oh * ow * 3, stdout);
    }
    return 0;
}
