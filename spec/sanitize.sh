#!/bin/sh
# The whole Busted suite on Lua 5.4 against an AddressSanitizer + UndefinedBehaviorSanitizer
# build of the C module, LeakSanitizer on. The lua5.4 interpreter is not instrumented, so the
# compiler's ASan runtime is preloaded into it (it must come before every other library).
# Usage: spec/sanitize.sh [BUILD_DIR]       (default build-sanitize; CC=clang to use clang)
# Exit status: busted's (a sanitizer report aborts the run, so it fails too).
set -eu
cd "$(dirname "$0")/.."
repo=$(pwd)
build=${1:-build-sanitize}
cc=${CC:-gcc}
case $build in /*) ;; *) build=$repo/$build ;; esac

mkdir -p "$build"
cmake -S . -B "$build" -DJICOO_SANITIZE=ON -DJICOO_RUNTIMES=lua5.4 -DCMAKE_C_COMPILER="$cc" \
  > "$build/configure.log" 2>&1 || { cat "$build/configure.log"; exit 1; }
cmake --build "$build" -j2 > "$build/build.log" 2>&1 || { cat "$build/build.log"; exit 1; }

case $("$cc" --version) in
  *clang*) runtime=$("$cc" -print-file-name=libclang_rt.asan-x86_64.so) ;;
  *) runtime=$("$cc" -print-file-name=libasan.so) ;;
esac
if [ ! -f "$runtime" ]; then
  echo "sanitize.sh: no shared ASan runtime for $cc ($runtime)" >&2
  exit 1
fi

# Child processes the specs start (shells, the CLI) inherit these too: fine, they are checked
# the same way; spec/servers.lua starts nginx, curl and openssl without the preload. halt_on_error:
# the first report ends the run with a failure.
export LD_PRELOAD="$runtime"
export ASAN_OPTIONS="detect_leaks=1:detect_stack_use_after_return=1:halt_on_error=1:exitcode=86"
export LSAN_OPTIONS="suppressions=$repo/spec/lsan.supp:print_suppressions=0"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
export LUA_PATH="$repo/lua/?.lua;$repo/lua/?/init.lua;$repo/spec/?.lua;;"
export LUA_CPATH="$build/lua5.4/?.so;;"
export JICOO_RUNTIME=lua5.4
. spec/instrumented.sh
# shellcheck disable=SC2046
exec lua5.4 "$(command -v busted)" --output=TAP $(instrumented_specs)
