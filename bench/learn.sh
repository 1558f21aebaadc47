#!/usr/bin/env bash
# Learning-speed benchmark (not run by `make test` or `make bench`: 15 minutes per model).
# Makes the synthetic set, trains each model from scratch at imgsz 160, batch 16, for TIME hours of
# wall time with Ultralytics' default hyperparameters (optimizer=auto etc.), and prints wall time vs
# mAP50 / mAP50-95 per epoch from results.csv, the first time mAP50 >= 0.90 and mAP50-95 >= 0.80
# were reached, images/s, the CPU time the run got and the load average.
# The bar: mAP50 >= 0.90 within 5 minutes, mAP50-95 >= 0.80 within 15 minutes.
#
# usage: bench/learn.sh [model ...]            (default: yolov8n yolo26n)
# env:   TIME=0.25 WORKERS=2 THREADS=1 IMGSZ=160 BATCH=16 DATA=data/synth.h5 PROJECT=runs/learn
#        EXTRA="key=value ..." (added to the train command)
# 2 workers x 1 thread: as fast as 1 worker x 2 threads on a quiet 2-core machine and much steadier
# when other processes share it (README, Training section).
set -euo pipefail
cd "$(dirname "$0")/.."
TIME=${TIME:-0.25}
WORKERS=${WORKERS:-2}
THREADS=${THREADS:-1}
IMGSZ=${IMGSZ:-160}
BATCH=${BATCH:-16}
DATA=${DATA:-data/synth.h5}
PROJECT=${PROJECT:-runs/learn}
EXTRA=${EXTRA:-}
models=("$@")
[ ${#models[@]} -gt 0 ] || models=(yolov8n yolo26n)

[ -x bin/coordinator ] || make -j2
if [ ! -f "$DATA" ]; then
  mkdir -p "$(dirname "$DATA")"
  ./bin/coordinator data synth out="$DATA" train=2000 val=400 imgsz=256 classes=3 seed=0
fi

# Prints the per-epoch table and the thresholds from a results.csv.
report() {
  awk -F, -v bar50=300 -v bar5095=900 '
    NR == 1 { for (i = 1; i <= NF; i++) col[$i] = i; next }
    {
      t = $col["time"]; m50 = $col["metrics/mAP50(B)"]; m95 = $col["metrics/mAP50-95(B)"]
      loss = $col["train/box_loss"] + $col["train/cls_loss"] + $col["train/dfl_loss"]
      printf "  %5d %8.2f %9.3f %7.4f %9.4f\n", $1, t / 60, loss, m50, m95
      if (t50 == "" && m50 >= 0.90) t50 = t
      if (t95 == "" && m95 >= 0.80) t95 = t
      last = t
    }
    END {
      printf "  mAP50 >= 0.90 first at:    %s (bar: 5 min)\n", t50 == "" ? "not reached" : sprintf("%.2f min %s", t50 / 60, t50 <= bar50 ? "PASS" : "late")
      printf "  mAP50-95 >= 0.80 first at: %s (bar: 15 min)\n", t95 == "" ? "not reached" : sprintf("%.2f min %s", t95 / 60, t95 <= bar5095 ? "PASS" : "late")
    }' "$1"
}

for m in "${models[@]}"; do
  name="$m-w${WORKERS}t${THREADS}"
  dir="$PROJECT/$name"
  rm -rf "$dir"
  echo "== $m: imgsz $IMGSZ, batch $BATCH, time=$TIME h, workers=$WORKERS threads=$THREADS $EXTRA"
  echo "   load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
  # Load average once a minute while training (the machine is shared).
  (while sleep 60; do cut -d' ' -f1 /proc/loadavg; done) >"/tmp/learn-load.$$" &
  sampler=$!
  start=$(date +%s.%N)
  # shellcheck disable=SC2086
  /usr/bin/time -f "%U %S" -o "/tmp/learn-cpu.$$" ./bin/coordinator train data="$DATA" \
    model="$m.yaml" imgsz="$IMGSZ" batch="$BATCH" time="$TIME" workers="$WORKERS" \
    threads="$THREADS" project="$PROJECT" name="$name" exist_ok=True $EXTRA >/dev/null 2>&1 ||
    echo "   training exited $? (see $dir/train.log)"
  wall=$(echo "$(date +%s.%N) - $start" | bc)
  kill "$sampler" 2>/dev/null || true
  wait "$sampler" 2>/dev/null || true
  loads=$(paste -sd' ' "/tmp/learn-load.$$" 2>/dev/null || true)
  read -r ucpu scpu <"/tmp/learn-cpu.$$" || true
  rm -f "/tmp/learn-load.$$" "/tmp/learn-cpu.$$"
  echo "   epoch  min(wall) train_loss   mAP50  mAP50-95"
  report "$dir/results.csv"
  # Last progress line of each epoch (train.log has no redraws): images/s over the epoch.
  ips=$(grep -o '[0-9.]* img/s' "$dir/train.log" 2>/dev/null | awk '{s += $1; n++} END {if (n) printf "%.1f", s / n}')
  echo "   images/s (mean over epochs, training only): ${ips:-?}"
  printf '   wall %.0f s, CPU user+sys %.0f s (%.2f of 2 cores)\n' "$wall" "$(echo "$ucpu + $scpu" | bc)" \
    "$(echo "($ucpu + $scpu) / $wall" | bc -l)"
  echo "   load average each minute: ${loads:-?}; after: $(cut -d' ' -f1-3 /proc/loadavg)"
done
