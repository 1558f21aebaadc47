#!/usr/bin/env bash
# Builds and runs the op harness (build/backend_ops; docs/cuda.md) on a machine that may have none
# of our Debian libraries: a bare GPU machine with nvcc, cuDNN and cuBLAS (the toolkit's, or the
# ones PyTorch's wheels bring), gcc and make.
#
#   DEBS=dir     .deb files of oneDNN (libdnnl2, libdnnl-dev) and ocl-icd-libopencl1, unpacked into
#                a scratch prefix when the machine has no oneDNN (apt-get download them elsewhere)
#   CUDA_HOME    default /usr/local/cuda
#   arguments    passed to build/backend_ops; default: precision=all depthwise=all quiet=1
#                (backend=cpu: the rehearsal without a GPU)
#
# Exit status: build/backend_ops's (0 passed, 1 failed, 77 no GPU), 2 when it cannot be built.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
prefix=${BOPS_PREFIX:-/tmp/backend-ops-deps}
cuda_home=${CUDA_HOME:-/usr/local/cuda}
mkdir -p "$prefix/lib"
# another compiler may warn where ours does not: on this one-off build warnings stay warnings
cflags=(-Wno-error) ldflags=() nvflags=(-Xcompiler -Wno-error)
say() { echo "run_backend_ops: $*"; }
lib_dir() { # link against and run with the libraries of folder $1
  ldflags+=("-L$1" "-Wl,-rpath,$1")
  export LD_LIBRARY_PATH="$1${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
}
in_wheels() { # the first file named $1 under the nvidia/ folder of Python's site-packages
  python3 -c 'import site; print("\n".join(site.getsitepackages()))' 2>/dev/null |
    while read -r sp; do [ -d "$sp/nvidia" ] && find "$sp/nvidia" -name "$1" 2>/dev/null; done |
    head -n 1
}
# A CUDA library (header $2, soname $3) from the toolkit, else from the wheels: its include folder
# for both compilers, its lib folder, and an unversioned link for -l$1 if the wheel has none.
cuda_lib() {
  [ -f "$cuda_home/include/$2" ] && return 0
  local h; h=$(in_wheels "$2")
  [ -n "$h" ] || { say "no $2 in $cuda_home or in Python's nvidia wheels"; exit 2; }
  local inc; inc=$(dirname "$h")
  local lib; lib=$(dirname "$(find "$inc/.." -name "$3*" | head -n 1)")
  cflags+=("-I$inc")
  nvflags+=("-I$inc")
  [ -e "$lib/lib$1.so" ] || ln -sf "$lib/$3" "$prefix/lib/lib$1.so"
  lib_dir "$lib"
  say "$1 from $lib"
}

# oneDNN: the CPU reference's convolutions and GEMMs
if [ -n "${BOPS_FORCE_DEBS:-}" ] ||
  ! echo '#include <oneapi/dnnl/dnnl.h>' | gcc -E -x c - >/dev/null 2>&1; then
  [ -d "${DEBS:-}" ] || { say "oneDNN is not installed and DEBS= names no folder of .deb files"; exit 2; }
  for f in "$DEBS"/*.deb; do dpkg -x "$f" "$prefix"; done
  cflags+=("-I$prefix/usr/include")
  lib_dir "$prefix/usr/lib/x86_64-linux-gnu"
  say "oneDNN from $DEBS"
fi
cuda_lib cudnn cudnn.h libcudnn.so.9
cuda_lib cublas cublas_v2.h libcublas.so.13
lib_dir "$prefix/lib"
# only the GPU that is here (all cores; a fresh build takes about a minute)
arch=()
cap=$( (nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null || true) |
  head -n 1 | tr -d .)
[ -n "$cap" ] && arch=("CUDA_ARCH=-gencode arch=compute_$cap,code=sm_$cap")
make -j"$(nproc)" backend-ops CC=gcc CUDA=1 CUDA_HOME="$cuda_home" "${arch[@]}" \
  EXTRA_CFLAGS="${cflags[*]}" EXTRA_NVCCFLAGS="${nvflags[*]}" EXTRA_LDFLAGS="${ldflags[*]}" ||
  { say "build failed"; exit 2; }
[ $# -gt 0 ] || set -- precision=all depthwise=all quiet=1
exec build/backend_ops "$@"
