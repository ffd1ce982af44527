#!/bin/sh
# The nginx benchmark: requests/s of the example receiver (examples/openresty) vs a bare
# content_by_lua endpoint that only reads the body and answers 200, in one nginx (one worker,
# 127.0.0.1, a free port), wrk in interleaved rounds (docs/performance.md).
#
#   sh spec/bench/nginx.sh [--quick] [--variants] [--rounds N] [--seconds S] [--threads T]
#                          [--connections C] [--deliveries N] [--log-level L] [--only A,B]
#
# Run from anywhere after the CMake build (nginx loads build/luajit/jicoo/webhook/core.so;
# JICOO_CORE_DIR names another folder). Full run: 3 rounds x 5 s per endpoint, about 40 s;
# --quick: 1 round x 1 s (CI smoke). The exit status is non-zero on a non-2xx answer, a socket
# error, an [error] line in nginx's log or a delivery taken for a duplicate; never because of
# the ratio. nginx and wrk are stopped by their pids, also when interrupted.
set -u

cd "$(dirname "$0")/../.." || exit 2
lua=${LUA:-}
if [ -z "$lua" ]; then
  for candidate in luajit lua5.1 lua5.4; do
    if command -v "$candidate" >/dev/null 2>&1; then
      lua=$candidate
      break
    fi
  done
fi
if [ -z "$lua" ]; then
  echo "nginx.sh: no Lua interpreter (luajit, lua5.1 or lua5.4)" >&2
  exit 2
fi

dir=$(mktemp -d /tmp/jicoo-it.XXXXXX) || exit 2
# The deliveries are signed from one file each: on a tmpfs when there is one.
sign=$(mktemp -d /dev/shm/jicoo-it.XXXXXX 2>/dev/null) || sign=$dir/sign
mkdir -p "$sign" || exit 2

# Stops what this run started (by the pids in its own folder), then removes the folder.
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
  stop_pid_file "$dir/wrk.pid"
  stop_pid_file "$dir/nginx/logs/nginx.pid"
  rm -rf "$sign" "$dir"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# In the background, so that a signal to this script runs the trap at once.
LUA_PATH="spec/?.lua;spec/bench/?.lua;;" "$lua" spec/bench/nginx_bench.lua "$dir" "$sign" "$@" &
lua_pid=$!
wait "$lua_pid"
status=$?
lua_pid=
exit $status
