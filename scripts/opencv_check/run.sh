#!/usr/bin/env bash
# Cross-check of dataio/augment.c against OpenCV (what Ultralytics uses), outside the test suite
# because it needs Python with numpy and opencv-python-headless (pip install numpy
# opencv-python-headless). Usage: bash scripts/opencv_check/run.sh [python]
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${1:-python3}
BIN=$(mktemp -d)
trap 'rm -rf "$BIN"' EXIT
# The Makefile's flags (-march=native): the kernels checked are the ones training runs (AVX-512
# where the CPU has it, else AVX2; tests/test_pixels.c checks those equal the scalar ones byte for
# byte).
SRC="common/log.c common/rng.c dataio/pixels.c dataio/pixels_warp.c dataio/pixels_avx512.c"
CF="-std=c17 -O2 -march=native -D_GNU_SOURCE -I."
# the AVX2 kernels, on x86-64, with the Makefile's per-file flags
if [ "$(uname -m)" = x86_64 ]; then
  gcc $CF -mavx2 -mfma -mno-avx512f -c dataio/pixels_avx2.c -o "$BIN/pixels_avx2.o"
  SRC="$SRC $BIN/pixels_avx2.o"
fi
gcc $CF scripts/opencv_check/ops_harness.c $SRC -lm -o "$BIN/ops_harness"
gcc $CF scripts/opencv_check/pipeline_harness.c dataio/augment.c $SRC -lm -o "$BIN/pipeline_harness"
"$PY" scripts/opencv_check/ops_check.py "$BIN"
"$PY" scripts/opencv_check/pipeline_check.py 320 "$BIN"
"$PY" scripts/opencv_check/pipeline_check.py 640 "$BIN"
