# Build: bin/coordinator, bin/worker, the Criterion test binary and the benchmarks.
# Flags come from pkg-config and the MPI compiler wrapper, never from hard-coded paths.
# Everything derived from pkg-config or installed tools is computed lazily, on first use and then
# once (VAR = $(eval VAR := ...)$(VAR)): a parse on a bare machine runs none of them, so `make test`
# and `make demo` can install the packages (`make deps`) and then build in a fresh make.
.DEFAULT_GOAL := all
CC        := mpicc
PKGS      := hdf5-openmpi libzmq libturbojpeg spng yaml-0.1 libcjson openssl cairo libcurl
OPT       ?= -O2 -march=native
PKG_CFLAGS = $(eval PKG_CFLAGS := $$(shell pkg-config --cflags $$(PKGS)))$(PKG_CFLAGS)
PKG_LIBS   = $(eval PKG_LIBS := $$(shell pkg-config --libs $$(PKGS)))$(PKG_LIBS)
CFLAGS     = -std=c17 $(OPT) -g -fopenmp -D_GNU_SOURCE -Wall -Wextra -Werror -I. \
             $(PKG_CFLAGS) $(EXTRA_CFLAGS)
LDLIBS     = $(PKG_LIBS) -ldnnl -lm -lpthread
LDFLAGS    = -fopenmp $(EXTRA_LDFLAGS)

# ---- optional features: detected, printed when building, overridable ----------------------------
CUDA_HOME ?= /usr/local/cuda
NVCC      ?= $(firstword $(wildcard $(CUDA_HOME)/bin/nvcc) $(shell command -v nvcc 2>/dev/null))
CUDA      ?= auto
ifeq ($(CUDA),auto)
  override CUDA := $(if $(NVCC),1,0)
endif
HAVE_CUDNN  = $(if $(wildcard $(CUDA_HOME)/include/cudnn.h),found,not found)
HAVE_NCCL   = $(if $(wildcard $(CUDA_HOME)/include/nccl.h),found,not found)
H5_PARALLEL = $(if $(filter 1,$(shell printf '\043include <H5pubconf.h>\nH5_HAVE_PARALLEL\n' | \
                cc -E -P $(shell pkg-config --cflags hdf5-openmpi 2>/dev/null) -x c - 2>/dev/null | \
                tail -n 1)),found,not found)
HAVE_MPI    = $(if $(shell command -v mpicc 2>/dev/null),found,not found)
HAVE_ZMQ    = $(if $(shell pkg-config --exists libzmq 2>/dev/null && echo y),found,not found)
FEATURES    = MPI $(HAVE_MPI), HDF5 parallel $(H5_PARALLEL), ZeroMQ $(HAVE_ZMQ), CUDA $(if \
              $(filter 1,$(CUDA)),found ($(NVCC)),not found), cuDNN $(HAVE_CUDNN), NCCL $(HAVE_NCCL)
ifeq ($(CUDA),1)
  CUDA_ARCH ?= -gencode arch=compute_80,code=sm_80 -gencode arch=compute_90,code=sm_90 \
               -gencode arch=compute_90,code=compute_90
  NVCCFLAGS ?= -O2 -std=c++17 $(CUDA_ARCH) -I. -Xcompiler -Wall,-Wextra,-Werror
  CFLAGS    += -DHAVE_CUDA -I$(CUDA_HOME)/include
  LDFLAGS   += -L$(CUDA_HOME)/lib64 -Wl,-rpath,$(CUDA_HOME)/lib64
  # objects from nvcc reference libstdc++ when the C driver links them
  LDLIBS    += -lcudnn -lnccl -lcudart -lstdc++
endif

