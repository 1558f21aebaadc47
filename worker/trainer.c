/* One training worker: receives the config and the shard plan, trains on its share of every
 * global batch, all-reduces gradients with the other workers, validates its share of the val
 * split, and reports to the coordinator (DESIGN.md sections 2 and 4). */
#include "worker/trainer.h"

#include "common/log.h"
#include "common/protocol.h"
#include "common/stop_signal.h"
#include "common/timer.h"
#include "common/train_args.h"
#include "dataio/loader.h"
#include "kernels/backend.h"
#include "kernels/detloss.h"
#include "kernels/optim.h"
#include "kernels/schedule.h"
#include "kernels/threads.h"
#include "worker/allreduce_mpi.h"
#include "worker/allreduce_nccl.h"
#include "worker/batch_ring.h"
#include "worker/coord_watch.h"
#include "worker/device.h"
#include "worker/head_loss.h"
#include "worker/mem_budget.h"
#include "worker/model.h"
#include "worker/pretrained.h"
#include "worker/snapshot.h"
#include "worker/step_phases.h"
#include "worker/train_setup.h"
#include "worker/validate.h"

#include <math.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct worker {
    train_args a;
    job_info job;
    int rank, wrank, W; /* world rank, rank among workers, number of workers */
    int local_workers;  /* workers on this machine (they share its memory) */
    bool bf16_native;   /* every worker's CPU multiplies bf16 (bf16_cpu_has_native) */
    bool aborted;       /* the coordinator ended the job (CTRL_ABORT) and printed why */
    MPI_Comm wcomm;
    backend *be;      /* where the models, gradients and optimizer state live */
    model *m, *ema_m; /* the trained model and its EMA (validated, saved) */
    optimizer opt;
    sched_cfg sc;
    model_info info;           /* what setup built, for the coordinator */
    float *cls_w;              /* cls_pw class weights [nc], or NULL */
    char *model_msg;           /* the model: its name, a NUL, its yaml text (job.model_text_len) */
    int cls_width, rule_width; /* Detect's class-branch width as built, and the yaml rule's */
    model_ema ema;
    int accumulate, share, micro, nmicro;
    long ni, last_opt_step, nw;
    detloss_hyp h_o2m, h_o2o;
    double *loss_res; /* backend: BACKEND_DETLOSS_RESULTS of this step's micro-batches */
    int e2e_updates;
    loader *train_ld, *val_ld;
    allreduce *ar; /* MPI (host memory) or NCCL (GPU): worker/allreduce.h */
    backend_event
        *grad_ev;        /* recorded when a gradient range is final: the all-reduce waits on it */
    bool ar_failed;      /* a mark_ready from the backward hook failed (message in err) */
    bool loader_primed;  /* the train loader has seen the global batches before this epoch */
    float *acc;          /* gradients of the earlier backwards of this optimizer step (backend) */
    bool acc_live;       /* acc holds something (else it counts as zero) */
    snapshot_parts snap; /* what a checkpoint holds of this worker (worker/snapshot.h) */
    batch_ring *ring;    /* GPU: page-locked batches uploaded ahead (worker/batch_ring.h) */
    loader_batch pre;    /* GPU: the next step's batch, taken during this step */
    int pre_rc, pre_slot;
    bool has_pre;
    char pre_err[512];
    step_phases ph; /* YOLO_PHASE_TIMES=1: where the steps go (worker/step_phases.h) */
    int test_stall_rank;
    double test_stall_s; /* YOLO_TEST_STALL_*: fault injection for the stall tests */
    char err[1024];
} worker;

static void fail_report(step_report *r, const char *msg) {
    r->ok = 0;
    snprintf(r->error, sizeof r->error, "%.199s", msg);
}

/* Backward hook on the micro-batch that completes an optimizer step: each layer's gradient range
 * is final, so its bucket can start reducing while backward goes on with the layers before it. */
static void grad_ready(void *ctx, size_t first, size_t count) {
    worker *w = ctx;
    if (w->acc_live) {
        float *g = model_grads(w->m) + first;
        backend_add(w->be, count, w->acc + first, g, g);
    }
    backend_event_record(w->be, w->grad_ev); /* after the add: the range is final there */
    if (!w->ar_failed && allreduce_mark_ready(w->ar, first, count, w->err, sizeof w->err) != 0)
        w->ar_failed = true;
}

/* Forward, loss and backward of one micro-batch; the loss items are added to w->loss_res on the
 * backend. The head-output gradient is scaled by the number of workers: the all-reduce averages,
 * so the optimizer sees the SUM of the workers' gradients, as Ultralytics' DDP (loss x world_size,
 * then average) does.
 *
 * Accumulation over micro-batches and accumulation steps works as in PyTorch: each backward
 * computes its gradient from zero and it is ADDED to the running sum w->acc (grad += new), rather
 * than the kernels accumulating into the running sum; the last backward of an optimizer step (sync)
 * adds w->acc range by range in the hook, just before the range is all-reduced. So N micro-batches
 * on one worker round exactly like N workers whose gradients the all-reduce sums (N = 2: bitwise).
 */
