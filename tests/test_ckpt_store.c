/* The versions of a run (coordinator/ckpt_store.h) and the background writer
 * (coordinator/ckpt_writer.h): numbering, lineage, links, tags, retention, queueing, fallback to
 * the previous complete version. */
#include "common/log.h"
#include "coordinator/ckpt_store.h"
#include "coordinator/ckpt_writer.h"

#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char run[96];

static void setup(void) {
    char dir[64];
    snprintf(dir, sizeof dir, "/tmp/yolo-ckptstore-XXXXXX");
    cr_assert(mkdtemp(dir));
    snprintf(run, sizeof run, "%s/run", dir);
    char w[128];
    snprintf(w, sizeof w, "%s/weights", run);
    cr_assert_eq(mkdir(run, 0755), 0);
    cr_assert_eq(mkdir(w, 0755), 0);
}

static void teardown(void) {
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %.*s", (int)(strrchr(run, '/') - run), run);
    cr_assert_eq(system(cmd), 0);
}

TestSuite(ckptstore, .init = setup, .fini = teardown);

/* A job with one float tensor holding `value` (so versions differ). */
static ckpt_job job_of(int epoch, float value, bool best, const char *link) {
    ckpt_job j = {0};
    snprintf(j.meta.reason, sizeof j.meta.reason, "epoch");
    j.meta.epoch = epoch;
    j.meta.best_fitness = -INFINITY;
    float *v = xmalloc(4 * sizeof *v);
    for (int i = 0; i < 4; i++) v[i] = value + (float)i;
    j.blob = v;
    j.t = xcalloc(1, sizeof *j.t);
    j.n = 1;
    j.t[0] = (ckpt_tensor){.name = "ema/w", .ndim = 1, .shape = {4}, .data = v};
    j.best = best;
    if (link) snprintf(j.extra_link, sizeof j.extra_link, "%s", link);
    return j;
}

static void write_all(ckpt_writer_opts *o, int n, const bool *best, ckpt_result *res) {
    ckpt_writer *w = ckpt_writer_start(o);
    for (int i = 0; i < n; i++) {
        ckpt_job j = job_of(i + 1, (float)i, best ? best[i] : false, NULL);
        ckpt_writer_submit(w, &j);
    }
    ckpt_writer_drain(w);
    for (int i = 0; i < n; i++) cr_assert(ckpt_writer_poll(w, &res[i]), "result %d", i);
    ckpt_result extra;
    cr_assert_not(ckpt_writer_poll(w, &extra), "one result per job");
    ckpt_writer_stop(w);
}

Test(ckptstore, versions_links_lineage_and_references) {
    ckpt_writer_opts o = {.run_dir = run, .parent_version = "v0009", .parent_run = "/elsewhere"};
    bool best[3] = {true, false, true};
    ckpt_result r[3];
    write_all(&o, 3, best, r);
    for (int i = 0; i < 3; i++) {
        cr_assert(r[i].ok, "%s", r[i].error);
        cr_assert_eq(r[i].version, i + 1);
        cr_assert_str_eq(r[i].error, "");
        cr_assert_gt(r[i].bytes, 0);
    }
    ckpt_entry *e;
    int n;
    char err[512], path[4300];
    cr_assert_eq(ckpt_store_list(run, &e, &n, err, sizeof err), 0, "%s", err);
    cr_assert_eq(n, 3);
    cr_assert(e[2].last && !e[0].last && !e[1].last);
    cr_assert(e[2].best && !e[0].best, "best follows the latest best job");
    free(e);
    cr_assert_eq(ckpt_store_max_version(run), 3);
    /* lineage: the first version's parent is the one given, then each the previous */
    const char *parents[3] = {"v0009", "v0001", "v0002"};
    for (int i = 0; i < 3; i++) {
        ckpt_store_version_path(run, i + 1, path, sizeof path);
        ckpt_file *f = ckpt_open(path, err, sizeof err);
        cr_assert(f, "%s", err);
        cr_assert_str_eq(ckpt_file_meta(f)->parent_version, parents[i]);
        cr_assert_str_eq(ckpt_file_meta(f)->parent_run, i ? run : "/elsewhere");
        cr_assert_eq(ckpt_file_meta(f)->version, i + 1);
        ckpt_close(f);
    }
    const char *refs[][2] = {{"last", "v0003.h5"}, {"best", "v0003.h5"},  {"v2", "v0002.h5"},
                             {"2", "v0002.h5"},    {"v0001", "v0001.h5"}, {"v0001.h5", "v0001.h5"}};
    for (size_t i = 0; i < sizeof refs / sizeof *refs; i++) {
        cr_assert_eq(ckpt_store_resolve(run, refs[i][0], path, sizeof path, err, sizeof err), 0,
                     "%s: %s", refs[i][0], err);
        cr_assert(strstr(path, refs[i][1]), "%s -> %s", refs[i][0], path);
    }
    cr_assert_neq(ckpt_store_resolve(run, "v7", path, sizeof path, err, sizeof err), 0);
    cr_assert(strstr(err, "v0007.h5"), "%s", err);
    cr_assert_neq(ckpt_store_resolve(run, "production", path, sizeof path, err, sizeof err), 0);
    cr_assert_eq(ckpt_tag_set(run, "production", 2, err, sizeof err), 0, "%s", err);
    cr_assert_eq(ckpt_store_resolve(run, "production", path, sizeof path, err, sizeof err), 0);
    cr_assert(strstr(path, "v0002.h5"));
    /* last.h5 opens as a version (h5py and Ultralytics users open it directly) */
    snprintf(path, sizeof path, "%s/weights/last.h5", run);
    ckpt_file *f = ckpt_open(path, err, sizeof err);
    cr_assert(f, "%s", err);
    cr_assert_eq(ckpt_file_meta(f)->version, 3);
    ckpt_close(f);
}

Test(ckptstore, tags_are_validated_and_listed) {
    ckpt_writer_opts o = {.run_dir = run};
    ckpt_result r[2];
    write_all(&o, 2, NULL, r);
    char err[512];
    const char *bad[] = {"best", "last", "v3", "12", "has space", "", "a/b"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        cr_assert_neq(ckpt_tag_set(run, bad[i], 1, err, sizeof err), 0, "'%s' refused", bad[i]);
    cr_assert_neq(ckpt_tag_set(run, "prod", 9, err, sizeof err), 0, "no such version");
    cr_assert_eq(ckpt_tag_set(run, "prod", 1, err, sizeof err), 0, "%s", err);
    cr_assert_eq(ckpt_tag_set(run, "paper-2025", 1, err, sizeof err), 0, "%s", err);
    cr_assert_eq(ckpt_tag_set(run, "prod", 2, err, sizeof err), 0, "moves");
    ckpt_entry *e;
    int n;
    cr_assert_eq(ckpt_store_list(run, &e, &n, err, sizeof err), 0, "%s", err);
    cr_assert_str_eq(e[0].tags, "paper-2025");
    cr_assert_str_eq(e[1].tags, "prod");
    free(e);
    cr_assert_eq(ckpt_tag_remove(run, "prod", err, sizeof err), 0, "%s", err);
    cr_assert_neq(ckpt_tag_remove(run, "prod", err, sizeof err), 0);
    cr_assert(strstr(err, "prod"), "%s", err);
}

/* keep=2: the two newest stay; older ones go unless best, linked, tagged or protected. */
Test(ckptstore, retention_keeps_best_tagged_linked_and_protected) {
    char err[512], path[4300];
    ckpt_writer_opts o = {.run_dir = run, .keep = 2, .protect = 3};
    ckpt_writer *w = ckpt_writer_start(&o);
    for (int i = 1; i <= 7; i++) {
        ckpt_job j = job_of(i, (float)i, i == 2, i == 4 ? "epoch3.h5" : NULL);
        ckpt_writer_submit(w, &j);
        if (i == 1) { /* tag v1 as soon as it exists */
            ckpt_writer_drain(w);
            cr_assert_eq(ckpt_tag_set(run, "prod", 1, err, sizeof err), 0, "%s", err);
        }
    }
    ckpt_writer_drain(w);
    ckpt_result r;
    int pruned = 0;
    while (ckpt_writer_poll(w, &r)) {
        cr_assert(r.ok, "%s", r.error);
        cr_assert_str_eq(r.error, "", "no retention warning");
        pruned += r.pruned;
    }
    ckpt_writer_stop(w);
    cr_assert_eq(pruned, 1, "only v5 is old, unprotected and past the two newest");
    int expect[] = {1, 1, 1, 1, 0, 1, 1};
    for (int v = 1; v <= 7; v++) {
        ckpt_store_version_path(run, v, path, sizeof path);
        cr_assert_eq(access(path, F_OK) == 0, expect[v - 1], "v%d %s", v,
                     expect[v - 1] ? "kept" : "deleted");
    }
}

/* Jobs submitted while one is being written wait; writes never overlap and keep their order. */
Test(ckptstore, saves_during_a_write_are_queued_not_interleaved) {
    ckpt_writer_opts o = {.run_dir = run, .test_delay_s = 0.2, .max_pending = 4};
    ckpt_writer *w = ckpt_writer_start(&o);
    for (int i = 0; i < 3; i++) {
        ckpt_job j = job_of(i + 1, (float)i, false, NULL);
        ckpt_writer_submit(w, &j);
    }
    cr_assert_geq(ckpt_writer_busy(w), 2, "submit returned while the first write was under way");
    ckpt_writer_drain(w);
    ckpt_result r[3];
    for (int i = 0; i < 3; i++) cr_assert(ckpt_writer_poll(w, &r[i]));
    ckpt_writer_stop(w);
    for (int i = 0; i < 3; i++) {
        cr_assert(r[i].ok, "%s", r[i].error);
        cr_assert_eq(r[i].version, i + 1, "submission order");
        cr_assert_eq(r[i].epoch, i + 1);
        if (i)
            cr_assert_geq(r[i].started, r[i - 1].finished, "write %d began after %d ended", i,
                          i - 1);
    }
}

static int notes;
static char note_text[1024];
static void note(void *ctx, const char *line) {
    (void)ctx;
    notes++;
    snprintf(note_text, sizeof note_text, "%s", line);
}

Test(ckptstore, newest_complete_falls_back_past_a_damaged_version) {
    ckpt_writer_opts o = {.run_dir = run};
    ckpt_result r[3];
    write_all(&o, 3, NULL, r);
    char path[4300], err[1024];
    int v = 0;
    cr_assert_eq(
        ckpt_store_newest_complete(run, note, NULL, path, sizeof path, &v, err, sizeof err), 0,
        "%s", err);
    cr_assert_eq(v, 3);
    ckpt_store_version_path(run, 3, path, sizeof path);
    struct stat st;
    cr_assert_eq(stat(path, &st), 0);
    cr_assert_eq(truncate(path, st.st_size - 100), 0);
    notes = 0;
    cr_assert_eq(
        ckpt_store_newest_complete(run, note, NULL, path, sizeof path, &v, err, sizeof err), 0,
        "%s", err);
    cr_assert_eq(v, 2, "the previous version");
    cr_assert_eq(notes, 1);
    cr_assert(strstr(note_text, "v0003.h5") && strstr(note_text, "trying v0002.h5"), "%s",
              note_text);
    ckpt_store_version_path(run, 2, path, sizeof path);
    cr_assert_eq(truncate(path, 10), 0);
    ckpt_store_version_path(run, 1, path, sizeof path);
    cr_assert_eq(truncate(path, 10), 0);
    cr_assert_eq(
        ckpt_store_newest_complete(run, NULL, NULL, path, sizeof path, &v, err, sizeof err), 1,
        "none complete");
    cr_assert(strstr(err, "no complete checkpoint version"), "%s", err);
}

Test(ckptstore, failed_write_reports_and_keeps_earlier_versions) {
    ckpt_writer_opts o = {.run_dir = run};
    ckpt_writer *w = ckpt_writer_start(&o);
    ckpt_job j = job_of(1, 1, false, NULL);
    ckpt_writer_submit(w, &j);
    ckpt_writer_drain(w);
    char wdir[160], cmd[600];
    snprintf(wdir, sizeof wdir, "%s/weights", run);
    /* the weights folder replaced by a file: every write there fails */
    snprintf(cmd, sizeof cmd, "mv %s %s.saved && touch %s", wdir, wdir, wdir);
    cr_assert_eq(system(cmd), 0);
    j = job_of(2, 2, false, NULL);
    ckpt_writer_submit(w, &j);
    ckpt_writer_drain(w);
    snprintf(cmd, sizeof cmd, "rm %s && mv %s.saved %s", wdir, wdir, wdir);
    cr_assert_eq(system(cmd), 0);
    j = job_of(3, 3, false, NULL);
    ckpt_writer_submit(w, &j);
    ckpt_writer_drain(w);
    ckpt_result r[3];
    for (int i = 0; i < 3; i++) cr_assert(ckpt_writer_poll(w, &r[i]));
    ckpt_writer_stop(w);
    cr_assert(r[0].ok && !r[1].ok && r[2].ok);
    cr_assert(strstr(r[1].error, "v0002.h5"), "names the version: %s", r[1].error);
    cr_assert_eq(r[2].version, 3, "numbers only grow");
    char path[4300], err[512];
    ckpt_store_version_path(run, 3, path, sizeof path);
    ckpt_file *f = ckpt_open(path, err, sizeof err);
    cr_assert(f, "%s", err);
    cr_assert_str_eq(ckpt_file_meta(f)->parent_version, "v0001", "parent: the last one written");
    ckpt_close(f);
    ckpt_store_version_path(run, 1, path, sizeof path);
    f = ckpt_open(path, err, sizeof err);
    cr_assert(f, "v0001 intact: %s", err);
    cr_assert_eq(ckpt_verify(f, NULL, NULL, err, sizeof err), 0, "%s", err);
    ckpt_close(f);
}

Test(ckptstore, leftover_temporaries_are_invisible_and_cleaned) {
    ckpt_writer_opts o = {.run_dir = run};
    ckpt_result r[1];
    write_all(&o, 1, NULL, r);
    char p[300];
    snprintf(p, sizeof p, "%s/weights/.v0002.h5.tmp.12345", run);
    FILE *f = fopen(p, "w");
    cr_assert(f);
    fputs("half a checkpoint", f);
    fclose(f);
    ckpt_entry *e;
    int n;
    char err[256];
    cr_assert_eq(ckpt_store_list(run, &e, &n, err, sizeof err), 0);
    cr_assert_eq(n, 1, "the temporary file is not a version");
    free(e);
    ckpt_store_clean_temporaries(run);
    cr_assert_neq(access(p, F_OK), 0, "removed");
}
