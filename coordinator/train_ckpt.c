/* The checkpoint side of train_state (train_state.h): versions queued for the background writer,
 * what they record (position, metrics, lineage), their reports, results.csv, and the state a
 * resumed run starts from. */
#include "common/atomic_file.h"
#include "common/code_version.h"
#include "common/log.h"
#include "common/model_file.h"
#include "common/timer.h"
#include "coordinator/ckpt_store.h"
#include "coordinator/ckpt_transfer.h"
#include "coordinator/model_source.h"
#include "coordinator/train_state.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int train_state_write_args(const train_args *a, char *err, size_t errlen) {
    char *buf = train_args_yaml_text(a), path[2200];
    snprintf(path, sizeof path, "%s/args.yaml", a->save_dir);
    int rc = atomic_write_file(path, buf, strlen(buf), err, errlen);
    free(buf);
    return rc;
}

/* Test knobs, read once: YOLO_TEST_SAVE_AT=E:S asks for a version after step S of epoch E
 * (1-based); YOLO_TEST_HOLD_AFTER_VERSION=N makes the coordinator wait once version N is on disk,
 * so a test can kill the job at a known point; YOLO_TEST_CKPT_DELAY_S slows every write. */
static void read_test_knobs(train_state *st, ckpt_writer_opts *o) {
    const char *s = getenv("YOLO_TEST_SAVE_AT"), *h = getenv("YOLO_TEST_HOLD_AFTER_VERSION"),
               *d = getenv("YOLO_TEST_CKPT_DELAY_S");
    if (s && sscanf(s, "%d:%d", &st->test_save_epoch, &st->test_save_step) != 2)
        st->test_save_epoch = st->test_save_step = 0;
    st->test_hold_version = h ? atoi(h) : 0;
    o->test_delay_s = d ? atof(d) : 0;
}

/* A resumed run's results.csv is the version's text, written atomically (the results.csv sink
 * appends to it from here; a version before the first row means no file, so the sink writes the
 * header): rows written after the version (the crash came after the row, before the next
 * version) are dropped, a missing or damaged file is restored. */
static void restore_results(train_state *st, const char *version) {
    char path[2300], err[600];
    snprintf(path, sizeof path, "%s/results.csv", st->args->save_dir);
    size_t len = 0;
    char *now = telemetry_read_text(path, 64 << 20, &len, NULL, 0);
    bool same = now ? !strcmp(now, st->results_text) : !st->results_text[0];
    if (!same)
        log_info("results.csv: back to its rows as of %s (%s)", version,
                 now ? "later rows came after that version" : "the file was missing");
    free(now);
    if (same) return;
    int rc = st->results_text[0] ? atomic_write_file(path, st->results_text,
                                                     strlen(st->results_text), err, sizeof err)
             : unlink(path) == 0 ? 0
                                 : errf(err, sizeof err, "%s: cannot remove", path);
    if (rc != 0) log_warn("results.csv not restored: %s", err);
}

static void restore(train_state *st, const ckpt_meta *m, const char *version) {
    st->best_fitness = m->best_fitness;
    st->best_epoch = m->best_epoch - 1;
    st->best_map50 = m->best_map50;
    st->best_map50_95 = m->best_map50_95;
    st->es = (early_stop){.best = m->early_stop_best, .best_epoch = m->early_stop_epoch - 1};
    st->mosaic_off = m->mosaic_closed;
    st->epochs_done = m->epoch_complete ? m->epoch : m->epoch - 1;
    st->t_train = now_seconds() - m->elapsed_s;
    st->has_row = m->has_row;
    st->last_row = m->row;
    st->last_fitness = m->fitness;
    st->last_map50 = m->row.map50;
    st->last_map50_95 = m->row.map50_95;
    if (!m->epoch_complete) memcpy(st->loss_sum, m->epoch_loss_sum, sizeof st->loss_sum);
    free(st->results_text);
    st->results_text = xstrdup(m->results_csv ? m->results_csv : "");
    restore_results(st, version);
}

/* The dataset's class names as a JSON array (what fine-tuning's cls_remap matches by). */
static char *class_names_json(const dataset *ds) {
    cJSON *a = cJSON_CreateArray();
    for (int i = 0; i < dataset_num_classes(ds); i++)
        cJSON_AddItemToArray(a, cJSON_CreateString(dataset_class_name(ds, i)));
    char *text = cJSON_PrintUnformatted(a), *out = xstrdup(text ? text : "[]");
    cJSON_free(text);
    cJSON_Delete(a);
    return out;
}

