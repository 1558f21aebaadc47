# Build: bin/coordinator, bin/worker, the Criterion test binary and the benchmarks.
# Flags come from pkg-config and the MPI compiler wrapper, never from hard-coded paths.
# Everything derived from pkg-config or installed tools is computed lazily, on first use and then
# once (VAR = $(eval VAR := ...)$(VAR)): a parse on a bare machine runs none of them, so `make test`
# and `make demo` can install the packages (`make deps`) and then build in a fresh make.
.DEFAULT_GOAL := all
CC        := mpicc
PKGS      := hdf5-openmpi libzmq libturbojpeg spng libdeflate yaml-0.1 libcjson openssl cairo libcurl
# Build variants: objects under $(B), programs under $(BIN). SANITIZE=address is the ASan+UBSan
# build of the tests (make test-sanitize), SANITIZE=fuzz the clang libFuzzer build (make fuzz);
# both are CPU-only.
B         ?= build
BIN       ?= bin
ifeq ($(SANITIZE),address)
  CUDA    := 0
  OPT     := -O1 -march=native -fno-omit-frame-pointer
  SAN     := -fsanitize=address,undefined -fno-sanitize-recover=undefined
else ifeq ($(SANITIZE),fuzz)
  CUDA    := 0
  CC      := env OMPI_CC=clang mpicc
  OPT     := -O1 -march=native -fno-omit-frame-pointer
  # (-Wno-pass-failed: clang notes that sanitized loops did not vectorise)
  SAN     := -fsanitize=address,undefined,fuzzer-no-link -fno-sanitize-recover=undefined \
             -Wno-pass-failed
endif
OPT       ?= -O2 -march=native
PKG_CFLAGS = $(eval PKG_CFLAGS := $$(shell pkg-config --cflags $$(PKGS)))$(PKG_CFLAGS)
PKG_LIBS   = $(eval PKG_LIBS := $$(shell pkg-config --libs $$(PKGS)))$(PKG_LIBS)
CFLAGS     = -std=c17 $(OPT) -g -fopenmp -D_GNU_SOURCE -Wall -Wextra -Werror -I. \
             $(PKG_CFLAGS) $(SAN) $(EXTRA_CFLAGS)
LDLIBS     = $(PKG_LIBS) -ldnnl -lm -lpthread
LDFLAGS    = -fopenmp $(SAN) $(EXTRA_LDFLAGS)

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
  # -fmad=false: no contraction to FMA, as the C kernels (-std=c17) have none, so our elementwise
  # kernels give the CPU reference's bits (docs/cuda.md)
  NVCCFLAGS ?= -O2 -std=c++17 $(CUDA_ARCH) -fmad=false -I. -Xcompiler -Wall,-Wextra,-Werror \
               $(EXTRA_NVCCFLAGS)
  CFLAGS    += -DHAVE_CUDA -I$(CUDA_HOME)/include
  LDFLAGS   += -L$(CUDA_HOME)/lib64 -Wl,-rpath,$(CUDA_HOME)/lib64
  # objects from nvcc reference libstdc++ when the C driver links them
  LDLIBS    += -lcudnn -lcublas -lnccl -lcudart -lstdc++
endif

