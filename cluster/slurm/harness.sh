#!/usr/bin/env bash
# A single-node Slurm cluster for tests: munged, slurmctld and slurmd, run as root from one scratch
# state folder (its own slurm.conf, munge key, spool, logs), started and stopped by PID. Nothing
# under /etc/slurm or /run/munge is used; clients find it only through SLURM_CONF.
#
#   cluster/slurm/harness.sh start STATE   # daemons up, node idle; prints the SLURM_CONF line
#   cluster/slurm/harness.sh stop STATE    # cancels its jobs, stops exactly the recorded PIDs
#   cluster/slurm/harness.sh env STATE     # export SLURM_CONF=STATE/slurm.conf
#
# Settings (environment): HARNESS_KILL_WAIT (s between Slurm's SIGTERM and SIGKILL to a job's
# processes, default 30), HARNESS_CRED_EXPIRE (s; a requeued job waits this long before it may
# start again, default 10), HARNESS_CPUS (default nproc), HARNESS_TIMEOUT (s to wait for the
# node, default 60), HARNESS_PORT (first port tried for slurmctld, default 6817).
# Needs: slurmctld slurmd slurm-client munge (scripts/install-deps.sh cluster). Debian's Open MPI
# works with `srun --mpi=pmix` only.
set -uo pipefail

say() { echo "harness: $*" >&2; }

# True when PID is alive (not a zombie) and runs program NAME: a recycled PID is never stopped.
is_prog() {
    [ -n "${1:-}" ] && [ "$(cat "/proc/$1/comm" 2>/dev/null)" = "$2" ] &&
        [ "$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" != Z ]
}

free_port() { # first port >= $1 that nothing listens on, other than $2
    local p
    for ((p = $1; p < $1 + 300; p++)); do
        [ "$p" = "${2:-}" ] && continue
        (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null || { echo "$p"; return 0; }
    done
    return 1
}

# munged refuses a socket in a folder that some folder above lacks o+x for: then /tmp.
socket_dir() {
    local d=$1
    while [ "$d" != / ]; do
        [ $((0$(stat -c %a "$d") & 1)) = 1 ] || { mktemp -d /tmp/yolo-munge.XXXXXX; return; }
        d=$(dirname "$d")
    done
    echo "$1/munge"
}

write_conf() { # STATE SOCKDIR CTLD_PORT SLURMD_PORT
    local s=$1 node mpi=none lib
    node=$(hostname -s)
    for lib in /usr/lib/x86_64-linux-gnu/slurm-wlm /usr/lib/slurm /usr/lib64/slurm; do
        [ -e "$lib/mpi_pmix.so" ] && mpi=pmix
    done
    cat > "$s/slurm.conf" <<EOF
# written by cluster/slurm/harness.sh
ClusterName=yolotest
SlurmctldHost=${node}(127.0.0.1)
SlurmctldPort=$3
SlurmdPort=$4
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$2/munge.sock,cred_expire=${HARNESS_CRED_EXPIRE:-10}
StateSaveLocation=$s/spool/ctld
SlurmdSpoolDir=$s/spool/d
SlurmctldPidFile=$s/slurmctld.pid
SlurmdPidFile=$s/slurmd.pid
SlurmctldLogFile=$s/log/slurmctld.log
SlurmdLogFile=$s/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=2,bf_interval=2
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MpiDefault=$mpi
ReturnToService=2
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
MinJobAge=600
KillWait=${HARNESS_KILL_WAIT:-30}
Waittime=0
JobRequeue=1
NodeName=$node NodeAddr=127.0.0.1 CPUs=${HARNESS_CPUS:-$(nproc)} State=UNKNOWN
PartitionName=debug Nodes=$node Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
EOF
}

start() {
    local s=$1 b
    for b in munged slurmctld slurmd sinfo; do
        command -v "$b" > /dev/null || { say "$b missing: bash scripts/install-deps.sh cluster"; return 2; }
    done
    mkdir -p "$s" && s=$(cd "$s" && pwd) || return 1
    if [ -s "$s/pids" ]; then say "$s is in use (stop it first)"; return 1; fi
    mkdir -p "$s/munge" "$s/spool/ctld" "$s/spool/d" "$s/log"
    chmod 755 "$s" "$s/munge"
    local sock port_c port_d
    sock=$(socket_dir "$s") && chmod 755 "$sock" && echo "$sock" > "$s/sockdir"
    [ -s "$s/munge/munge.key" ] || dd if=/dev/urandom of="$s/munge/munge.key" bs=1024 count=1 status=none
    chmod 600 "$s/munge/munge.key"
    port_c=$(free_port "${HARNESS_PORT:-6817}") && port_d=$(free_port $((port_c + 1)) "$port_c") ||
        { say "no free port"; return 1; }
    write_conf "$s" "$sock" "$port_c" "$port_d"
    echo "export SLURM_CONF=$s/slurm.conf" > "$s/env.sh"
    # in the foreground (-F/-D) under nohup: $! is the daemon itself
    nohup munged -F --socket="$sock/munge.sock" --key-file="$s/munge/munge.key" \
        --pid-file="$s/munge/munged.pid" --log-file="$s/log/munged.log" \
        --seed-file="$s/munge/munged.seed" > "$s/log/munged.out" 2>&1 < /dev/null &
    echo "munged $!" >> "$s/pids"
    local i
    for i in $(seq 100); do [ -S "$sock/munge.sock" ] && break; sleep 0.1; done
    export SLURM_CONF="$s/slurm.conf"
    nohup slurmctld -D -f "$SLURM_CONF" > "$s/log/slurmctld.out" 2>&1 < /dev/null &
    echo "slurmctld $!" >> "$s/pids"
    nohup slurmd -D -f "$SLURM_CONF" -N "$(hostname -s)" > "$s/log/slurmd.out" 2>&1 < /dev/null &
    echo "slurmd $!" >> "$s/pids"
    local t0=$SECONDS st name pid
    while :; do
        st=$(sinfo -h -o %T 2> /dev/null)
        case "$st" in idle | mixed | allocated) break ;; esac
        while read -r name pid; do
            is_prog "$pid" "$name" || { say "$name exited; see $s/log"; stop "$s"; return 1; }
        done < "$s/pids"
        if [ $((SECONDS - t0)) -ge "${HARNESS_TIMEOUT:-60}" ]; then
            say "node not idle after ${HARNESS_TIMEOUT:-60} s (state '$st'); see $s/log"
            stop "$s"
            return 1
        fi
        sleep 0.2
    done
    say "up: node $(hostname -s) $st, ports $port_c/$port_d"
    cat "$s/env.sh"
}

