/* Which Ultralytics release the training and validation semantics follow (`ultralytics=`).
 *
 * Every place where two supported releases behave differently asks the behaviour table below,
 * never the version number, so adding a release is one row here plus the code of its new
 * behaviours. docs/ultralytics-versions.md lists each difference with the source line it was
 * verified at. The default is the release `pip install ultralytics` gives today. */
#pragma once
#include <stdbool.h>
#include <stddef.h>

typedef enum ul_version { UL_8_4_33 = 0, UL_8_4_190 = 1, UL_NVERSIONS } ul_version;

#define UL_VERSION_DEFAULT UL_8_4_190

/* "8.4.33", "8.4.190" */
const char *ul_version_name(ul_version v);
/* The supported names, comma separated, for error messages: "8.4.33, 8.4.190". */
const char *ul_versions_supported(void);
/* 0 and *out, or -1 for a name that is not a supported release. */
int ul_version_parse(const char *name, ul_version *out);

typedef struct ul_behaviour {
    /* TaskAlignedAssigner.select_candidates_in_gts: GT sides shorter than this many pixels are
     * enlarged (to the second stride) for the anchors-inside test. 8.4.33: 8 (the smallest
     * stride); 8.4.190: 16 (stride_val). */
    float stal_min;
    /* match_predictions: 1 = greedy in descending confidence, each prediction claims its best
     * unclaimed GT with IoU >= t (8.4.190); 0 = IoU-sorted unique pairs (8.4.33). */
    bool match_greedy;
    /* compute_ap: 1 = the precision envelope drops to 0 right after the last recall (sentinels
     * mrec = [0, r..., r_last, 1], mpre = [1, p..., 0, 0]); 0 = sentinels (0, 1) and (1, 0). */
    bool ap_drop_after_last_recall;
    /* Warmup iterations: 1 = round(min(warmup_epochs, max(epochs - 1, 0)) * nb), none when 0,
     * recomputed when `time` re-estimates epochs; 0 = max(round(warmup_epochs * nb), 100). */
    bool warmup_leaves_last_epoch;
    /* accumulate = min(accumulate, nb * epochs) outside time mode, and warmup ramps to that
     * rounded, capped value (8.4.190); 0: ramps to nbs / batch, no cap. */
    bool accumulate_capped;
    /* close_mosaic: 1 = off from epoch max(0, epochs - close_mosaic) on, once, for good
     * (8.4.190); 0 = off from epoch == epochs - close_mosaic exactly (8.4.33: never when
     * close_mosaic > epochs). */
    bool close_mosaic_from;
    /* max_det is raised to the densest image's label count (train and val) when it exceeds the
     * default 300 and max_det was left at its default. */
    bool max_det_raise;
    /* MuSGD: Muon group = parameters with ndim 2 or 4 and the 3x-lr group = the head's cv3 /
     * one2one_cv3 parameters (8.4.190); else ndim >= 2 and names matching "23" and "cv3". */
    bool musgd_head_groups;
    /* YOLO26 validation: 1 = one-to-many head + NMS unless nms=False (8.4.190); 0 = the
     * one-to-one head + top-k always (8.4.33). */
    bool e2e_val_nms_default;
    /* With reg_max = 1 the third loss is named l1_loss (8.4.190); else dfl_loss. */
    bool l1_loss_name;
    /* fraction: 1 = max(1, round(n * f)), or an image count when f is an integer > 1 (8.4.190);
     * 0 = round(n * f) when f < 1, else all. */
    bool fraction_count;
    /* Training samples without mosaic are warped about their own centre straight into imgsz
     * (8.4.190) instead of being letterboxed to imgsz first (8.4.33): half a pixel apart where
     * the letterbox padding is odd. */
    bool warp_from_centre;
    /* BCE rounding of the PyTorch the release's oracle was made with: 8.4.190 with torch 2.x's
     * (1 - y) x - log_sigmoid(x); 8.4.33 with torch 1.13's x + log(1 + e^-x). Not an Ultralytics
     * change: the same loss, rounded as the PyTorch a user of that release runs it. */
    bool bce_torch2;
    /* Fine-tuning (BaseModel.load): the Detect class branch is rebuilt at the source's width when
     * the head inputs match, and class rows are copied by class name (cls_remap) (8.4.190);
     * 0: a plain name-and-shape intersection (8.4.33). */
    bool finetune_head_rebuild;
    /* The arguments that exist from 8.4.190 on (cls_pw, cls_remap, channels_last, nms, amp as
     * text) are accepted. */
    bool args_8_4_190;
} ul_behaviour;

const ul_behaviour *ul_behaviour_of(ul_version v);
