#!/usr/bin/env bash
# Train-step A/B of two convolution implementations (not run by `make test`): bin/bench_train_step
# with bf16 convolutions under YOLO_CONV_IMPL=$A and =$B (kernels/conv2d.h; default onednn: every
# bf16 conv on oneDNN's convolution primitives, against matmul: the 1x1 ones on oneDNN's matmul),
# alternating A and B ROUNDS times per thread count so that both see the same load. Prints the
# load average, each run's images/s and op-kind split, and the best of each.
#
# usage: bench/pw_step_ab.sh [model]     (default yolov8n)
# env:   A=onednn B=matmul IMGSZ=320 BATCH=16 THREADS="1 2" STEPS=3 ROUNDS=2 CLOCK=wall
set -euo pipefail
cd "$(dirname "$0")/.."
M=${1:-yolov8n}
IMGSZ=${IMGSZ:-320} BATCH=${BATCH:-16} THREADS=${THREADS:-1 2} STEPS=${STEPS:-3}
ROUNDS=${ROUNDS:-2} CLOCK=${CLOCK:-wall} A=${A:-onednn} B=${B:-matmul}
[ -x bin/bench_train_step ] || make -j2 bin/bench_train_step
echo "pw_step_ab: $M imgsz $IMGSZ batch $BATCH, bf16 convolutions, $STEPS steps per run, clock" \
  "$CLOCK; load average $(cut -d' ' -f1-3 /proc/loadavg)"
for t in $THREADS; do
  best_a=0 best_b=0
  for r in $(seq "$ROUNDS"); do
    for impl in "$A" "$B"; do
      out=$(YOLO_CONV_IMPL=$impl ./bin/bench_train_step model="$M.yaml" imgsz="$IMGSZ" \
        batch="$BATCH" steps="$STEPS" threads="$t" precision=bf16 clock="$CLOCK")
      res=$(grep '^RESULT' <<<"$out")
      echo "threads $t round $r $impl: $(grep 'images/s' <<<"$out" | head -1 | sed 's/^ *//')"
      echo "    $(grep 'by op kind' <<<"$out" | sed 's/^ *//')"
      ips=$(awk '{print $6}' <<<"$res")
      if [ "$impl" = "$A" ]; then
        best_a=$(awk -v a="$best_a" -v b="$ips" 'BEGIN {print (b > a) ? b : a}')
      else
        best_b=$(awk -v a="$best_b" -v b="$ips" 'BEGIN {print (b > a) ? b : a}')
      fi
    done
  done
  awk -v t="$t" -v a="$best_a" -v b="$best_b" -v A="$A" -v B="$B" \
    'BEGIN {printf "threads %s: best images/s %s %.2f, %s %.2f: x%.3f\n", t, A, a, B, b, b / a}'
done
echo "load average at the end $(cut -d' ' -f1-3 /proc/loadavg)"
