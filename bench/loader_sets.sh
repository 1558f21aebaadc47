# Sourced by bench/loader.sh and bench/loader_simd.sh (from the repository root): the Python of
# scripts/pyenv.sh bench in $PY, and the two image sets as dataset files $D/shapes.h5 and
# $D/cocolike.h5 (made once, reused):
#   shapes:   the 2000-image synthetic shapes set (coordinator data synth) as 256 px PNG files
#   cocolike: 2000 JPEGs of COCO's kind (about 640 x 480, quality 75-95) made from coco8's photos
# $BENCH_LOADER_DIR picks the folder (default build/bench-loader).
if ! venv=$(scripts/pyenv.sh bench | tail -n 1); then
  echo "$(basename "$0"): skipped: no Python environment with ultralytics (scripts/pyenv.sh bench failed)" >&2
  exit 1
fi
PY="$venv/bin/python"
D=${BENCH_LOADER_DIR:-build/bench-loader}
mkdir -p "$D"
D=$(cd "$D" && pwd) # absolute: the yaml files name their folders by this path
if [ ! -f "$D/shapes.h5" ] || [ ! -f "$D/cocolike.h5" ]; then
  echo "$(basename "$0"): writing the image sets to $D (once)"
  ./bin/coordinator data synth out="$D/synth_raw.h5" train=2000 val=100 imgsz=256 classes=3 seed=0 >/dev/null
  "$PY" bench/loader_data.py "$D/synth_raw.h5" "$D/sets" 2000
  rm -f "$D/synth_raw.h5"
  ./bin/coordinator data pack data="$D/sets/shapes.yaml" out="$D/shapes.h5" >/dev/null
  ./bin/coordinator data pack data="$D/sets/cocolike.yaml" out="$D/cocolike.h5" >/dev/null
fi
