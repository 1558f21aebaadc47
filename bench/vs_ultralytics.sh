#!/usr/bin/env bash
# make bench-vs-ultralytics: our CPU trainer against Ultralytics 8.4.190 on PyTorch (pinned, from
# PyPI: scripts/pyenv.sh bench), side by side, one after the other, on this machine:
#   - forward+backward with the loss (yolov8n, yolo11n, yolo26n; imgsz 160 and 320; 1 thread and
#     all cores; batch 16): bench/ul_fwdbwd.py against bin/bench_train_step, same synthetic
#     targets, best step of STEPS after 2 warm-up steps;
#   - a few epochs of end-to-end training (yolov8n and yolo26n at 160, yolov8n at 320) on the same
#     synthetic shapes set, as PNG files + yaml for Ultralytics (bench/loader_data.py) and packed
#     into our HDF5 from that yaml: Ultralytics' trainer with torch threads and dataloader workers
#     set to the cores, ours with each worker x thread split of SPLITS (best kept; both stated);
#     training images/s of the epochs after the first (validation excluded, as the epoch's own
#     clock).
# Ours runs in its default precision, amp=True: bf16 convolutions where the CPU multiplies bf16
# natively (avx512_bf16), else fp32 (docs/training.md); where bf16 is the default, every row of
# ours is also run in fp32 (amp=False) and marked "not the default".
# Prints the machine (CPU, ISA, measured FMA peaks), the versions, our default precision, one
# table (images/s, ratio, CPU share of each side) and last `min ratio: X.XX` (smallest
# ours/Ultralytics of the rows of the default setting). Refuses to start when the 1-minute load average is above BENCH_MAX_LOAD
# (default 0.5): other processes would share the cores and the ratio would say nothing.
#
# usage: bench/vs_ultralytics.sh [--tta]
#   --tta   time to accuracy instead: yolov8n and yolo26n trained TTA_HOURS (default 0.25) each by
#           both trainers on the full shapes set (imgsz 160, batch 16, defaults); minutes to mAP50
#           0.90 and mAP50-95 0.80 from each results.csv. Takes about 4 x TTA_HOURS; not for CI.
# env: QUICK=1          yolov8n and yolo26n at 160, all cores only, 2 epochs on 1000 images
#      BENCH_MAX_LOAD   load average above which it refuses (default 0.5)
#      BENCH_DIR        data and runs (default build/bench-vs; the data is made once)
#      STEPS=5 EPOCHS=3 FRACTION=1.0 SPLITS="1x2 2x1" (workers x threads; QUICK: SPLITS=1x2)
#      TTA_SPLIT=1x<cores> (--tta: our workers x threads)
#      YOLO_BENCH_VENV  an existing venv with the pinned torch + ultralytics
#      GOMP_SPINCOUNT   OpenMP spin before a waiting thread sleeps, for BOTH sides (default 10000,
#                       our trainer's; libgomp's own 300000 burns the cores of a shared machine)
set -euo pipefail
cd "$(dirname "$0")/.."
TTA=0
[ "${1:-}" = "--tta" ] && TTA=1
QUICK=${QUICK:-0}
CORES=$(nproc)
MAX_LOAD=${BENCH_MAX_LOAD:-0.5}
D=${BENCH_DIR:-build/bench-vs}
STEPS=${STEPS:-5}
if [ "$QUICK" = 1 ]; then
  EPOCHS=${EPOCHS:-2} FRACTION=${FRACTION:-0.5} SPLITS=${SPLITS:-1x$CORES}
else
  EPOCHS=${EPOCHS:-3} FRACTION=${FRACTION:-1.0} SPLITS=${SPLITS:-"1x$CORES ${CORES}x1"}
fi
TTA_HOURS=${TTA_HOURS:-0.25}
# One worker with all the cores for time to accuracy: batch norm then normalises over the whole
# batch of 16, as Ultralytics' single process does. With N workers each normalises over 16 / N
# images, which learns less per epoch in the first epochs (docs/training.md, "Batch norm per
# worker").
TTA_SPLIT=${TTA_SPLIT:-1x$CORES}

