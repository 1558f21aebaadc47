/* Validation of `coordinator train` before anything is launched or created: the arguments
 * against the dataset, the model and the machine. Run by `coordinator train` before it starts
 * mpirun, and by rank 0 of any MPMD job before it releases the workers, so a bad input is one
 * line and exit 2 with no run folder, train.log, endpoints or sockets left behind.
 *
 * Checks, in order: the dataset (a dataset yaml is packed or its cached pack reused; the file must
 * open, which checks its structure and every label), the train split against batch, fraction and
 * workers, imgsz (rounded up to a multiple of 32, as Ultralytics does), the run folder
 * (project/name must be creatable; a resumed run's folder is checked by resume_prepare), and, when
 * asked, the model, the device and memory through `worker info` (the workers' own code: the model
 * yaml builds for the dataset's classes; device= other than cpu needs a build with CUDA and a GPU
 * for each worker on this machine; `workers` workers of batch/workers images at imgsz fit in the
 * available memory, or each in its GPU's free memory). Under mpirun the workers make that last
 * check themselves before training. */
#pragma once
#include <stdbool.h>
#include <stddef.h>

#include "common/train_args.h"
#include "dataio/dataset.h"

enum {
    PREFLIGHT_MODEL = 1,  /* also the model and memory check (outside mpirun) */
    PREFLIGHT_QUIET = 2,  /* no warnings: they were printed by an earlier preflight of this run */
    PREFLIGHT_RESUME = 4, /* resumed in its own run folder (resume_prepare checked that one) */
};

/* May update a: data (the packed .h5 of a yaml), imgsz (rounded), batch (lowered to the train
 * split, with a warning). On success *ds is the open dataset (caller closes). -1 with one line in
 * err otherwise. flags: PREFLIGHT_*. model: what the model check builds (a yaml, or a weights
 * file or version whose recorded architecture is built; NULL: a->model). */
int preflight_train(train_args *a, int workers, int flags, const char *model, dataset **ds,
                    char *err, size_t errlen);
