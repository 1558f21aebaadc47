/* Bad input, table-driven: every row runs one command of the CLI (data pack/synth/info/verify,
 * train, a hand-written mpirun line, worker, ctl/watch) on a fresh "world" folder of fixtures,
 * and asserts the exit code, that stderr's last line is one of our error lines and names the
 * problem, and that nothing in the world was created, removed or changed (a snapshot of every
 * path, size, mode and modification time before and after). Commands run in the world folder,
 * with XDG_CACHE_HOME inside it, so anything written anywhere they might write is seen. */
#include "dataio/pack.h"
#include "tests/runs.h"
#include "tests/testenv.h"

#include <criterion/criterion.h>
#include <ftw.h>
#include <hdf5.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct row {
    const char *name;
    const char *setup; /* shell run in the world before the snapshot (NULL: none) */
    const char *cmd;   /* shell run in the world; "$C" is the coordinator, "$W" the worker */
    int code;          /* expected exit code */
    const char *names; /* stderr's last line must contain this */
} row;

/* ---- the world ------------------------------------------------------------------------------ */

static void sh(const char *dir, const char *script) {
    char *cmd = malloc(strlen(dir) + strlen(script) + 32);
    cr_assert(cmd);
    sprintf(cmd, "cd '%s' && ( %s )", dir, script);
    cr_assert_eq(system(cmd), 0, "%s", cmd);
    free(cmd);
}

static void synth(const char *dir, const char *name, int ntrain, int nval) {
    char path[600], err[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    int count[SPLIT_COUNT] = {ntrain, nval, 0};
    pack_stats st;
    cr_assert_eq(pack_synth(path, count, 64, 2, 0, &st, err, sizeof err), 0, "%s", err);
}

/* A copy of s.h5 whose first training label has a NaN x: what an unchecked packer once wrote. */
static void nan_label(const char *dir) {
    char src[600], dst[600];
    snprintf(src, sizeof src, "%s/s.h5", dir);
    snprintf(dst, sizeof dst, "%s/nan.h5", dir);
    test_copy(src, dst);
    hid_t f = H5Fopen(dst, H5F_ACC_RDWR, H5P_DEFAULT);
    cr_assert_geq(f, 0);
    hid_t d = H5Dopen2(f, "/train/labels", H5P_DEFAULT), sp = H5Dget_space(d);
    hsize_t pos[2] = {0, 1}, one = 1;
    hid_t ms = H5Screate_simple(1, &one, NULL);
    H5Sselect_elements(sp, H5S_SELECT_SET, 1, pos);
    float v = NAN;
    cr_assert_geq(H5Dwrite(d, H5T_NATIVE_FLOAT, ms, sp, H5P_DEFAULT, &v), 0);
    H5Sclose(ms), H5Sclose(sp), H5Dclose(d), H5Fclose(f);
}

#define HDR "nc: 2\nscales:\n  n: [0.33, 0.25, 1024]\nbackbone:\n"

static void make_world(char *dir, size_t n) {
    test_temp_dir(dir, n, "badinput");
    synth(dir, "s.h5", 16, 8);
    synth(dir, "tiny.h5", 2, 1);
    nan_label(dir);
    char path[700];
    snprintf(path, sizeof path, "%s/foreign.h5", dir);
    hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    cr_assert_geq(f, 0);
    H5Fclose(f);
    const char *c8 = shared_path("data/coco8");
    cr_assert(c8, "shared coco8 missing");
    char c8copy[600];
    snprintf(c8copy, sizeof c8copy, "%s/coco8", dir);
    test_copy(c8, c8copy);
    sh(dir, "head -c 3000 s.h5 > trunc.h5 && echo hello > text.h5 && mkdir ro cache notlive stale "
            "garbage img && chmod 555 ro && echo x > afile && "
            "cp coco8/images/train/000000000009.jpg img/a.jpg && "
            "echo '{\"version\":1,\"pid\":1,\"pub\":\"ipc:///nonexistent/p\","
            "\"ctl\":\"ipc:///nonexistent/c\",\"curve\":false}' > stale/endpoints.json && "
            "echo 'not json' > garbage/endpoints.json && : > empty.yaml");
    struct {
        const char *name, *text;
    } models[] = {
        {"fwd.yaml", HDR "  - [-1, 1, Conv, [64, 3, 2]]\n  - [2, 1, Conv, [64, 3, 2]]\n"
                         "head:\n  - [[0, 1, 1], 1, Detect, [nc]]\n"},
        {"repeats.yaml",
         "nc: 2\nbackbone:\n  - [-1, 1, Conv, [64, 3, 2]]\n"
         "  - [-1, 40, C2f, [64, True]]\nhead:\n  - [[0, 1, 1], 1, Detect, [nc]]\n"},
        {"sppf.yaml", HDR "  - [-1, 1, Conv, [64, 3, 2]]\n  - [-1, 1, SPPF, [64, 5, 40, True]]\n"
                          "head:\n  - [[0, 1, 1], 1, Detect, [nc]]\n"},
        {"kernel.yaml", HDR "  - [-1, 1, Conv, [64, 99, 2]]\nhead:\n  - [[0, 0, 0], 1, Detect, "
                            "[nc]]\n"},
        {"strides.yaml",
         "nc: 2\nbackbone:\n  - [-1, 1, Conv, [8, 3, 3]]\n  - [-1, 1, Conv, [8, 3, 3]]\n"
         "  - [-1, 1, Conv, [8, 3, 3]]\nhead:\n  - [[0, 1, 2], 1, Detect, [nc]]\n"},
    };
    for (size_t i = 0; i < sizeof models / sizeof *models; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, models[i].name);
        FILE *m = fopen(path, "w");
        cr_assert(m);
        fputs(models[i].text, m);
        fclose(m);
    }
}

