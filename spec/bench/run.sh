#!/bin/sh
# The benchmark on lua5.1, lua5.4 and luajit, printed as one table (docs/performance.md).
#
#   sh spec/bench/run.sh [--quick] [bench.lua options]
#
# Run from the repository root after the CMake build. JICOO_BUILD names the build folder
# (default: build); the payloads are the fixtures in spec/fixtures/. The exit status is
# non-zero only when something errors, never because of a ratio.
set -u

build=${JICOO_BUILD:-build}
runtimes=${JICOO_BENCH_RUNTIMES:-"lua5.1 lua5.4 luajit"}
out=$(mktemp -d) || exit 2
trap 'rm -rf "$out"' EXIT INT TERM

status=0
reporter=
quick=
for a in "$@"; do
  [ "$a" = --quick ] && quick=--quick
done
for rt in $runtimes; do
  if ! command -v "$rt" >/dev/null 2>&1; then
    echo "run.sh: $rt not installed, skipped" >&2
    continue
  fi
  if [ ! -f "$build/$rt/jicoo/webhook/core.so" ]; then
    echo "run.sh: $build/$rt/jicoo/webhook/core.so missing (build first, or set JICOO_BUILD)" >&2
    status=1
    continue
  fi
  LUA_PATH="lua/?.lua;lua/?/init.lua;;" LUA_CPATH="$build/$rt/?.so;;" \
    "$rt" spec/bench/bench.lua --out "$out/$rt.tsv" "$@" || status=1
  [ -f "$out/$rt.tsv" ] && reporter=$rt
done

if [ -z "$reporter" ]; then
  echo "run.sh: no runtime produced results" >&2
  exit 1
fi
set --
for rt in $runtimes; do
  [ -f "$out/$rt.tsv" ] && set -- "$@" "$out/$rt.tsv"
done
"$reporter" spec/bench/bench.lua --report "$@" || status=1

# Instructions per call on Lua 5.4, counted by callgrind, when valgrind is here.
if command -v valgrind >/dev/null 2>&1 && [ -f "$out/lua5.4.tsv" ]; then
  LUA_PATH="lua/?.lua;lua/?/init.lua;;" LUA_CPATH="$build/lua5.4/?.so;;" \
    lua5.4 spec/bench/instructions.lua $quick || status=1
fi

# Strings built to collide in each runtime's string hash, against random ones (docs/hardening.md).
for rt in $runtimes; do
  [ -f "$out/$rt.tsv" ] || continue
  LUA_PATH="lua/?.lua;lua/?/init.lua;;" LUA_CPATH="$build/$rt/?.so;;" \
    "$rt" spec/bench/hash_flood.lua $quick || status=1
done
exit $status
