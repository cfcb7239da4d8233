# wsgw: non-recursive build. Objects in $(BUILD)/, binaries in $(BIN)/.
#
#   make            build bin/ws-api bin/ws-gateway bin/ws-bench (+ bench reference server)
#   make deps       install missing Debian packages (apt-get update first, only when needed)
#   make test       build and run every test (unit + integration); last line "N passed, N failed"
#   make run        start ws-api + ws-gateway with the defaults
#   make fuzz       build the libFuzzer targets with clang and run each FUZZ_SECONDS
#   make bench      short benchmark suite (bench/)
#   SANITIZE=address,undefined | SANITIZE=thread: a separate build tree under build/san-*/
#   T=pattern       with `make test`: only tests whose name contains pattern

CC       ?= cc
SANITIZE ?=
O        ?= 2
T        ?=
comma    := ,

ifeq ($(SANITIZE),)
BUILD    := build
BIN      := bin
SANFLAGS :=
else
SANTAG   := $(subst $(comma),-,$(SANITIZE))
BUILD    := build/san-$(SANTAG)
BIN      := $(BUILD)/bin
SANFLAGS := -fsanitize=$(SANITIZE) -fno-omit-frame-pointer -fno-sanitize-recover=all
O        := 1
endif

# Debian packages: pkg-config name -> package. Resolved lazily so `make deps` works on a bare box.
PKGS     := libwebsockets libnghttp2 libprotobuf-c jansson openssl libjwt libuv hiredis
PKG_CFLAGS = $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   = $(shell pkg-config --libs $(PKGS) 2>/dev/null)

WARN     := -Wall -Wextra -Werror -Wstrict-prototypes -Wformat=2 -Wshadow -Wno-missing-field-initializers
# -Wno-missing-field-initializers: designated initialisers that leave fields zero are the idiom
# for lws/nghttp2 info structs; the warning fires on every one of them.
CFLAGS   += -std=c11 -D_GNU_SOURCE -O$(O) -g $(WARN) -MMD -MP -pthread $(SANFLAGS) \
            -I$(BUILD)/gen -Icommon $(PKG_CFLAGS)
LDFLAGS  += -pthread $(SANFLAGS)
LDLIBS   += $(PKG_LIBS) -lm

PY       := /usr/bin/python3

# V=1 shows full commands.
ifeq ($(V),1)
Q :=
else
Q := @
endif

# ---- sources -------------------------------------------------------------------------------
GEN_C    := $(BUILD)/gen/wsgw.pb-c.c
GEN_H    := $(BUILD)/gen/wsgw.pb-c.h

