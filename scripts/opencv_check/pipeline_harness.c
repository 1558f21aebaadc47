/* reads 4 images (h w then raw) + labels from stdin, runs draw_mosaic (pool 4) + augment_train
 * with rng_keyed(seed, epoch, index); writes out image then n then labels */
#include "dataio/augment.h"
#include <stdio.h>
#include <stdlib.h>
int main(int argc, char **argv) {
    int S = atoi(argv[1]);
    uint64_t seed = strtoull(argv[2], 0, 10), ep = strtoull(argv[3], 0, 10),
             idx = strtoull(argv[4], 0, 10);
    double mosaic = atof(argv[5]);
    aug_image im[4];
    for (int i = 0; i < 4; i++) {
        int hw[3];
        if (fread(hw, sizeof(int), 3, stdin) != 3) return 1;
        uint8_t *b = malloc((size_t)hw[0] * hw[1] * 3);
        if (fread(b, 1, (size_t)hw[0] * hw[1] * 3, stdin) != (size_t)hw[0] * hw[1] * 3) return 1;
        float *l = malloc(sizeof(float) * 5 * (hw[2] + 1));
        if (fread(l, sizeof(float), 5 * hw[2], stdin) != (size_t)5 * hw[2]) return 1;
        im[i] = (aug_image){b, hw[0], hw[1], l, hw[2]};
    }
    augment_params p = augment_defaults();
    p.mosaic = mosaic;
    if (argc > 6) p.degrees = atof(argv[6]), p.shear = atof(argv[7]), p.perspective = atof(argv[8]);
    rng r = rng_keyed(seed, ep, idx);
    int parts[3];
    int m = augment_draw_mosaic(&r, &p, 4, parts);
    aug_image use[4] = {im[idx % 4]};
    for (int i = 0; m && i < 3; i++) use[i + 1] = im[parts[i]];
    uint8_t *out = malloc((size_t)S * S * 3);
    float lab[400];
    int n = augment_train(&p, S, &r, m, use, out, lab);
    fwrite(out, 1, (size_t)S * S * 3, stdout);
    fwrite(&n, sizeof n, 1, stdout);
    fwrite(lab, sizeof(float), 5 * n, stdout);
    return 0;
}
