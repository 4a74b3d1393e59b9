# The two commands of the README. Each installs what is missing (Debian packages,
# as root), configures, builds, then runs.
BUILD ?= build
JOBS ?= $(shell nproc)

.PHONY: all deps build test demo fuzz format clean

all: build

deps:
	@scripts/install-deps.sh

build: deps
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo
	cmake --build $(BUILD) -j$(JOBS)

test: build
	scripts/run-tests.sh $(BUILD)

demo: build
	scripts/demo.sh $(BUILD)

# Fuzz every parser of untrusted input, FUZZ_SECONDS each (clang, ASan, UBSan).
FUZZ_SECONDS ?= 60
fuzz: deps
	scripts/fuzz.sh $(FUZZ_SECONDS)

format:
	scripts/format.sh --fix

clean:
	rm -rf $(BUILD) build-fuzz
