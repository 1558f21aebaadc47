/* Writing one checkpoint version of yolov8n (nc=80; model, EMA and two AdamW moments under their
 * state_dict names, as a run writes them) with ckpt_write, as ratios to a plain atomic write of the
 * same bytes measured here (same folder: temporary name, fsync, rename), and the sha256 of those
 * bytes alone; then reading it back and verifying. Usage: bench_ckpt [folder] (default /tmp) */
#include "common/atomic_file.h"
#include "common/log.h"
#include "common/sha256.h"
#include "common/timer.h"
#include "coordinator/ckpt_file.h"
#include "worker/model.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int add(ckpt_tensor *t, int n, const char *prefix, const model_tensor *mt, const char *sfx,
               const float *data) {
    snprintf(t[n].name, sizeof t[n].name, "%s%s%s", prefix, mt->name, sfx);
    t[n].dtype = CKPT_F32;
    t[n].ndim = mt->ndim;
    for (int d = 0; d < mt->ndim; d++) t[n].shape[d] = mt->shape[d];
    t[n].data = data;
    return n + 1;
}

int main(int argc, char **argv) {
    const char *dir = argc > 1 ? argv[1] : "/tmp";
    char err[1024], path[1200], raw[1200];
    model *m = model_create("yolov8n.yaml", 80, 0, err, sizeof err);
    if (!m) FATAL("%s", err);
    int np = model_num_param_tensors(m), nb = model_num_buffer_tensors(m);
    ckpt_tensor *t = xcalloc((size_t)(4 * np + 2 * nb), sizeof *t);
    int n = 0;
    const float *P = model_params(m), *B = model_buffers(m);
    for (int k = 0; k < 2; k++) {
        const char *pfx = k ? "ema/" : "model/";
        for (int i = 0; i < np; i++)
            n = add(t, n, pfx, model_param_tensor(m, i), "", P + model_param_tensor(m, i)->offset);
        for (int i = 0; i < nb; i++)
            n = add(t, n, pfx, model_buffer_tensor(m, i), "",
                    B + model_buffer_tensor(m, i)->offset);
    }
    for (int i = 0; i < np; i++) {
        const model_tensor *mt = model_param_tensor(m, i);
        n = add(t, n, "optimizer/state/", mt, "/exp_avg", P + mt->offset);
        n = add(t, n, "optimizer/state/", mt, "/exp_avg_sq", P + mt->offset);
    }
    size_t bytes = 0;
    for (int i = 0; i < n; i++) bytes += (size_t)ckpt_tensor_numel(&t[i]) * 4;
    char *flat = xmalloc(bytes);
    for (int i = 0, off = 0; i < n; i++) {
        size_t b = (size_t)ckpt_tensor_numel(&t[i]) * 4;
        memcpy(flat + off, t[i].data, b);
        off += (int)b;
    }
    snprintf(path, sizeof path, "%s/bench_ckpt_v0001.h5", dir);
    snprintf(raw, sizeof raw, "%s/bench_ckpt_raw.bin", dir);
    double best_ck = 1e30, best_raw = 1e30, best_sha = 1e30, best_read = 1e30;
    for (int r = 0; r < 5; r++) {
        ckpt_meta meta = {.ngroups = 0};
        snprintf(meta.reason, sizeof meta.reason, "epoch");
        double t0 = now_seconds();
        if (ckpt_write(path, &meta, t, n, err, sizeof err) != 0) FATAL("%s", err);
        double t1 = now_seconds();
        if (atomic_write_file(raw, flat, bytes, err, sizeof err) != 0) FATAL("%s", err);
        double t2 = now_seconds();
        char hex[65];
        sha256_hex(flat, bytes, hex);
        double t3 = now_seconds();
        ckpt_file *f = ckpt_open(path, err, sizeof err);
        if (!f || ckpt_verify(f, NULL, NULL, err, sizeof err) != 0) FATAL("%s", err);
        ckpt_close(f);
        double t4 = now_seconds();
        ckpt_meta_free(&meta);
        best_ck = t1 - t0 < best_ck ? t1 - t0 : best_ck;
        best_raw = t2 - t1 < best_raw ? t2 - t1 : best_raw;
        best_sha = t3 - t2 < best_sha ? t3 - t2 : best_sha;
        best_read = t4 - t3 < best_read ? t4 - t3 : best_read;
    }
    struct stat st;
    if (stat(path, &st) != 0) FATAL("stat %s", path);
    printf("yolov8n nc=80 version: %d tensors, %.1f MB of tensor data, file %.1f MB\n", n,
           bytes / 1e6, st.st_size / 1e6);
    printf("ckpt_write        %.3f s  (%.1fx the raw atomic write)\n", best_ck, best_ck / best_raw);
    printf("raw atomic write  %.3f s  (baseline: temporary file, fsync, rename, fsync folder)\n",
           best_raw);
    printf("sha256 of bytes   %.3f s  (%.1fx the raw write; ckpt_write hashes them once)\n",
           best_sha, best_sha / best_raw);
    printf("open + verify     %.3f s  (%.1fx the raw write)\n", best_read, best_read / best_raw);
    unlink(path);
    unlink(raw);
    free(flat);
    free(t);
    model_free(m);
    return 0;
}