say() { echo "vs_ultralytics: $*" >&2; }
load1() { cut -d' ' -f1 /proc/loadavg; }
load=$(load1)
if awk -v l="$load" -v m="$MAX_LOAD" 'BEGIN {exit !(l > m)}'; then
  say "refusing to measure: the 1-minute load average is $load (> BENCH_MAX_LOAD=$MAX_LOAD), so"
  say "other processes share the $CORES cores and the ratio would be theirs as much as ours."
  say "Run it on a quiet machine (or raise BENCH_MAX_LOAD to develop the script)."
  exit 3
fi
if ! venv=$(scripts/pyenv.sh bench | tail -n 1); then
  say "skipped: no Python environment with torch + ultralytics (scripts/pyenv.sh bench failed)"
  exit 1
fi
PY="$venv/bin/python"
[ -x bin/bench_train_step ] && [ -x bin/coordinator ] || make -j"$CORES"
mkdir -p "$D"
D=$(cd "$D" && pwd)
if [ ! -f "$D/shapes.h5" ] || [ ! -f "$D/sets/shapes.yaml" ]; then
  say "writing the synthetic shapes set (2000 train / 400 val, 256 px) to $D (once)"
  ./bin/coordinator data synth out="$D/synth_raw.h5" train=2000 val=400 imgsz=256 classes=3 seed=0 >/dev/null
  "$PY" -c "import sys; sys.path.insert(0, 'bench'); import loader_data; loader_data.shapes('$D/synth_raw.h5', '$D/sets')"
  rm -f "$D/synth_raw.h5" "$D/shapes.h5"
  ./bin/coordinator data pack data="$D/sets/shapes.yaml" out="$D/shapes.h5" >/dev/null
fi
export YOLO_OFFLINE=1 # Ultralytics: no update checks or downloads
export GOMP_SPINCOUNT=${GOMP_SPINCOUNT:-10000}

# ---- the machine and the versions ------------------------------------------------------------
flags=$(grep -m1 '^flags' /proc/cpuinfo)
isa="AVX2"
for f in avx512f avx512_bf16 amx_bf16; do
  case " $flags " in *" $f "*) isa="$isa $f" ;; esac
done
isa=${isa/AVX2 avx512f/AVX-512}
# amp=True's choice on this CPU (worker/device.h: bf16_cpu_has_native is the avx512_bf16 flag);
# OTHER: the precision also shown, not counted in min ratio
case " $flags " in
  *" avx512_bf16 "*) DEFAULT_PREC=bf16 OTHER_PREC=fp32 prec_why="the CPU has avx512_bf16" ;;
  *) DEFAULT_PREC=fp32 OTHER_PREC="" prec_why="the CPU has no avx512_bf16" ;;
esac
amp_of() { [ "$1" = bf16 ] && echo True || echo False; }
peaks=$(./bin/bench_conv peak_only=true threads="1,$CORES" clock=cpu)
peak_txt=$(echo "$peaks" | awk '{printf "%s%s thread(s): fp32 FMA %s GFLOP/s%s", (NR > 1 ? "; " : ""), $3, $6, ($8 ? ", bf16 dot " $10 " GFLOP/s" : "")}')
ul_ver=$("$PY" -c "import re, torch, ultralytics; m = re.search(r'MKL-DNN v([0-9.]+)', torch.__config__.show()); print(f'Ultralytics {ultralytics.__version__}, PyTorch {torch.__version__} (oneDNN {m.group(1) if m else \"?\"})')" 2>/dev/null || echo "?")
our_ver="yolo-cluster $(git describe --always --dirty 2>/dev/null || echo '?'), oneDNN $(dpkg-query -W -f '${Version}' libdnnl-dev 2>/dev/null || echo '?'), $(mpicc --version | head -n 1)"

rows=()
default_ratios=()
add_row() { # workload, ul ips, ours ips, note, counts-for-min (1/0)
  local ratio
  ratio=$(awk -v a="$3" -v b="$2" 'BEGIN {if (b > 0 && a > 0) printf "%.2f", a / b; else print "?"}')
  rows+=("| $1 | $2 | $3 | $ratio | $4 |")
  [ "$5" = 1 ] && [ "$ratio" != "?" ] && default_ratios+=("$ratio")
  say "$1: Ultralytics $2, ours $3, ratio $ratio ($4)"
}