static void micro_step(worker *w, const loader_batch *b, const uint8_t *dev_images, int first,
                       int n, bool sync) {
    size_t px = (size_t)w->a.imgsz * w->a.imgsz * 3;
    /* This micro-batch's targets, batch index rebased to 0. */
    float *t = xmalloc((size_t)(b->nlabels + 1) * 6 * sizeof *t);
    int nt = 0;
    for (int l = 0; l < b->nlabels; l++) {
        int bi = (int)b->labels[l * 6];
        if (bi < first || bi >= first + n) continue;
        memcpy(t + nt * 6, b->labels + l * 6, 6 * sizeof *t);
        t[nt * 6] = (float)(bi - first);
        nt++;
    }
    step_phases_mark(&w->ph, PHASE_OTHER);
    if (dev_images) /* a GPU: the batch is in the ring's device slot */
        model_forward_u8_device(w->m, dev_images + (size_t)first * px, true);
    else
        model_forward_u8(w->m, b->images + (size_t)first * px, true);
    step_phases_mark(&w->ph, PHASE_FORWARD);
    float o2m = 1, o2o = 0;
    if (model_num_branches(w->m) == 2)
        detloss_e2e_weights(w->e2e_updates, (int)w->a.epochs, &o2m, &o2o);
    /* The loss runs on the backend: it writes the head gradients, only the items come back. */
    head_loss(w->m,
              &(head_loss_args){.h_o2m = &w->h_o2m,
                                .h_o2o = &w->h_o2o,
                                .o2m = o2m,
                                .o2o = o2o,
                                .img_h = (int)w->a.imgsz,
                                .img_w = (int)w->a.imgsz,
                                .ntargets = nt,
                                .targets = t,
                                .grad_scale = (float)w->W,
                                .grad = true},
              w->loss_res);
    step_phases_mark(&w->ph, PHASE_LOSS);
    /* Gradients accumulate locally over micro-batches and accumulation steps; only the backward
     * that completes an optimizer step feeds the all-reduce. */
    if (sync) {
        if (allreduce_begin(w->ar, w->err, sizeof w->err) != 0) w->ar_failed = true;
        model_set_grad_ready_hook(w->m, grad_ready, w);
    }
    model_backward_from_head_grads(w->m);
    model_set_grad_ready_hook(w->m, NULL, NULL);
    if (!sync) { /* add this backward's gradient to the running sum, start the next from zero */
        size_t np = model_num_params(w->m);
        float *g = model_grads(w->m);
        if (!w->acc) w->acc = backend_alloc(w->be, np * sizeof *w->acc);
        if (w->acc_live)
            backend_accumulate(w->be, np, g, w->acc);
        else
            backend_copy(w->be, w->acc, g, np * sizeof *g);
        w->acc_live = true;
        model_zero_grad(w->m);
    }
    step_phases_mark(&w->ph, PHASE_BACKWARD);
    free(t);
}

/* Optimizer step (Ultralytics order): finish averaging gradients over workers (the buckets were
 * started during backward), clip the global norm at 10, step, zero the gradients, update the EMA.
 */
static int optimizer_step(worker *w, step_report *r) {
    allreduce_stats as = {0};
    if (w->ar_failed || allreduce_wait(w->ar, &as, w->err, sizeof w->err) != 0) return -1;
    r->comm_exposed_s += as.exposed_s;
    r->comm_total_s += as.comm_s;
    step_phases_mark(&w->ph, PHASE_REDUCE);
    double d = ema_advance(&w->ema); /* ModelEMA over the parameters and the BN buffers */
    /* clip, step, zero the gradients and blend the parameters into the EMA: one pass (CPU) */
    backend_optim_update(w->be, &w->opt, model_params(w->m), model_grads(w->m), OPTIM_CLIP_MAX_NORM,
                         model_params(w->ema_m), d);
    step_phases_mark(&w->ph, PHASE_OPTIM);
    w->acc_live = false;
    backend_ema_blend(w->be, model_buffers(w->ema_m), model_buffers(w->m),
                      model_num_buffer_floats(w->m), d);
    step_phases_mark(&w->ph, PHASE_EMA);
    return 0;
}

/* The batch of the next step: the one taken ahead during the last step (GPU), else the loader's
 * next. On a GPU its images go to a ring slot (*slot) and start uploading. */
static int step_batch(worker *w, loader_batch *b, int *slot) {
    *slot = -1;
    if (w->has_pre) {
        w->has_pre = false;
        *b = w->pre;
        *slot = w->pre_slot;
        if (w->pre_rc != 0) snprintf(w->err, sizeof w->err, "%s", w->pre_err);
        return w->pre_rc;
    }
    if (loader_next(w->train_ld, b, w->err, sizeof w->err) != 0) return -1;
    if (w->ring) *slot = batch_ring_put(w->ring, b->images, (size_t)b->n * b->h * b->w * 3);
    return 0;
}

/* GPU: once a step's work is enqueued, take the next batch and start its upload, so both overlap
 * the step's compute. (A run that stops after this step drops it: stopping ends the run.) */
static void take_ahead(worker *w) {
    if (!w->ring) return;
    w->has_pre = true;
    w->pre_rc = loader_next(w->train_ld, &w->pre, w->pre_err, sizeof w->pre_err);
    if (w->pre_rc == 0)
        w->pre_slot =
            batch_ring_put(w->ring, w->pre.images, (size_t)w->pre.n * w->pre.h * w->pre.w * 3);
}

/* The train loader's CPU seconds so far, summed over its stages and threads. */
static double loader_cpu_seconds(loader *L) {
    stage_times t;
    loader_stage_times(L, &t);
    double s = 0;
    for (int k = 0; k < STAGE_COUNT; k++) s += t.s[k];
    return s;
}

/* Trains steps first_step.. of an epoch. idx: the global batches (h->history before the epoch,
 * then h->steps of it, share x W each); this worker loads slice wrank of each. *halt: the
 * coordinator asked to stop here without validating (CTRL_STOP); the epoch is left unfinished. */
static int train_epoch(worker *w, const epoch_header *h, const int32_t *idx, bool *halt) {
    loader_set_mosaic(w->train_ld, h->mosaic ? w->a.mosaic : 0.0);
    int B = h->share * w->W;
    const int32_t *plan = idx + (size_t)h->history * B;
    if (!w->loader_primed) { /* the first epoch of this process: mosaic pools reach back */
        for (int s = 0; s < h->history; s++)
            if (loader_note_step(w->train_ld, idx + (size_t)s * B, B, w->err, sizeof w->err))
                return -1;
        for (int s = h->first_step > 15 ? h->first_step - 15 : 0; s < h->first_step; s++)
            if (loader_note_step(w->train_ld, plan + (size_t)s * B, B, w->err, sizeof w->err))
                return -1;
        w->loader_primed = true;
    }
    for (int s = h->first_step; s < h->steps; s++)
        if (loader_submit_part(w->train_ld, (int64_t)h->epoch * h->steps + s, h->epoch,
                               plan + (size_t)s * B, B, w->wrank * h->share, h->share, w->err,
                               sizeof w->err) != 0)
            return -1;
    /* each epoch: 8.4.190's warmup length follows `time`'s re-estimated epochs */
    w->nw = sched_warmup_iters(&w->sc, h->steps);
    step_phases_epoch_begin(&w->ph, loader_cpu_seconds(w->train_ld));
    for (int s = h->first_step; s < h->steps; s++) {
        step_report r = {.epoch = h->epoch, .step = s, .worker = w->wrank, .ok = 1};
        loader_batch b;
        int slot;
        step_phases_start(&w->ph);
        if (step_batch(w, &b, &slot) != 0)
            fail_report(&r, w->err);
        else {
            step_phases_mark(&w->ph, PHASE_WAIT);
            r.stall_s = b.stall_s;
            double t1 = now_seconds();
            w->accumulate = sched_apply(&w->sc, h->epoch, w->ni, w->nw, w->accumulate, &w->opt);
            bool opt_step = w->ni - w->last_opt_step >= w->accumulate;
            backend_zero(w->be, w->loss_res, BACKEND_DETLOSS_RESULTS * sizeof *w->loss_res);
            const uint8_t *dev = w->ring ? batch_ring_take(w->ring, slot) : NULL;
            for (int j = 0; j < w->nmicro; j++)
                micro_step(w, &b, dev, j * w->micro, w->micro, opt_step && j == w->nmicro - 1);
            r.images = b.n;
            r.instances = b.nlabels;
            if (w->ring) batch_ring_release(w->ring, slot);
            /* before the all-reduce wait: the next batch's loading and upload overlap backward */
            if (s + 1 < h->steps) take_ahead(w); /* b is gone from here on */
            if (opt_step) {
                if (optimizer_step(w, &r) != 0) fail_report(&r, w->err);
                w->last_opt_step = w->ni;
            }
            w->ni++;
            double res[BACKEND_DETLOSS_RESULTS]; /* the step's one copy to the host */
            backend_to_host(w->be, res, w->loss_res, sizeof res);
            for (int k = 0; k < 3; k++)
                r.loss[k] = (float)(res[BACKEND_DETLOSS_ITEMS + k] / w->nmicro);
            r.compute_s = now_seconds() - t1 - r.comm_exposed_s;
            for (int k = 0; k < 3 && k < w->opt.ngroups; k++) r.lr[k] = w->opt.group[k].lr;
            step_phases_mark(&w->ph, PHASE_OTHER);
        }
        r.signal = 0;
        if (w->test_stall_rank == w->rank && s == 1) { /* once: after the all-reduce, so only */
            w->test_stall_rank = -1;                   /* this rank's report is late */
            /* the line tells a test that steps surely remain; a stop signal ends the stall */
            log_info("test: rank %d stalls %g s after epoch %d step %d (YOLO_TEST_STALL_*)",
                     w->rank, w->test_stall_s, h->epoch + 1, s + 1);
            for (double t = 0; t < w->test_stall_s && !(r.signal = coord_watch_take_signal());
                 t += 0.05)
                usleep(50000);
        }
        if (!r.signal) r.signal = coord_watch_take_signal();
        CHECK_MPI(MPI_Send(&r, sizeof r, MPI_BYTE, 0, TAG_REPORT, MPI_COMM_WORLD));
        int32_t word;
        coord_watch_wait(TAG_CONTROL, "the answer to its step report");
        CHECK_MPI(
            MPI_Recv(&word, 1, MPI_INT32_T, 0, TAG_CONTROL, MPI_COMM_WORLD, MPI_STATUS_IGNORE));
        step_phases_mark(&w->ph, PHASE_REPORT);
        if (word == CTRL_ABORT) w->aborted = true;  /* the coordinator said why */
        if (word == CTRL_ABORT || !r.ok) return -1; /* the job ends: a batch taken ahead too */
        if (word == CTRL_SAVE || word == CTRL_STOP) snapshot_send(&w->snap);
        if (word == CTRL_STOP) *halt = true;
        if (word == CTRL_STOP || word == CTRL_END_EPOCH) break;
    }
    w->has_pre = false; /* a batch taken ahead of a stop is dropped: stopping ends the run */
    step_phases_epoch_end(&w->ph, h->epoch, loader_cpu_seconds(w->train_ld));
    return 0;
}

/* One rectangular val batch done: a heartbeat, so the coordinator tells a long validation from a
 * hung worker (common/protocol.h, TAG_VAL_PROGRESS). */
static void val_heartbeat(void *ctx) {
    int32_t *batches = ctx;
    ++*batches;
    CHECK_MPI(MPI_Send(batches, 1, MPI_INT32_T, 0, TAG_VAL_PROGRESS, MPI_COMM_WORLD));
}

/* Validation of this worker's share (when the coordinator asks), then the training state for the
 * epoch's checkpoint version (worker/snapshot.h). BN running stats drift per worker, so worker
 * 0's EMA buffers are broadcast first, as Ultralytics does before validating. */
static int end_epoch(worker *w) {
    val_header vh;
    coord_watch_wait(TAG_VAL_HEADER, "the validation plan");
    CHECK_MPI(
        MPI_Recv(&vh, sizeof vh, MPI_BYTE, 0, TAG_VAL_HEADER, MPI_COMM_WORLD, MPI_STATUS_IGNORE));
    size_t nb = model_num_buffer_floats(w->ema_m);
    float *bufs = xmalloc((nb + 1) * sizeof *bufs);
    model_buffers_to_host(w->ema_m, bufs);
    CHECK_MPI(MPI_Bcast(bufs, (int)nb, MPI_FLOAT, 0, w->wcomm));
    model_buffers_from_host(w->ema_m, bufs);
    free(bufs);
    if (vh.count >= 0) {
        int32_t *idx = xmalloc((size_t)(vh.count + 1) * sizeof *idx);
        val_shape *shapes = xmalloc((size_t)(vh.batches + 1) * sizeof *shapes);
        CHECK_MPI(MPI_Recv(idx, vh.count, MPI_INT32_T, 0, TAG_VAL_PLAN, MPI_COMM_WORLD,
                           MPI_STATUS_IGNORE));
        CHECK_MPI(MPI_Recv(shapes, 3 * vh.batches, MPI_INT32_T, 0, TAG_VAL_PLAN, MPI_COMM_WORLD,
                           MPI_STATUS_IGNORE));
        const ul_behaviour *beh = ul_behaviour_of(w->a.ultralytics);
        int32_t heartbeats = 0;
        validator v = {.m = w->ema_m,
                       .ld = w->val_ld,
                       .chunk = VAL_CHUNK,
                       .nc = w->job.nc,
                       .imgsz = (int)w->a.imgsz,
                       .loss_res = w->loss_res,
                       .h_o2m = &w->h_o2m,
                       .h_o2o = &w->h_o2o,
                       .one2one =
                           model_num_branches(w->ema_m) == 2 && train_args_val_one2one(&w->a),
                       .match = beh->match_greedy ? VAL_MATCH_GREEDY : VAL_MATCH_IOU_SORTED,
                       .conf = (float)w->a.conf,
                       .iou = (float)w->a.iou,
                       .max_det = (int)w->a.max_det,
                       .batch_done = val_heartbeat,
                       .batch_ctx = &heartbeats};
        val_summary s;
        val_record *recs = NULL;
        val_plot_data plots;
        val_plot_data_init(&plots, w->job.nc);
        plots.all = (vh.plots & VAL_SEND_ALL_PREDICTIONS) != 0;
        int64_t *counts = xcalloc(2 * (size_t)w->job.nc, sizeof *counts);
        val_timing vt = {0};
        if (w->ph.on) v.timing = &vt;
        double t_val = now_seconds();
        validate_run(&v, 0, idx, vh.count, shapes, vh.batches, &s, &recs, counts,
                     vh.plots ? &plots : NULL, w->err, sizeof w->err);
        if (w->ph.on)
            log_info("phases: validation %.3f s of %d images: loader CPU %.3f, inference %.3f, "
                     "loss %.3f, postprocess %.3f",
                     now_seconds() - t_val, vt.images, vt.preprocess, vt.inference, vt.loss,
                     vt.postprocess);
        CHECK_MPI(MPI_Send(&s, sizeof s, MPI_BYTE, 0, TAG_VAL_SUMMARY, MPI_COMM_WORLD));
        CHECK_MPI(MPI_Send(recs, s.records * (int)sizeof *recs, MPI_BYTE, 0, TAG_VAL_RECORDS,
                           MPI_COMM_WORLD));
        CHECK_MPI(MPI_Send(counts, 2 * w->job.nc, MPI_INT64_T, 0, TAG_VAL_COUNTS, MPI_COMM_WORLD));
        if (vh.plots) {
            int64_t nd = (int64_t)plots.ndets;
            CHECK_MPI(MPI_Send(plots.confusion, (w->job.nc + 1) * (w->job.nc + 1), MPI_INT64_T, 0,
                               TAG_VAL_PLOTS, MPI_COMM_WORLD));
            CHECK_MPI(MPI_Send(&nd, 1, MPI_INT64_T, 0, TAG_VAL_PLOTS, MPI_COMM_WORLD));
            CHECK_MPI(MPI_Send(plots.dets, (int)(nd * (int64_t)sizeof *plots.dets), MPI_BYTE, 0,
                               TAG_VAL_PLOTS, MPI_COMM_WORLD));
        }
        val_plot_data_free(&plots);
        free(recs);
        free(counts);
        free(shapes);
        free(idx);
        if (!s.ok) return -1;
    }
    w->e2e_updates++; /* counted before the state is sent: the version resumes the next epoch */
    snapshot_send(&w->snap);
    return 0;
}