# ---- sources: every .c in the module folders is library code, except the two mains -------------
MODULES   := common kernels dataio worker coordinator lifecycle
MAINS     := worker/main.c coordinator/main.c lifecycle/main.c
ALL_C     := $(filter-out $(MAINS),$(foreach m,$(MODULES),$(wildcard $(m)/*.c)))
# foo_nocuda.c is the CPU-only stand-in for foo.cu: built exactly when the .cu is not
ifeq ($(CUDA),1)
  LIB_C   := $(filter-out %_nocuda.c,$(ALL_C))
  LIB_CU  := $(foreach m,$(MODULES),$(wildcard $(m)/*.cu))
else
  LIB_C   := $(ALL_C)
  LIB_CU  :=
endif
LIB_OBJ   := $(LIB_C:%.c=build/%.o) $(LIB_CU:%.cu=build/%.cu.o)
TEST_OBJ  := $(patsubst %.c,build/%.o,$(wildcard tests/*.c))
BENCH_BIN := $(patsubst bench/%.c,bin/%,$(wildcard bench/*.c))
# tests/mpi/foo.c: a standalone MPI program that a Criterion test runs under mpirun
MPI_TEST_BIN := $(patsubst tests/mpi/%.c,build/tests/mpi/%,$(wildcard tests/mpi/*.c))

all: features bin/coordinator bin/worker bin/lifecycle build/tests/yolo-tests $(BENCH_BIN) $(MPI_TEST_BIN)

features:
	@echo "features: $(FEATURES)"

build/libyolo.a: $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

bin/%: build/%/main.o build/libyolo.a | bin
	$(CC) $(LDFLAGS) -o $@ $< build/libyolo.a $(LDLIBS)

bin/bench_%: build/bench/bench_%.o build/libyolo.a | bin
	$(CC) $(LDFLAGS) -o $@ $< build/libyolo.a $(LDLIBS)

$(MPI_TEST_BIN): build/tests/mpi/%: build/tests/mpi/%.o build/libyolo.a
	$(CC) $(LDFLAGS) -o $@ $< build/libyolo.a $(LDLIBS)

build/tests/yolo-tests: $(TEST_OBJ) build/libyolo.a
	$(CC) $(LDFLAGS) -o $@ $(TEST_OBJ) build/libyolo.a $(LDLIBS) -lcriterion

# kernels: float compares may be if-converted (we never enable FP traps), so clamps vectorise
build/kernels/%.o: CFLAGS += -fno-trapping-math

# V=1 shows full command lines
Q := $(if $(V),,@)
build/%.o: %.c
	@mkdir -p $(dir $@)
	@$(if $(V),,echo "  CC    $<")
	$(Q)$(CC) $(CFLAGS) -MMD -MP -c -o $@ $<

build/%.cu.o: %.cu
	@mkdir -p $(dir $@)
	@$(if $(V),,echo "  NVCC  $<")
	$(Q)$(NVCC) $(NVCCFLAGS) -MMD -MP -c -o $@ $<

bin:
	mkdir -p bin

# The code version recorded in checkpoints: git describe at build time. The header is rewritten
# only when the text changes, so an unchanged tree rebuilds nothing.
build/gen/code_version.h: FORCE
	@mkdir -p $(dir $@)
	@v=$$(git describe --always --dirty --tags 2>/dev/null || echo unknown); \
	 printf '#define CODE_VERSION "%s"\n' "$$v" > $@.tmp; \
	 cmp -s $@.tmp $@ && rm -f $@.tmp || mv $@.tmp $@
build/common/code_version.o: build/gen/code_version.h
FORCE:

-include $(shell find build -name '*.d' 2>/dev/null)

# ---- entry points -------------------------------------------------------------------------------
deps:
	bash scripts/install-deps.sh

# test and demo install what is missing, then build and run in a fresh make (which computes the
# flags only now that the packages are there).
# TEST_ARGS passes options to Criterion, e.g. make test TEST_ARGS="--filter 'conv/*'"
test demo: deps
	@$(MAKE) --no-print-directory run-$@

run-test: all
	OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_btl=self,vader \
	OMPI_MCA_rmaps_base_oversubscribe=1 ./build/tests/yolo-tests --jobs 2 $(TEST_ARGS)

bench: all
	bash bench/run.sh

# The main job on the built-in synthetic dataset: a few minutes of yolov8n on 2 workers.
DEMO_ARGS ?= model=yolov8n.yaml imgsz=160 batch=16 time=0.08 workers=2 project=runs name=demo
run-demo: all
	@mkdir -p data
	@test -f data/synth.h5 || ./bin/coordinator data synth out=data/synth.h5 train=2000 val=400 imgsz=256 classes=3 seed=0
	./bin/coordinator train data=data/synth.h5 $(DEMO_ARGS)

format:
	clang-format -i $$(git ls-files '*.c' '*.h' '*.cu' '*.cuh')

clean:
	rm -rf build bin

.PHONY: all features deps test run-test bench demo run-demo format clean FORCE
.SECONDARY:
