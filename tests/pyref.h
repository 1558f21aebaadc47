/* Test helper: the Python with Ultralytics 8.4.190 and torch that scripts/pyenv.sh bench makes
 * ($YOLO_BENCH_VENV, else build/venv-bench). Tests that compare against Ultralytics' own functions
 * skip, with the reason, where it is not installed; they never install it themselves. */
#pragma once
#include <stddef.h>

/* Path of the venv's python when its pins (.yolo-pins) include ultralytics==8.4.190; NULL with
 * the reason in why otherwise. */
const char *pyref_bench_python(char *why, size_t n);
/* Runs `python script in out` (script relative to the repository root); 0, or -1 with the exit
 * status in why. */
int pyref_run(const char *python, const char *script, const char *in, const char *out, char *why,
              size_t n);
