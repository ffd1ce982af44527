#!/bin/sh
# Installs the rock from this checkout into a fresh tree with `luarocks make` (no network),
# then runs the parse spec against the installed module alone.
# Usage: spec/installed.sh INTERPRETER LUA_VERSION LUA_INCDIR
set -eu
interpreter=$1 version=$2 incdir=$3
tree=$(mktemp -d)
trap 'rm -rf "$tree" build.luarocks' EXIT
luarocks --lua-version "$version" --tree "$tree" make rockspec/jicoo-webhook-scm-1.rockspec \
  LUA_INCDIR="$incdir" > "$tree/make.log" 2>&1 || { cat "$tree/make.log"; exit 1; }
test -x "$tree/bin/jicoo-webhook"
LUA_PATH="$tree/share/lua/$version/?.lua;$tree/share/lua/$version/?/init.lua;spec/?.lua;;" \
LUA_CPATH="$tree/lib/lua/$version/?.so;;" \
  "$interpreter" "$(command -v busted)" --output=TAP spec/parse_spec.lua
