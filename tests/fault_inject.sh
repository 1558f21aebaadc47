#!/usr/bin/env bash
# Fault injection: N times, start a small 2-worker training job (bin/coordinator train, as a user
# does), and at a random moment hit a random process of it (the launcher, mpirun, the coordinator
# rank or a worker) with a random signal (SIGKILL, SIGTERM, SIGINT, SIGUSR1). After each round:
#   - the job ended by itself within the limits, and no process of it is left;
#   - its endpoints are gone and every version it wrote verifies (build/tests/ckpt-check);
#   - `train resume=auto` finishes the run, and its final weights are bit-identical to the same
#     run done without interruption.
#
#   tests/fault_inject.sh [N]          N rounds (default 20; `make test-cluster` runs 20)
#   FAULT_SEED=1234 tests/fault_inject.sh 200    the same draws again, or more of them
# Prints one line per round and a summary with the counts; exits 1 if any round failed.
set -uo pipefail
shopt -s nullglob
cd "$(dirname "$0")/.."
rounds=${1:-20}
seed=${FAULT_SEED:-$((RANDOM * 32768 + RANDOM))}
RANDOM=$((seed % 32768))
dir=$(mktemp -d /tmp/yolo-faults.XXXXXX)
args="model=tests/fixtures/tiny-yolo26n.yaml imgsz=64 batch=8 threads=1 loader_threads=1"
args+=" plots=False workers=2 epochs=4 stall_warn=10 stall_abort=40"
limit_end=180 # s for a hit job to end by itself (it takes seconds; the machine may be loaded)

say() { echo "fault_inject: $*"; }
./bin/coordinator data synth out="$dir/s.h5" train=64 val=8 imgsz=64 classes=2 seed=3 > /dev/null ||
    { say "no data"; exit 1; }
t0=$(date +%s%N)
# shellcheck disable=SC2086 # args is a list of key=value words
timeout 600 ./bin/coordinator train data="$dir/s.h5" $args project="$dir" name=ref > "$dir/ref.log" 2>&1 ||
    { say "the reference run failed: see $dir/ref.log"; exit 1; }
# hits land anywhere in a run's life: start-up, training, validation, checkpoints, the end
span=$((($(date +%s%N) - t0) / 1000000)) # ms

# The k-th (0-based) child of pid $1 named $2.
child() { pgrep -P "$1" -x "$2" 2> /dev/null | sed -n "$((${3:-0} + 1))p"; }
# Live processes of session $1, but the session's shell itself.
session_pids() {
    ps -eo pid=,sid=,stat= | awk -v s="$1" '$2 == s && $1 != s && $3 !~ /^Z/ {print $1}'
}

targets=(launcher mpirun coordinator worker worker)
signals=(KILL TERM INT USR1)
declare -A hits=()
failed=0 verified=0 missed=0
fail() {
    say "round $i FAILED: $*"
    failed=$((failed + 1))
}
for ((i = 1; i <= rounds; i++)); do
    name=r$i target=${targets[RANDOM % 5]} sig=${signals[RANDOM % 4]}
    ms=$(((RANDOM * 32768 + RANDOM) % span))
    delay=$(printf '%d.%03d' $((ms / 1000)) $((ms % 1000)))
    worker=$((RANDOM % 2))
    rm -f "$dir/$name.sid" "$dir/$name.rc"
    # shellcheck disable=SC2086
    setsid sh -c "echo \$\$ > $dir/$name.sid; exec ./bin/coordinator train data=$dir/s.h5 $args \
        project=$dir name=$name > $dir/$name.log 2>&1" > /dev/null 2>&1 < /dev/null &
    shell=$!
    for _ in $(seq 100); do [ -s "$dir/$name.sid" ] && break; sleep 0.05; done
    sid=$(cat "$dir/$name.sid")
    sleep "$delay"
    launcher=$sid # the session's shell exec'd the launcher
    mpirun=$(child "$launcher" mpirun)
    case $target in
    launcher) pid=$launcher ;;
    mpirun) pid=$mpirun ;;
    coordinator) pid=$([ -n "$mpirun" ] && child "$mpirun" coordinator) ;;
    worker) pid=$([ -n "$mpirun" ] && child "$mpirun" worker "$worker") ;;
    esac
    what="$sig to $target${pid:+ ($pid)} after ${delay}s"
    if [ -n "${pid:-}" ] && kill -"$sig" "$pid" 2> /dev/null; then
        hits[$target/$sig]=$((${hits[$target/$sig]:-0} + 1))
    else
        what="$what: not running then"
        missed=$((missed + 1))
    fi
    # the job ends by itself
    ended=0
    for _ in $(seq $((limit_end * 10))); do
        kill -0 "$shell" 2> /dev/null || { ended=1; break; }
        sleep 0.1
    done
    wait "$shell" 2> /dev/null
    status=$?
    [ $ended = 1 ] || { fail "$what: the job did not end within ${limit_end}s"; status=timeout; }
    left=""
    for _ in $(seq 300); do
        left=$(session_pids "$sid")
        [ -z "$left" ] && break
        sleep 0.2
    done
    if [ -n "$left" ]; then
        fail "$what: processes left: $(ps -o pid=,comm= -p "$(echo $left | tr ' ' ,)" | tr '\n' ' ')"
        kill -KILL $left 2> /dev/null
    fi
    for f in "$dir/$name/endpoints.json" "$dir/$name"/*.sock "$dir/$name"/.telemetry/*.sock; do
        [ -e "$f" ] && fail "$what: $f left behind"
    done
    versions=("$dir/$name"/weights/v*.h5)
    if [ ${#versions[@]} -gt 0 ]; then
        if ./build/tests/ckpt-check verify "${versions[@]}" > "$dir/$name.verify" 2>&1; then
            verified=$((verified + ${#versions[@]}))
        else
            fail "$what: a version does not verify: $(grep -v ': ok' "$dir/$name.verify" | head -1)"
        fi
    fi
    # shellcheck disable=SC2086
    if ! timeout 600 ./bin/coordinator train data="$dir/s.h5" $args project="$dir" name="$name" \
        resume=auto >> "$dir/$name.log" 2>&1; then
        fail "$what: resume=auto did not finish; see $dir/$name.log"
    elif ! ./build/tests/ckpt-check same "$dir/ref/weights/last.h5" "$dir/$name/weights/last.h5" \
        > "$dir/$name.same" 2>&1; then
        fail "$what: the final weights differ: $(cat "$dir/$name.same")"
    else
        say "round $i: $what: status $status, ${#versions[@]} version(s) verified, resumed, bit-identical"
    fi
done
summary=""
for k in $(printf '%s\n' "${!hits[@]}" | sort); do summary+=" $k=${hits[$k]}"; done
say "$rounds rounds (FAULT_SEED=$seed): hits$summary; not running when hit: $missed;" \
    "versions verified: $verified; failed rounds: $failed"
[ "$failed" = 0 ] && rm -rf "$dir"
[ "$failed" = 0 ] || { say "kept $dir"; exit 1; }
