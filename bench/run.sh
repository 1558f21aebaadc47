#!/usr/bin/env bash
# make bench: every benchmark, in order. Each prints its own throughput and ratios.
set -euo pipefail
cd "$(dirname "$0")/.."
for b in bin/bench_*; do
  [ -x "$b" ] || continue
  echo "== $b"
  "$b"
done
