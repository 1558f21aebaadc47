/* Fine-tuning from pretrained weights, with Ultralytics' semantics (BaseModel.load, 8.4.190):
 * the weights of another model, named tensors in PyTorch layout, go into a freshly built model
 * where the model has a tensor of the same name and shape (intersect_dicts); every other tensor
 * keeps its initialisation and is named in the report. With a class map (cls_remap, computed by
 * name from both class lists), the class-logit convolutions of the head (cv3.<i>.2 and
 * one2one_cv3.<i>.2) take the source's rows of the same class names instead, when their input
 * width matches. The class branch's width (Detect's c3) is chosen before the model is built
 * (pretrained_cls_width). BN running statistics and num_batches_tracked load with the rest. */
#pragma once
#include <stdbool.h>
#include <stddef.h>

#include "common/protocol.h"
#include "worker/model.h"

typedef struct pretrained_report {
    int transferred, total; /* Ultralytics' "Transferred %d/%d items" (state_dict entries,
                               num_batches_tracked included) */
    int remapped;           /* class-logit tensors whose rows were copied by class name */
    int n_not_loaded;
    char not_loaded[1024]; /* the first names that kept their initialisation, comma separated */
} pretrained_report;

/* t[n]: names, shapes and offsets into data (floats; "<bn>.num_batches_tracked" as one value).
 * cls_map: NULL, or one entry per class of m: the source's row for it (-1: none). 0, or -1 with
 * one line in err (a tensor out of the data's range). */
int pretrained_load(model *m, const tensor_desc *t, int n, const float *data, int64_t n_floats,
                    const int *cls_map, pretrained_report *r, char *err, size_t errlen);

/* Detect's class-branch width for a model whose head inputs are head_ch[3] and whose yaml rule
 * gives rule_c3: the source's width src_c3 when its head inputs src_ch[3] are the same (the
 * branch then runs on this neck, and its hidden layers transfer), else the rule's. */
int pretrained_cls_width(const int head_ch[3], int rule_c3, const int src_ch[3], int src_c3);

/* The worker's side of the weights message (common/protocol.h): receives the broadcast, loads it
 * into the model and its EMA copy (the EMA starts equal to the model, as Ultralytics' ModelEMA of
 * the loaded model), and worker 0 (wrank 0) sends the summary to the coordinator. cls_width and
 * rule_width go into the summary. 0, or -1 with one line in err. */
int pretrained_receive(model *m, model *ema, int wrank, int cls_width, int rule_width, char *err,
                       size_t errlen);
