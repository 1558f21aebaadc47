// Detection-head decode on the GPU (validation boxes stay on the device until NMS asks). Twin:
// kernels/dfl.c's detect_decode; one thread per row, arithmetic in kernels/cuda/dfl_hd.h.
#include "kernels/cuda/dfl_hd.h"
#include "kernels/cuda/ops.cuh"

__global__ void detect_decode_k(detect_decode_desc d, const float *logits, const float *pts,
                                const float *str, float *out) {
    GRID_STRIDE(r, (size_t)d.rows) detect_decode_row(&d, logits, pts, str, r, out);
}

static void cu_detect_decode(backend *be, const detect_decode_desc *d, const float *logits,
                             const float *anchor_pts, const float *anchor_str, float *out) {
    cuda_ctx *c = cuda_enter(be, "detect_decode");
    if (d->reg_max < 1 || d->reg_max > DFL_MAX_BINS || d->anchors < 1 || d->rows < 0)
        FATAL("detect_decode on %s: reg_max %d (1..%d), anchors %d, rows %d", c->name, d->reg_max,
              DFL_MAX_BINS, d->anchors, d->rows);
    detect_decode_k<<<cuda_blocks(c, (size_t)d->rows, 128), 128, 0, c->stream>>>(
        *d, logits, anchor_pts, anchor_str, out);
    CUDA_LAUNCHED("detect_decode_k");
    cuda_leave(c);
}

void cuda_fill_dfl(backend_i *f) {
    f->detect_decode = cu_detect_decode;
}
