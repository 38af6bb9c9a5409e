# moesz build. `make` builds libmoesz (static + shared) and the moesz binary;
# `make check` builds and runs every test; `make SAN=1 check` does the same
# under AddressSanitizer + UBSan in build-san/; `make TSAN=1 check-tsan` runs
# the threaded modules' tests under ThreadSanitizer. `make fuzz` builds the
# libFuzzer targets with clang. `make install PREFIX=/usr/local`.
CC      ?= cc
PREFIX  ?= /usr/local
VERSION := 0.1.0

ifeq ($(TSAN),1)
BUILD   ?= build-tsan
OPT     ?= -O1 -g -fno-omit-frame-pointer -fsanitize=thread
LDSAN   := -fsanitize=thread
else ifeq ($(SAN),1)
BUILD   ?= build-san
OPT     ?= -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined
LDSAN   := -fsanitize=address,undefined
else
BUILD   ?= build
OPT     ?= -O2 -g
LDSAN   :=
endif

WARN    := -Wall -Wextra -Werror -Wno-unused-parameter
CFLAGS  += -std=c11 -D_GNU_SOURCE $(OPT) $(WARN) -ffp-contract=off -fPIC -pthread \
           -Iinclude -Isrc -I/usr/include/x86_64-linux-gnu/openblas-pthread
LDLIBS  := -lutf8proc -lzstd -lopenblas -llapacke -lpcre2-8 -lcjson -lxxhash -lmicrohttpd -lm -lpthread

