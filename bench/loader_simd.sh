#!/usr/bin/env bash
# make bench-loader-simd: the loader's pixel kernels at each level (scalar, AVX2, AVX-512:
# bin/bench_loader simd=...) on the same files, one loader thread pinned to one core (taskset),
# training augmentation, imgsz 320 / 640, mosaic on / off, on the sets of make bench-loader
# (bench/loader_sets.sh). The levels of one row run back to back. Prints per row the CPU
# milliseconds per output image of the pixel stages (resize, warp, HSV; the flips are inside the
# warp), their sum, and the whole image (1 / images per CPU second), for each level, with each
# vectorised level's speed-up (scalar ms / its ms). A level this CPU or build lacks is reported and
# left out. BENCH_CORE picks the core (default 0), BENCH_IMAGES the images per timed round
# (default 320; 3 rounds, best kept for the whole image, stage times summed over them).
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/loader_sets.sh
CORE=${BENCH_CORE:-0}
N=${BENCH_IMAGES:-320}

levels=()
for l in scalar avx2 avx512; do
  if msg=$(./bin/bench_loader data="$D/shapes.h5" simd=$l images=16 batch=16 rounds=1 2>&1 >/dev/null); then
    levels+=("$l")
  else
    echo "loader-simd: $l left out: $msg"
  fi
done
echo "loader-simd: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), core $CORE, levels ${levels[*]}, load average $(cut -d' ' -f1-3 /proc/loadavg)"
hdr="| set | imgsz | mosaic | what |"
sep="|---|---|---|---|"
for l in "${levels[@]}"; do hdr+=" $l ms |"; sep+="---|"; done
for l in "${levels[@]:1}"; do hdr+=" $l speed-up |"; sep+="---|"; done
echo
echo "CPU ms per output image (1 loader thread); speed-up = scalar ms / level ms"
echo "$hdr"
echo "$sep"
for set in shapes cocolike; do
  for imgsz in 320 640; do
    for mosaic in 1 0; do
      declare -A ms=()
      for l in "${levels[@]}"; do
        o=$(taskset -c "$CORE" ./bin/bench_loader data="$D/$set.h5" imgsz="$imgsz" mosaic="$mosaic" images="$N" batch=16 rounds=3 threads=1 simd="$l")
        st=$(echo "$o" | awk '/^stages/')
        for s in resize warp hsv; do
          ms[$l,$s]=$(echo "$st" | tr ' ' '\n' | awk -F= -v k="$s" '$1 == k {print $2}')
        done
        ms[$l,pixels]=$(awk -v a="${ms[$l,resize]}" -v b="${ms[$l,warp]}" -v c="${ms[$l,hsv]}" 'BEGIN {printf "%.3f", a + b + c}')
        ms[$l,image]=$(echo "$o" | awk '/^ours_cpu/ {printf "%.3f", 1000 / $2}')
      done
      on=$([ "$mosaic" = 1 ] && echo on || echo off)
      for s in resize warp hsv pixels image; do
        what=$s
        [ "$s" = pixels ] && what="pixel stages"
        [ "$s" = image ] && what="whole image"
        row="| $set | $imgsz | $on | $what |"
        for l in "${levels[@]}"; do row+=" ${ms[$l,$s]} |"; done
        for l in "${levels[@]:1}"; do
          row+=" $(awk -v a="${ms[scalar,$s]}" -v b="${ms[$l,$s]}" 'BEGIN {printf (b > 0 ? "%.2f" : "-"), a / b}') |"
        done
        echo "$row"
      done
      unset ms
    done
  done
done
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
