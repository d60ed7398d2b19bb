# imcap - build with `make`, test with `make check` (optimised + ASan/UBSan).
CC      ?= cc
# src/ is grouped by pipeline stage; every folder is on the include path.
SRCDIRS := $(patsubst %/,%,$(sort $(dir $(wildcard src/*/*.c))))
OPT     ?= -O2 -g
CFLAGS  := $(OPT) -march=x86-64 -std=c11 -Wall -Wextra -Wno-unused-parameter -Wno-format-truncation \
           -fPIC -pthread -Iinclude $(SRCDIRS:%=-I%) $(EXTRA_CFLAGS)
LDLIBS  += -lopenblas -ljpeg -lpng -lexif -lcjson -lespeak-ng -lm -pthread
SAN_FLAGS = -O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined

BUILD   ?= build
SRC     := $(wildcard src/*/*.c)
TOOLSRC := $(wildcard tools/*.c)
TESTSRC := $(wildcard tests/*.c)
OBJ     := $(SRC:%.c=$(BUILD)/%.o)
TOOLOBJ := $(TOOLSRC:%.c=$(BUILD)/%.o)
TESTOBJ := $(TESTSRC:%.c=$(BUILD)/%.o)

all: $(BUILD)/imcap $(BUILD)/imcap_tests $(BUILD)/libimcap.so

$(BUILD)/libimcap.a: $(OBJ)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/imcap: $(TOOLOBJ) $(BUILD)/libimcap.a
	$(CC) $(CFLAGS) -o $@ $^ $(LDLIBS)

# Tests link every object (not the archive) so constructors always register.
$(BUILD)/imcap_tests: $(TESTOBJ) $(OBJ)
	$(CC) $(CFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/%.o: %.c $(wildcard include/*.h src/*/*.h tools/*.h tests/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c -o $@ $<

# Kernel files compiled per instruction set (src/core/cpu.h picks one at run
# time; the rest of the library is baseline x86-64, so it runs on any x86-64 CPU).
ISA_AVX2   := -mavx2 -mfma -mf16c -mbmi -mbmi2 -mlzcnt -mpopcnt -mmovbe
ISA_AVX512 := $(ISA_AVX2) -mavx512f -mavx512bw -mavx512vl -mavx512dq -mavx512cd
$(BUILD)/%_avx2.o: CFLAGS += $(ISA_AVX2)
$(BUILD)/%_avx512.o: CFLAGS += $(ISA_AVX512) -mprefer-vector-width=512
# The int8 kernels' AVX-512 path needs VNNI (cpu.c checks it before picking them).
$(BUILD)/src/encoder/qops_avx512.o: CFLAGS += -mavx512vnni
# The bf16 GEMM (IMCAP_PRECISION_BF16; cpu.c checks AVX512_BF16 before it runs).
$(BUILD)/src/encoder/ops_bf16.o: CFLAGS += $(ISA_AVX512) -mavx512bf16 -mprefer-vector-width=512

# imcap serve: libmicrohttpd for the tool only; its web page compiled in as a C array.
$(BUILD)/imcap: LDLIBS += -lmicrohttpd
$(BUILD)/imcap: $(BUILD)/gen/serve_page.o
$(BUILD)/gen/serve_page.c: tools/serve/index.html scripts/embed-file.sh
	@mkdir -p $(dir $@)
	sh scripts/embed-file.sh serve_page $< > $@.tmp && mv $@.tmp $@
$(BUILD)/gen/serve_page.o: $(BUILD)/gen/serve_page.c
	$(CC) $(CFLAGS) -c -o $@ $<

# Decoder training kernels: let GCC vectorize their elementwise loops.
$(BUILD)/src/decoder/decoder.o $(BUILD)/src/decoder/optimizer.o $(BUILD)/src/decoder/dec_generic.o \
    $(BUILD)/src/decoder/dec_avx2.o $(BUILD)/src/decoder/dec_avx512.o: CFLAGS += -O3 -fno-math-errno -fno-trapping-math

# Image resize loops: let GCC vectorize them (integer math, results unchanged).
$(BUILD)/src/image/image.o: CFLAGS += -O3

# MPI (Debian OpenMPI) for the CLI's communicator (tools/mpi.c), when installed; the library has none.
MPI_LIBS := $(shell pkg-config --libs ompi-c 2>/dev/null)
ifneq ($(MPI_LIBS),)
$(BUILD)/tools/mpi.o: CFLAGS += $(shell pkg-config --cflags ompi-c) -DIMCAP_MPI
$(BUILD)/imcap: LDLIBS += $(MPI_LIBS)
endif

# Benchmark programs: bench/<name>.c -> build/<name> (make bench).
BENCHSRC := $(wildcard bench/*.c)
bench: $(BENCHSRC:bench/%.c=$(BUILD)/%)

$(BUILD)/bench_%: bench/bench_%.c $(BUILD)/libimcap.a $(wildcard include/*.h src/*/*.h)
	$(CC) $(CFLAGS) -o $@ $< $(BUILD)/libimcap.a $(LDLIBS)

asan:
	$(MAKE) BUILD=build-asan OPT="$(SAN_FLAGS)" all

# The README's test command: both builds, one summary line at the end.
check: all asan
	bash scripts/run-tests.sh

test: all
	./$(BUILD)/imcap_tests

clean:
	rm -rf build build-asan

# The default captioning model from scratch (scripts/make-model.sh: embeddings of the 7000 Flickr8k
# train+dev photos per encoder, one decoder each, dev-split ablation -> models/default.imcap and
# docs/ABLATION.md). Slow; settings through IMCAP_* variables described in the script.
model: all
	bash scripts/make-model.sh

# The attention default (scripts/make-attention-model.sh: ResNet-50 grids, the attention decoder by
# cross-entropy, then SCST; dev evaluations; the exported captioner). Slow (hours on 2 cores).
attention-model: all
	OUT_DIR=out/attention2 SEED=2 bash scripts/make-attention-model.sh
	OUT_DIR=out/attention SEED=1 ENSEMBLE_OF=out/attention2 bash scripts/make-attention-model.sh

# Shared library (libimcap.so.$(VERSION), SONAME libimcap.so.$(SOMAJOR)): exports the functions
# declared in include/imcap.h (default visibility there, everything else is built hidden) and, by
# the version script's pattern, only imcap_* names.
VERSION := $(shell sed -nE 's/^\#define IMCAP_VERSION_STRING "([^"]+)"/\1/p' include/imcap.h)
SOMAJOR := $(firstword $(subst ., ,$(VERSION)))
CFLAGS  += -fvisibility=hidden
$(BUILD)/libimcap.so.$(VERSION): $(OBJ) src/core/libimcap.map
	$(CC) $(CFLAGS) -shared -Wl,-soname,libimcap.so.$(SOMAJOR) -Wl,--version-script=src/core/libimcap.map \
	      -Wl,--no-undefined -o $@ $(OBJ) $(LDLIBS)
$(BUILD)/libimcap.so: $(BUILD)/libimcap.so.$(VERSION)
	ln -sf libimcap.so.$(VERSION) $(BUILD)/libimcap.so.$(SOMAJOR)
	ln -sf libimcap.so.$(VERSION) $@

# make install PREFIX=/usr/local DESTDIR=...: library, header, pkg-config file, the CLI, the default
# model and the encoders setup.sh converted (when present) in $(DATADIR)/models[/encoders], where the
# library looks for them (imcap_default_model_path). make uninstall removes exactly those files.
PREFIX  ?= /usr/local
LIBDIR  ?= $(PREFIX)/lib
INCDIR  ?= $(PREFIX)/include
BINDIR  ?= $(PREFIX)/bin
DATADIR ?= $(PREFIX)/share/imcap
PCDIR   ?= $(LIBDIR)/pkgconfig
PC_REL   = $(patsubst $(PREFIX)/%,$${prefix}/%,$(1))
ENCODERS := $(wildcard models/encoders/*.gguf)
D := $(DESTDIR)
install: $(BUILD)/imcap $(BUILD)/libimcap.so $(BUILD)/libimcap.a
	install -d $(D)$(LIBDIR) $(D)$(INCDIR) $(D)$(BINDIR) $(D)$(PCDIR) $(D)$(DATADIR)/models/encoders
	install -m 755 $(BUILD)/libimcap.so.$(VERSION) $(D)$(LIBDIR)/
	ln -sf libimcap.so.$(VERSION) $(D)$(LIBDIR)/libimcap.so.$(SOMAJOR)
	ln -sf libimcap.so.$(SOMAJOR) $(D)$(LIBDIR)/libimcap.so
	install -m 644 $(BUILD)/libimcap.a $(D)$(LIBDIR)/
	install -m 644 include/imcap.h $(D)$(INCDIR)/
	install -m 755 $(BUILD)/imcap $(D)$(BINDIR)/
	sed -e 's|@PREFIX@|$(PREFIX)|; s|@LIBDIR@|$(call PC_REL,$(LIBDIR))|; s|@INCDIR@|$(call PC_REL,$(INCDIR))|' \
	    -e 's|@VERSION@|$(VERSION)|' \
	    -e 's|@LIBS@|$(LDLIBS)|' imcap.pc.in > $(D)$(PCDIR)/imcap.pc
	install -m 644 models/default.imcap $(D)$(DATADIR)/models/
	$(if $(ENCODERS),install -m 644 $(ENCODERS) $(D)$(DATADIR)/models/encoders/,@echo "install: no encoders in models/encoders/ (run ./setup.sh); copy them to $(D)$(DATADIR)/models/encoders/ later")
	$(if $(D),,-command -v ldconfig >/dev/null && ldconfig)

uninstall:
	rm -f $(D)$(LIBDIR)/libimcap.so.$(VERSION) $(D)$(LIBDIR)/libimcap.so.$(SOMAJOR) $(D)$(LIBDIR)/libimcap.so
	rm -f $(D)$(LIBDIR)/libimcap.a $(D)$(INCDIR)/imcap.h $(D)$(BINDIR)/imcap $(D)$(PCDIR)/imcap.pc
	rm -f $(D)$(DATADIR)/models/default.imcap $(ENCODERS:models/encoders/%=$(D)$(DATADIR)/models/encoders/%)
	-rmdir $(D)$(DATADIR)/models/encoders $(D)$(DATADIR)/models $(D)$(DATADIR) 2>/dev/null

.PHONY: all asan bench check test clean model attention-model install uninstall

# Fuzzing: one libFuzzer harness per untrusted input (tests/fuzz/fuzz_*.c), built by clang with
# ASan+UBSan into build-fuzz/; `make fuzz [FUZZ_SECONDS=N]` runs each N s (scripts/fuzz.sh) and
# fails on any finding. Corpora grow in build-fuzz/corpus/, findings land in build-fuzz/findings/.
FUZZ_SECONDS ?= 60
FUZZ_OPT = -O1 -g -Wno-unknown-warning-option -fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer
FUZZSRC := $(wildcard tests/fuzz/fuzz_*.c)

fuzz-build:
	$(MAKE) BUILD=build-fuzz CC=clang OPT="$(FUZZ_OPT)" fuzz-harnesses

fuzz-harnesses: $(FUZZSRC:tests/fuzz/%.c=$(BUILD)/%) $(BUILD)/make_seeds

$(BUILD)/fuzz_%: tests/fuzz/fuzz_%.c $(wildcard tests/fuzz/*.h) $(BUILD)/libimcap.a
	$(CC) $(CFLAGS) -fsanitize=fuzzer -o $@ $< $(BUILD)/libimcap.a $(LDLIBS)

# The server's harness links the server (tools/serve_*.c) and libmicrohttpd.
$(BUILD)/fuzz_serve_request: tests/fuzz/fuzz_serve_request.c $(BUILD)/tools/serve_http.o $(BUILD)/tools/serve_pool.o \
                             $(BUILD)/tools/caption_json.o $(BUILD)/tools/cli.o $(BUILD)/tools/mpi.o $(BUILD)/gen/serve_page.o \
                             $(BUILD)/libimcap.a
	$(CC) $(CFLAGS) -Itools -fsanitize=fuzzer -o $@ $(filter %.c %.o %.a,$^) $(LDLIBS) -lmicrohttpd $(MPI_LIBS)

$(BUILD)/make_seeds: tests/fuzz/make_seeds.c tests/fixture.c $(BUILD)/libimcap.a
	$(CC) $(CFLAGS) -Itests -o $@ tests/fuzz/make_seeds.c tests/fixture.c $(BUILD)/libimcap.a $(LDLIBS)

fuzz: all fuzz-build
	bash scripts/fuzz.sh $(FUZZ_SECONDS)

.PHONY: fuzz fuzz-build fuzz-harnesses
