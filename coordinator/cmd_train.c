/* coordinator train: rank 0 of the MPMD job. Owns the config, the run directory, the shard plan,
 * the metrics files and the terminal; workers own the tensors (DESIGN.md section 2). */
#include "common/log.h"
#include "common/stop_signal.h"
#include "common/protocol.h"
#include "common/timer.h"
#include "common/train_args.h"
#include "coordinator/ckpt_store.h"
#include "coordinator/ckpt_transfer.h"
#include "coordinator/commands.h"
#include "coordinator/launch.h"
#include "coordinator/metric_sink.h"
#include "coordinator/model_source.h"
#include "coordinator/model_weights.h"
#include "coordinator/preflight.h"
#include "coordinator/progress.h"
#include "coordinator/rank_watch.h"
#include "coordinator/resume.h"
#include "coordinator/run_lock.h"
#include "coordinator/rundir.h"
#include "coordinator/runlog.h"
#include "coordinator/shard_plan.h"
#include "coordinator/telemetry.h"
#include "coordinator/train_prep.h"
#include "coordinator/train_state.h"
#include "dataio/dataset.h"
#include "dataio/loader.h"

#include <math.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* One step's reports (rank_watch: a dead or silent rank ends the job, named); -1 when a worker
 * reported a failure of its own (it said why). Stop signals the workers received are noted. */
static int gather_reports(train_state *st, step_report *r) {
    rank_watch_reports(st->workers, r);
    int rc = 0;
    for (int w = 0; w < st->workers; w++) {
        if (r[w].signal) train_state_note_signal(st, r[w].signal, w + 1);
        if (!r[w].ok) {
            r[w].error[sizeof r[w].error - 1] = 0;
            log_error("rank %d: %s", w + 1, r[w].error);
            rc = -1;
        }
    }
    return rc;
}

static void send_control(int workers, int32_t word) {
    for (int w = 1; w <= workers; w++)
        CHECK_MPI(MPI_Send(&word, 1, MPI_INT32_T, w, TAG_CONTROL, MPI_COMM_WORLD));
}

/* go = 0: the coordinator refused the job (it said why); 2: nothing to do. Workers exit. */
static void release_workers(int32_t go) {
    CHECK_MPI(MPI_Bcast(&go, 1, MPI_INT32_T, 0, MPI_COMM_WORLD));
}

/* The run folder: a resumed run's own, or project/name (a new one unless exist_ok), held with
 * the run lock so that no second run writes into it. 0, or 2 with the reason logged. */
static int open_run_dir(train_args *a, const resume_plan *plan) {
    char err[1024];
    if (plan->active && plan->run_dir[0]) {
        char w[2200];
        snprintf(a->save_dir, sizeof a->save_dir, "%s", plan->run_dir);
        snprintf(w, sizeof w, "%s/weights", a->save_dir);
        if (mkdir_p(w, err, sizeof err) != 0) {
            log_error("%s", err);
            return 2;
        }
    } else if (rundir_create(a->project, a->name, a->exist_ok, a->save_dir, sizeof a->save_dir, err,
                             sizeof err) != 0) {
        log_error("%s", err);
        return 2;
    }
    if (run_lock_acquire(a->save_dir, err, sizeof err) < 0) {
        log_error("%s", err);
        return 2;
    }
    ckpt_store_clean_temporaries(a->save_dir); /* we hold the lock: no write is under way */
    telemetry_remove_stale(a->save_dir);       /* endpoints of a coordinator killed earlier */
    launch_report_run_dir(a->save_dir);
    return 0;
}

/* One epoch's steps from `first` (> 0 when resumed mid-epoch). *stop: the run ends after this
 * epoch (time, stop); *halted: it ends now, without validating (ctl stop). */