/* The model and its EMA copy from the coordinator's yaml text; Detect's class branch at the width
 * of the weights the run starts from when their head inputs are this model's (fine-tuning,
 * worker/pretrained.h; a resumed run: the width its version has), else the yaml rule. */
static int build_models(worker *w) {
    const train_args *a = &w->a;
    model_spec spec = {.yaml = w->model_msg,
                       .yaml_text = w->model_msg + strlen(w->model_msg) + 1,
                       .nc = (int)w->job.nc};
    w->m = model_create_spec(w->be, &spec, (uint64_t)a->seed, w->err, sizeof w->err);
    if (!w->m) return -1;
    const model_yaml *y = model_config(w->m);
    w->rule_width = w->cls_width = model_yaml_cls_width_rule(y);
    if (w->job.cls_width > 0)
        w->cls_width = pretrained_cls_width(y->layers[y->nlayers - 1].ch, w->rule_width,
                                            w->job.head_ch, w->job.cls_width);
    if (w->cls_width != w->rule_width) {
        model_free(w->m);
        spec.cls_width = w->cls_width;
        w->m = model_create_spec(w->be, &spec, (uint64_t)a->seed, w->err, sizeof w->err);
        if (!w->m) return -1;
    }
    spec.cls_width = w->cls_width;
    w->ema_m = model_create_spec(w->be, &spec, (uint64_t)a->seed, w->err, sizeof w->err);
    return w->ema_m ? 0 : -1;
}

