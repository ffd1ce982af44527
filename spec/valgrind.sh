#!/bin/sh
# The Busted suite on Lua 5.4 under valgrind memcheck, against the normal build of the module:
# any memory error or definite leak fails it. Valgrind does not follow the child processes some
# specs start; they run natively.
# Usage: spec/valgrind.sh BUILD_DIR [SPEC...]   (BUILD_DIR holds lua5.4/jicoo/webhook/core.so
#                                                and sqlite3.so; default SPEC: every spec but
#                                                spec/instrumented.sh's NATIVE_ONLY and
#                                                CHILDREN_ONLY)
set -eu
cd "$(dirname "$0")/.."
repo=$(pwd)
build=$1
shift
. spec/instrumented.sh
[ $# -gt 0 ] || set -- $(instrumented_specs "$CHILDREN_ONLY")
case $build in /*) ;; *) build=$repo/$build ;; esac
for module in core sqlite3; do
  test -f "$build/lua5.4/jicoo/webhook/$module.so" \
    || { echo "valgrind.sh: no lua5.4 $module.so in $build" >&2; exit 1; }
done

export LUA_PATH="$repo/lua/?.lua;$repo/lua/?/init.lua;$repo/spec/?.lua;;"
export LUA_CPATH="$build/lua5.4/?.so;;"
export JICOO_RUNTIME=lua5.4
exec valgrind --quiet --error-exitcode=1 --leak-check=full --errors-for-leak-kinds=definite \
  --show-leak-kinds=definite --num-callers=30 \
  lua5.4 "$(command -v busted)" --output=TAP "$@"