int train_state_init(train_state *st, train_args *a, dataset *ds, int workers,
                     const ckpt_meta *resumed, const resume_plan *plan, const model_source *src,
                     char *err, size_t errlen) {
    *st = (train_state){.args = a,
                        .ds = ds,
                        .workers = workers,
                        .best_fitness = -INFINITY,
                        .best_epoch = -1,
                        .es = {.best = 0, .best_epoch = -1},
                        .loss_names = {"box_loss", "cls_loss", "dfl_loss"},
                        .t_train = now_seconds(),
                        .results_text = xstrdup("")};
    (void)err;
    (void)errlen;
    st->model_yaml = xstrdup(src->yaml_text);
    /* lineage: args.yaml as written (before train_prep adjusts max_det, as Ultralytics') */
    char apath[2300];
    snprintf(apath, sizeof apath, "%s/args.yaml", a->save_dir);
    size_t alen = 0;
    st->args_yaml = telemetry_read_text(apath, 1 << 20, &alen, NULL, 0);
    if (!st->args_yaml) st->args_yaml = train_args_yaml_text(a);
    st->class_names = class_names_json(ds);
    const char *vname = "";
    if (resumed) {
        vname = strrchr(plan->version_path, '/') ? strrchr(plan->version_path, '/') + 1
                                                 : plan->version_path;
        restore(st, resumed, vname);
    }
    char parent[32];
    const char *parent_run = resumed ? plan->parent_run : "";
    if (resumed && plan->version)
        snprintf(parent, sizeof parent, "v%04d", plan->version);
    else
        snprintf(parent, sizeof parent, "%.31s", vname);
    /* fine-tuned: the weights file is the first version's parent; the run keeps naming it */
    if (!resumed && src->pretrained) {
        snprintf(parent, sizeof parent, "%s", src->parent_version);
        parent_run = src->parent_run;
    }
    const char *pre = resumed ? resumed->pretrained : src->pretrained ? src->weights_abs : NULL;
    st->pretrained = pre && pre[0] ? xstrdup(pre) : NULL;
    snprintf(st->pretrained_sha256, sizeof st->pretrained_sha256, "%s",
             resumed ? resumed->pretrained_sha256 : src->weights_sha256);
    ckpt_writer_opts o = {.run_dir = a->save_dir,
                          .next_version = ckpt_store_max_version(a->save_dir) + 1,
                          .parent_version = parent,
                          .parent_run = parent_run,
                          .keep = (int)a->keep,
                          .protect = resumed && plan->in_run_dir ? plan->version : 0};
    read_test_knobs(st, &o);
    st->writer = ckpt_writer_start(&o);
    return 0;
}

void train_state_start(const train_state *st, const ckpt_meta *resumed, int *epoch, int *step) {
    (void)st;
    *epoch = *step = 0;
    if (!resumed) return;
    *epoch = resumed->epoch_complete ? resumed->epoch : resumed->epoch - 1;
    *step = resumed->epoch_complete ? 0 : resumed->step;
}

/* Everything a version records besides the tensors and the workers' counters. */
static void fill_meta(train_state *st, ckpt_meta *m, const char *reason, int epoch, int step,
                      int steps, bool complete, bool finished) {
    const train_args *a = st->args;
    snprintf(m->reason, sizeof m->reason, "%s", reason);
    m->epoch = epoch + 1;
    m->epochs = (int)a->epochs;
    m->step = step;
    m->steps = steps;
    m->epoch_complete = complete;
    m->finished = finished;
    m->images_seen = m->iterations * a->batch;
    m->elapsed_s = now_seconds() - st->t_train;
    if (!complete) memcpy(m->epoch_loss_sum, st->loss_sum, sizeof m->epoch_loss_sum);
    m->best_fitness = st->best_fitness;
    m->best_epoch = st->best_epoch + 1;
    m->best_map50 = st->best_map50;
    m->best_map50_95 = st->best_map50_95;
    m->early_stop_best = st->es.best;
    m->early_stop_epoch = st->es.best_epoch + 1;
    m->mosaic_closed = st->mosaic_off;
    m->seed = a->seed;
    m->n_train = (int)fmax(1, floor(dataset_split_size(st->ds, SPLIT_TRAIN) * a->fraction));
    m->batch = (int)a->batch;
    m->fraction = a->fraction;
    m->has_row = st->has_row;
    m->row = st->last_row;
    m->fitness = st->last_fitness;
    ckpt_meta_set(&m->results_csv, st->results_text);
    snprintf(m->dataset_sha256, sizeof m->dataset_sha256, "%s", dataset_hash(st->ds));
    ckpt_meta_set(&m->dataset, a->data);
    ckpt_meta_set(&m->model, a->model);
    ckpt_meta_set(&m->model_yaml, st->model_yaml);
    ckpt_meta_set(&m->args_yaml, st->args_yaml);
    ckpt_meta_set(&m->class_names, st->class_names);
    if (st->pretrained) {
        ckpt_meta_set(&m->pretrained, st->pretrained);
        snprintf(m->pretrained_sha256, sizeof m->pretrained_sha256, "%s", st->pretrained_sha256);
    }
    snprintf(m->code_version, sizeof m->code_version, "%s", code_version());
    m->micro_batch = (int)(a->micro_batch ? a->micro_batch : a->batch / st->workers);
    snprintf(m->precision, sizeof m->precision, "%s", st->precision);
    if (gethostname(m->host, sizeof m->host - 1) != 0) snprintf(m->host, sizeof m->host, "?");
}

static void submit(train_state *st, ckpt_job *job) {
    ckpt_writer_submit(st->writer, job);
    st->submitted++;
    if (st->test_hold_version) { /* tests: report at once, so the hold comes right after */
        ckpt_writer_drain(st->writer);
        train_state_report_versions(st);
    }
}

