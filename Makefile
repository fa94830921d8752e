# kdx — build, test, demo, bench, install.
#   make            libkdx.a (the engine, no Lua) and kdx/core.so (the Lua module)
#   make test       installs missing packages, builds, runs the C tests and the specs
#   make test SAN=1 the same under AddressSanitizer + UndefinedBehaviorSanitizer
#   make demo       the main job on the bundled data (DATA=fashion_mnist: full size)
#   make bench      kdx next to raw OpenBLAS and PyTorch
#   make fuzz       the readers under libFuzzer (clang), FUZZ_SECONDS each, then
#                   the API fuzzer (API_FUZZ_CALLS random calls) under ASan
#   make test-valgrind  the C tests and VALGRIND_SPECS under valgrind, no leaks
#   make install    PREFIX (/usr/local) and DESTDIR; make uninstall the same
#   make docs       the LDoc API reference in docs/api/ (Debian lua-ldoc)
#   make examples   the embedding examples (examples/embed/*.c) into $(BUILD)/examples/
#   make tsan       the thread example under ThreadSanitizer (build-tsan/)

CC      ?= gcc
LUA     ?= lua5.4
PREFIX  ?= /usr/local
DESTDIR ?=
LUA_VERSION := 5.4
FUZZ_SECONDS ?= 60

ifeq ($(SAN),1)
BUILD   := build-san
SANFLAGS := -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer -g
OPT     := -O1
else
BUILD   := build
SANFLAGS :=
# -O3: gcc 12 vectorises loops of unknown length only from -O3. No loop
# distribution into memcpy/memset calls: the kernels' copy loops are short
# (a row of 14 floats), where a library call costs more than the copy.
OPT     := -O3 -fno-tree-loop-distribute-patterns
endif

WERROR  ?= -Werror
WARN    := -Wall -Wextra -pedantic -Wshadow -Wmissing-prototypes $(WERROR)
CFLAGS  ?=
CFLAGS  += -std=c11 $(OPT) -fPIC -pthread $(WARN) $(SANFLAGS)
LUA_INC ?= $(shell pkg-config --cflags lua$(LUA_VERSION) 2>/dev/null || echo -I/usr/include/lua$(LUA_VERSION))
LIBS    := -lopenblas -lstb -lz -lm
# Where the rockspec's external dependencies were found (-I.../-L...); empty
# for a plain make, where the compiler's default paths find them.
DEPS_INC ?=
DEPS_LIB ?=
VERSION := $(shell sed -n 's/^\#define KDX_VERSION "\(.*\)"/\1/p' csrc/kdx.h)
LDFLAGS += -pthread $(SANFLAGS)

