#!/usr/bin/env bash
# Before/after of the bf16 conversion fusion (model_set_bf16_fusion; not run by `make test`):
# bin/bench_train_step with precision=bf16, fuse=false (the separate to_bf16 passes) and fuse=true,
# alternating ROUNDS times per model x threads so that drift in the machine's load hits both, the
# best step of each kept. Prints each run's per-op-kind line and a table of images/s and the ratio.
# bf16 needs AVX512_BF16 for meaningful timings (elsewhere the convolutions are emulated).
#
# usage: bench/bf16_fuse_ab.sh
# env:   MODELS="yolov8n yolo26n" IMGSZ=160,320 THREADS="1 2" BATCH=16 STEPS=3 ROUNDS=2 CLOCK=wall
set -euo pipefail
cd "$(dirname "$0")/.."
MODELS=${MODELS:-yolov8n yolo26n} IMGSZ=${IMGSZ:-160,320} THREADS=${THREADS:-1 2}
BATCH=${BATCH:-16} STEPS=${STEPS:-3} ROUNDS=${ROUNDS:-2} CLOCK=${CLOCK:-wall}
[ -x bin/bench_train_step ] || make -j2 bin/bench_train_step
echo "bf16_fuse_ab: batch $BATCH, $STEPS steps, $ROUNDS rounds, clock $CLOCK;" \
  "load average $(cut -d' ' -f1-3 /proc/loadavg)"
out=$(mktemp) run=$(mktemp)
trap 'rm -f "$out" "$run"' EXIT
for m in $MODELS; do
  for t in $THREADS; do
    for r in $(seq "$ROUNDS"); do
      for f in false true; do
        echo "== $m threads $t fuse=$f (round $r)"
        ./bin/bench_train_step model="$m.yaml" imgsz="$IMGSZ" batch="$BATCH" steps="$STEPS" \
          threads="$t" precision=bf16 clock="$CLOCK" fuse="$f" >"$run"
        cat "$run"
        awk -v f="$f" '/^RESULT/ {print $2, $3, $5, f, $6}' "$run" >>"$out"
      done
    done
  done
done
echo "load average at the end $(cut -d' ' -f1-3 /proc/loadavg)"
echo "| model | imgsz | threads | separate img/s | fused img/s | fused / separate |"
echo "|---|---|---|---|---|---|"
awk '{k = $1 " " $2 " " $3; if ($5 > best[k, $4]) best[k, $4] = $5; keys[k] = 1}
     END {for (k in keys) {split(k, a, " ");
            printf "| %s | %s | %s | %.1f | %.1f | %.3f |\n", a[1], a[2], a[3], best[k, "false"],
                   best[k, "true"], best[k, "true"] / best[k, "false"]}}' "$out" | sort