static int train_steps(train_state *st, int epoch, int first, int n_train, int *steps, bool *stop,
                       bool *halted) {
    const train_args *a = st->args;
    int workers = st->workers;
    shard_plan plan;
    shard_plan_make(&plan, n_train, (int)a->batch, workers, (uint64_t)a->seed, epoch);
    *steps = plan.steps;
    bool off = train_prep_mosaic_closed(a, epoch, a->epochs, st->mosaic_off);
    if (off && !st->mosaic_off) log_info("Closing dataloader mosaic");
    st->mosaic_off = off;
    /* mosaic pools reach back 15 global batches, into the previous epoch: a worker that starts
     * here (a resumed run) notes them, so its batches are those of an uninterrupted run */
    shard_plan prev = {0};
    if (epoch > 0)
        shard_plan_make(&prev, n_train, (int)a->batch, workers, (uint64_t)a->seed, epoch - 1);
    epoch_header h = {.epoch = epoch,
                      .steps = plan.steps,
                      .share = (int)a->batch / workers,
                      .mosaic = !off,
                      .epochs = (int)a->epochs,
                      .first_step = first,
                      .history = prev.steps < 15 ? prev.steps : 15};
    /* every worker gets the whole epoch (it loads its slice of each global batch; mosaic
     * partners come from blocks of global positions, the same for any worker count) */
    for (int w = 0; w < workers; w++) {
        CHECK_MPI(MPI_Send(&h, sizeof h, MPI_BYTE, w + 1, TAG_EPOCH, MPI_COMM_WORLD));
        CHECK_MPI(MPI_Send(prev.order ? prev.order + (size_t)(prev.steps - h.history) * prev.batch
                                      : plan.order,
                           h.history * plan.batch, MPI_INT32_T, w + 1, TAG_PLAN, MPI_COMM_WORLD));
        CHECK_MPI(MPI_Send(plan.order, plan.steps * plan.batch, MPI_INT32_T, w + 1, TAG_PLAN,
                           MPI_COMM_WORLD));
    }
    if (epoch > 0) shard_plan_free(&prev);
    if (first == 0) memset(st->loss_sum, 0, sizeof st->loss_sum);
    progress pr = {.third_loss = st->loss_names[2]};
    progress_epoch_begin(&pr, epoch, (int)a->epochs, plan.steps, (int)a->imgsz);
    step_report *rep = xcalloc((size_t)workers, sizeof *rep);
    double t_epoch = now_seconds();
    int rc = 0;
    for (int s = first; s < plan.steps; s++) {
        if (gather_reports(st, rep) != 0) {
            send_control(workers, CTRL_ABORT);
            rc = 1;
            break;
        }
        double ips = (double)(s + 1 - first) * a->batch / (now_seconds() - t_epoch);
        int32_t word = train_state_control(st, epoch, s);
        /* time=H: checked after every step, as Ultralytics checks after every optimizer step */
        if (word != CTRL_STOP && a->time_hours > 0 &&
            now_seconds() - st->t_train > a->time_hours * 3600)
            word = CTRL_END_EPOCH;
        /* the answer first: the workers wait for it, and nothing below changes it */
        send_control(workers, word);
        int inst = 0;
        for (int w = 0; w < workers; w++) {
            inst += rep[w].instances;
            for (int k = 0; k < 3; k++) st->loss_sum[k] += rep[w].loss[k] / workers;
        }
        double mean[3];
        for (int k = 0; k < 3; k++) mean[k] = st->loss_sum[k] / (s + 1);
        progress_step(&pr, s, mean, inst, ips, false);
        train_state_step(st, epoch, s, plan.steps, rep, workers, mean, ips);
        if (word == CTRL_SAVE || word == CTRL_STOP)
            train_state_save_now(st,
                                 word == CTRL_SAVE ? "save"
                                 : st->stop_signal ? "signal"
                                                   : "stop",
                                 epoch, s, plan.steps);
        if (word == CTRL_STOP) *halted = true;
        if (word == CTRL_STOP || word == CTRL_END_EPOCH) {
            *stop = true;
            break;
        }
    }
    free(rep);
    progress_epoch_end(&pr);
    for (int k = 0; k < 3; k++) st->train_loss[k] = st->loss_sum[k] / plan.steps;
    shard_plan_free(&plan);
    return rc;
}

/* A resumed run: the version's state in memory before the workers start (so a damaged file is
 * refused before anything runs). NULL state for a fresh run. */
static int load_version(const resume_plan *plan, ckpt_file **f, ckpt_state **state) {
    *f = NULL;
    *state = NULL;
    if (!plan->active) return 0;
    char err[1024];
    *f = ckpt_open(plan->version_path, err, sizeof err);
    if (*f) *state = ckpt_state_load(*f, err, sizeof err);
    if (*state) return 0;
    log_error("resume: %s", err);
    ckpt_close(*f);
    *f = NULL;
    return 2;
}

static bool workers_released; /* they left cleanly: no MPI_Abort on a late failure */

/* What is left to finish when a rank has failed (rank_watch_on_fail; ctx: the train_state once
 * there is one): the versions already queued (each written whole or not at all), the sinks, the
 * endpoints, train.log. */
static void finish_after_rank_failure(void *ctx) {
    train_state *st = ctx;
    if (st) {
        train_state_flush_versions(st);
        metric_sinks_close(st->sinks, false);
        st->sinks = NULL;
        train_state_finish(st, false, 0);
        rank_watch_telemetry(NULL);
        telemetry_close(st->tel);
        st->tel = NULL;
    }
    runlog_close();
}

/* A second Ctrl-C ends the process from its signal handler: its line goes to the terminal and
 * train.log directly, and the endpoints go with it. */
static void prepare_ending_at_once(telemetry *tel) {
    int term, file;
    runlog_raw_fds(&term, &file);
    stop_signal_write_on_exit(term);
    stop_signal_write_on_exit(file);
    for (int i = 0; tel && telemetry_file(tel, i); i++)
        stop_signal_unlink_on_exit(telemetry_file(tel, i));
}

/* The end of the run: the summary, and the event that says how it ended. */
static int finish_run(train_state *st, int rc, bool halted) {
    int vrc = train_state_flush_versions(st);
    metric_sinks_close(st->sinks, rc == 0 && vrc == 0);
    st->sinks = NULL;
    if (rc == 0 && vrc == 0 && halted && st->stop_signal) /* saved, stopped: resume continues */
        return train_state_finish_stopped(st);
    const char *dir = st->args->save_dir;
    train_state_finish(st, rc == 0, now_seconds() - st->t_train);
    if (rc == 0 && halted) printf("stopped; continue with: coordinator train resume=%s\n", dir);
    if (rc == 0 && vrc != 0) rc = 1;
    if (st->tel) {
        char msg[2300];
        if (rc == 0)
            snprintf(msg, sizeof msg, "%d epoch(s) completed; results in %s", st->epochs_done, dir);
        else
            snprintf(msg, sizeof msg, "training failed after %d epoch(s); what was saved is in %s",
                     st->epochs_done, dir);
        telemetry_publish_finished(st->tel, rc == 0, msg);
    }
    return rc;
}

/* After the workers' setup: the first failure (one line), or the run folder (created and locked),
 * train.log and args.yaml. Then the start word for every rank. 0, or 2 when nothing may start. */
static int start_run(train_args *a, int workers, const resume_plan *plan) {
    char err[1024];
    setup_report *reps = xcalloc((size_t)workers + 1, sizeof *reps);
    setup_report mine = {.ok = 1};
    MPI_Request req; /* the workers' is an MPI_Igather too: blocking ones would not match */
    CHECK_MPI(MPI_Igather(&mine, sizeof mine, MPI_BYTE, reps, sizeof *reps, MPI_BYTE, 0,
                          MPI_COMM_WORLD, &req));
    rank_watch_collective(&req, "setup report");
    int rc = 0, failed = 0, first = 0;
    for (int r = 1; r <= workers; r++)
        if (!reps[r].ok && !failed++) first = r;
    if (failed) {
        reps[first].error[sizeof reps[first].error - 1] = 0;
        log_error("rank %d: %s%s", first, reps[first].error,
                  failed > 1 ? " (and on other ranks)" : "");
        rc = 2;
    } else if ((rc = open_run_dir(a, plan)) == 0) {
        if (runlog_open(a->save_dir, err, sizeof err) != 0) log_warn("%s (no train.log)", err);
        rank_watch_on_fail(finish_after_rank_failure, NULL);
        prepare_ending_at_once(NULL);
        rank_watch_log_ranks();
        if (train_state_write_args(a, err, sizeof err) != 0) {
            log_error("%s", err);
            rc = 2;
        }
    }
    free(reps);
    int32_t start = rc == 0;
    CHECK_MPI(MPI_Bcast(&start, 1, MPI_INT32_T, 0, MPI_COMM_WORLD));
    return rc;
}

