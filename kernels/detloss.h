/* Ultralytics 8.4.33 detection loss (v8DetectionLoss, E2ELoss), CPU reference with a hand-derived
 * backward. One branch's head output is preds [B][A][no], no = 4*reg_max + nc: channels are the box
 * values (4 sides l,t,r,b of reg_max DFL logits each, or the raw distances when reg_max == 1), then
 * the nc class logits. Anchors run level-major then row-major (y*W + x), as Ultralytics
 * concatenates them. Anchor points are in grid units (x + 0.5, y + 0.5), with a stride per anchor.
 *
 * Targets are Ultralytics' batch rows (batch_idx, cls, cx, cy, w, h), cx..h normalised to [0,1]
 * by the image width/height, sorted by batch_idx (rows of one image keep their order).
 *
 * The assigner (TaskAlignedAssigner) runs on detached values, so the backward treats the
 * assignment as constant, exactly as PyTorch does. Gradients are WRITTEN (=) into the caller's
 * buffer: the loss is where the backward pass starts.
 *
 * Tie rule: where torch.topk's order among equal metrics is unspecified, lower anchor index wins.
 */
#pragma once
#include <stddef.h>
#include <stdint.h>

#define DETLOSS_MAX_REG_MAX 64

typedef struct detloss_hyp {
    int nc, reg_max;        /* classes; 16 (v8/v11: DFL) or 1 (yolo26: raw distances), <= 64 */
    float box, cls, dfl;    /* gains 7.5, 0.5, 1.5 */
    int topk, topk2;        /* 10, 10 (one2many); 7, 1 (yolo26 one2one) */
    float alpha, beta, eps; /* assigner: 0.5, 6.0, 1e-9 */
    /* STAL: a GT side < stal_min px (Ultralytics 8.4.33: 8, the smallest stride; 8.4.190: 16,
     * stride_val) becomes stal_size px (the second stride, 16) for the candidate test */
    float stal_min, stal_size;
    const float *cls_weight; /* [nc] per-class BCE weights (cls_pw), or NULL for none */
    /* BCE rounding: 0 as PyTorch 1.13 (x + log(1 + e^-x)), 1 as PyTorch 2.x ((1 - y) x -
     * log_sigmoid(x), which cancels for very negative logits). Same value up to float32 noise. */
    int bce_torch2;
} detloss_hyp;

/* Defaults: the one2many / plain v8 branch (topk 10) and yolo26's one2one branch (topk 7, 1);
 * stal_min 8 (8.4.33: callers following 8.4.190 set 16), no class weights. */
detloss_hyp detloss_hyp_default(int nc, int reg_max);
detloss_hyp detloss_hyp_one2one(int nc, int reg_max);

/* Anchor centres (grid units) [A][2] and per-anchor strides [A] for nl levels of hs[i] x ws[i]
 * cells at level_strides[i] (8, 16, 32). Returns A. points/strides may be NULL to just count. */
int detloss_make_anchors(int nl, const int *hs, const int *ws, const float *level_strides,
                         float *points, float *strides);

/* Head outputs per level, NHWC [B][hw[l]][no], to preds [B][A][no] (Ultralytics' order). */
void detloss_concat_levels(int B, int nl, const int *hw, int no, const float *const *levels,
                           float *preds);
/* The reverse for gradients: dlevels[l] += the level's slice of dpreds (accumulates, as every
 * backward kernel; a NULL dlevels[l] is skipped). */
void detloss_split_levels(int B, int nl, const int *hw, int no, const float *dpreds,
                          float *const *dlevels);

/* E2E (yolo26) branch weights after `updates` completed epochs of `epochs`:
 * o2m = max(1 - u/max(epochs-1, 1), 0) * (0.8 - 0.1) + 0.1, o2o = max(1 - o2m, 0).
 * updates = 0 gives 0.8 / 0.2. */
void detloss_e2e_weights(int updates, int epochs, float *o2m, float *o2o);
/* The weights before any update (E2ELoss.__init__): what detloss_e2e_weights gives for updates 0,
 * and what validation's loss uses (Ultralytics validates with the EMA model's own criterion, whose
 * weights are never updated). */
#define DETLOSS_E2E_O2M_INIT 0.8f
#define DETLOSS_E2E_O2O_INIT 0.2f

/* ---- pieces, public for tests and for callers that want them ----------------------------------
 */

/* Largest number of targets of one image (the padded GT count M). */
int detloss_max_gt(int ntargets, const float *targets, int B);
/* Ultralytics' preprocess: per image the rows in order, padded to M; boxes scaled by (w,h,w,h)
 * pixels and converted to xyxy. labels [B][M], bboxes [B][M][4], mask [B][M] (1 when the xyxy
 * coordinates sum to > 0, as Ultralytics' mask_gt). Rows with batch_idx outside [0,B) are
 * ignored. */
void detloss_preprocess_targets(int ntargets, const float *targets, int B, int M, float img_h,
                                float img_w, float *labels, float *bboxes, float *mask);
/* Decoded boxes xyxy in grid units [B][A][4] from preds (DFL expectation or raw distances). */
void detloss_decode(const detloss_hyp *h, int B, int A, const float *preds,
                    const float *anchor_points, float *boxes);

