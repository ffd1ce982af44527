#!/usr/bin/env bash
# The main job in one command, on Debian 12: install what is missing, build, start nginx on
# 127.0.0.1 with the example automations (the nginx.conf `jicoo-webhook nginx` writes for this
# checkout), send the example deliveries signed as Jicoo signs them (plus a retry and a
# forged one), show each answer and what each handler did, then stop nginx.
#
#   examples/demo.sh           run, show, stop (nothing keeps running)
#   examples/demo.sh --keep    leave the receiver running and say how to stop it
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
keep=no
[ "${1:-}" = "--keep" ] && keep=yes

say() { printf '\n\033[1m%s\033[0m\n' "$*"; }

# 1. Debian packages: the toolchain, LuaJIT (OpenResty's branch), nginx with its Lua module.
.ci/install-packages demo
nginx=$(command -v nginx || echo /usr/sbin/nginx)

# 2. Build the C core (build/luajit/jicoo/webhook/core.so is the one nginx loads).
say "Building"
cmake -S . -B build >/dev/null
cmake --build build -j2 >/dev/null
echo "built $root/build/luajit/jicoo/webhook/core.so"

# 3. A run folder and a free port; a fresh secret only this demo knows.
run=$(mktemp -d /tmp/jicoo-demo.XXXXXX)
port=""
for _ in $(seq 1 50); do
  candidate=$((20000 + RANDOM % 40000))
  if ! (exec 3<>"/dev/tcp/127.0.0.1/$candidate") 2>/dev/null; then
    port=$candidate
    break
  fi
done
[ -n "$port" ] || { echo "no free port found" >&2; exit 1; }
secret=$(openssl rand -hex 24)
# The receiver's nginx.conf for this checkout, and the folders it writes (as root, its workers
# run as nobody and own the journal and the output folder).
LUA_PATH="$root/lua/?.lua;$root/lua/?/init.lua;;" LUA_CPATH="$root/build/luajit/?.so;;" \
  luajit lua/bin/jicoo-webhook nginx "$run" --listen "127.0.0.1:$port" >/dev/null

# 4. Start nginx: the secret comes from the environment; the automations write to $run/out.
say "Starting nginx on 127.0.0.1:$port (prefix $run)"
JICOO_WEBHOOK_SECRET=$secret "$nginx" -p "$run" -c conf/nginx.conf
pid=""
for _ in $(seq 1 50); do
  pid=$(cat "$run/logs/nginx.pid" 2>/dev/null || true)
  [ -n "$pid" ] && curl -s -o /dev/null --max-time 1 "http://127.0.0.1:$port/jicoo/stats" && break
  sleep 0.1
done
stop() {
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid"
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  fi
}
if [ "$keep" = no ]; then
  trap 'stop; echo; echo "nginx (pid $pid) stopped; the files it wrote stay in $run"' EXIT
fi
url="http://127.0.0.1:$port/jicoo/webhook"
echo "receiver: POST $url   (nginx master pid $pid)"

# 5. Send: sign like Jicoo (HMAC-SHA256 of "<t>.<body>", computed by openssl), POST with curl,
#    and show the answer and the handlers' log lines it produced.
log_offset=$(stat -c %s "$run/logs/error.log")
send() {   # send LABEL FILE SECRET
  local label=$1 file=$2 key=$3 t hex status answer
  t=$(date +%s)
  hex=$( (printf '%s.' "$t"; cat "$file") | openssl dgst -sha256 -hmac "$key" -r | cut -d' ' -f1)
  answer=$(curl -s --max-time 10 -w '\n%{http_code}' -H 'Content-Type: application/json' \
    -H "Jicoo-Webhook-Signature: t=$t,v1=$hex" --data-binary @"$file" "$url")
  status=${answer##*$'\n'}
  printf '\n%s  %-37s %s\n' "$status" "$label" "${answer%$'\n'*}"
  # The handlers' ctx.log lines and the receiver's rejections, without nginx's request suffix.
  tail -c +$((log_offset + 1)) "$run/logs/error.log" | grep -a 'jicoo-webhook: ' \
    | sed -e 's/.*jicoo-webhook: /       /' -e 's/, client: 127.0.0.1.*//' \
    | sed -e "s|$root/examples/||" || true
  log_offset=$(stat -c %s "$run/logs/error.log")
}

say "Deliveries (status, delivery, answer; below each, what the handlers did)"
for file in examples/openresty/deliveries/*.json; do
  send "$(basename "$file")" "$file" "$secret"
done
send "1-guest_booked.json (Jicoo retries)" examples/openresty/deliveries/1-guest_booked.json "$secret"
forged="$run/forged.json"
sed 's/hanako.sato@example.jp/attacker@example.net/' examples/openresty/deliveries/1-guest_booked.json > "$forged"
send "forged (signed with a wrong secret)" "$forged" "not-the-endpoint-secret"

# 6. What the automations wrote.
say "What the automations wrote in $run/out"
for name in ledger.jsonl cancellations.jsonl slots.json campaigns.json; do
  if [ -f "$run/out/$name" ]; then
    echo "--- $name"
    cat "$run/out/$name"
    [ -n "$(tail -c 1 "$run/out/$name")" ] && echo
  fi
done
echo "--- GET /jicoo/stats (counted in a shared dict by examples/openresty/handlers/any.lua)"
curl -s --max-time 5 "http://127.0.0.1:$port/jicoo/stats"

if [ "$keep" = yes ]; then
  say "The receiver keeps running on $url (secret: $secret)"
  echo "Stop it with:  kill $pid        (logs: $run/logs/error.log)"
fi
