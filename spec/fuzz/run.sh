#!/bin/sh
# A longer fuzz run of one target than the ctest smoke: configures and builds build-fuzz when
# needed, then fuzzes with the seeds, the dictionary and a corpus that grows across runs in
# build-fuzz/fuzz/corpus/TARGET. Crash inputs land in build-fuzz/fuzz/artifacts/.
# Usage: spec/fuzz/run.sh TARGET [SECONDS] [JOBS]    TARGET: parse, decode or verify
#        e.g. spec/fuzz/run.sh parse 3600 2
set -eu
cd "$(dirname "$0")/../.."
target=$1 seconds=${2:-600} jobs=${3:-1}
build=${BUILD:-build-fuzz}
if [ ! -x "$build/fuzz/fuzz_$target" ]; then
  cmake -S . -B "$build" -DJICOO_FUZZ=ON -DCMAKE_C_COMPILER=clang -DJICOO_RUNTIMES=lua5.4
fi
cmake --build "$build" -j2 --target "fuzz_$target"
fuzz=$build/fuzz
mkdir -p "$fuzz/corpus/$target" "$fuzz/artifacts"
export ASAN_OPTIONS="detect_stack_use_after_return=1:detect_leaks=1"
export UBSAN_OPTIONS="print_stacktrace=1"
set -- -max_total_time="$seconds" -timeout=10 -print_final_stats=1 -dict=spec/fuzz/json.dict \
  -artifact_prefix="$fuzz/artifacts/$target-"
[ "$jobs" -gt 1 ] && set -- "$@" -fork="$jobs" -ignore_crashes=0
exec nice -n 10 "$fuzz/fuzz_$target" "$@" "$fuzz/corpus/$target" "$fuzz/seeds/$target"