/* ---- snapshots ------------------------------------------------------------------------------ */

static char *snap_buf;
static size_t snap_len, snap_cap, snap_root;

static int snap_one(const char *p, const struct stat *sb, int type, struct FTW *ftw) {
    (void)ftw;
    char line[1400];
    /* a folder's mtime changes when an entry is added and removed again: that is "left nothing" */
    int n = snprintf(line, sizeof line, "%s %d %o %lld %lld.%09ld\n", p + snap_root, type,
                     (unsigned)sb->st_mode, (long long)(type == FTW_D ? 0 : sb->st_size),
                     (long long)(type == FTW_D ? 0 : sb->st_mtim.tv_sec),
                     type == FTW_D ? 0L : sb->st_mtim.tv_nsec);
    if (snap_len + (size_t)n + 1 > snap_cap) {
        snap_cap = 2 * snap_cap + (size_t)n + 4096;
        snap_buf = realloc(snap_buf, snap_cap);
        cr_assert(snap_buf);
    }
    memcpy(snap_buf + snap_len, line, (size_t)n + 1);
    snap_len += (size_t)n;
    return 0;
}

static char *snapshot(const char *dir) {
    snap_buf = NULL, snap_len = snap_cap = 0, snap_root = strlen(dir);
    cr_assert_eq(nftw(dir, snap_one, 32, FTW_PHYS), 0, "walk %s", dir);
    return snap_buf ? snap_buf : calloc(1, 1);
}

/* ---- one row -------------------------------------------------------------------------------- */

static char *read_all(const char *path) {
    FILE *f = fopen(path, "rb");
    cr_assert(f, "%s", path);
    static char buf[1 << 16];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    return buf;
}

static void run_row(const row *r) {
    char world[300], out[400], errp[400], line[2048];
    make_world(world, sizeof world);
    if (r->setup) sh(world, r->setup);
    setenv("C", bin_path("coordinator"), 1);
    setenv("W", bin_path("worker"), 1);
    test_mpi_env();
    char *before = snapshot(world);
    snprintf(out, sizeof out, "%s.stdout", world);
    snprintf(errp, sizeof errp, "%s.stderr", world);
    char *cmd = malloc(strlen(r->cmd) + 3 * sizeof world + 128);
    sprintf(cmd, "cd '%s' && XDG_CACHE_HOME='%s/cache' timeout 120 %s >'%s' 2>'%s'", world, world,
            r->cmd, out, errp);
    int st = system(cmd);
    free(cmd);
    int code = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    char *after = snapshot(world);
    char *err_text = read_all(errp);
    last_line(err_text, line, sizeof line);
    cr_expect_eq(code, r->code, "[%s] exit %d, expected %d; stderr:\n%s", r->name, code, r->code,
                 err_text);
    cr_expect(strstr(line, "error: "), "[%s] the last line is one of our errors: '%s'", r->name,
              line);
    cr_expect(strstr(line, r->names), "[%s] the last line names '%s': '%s'", r->name, r->names,
              line);
    cr_expect_str_eq(after, before, "[%s] the world changed", r->name);
    free(before);
    free(after);
    unlink(out);
    unlink(errp);
    test_remove_dir(world);
}

