#!/bin/sh
# The bounded fuzz runs and the allocation-failure sweep, as one test of the main build:
# configures a clang build with JICOO_FUZZ in BUILD_DIR and runs its fuzz-* and alloc-failure
# ctests (JICOO_FUZZ_SECONDS each fuzzer, 20 by default: the test command stays under 15 minutes;
# longer runs: spec/fuzz/README.md).
# Usage: spec/fuzz/smoke.sh BUILD_DIR
set -eu
cd "$(dirname "$0")/../.."
build=$1
mkdir -p "$build"
cmake -S . -B "$build" -DJICOO_FUZZ=ON -DCMAKE_C_COMPILER=clang -DJICOO_RUNTIMES=lua5.4 \
  -DJICOO_WERROR=ON -DJICOO_FUZZ_SECONDS="${JICOO_FUZZ_SECONDS:-20}" > "$build/configure.log" 2>&1 \
  || { cat "$build/configure.log"; exit 1; }
cmake --build "$build" -j2 > "$build/build.log" 2>&1 || { cat "$build/build.log"; exit 1; }
exec ctest --test-dir "$build" -R '^(fuzz|alloc)' --output-on-failure
