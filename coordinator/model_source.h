/* What a training run's workers build, and the weights they start from, decided by the
 * coordinator before launch (Ultralytics' Trainer.setup_model semantics):
 *
 *   model=<yaml>                          the yaml; initialised weights
 *   model=<weights file | version>        the architecture recorded in it, and its weights
 *                                         (Ultralytics' model=x.pt), unless pretrained=False
 *   pretrained=<weights file | version>   those weights into model='s architecture
 *   resume                                the resumed version's architecture; no pretrained
 *                                         weights (the version's state is loaded instead)
 *
 * Weights are a yolo-cluster weights file (ckpt export format=h5, scripts/ultralytics_to_weights.py
 * for an Ultralytics .pt) or any checkpoint version (its EMA); they load by name and shape
 * (worker/pretrained.h). The file is verified (every sha256) before anything is launched. */
#pragma once
#include <stdbool.h>
#include <stddef.h>

#include "common/train_args.h"
#include "coordinator/ckpt_file.h"

typedef struct model_source {
    char *yaml_text;         /* (heap) the yaml the workers parse, recorded in every version */
    char yaml_name[1024];    /* the file it is named by (scale letter, messages) */
    bool pretrained;         /* weights load from `weights` */
    char weights[4200];      /* that file, as given */
    char weights_abs[4200];  /* absolute (lineage) */
    char weights_sha256[65]; /* sha256 of its bytes (lineage) */
    char parent_version[32]; /* lineage of the first version: "v0004" of parent_run, or the
                                 file's name (parent_run: its folder) */
    char parent_run[4200];
} model_source;

/* resumed: the version a resumed run continues (NULL for a fresh run). 0, or -1 with one line in
 * err (no such file, a .pt not converted, a damaged weights file, a yaml that does not exist). */
int model_source_resolve(const train_args *a, const ckpt_meta *resumed, model_source *s, char *err,
                         size_t errlen);
void model_source_free(model_source *s);

/* The model yaml text a model= spec stands for: a yaml file's text, or the architecture a weights
 * file or version records (with a `scale:` line when its name carries the letter, so the text
 * builds the same model under any name). NULL with one line in err. */
char *model_source_yaml(const char *spec, char *name, size_t n, char *err, size_t errlen);

/* Ultralytics' imgsz default for `train model=<weights>` (8.4.190: YOLO("x.pt") keeps the
 * checkpoint's imgsz among its overrides (Model._reset_ckpt_args), and train() puts only the
 * caller's own arguments above them): when imgsz= was not given and model= names weights (a
 * weights file or a version, whether or not pretrained=False) that record their training imgsz,
 * a->imgsz becomes that one and `from` names the file; otherwise nothing changes and from is "".
 * model=<yaml> with pretrained=<weights> keeps the default (Ultralytics' too). Weights that cannot
 * be read change nothing here (model_source_resolve refuses them with the reason). Returns
 * whether a->imgsz was taken from the weights. */
bool model_source_default_imgsz(train_args *a, bool imgsz_given, char *from, size_t n);

/* Whether a model= / pretrained= value names weights (an .h5 file) rather than a yaml. */
bool model_source_is_weights(const char *spec);

/* ---- in the launched coordinator ------------------------------------------------------------ */
struct dataset;
struct job_info;

/* The model message every worker builds from (common/protocol.h): name, NUL, yaml text; *len
 * bytes (malloc'd). */
char *model_source_message(const model_source *s, int *len);

/* Fills job->pretrained, cls_width and head_ch: the class-branch width of the weights the run
 * starts from (the pretrained weights' under `rebuild` (ul_behaviour finetune_head_rebuild), or a
 * resumed version's: resumed_file, may be NULL). Loads the pretrained weights into *w when
 * s->pretrained (w->n == 0 otherwise). 0, or -1 with one line in err. */
struct model_weights;
int model_source_job(const model_source *s, bool rebuild, const ckpt_file *resumed_file,
                     struct job_info *job, struct model_weights *w, char *err, size_t errlen);

/* Broadcasts the pretrained weights (with the cls_remap class map for the dataset's names when
 * remap) and prints what worker 0 reports: "Transferred 349/355 items from pretrained weights",
 * the class rows remapped, the tensors that kept their initialisation. 0, or -1 (worker 0 failed:
 * said). */
int model_source_broadcast(const struct model_weights *w, const struct dataset *ds, bool remap);
