# Thin wrapper over CMake and the dev stack; the README shows these targets.
BUILD    ?= build
ASAN     ?= build-asan
FUZZ     ?= build-fuzz
# Seconds per harness: make test runs each briefly, make fuzz for long.
FUZZ_TEST_SECONDS ?= 10
FUZZ_SECONDS      ?= 600
JOBS     ?= $(shell nproc)
STACK    := deploy/dev/stack

.PHONY: all deps build build-asan fuzz-build fuzz test test-soak test-cluster unit demo bench bench-cluster format format-check docs clean stack-up stack-down

all: build

deps:
	$(STACK) install

$(BUILD)/Makefile:
	cmake -S . -B $(BUILD) -DPARALLEL_WERROR=ON

build: $(BUILD)/Makefile
	cmake --build $(BUILD) -j$(JOBS)

$(ASAN)/Makefile:
	cmake -S . -B $(ASAN) -DPARALLEL_WERROR=ON -DPARALLEL_SANITIZE=address,undefined

build-asan: $(ASAN)/Makefile
	cmake --build $(ASAN) -j$(JOBS)

# libFuzzer harnesses (tests/fuzz): clang, ASan + UBSan, libraries
# instrumented for coverage.
$(FUZZ)/Makefile:
	CC=clang cmake -S . -B $(FUZZ) -DPARALLEL_FUZZ=ON \
	  -DPARALLEL_SANITIZE=address,undefined -DCMAKE_BUILD_TYPE=RelWithDebInfo

fuzz-build: $(FUZZ)/Makefile
	cmake --build $(FUZZ) -j$(JOBS)

# Long runs: every harness for FUZZ_SECONDS (make fuzz FUZZ_SECONDS=3600).
fuzz: fuzz-build
	tests/fuzz/run.sh $(FUZZ) $(FUZZ_SECONDS)

# Everything: unit tests (also under ASan/UBSan), then integration tests
# against the real stack, which is started if needed and stopped afterwards
# if this run started it.
test: deps build build-asan fuzz-build
	FUZZ_BUILD=$(FUZZ) FUZZ_TEST_SECONDS=$(FUZZ_TEST_SECONDS) \
	  tests/run-all.sh $(BUILD) $(ASAN)

# The node crash test at full size: 10,000 signals, a node SIGKILLed every
# 10 s (about 4 minutes); make test runs it with 4,000.
test-soak: deps build
	deploy/dev/stack up
	cd $(BUILD) && PARALLEL_TEST_SIGNALS=10000 \
	  ctest -R stack_consumer_crash_test --output-on-failure

# Every fault scenario on the namespace cluster (root; ~25 min): broker
# kill, node partition, producer partition, 50 ms + 1% loss, rolling
# restart, scale 1→3→1, each checked by a ledger (tests/cluster/run.sh).
test-cluster: deps build
	tests/cluster/run.sh $(BUILD)

unit: build
	cd $(BUILD) && ctest -L unit --output-on-failure

demo: deps build
	deploy/demo.sh $(BUILD)

bench: deps build
	tests/bench/run-all.sh $(BUILD)

bench-cluster: deps build
	tests/bench/cluster.sh $(BUILD)

format:
	clang-format -i $$(git ls-files '*.c' '*.h')

format-check:
	clang-format --dry-run --Werror $$(git ls-files '*.c' '*.h')

docs: build
	$(BUILD)/parallel-ctl config docs > docs/CONFIGURATION.md

stack-up: deps
	$(STACK) up

stack-down:
	$(STACK) down

clean:
	rm -rf $(BUILD) $(ASAN)