static void run_rows(const row *rows, size_t n) {
    for (size_t i = 0; i < n; i++) run_row(&rows[i]);
}
#define RUN(rows) run_rows(rows, sizeof rows / sizeof *rows)

/* ---- the table ------------------------------------------------------------------------------ */

#define PACK "\"$C\" data pack "
#define LABEL "coco8/labels/train/000000000009.txt"
#define COCO_IMG "{\"id\":1,\"file_name\":\"a.jpg\",\"width\":640,\"height\":480}"
#define COCO(images, anns, cats)                                                                   \
    "echo '{\"images\":" images ",\"annotations\":" anns ",\"categories\":" cats "}' > c.json"

static const row pack_rows[] = {
    {"pack without a source", NULL, PACK "out=o.h5", 2, "exactly one of data="},
    {"pack without out", NULL, PACK "data=coco8/coco8.yaml", 2, "out=<file.h5> is required"},
    {"pack out= empty", NULL, PACK "data=coco8/coco8.yaml out=", 2, "expected a file name"},
    {"pack out= a folder", NULL, PACK "data=coco8/coco8.yaml out=coco8", 2, "expected a file name"},
    {"pack out= in a missing folder", NULL, PACK "data=coco8/coco8.yaml out=nodir/o.h5", 2,
     "nodir"},
    {"pack out= in a read-only folder", NULL, PACK "data=coco8/coco8.yaml out=ro/o.h5", 2,
     "not writable"},
    {"pack a missing yaml", NULL, PACK "data=missing.yaml out=o.h5", 2, "missing.yaml"},
    {"pack both yaml and coco", NULL, PACK "data=a.yaml coco=b.json out=o.h5", 2, "exactly one"},
    {"pack skip_bad not a bool", NULL, PACK "data=coco8/coco8.yaml out=o.h5 skip_bad=maybe", 2,
     "skip_bad=maybe"},
    {"label with 6 fields", "echo '0 0.5 0.5 0.1 0.1 7' >> " LABEL,
     PACK "data=coco8/coco8.yaml out=o.h5", 2, "expected 5 fields"},
    {"pack store= without imgsz=", NULL, PACK "data=coco8/coco8.yaml out=o.h5 store=raw", 2,
     "store= and quality= need imgsz=<n>"},
    {"pack imgsz= too small", NULL, PACK "data=coco8/coco8.yaml out=o.h5 imgsz=8", 2,
     "imgsz=8: expected 32..8192"},
    {"pack store= unknown", NULL, PACK "data=coco8/coco8.yaml out=o.h5 imgsz=64 store=gif", 2,
     "store=gif"},
    {"pack quality= out of range", NULL,
     PACK "data=coco8/coco8.yaml out=o.h5 imgsz=64 store=jpeg quality=0", 2, "quality=0"},
    {"pack a dataset file without imgsz=", NULL, PACK "data=x.h5 out=o.h5", 2,
     "is a dataset file already"},
    {"pack resized, a bad label leaves no temporary file", "echo '0 0.5 0.5 0.1 0.1 7' >> " LABEL,
     PACK "data=coco8/coco8.yaml out=o.h5 imgsz=64", 2, "expected 5 fields"},
    {"label class beyond nc", "echo '80 0.5 0.5 0.1 0.1' >> " LABEL,
     PACK "data=coco8/coco8.yaml out=o.h5", 2, "class 80 is not an integer in 0..79"},
    {"label class not an integer", "echo '1.5 0.5 0.5 0.1 0.1' >> " LABEL,
     PACK "data=coco8/coco8.yaml out=o.h5", 2, "class 1.5"},
    {"label nan coordinate", "echo '1 nan 0.5 0.1 0.1' >> " LABEL,
     PACK "data=coco8/coco8.yaml out=o.h5", 2, "'nan' is not a number"},
    {"label huge coordinate", "echo '1 1e300 0.5 0.1 0.1' >> " LABEL,
     PACK "data=coco8/coco8.yaml out=o.h5", 2, "far outside the image"},
    {"label negative width", "echo '1 0.5 0.5 -0.1 0.1' >> " LABEL,
     PACK "data=coco8/coco8.yaml out=o.h5", 2, "negative box width"},
    {"dataset yaml syntax", "printf 'train: [a\\nval: b\\n' > bad.yaml",
     PACK "data=bad.yaml out=o.h5", 2, "bad.yaml"},
    {"dataset yaml nc absurd",
     "printf 'train: coco8/images/train\\nval: coco8/images/val\\nnc: 66666666660\\n' > big.yaml",
     PACK "data=big.yaml out=o.h5", 2, "nc: expected an integer in 1..1000000"},
    {"dataset yaml without val", "printf 'train: coco8/images/train\\nnames: [a]\\n' > noval.yaml",
     PACK "data=noval.yaml out=o.h5", 2, "'val' are required"},
    {"coco bbox 1e308",
     COCO("[" COCO_IMG "]",
          "[{\"image_id\":1,\"category_id\":1,\"bbox\":[1e308,1e308,1e308,1e308]}]",
          "[{\"id\":1,\"name\":\"x\"}]"),
     PACK "coco=c.json images=img out=o.h5", 2, "is not a box"},
    {"coco invalid json", "echo '{\"images\": [' > c.json", PACK "coco=c.json images=img out=o.h5",
     2, "invalid json"},
    {"coco unknown category",
     COCO("[" COCO_IMG "]", "[{\"image_id\":1,\"category_id\":5,\"bbox\":[1,1,2,2]}]",
          "[{\"id\":1,\"name\":\"x\"}]"),
     PACK "coco=c.json images=img out=o.h5", 2, "unknown category id 5"},
    {"coco images not a list", COCO("{}", "[]", "[{\"id\":1,\"name\":\"x\"}]"),
     PACK "coco=c.json images=img out=o.h5", 2, "images: expected a non-empty array"},
    {"coco image size wrong",
     COCO("[{\"id\":1,\"file_name\":\"a.jpg\",\"width\":64,\"height\":48}]", "[]",
          "[{\"id\":1,\"name\":\"x\"}]"),
     PACK "coco=c.json images=img out=o.h5", 2, "but c.json says 64x48"},
    {"coco without images=", NULL, PACK "coco=c.json out=o.h5", 2, "needs images=<dir>"},
    {"synth without out", NULL, "\"$C\" data synth train=2", 2, "out=<file.h5> is required"},
    {"synth classes", NULL, "\"$C\" data synth out=x.h5 classes=9", 2, "classes=9"},
    {"synth imgsz", NULL, "\"$C\" data synth out=x.h5 imgsz=10", 2, "imgsz=10"},
    {"data unknown subcommand", NULL, "\"$C\" data frobnicate", 2, "unknown subcommand"},
};

static const row info_rows[] = {
    {"info missing file", NULL, "\"$C\" data info missing.h5", 2, "missing.h5"},
    {"info text file", NULL, "\"$C\" data info text.h5", 2, "not an HDF5 file"},
    {"info truncated file", NULL, "\"$C\" data info trunc.h5", 2, "truncated"},
    {"info foreign HDF5", NULL, "\"$C\" data info foreign.h5", 2, "not a dataset file"},
    {"info NaN label", NULL, "\"$C\" data info nan.h5", 2, "box is not inside the image"},
    {"verify NaN label", NULL, "\"$C\" data verify nan.h5", 1, "nan.h5"},
    {"verify without a file", NULL, "\"$C\" data verify", 2, "expected one file"},
    {"verify missing file", NULL, "\"$C\" data verify missing.h5", 2, "file not found"},
    {"verify truncated file", NULL, "\"$C\" data verify trunc.h5", 1, "truncated"},
};

#define TRAIN "\"$C\" train project=runs "
static const row train_rows[] = {
    {"train without data", NULL, TRAIN, 2, "data: missing"},
    {"train epochs=0", NULL, TRAIN "data=s.h5 epochs=0", 2, "epochs=0"},
    {"train missing dataset", NULL, TRAIN "data=missing.h5", 2, "missing.h5"},
    {"train truncated dataset", NULL, TRAIN "data=trunc.h5", 2, "truncated"},
    {"train foreign dataset", NULL, TRAIN "data=foreign.h5", 2, "not a dataset file"},
    {"train NaN label", NULL, TRAIN "data=nan.h5", 2, "box is not inside the image"},
    {"train dataset yaml with a bad label", "echo '0 0.5 0.5 0.1' >> " LABEL,
     TRAIN "data=coco8/coco8.yaml", 2, "expected 5 fields"},
    {"train missing model", NULL, TRAIN "data=s.h5 model=nonexistent.yaml", 2,
     "nonexistent.yaml: model yaml not found"},
    {"train empty model yaml", NULL, TRAIN "data=s.h5 model=./empty.yaml", 2, "empty.yaml"},
    {"train model refers to a later layer", NULL, TRAIN "data=s.h5 model=./fwd.yaml", 2,
     "out of range"},
    {"train weights file as model", NULL, TRAIN "data=s.h5 model=./s.h5", 2, "s.h5"},
    {"train repeats above the limit", NULL, TRAIN "data=s.h5 model=./repeats.yaml", 2,
     "above the supported 16"},
    {"train SPPF n above the limit", NULL, TRAIN "data=s.h5 model=./sppf.yaml", 2, "SPPF"},
    {"train kernel above the limit", NULL, TRAIN "data=s.h5 model=./kernel.yaml", 2,
     "k must be in 1..15"},
    {"train Detect input not a stride of the image", NULL, TRAIN "data=s.h5 model=./strides.yaml",
     2, "not the 64x64 image / a stride"},
    {"train project read-only", NULL, "\"$C\" train data=s.h5 project=ro/runs", 2, "not writable"},
    {"train project under a file", NULL, "\"$C\" train data=s.h5 project=afile/runs", 2,
     "not a folder"},
    {"train memory for imgsz x batch", NULL, TRAIN "data=s.h5 imgsz=8192 batch=16", 2,
     "GiB of memory per worker"},
    {"train device GPU listed twice", NULL, TRAIN "data=s.h5 device=0,0", 2, "listed twice"},
    {"train device malformed", NULL, TRAIN "data=s.h5 device=gpu", 2, "device=gpu"},
    {"train device GPU that no machine has", NULL, TRAIN "data=s.h5 device=63", 2, "device=63"},
    {"train more workers than images", NULL, TRAIN "data=tiny.h5 workers=4 batch=4", 2,
     "cannot feed 4 workers"},
    {"train batch not divisible", NULL, TRAIN "data=s.h5 batch=10 workers=4", 2, "not divisible"},
    {"train bad number", NULL, TRAIN "data=s.h5 lr0=fast", 2, "lr0=fast"},
    {"train unknown key", NULL, TRAIN "data=s.h5 bogus_key=1", 2, "bogus_key"},
    {"train huge batch", NULL, TRAIN "data=s.h5 batch=3000000000", 2, "batch=3000000000"},
    {"resume a missing run", NULL, TRAIN "data=s.h5 resume=nowhere", 2, "resume=nowhere"},
    {"resume a dataset file", NULL, TRAIN "data=s.h5 resume=s.h5", 2,
     "not a yolo-cluster checkpoint"},
    {"resume a run without versions", "mkdir -p runs/empty/weights", TRAIN "resume=runs/empty", 2,
     "no checkpoint version"},
};

