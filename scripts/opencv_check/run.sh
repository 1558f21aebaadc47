#!/usr/bin/env bash
# Cross-check of dataio/augment.c against OpenCV (what Ultralytics uses), outside the test suite
# because it needs Python with numpy and opencv-python-headless (pip install numpy
# opencv-python-headless). Usage: bash scripts/opencv_check/run.sh [python]
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${1:-python3}
BIN=$(mktemp -d)
trap 'rm -rf "$BIN"' EXIT
SRC="common/log.c common/rng.c"
gcc -std=c17 -O2 -D_GNU_SOURCE -I. scripts/opencv_check/ops_harness.c $SRC -lm -o "$BIN/ops_harness"
gcc -std=c17 -O2 -D_GNU_SOURCE -I. scripts/opencv_check/pipeline_harness.c dataio/augment.c $SRC -lm \
    -o "$BIN/pipeline_harness"
"$PY" scripts/opencv_check/ops_check.py "$BIN"
"$PY" scripts/opencv_check/pipeline_check.py 320 "$BIN"
"$PY" scripts/opencv_check/pipeline_check.py 640 "$BIN"
