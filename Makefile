# The two commands of the README. Each installs what is missing (Debian packages,
# as root), configures, builds, then runs.
BUILD ?= build
JOBS ?= $(shell nproc)

.PHONY: all deps build test demo format clean

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

format:
	scripts/format.sh --fix

clean:
	rm -rf $(BUILD)
