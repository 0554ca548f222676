# The two commands a user needs: `make run` and `make test`. See README.md.
JOBS ?= 2
CTEST_ARGS ?=

.PHONY: run test deps build-release build-test bench bench-broadcast fuzz format clean

# The network lab (needs root): every fault against every mechanism, about 20 s.
# The table goes to the terminal; build/lab/lab.html has a timeline per cell.
run: build-release
	./build/release/src/cli/lifeline lab --report build/lab

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

# One message broadcast to 19,000 connections, lifeline against a plain epoll loop (about 8 minutes).
bench-broadcast: build-release
	bash bench/run.sh broadcast

format:
	find src include tests bench examples \( -name '*.cpp' -o -name '*.hpp' -o -name '*.h' -o -name '*.c' \) -print0 | xargs -0 clang-format -i

clean:
	rm -rf build
