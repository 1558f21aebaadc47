#!/usr/bin/env bash
# Runs every libFuzzer target built under $1 (build/fuzz) for $2 seconds each: first its committed
# regression inputs (tests/fuzz/regressions/<target>/, each must pass), then fuzzing from the
# committed seeds (tests/fuzz/corpus/<target>/) plus what earlier runs found (build/fuzz/corpus/,
# not committed). A crash leaves its input in build/fuzz/crashes/ and fails the run; copy it into
# tests/fuzz/regressions/<target>/ once fixed. Prints one line per target with its exec count.
set -uo pipefail
B=${1:-build/fuzz}
SECS=${2:-60}
HERE=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$B/corpus" "$B/crashes" "$B/logs"
export ASAN_OPTIONS=detect_leaks=1:allocator_may_return_null=0
export LSAN_OPTIONS=suppressions=$HERE/../sanitize/lsan.supp:print_suppressions=0
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
failed=0
total=0
for bin in "$B"/fuzz/fuzz_*; do
  [ -x "$bin" ] || continue
  name=$(basename "$bin")
  seeds=$HERE/corpus/$name
  work=$B/corpus/$name
  log=$B/logs/$name.log
  mkdir -p "$work"
  regs=$HERE/regressions/$name
  if [ -d "$regs" ] && [ -n "$(ls -A "$regs")" ]; then
    if ! "$bin" -runs=1 "$regs"/* >"$log.regressions" 2>&1; then
      echo "fuzz $name: a regression input fails again (see $log.regressions)"
      failed=1
      continue
    fi
  fi
  "$bin" -max_total_time="$SECS" -timeout=20 -rss_limit_mb=4096 -max_len=8192 \
    -print_final_stats=1 -artifact_prefix="$B/crashes/$name-" "$work" "$seeds" >"$log" 2>&1
  rc=$?
  execs=$(grep -a 'stat::number_of_executed_units' "$log" | awk '{print $2}')
  cov=$(grep -a '^#[0-9].*cov:' "$log" | tail -n 1 | sed -n 's/.*cov: \([0-9]*\).*/\1/p')
  total=$((total + ${execs:-0}))
  if [ $rc -ne 0 ]; then
    echo "fuzz $name: FAILED after ${execs:-?} execs; input in $B/crashes/, log $log:"
    grep -a -m 3 -E 'ERROR|runtime error|fatal|deadly signal' "$log" | sed 's/^/    /'
    failed=1
  else
    echo "fuzz $name: ${execs:-?} execs in ${SECS} s, coverage ${cov:-?}, corpus $(ls "$work" | wc -l), no findings"
  fi
done
echo "fuzz: $total execs in total"
exit $failed
