#!/usr/bin/env bash
# Installs every Debian package this project builds, tests and benchmarks with.
# Idempotent: packages already present are skipped, so a second run changes nothing.
# `install-deps.sh cluster` adds what `make test-cluster` needs (a Slurm cluster on this machine,
# hosts in network namespaces), so that `make test` stays lean.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
APT=(apt-get -o DPkg::Lock::Timeout=600)
if [ "$(id -u)" -ne 0 ]; then
  # a normal user installs through sudo (the README's one prerequisite besides git and make)
  command -v sudo >/dev/null || { echo "install-deps: not root and no sudo: run as root" >&2; exit 2; }
  APT=(sudo DEBIAN_FRONTEND=noninteractive "${APT[@]}")
fi
PKGS=(
  build-essential pkg-config clang-format
  libopenmpi-dev openmpi-bin        # MPI: launch, CPU all-reduce, coordinator <-> worker messages
  libhdf5-openmpi-dev hdf5-tools    # datasets and checkpoints; h5ls/h5dump for tests
  libzmq3-dev                       # telemetry (PUB) and control (REP)
  libturbojpeg0-dev libspng-dev     # JPEG and PNG decode
  libdeflate-dev                    # fast inflate for the loader's PNG path
  libdnnl-dev                       # CPU GEMM and convolution (see shared research cpu-gemm.md)
  libopenblas-dev                   # reference BLAS for tests that compare GEMM paths
  libyaml-dev                       # model and dataset yaml
  libcjson-dev                      # COCO json import, telemetry JSON
  libssl-dev                        # sha256 (dataset and checkpoint hashes)
  libcairo2-dev fonts-dejavu-core   # charts (results.png, PR curves, ...): drawing, text face
  libcurl4-openssl-dev              # the MLflow sink (REST over HTTP)
  libcriterion-dev                  # C test framework
  clang libclang-rt-14-dev libomp-14-dev  # libFuzzer + ASan/UBSan runtimes, OpenMP (make fuzz)
)
if [ "${1:-}" = cluster ]; then
  PKGS=(
    slurmctld slurmd slurm-client munge # a single-node Slurm for tests (cluster/slurm/harness.sh)
    iproute2                          # ip netns: several hosts on one machine
  )
fi
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "install-deps: installing ${missing[*]}"
  "${APT[@]}" update
  "${APT[@]}" install -y --no-install-recommends "${missing[@]}"
else
  echo "install-deps: all ${#PKGS[@]} packages present"
fi
# CUDA is not an apt package here: the toolkit comes with the machine image (/usr/local/cuda).
# The Makefile compiles the .cu sources whenever nvcc exists.
