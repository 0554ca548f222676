# The two commands a user needs: `make run` and `make test`. See README.md.
JOBS ?= 2
CTEST_ARGS ?=

.PHONY: run test deps build-release build-test bench fuzz format clean

run: build-release
	./build/release/src/cli/lifeline sim

# The scale test drives the release binary (see tests/runtime/CMakeLists.txt), so both builds are made.
test: build-release build-test
	cd build/asan && ctest --output-on-failure -j$(JOBS) $(CTEST_ARGS)

deps:
	bash scripts/install-deps.sh

build-release: deps
	cmake --preset release
	cmake --build --preset release -j$(JOBS)

build-test: deps
	cmake --preset asan
	cmake --build --preset asan -j$(JOBS)

bench: build-release
	bash bench/run.sh

format:
	find src include tests bench -name '*.cpp' -o -name '*.hpp' | xargs clang-format -i

clean:
	rm -rf build
