#!/usr/bin/env bash
# mpirun's remote shell (plm_rsh_agent) for hosts in network namespaces (netns-hosts.sh): runs the
# command in host H's namespace ($YOLO_NETNS_PREFIX-H) under its own hostname, as ssh would run it
# on host H. mpirun calls it as: netns-rsh.sh [ssh options] H COMMAND...
while [ "${1#-}" != "$1" ]; do shift; done
h=$1
shift
exec ip netns exec "$YOLO_NETNS_PREFIX-$h" unshare --uts sh -c "hostname $h; $*"
