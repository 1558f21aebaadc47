#!/usr/bin/env bash
# The fresh-machine proof (run by hand, as root; not part of `make test`: it takes a while).
#
# Builds a minimal Debian 12 with debootstrap, installs only what the README names as
# prerequisites (git, make, sudo), creates an ordinary user with sudo, puts a clean checkout of
# HEAD (git archive: committed files only) in its home with ../shared beside it, and runs the
# README's two commands there as that user, from nothing: `make test`, then `make demo`.
# The CUDA toolkit is not in the chroot, so this also proves the build without nvcc (CUDA=auto).
#
# Caches under build/fresh-machine/ so reruns are fast: the bare debootstrapped system (a tarball)
# and apt's downloaded .deb files (FRESH_APT_CACHE=0 to download everything again).
# Usage: tests/fresh-machine.sh [keep]   (keep: leave the chroot in place for inspection)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
SHARED=${SHARED:-$ROOT/../shared}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
CACHE=$ROOT/build/fresh-machine
BASE=$CACHE/bookworm-minbase.tar
KEEP=${1:-}

die() { echo "fresh-machine: $*" >&2; exit 2; }
[ "$(id -u)" -eq 0 ] || die "needs root (debootstrap, chroot, mounts)"
[ -d "$SHARED/data/coco8" ] || die "$SHARED: the shared folder (data/coco8) is not there"
if ! command -v debootstrap >/dev/null; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends debootstrap
fi
mkdir -p "$CACHE/apt-archives"

t_start=$(date +%s)
if [ ! -f "$BASE" ]; then
  echo "fresh-machine: debootstrap bookworm (minbase) from $MIRROR"
  mk=$(mktemp -d /tmp/yolo-debootstrap-XXXXXX)
  debootstrap --variant=minbase bookworm "$mk" "$MIRROR" >"$CACHE/debootstrap.log" 2>&1 ||
    die "debootstrap failed (see $CACHE/debootstrap.log)"
  tar -C "$mk" -cf "$BASE.part" . && mv "$BASE.part" "$BASE"
  rm -rf "$mk"
fi

CH=$(mktemp -d /tmp/yolo-fresh-XXXXXX)
cleanup() {
  for m in dev/shm dev/pts dev sys proc var/cache/apt/archives; do
    mountpoint -q "$CH/$m" && umount -l "$CH/$m"
  done
  if [ "$KEEP" = keep ]; then echo "fresh-machine: chroot kept in $CH"; else rm -rf "$CH"; fi
}
trap cleanup EXIT
tar -C "$CH" -xf "$BASE"
chmod 0755 "$CH" # it becomes /, which every user must traverse (mktemp made it 0700)
mount -t proc proc "$CH/proc"
mount -t sysfs sys "$CH/sys"
mount --bind /dev "$CH/dev"
mount -t devpts devpts "$CH/dev/pts" -o newinstance,ptmxmode=0666
mount -t tmpfs shm "$CH/dev/shm"
if [ "${FRESH_APT_CACHE:-1}" = 1 ]; then
  mount --bind "$CACHE/apt-archives" "$CH/var/cache/apt/archives"
fi
cp /etc/resolv.conf "$CH/etc/resolv.conf"
echo "127.0.0.1 localhost $(hostname)" >"$CH/etc/hosts" # sudo resolves the host name
echo "deb $MIRROR bookworm main" >"$CH/etc/apt/sources.list"

# The README's prerequisites, then a new user who may sudo.
chroot "$CH" /bin/bash -c '
  set -e
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq git make sudo >/dev/null
  useradd -m -s /bin/bash newuser
  echo "newuser ALL=(ALL) NOPASSWD: ALL" >/etc/sudoers.d/newuser
  chmod 0440 /etc/sudoers.d/newuser'

# A clean checkout (committed files of HEAD) and the shared folder beside it, owned by the user.
mkdir -p "$CH/home/newuser/yolo-cluster"
git -C "$ROOT" archive HEAD | tar -C "$CH/home/newuser/yolo-cluster" -xf -
cp -a "$SHARED" "$CH/home/newuser/shared"
chroot "$CH" chown -R newuser:newuser /home/newuser/yolo-cluster /home/newuser/shared
t_ready=$(date +%s)

LOG=$CACHE/run-$(date +%Y%m%d-%H%M%S).log
run_as_user() { # $1: the command line, run in the checkout as newuser in a login shell
  chroot "$CH" /usr/sbin/runuser -l newuser -c "cd ~/yolo-cluster && $1"
}
echo "fresh-machine: chroot ready in $((t_ready - t_start)) s; make test (log: $LOG)"
t0=$(date +%s)
rc_test=0
run_as_user "make test" >"$LOG" 2>&1 || rc_test=$?
t1=$(date +%s)
echo "fresh-machine: make test: exit $rc_test in $((t1 - t0)) s; $(grep -a 'Synthesis' "$LOG" | tail -n 1 || true)"
grep -a '^features:' "$LOG" | head -n 1 || true
echo "fresh-machine: make demo"
rc_demo=0
run_as_user "make demo" >>"$LOG" 2>&1 || rc_demo=$?
t2=$(date +%s)
echo "fresh-machine: make demo: exit $rc_demo in $((t2 - t1)) s; last line: $(tail -n 1 "$LOG")"
echo "fresh-machine: total $((t2 - t_start)) s (log: $LOG)"
[ "$rc_test" -eq 0 ] && [ "$rc_demo" -eq 0 ]
