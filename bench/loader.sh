#!/usr/bin/env bash
# make bench-loader: our training loader against Ultralytics 8.4.190's (YOLODataset, cache off,
# cv2.setNumThreads(0)) on the same files, both pinned to one core (taskset), training
# augmentation, imgsz 320 / 640, mosaic on / off, on two sets (bench/loader_sets.sh):
#   shapes:   the 2000-image synthetic shapes set (coordinator data synth) as 256 px PNG files
#   cocolike: 2000 JPEGs of COCO's kind (about 640 x 480, quality 75-95) made from coco8's photos
# Prints the table with ratios, our per-stage milliseconds per image, and "loader min ratio: X.XX".
# Rates are images per CPU second of each process (its CPU time on the pinned core: on a shared
# machine wall clock also counts time the core ran something else); wall-clock rates are printed
# beside them. The min ratio is over the CPU-time ratios.
# Data goes to $BENCH_LOADER_DIR (default build/bench-loader; made once, reused). BENCH_CORE picks
# the core (default 0), BENCH_IMAGES the images per timed round (default 320; 3 rounds, best kept).
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/loader_sets.sh
CORE=${BENCH_CORE:-0}
N=${BENCH_IMAGES:-320}

echo "bench-loader: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), core $CORE, load average $(cut -d' ' -f1-3 /proc/loadavg)"
rows=()
stages=()
min=""
for set in shapes cocolike; do
  for imgsz in 320 640; do
    for mosaic in 1 0; do
      u=$(taskset -c "$CORE" "$PY" bench/loader_ultralytics.py "$D/sets/$set.yaml" "$imgsz" "$mosaic" "$N" 16 3)
      o=$(taskset -c "$CORE" ./bin/bench_loader data="$D/$set.h5" imgsz="$imgsz" mosaic="$mosaic" images="$N" batch=16 rounds=3 threads=1)
      uc=$(echo "$u" | awk '/^cpu/ {print $2}')
      uw=$(echo "$u" | awk '/^wall/ {print $2}')
      oc=$(echo "$o" | awk '/^ours_cpu/ {print $2}')
      ow=$(echo "$o" | awk '/^ours / {print $2}')
      st=$(echo "$o" | awk '/^stages/ {$1=""; print}')
      ratio=$(awk -v a="$oc" -v b="$uc" 'BEGIN {printf "%.2f", a / b}')
      wratio=$(awk -v a="$ow" -v b="$uw" 'BEGIN {printf "%.2f", a / b}')
      min=$(awk -v m="$min" -v r="$ratio" 'BEGIN {print (m == "" || r < m) ? r : m}')
      on=$([ "$mosaic" = 1 ] && echo on || echo off)
      rows+=("| $set | $imgsz | $on | $uc | $oc | $ratio | $uw | $ow | $wratio |")
      stages+=("$set $imgsz mosaic $on:$st")
    done
  done
done
echo
echo "images per CPU second on one core (best of 3 rounds of $N images, batch 16); wall clock after"
echo "| set | imgsz | mosaic | Ultralytics 8.4.190 | ours | ours / Ultralytics | Ultralytics wall | ours wall | wall ratio |"
echo "|---|---|---|---|---|---|---|---|---|"
printf '%s\n' "${rows[@]}"
echo
echo "ours, milliseconds of CPU time per output image per stage (1 loader thread):"
printf '  %s\n' "${stages[@]}"
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "loader min ratio: $min"