void train_state_save_now(train_state *st, const char *reason, int epoch, int step, int steps) {
    ckpt_job job = {0};
    ckpt_state_receive(st->workers, &job);
    fill_meta(st, &job.meta, reason, epoch, step + 1, steps, false, false);
    submit(st, &job);
}

void train_state_save_epoch(train_state *st, int epoch, int steps, bool best, bool finished) {
    ckpt_job job = {0};
    ckpt_state_receive(st->workers, &job);
    fill_meta(st, &job.meta, "epoch", epoch, steps, steps, true, finished);
    job.best = best;
    /* save_period=k: weights/epoch{e}.h5 for 0-based epochs divisible by k (Ultralytics'
     * epoch{e}.pt, epoch0 included), a link to the version retention then keeps */
    if (st->args->save_period > 0 && epoch % st->args->save_period == 0)
        snprintf(job.extra_link, sizeof job.extra_link, "epoch%d.h5", epoch);
    submit(st, &job);
}

void train_state_add_row(train_state *st, const epoch_row *row, double fitness) {
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (!f) FATAL("open_memstream failed");
    fputs(st->results_text, f);
    if (!st->results_text[0]) results_csv_header(row, f);
    results_csv_row(row, f);
    fclose(f);
    free(st->results_text);
    st->results_text = buf;
    st->has_row = true;
    st->last_row = *row;
    st->last_fitness = fitness;
}

static void report(train_state *st, const ckpt_result *r) {
    const char *name = strrchr(r->path, '/') ? strrchr(r->path, '/') + 1 : r->path;
    char where[64];
    if (r->step < 0 || !strcmp(r->reason, "epoch"))
        snprintf(where, sizeof where, "end of epoch %d", r->epoch);
    else
        snprintf(where, sizeof where, "epoch %d step %d", r->epoch, r->step);
    st->failed_last = !r->ok;
    if (!r->ok) {
        char msg[1400];
        snprintf(msg, sizeof msg,
                 "checkpoint %.40s (%s, %s) not written: %.1000s; training goes on", name,
                 r->reason, where, r->error);
        log_error("%s", msg);
        if (st->tel) telemetry_publish_warning(st->tel, msg);
        return;
    }
    log_info("checkpoint %s written (%s, %s%s): %.1f MB in %.2f s", r->path, r->reason, where,
             r->best ? ", best" : "", r->bytes / 1e6, r->seconds);
    st->last_version = r->version;
    snprintf(st->last_version_where, sizeof st->last_version_where, "%s", where);
    metric_sinks_version(st->sinks,
                         &(sink_version){.version = r->version,
                                         .path = r->path,
                                         .reason = r->reason,
                                         .epoch = r->epoch,
                                         .step = !strcmp(r->reason, "epoch") ? -1 : r->step,
                                         .best = r->best,
                                         .bytes = r->bytes});
    if (st->tel) {
        char v[32];
        snprintf(v, sizeof v, "v%04d", r->version);
        bool epoch_end = !strcmp(r->reason, "epoch");
        telemetry_publish_checkpoint(st->tel, v, r->path, r->epoch, epoch_end ? -1 : r->step);
        if (r->best) telemetry_publish_checkpoint(st->tel, "best", r->path, r->epoch, -1);
    }
    if (r->error[0]) {
        log_warn("%s", r->error);
        if (st->tel) telemetry_publish_warning(st->tel, r->error);
    }
    if (r->version == st->test_hold_version) {
        log_info("test: holding after v%04d (YOLO_TEST_HOLD_AFTER_VERSION)", r->version);
        fflush(NULL);
        sleep(600);
    }
}

void train_state_report_versions(train_state *st) {
    ckpt_result r;
    while (st->writer && ckpt_writer_poll(st->writer, &r)) report(st, &r);
}

int train_state_flush_versions(train_state *st) {
    if (!st->writer) return 0;
    ckpt_writer_drain(st->writer);
    train_state_report_versions(st);
    ckpt_writer_stop(st->writer);
    st->writer = NULL;
    if (!st->failed_last) return 0;
    int newest = ckpt_store_max_version(st->args->save_dir);
    char msg[2400];
    if (newest)
        snprintf(msg, sizeof msg,
                 "the last checkpoint could not be written; the newest version on disk is "
                 "%s/weights/v%04d.h5",
                 st->args->save_dir, newest);
    else
        snprintf(msg, sizeof msg,
                 "the last checkpoint could not be written; no version is on disk");
    log_error("%s", msg);
    if (st->tel) telemetry_publish_warning(st->tel, msg);
    return -1;
}

void train_state_free(train_state *st) {
    if (st->writer) train_state_flush_versions(st);
    val_plan_free(&st->vplan);
    st->vplan_made = false;
    free(st->results_text);
    free(st->model_yaml);
    free(st->args_yaml);
    free(st->class_names);
    free(st->pretrained);
    st->results_text = st->model_yaml = st->args_yaml = st->class_names = st->pretrained = NULL;
}