/* CIoU of xyxy boxes as bbox_iou(b1, b2, xywh=False, CIoU=True) (eps 1e-7). grad (may be NULL)
 * receives d CIoU / d b1 with the aspect weight alpha held constant, as Ultralytics computes it
 * under no_grad; alpha_fixed >= 0 replaces the computed alpha (for gradient checks), < 0 computes
 * it; alpha_used (may be NULL) receives the alpha applied. */
float detloss_ciou(const float b1[4], const float b2[4], float alpha_fixed, float *alpha_used,
                   float grad[4]);

/* Assigner output, caller-owned arrays. target_bboxes are xyxy pixels (the loss divides them by
 * the anchor stride); target_labels/target_bboxes of a background anchor are those of GT
 * target_gt_idx = 0 of its image, as Ultralytics leaves them. */
typedef struct detloss_assign {
    int *target_labels;   /* [B][A] */
    float *target_bboxes; /* [B][A][4] */
    float *target_scores; /* [B][A][nc] */
    uint8_t *fg_mask;     /* [B][A] */
    int *target_gt_idx;   /* [B][A] */
} detloss_assign;

/* Scratch for detloss_tal_assign, in bytes. */
size_t detloss_tal_workspace(int B, int A, int M);
/* TaskAlignedAssigner. pd_scores = sigmoid(class logits) [B][A][nc]; pd_bboxes xyxy pixels
 * [B][A][4]; anc_points pixels [A][2]; gt_labels [B][M], gt_bboxes xyxy pixels [B][M][4],
 * mask_gt [B][M]; a GT whose class is outside [0, nc) is treated as padding. Uses h->nc, topk,
 * topk2, alpha, beta, eps, stal_min, stal_size. */
void detloss_tal_assign(const detloss_hyp *h, int B, int A, int M, const float *pd_scores,
                        const float *pd_bboxes, const float *anc_points, const float *gt_labels,
                        const float *gt_bboxes, const float *mask_gt, const detloss_assign *out,
                        void *workspace);

/* ---- the loss -----------------------------------------------------------------------------------
 */

typedef struct detloss_out {
    float vec[3];            /* (box, cls, dfl) * gains * B, what backward() differentiates */
    float items[3];          /* what Ultralytics logs: vec / B (E2E: the one2one items) */
    float total;             /* vec[0] + vec[1] + vec[2] */
    float target_scores_sum; /* max(sum of target scores, 1) (E2E: the one2one branch's) */
    int num_fg;              /* foreground anchors (E2E: one2one) */
    /* The (box, cls, dfl) sums before gains and the division by target_scores_sum, and the sum of
     * target scores before its clamp at 1 (E2E: one2one's): lets a caller that ran a batch in
     * parts compute the whole batch's items, gain * sum / max(target sum, 1). */
    double loss_sum[3], target_scores_raw;
} detloss_out;

/* Reusable scratch: grows on demand, so steady-state calls do not allocate. */
typedef struct detloss_ctx detloss_ctx;
detloss_ctx *detloss_create(void);
void detloss_destroy(detloss_ctx *ctx);
/* The assignment of the last detloss_branch call on ctx (valid until the next call); B, A, M. */
const detloss_assign *detloss_last_assign(const detloss_ctx *ctx, int *B, int *A, int *M);

/* Loss with a given assignment (no assigner): target_bboxes xyxy pixels, target_scores, fg_mask
 * from `as` (target_labels and target_gt_idx are not read). dpreds (may be NULL) receives
 * d (sum_j gw[j] * vec[j]) / d preds; gw NULL means {1,1,1}. img_h/img_w: input size in pixels.
 * Returns 0; -1 for reg_max outside [1, 64] or nc < 1 (detloss_branch/_e2e: also out of memory). */
int detloss_from_assign(const detloss_hyp *h, int B, int A, const float *preds,
                        const float *anchor_points, const float *strides, float img_h, float img_w,
                        const detloss_assign *as, const float *gw, float *dpreds, detloss_out *out);

/* One v8DetectionLoss branch: preprocess targets, decode, assign, loss, backward. */
int detloss_branch(detloss_ctx *ctx, const detloss_hyp *h, int B, int A, const float *preds,
                   const float *anchor_points, const float *strides, int ntargets,
                   const float *targets, float img_h, float img_w, const float *gw, float *dpreds,
                   detloss_out *out);

/* yolo26 E2ELoss: vec = o2m * vec_one2many + o2o * vec_one2one (float32 products), items and
 * target_scores_sum/num_fg from one2one; d total / d preds into both dpreds (either may be NULL).
 * br (may be NULL) receives the two branches' own results [one2many, one2one]. */
int detloss_e2e(detloss_ctx *ctx, const detloss_hyp *h_o2m, const detloss_hyp *h_o2o, float o2m,
                float o2o, int B, int A, const float *preds_o2m, const float *preds_o2o,
                const float *anchor_points, const float *strides, int ntargets,
                const float *targets, float img_h, float img_w, float *dpreds_o2m,
                float *dpreds_o2o, detloss_out *out, detloss_out br[2]);
