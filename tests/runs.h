/* Helpers for tests that run the real commands (coordinator train / watch / ctl under mpirun) as
 * processes: temporary data, waiting for files, reading exit codes, killing a whole job, and the
 * Python test environment. Every helper asserts (Criterion) on its own failures. */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

/* mkdtemp("/tmp/<prefix>-XXXXXX") into dir, and a synthetic dataset dir/s.h5 (imgsz 64, 3
 * classes, seed 3) with ntrain / nval images. */
void run_make_data(char *dir, size_t n, const char *prefix, int ntrain, int nval);
/* system() of a printf-formatted command; returns its exit code (-1 when it did not exit). */
int run_sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Polls for a file (up to `seconds`); true if it appeared. */
bool run_wait_file(const char *path, double seconds);
/* Polls a file for a text (up to `seconds`). */
bool run_wait_text(const char *path, const char *needle, double seconds);
bool run_file_has(const char *path, const char *needle);
/* The number in a file written by `echo $? > file`, -1 when absent. */
int run_read_rc(const char *path);
/* Sends SIGKILL to every process of session sid (a job started under setsid) and waits until
 * none is left; returns how many were killed. */
int run_kill_session(pid_t sid, double seconds);
/* Python of the pinned test environment (scripts/pyenv.sh test, or $YOLO_TEST_VENV when it
 * holds one); NULL with the reason in why (e.g. PyPI unreachable). */
const char *run_test_python(char *why, size_t n);

/* The EMA tensors of two weights files (checkpoints) compared by name: per tensor max|a-b| /
 * max|a|, the largest over parameters and over BN running stats. */
typedef struct run_cmp {
    int tensors, buffers;
    double max_rel_param; /* max over parameter tensors of max|a-b| / max|a| */
    double max_rel_buffer;
    char worst[128];
    int missing;
} run_cmp;
run_cmp run_compare_weights(const char *pa, const char *pb);

/* Runs tests/mpi/<name> (built next to the test binary) under mpirun -np np with a timeout;
 * out receives its output; returns its exit code. */
int run_mpi_program(const char *name, int np, char *out, size_t n);

/* Damage as a failing disk or a hand edit would, in place: flips one byte `at` bytes into an HDF5
 * dataset's stored data (contiguous), or rewrites an int attribute of object obj ("/", "train"). */
void run_flip_dataset_byte(const char *path, const char *dataset, long at);
void run_set_int_attr(const char *path, const char *obj, const char *name, int v);