# ---- forward + backward ------------------------------------------------------------------------
micro() { # model imgsz threads
  local m=$1 s=$2 t=$3 u o ub ob us os p
  u=$("$PY" bench/ul_fwdbwd.py "$m" "$s" "$t" "$STEPS" fp32 2>/dev/null | grep '^RESULT' || true)
  ub=$(echo "$u" | awk '{print $7}') us=$(echo "$u" | awk '{print $9}')
  for p in $DEFAULT_PREC $OTHER_PREC; do
    o=$(./bin/bench_train_step model="$m.yaml" imgsz="$s" threads="$t" steps="$STEPS" precision="$p" | grep '^RESULT' || true)
    ob=$(echo "$o" | awk '{print $6}') os=$(echo "$o" | awk '{print $8}')
    if [ "$p" = "$DEFAULT_PREC" ]; then
      add_row "$m forward+backward+loss, imgsz $s, $t thread(s)" "${ub:-0}" "${ob:-0}" \
        "ours $p (default); CPU share Ultralytics ${us:-?}, ours ${os:-?}" 1
    else
      add_row "$m forward+backward+loss, imgsz $s, $t thread(s), ours in $p" "${ub:-0}" "${ob:-0}" \
        "ours $p, NOT the default (not in min ratio); CPU share ours ${os:-?}" 0
    fi
  done
}

