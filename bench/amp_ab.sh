#!/usr/bin/env bash
# Learning A/B of the CPU's precisions (not run by `make test`): trains one model twice from
# scratch on the same synthetic shapes set with the same seed, amp=False (fp32 convolutions) and
# amp=bf16 (bf16 convolutions, fp32 master weights, BN and loss), the two runs side by side (one
# worker x THREADS each), and prints mAP50 / mAP50-95 per epoch of both. Per epoch, not per
# second: the runs share the machine. On a CPU without AVX512_BF16 the bf16 run is emulated (slow).
#
# usage: bench/amp_ab.sh [model]              (default yolov8n)
# env:   EPOCHS=10 TRAIN=1500 VAL=300 IMGSZ=160 BATCH=16 THREADS=1 SEED=0 DIR=runs/amp-ab
#        EXTRA="key=value ..." (added to both train commands)
set -euo pipefail
cd "$(dirname "$0")/.."
M=${1:-yolov8n}
EPOCHS=${EPOCHS:-10} TRAIN=${TRAIN:-1500} VAL=${VAL:-300} IMGSZ=${IMGSZ:-160} BATCH=${BATCH:-16}
THREADS=${THREADS:-1} SEED=${SEED:-0} DIR=${DIR:-runs/amp-ab} EXTRA=${EXTRA:-}
[ -x bin/coordinator ] || make -j2
mkdir -p "$DIR"
data="$DIR/synth-$TRAIN-$VAL.h5"
[ -f "$data" ] || ./bin/coordinator data synth out="$data" train="$TRAIN" val="$VAL" imgsz=256 \
  classes=3 seed=0 >/dev/null
echo "amp_ab: $M, $TRAIN train / $VAL val images, imgsz $IMGSZ, batch $BATCH, $EPOCHS epochs," \
  "seed $SEED, 1 worker x $THREADS thread(s) each; load average $(cut -d' ' -f1-3 /proc/loadavg)"
pids=()
for amp in False bf16; do
  # shellcheck disable=SC2086
  ./bin/coordinator train data="$data" model="$M.yaml" imgsz="$IMGSZ" batch="$BATCH" \
    epochs="$EPOCHS" seed="$SEED" workers=1 threads="$THREADS" amp="$amp" plots=False \
    project="$DIR" name="$M-amp$amp" exist_ok=True $EXTRA >"$DIR/$M-amp$amp.out" 2>&1 &
  pids+=($!)
done
rc=0
for p in "${pids[@]}"; do wait "$p" || rc=1; done
[ "$rc" = 0 ] || { echo "amp_ab: a run failed: $DIR/$M-amp*.out" >&2; exit 1; }
col() { # results.csv, column name -> values, one per line
  awk -F, -v c="$2" 'NR == 1 {for (i = 1; i <= NF; i++) {gsub(/ /, "", $i); if ($i == c) k = i}; next} {gsub(/ /, ""); print $k}' "$1"
}
f="$DIR/$M-ampFalse/results.csv" b="$DIR/$M-ampbf16/results.csv"
echo "load average at the end $(cut -d' ' -f1-3 /proc/loadavg)"
echo "| epoch | fp32 mAP50 | bf16 mAP50 | fp32 mAP50-95 | bf16 mAP50-95 | fp32 s | bf16 s |"
echo "|---|---|---|---|---|---|---|"
paste <(col "$f" epoch) <(col "$f" 'metrics/mAP50(B)') <(col "$b" 'metrics/mAP50(B)') \
  <(col "$f" 'metrics/mAP50-95(B)') <(col "$b" 'metrics/mAP50-95(B)') <(col "$f" time) \
  <(col "$b" time) | awk '{printf "| %d | %.4f | %.4f | %.4f | %.4f | %.0f | %.0f |\n", $1, $2, $3, $4, $5, $6, $7}'