COMMON_SRC  := $(wildcard common/*.c)
API_SRC     := $(filter-out api/main.c,$(wildcard api/*.c))
GW_SRC      := $(filter-out gateway/main.c,$(wildcard gateway/*.c))
BENCH_SRC   := $(filter-out bench/main.c,$(wildcard bench/*.c))
REFECHO_SRC := $(wildcard bench/refecho/*.c)
SIM_SRC     := $(wildcard tests/sim/*.c)
UNIT_SRC    := $(wildcard tests/unit/test_*.c)
FUZZ_SRC    := $(wildcard fuzz/fuzz_*.c)

obj = $(patsubst %.c,$(BUILD)/%.o,$(1))

LIBCOMMON  := $(BUILD)/libcommon.a
LIBAPI     := $(BUILD)/libapi.a
LIBGW      := $(BUILD)/libgateway.a
LIBBENCH   := $(BUILD)/libbench.a
LIBSIM     := $(BUILD)/libsim.a
ALL_LIBS   := $(LIBSIM) $(LIBGW) $(LIBAPI) $(LIBBENCH) $(LIBCOMMON)

BINS :=
ifneq ($(wildcard api/main.c),)
BINS += $(BIN)/ws-api
endif
ifneq ($(wildcard gateway/main.c),)
BINS += $(BIN)/ws-gateway
endif
ifneq ($(wildcard bench/main.c),)
BINS += $(BIN)/ws-bench
endif
ifneq ($(REFECHO_SRC),)
BINS += $(BIN)/ws-refecho
endif
UNIT_BINS := $(patsubst tests/unit/%.c,$(BUILD)/tests/%,$(UNIT_SRC))

.PHONY: all deps test test-deploy unit run fuzz fuzz-build bench bench-full clean sanitize
# Keep objects that only feed test/fuzz binaries (make would delete them as intermediates).
# (Not a bare .SECONDARY: that makes every file intermediate, and a missing intermediate does
# not trigger a rebuild: a newly added source file was then left out of its library.)
.PRECIOUS: $(BUILD)/%.o
.DEFAULT_GOAL := all

# The fuzz targets are compiled (not linked: that needs clang's libFuzzer) by every build, so a
# change that breaks one fails `make test`, not only `make fuzz` at the end of CI.
all: $(BINS) $(UNIT_BINS) $(call obj,$(FUZZ_SRC)) $(BUILD)/tests/liballoc_count.so

# An LD_PRELOAD library for tests (tests/lib/alloc_count.c), built without $(SANFLAGS): a
# sanitizer's runtime must come first in a process's library list, so tests skip it there.
$(BUILD)/tests/liballoc_count.so: tests/lib/alloc_count.c
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  CC      $@")
	$(Q)$(CC) -std=c11 -O2 $(WARN) -shared -fPIC -o $@ $< -ldl

# ---- generated protobuf-c code ---------------------------------------------------------------
$(GEN_C) $(GEN_H) &: proto/wsgw.proto
	@mkdir -p $(BUILD)/gen
	$(Q)protoc-c --c_out=$(BUILD)/gen -Iproto proto/wsgw.proto

# The release (--version, wsgw_build_info): the file VERSION, compiled into common/version.c only.
VERSION  := $(shell cat VERSION 2>/dev/null || echo unknown)
$(BUILD)/common/version.o: VERSION
$(BUILD)/common/version.o: CFLAGS += -DWSGW_VERSION='"$(VERSION)"'

# Everything may include the generated header: make sure it exists before any compile.
$(BUILD)/%.o: %.c $(GEN_H)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  CC      $<")
	$(Q)$(CC) $(CFLAGS) -c $< -o $@

# Generated code is not ours to fix: warnings stay on but are not errors there.
$(BUILD)/gen/wsgw.pb-c.o: $(GEN_C)
	$(Q)$(CC) $(filter-out -Werror,$(CFLAGS)) -c $< -o $@

$(LIBCOMMON): $(call obj,$(COMMON_SRC)) $(BUILD)/gen/wsgw.pb-c.o
	@rm -f $@; ar rcs $@ $^
$(LIBAPI): $(call obj,$(API_SRC))
	@rm -f $@; ar rcs $@ $^
$(LIBGW): $(call obj,$(GW_SRC))
	@rm -f $@; ar rcs $@ $^
$(LIBBENCH): $(call obj,$(BENCH_SRC))
	@rm -f $@; ar rcs $@ $^
# test support (tests/sim): the delivery simulator and the protobuf cross-checks (pbcheck.c);
# linked into unit tests and fuzz targets only
$(LIBSIM): $(call obj,$(SIM_SRC))
	@rm -f $@; ar rcs $@ $^

$(BIN)/ws-api: $(call obj,api/main.c) $(LIBAPI) $(LIBCOMMON)
	@mkdir -p $(BIN)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)
$(BIN)/ws-gateway: $(call obj,gateway/main.c) $(LIBGW) $(LIBCOMMON)
	@mkdir -p $(BIN)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)
$(BIN)/ws-bench: $(call obj,bench/main.c) $(LIBBENCH) $(LIBCOMMON)
	@mkdir -p $(BIN)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)
$(BIN)/ws-refecho: $(call obj,$(REFECHO_SRC)) $(LIBBENCH) $(LIBCOMMON)
	@mkdir -p $(BIN)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

# Unit tests link every module library; the linker pulls only what each test uses.
$(BUILD)/tests/%: $(BUILD)/tests/unit/%.o $(ALL_LIBS)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(LDFLAGS) -o $@ $< $(ALL_LIBS) $(LDLIBS)

# ---- set-up ----------------------------------------------------------------------------------
deps:
	@./.ci/deps.sh

# ---- tests -----------------------------------------------------------------------------------
test: all
	@BIN=$(abspath $(BIN)) BUILD=$(abspath $(BUILD)) SANITIZE=$(SANITIZE) PY=$(PY) \
	    ./tests/run.sh $(T)

# The image built with podman and the compose stack run for real (tests/deploy/live.py; needs
# root for podman, installs what is missing; not part of `make test`).
test-deploy:
	@BUILD=$(abspath $(BUILD)) $(PY) tests/deploy/live.py

unit: $(UNIT_BINS)
	@BIN=$(abspath $(BIN)) BUILD=$(abspath $(BUILD)) ./tests/run.sh unit/

run: deps all
	@./tests/lib/run-local.sh $(abspath $(BIN))

# ---- fuzzing (clang + libFuzzer) -------------------------------------------------------------
FUZZ_SECONDS ?= 30
FUZZ_BUILD   := build/fuzz
fuzz:
	@$(MAKE) --no-print-directory CC=clang BUILD=$(FUZZ_BUILD) BIN=$(FUZZ_BUILD)/bin \
	    SANFLAGS="-fsanitize=fuzzer-no-link,address,undefined -fno-omit-frame-pointer" O=1 fuzz-build
	@./fuzz/run.sh $(FUZZ_BUILD) $(FUZZ_SECONDS)

FUZZ_BINS := $(patsubst fuzz/%.c,$(BUILD)/fuzz-bin/%,$(FUZZ_SRC))
fuzz-build: $(FUZZ_BINS)
$(BUILD)/fuzz-bin/%: $(BUILD)/fuzz/%.o $(ALL_LIBS)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(LDFLAGS) -fsanitize=fuzzer -o $@ $< $(ALL_LIBS) $(LDLIBS)

# ---- benchmarks ------------------------------------------------------------------------------
bench: all
	@./bench/run.sh short
bench-full: all
	@./bench/run.sh full

clean:
	rm -rf build bin

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