# csrc/mpi/ (engine) and csrc/lua/mpi/ (binding) need MPI: they go only into
# kdx/dist_mpi.so (below), never into libkdx.a or core.so, so the default
# build and its tests do not change.
ENGINE_SRC := $(wildcard csrc/*.c)
BIND_SRC   := $(wildcard csrc/lua/*.c)
CTEST_SRC  := $(wildcard csrc/test/test_*.c)
ENGINE_OBJ := $(ENGINE_SRC:csrc/%.c=$(BUILD)/obj/%.o)
BIND_OBJ   := $(BIND_SRC:csrc/lua/%.c=$(BUILD)/obj/lua/%.o)
CTEST_BIN  := $(CTEST_SRC:csrc/test/%.c=$(BUILD)/test/%)
HEADERS    := $(wildcard csrc/*.h)
DATA_FILES := data/digits.csv.gz data/iris.csv data/wine_data.csv data/breast_cancer.csv data/LICENSES.md

LIB  := $(BUILD)/libkdx.a
CORE := $(BUILD)/kdx/core.so

# The specs and examples find the Lua files and the C module in the tree.
export LUA_PATH  := $(CURDIR)/lua/?.lua;$(CURDIR)/lua/?/init.lua;$(CURDIR)/spec/?.lua;;
export LUA_CPATH := $(CURDIR)/$(BUILD)/?.so;;

.PHONY: all deps test ctest spec demo bench fuzz install install-rock uninstall docs clean examples tsan test-valgrind

# MPI=1 also builds kdx/dist_mpi.so (kdx.dist over MPI, docs/distributed.md);
# the default is on when mpicc exists. MPI=0 leaves it out.
MPICC ?= mpicc
MPI   ?= $(if $(shell command -v $(MPICC) 2>/dev/null),1,0)
DIST_MPI := $(BUILD)/kdx/dist_mpi.so

all: $(LIB) $(CORE) $(if $(filter 1,$(MPI)),$(DIST_MPI))

# Linked with mpicc and without libkdx.a: its kdx_*/kdxL_* symbols come from
# kdx/core.so, a dependency found next to it ($$ORIGIN), which the loader
# recognises as the core.so Lua already loaded: one engine, one tensor metatable.
$(DIST_MPI): csrc/mpi/dist_mpi.c csrc/lua/mpi/l_dist_mpi.c csrc/mpi/dist_mpi.h $(HEADERS) $(CORE)
	@mkdir -p $(dir $@)
	$(MPICC) $(CFLAGS) -Icsrc $(LUA_INC) -shared -o $@ csrc/mpi/dist_mpi.c csrc/lua/mpi/l_dist_mpi.c $(LDFLAGS) \
		-L$(dir $@) -l:core.so -Wl,-rpath,'$$ORIGIN' -Wl,-z,nodelete

$(BUILD)/obj/%.o: csrc/%.c $(HEADERS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(DEPS_INC) -c $< -o $@

$(BUILD)/obj/lua/%.o: csrc/lua/%.c $(HEADERS) $(wildcard csrc/lua/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(DEPS_INC) $(LUA_INC) -c $< -o $@

$(LIB): $(ENGINE_OBJ)
	@mkdir -p $(dir $@)
	rm -f $@
	ar rcs $@ $^

# -z nodelete: lua_close unloads C modules, but OpenMP and OpenBLAS worker
# threads outlive it; keeping the code mapped lets them exit cleanly.
$(CORE): $(BIND_OBJ) $(LIB) Makefile
	@mkdir -p $(dir $@)
	$(CC) -shared -o $@ $(BIND_OBJ) $(LIB) $(LDFLAGS) $(DEPS_LIB) $(LIBS) -Wl,-z,nodelete

# C-only tests: linked against the engine archive without Lua, which proves it needs none.
$(BUILD)/test/%: csrc/test/%.c $(LIB) csrc/test/ctest.h
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Icsrc $< -o $@ $(LIB) $(LDFLAGS) $(LIBS)

# Embedding (docs/embedding.md): classify uses the engine alone; host and
# threads embed Lua with the binding linked in statically (no core.so).
LUA_LIB  ?= $(shell pkg-config --libs lua$(LUA_VERSION) 2>/dev/null || echo -llua$(LUA_VERSION))
EXAMPLES := $(BUILD)/examples/classify $(BUILD)/examples/host $(BUILD)/examples/threads
examples: $(EXAMPLES)

$(BUILD)/examples/classify: examples/embed/classify.c $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Icsrc $< -o $@ $(LIB) $(LDFLAGS) $(LIBS)

$(BUILD)/examples/%: examples/embed/%.c $(BIND_OBJ) $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LUA_INC) -Icsrc $< -o $@ $(BIND_OBJ) $(LIB) $(LDFLAGS) $(LIBS) $(LUA_LIB)

# Several lua_States in several threads under ThreadSanitizer.
tsan:
	@$(MAKE) --no-print-directory BUILD=build-tsan OPT=-O1 WERROR= SANFLAGS="-fsanitize=thread -g" build-tsan/examples/threads
	TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1" build-tsan/examples/threads lua examples/embed/threads.lua 4 1
	TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1" build-tsan/examples/threads lua examples/embed/threads.lua 4 2

# The tests and the demo read Fashion-MNIST (Debian's dataset-fashion-mnist).
deps:
	@sh scripts/deps.sh --data --test

ctest: $(CTEST_BIN)
	@sh scripts/run_tests.sh ctest $(BUILD) $(CTEST_BIN)

spec: all
	@sh scripts/run_tests.sh spec $(BUILD)

test: deps
	@$(MAKE) --no-print-directory all $(CTEST_BIN) examples
	@sh scripts/run_tests.sh all $(BUILD) $(CTEST_BIN)

# The vision case study (examples/09_fusion_vision.lua) on the bundled digits,
# or DATA=fashion_mnist for the full-size version (deps.sh --data installs it).
DATA ?= digits
demo:
	@sh scripts/deps.sh $(if $(filter fashion_mnist,$(DATA)),--data,)
	@$(MAKE) --no-print-directory all
	$(LUA) examples/09_fusion_vision.lua --data $(DATA)

bench: deps
	@$(MAKE) --no-print-directory all
	@sh bench/run.sh $(BUILD)

# libFuzzer harnesses of the IDX, CSV, image and safetensors readers
# (spec/fuzz/), built with clang into build/fuzz/.
# Then spec/fuzz/api_fuzz.lua: API_FUZZ_CALLS random calls of every public Lua
# function with hostile arguments, against the ASan + UBSan build (build-san/);
# API_FUZZ_SEED fixes the seed (CI), empty draws one.
API_FUZZ_CALLS ?= 50000
API_FUZZ_SEED ?=
fuzz:
	@sh scripts/deps.sh --fuzz
	@sh scripts/fuzz.sh $(FUZZ_SECONDS)
	@$(MAKE) --no-print-directory SAN=1 all
	@sh scripts/api_fuzz.sh $(API_FUZZ_CALLS) $(API_FUZZ_SEED)

# Every C test and busted specs under valgrind (memcheck): a memory error or
# a definite/indirect leak fails. The whole suite under valgrind took 16
# minutes (2047 tests, clean; most of it the training specs: distill_run,
# golden, surrogate, resume), so the default is a representative subset of 16
# specs, 1203 tests, about 2 minutes (plus 2 for the C tests): the tensor core, autograd, ops, nn,
# the losses, the error paths, the readers and writers, and explanations of
# every family (gradient, layer, LRP, perturbation, SHAP, LIME, metrics).
# VALGRIND_SPECS=spec runs all of them.
VALGRIND_SPECS ?= spec/tensor_spec.lua spec/autograd_spec.lua spec/ops_spec.lua spec/nn_spec.lua \
  spec/functional_spec.lua spec/errors_spec.lua spec/distill_loss_spec.lua spec/safetensors_spec.lua \
  spec/images_spec.lua spec/explain_spec.lua spec/explain_perturb_spec.lua spec/explain_shap_spec.lua \
  spec/explain_lime_spec.lua spec/explain_metrics_spec.lua spec/explain_gradlayer_spec.lua spec/explain_lrp_spec.lua
test-valgrind: deps
	@$(MAKE) --no-print-directory all $(CTEST_BIN)
	@VALGRIND_SPECS="$(VALGRIND_SPECS)" sh scripts/valgrind.sh $(BUILD) $(CTEST_BIN)

# kdx.pc: prefix= is PREFIX, so a staged install (DESTDIR) is read with
# PKG_CONFIG_SYSROOT_DIR=$(DESTDIR) or pkg-config --define-prefix (docs/packaging.md).
install: all
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/lib/pkgconfig $(DESTDIR)$(PREFIX)/include \
	  $(DESTDIR)$(PREFIX)/lib/lua/$(LUA_VERSION)/kdx $(DESTDIR)$(PREFIX)/share/lua/$(LUA_VERSION)/kdx
	install -m 644 $(LIB) $(DESTDIR)$(PREFIX)/lib/libkdx.a
	printf '%s\n' 'prefix=$(PREFIX)' 'exec_prefix=$${prefix}' 'libdir=$${exec_prefix}/lib' \
	  'includedir=$${prefix}/include' '' 'Name: kdx' \
	  'Description: Knowledge distillation and model explanation engine (C, OpenBLAS)' \
	  'Version: $(VERSION)' 'Cflags: -I$${includedir}' \
	  'Libs: -L$${libdir} -lkdx -lopenblas -lstb -lz -lm -pthread' \
	  > $(DESTDIR)$(PREFIX)/lib/pkgconfig/kdx.pc
	chmod 644 $(DESTDIR)$(PREFIX)/lib/pkgconfig/kdx.pc
	install -m 644 csrc/kdx.h $(DESTDIR)$(PREFIX)/include/kdx.h
	install -m 755 bin/kdx $(DESTDIR)$(PREFIX)/bin/kdx
	install -m 755 $(CORE) $(DESTDIR)$(PREFIX)/lib/lua/$(LUA_VERSION)/kdx/core.so
	$(if $(filter 1,$(MPI)),install -m 755 $(DIST_MPI) $(DESTDIR)$(PREFIX)/lib/lua/$(LUA_VERSION)/kdx/dist_mpi.so)
	cd lua && find kdx -name '*.lua' -exec install -D -m 644 {} $(DESTDIR)$(PREFIX)/share/lua/$(LUA_VERSION)/{} \;
	install -d $(DESTDIR)$(PREFIX)/share/kdx/data
	install -m 644 $(DATA_FILES) $(DESTDIR)$(PREFIX)/share/kdx/data/

# Used by the rockspec: LuaRocks names the two destination folders (bin/kdx
# is the rockspec's build.install.bin, which LuaRocks wraps).
install-rock: all
	install -d $(INST_LIBDIR)/kdx $(INST_LUADIR)/kdx
	install -m 755 $(CORE) $(INST_LIBDIR)/kdx/core.so
	$(if $(filter 1,$(MPI)),install -m 755 $(DIST_MPI) $(INST_LIBDIR)/kdx/dist_mpi.so)
	cd lua && find kdx -name '*.lua' -exec install -D -m 644 {} $(INST_LUADIR)/{} \;
	install -d $(INST_LUADIR)/kdx/data/bundled
	install -m 644 $(DATA_FILES) $(INST_LUADIR)/kdx/data/bundled/

# Removes what install wrote. Shared folders (bin, lib, include, ...) stay,
# except in a staged tree (DESTDIR set), where the empty ones go too.
uninstall:
	rm -f $(DESTDIR)$(PREFIX)/lib/libkdx.a $(DESTDIR)$(PREFIX)/include/kdx.h \
	  $(DESTDIR)$(PREFIX)/lib/pkgconfig/kdx.pc $(DESTDIR)$(PREFIX)/bin/kdx
	rm -rf $(DESTDIR)$(PREFIX)/lib/lua/$(LUA_VERSION)/kdx $(DESTDIR)$(PREFIX)/share/lua/$(LUA_VERSION)/kdx
	rm -rf $(DESTDIR)$(PREFIX)/share/kdx
	@if [ -n "$(DESTDIR)" ]; then \
	  for d in bin lib/pkgconfig lib/lua/$(LUA_VERSION) lib/lua lib include \
	           share/lua/$(LUA_VERSION) share/lua share; do \
	    rmdir "$(DESTDIR)$(PREFIX)/$$d" 2>/dev/null || true; done; \
	  p="$(PREFIX)"; while [ -n "$$p" ] && [ "$$p" != / ]; do \
	    rmdir "$(DESTDIR)$$p" 2>/dev/null || break; p=$$(dirname "$$p"); done; \
	fi

# The API reference from the `---` doc comments (config.ld), with Debian's
# ldoc. The pages name kdx's version instead of the date, so that they
# change only when the sources do.
docs:
	@sh scripts/deps.sh --docs
	rm -rf docs/api
	ldoc -c config.ld --date 'for kdx $(VERSION)' .

clean:
	rm -rf build build-san build-tsan
