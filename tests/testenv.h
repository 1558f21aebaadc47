/* Test helper: where tests find things and where they write, independent of the environment.
 * The checkout is found from the test binary's own path (never the working directory); the
 * built programs are in its bin/ ($YOLO_BIN_DIR overrides, for the sanitizer build); the shared
 * folder is $YOLO_SHARED or the checkout's ../shared. Everything a test writes goes under a
 * temporary folder from test_temp_dir(). Path results live in a ring of static buffers: copy one
 * that must outlive the next 16 calls. */
#pragma once
#include <stdbool.h>
#include <stddef.h>

/* <checkout>/rel, e.g. repo_path("models/yolov8n.yaml"). */
const char *repo_path(const char *rel);
/* The built program `name` ("coordinator", "worker"). */
const char *bin_path(const char *name);
/* The folder holding the test binary (build/tests): its mpi/ programs live there. */
const char *test_exe_dir(void);
/* <checkout>/tests/fixtures/name */
const char *fixture_path(const char *name);
/* Path under the shared folder, e.g. shared_path("data/coco8/coco8.yaml"); NULL when absent. */
const char *shared_path(const char *rel);

/* Makes a fresh folder $TMPDIR/yolo-<tag>-XXXXXX (or under /tmp) into buf; asserts on failure. */
char *test_temp_dir(char *buf, size_t n, const char *tag);
/* rm -rf of a folder made by test_temp_dir (anything else is refused: a guard against typos). */
void test_remove_dir(const char *dir);
/* Copies src (a file or folder) to dst with cp -R; the copy is owner-writable whatever src's bits
 * (the shared folder may be read-only). Asserts on failure. */
void test_copy(const char *src, const char *dst);

/* Runs a shell command with stdout+stderr captured into out; returns the exit code (-1 when it
 * did not exit normally). */
int test_run(const char *cmd, char *out, size_t outlen);
/* The last non-empty line of text, without its newline, into line. */
void last_line(const char *text, char *line, size_t n);

/* Environment for running Open MPI programs from tests (root allowed, oversubscription, shared
 * memory transport); set once before mpirun or a coordinator train. */
void test_mpi_env(void);