# ---- end to end --------------------------------------------------------------------------------
# Mean training images/s of the epochs after the first (all epochs if only one).
ul_ips() { awk '/^EPOCH/ {n++; ips[n] = $8; sh[n] = $10} END {s = 0; k = 0; for (i = (n > 1 ? 2 : 1); i <= n; i++) {s += ips[i]; c += sh[i]; k++} if (k) printf "%.2f %.2f", s / k, c / k; else print "0 ?"}' "$1"; }
our_ips() { # train.log: the last progress line of each epoch ("N/N [mm:ss<00:00, X img/s]")
  tr '\r' '\n' <"$1" | grep -o '\([0-9]*\)/\1 \[[^]]*img/s\]' | awk '{gsub(/.*, /, ""); gsub(/ img\/s\]/, ""); n++; ips[n] = $0} END {s = 0; k = 0; for (i = (n > 1 ? 2 : 1); i <= n; i++) {s += ips[i]; k++} if (k) printf "%.2f", s / k; else print 0}'
}
our_train() { # model imgsz split precision -> training images/s
  local m=$1 s=$2 sp=$3 p=$4 w=${3%x*} t=${3#*x} name="ours-$1-$2-$3-$4"
  ./bin/coordinator train data="$D/shapes.h5" model="$m.yaml" imgsz="$s" batch=16 epochs="$EPOCHS" \
    workers="$w" threads="$t" fraction="$FRACTION" amp="$(amp_of "$p")" plots=False project="$D/runs" \
    name="$name" exist_ok=True >/dev/null 2>&1 || say "our training failed: $D/runs/$name/train.log"
  our_ips "$D/runs/$name/train.log"
}
e2e() { # model imgsz
  local m=$1 s=$2 u us ui best=0 bsplit="" notes=""
  "$PY" bench/ul_train.py "$D/sets/shapes.yaml" "$m" "$s" "$EPOCHS" "$CORES" "$D/runs" "ul-$m-$s" \
    fraction="$FRACTION" >"$D/ul-$m-$s.log" 2>&1 || say "Ultralytics training failed: $D/ul-$m-$s.log"
  read -r ui us <<<"$(ul_ips "$D/ul-$m-$s.log")"
  for sp in $SPLITS; do
    local oi
    oi=$(our_train "$m" "$s" "$sp" "$DEFAULT_PREC")
    notes="$notes${notes:+, }${sp%x*} worker(s) x ${sp#*x} thread(s): $oi"
    if awk -v a="$oi" -v b="$best" 'BEGIN {exit !(a > b)}'; then best=$oi bsplit=$sp; fi
  done
  add_row "$m end-to-end training, imgsz $s (train images/s, $EPOCHS epochs)" "$ui" "$best" \
    "ours $DEFAULT_PREC (default), best of $notes; Ultralytics $CORES torch threads, CPU share $us" 1
  if [ -n "$OTHER_PREC" ] && [ -n "$bsplit" ]; then
    local oo
    oo=$(our_train "$m" "$s" "$bsplit" "$OTHER_PREC")
    add_row "$m end-to-end training, imgsz $s, ours in $OTHER_PREC" "$ui" "$oo" \
      "ours $OTHER_PREC, NOT the default (not in min ratio), ${bsplit%x*} worker(s) x ${bsplit#*x} thread(s)" 0
  fi
}

# ---- time to accuracy --------------------------------------------------------------------------
first_time() { # results.csv, column, threshold -> minutes or "not reached"
  awk -F, -v col="$2" -v thr="$3" 'NR == 1 {for (i = 1; i <= NF; i++) {gsub(/ /, "", $i); c[$i] = i}; next}
    {gsub(/ /, ""); if ($c[col] >= thr) {printf "%.2f", $c["time"] / 60; f = 1; exit}}
    END {if (!f) printf "not reached"}' "$1"
}
tta() { # model
  local m=$1 u o
  "$PY" bench/ul_train.py "$D/sets/shapes.yaml" "$m" 160 1000 "$CORES" "$D/runs" "tta-ul-$m" \
    time="$TTA_HOURS" >"$D/tta-ul-$m.log" 2>&1 || say "Ultralytics training failed: $D/tta-ul-$m.log"
  local sp=$TTA_SPLIT
  ./bin/coordinator train data="$D/shapes.h5" model="$m.yaml" imgsz=160 batch=16 time="$TTA_HOURS" \
    workers="${sp%x*}" threads="${sp#*x}" plots=False project="$D/runs" name="tta-ours-$m" exist_ok=True \
    >/dev/null 2>&1 || say "our training failed: $D/runs/tta-ours-$m/train.log"
  for k in "metrics/mAP50(B) 0.90" "metrics/mAP50-95(B) 0.80"; do
    set -- $k
    u=$(first_time "$D/runs/tta-ul-$m/results.csv" "$1" "$2")
    o=$(first_time "$D/runs/tta-ours-$m/results.csv" "$1" "$2")
    local r
    r=$(awk -v a="$u" -v b="$o" 'BEGIN {if (a + 0 > 0 && b + 0 > 0) printf "%.2f", a / b; else print "?"}')
    rows+=("| $m minutes to ${1#metrics/} >= $2, imgsz 160 | $u | $o | $r | ours ${sp%x*} worker(s) x ${sp#*x} thread(s), $DEFAULT_PREC (default); ratio = Ultralytics time / ours |")
    say "$m ${1#metrics/} >= $2: Ultralytics $u min, ours $o min"
  done
}

start=$(date +%s)
if [ "$TTA" = 1 ]; then
  for m in yolov8n yolo26n; do tta "$m"; done
else
  if [ "$QUICK" = 1 ]; then
    for m in yolov8n yolo26n; do micro "$m" 160 "$CORES"; done
    for m in yolov8n yolo26n; do e2e "$m" 160; done
  else
    for m in yolov8n yolo11n yolo26n; do
      for s in 160 320; do
        for t in 1 "$CORES"; do micro "$m" "$s" "$t"; done
      done
    done
    e2e yolov8n 160
    e2e yolo26n 160
    e2e yolov8n 320
  fi
fi

echo
echo "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $CORES cores, $isa; measured peak: $peak_txt"
echo "versions: $ul_ver; $our_ver"
echo "our default precision here (amp=True): $DEFAULT_PREC convolutions ($prec_why)${OTHER_PREC:+; rows marked 'ours in $OTHER_PREC' are not the default and not in min ratio}"
echo "both sides: GOMP_SPINCOUNT=$GOMP_SPINCOUNT, batch 16, the same synthetic targets (micro) / shapes set (training)"
echo "load average at start $load, at the end $(cut -d' ' -f1-3 /proc/loadavg) (ours included); $(($(date +%s) - start)) s"
echo
if [ "$TTA" = 1 ]; then
  echo "| workload, batch 16 | Ultralytics (min) | ours (min) | Ultralytics / ours | notes |"
else
  echo "| workload, batch 16 | Ultralytics img/s | ours img/s | ours / Ultralytics | notes |"
fi
echo "|---|---|---|---|---|"
printf '%s\n' "${rows[@]}"
if [ "$TTA" = 0 ]; then
  echo
  printf 'min ratio: %s\n' "$(printf '%s\n' "${default_ratios[@]}" | sort -g | head -n 1)"
fi