static int run(train_args *a, int workers, const resume_plan *plan) {
    char err[1024];
    /* Everything checkable before any rank starts work or anything is created (our own launcher
     * checked and warned already: this pass is quiet). */
    int flags = (getenv("YOLO_PREFLIGHT_DONE") ? PREFLIGHT_QUIET : 0) |
                (plan->active && plan->run_dir[0] ? PREFLIGHT_RESUME : 0);
    dataset *ds;
    if (preflight_train(a, workers, flags, NULL, &ds, err, sizeof err) != 0) {
        log_error("%s", err);
        release_workers(0);
        return 2;
    }
    job_info job = {.protocol = PROTOCOL_VERSION,
                    .nc = dataset_num_classes(ds),
                    .n_train = dataset_split_size(ds, SPLIT_TRAIN),
                    .n_val = dataset_split_size(ds, SPLIT_VAL),
                    .workers = workers};
    a->nc = job.nc;
    ckpt_file *vf = NULL;
    ckpt_state *state = NULL;
    if (load_version(plan, &vf, &state) != 0) {
        dataset_close(ds);
        release_workers(0);
        return 2;
    }
    /* the model the workers build and the weights they start from (a resumed run: its
     * version's architecture and class-branch width) */
    model_source src = {0};
    model_weights pw = {0};
    if (model_source_resolve(a, vf ? ckpt_file_meta(vf) : NULL, &src, err, sizeof err) != 0 ||
        model_source_job(&src, ul_behaviour_of(a->ultralytics)->finetune_head_rebuild, vf, &job,
                         &pw, err, sizeof err) != 0) {
        log_error("%s", err);
        model_source_free(&src);
        model_weights_free(&pw);
        ckpt_state_free(state);
        ckpt_close(vf);
        dataset_close(ds);
        release_workers(0);
        return 2;
    }
    job.resume = state != NULL;
    char *model_msg = model_source_message(&src, &job.model_text_len);
    release_workers(1);
    CHECK_MPI(MPI_Bcast(a, sizeof *a, MPI_BYTE, 0, MPI_COMM_WORLD));
    CHECK_MPI(MPI_Bcast(&job, sizeof job, MPI_BYTE, 0, MPI_COMM_WORLD));
    CHECK_MPI(MPI_Bcast(model_msg, job.model_text_len, MPI_CHAR, 0, MPI_COMM_WORLD));
    free(model_msg);
    int rc = start_run(a, workers, plan);
    if (rc != 0) {
        model_source_free(&src);
        model_weights_free(&pw);
        ckpt_state_free(state);
        ckpt_close(vf);
        dataset_close(ds);
        return rc;
    }
    /* Settled now that train.log records what they print; args.yaml kept the max_det the user
     * gave, as Ultralytics' does. */
    int n_train = (int)train_args_train_images(a, job.n_train);
    train_prep_max_det(a, ds, n_train);
    float *cls_w = xmalloc((size_t)(job.nc + 1) * sizeof *cls_w);
    run_prep prep = {.max_det = a->max_det,
                     .class_weights = train_prep_class_weights(a, ds, n_train, cls_w)};
    CHECK_MPI(MPI_Bcast(&prep, sizeof prep, MPI_BYTE, 0, MPI_COMM_WORLD));
    if (prep.class_weights) CHECK_MPI(MPI_Bcast(cls_w, job.nc, MPI_FLOAT, 0, MPI_COMM_WORLD));
    free(cls_w);
    log_info("training %s on %s (%d train / %d val images, %d classes) with %d worker(s), "
             "batch %ld, imgsz %ld%s%s%s, Ultralytics %s semantics -> %s",
             a->model, a->data, n_train, job.n_val, job.nc, workers, a->batch, a->imgsz,
             plan->imgsz_from[0] ? " (the training imgsz of " : "", plan->imgsz_from,
             plan->imgsz_from[0] ? ")" : "", ul_version_name(a->ultralytics), a->save_dir);
    model_info mi;
    rank_watch_recv(&mi, sizeof mi, MPI_BYTE, 1, TAG_MODEL_INFO, "model info");
    mi.precision[sizeof mi.precision - 1] = '\0';
    log_info("precision: %s", mi.precision);
    train_prep_print_optimizer(a, &mi);
    if (a->nms == 0 && mi.branches == 1) /* Ultralytics' end2end setter says the same */
        log_warn("nms=False: this model has no one-to-one head; using one-to-many outputs.");

    /* fine-tuning: the pretrained weights into every worker's model (cls_remap: 8.4.190) */
    bool remap = a->cls_remap && ul_behaviour_of(a->ultralytics)->finetune_head_rebuild;
    if (job.pretrained && model_source_broadcast(&pw, ds, remap) != 0) {
        ckpt_state_free(state);
        ckpt_close(vf);
        model_source_free(&src);
        model_weights_free(&pw);
        dataset_close(ds);
        return 1;
    }
    model_weights_free(&pw);
    train_state st;
    const ckpt_meta *resumed = vf ? ckpt_file_meta(vf) : NULL;
    int ir = train_state_init(&st, a, ds, workers, resumed, plan, &src, err, sizeof err);
    model_source_free(&src);
    if (ir != 0) {
        log_error("%s", err);
        ckpt_state_free(state);
        ckpt_close(vf);
        dataset_close(ds);
        return 1;
    }
    st.loss_names[2] = train_prep_third_loss(a, &mi);
    snprintf(st.precision, sizeof st.precision, "%.*s", (int)sizeof mi.precision - 1, mi.precision);
    if (resumed) resume_warn_precision_change(plan, resumed->precision, st.precision);
    rank_watch_on_fail(finish_after_rank_failure, &st);
    if (state) ckpt_state_broadcast(state, workers); /* the workers restore it after setup */
    int epoch0, step0;
    train_state_start(&st, resumed, &epoch0, &step0);
    if (resumed) a->epochs = resumed->epochs; /* the count in force (time= may have changed it) */
    ckpt_state_free(state);
    loader_io_lock(); /* the checkpoint writer thread runs: HDF5 calls take the HDF5 lock */
    ckpt_close(vf);
    loader_io_unlock();
    /* Live progress and control (coordinator watch / ctl); training goes on without it. */
    st.tel = telemetry_open(a->save_dir, &(telemetry_opts){0}, err, sizeof err);
    if (!st.tel) log_warn("telemetry off: %s", err);
    rank_watch_telemetry(st.tel);
    prepare_ending_at_once(st.tel);
    sink_run sinks_run = {.save_dir = a->save_dir, .args = a, .ds = ds, .workers = workers};
    st.sinks = metric_sinks_for_training(&sinks_run, st.tel);
    bool stop = false, halted = false;
    for (int epoch = epoch0; epoch < a->epochs && !stop && rc == 0; epoch++) {
        if (train_state_signal_at_boundary(&st)) { /* the last version is the epoch's */
            halted = true;
            break;
        }
        bool final = false;
        int steps = 0;
        rc = train_steps(&st, epoch, epoch == epoch0 ? step0 : 0, n_train, &steps, &final, &halted);
        if (rc || halted) break;
        if (train_state_end_epoch(&st, epoch, steps, final || epoch + 1 == a->epochs, &stop, err,
                                  sizeof err) != 0) {
            log_error("%s", err);
            rc = 1;
        }
    }
    if (rc == 0) {
        epoch_header done = {.steps = -1};
        for (int w = 0; w < workers; w++)
            CHECK_MPI(MPI_Send(&done, sizeof done, MPI_BYTE, w + 1, TAG_EPOCH, MPI_COMM_WORLD));
        workers_released = true;
    }
    rc = finish_run(&st, rc, halted);
    rank_watch_on_fail(finish_after_rank_failure, NULL);
    rank_watch_telemetry(NULL);
    telemetry_close(st.tel);
    st.tel = NULL;
    train_state_free(&st);
    dataset_close(ds);
    return rc;
}

