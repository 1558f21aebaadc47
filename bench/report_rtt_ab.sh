#!/usr/bin/env bash
# End-to-end A/B of two builds' training loops (not run by `make test`): `coordinator train` of
# BASE (default: main's binaries, built once into build/bench-rtt/) and of this checkout,
# alternating ROUNDS times on the same synthetic set so that drift in the machine's load hits both.
# Written for the step report's round trip (the worker's report, the coordinator's answer:
# common/poll_wait.h), but it compares any two builds' training speed. Per run: the training
# images/s of the epochs after the first (the progress line's, as bench/vs_ultralytics.sh counts),
# the `report` phase in ms per step and the wall of the steps (YOLO_PHASE_TIMES=1, the same
# epochs), the CPU seconds of the whole job (every rank, user + system) and the load average before
# and after. Then the medians of each side and their ratio.
#
# usage: bench/report_rtt_ab.sh
# env:   BASE=main (a git revision) or BASE_BIN=dir (holding coordinator and worker)
#        MODEL=yolov8n IMGSZ=160 BATCH=16 WORKERS=1 EPOCHS=3 TRAIN=1000 ROUNDS=3
#        BENCH_DIR=build/bench-rtt
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=${MODEL:-yolov8n} IMGSZ=${IMGSZ:-160} BATCH=${BATCH:-16} WORKERS=${WORKERS:-1}
EPOCHS=${EPOCHS:-3} TRAIN=${TRAIN:-1000} ROUNDS=${ROUNDS:-3} BASE=${BASE:-main}
D=${BENCH_DIR:-build/bench-rtt}
say() { echo "report_rtt_ab: $*" >&2; }
load() { cut -d' ' -f1-3 /proc/loadavg; }
mkdir -p "$D"
D=$(cd "$D" && pwd)
make -j2 bin/coordinator bin/worker >/dev/null
if [ -n "${BASE_BIN:-}" ]; then
  base=$(cd "$BASE_BIN" && pwd)
else
  sha=$(git rev-parse --short "$BASE")
  base=$D/base-$sha-bin
  if [ ! -x "$base/coordinator" ] || [ ! -x "$base/worker" ]; then
    say "building $BASE ($sha) in a temporary worktree; its binaries are kept in $base"
    tree=$D/base-$sha
    rm -rf "$tree"
    git worktree add -q --detach "$tree" "$sha"
    if ! make -C "$tree" -j2 bin/coordinator bin/worker >"$D/base-$sha.build.log" 2>&1; then
      say "building $BASE failed: $D/base-$sha.build.log"
      git worktree remove --force "$tree"
      exit 1
    fi
    mkdir -p "$base"
    cp "$tree/bin/coordinator" "$tree/bin/worker" "$base/"
    git worktree remove --force "$tree"
  fi
fi
if [ ! -f "$D/synth-$TRAIN.h5" ]; then
  ./bin/coordinator data synth out="$D/synth-$TRAIN.h5" train="$TRAIN" val=100 imgsz=256 \
    classes=3 seed=0 >/dev/null
fi
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 YOLO_PHASE_TIMES=1
echo "report_rtt_ab: $MODEL imgsz $IMGSZ batch $BATCH, $WORKERS worker(s), $EPOCHS epochs of" \
  "$TRAIN images (the first not counted), $ROUNDS rounds; base $base; $(nproc) cores"
res=$D/results.txt
: >"$res"
# one run: prints "side images/s report_ms steps_s cpu_s"
run() { # side, binary folder
  local log=$D/$1.log t0 l0 ips rep
  l0=$(load)
  t0=$(mktemp)
  TIMEFORMAT='%U %S'
  { time "$2/coordinator" train data="$D/synth-$TRAIN.h5" model="$MODEL.yaml" epochs="$EPOCHS" \
    imgsz="$IMGSZ" batch="$BATCH" workers="$WORKERS" val=False plots=False project="$D/runs" \
    name="$1" exist_ok=True >"$log" 2>&1; } 2>"$t0"
  # the last progress line of each epoch ("N/N [mm:ss<00:00, X img/s]"), epochs after the first
  ips=$(tr '\r' '\n' <"$log" | grep -o '\([0-9]*\)/\1 \[[^]]*img/s\]' | awk '{gsub(/.*, /, "");
    gsub(/ img\/s\]/, ""); n++; v[n] = $0} END {s = 0; k = 0; for (i = 2; i <= n; i++) {s += v[i];
    k++} if (k) printf "%.1f", s / k; else print 0}')
  # worker 1's phase lines of the same epochs: report ms per step, the steps' wall seconds
  rep=$(tr '\r' '\n' <"$log" | grep 'worker\[1\]: phases epoch' | awk '{n++; if (n < 2) next;
    for (i = 1; i <= NF; i++) {if ($i == "report") r += $(i + 1); if ($i == "steps,") s += $(i + 1);
    if ($i == "steps,") st += $(i - 1)}} END {if (st) printf "%.2f %.2f", 1e3 * r / st, s;
    else print "0 0"}')
  local cpu
  cpu=$(awk '{printf "%.1f", $1 + $2}' "$t0")
  rm -f "$t0"
  echo "$1 $ips $rep $cpu" >>"$res"
  printf '  %-4s %6s img/s, report %5s ms/step, steps %6s s, job CPU %6s s; load %s -> %s\n' \
    "$1" "$ips" "${rep% *}" "${rep#* }" "$cpu" "$l0" "$(load)"
}
for r in $(seq "$ROUNDS"); do
  echo "round $r"
  run base "$base"
  run ours "$PWD/bin"
done
med() { awk -v s="$1" -v c="$2" '$1 == s {v[++n] = $c} END {if (!n) {print 0; exit}
  for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (v[j] < v[i]) {t = v[i]; v[i] = v[j];
  v[j] = t} printf "%s", (n % 2) ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2}' "$res"; }
bi=$(med base 2) oi=$(med ours 2) br=$(med base 3) or=$(med ours 3)
bc=$(med base 5) oc=$(med ours 5)
echo "load average at the end $(load)"
echo "| median of $ROUNDS | images/s | report ms/step | job CPU s |"
echo "|---|---|---|---|"
echo "| base | $bi | $br | $bc |"
echo "| ours | $oi | $or | $oc |"
awk -v a="$oi" -v b="$bi" -v ra="$or" -v rb="$br" 'BEGIN {if (b > 0) printf "images/s ours / base: %.3f;", a / b;
  printf " report ms per step: %s -> %s\n", rb, ra}'
