#!/bin/sh
# Installs the rock from this checkout into a fresh tree with `luarocks make` (no network),
# then runs the parse, signature and sqlite3 specs (sqlite3_spec.lua, sqlite3_errors_spec.lua,
# sqlite3_files_spec.lua) against the installed modules alone, and the installed jicoo-webhook
# command on the fixtures in spec/fixtures/.
# Usage: spec/installed.sh INTERPRETER LUA_VERSION LUA_INCDIR
set -eu
interpreter=$1 version=$2 incdir=$3
fixtures=spec/fixtures
tree=$(mktemp -d)
trap 'rm -rf "$tree" build.luarocks' EXIT
# LuaJIT installs as README says: through rockspec/luajit.lua, so the command runs luajit.
config=
case "$interpreter" in *luajit*) config=rockspec/luajit.lua ;; esac
if [ -n "$config" ]; then
  LUAROCKS_CONFIG=$config
  export LUAROCKS_CONFIG
fi
luarocks --lua-version "$version" --tree "$tree" make rockspec/jicoo-webhook-scm-1.rockspec \
  LUA_INCDIR="$incdir" > "$tree/make.log" 2>&1 || { cat "$tree/make.log"; exit 1; }
if [ -n "$config" ] && ! grep -q "exec '[^']*luajit'" "$tree/bin/jicoo-webhook"; then
  echo "the installed jicoo-webhook does not run luajit:"; cat "$tree/bin/jicoo-webhook"; exit 1
fi

# Both C modules, side by side as CMake installs them.
for module in core sqlite3; do
  test -f "$tree/lib/lua/$version/jicoo/webhook/$module.so" || { echo "no $module.so installed"; exit 1; }
done

LUA_PATH="$tree/share/lua/$version/?.lua;$tree/share/lua/$version/?/init.lua;spec/?.lua;;" \
LUA_CPATH="$tree/lib/lua/$version/?.so;;" \
  "$interpreter" "$(command -v busted)" --output=TAP spec/parse_spec.lua spec/signature_spec.lua \
  spec/sqlite3_spec.lua spec/sqlite3_errors_spec.lua spec/sqlite3_files_spec.lua

# The command, as a user runs it: valid fixtures pass, an invalid one fails with its path.
"$tree/bin/jicoo-webhook" check "$fixtures"/valid/*.json
if "$tree/bin/jicoo-webhook" check "$fixtures/invalid/missing_object_uid.json" > "$tree/out" 2>&1; then
  echo "jicoo-webhook check accepted an invalid delivery"; exit 1
fi
grep -q "/object/uid" "$tree/out"
"$tree/bin/jicoo-webhook" example host_cancelled | "$tree/bin/jicoo-webhook" check -
echo "ok - installed jicoo-webhook command"

# The manual page and the bash completion are installed with the rock (LuaRocks keeps them in
# the rock's folder; the CMake install puts them under its prefix's share/).
rock="$tree/lib/luarocks/rocks-$version/jicoo-webhook/scm-1"
test -s "$rock/share/man/man1/jicoo-webhook.1" || { echo "no manual page installed"; exit 1; }
test -s "$rock/share/bash-completion/completions/jicoo-webhook" || { echo "no completion"; exit 1; }
echo "ok - manual page and completion installed"
addon="$rock/share/jicoo-webhook/lua-language-server"
test -s "$addon/config.json" && test -s "$addon/library/jicoo-webhook-types.lua" \
  || { echo "no Lua Language Server addon installed"; exit 1; }
test ! -e "$addon/make.lua" || { echo "the addon's generator was installed"; exit 1; }
"$tree/bin/jicoo-webhook" annotations | grep -qx "$addon" \
  || { echo "jicoo-webhook annotations does not name $addon"; exit 1; }
echo "ok - Lua Language Server addon installed, and named by jicoo-webhook annotations"

# The README's recipe for a --tree install: `luarocks path` makes the modules visible to Lua.
version_seen=$(env -u LUA_PATH -u LUA_CPATH sh -c '
  eval "$(luarocks --lua-version "$1" path --tree "$2")"
  "$3" -e "print(require(\"jicoo.webhook\")._VERSION)"' sh "$version" "$tree" "$interpreter")
test "$version_seen" = "$("$tree/bin/jicoo-webhook" --version | sed 's/^jicoo-webhook //')" \
  || { echo "luarocks path: got '$version_seen'"; exit 1; }
echo "ok - luarocks path --tree finds the modules"