/* A hand-written MPMD line: with -q (or OMPI_MCA_orte_execute_quiet=1) Open MPI adds nothing, so
 * the coordinator's line is the last; without it Open MPI's summary follows that line. */
#define MPIRUN(args) "mpirun -q -np 1 \"$C\" train project=runs " args " : -np 2 \"$W\""
static const row mpirun_rows[] = {
    /* the coordinator reads the yaml (it sends the text to the workers) */
    {"mpirun missing model", NULL, MPIRUN("data=s.h5 model=nonexistent.yaml"), 2,
     "nonexistent.yaml: model yaml not found"},
    {"mpirun memory", NULL, MPIRUN("data=s.h5 imgsz=8192 batch=16"), 2, "GiB of memory per worker"},
    {"mpirun NaN label", NULL, MPIRUN("data=nan.h5"), 2, "box is not inside the image"},
    {"mpirun read-only project", NULL,
     "mpirun -q -np 1 \"$C\" train data=s.h5 project=ro/runs : -np 2 \"$W\"", 2, "not writable"},
    {"mpirun workers only", NULL, "mpirun -q -np 2 \"$W\"", 2, "rank 0 is a worker"},
};

static const row worker_rows[] = {
    {"worker without a command", NULL, "\"$W\"", 2, "no command"},
    {"worker unknown command", NULL, "\"$W\" frob", 2, "unknown command 'frob'"},
    {"worker info missing model", NULL, "\"$W\" info model=nope.yaml", 2, "nope.yaml"},
    {"worker info imgsz", NULL, "\"$W\" info imgsz=33", 2, "imgsz=33"},
    {"worker info unknown key", NULL, "\"$W\" info bogus=1", 2, "bogus"},
    {"worker info memory", NULL, "\"$W\" info imgsz=8192 batch=16", 2, "GiB of memory per worker"},
    {"worker info batch not divisible", NULL, "\"$W\" info batch=10 workers=4", 2,
     "divisible by workers"},
};