# ---- sources: every .c in the module folders is library code, except the two mains -------------
MODULES   := common kernels dataio worker coordinator lifecycle
MAINS     := worker/main.c coordinator/main.c lifecycle/main.c
ALL_C     := $(filter-out $(MAINS),$(foreach m,$(MODULES),$(wildcard $(m)/*.c)))
# foo_nocuda.c is the CPU-only stand-in for foo.cu or foo_cuda.c (C that calls CUDA, cuDNN or
# NCCL): built exactly when they are not
ifeq ($(CUDA),1)
  LIB_C   := $(filter-out %_nocuda.c,$(ALL_C))
  LIB_CU  := $(foreach m,$(MODULES),$(wildcard $(m)/*.cu)) $(wildcard kernels/cuda/*.cu)
else
  LIB_C   := $(filter-out %_cuda.c,$(ALL_C))
  LIB_CU  :=
endif
LIB_OBJ   := $(LIB_C:%.c=$(B)/%.o) $(LIB_CU:%.cu=$(B)/%.cu.o)
TEST_OBJ  := $(patsubst %.c,$(B)/%.o,$(wildcard tests/*.c))
BENCH_BIN := $(patsubst bench/%.c,$(BIN)/%,$(wildcard bench/*.c))
# tests/cluster/*.c: the cluster tests (make test-cluster), their own binary so that make test stays
# lean; tests/tools: helpers the cluster tests' scripts call
CLUSTER_TEST_OBJ := $(patsubst %.c,$(B)/%.o,$(wildcard tests/cluster/*.c)) $(B)/tests/runs.o \
                    $(B)/tests/testenv.o
# tests/mpi/foo.c: a standalone MPI program that a Criterion test runs under mpirun
MPI_TEST_BIN := $(patsubst tests/mpi/%.c,$(B)/tests/mpi/%,$(wildcard tests/mpi/*.c))
# tests/fuzz/fuzz_foo.c: a libFuzzer target (SANITIZE=fuzz only)
FUZZ_BIN  := $(patsubst tests/fuzz/%.c,$(B)/fuzz/%,$(filter-out %/fuzz_common.c,$(wildcard tests/fuzz/fuzz_*.c)))
TEST_PROGRAMS := $(BIN)/coordinator $(BIN)/worker $(BIN)/lifecycle $(BIN)/yolo-loopback.so \
                 $(B)/tests/yolo-tests \
                 $(MPI_TEST_BIN)

all: features $(TEST_PROGRAMS) $(BENCH_BIN)

features:
	@echo "features: $(FEATURES)"

$(B)/libyolo.a: $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(BIN)/%: $(B)/%/main.o $(B)/libyolo.a
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $< $(B)/libyolo.a $(LDLIBS)

$(BIN)/bench_%: $(B)/bench/bench_%.o $(B)/libyolo.a
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $< $(B)/libyolo.a $(LDLIBS)

# mpirun's loopback preload for single-host launches (cluster/loopback/loopback_bind.c): libc only,
# built with the plain C compiler, never part of libyolo (it replaces bind())
$(BIN)/yolo-loopback.so: cluster/loopback/loopback_bind.c
	@mkdir -p $(dir $@)
	cc -std=c17 -O2 -Wall -Wextra -Werror -fPIC -shared -o $@ $<

$(MPI_TEST_BIN): $(B)/tests/mpi/%: $(B)/tests/mpi/%.o $(B)/libyolo.a
	$(CC) $(LDFLAGS) -o $@ $< $(B)/libyolo.a $(LDLIBS)

$(B)/tests/yolo-tests: $(TEST_OBJ) $(B)/libyolo.a
	$(CC) $(LDFLAGS) -o $@ $(TEST_OBJ) $(B)/libyolo.a $(LDLIBS) -lcriterion

$(FUZZ_BIN): $(B)/fuzz/%: $(B)/tests/fuzz/%.o $(B)/tests/fuzz/fuzz_common.o $(B)/libyolo.a
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -fsanitize=fuzzer -o $@ $< $(B)/tests/fuzz/fuzz_common.o $(B)/libyolo.a \
	      $(LDLIBS)

$(B)/tests/yolo-cluster-tests: $(CLUSTER_TEST_OBJ) $(B)/libyolo.a
	$(CC) $(LDFLAGS) -o $@ $(CLUSTER_TEST_OBJ) $(B)/libyolo.a $(LDLIBS) -lcriterion

$(B)/tests/ckpt-check: $(B)/tests/tools/ckpt_check.o $(B)/libyolo.a
	$(CC) $(LDFLAGS) -o $@ $< $(B)/libyolo.a $(LDLIBS)

# kernels: float compares may be if-converted (we never enable FP traps), so clamps vectorise
$(B)/kernels/%.o: CFLAGS += -fno-trapping-math

# dataio/pixels_avx2.c: the AVX2 + FMA pixel kernels, built on every x86-64 machine (run where the
# CPU has them and the build does not target AVX-512, or when forced) and without AVX-512, so that
# they are the code an AVX2-only CPU runs whatever machine builds them
ifneq ($(filter x86_64 amd64,$(shell uname -m)),)
$(B)/dataio/pixels_avx2.o: CFLAGS += -mavx2 -mfma -mno-avx512f
endif

# V=1 shows full command lines
Q := $(if $(V),,@)
$(B)/%.o: %.c
	@mkdir -p $(dir $@)
	@$(if $(V),,echo "  CC    $<")
	$(Q)$(CC) $(CFLAGS) -MMD -MP -c -o $@ $<

$(B)/%.cu.o: %.cu
	@mkdir -p $(dir $@)
	@$(if $(V),,echo "  NVCC  $<")
	$(Q)$(NVCC) $(NVCCFLAGS) -MMD -MP -c -o $@ $<

# ---- the op harness alone (tests/ops/backend_ops_main.c) ------------------------------------------
# The kernels, the backends and the harness, without MPI, HDF5, ZeroMQ or Criterion: what a bare
# GPU machine can build and run (docs/cuda.md). Its own objects (build/bops/) and flags: no
# pkg-config packages. Where there is no mpicc: make backend-ops CC=gcc; headers and libraries
# elsewhere: EXTRA_CFLAGS / EXTRA_NVCCFLAGS / EXTRA_LDFLAGS.
BOPS_C    := $(filter kernels/%,$(LIB_C)) common/log.c common/rng.c tests/backend_ops.c \
             tests/backend_ops_cases.c tests/backend_ops_nms.c tests/ops/backend_ops_main.c
BOPS_OBJ  := $(BOPS_C:%.c=build/bops/%.o) \
             $(filter-out build/kernels/gpu.cu.o,$(filter build/kernels/%,$(LIB_CU:%.cu=build/%.cu.o)))
BOPS_CFLAGS = -std=c17 $(OPT) -g -fopenmp -D_GNU_SOURCE -Wall -Wextra -Werror -I. \
              $(if $(filter 1,$(CUDA)),-DHAVE_CUDA -I$(CUDA_HOME)/include) $(EXTRA_CFLAGS)
BOPS_LIBS = -ldnnl -lm -lpthread $(if $(filter 1,$(CUDA)),-lcudnn -lcublas -lcudart -lstdc++)

backend-ops: build/backend_ops

build/backend_ops: $(BOPS_OBJ)
	$(CC) $(LDFLAGS) -o $@ $^ $(BOPS_LIBS)

build/bops/kernels/%.o: BOPS_CFLAGS += -fno-trapping-math
build/bops/%.o: %.c
	@mkdir -p $(dir $@)
	@$(if $(V),,echo "  CC    $< (backend-ops)")
	$(Q)$(CC) $(BOPS_CFLAGS) -MMD -MP -c -o $@ $<

# The code version recorded in checkpoints: git describe at build time. The header is rewritten
# only when the text changes, so an unchanged tree rebuilds nothing. One header for every build
# variant (code_version.c includes it from the checkout root).
build/gen/code_version.h: FORCE
	@mkdir -p $(dir $@)
	@v=$$(git describe --always --dirty --tags 2>/dev/null || echo unknown); \
	 printf '#define CODE_VERSION "%s"\n' "$$v" > $@.tmp; \
	 cmp -s $@.tmp $@ && rm -f $@.tmp || mv $@.tmp $@
$(B)/common/code_version.o: build/gen/code_version.h
FORCE:

-include $(shell find $(B) -name '*.d' 2>/dev/null)

# ---- entry points -------------------------------------------------------------------------------
deps:
	bash scripts/install-deps.sh

# test and demo install what is missing, then build and run in a fresh make (which computes the
# flags only now that the packages are there).
# TEST_ARGS passes options to Criterion, e.g. make test TEST_ARGS="--filter 'conv/*'"
test demo: deps
	@$(MAKE) --no-print-directory run-$@

MPI_ENV := OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_btl=self,vader \
           OMPI_MCA_rmaps_base_oversubscribe=1
# The Criterion suite, then a short fuzz run (FUZZ_SECONDS per target; regressions first).
run-test: all
	$(MPI_ENV) ./$(B)/tests/yolo-tests --jobs 2 $(TEST_ARGS)
	@$(MAKE) --no-print-directory SANITIZE=fuzz B=build/fuzz run-fuzz FUZZ_SECONDS=$(FUZZ_TEST_SECONDS)

# ---- sanitizers and fuzzing (docs/reliability.md) ----------------------------------------------
FUZZ_SECONDS      ?= 60
FUZZ_TEST_SECONDS ?= 5
# The suite under ASan+UBSan but the minutes-long learning runs and the two stall tests, whose
# 1 s warning threshold every rank crosses at sanitizer speed (then the warning names them all).
SANITIZE_FILTER   ?= !(trainlearns/*|distributed/stalled_*)
test-sanitize: deps
	@$(MAKE) --no-print-directory SANITIZE=address B=build/asan BIN=build/asan/bin run-test-sanitize
run-test-sanitize: features $(TEST_PROGRAMS) $(B)/keep_dso.so
	$(MPI_ENV) YOLO_BIN_DIR=$(CURDIR)/$(BIN) LD_PRELOAD=$(CURDIR)/$(B)/keep_dso.so \
	ASAN_OPTIONS=detect_leaks=1:halt_on_error=1:verify_asan_link_order=0:fast_unwind_on_malloc=0 \
	LSAN_OPTIONS=suppressions=$(CURDIR)/tests/sanitize/lsan.supp:print_suppressions=0 \
	UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	./$(B)/tests/yolo-tests --jobs 2 --filter '$(SANITIZE_FILTER)' $(TEST_ARGS)

$(B)/keep_dso.so: tests/sanitize/keep_dso.c
	cc -shared -fPIC -O2 -o $@ $<

fuzz: deps
	@$(MAKE) --no-print-directory SANITIZE=fuzz B=build/fuzz run-fuzz
run-fuzz: features $(FUZZ_BIN)
	bash tests/fuzz/run.sh $(B) $(FUZZ_SECONDS)

# The cluster tests (signals, failures, a Slurm harness, hosts in network namespaces, fault
# injection): their own packages (Slurm, munge; scripts/install-deps.sh cluster), binary and run.
# FAULTS: fault-injection rounds (tests/fault_inject.sh). TEST_ARGS as for make test.
FAULTS ?= 20
test-cluster: deps
	bash scripts/install-deps.sh cluster
	@$(MAKE) --no-print-directory run-test-cluster

run-test-cluster: all $(B)/tests/yolo-cluster-tests $(B)/tests/ckpt-check
	./$(B)/tests/yolo-cluster-tests --jobs 2 $(TEST_ARGS)
	bash tests/fault_inject.sh $(FAULTS)

bench: all
	bash bench/run.sh

# Our loader against Ultralytics' on the same files, one core each (needs scripts/pyenv.sh bench).
bench-loader: all
	bash bench/loader.sh

bench-loader-simd: all
	bash bench/loader_simd.sh

# Our trainer against Ultralytics on PyTorch, side by side (needs scripts/pyenv.sh bench and a
# quiet machine; QUICK=1 for the reduced table, BENCH_ARGS=--tta for time to accuracy).
bench-vs-ultralytics: all
	bash bench/vs_ultralytics.sh $(BENCH_ARGS)

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

.PHONY: all features deps test run-test test-cluster run-test-cluster bench bench-loader bench-loader-simd \
        bench-vs-ultralytics demo run-demo format clean test-sanitize run-test-sanitize fuzz run-fuzz \
        backend-ops FORCE
.SECONDARY:
