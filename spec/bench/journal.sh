#!/bin/sh
# The embedded journal's benchmark: the SQLite journal against the memory journal in nginx
# (deliveries/s, a /ping's p99 on the same nginx, syncs a delivery), then in plain Lua (bytes a
# delivery on disk, a scheduler pass and `deliveries list --state dead` over 100,000 records).
# spec/bench/journal_bench.lua says how; docs/journal.md shows the figures.
#
#   sh spec/bench/journal.sh [--quick]
#
# Run after the CMake build (the LuaJIT build in build/luajit; JICOO_CORE_DIR names another).
# Full run: about 3 minutes; --quick (CI smoke): one worker, 1 s rounds, 2,000 records. It
# prints every target met or not and exits non-zero only when something failed to run. nginx,
# wrk and strace are stopped by their pids, also when interrupted.
set -u

cd "$(dirname "$0")/../.." || exit 2
lua=${LUA:-luajit}
command -v "$lua" >/dev/null 2>&1 || { echo "journal.sh: no $lua" >&2; exit 2; }
core=${JICOO_CORE_DIR:-$(pwd)/build/luajit}

dir=$(mktemp -d /tmp/jicoo-it.XXXXXX) || exit 2
sign=$(mktemp -d /dev/shm/jicoo-it.XXXXXX 2>/dev/null) || sign=$dir/sign
mkdir -p "$sign" || exit 2

stop_pid_file() {
  [ -f "$1" ] || return 0
  pid=$(cat "$1" 2>/dev/null)
  case "$pid" in
    ''|*[!0-9]*) return 0 ;;
  esac
  kill -TERM "$pid" 2>/dev/null || return 0
  n=0
  while kill -0 "$pid" 2>/dev/null && [ $n -lt 50 ]; do
    sleep 0.1
    n=$((n + 1))
  done
  kill -KILL "$pid" 2>/dev/null
  return 0
}
lua_pid=
cleanup() {
  if [ -n "$lua_pid" ] && kill -0 "$lua_pid" 2>/dev/null; then
    kill -TERM "$lua_pid" 2>/dev/null
  fi
  for pid_file in "$dir"/wrk.pid "$dir"/strace.pid "$dir"/*/logs/nginx.pid; do
    stop_pid_file "$pid_file"
  done
  rm -rf "$sign" "$dir"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

LUA_PATH="$(pwd)/lua/?.lua;$(pwd)/lua/?/init.lua;spec/?.lua;spec/bench/?.lua;;" \
  LUA_CPATH="$core/?.so;;" JICOO_CORE_DIR="$core" "$lua" spec/bench/journal_bench.lua "$dir" "$sign" "$@" &
lua_pid=$!
wait "$lua_pid"
status=$?
lua_pid=
exit $status