static const row ctl_rows[] = {
    {"ctl without arguments", NULL, "\"$C\" ctl", 2, "usage: coordinator ctl"},
    {"ctl unknown request", NULL, "\"$C\" ctl notlive frob", 2, "unknown request 'frob'"},
    {"ctl bad timeout", NULL, "\"$C\" ctl notlive status timeout=-1", 2, "timeout=-1"},
    {"ctl run not live", NULL, "\"$C\" ctl notlive status", 1, "not live"},
    {"ctl missing run folder", NULL, "\"$C\" ctl nowhere status", 1, "nowhere"},
    {"ctl stale endpoints", NULL, "\"$C\" ctl stale status timeout=0.3", 1, "no reply"},
    {"ctl garbage endpoints", NULL, "\"$C\" ctl garbage stop", 1, "endpoints"},
    {"watch without arguments", NULL, "\"$C\" watch", 2, "usage: coordinator watch"},
    {"watch unknown key", NULL, "\"$C\" watch notlive bogus=1", 2, "bogus"},
    {"watch garbage endpoints", NULL, "\"$C\" watch garbage", 1, "endpoints"},
};

/* Checkpoint and resume arguments, on a copy of one real run (made once per test: see
 * make_run_template) and of versions damaged as a disk or a hand edit would: runs/r (a 1-epoch run
 * with a mid-epoch version v0001 and the final v0002) and bad/ (trunc.h5, damaged.h5: one tensor
 * byte flipped, newer.h5: format_version 99, edited.h5: an attribute changed after writing).
 * `coordinator ckpt` (ls / show / diff / verify / export / tag / prune, merged from ckptcli) has
 * no rows here yet: they go in this table. */
