#!/bin/sh
# Runs one nginx/Redis integration spec with Busted: integration.sh INTERPRETER BUSTED SPEC.
# Exit 77 (ctest: skipped) when nginx, its Lua module, redis-server, curl or openssl is missing;
# .ci/run installs them all, so in CI these specs always run.
interpreter=$1 busted=$2 spec=$3
for program in nginx redis-server redis-cli curl openssl; do
  if ! command -v "$program" >/dev/null 2>&1 && [ ! -x "/usr/sbin/$program" ]; then
    echo "skipped: $program is not installed"
    exit 77
  fi
done
if [ ! -f /usr/lib/nginx/modules/ngx_http_lua_module.so ]; then
  echo "skipped: nginx's Lua module is not installed (libnginx-mod-http-lua)"
  exit 77
fi
PATH=$PATH:/usr/sbin JICOO_INTEGRATION=1 exec "$interpreter" "$busted" --output=TAP "$spec"
