/* Test helper: run folders with checkpoint versions written directly (ckpt_write), without
 * training: a real yolov8n (nc 3 unless asked) from the model builder, its parameters and BN
 * buffers perturbed per version (so that versions differ and BN is not the identity), under ema/
 * and model/, with metrics rows, lineage, best/last links and an args.yaml: what `ckpt` and `runs`
 * read. */
#pragma once
#include <stdbool.h>
#include <stddef.h>

typedef struct fixture_run_opts {
    int versions; /* v0001..v000N, one per epoch */
    double lr0;   /* written into args.yaml */
    const char
        *parent_path; /* lineage of v0001: a version file of another run (resumed), or NULL */
    const char *dataset_sha; /* 64 hex digits (default: "ab" * 32) */
    int best;                /* the version best.h5 points at (0: the last) */
    unsigned seed;           /* weights: the builder's seed, then per-version noise */
    int nc;                  /* classes (default 3) */
    const char *names_json;  /* their names (default ["circle","rectangle","triangle"]) */
} fixture_run_opts;

/* Writes <dir>/<name>/ (weights/v*.h5, best.h5, last.h5, args.yaml). Asserts on failure. */
void fixture_run(const char *dir, const char *name, const fixture_run_opts *o);

/* The mAP50-95 fixture_run records for version v (1-based), and its fitness. */
double fixture_map(int v);
double fixture_fitness(int v);

/* Our forward pass (eval mode) of the model a version or weights file holds, with its weights
 * (every tensor of the model must transfer: asserted), on images [b][h][w][3] (float, 0..1).
 * Returns malloc'd outputs [b][A][4*reg_max + nc] of the one-to-many branch; *count floats. */
float *fixture_forward(const char *weights, int b, int h, int w, const float *images,
                       size_t *count);

/* Comparing our outputs with a reference's: raw little-endian float32 files written for and by
 * tests/py/ul_forward.py. fixture_write_raw asserts; fixture_max_diff returns the largest
 * |ours - reference| and puts the reference's largest magnitude in *range (asserts the reference
 * holds exactly n values). */
void fixture_write_raw(const char *path, const float *x, size_t n);
double fixture_max_diff(const char *ref_path, const float *ours, size_t n, double *range);

/* Our forward vs Ultralytics' on the same float32 weights: float32 sums in another order through
 * 23 layers. Measured ~1e-6 of the output range (docs/checkpoints.md); allowed 1e-4. */
#define FIXTURE_OUTPUT_TOL 1e-4

/* A suite's temporary folder (test_temp_dir, tag) into dir and the built coordinator into exe
 * (asserts it is there). */
void fixture_suite_dirs(char *dir, size_t n, const char *tag, char *exe, size_t exelen);
