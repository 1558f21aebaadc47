#!/usr/bin/env bash
# Python environments from PyPI, pinned, created once and reused (a second run checks and exits).
#   scripts/pyenv.sh test   small: numpy h5py safetensors tensorboard (outside readers of our files)
#                           -> ${YOLO_TEST_VENV:-build/venv-test}
#   scripts/pyenv.sh bench  torch + ultralytics (side-by-side benchmarks, oracle-style checks, export
#                           and import tests)  -> ${YOLO_BENCH_VENV:-build/venv-bench}
#   scripts/pyenv.sh mlflow an MLflow tracking server and client (the MLflow sink's test), kept apart
#                           from the small test kind  -> ${YOLO_MLFLOW_VENV:-build/venv-mlflow}
# Prints the venv's folder on its last line. Exits 1 with a message when PyPI cannot be reached,
# so callers can report a skip with that reason.
set -euo pipefail
cd "$(dirname "$0")/.."
kind=${1:-}
case "$kind" in
test)
  dir=${YOLO_TEST_VENV:-build/venv-test}
  pkgs=(numpy==2.4.6 h5py==3.16.0 safetensors==0.8.0 tensorboard==2.21.0 setuptools==84.2.1)
  ;;
bench)
  dir=${YOLO_BENCH_VENV:-build/venv-bench}
  pkgs=(torch==2.15.0 ultralytics==8.4.190 safetensors==0.8.0 h5py==3.16.0)
  ;;
mlflow)
  dir=${YOLO_MLFLOW_VENV:-build/venv-mlflow}
  pkgs=(mlflow==3.17.2)
  ;;
*)
  echo "usage: scripts/pyenv.sh test|bench|mlflow" >&2
  exit 2
  ;;
esac
stamp="$dir/.yolo-pins"
want=$(printf '%s\n' "${pkgs[@]}")
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  echo "$dir"
  exit 0
fi
python3 -m venv "$dir"
if ! "$dir/bin/pip" install -q --disable-pip-version-check "${pkgs[@]}" >&2; then
  echo "pyenv: could not install ${pkgs[*]} from PyPI into $dir" >&2
  exit 1
fi
printf '%s\n' "$want" >"$stamp"
echo "$dir"
