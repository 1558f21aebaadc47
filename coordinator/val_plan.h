/* Rectangular validation batches, as Ultralytics validates during training (the trainer builds
 * the val set with rect=True, pad 0.5; BaseDataset.set_rectangle): the images sorted by aspect
 * ratio h/w, cut into consecutive batches of `batch` images; each batch gets one shape,
 *   [maxi, 1] when every ratio < 1 (landscape), [1, 1/mini] when every ratio > 1, else [1, 1],
 *   (h, w) = ceil(shape * imgsz / stride + pad) * stride,
 * and each image is letterboxed (no upscaling) into its batch's shape. So a square image at
 * imgsz 640 is validated on a 672 x 672 canvas, a 4:3 one on 512 x 672 with its neighbours.
 *
 * Ties: numpy's argsort (quicksort, unstable, and SIMD-dispatched on some CPUs) orders equal
 * ratios in an unspecified way; here they keep their dataset order. Only images of equal ratio
 * that straddle a batch boundary can end up in a batch of another shape because of that. */
#pragma once
#include <stdint.h>

typedef struct val_batch {
    int32_t start, count; /* into val_plan.order */
    int32_t h, w;         /* the batch's canvas in pixels */
} val_batch;

typedef struct val_plan {
    int n;
    int32_t *order; /* [n] dataset indices, sorted by aspect ratio */
    int nbatches;
    val_batch *batches;
} val_plan;

/* heights/widths: original sizes of the n images. 0, or -1 for a size <= 0 (the index is in
 * *bad). pad 0.5, stride 32 as Ultralytics validates. */
int val_plan_make(val_plan *p, int n, const int *heights, const int *widths, int imgsz, int stride,
                  int batch, double pad, int *bad);
void val_plan_free(val_plan *p);