int cmd_train(int argc, char **argv) {
    char err[1024];
    kv_args kv;
    train_args a;
    if (!launched_by_mpi()) {
        /* Validate before launching anything, so a bad argument creates nothing. */
        resume_plan plan;
        if (kv_parse(argc, argv, &kv, err, sizeof err) != 0) {
            log_error("%s", err);
            return 2;
        }
        int r = resume_prepare(&kv, &a, &plan, false, err, sizeof err);
        kv_free(&kv);
        model_source src;
        if (r == 0 && !plan.active) { /* the model and any pretrained weights: checked now */
            if (model_source_resolve(&a, NULL, &src, err, sizeof err) != 0)
                r = -1;
            else
                model_source_free(&src);
        }
        /* a resumed run builds its version's architecture (its model= file may be gone) */
        dataset *ds = NULL;
        if (r == 0 && preflight_train(
                          &a, (int)a.workers,
                          PREFLIGHT_MODEL | (plan.active && plan.run_dir[0] ? PREFLIGHT_RESUME : 0),
                          plan.active ? plan.version_path : NULL, &ds, err, sizeof err) != 0)
            r = -1;
        dataset_close(ds);
        if (r < 0) log_error("%s", err);
        if (r != 0) return r < 0 ? 2 : 0;
        setenv("YOLO_PREFLIGHT_DONE", "1", 1);
        return launch_mpmd("coordinator", (int)a.workers, argc, argv);
    }
    CHECK_MPI(MPI_Init(NULL, NULL));
    int size = 0;
    CHECK_MPI(MPI_Comm_size(MPI_COMM_WORLD, &size));
    /* Workers split off their own communicator; the coordinator takes part with its own color. */
    MPI_Comm self_comm;
    CHECK_MPI(MPI_Comm_split(MPI_COMM_WORLD, 0, 0, &self_comm));
    rank_watch_start();
    int rc = 0, prep = -1;
    resume_plan plan = {0};
    kv = (kv_args){0};
    if (kv_parse(argc, argv, &kv, err, sizeof err) != 0 ||
        (prep = resume_prepare(&kv, &a, &plan, true, err, sizeof err)) < 0) {
        log_error("%s", err);
        rc = 2;
    } else if (prep == 1) {
        rc = 3; /* nothing to do (said) */
    } else if (size < 2) {
        log_error("no workers: start as mpirun -np 1 coordinator train ... : -np N worker");
        rc = 2;
    } else {
        /* Under mpirun the worker count is the job's; batch must split evenly over it. */
        a.workers = size - 1;
        if (a.batch % a.workers) {
            log_error("batch=%ld is not divisible by the %ld workers of this job", a.batch,
                      a.workers);
            rc = 2;
        }
    }
    if (rc == 0) rank_watch_limits(a.stall_warn, a.stall_abort);
    if (rc == 0)
        rc = run(&a, size - 1, &plan);
    else
        release_workers(rc == 3 ? 2 : 0);
    if (rc == 3) rc = 0;
    kv_free(&kv);
    runlog_close();
    MPI_Comm_free(&self_comm);
    if (rc == 1 && !workers_released) {
        launch_report_status(rc);
        MPI_Abort(MPI_COMM_WORLD, 1);
    }
    MPI_Finalize();
    return launch_report_status(rc);
}