static int setup(worker *w) {
    train_args *a = &w->a;
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    int threads = a->threads > 0 ? (int)a->threads : cores / w->W > 1 ? (int)(cores / w->W) : 1;
    kernels_set_threads(threads); /* the host's own kernels (validation's NMS) */
    /* device=: the CPU backend, or the CUDA backend on this worker's GPU (worker/device.h) */
    w->be = device_backend_create(a, w->wcomm, threads, w->err, sizeof w->err);
    if (!w->be) return -1;
    bool fp16;
    if (backend_device(w->be) >= 0 && w->wrank == 0) {
        backend_precision p = device_precision(a, &fp16);
        log_info("device=%s: %d worker(s), one GPU each; arithmetic %s%s", a->device, w->W,
                 backend_precision_name(p),
                 fp16 ? " (amp=fp16: this engine's mixed precision is bf16, which needs no loss "
                        "scaling)"
                      : "");
    }
    w->share = (int)a->batch / w->W;
    w->micro = a->micro_batch ? (int)a->micro_batch : w->share;
    w->nmicro = w->share / w->micro;
    /* Same seed on every worker: identical initial weights without a broadcast. */
    if (build_models(w) != 0) return -1;
    /* refuse a batch that cannot fit before allocating it (the coordinator checked the same
     * with `worker info` when it launched the job itself) */
    mem_budget mb;
    if (mem_budget_train(w->m, w->share, w->micro, (int)a->imgsz, &mb, w->err, sizeof w->err) ||
        device_check_memory(a, &mb, w->local_workers, backend_device(w->be), w->err, sizeof w->err))
        return -1;
    /* the CPU's bf16 convolutions (amp, worker/device.h) train the model; the EMA model, which
     * validation runs, stays fp32: the metrics (and best.h5) are those of the weights as val,
     * predict and export use them, and `val` reproduces them. On a GPU the backend's precision
     * says, and with amp the model trains the same bf16 graph as the CPU's (its activations that
     * only convolutions read stored in bf16). */
    char why[sizeof w->info.precision];
    if (backend_device(w->be) < 0) {
        model_set_conv_precision(w->m, device_cpu_precision(a, w->bf16_native, why, sizeof why));
    } else {
        const backend_cuda_opts *co = backend_cuda_options(w->be);
        backend_precision p = co ? co->precision : device_precision(a, NULL);
        conv2d_prec cp = device_gpu_conv_precision(w->be, p);
        model_set_conv_precision(w->m, cp);
        /* the first word is the arithmetic (resume_warn_precision_change compares it) */
        snprintf(why, sizeof why, "%s (device=%s, amp=%s%s)", backend_precision_name(p), a->device,
                 a->amp, cp == CONV2D_BF16 ? "; bf16 activations for the convolutions" : "");
    }
    if (model_plan(w->m, w->micro, (int)a->imgsz, (int)a->imgsz, w->err, sizeof w->err) != 0)
        return -1;
    long n_train = train_args_train_images(a, w->job.n_train);
    if (train_setup_optimizer(w->m, a, n_train, &w->opt, &w->sc, &w->accumulate, &w->info, w->err,
                              sizeof w->err) != 0)
        return -1;
    snprintf(w->info.precision, sizeof w->info.precision, "%s", why);
    ema_init(&w->ema);
    w->ni = 0;
    w->last_opt_step = -1;
    w->nw = -1;
    const model_yaml *y = model_config(w->m);
    w->loss_res = backend_alloc(w->be, BACKEND_DETLOSS_RESULTS * sizeof *w->loss_res);
    train_setup_loss(a, (int)w->job.nc, y->reg_max, &w->h_o2m, &w->h_o2o);
    w->h_o2m.cls_weight = w->h_o2o.cls_weight = w->cls_w;
    loader_config lc = loader_config_defaults();
    lc.imgsz = (int)a->imgsz;
    lc.augment = 1;
    lc.aug.mosaic = a->mosaic;
    lc.aug.degrees = a->degrees;
    lc.aug.translate = a->translate;
    lc.aug.scale = a->scale;
    lc.aug.shear = a->shear;
    lc.aug.perspective = a->perspective;
    lc.aug.flipud = a->flipud;
    lc.aug.fliplr = a->fliplr;
    lc.aug.hsv_h = a->hsv_h;
    lc.aug.hsv_s = a->hsv_s;
    lc.aug.hsv_v = a->hsv_v;
    lc.aug.warp_from_centre = ul_behaviour_of(a->ultralytics)->warp_from_centre;
    lc.seed = (uint64_t)a->seed;
    lc.nthreads = (int)a->loader_threads;
    if (!strcmp(a->cache, "ram")) {
        /* every worker on this machine keeps its own copy: the memory check counts them */
        MPI_Comm node;
        CHECK_MPI(MPI_Comm_split_type(w->wcomm, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &node));
        CHECK_MPI(MPI_Comm_size(node, &lc.cache_sharers));
        CHECK_MPI(MPI_Comm_free(&node));
        lc.cache = LOADER_CACHE_RAM;
    }
    lc.depth = 4;
    lc.max_batch = w->share;
    w->train_ld = loader_create(a->data, SPLIT_TRAIN, &lc, w->err, sizeof w->err);
    if (!w->train_ld) return -1;
    lc.augment = 0;
    lc.max_batch = VAL_CHUNK;
    lc.max_side = (int)a->imgsz + 32; /* rectangular val batches: pad 0.5 stride adds up to 32 */
    if (w->job.n_val > 0) {
        w->val_ld = loader_create(a->data, SPLIT_VAL, &lc, w->err, sizeof w->err);
        if (!w->val_ld) return -1;
    }
    size_t bucket = (size_t)(a->bucket_mb * 1024 * 1024);
    /* MPI reduces the CPU backend's memory (host memory, also in its device-memory test mode),
     * NCCL the memory of a GPU backend */
    w->grad_ev = backend_event_create(w->be);
    if (backend_device(w->be) < 0)
        w->ar = allreduce_create_mpi(w->wcomm, model_grads(w->m), model_num_params(w->m), bucket,
                                     ALLREDUCE_ORDER_BACKWARD, w->err, sizeof w->err);
    else
        w->ar = allreduce_create_nccl(w->wcomm, w->be, w->grad_ev, model_grads(w->m),
                                      model_num_params(w->m), bucket, ALLREDUCE_ORDER_BACKWARD,
                                      w->err, sizeof w->err);
    if (!w->ar) return -1;
    if (!backend_memory_is_host(w->be)) /* a GPU: the next batch uploads during this step */
        w->ring = batch_ring_create(w->be, 2, (size_t)w->share * a->imgsz * a->imgsz * 3);
    model_zero_grad(w->m);
    const char *sr = getenv("YOLO_TEST_STALL_RANK"), *ss = getenv("YOLO_TEST_STALL_SECONDS");
    w->test_stall_rank = sr ? atoi(sr) : -1;
    w->test_stall_s = ss ? atof(ss) : 0;
    w->snap = (snapshot_parts){.m = w->m,
                               .ema_m = w->ema_m,
                               .opt = &w->opt,
                               .ema = &w->ema,
                               .iterations = &w->ni,
                               .last_opt_step = &w->last_opt_step,
                               .warmup_iters = &w->nw,
                               .accumulate = &w->accumulate,
                               .e2e_updates = &w->e2e_updates,
                               .acc = &w->acc,
                               .acc_live = &w->acc_live,
                               .world_size = w->W,
                               .wrank = w->wrank};
    return 0;
}

