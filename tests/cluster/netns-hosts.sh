#!/usr/bin/env bash
# Several hosts on this machine for the cluster tests (root, iproute2): network namespaces
# PREFIX-h0 .. PREFIX-h<N-1> with addresses 10.77.0.1 .. on one bridge, which lives in a namespace
# of its own (PREFIX-br: the machine's own network is untouched). Host i's link is PREFIX-b<i> in
# PREFIX-br: `ip -n PREFIX-br link set PREFIX-b2 down` cuts host 2 off.
#   netns-hosts.sh up PREFIX N | down PREFIX N | pids PREFIX N (processes left in the hosts)
set -u
act=${1:?up|down|pids} p=${2:?PREFIX} n=${3:?N}
case $act in
up)
    ip netns add "$p-br" || exit 1
    ip -n "$p-br" link set lo up
    ip -n "$p-br" link add br0 type bridge && ip -n "$p-br" link set br0 up || exit 1
    for ((i = 0; i < n; i++)); do
        ip netns add "$p-h$i" &&
            ip link add "$p-h$i" type veth peer name "$p-b$i" &&
            ip link set "$p-h$i" netns "$p-h$i" && ip link set "$p-b$i" netns "$p-br" &&
            ip -n "$p-h$i" link set "$p-h$i" name eth0 &&
            ip -n "$p-h$i" addr add "10.77.0.$((i + 1))/24" dev eth0 &&
            ip -n "$p-h$i" link set eth0 up && ip -n "$p-h$i" link set lo up &&
            ip -n "$p-br" link set "$p-b$i" master br0 && ip -n "$p-br" link set "$p-b$i" up || exit 1
    done
    ;;
down)
    for ((i = 0; i < n; i++)); do ip netns del "$p-h$i" 2> /dev/null; done
    ip netns del "$p-br" 2> /dev/null
    true
    ;;
pids) for ((i = 0; i < n; i++)); do ip netns pids "$p-h$i" 2> /dev/null; done ;;
esac