LIB_SRC := $(sort $(filter-out src/cli/%,$(wildcard src/*/*.c)))
CLI_SRC := $(sort $(wildcard src/cli/*.c))
TEST_SRC:= $(sort $(wildcard tests/test_*.c))
BENCH_SRC:= $(sort $(wildcard bench/*.c))
LIB_OBJ := $(LIB_SRC:%.c=$(BUILD)/%.o)
CLI_OBJ := $(CLI_SRC:%.c=$(BUILD)/%.o)
TESTS   := $(TEST_SRC:tests/%.c=$(BUILD)/tests/%)
BENCHES := $(BENCH_SRC:bench/%.c=$(BUILD)/bench/%)

.PHONY: all lib tests check check-tsan fuzz fuzz-run fuzz-seeds install clean deps demo benches
all: $(BUILD)/moesz $(BUILD)/libmoesz.so $(BUILD)/libmoesz.a

lib: $(BUILD)/libmoesz.a $(BUILD)/libmoesz.so

# V=1 shows full command lines.
Q := $(if $(V),,@)
$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  CC      $<")
	$(Q)$(CC) $(CFLAGS) -MMD -MP -c $< -o $@

$(BUILD)/libmoesz.a: $(LIB_OBJ)
	@rm -f $@
	$(Q)ar rcs $@ $^

$(BUILD)/libmoesz.so: $(LIB_OBJ)
	$(Q)$(CC) -shared $(LDSAN) -pthread -o $@ $^ $(LDLIBS)

$(BUILD)/moesz: $(CLI_OBJ) $(BUILD)/libmoesz.a
	@$(if $(Q),echo "  LINK    $@")
	$(Q)$(CC) $(LDSAN) -pthread -o $@ $(CLI_OBJ) $(BUILD)/libmoesz.a $(LDLIBS)

$(BUILD)/tests/%: tests/%.c tests/harness.h tests/harness_engine.h tests/harness_tok.h tests/harness_fixture.h $(BUILD)/libmoesz.a
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  TEST    $<")
	$(Q)$(CC) $(CFLAGS) -Itests -o $@ $< $(BUILD)/libmoesz.a $(LDSAN) $(LDLIBS)

$(BUILD)/bench/%: bench/%.c $(BUILD)/libmoesz.a
	@mkdir -p $(dir $@)
	$(Q)$(CC) $(CFLAGS) -o $@ $< $(BUILD)/libmoesz.a $(LDSAN) $(LDLIBS)

tests: $(TESTS) $(BUILD)/moesz
benches: $(BENCHES)

check:
	@sh scripts/install-deps.sh
	@$(MAKE) --no-print-directory tests
	@MOESZ_BIN=$(BUILD)/moesz sh tests/run.sh $(TESTS)

# The threaded modules (codec workers, expert cache and prefetch, thread
# pool, the server's scheduler and connection threads) under ThreadSanitizer:
# `make TSAN=1 check-tsan`.
TSAN_TESTS := $(BUILD)/tests/test_codec $(BUILD)/tests/test_runtime $(BUILD)/tests/test_base $(BUILD)/tests/test_hardening $(BUILD)/tests/test_serve
check-tsan:
	@$(MAKE) --no-print-directory TSAN=1 $(TSAN_TESTS) $(BUILD)/moesz
	@TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1" MOESZ_BIN=$(BUILD)/moesz sh tests/run.sh $(TSAN_TESTS)

# libFuzzer targets (clang); FUZZ_SECONDS per target in fuzz-run.
FUZZ_SRC := $(sort $(wildcard fuzz/fuzz_*.c))
FUZZERS  := $(FUZZ_SRC:fuzz/%.c=build-fuzz/%)
FUZZ_SECONDS ?= 10
FUZZ_CFLAGS := -std=c11 -D_GNU_SOURCE -DFUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION -O1 -g -fsanitize=address,undefined -ffp-contract=off \
  -Iinclude -Isrc -I/usr/include/x86_64-linux-gnu/openblas-pthread
FUZZ_OBJ := $(LIB_SRC:%.c=build-fuzz/obj/%.o)
build-fuzz/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(Q)clang $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link -MMD -MP -c $< -o $@
build-fuzz/libmoesz_fuzz.a: $(FUZZ_OBJ)
	$(Q)ar rcs $@ $^
build-fuzz/%: fuzz/%.c build-fuzz/libmoesz_fuzz.a
	@echo "  FUZZ    $<"
	$(Q)clang $(FUZZ_CFLAGS) -fsanitize=fuzzer -o $@ $< build-fuzz/libmoesz_fuzz.a $(LDLIBS)
fuzz: $(FUZZERS)
fuzz-run: fuzz
	sh fuzz/run.sh $(FUZZ_SECONDS) $(FUZZERS)
# Rewrites the codec's seed streams (after a stream format change).
fuzz-seeds: $(BUILD)/libmoesz.a
	$(CC) $(CFLAGS) -o $(BUILD)/seeds_codec fuzz/seeds_codec.c $(BUILD)/libmoesz.a $(LDLIBS)
	$(BUILD)/seeds_codec fuzz/corpus/fuzz_codec fuzz/corpus/fuzz_clayout

deps:
	sh scripts/install-deps.sh

install: all
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/lib/pkgconfig $(DESTDIR)$(PREFIX)/include/moesz
	install -m 755 $(BUILD)/moesz $(DESTDIR)$(PREFIX)/bin/
	install -m 644 $(BUILD)/libmoesz.a $(BUILD)/libmoesz.so $(DESTDIR)$(PREFIX)/lib/
	install -m 644 include/moesz.h $(DESTDIR)$(PREFIX)/include/
	install -m 644 include/moesz/*.h $(DESTDIR)$(PREFIX)/include/moesz/
	sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@VERSION@|$(VERSION)|' scripts/moesz.pc.in > $(DESTDIR)$(PREFIX)/lib/pkgconfig/moesz.pc

clean:
	rm -rf build build-san build-tsan build-fuzz

-include $(LIB_OBJ:.o=.d) $(CLI_OBJ:.o=.d) $(wildcard build-fuzz/obj/src/*/*.d)

# The README's two commands. DEMO_MODEL is the bundled default model: the
# demo inspects it, compresses its experts with the error-bounded codec and
# generates text from the container with half of the experts' bytes as the
# cache budget, printing the cache statistics.
DEMO_MODEL ?= models/moesz-mix-tiny
DEMO_PROMPT ?= Once upon a time
demo:
	@sh scripts/install-deps.sh
	@$(MAKE) --no-print-directory all
	$(BUILD)/moesz inspect $(DEMO_MODEL)
	$(BUILD)/moesz compress $(DEMO_MODEL) -o $(BUILD)/demo.msz --method sz --eb 1e-3 --quiet
	$(BUILD)/moesz run $(BUILD)/demo.msz --prompt "$(DEMO_PROMPT)" --max-tokens 60 --temperature 0 \
	  --mem 4MiB --cache lfru --prefetch --stats text