int worker_train_main(void) {
    allreduce_tune_malloc();
    CHECK_MPI(MPI_Init(NULL, NULL));
    worker *w = xcalloc(1, sizeof *w);
    CHECK_MPI(MPI_Comm_rank(MPI_COMM_WORLD, &w->rank));
    char name[32];
    snprintf(name, sizeof name, "worker[%d]", w->rank);
    log_set_program(name);
    CHECK_MPI(MPI_Comm_split(MPI_COMM_WORLD, 1, w->rank, &w->wcomm));
    CHECK_MPI(MPI_Comm_rank(w->wcomm, &w->wrank));
    CHECK_MPI(MPI_Comm_size(w->wcomm, &w->W));
    coord_watch_start();
    if (w->rank == 0) /* the other ranks wait for a coordinator's go: this says no */
        log_error("rank 0 is a worker: start the job as mpirun -np 1 coordinator train ... : "
                  "-np N worker");
    int32_t go = 0;
    CHECK_MPI(MPI_Bcast(&go, 1, MPI_INT32_T, 0, MPI_COMM_WORLD));
    int rc = 0;
    if (go != 1) { /* 0: the coordinator refused and said why; 2: nothing to do */
        stop_signal_quiet();
        rc = go == 2 ? 0 : 2;
        goto out;
    }
    CHECK_MPI(MPI_Bcast(&w->a, sizeof w->a, MPI_BYTE, 0, MPI_COMM_WORLD));
    CHECK_MPI(MPI_Bcast(&w->job, sizeof w->job, MPI_BYTE, 0, MPI_COMM_WORLD));
    coord_watch_limit(w->a.stall_abort);
    if (w->job.protocol != PROTOCOL_VERSION) {
        log_error("rank %d: protocol version %d, coordinator speaks %d", w->rank, PROTOCOL_VERSION,
                  w->job.protocol);
        MPI_Abort(MPI_COMM_WORLD, 1);
    }
    /* the model to build: its name, a NUL, its yaml text (model_source_message) */
    w->model_msg = xcalloc((size_t)w->job.model_text_len + 2, 1);
    CHECK_MPI(MPI_Bcast(w->model_msg, w->job.model_text_len, MPI_CHAR, 0, MPI_COMM_WORLD));
    MPI_Comm node;
    CHECK_MPI(MPI_Comm_split_type(w->wcomm, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &node));
    CHECK_MPI(MPI_Comm_size(node, &w->local_workers));
    CHECK_MPI(MPI_Comm_free(&node));
    /* amp=True trains bf16 convolutions only if every worker's CPU multiplies bf16 natively: the
     * workers then all compute the same way */
    /* YOLO_TEST_CPU_NO_BF16: this CPU taken for one without (an AVX2-only CPU's default) */
    int native = getenv("YOLO_TEST_CPU_NO_BF16") ? 0 : bf16_cpu_has_native();
    CHECK_MPI(MPI_Allreduce(MPI_IN_PLACE, &native, 1, MPI_INT, MPI_MIN, w->wcomm));
    w->bf16_native = native != 0;
    /* The coordinator prints the first failure and creates nothing unless every worker is ready */
    step_phases_init(&w->ph);
    double t_setup = now_seconds();
    setup_report sr = {.ok = setup(w) == 0};
    if (w->ph.on) log_info("phases: setup %.3f s", now_seconds() - t_setup);
    if (!sr.ok) snprintf(sr.error, sizeof sr.error, "%.199s", w->err);
    /* nonblocking, as rank 0's (which watches the workers meanwhile): the two must match */
    MPI_Request req;
    CHECK_MPI(MPI_Igather(&sr, sizeof sr, MPI_BYTE, NULL, 0, MPI_BYTE, 0, MPI_COMM_WORLD, &req));
    CHECK_MPI(MPI_Wait(&req, MPI_STATUS_IGNORE));
    int32_t start = 0;
    CHECK_MPI(MPI_Bcast(&start, 1, MPI_INT32_T, 0, MPI_COMM_WORLD));
    if (!start) {
        stop_signal_quiet(); /* the coordinator prints the failure */
        rc = 2;
    }
    if (start) {
        run_prep prep;
        CHECK_MPI(MPI_Bcast(&prep, sizeof prep, MPI_BYTE, 0, MPI_COMM_WORLD));
        w->a.max_det = prep.max_det;
        if (prep.class_weights) {
            w->cls_w = xmalloc((size_t)w->job.nc * sizeof *w->cls_w);
            CHECK_MPI(MPI_Bcast(w->cls_w, w->job.nc, MPI_FLOAT, 0, MPI_COMM_WORLD));
            w->h_o2m.cls_weight = w->h_o2o.cls_weight = w->cls_w;
        }
        if (w->wrank == 0)
            CHECK_MPI(
                MPI_Send(&w->info, sizeof w->info, MPI_BYTE, 0, TAG_MODEL_INFO, MPI_COMM_WORLD));
    }
    /* fine-tuning: pretrained weights into the model and its EMA */
    if (start && w->job.pretrained &&
        pretrained_receive(w->m, w->ema_m, w->wrank, w->cls_width, w->rule_width, w->err,
                           sizeof w->err) != 0) {
        log_error("rank %d: %s", w->rank, w->err);
        MPI_Abort(MPI_COMM_WORLD, 1);
    }
    /* a resumed run: the checkpoint's state, after the coordinator has the model info */
    if (start && w->job.resume && snapshot_receive(&w->snap, w->err, sizeof w->err) != 0) {
        log_error("rank %d: %s", w->rank, w->err);
        MPI_Abort(MPI_COMM_WORLD, 1);
    }
    for (; start;) { /* the coordinator decides how many epochs (time=, stop): steps < 0 ends */
        epoch_header h;
        coord_watch_wait(TAG_EPOCH, "the next epoch");
        CHECK_MPI(
            MPI_Recv(&h, sizeof h, MPI_BYTE, 0, TAG_EPOCH, MPI_COMM_WORLD, MPI_STATUS_IGNORE));
        if (h.steps < 0) break;
        size_t B = (size_t)h.share * w->W;
        int32_t *idx = xmalloc(((size_t)h.history + h.steps) * B * sizeof *idx);
        CHECK_MPI(MPI_Recv(idx, (int)(h.history * B), MPI_INT32_T, 0, TAG_PLAN, MPI_COMM_WORLD,
                           MPI_STATUS_IGNORE));
        CHECK_MPI(MPI_Recv(idx + h.history * B, (int)(h.steps * B), MPI_INT32_T, 0, TAG_PLAN,
                           MPI_COMM_WORLD, MPI_STATUS_IGNORE));
        w->a.epochs = h.epochs; /* `time` may re-estimate the total */
        w->sc.epochs = h.epochs;
        bool halt = false;
        int r = train_epoch(w, &h, idx, &halt);
        free(idx);
        if (r != 0 || (!halt && end_epoch(w) != 0)) {
            if (!w->aborted) log_error("rank %d: %s", w->rank, w->err);
            rc = 1;
            break;
        }
    }
    int late = coord_watch_take_signal();
    if (late && rc == 0) /* nothing left to stop: the run is complete, so no resume (exit 0) */
        log_info("rank %d: %s came after its last step; the job finishes as planned", w->rank,
                 stop_signal_name(late));
    batch_ring_free(w->ring);
    allreduce_free(w->ar);
    if (w->be) backend_event_destroy(w->be, w->grad_ev);
    loader_destroy(w->train_ld);
    loader_destroy(w->val_ld);
    if (w->m) train_free_optimizer(w->m, &w->opt); /* a setup that failed may have no model */
    if (w->be) backend_free(w->be, w->acc);
    if (w->be) backend_free(w->be, w->loss_res);
    model_free(w->m);
    model_free(w->ema_m);
    backend_destroy(w->be);
    free(w->cls_w);
    free(w->model_msg);
out:
    MPI_Comm_free(&w->wcomm);
    free(w);
    MPI_Finalize();
    return rc;
}