# slurmstepd processes of this cluster (they hold its slurmd log open); init adopts them, so they
# are not in pids.
stepds() {
    local p
    for p in $(pgrep -x slurmstepd); do
        find "/proc/$p/fd" -maxdepth 1 -lname "$1/log/*" 2> /dev/null | grep -q . && echo "$p"
    done
}

stop() {
    local s=$1 name pid i
    [ -d "$s" ] && s=$(cd "$s" && pwd) || return 0
    [ -s "$s/pids" ] || return 0
    export SLURM_CONF="$s/slurm.conf"
    if is_prog "$(awk '$1=="slurmctld"{print $2}' "$s/pids")" slurmctld; then
        local jobs
        jobs=$(squeue -h -o %i 2> /dev/null | tr '\n' ' ')
        # shellcheck disable=SC2086 # one argument per job
        [ -n "${jobs// /}" ] && scancel $jobs 2> /dev/null
        for i in $(seq 100); do [ -z "$(squeue -h -o %i 2> /dev/null)" ] && break; sleep 0.2; done
    fi
    local left=""
    for i in $(seq 75); do left=$(stepds "$s"); [ -z "$left" ] && break; sleep 0.2; done
    for pid in $left; do is_prog "$pid" slurmstepd && kill -KILL "$pid"; done
    for name in slurmd slurmctld munged; do
        pid=$(awk -v n="$name" '$1==n{print $2}' "$s/pids")
        is_prog "$pid" "$name" || continue
        kill -TERM "$pid"
        for i in $(seq 50); do is_prog "$pid" "$name" || break; sleep 0.1; done
        is_prog "$pid" "$name" && kill -KILL "$pid"
    done
    if [ -s "$s/sockdir" ]; then
        local d
        d=$(cat "$s/sockdir")
        rm -f "$d/munge.sock" "$d/munge.sock.lock"
        case "$d" in /tmp/yolo-munge.*) rmdir "$d" 2> /dev/null ;; esac
        rm -f "$s/sockdir"
    fi
    rm -f "$s/pids"
    say "stopped"
}

case "${1:-}" in
start) start "${2:?STATE folder}" ;;
stop) stop "${2:?STATE folder}" ;;
env) echo "export SLURM_CONF=$(cd "${2:?STATE folder}" && pwd)/slurm.conf" ;;
*)
    echo "usage: $0 start|stop|env STATE" >&2
    exit 2
    ;;
esac
