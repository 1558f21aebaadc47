#!/usr/bin/env bash
# Distributed training throughput: yolov8n at imgsz 160 and 320, 1 worker x 2 threads against
# 2 workers x 1 thread, same global batch. Short runs through the real train command; the per-step
# numbers come from the telemetry stream (coordinator watch): compute = forward + backward +
# optimizer of the slowest worker, exposed = all-reduce time NOT hidden behind backward.
# Usage: bench/bench_distributed.sh [steps=10] [batch=8]   (the machine's load skews the numbers)
set -euo pipefail
cd "$(dirname "$0")/.."
STEPS=${1:-10}
BATCH=${2:-8}
DIR=$(mktemp -d /tmp/bench-dist-XXXXXX)
trap '[ -n "${KEEP:-}" ] || rm -rf "$DIR"' EXIT
N=$((STEPS * BATCH))
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg), $(nproc) cores"
printf '%-6s %-22s %9s %12s %12s %8s\n' imgsz config 'img/s' 'compute s' 'exposed s' buckets
for S in 160 320; do
  ./bin/coordinator data synth out="$DIR/s$S.h5" train=$N val=8 imgsz=$S classes=3 seed=1 >/dev/null
  for cfg in "workers=1 threads=2" "workers=2 threads=1"; do
    name="r$S-w${cfg#workers=}"; name="${name%% *}"
    ./bin/coordinator train data="$DIR/s$S.h5" model=yolov8n.yaml epochs=1 imgsz=$S batch=$BATCH \
      nbs=$BATCH val=False $cfg bucket_mb=1 project="$DIR" name="$name" >"$DIR/$name.log" 2>&1 &
    pid=$!
    for _ in $(seq 600); do [ -f "$DIR/$name/endpoints.json" ] && break; sleep 0.2; done
    timeout 600 ./bin/coordinator watch "$DIR/$name" >"$DIR/$name.watch" 2>&1 || true
    wait $pid
    # Steady state, skipping the first step (start-up): img/s from the running figure each step
    # event carries (k * batch / elapsed), means of compute and exposed all-reduce per step.
    awk -v S=$S -v cfg="$cfg" -v B=$BATCH '
      /^epoch .* step / { split($4, ks, "/"); k = ks[1]; n++
        for (i = 1; i <= NF; i++) {
          if ($i == "img/s") t = k * B / $(i - 1)
          if ($i == "compute" && n > 1) { c += $(i + 1) + 0; m++ }
          if ($i == "(exposed" && n > 1) e += $(i + 1) + 0 }
        if (n == 1) { k0 = k; t0 = t } else { k1 = k; t1 = t } }
      END { if (m == 0) { printf "%-6s %-22s no step events seen\n", S, cfg; exit }
            printf "%-6s %-22s %9.2f %12.3f %12.3f %8s\n", S, cfg, (k1 - k0) * B / (t1 - t0),
                   c / m, e / m, "1MB" }
    ' "$DIR/$name.watch"
  done
done
