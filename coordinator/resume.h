/* How `train` starts: fresh, or resumed from a checkpoint version (docs/checkpoints.md).
 *
 *   resume=P/N            the newest complete version of run folder P/N
 *   resume=<file.h5>      that version (last.h5 / best.h5 / v0003.h5 / a copy elsewhere)
 *   resume=True           model=<version file> if given (Ultralytics' form), else project/name
 *   resume=auto           project/name's newest complete version if there is one, else a fresh
 *                         run in exactly project/name (a requeued cluster job uses it)
 *
 * A resumed run continues in the version's run folder (a version outside any run's weights/
 * starts a new folder from project/name) with the run's own arguments (args.yaml of the version);
 * only resources, reporting and stopping rules may be changed (train_args_resume_may_change).
 * Everything that could stop a resume is checked here, before anything is launched or written:
 * the run folder and a complete version exist (a version that fails verification is skipped for
 * the previous one, with a message), the run did not finish, the model yaml text and the dataset
 * hash are the ones the version was trained with, no other run holds the folder. A refusal is one
 * line; never a silent fresh start. */
#pragma once
#include <stdbool.h>
#include <stddef.h>

#include "common/kv.h"
#include "common/train_args.h"

typedef struct resume_plan {
    bool active; /* continue from version_path */
    char version_path[4200];
    int version;           /* its number (0 when its name has none) */
    char run_dir[2048];    /* where the run goes on; "" = a folder from project/name */
    bool in_run_dir;       /* the version is one of run_dir's (retention keeps it) */
    char parent_run[4200]; /* absolute folder of the run the version belongs to */
    char imgsz_from[4200]; /* a fresh run's imgsz came from these weights (model=), not from
                              imgsz= or the default (model_source_default_imgsz); else "" */
} resume_plan;

/* From the command line kv, fills *a with the effective arguments and *plan (a fresh run
 * fine-tuning from model=<weights> without imgsz= takes the weights' training imgsz, as
 * Ultralytics does; a resumed run keeps its own arguments, imgsz included). Returns 0; 1 when
 * there is nothing to do (resume=auto of a run that finished; said on stdout); -1 with one line
 * in err (also for bad arguments). verbose: log the notes (version fallbacks, what is resumed);
 * the check before launching passes false, the launched coordinator true. */
int resume_prepare(kv_args *kv, train_args *a, resume_plan *plan, bool verbose, char *err,
                   size_t errlen);
/* A resumed run whose workers compute in another arithmetic than its version did (bf16 against
 * fp32: another CPU, or another default) goes on, but no longer as the uninterrupted run would:
 * says so in one warning. `was` is the version's lineage/precision ("" in versions older than
 * it: nothing to compare), `now` the workers' (protocol.h model_info). */
void resume_warn_precision_change(const resume_plan *plan, const char *was, const char *now);
