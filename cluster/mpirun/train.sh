#!/usr/bin/env bash
# The MPMD job on several hosts with mpirun: the coordinator on one host, one worker per slot of
# every host in a hostfile (one per GPU, or per CPU socket). Arguments are `coordinator train`'s.
#
#   cluster/mpirun/train.sh cluster/mpirun/hostfile.example data=coco.h5 model=yolo26n.yaml ...
#
# It runs exactly (for hosts a with 2 slots and b with 2 slots, the coordinator on a):
#   mpirun --host a:3,b:2 --bind-to none --mca btl self,vader,tcp \
#          -np 1 --host a bin/coordinator train ... : -np 4 --host a:2,b:2 bin/worker
# Settings (environment):
#   YOLO_BIN                the folder of coordinator and worker (default: bin/ next to cluster/)
#   YOLO_COORDINATOR_HOST   where the coordinator runs (default: the hostfile's first host)
#   YOLO_IFACE              the network for MPI and mpirun's own traffic, an interface (ib0) or
#                           a CIDR (10.1.0.0/16): btl_tcp_if_include and oob_tcp_if_include
# Open MPI reaches the other hosts over ssh (plm_rsh_agent); as root also set
# OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1. Exit statuses are the coordinator's
# (docs/cluster.md): 0 done, 1 failed, 2 refused, 75 stopped by a signal after saving a version.
set -euo pipefail
hostfile=${1:?usage: train.sh HOSTFILE [train arguments...]}
shift
here=$(cd "$(dirname "$0")/../.." && pwd)
bin=${YOLO_BIN:-$here/bin}

declare -A slots=()
order=()
while read -r host rest; do
    [[ -z $host || $host == \#* ]] && continue
    n=1
    [[ $rest =~ slots=([0-9]+) ]] && n=${BASH_REMATCH[1]}
    [[ -v slots[$host] ]] || order+=("$host")
    slots[$host]=$((${slots[$host]:-0} + n))
done < "$hostfile"
[ ${#order[@]} -gt 0 ] || { echo "train.sh: no host in $hostfile" >&2; exit 2; }
coord=${YOLO_COORDINATOR_HOST:-${order[0]}}

workers=0 worker_hosts="" all_hosts=""
for h in "${order[@]}"; do
    n=${slots[$h]}
    workers=$((workers + n))
    worker_hosts+="${worker_hosts:+,}$h:$n"
    [ "$h" = "$coord" ] && n=$((n + 1)) # the coordinator is one more process there
    all_hosts+="${all_hosts:+,}$h:$n"
done
[[ -v slots[$coord] ]] || all_hosts+=",$coord:1"

mca=(--mca btl self,vader,tcp)
if [ -n "${YOLO_IFACE:-}" ]; then
    mca+=(--mca btl_tcp_if_include "$YOLO_IFACE" --mca oob_tcp_if_include "$YOLO_IFACE")
fi
exec mpirun -q --host "$all_hosts" --bind-to none "${mca[@]}" \
    -np 1 --host "$coord" "$bin/coordinator" train "$@" \
    : -np "$workers" --host "$worker_hosts" "$bin/worker"