#define RUNS "cp -a \"$R\"/runs \"$R\"/bad . && "
#define V1 "runs/r/weights/v0001.h5"
static const row ckpt_rows[] = {
    {"resume a truncated version", RUNS ":", TRAIN "data=s.h5 resume=bad/trunc.h5", 2, "truncated"},
    {"resume a version with a damaged tensor", RUNS ":", TRAIN "data=s.h5 resume=bad/damaged.h5", 2,
     "model/model.0.conv.weight"},
    {"resume a version of a newer format", RUNS ":", TRAIN "data=s.h5 resume=bad/newer.h5", 2,
     "newer"},
    {"resume an edited version", RUNS ":", TRAIN "data=s.h5 resume=bad/edited.h5", 2,
     "content_sha256"},
    {"resume a finished run", RUNS ":", TRAIN "data=s.h5 resume=runs/r", 2,
     "finished at epoch 1 of 1"},
    {"resume with a changed argument", RUNS ":", TRAIN "data=s.h5 resume=" V1 " lr0=0.02", 2,
     "lr0=0.02 differs"},
    {"resume with a changed model", RUNS ":", TRAIN "data=s.h5 resume=" V1 " model=yolov8s.yaml", 2,
     "model=yolov8s.yaml differs"},
    {"resume on another dataset", RUNS ":", TRAIN "data=tiny.h5 resume=" V1, 2, "is not the one"},
    {"resume a run in use", RUNS ":", "flock runs/r/.lock " TRAIN "data=s.h5 resume=" V1, 2,
     "in use by another run"},
    {"resume a run folder without a complete version",
     RUNS "mkdir -p runs/d/weights && cp bad/trunc.h5 runs/d/weights/v0001.h5",
     TRAIN "data=s.h5 resume=runs/d", 2, "no complete checkpoint version"},
    {"resume=True without the run", RUNS ":", TRAIN "data=s.h5 resume=True name=nope", 2,
     "no run folder"},
    {"resume=True model= a dataset file", RUNS ":", TRAIN "data=s.h5 resume=True model=s.h5", 2,
     "not a yolo-cluster checkpoint"},
    {"resume under a hand-written mpirun", RUNS ":", MPIRUN("data=s.h5 resume=bad/trunc.h5"), 2,
     "truncated"},
    {"keep negative", NULL, TRAIN "data=s.h5 keep=-1", 2, "keep=-1"},
    {"save_period below -1", NULL, TRAIN "data=s.h5 save_period=-2", 2, "save_period=-2"},
    {"save_period not a number", NULL, TRAIN "data=s.h5 save_period=often", 2, "save_period=often"},
};

/* One real run, trained by the CLI on the same synthetic s.h5 every world holds, and the damaged
 * copies of its versions; $R names it for the rows' setup. */
static void make_run_template(char *dir, size_t n) {
    test_temp_dir(dir, n, "badinput-runs");
    synth(dir, "s.h5", 16, 8);
    setenv("C", bin_path("coordinator"), 1);
    test_mpi_env();
    sh(dir, "YOLO_TEST_SAVE_AT=1:1 timeout 600 \"$C\" train data=s.h5 project=runs name=r "
            "model=yolov8n.yaml imgsz=64 batch=8 workers=1 epochs=1 threads=1 loader_threads=1 "
            "bucket_mb=0.25 plots=False > train.log 2>&1 && test -f " V1
            " && mkdir bad && head -c 5000 runs/r/weights/v0002.h5 > bad/trunc.h5 && "
            "for b in damaged newer edited; do cp " V1 " bad/$b.h5; done && rm s.h5 train.log");
    char p[700];
    snprintf(p, sizeof p, "%s/bad/damaged.h5", dir);
    run_flip_dataset_byte(p, "model/model.0.conv.weight", 5);
    snprintf(p, sizeof p, "%s/bad/newer.h5", dir);
    run_set_int_attr(p, "/", "format_version", 99);
    snprintf(p, sizeof p, "%s/bad/edited.h5", dir);
    run_set_int_attr(p, "train", "epoch", 9);
    setenv("R", dir, 1);
}

Test(badinput, data_pack_and_synth, .timeout = 300) {
    RUN(pack_rows);
}
Test(badinput, data_info_and_verify, .timeout = 120) {
    RUN(info_rows);
}
Test(badinput, train, .timeout = 600) {
    RUN(train_rows);
}
Test(badinput, handwritten_mpirun, .timeout = 300) {
    RUN(mpirun_rows);
}
Test(badinput, worker, .timeout = 120) {
    RUN(worker_rows);
}
Test(badinput, ctl_and_watch, .timeout = 120) {
    RUN(ctl_rows);
}
Test(badinput, checkpoint_and_resume, .timeout = 900) {
    char runs[300];
    make_run_template(runs, sizeof runs);
    RUN(ckpt_rows);
    test_remove_dir(runs);
}
