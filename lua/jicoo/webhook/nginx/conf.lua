-- The nginx.conf of the receiver (receiver.lua), written out for given paths: the one place such
-- a configuration is made. `jicoo-webhook nginx` writes it into a prefix folder of its own;
-- examples/openresty/nginx.conf is this text for a checkout at /srv/jicoo-webhook (a spec checks
-- the two agree).
local ipairs = ipairs
local table_concat = table.concat
local string_format = string.format

local _M = {}

-- Where the receiver answers Jicoo's POSTs.
_M.WEBHOOK_PATH = "/jicoo/webhook"

-- opts: lua_dir (holds jicoo/webhook/*.lua), core_dir (holds jicoo/webhook/core.so built for
-- LuaJIT), handlers (a list of folders), listen ("127.0.0.1:8080"), workers (1), user (nil: the
-- user nginx runs as; "nobody nogroup" when started by root), resolvers (DNS servers' addresses;
-- nil: a commented line to fill in).
function _M.render(opts)
  local handlers = {}
  for i, folder in ipairs(opts.handlers) do
    handlers[i] = string_format("%q", folder)
  end
  local resolver = opts.resolvers and #opts.resolvers > 0
    and ("resolver " .. table_concat(opts.resolvers, " ") .. " valid=300s ipv6=off;")
    or "# resolver 127.0.0.53 valid=300s ipv6=off;   # this machine's, from /etc/resolv.conf"
  local user = opts.user and ("user " .. opts.user .. ";")
    or "# user www-data;   # as root, nginx runs its workers as this user"
  return table_concat({
    [[
# A Jicoo webhook receiver: a complete nginx.conf for Debian's nginx with the Lua module
#   apt-get install nginx-core libnginx-mod-http-lua lua-resty-core
# `jicoo-webhook nginx PREFIX` writes this file, with this installation's paths, into
# PREFIX/conf/nginx.conf and makes the folders it needs; run it from that folder with
#   JICOO_WEBHOOK_SECRET=... nginx -p PREFIX -c conf/nginx.conf
# and stop it with: kill $(cat PREFIX/logs/nginx.pid)
#
# Everything secret comes from the environment (the `env` lines), never from this file.

# Modules: leave these out when nginx already loads them (Debian's /etc/nginx/modules-enabled).
load_module /usr/lib/nginx/modules/ndk_http_module.so;
load_module /usr/lib/nginx/modules/ngx_http_lua_module.so;

# One worker: the example automations in examples/ rewrite JSON files (slots.json,
# campaigns.json), which two workers could interleave. Handlers that keep their state in a
# shared dict or in Redis run under `worker_processes auto;`.
worker_processes ]] .. (opts.workers or 1) .. [[;
pid logs/nginx.pid;
# info shows each handler's ctx.log lines; notice keeps only rejections and failures.
error_log logs/error.log info;
# The workers write the journal (PREFIX/journal) and the automations' files (PREFIX/out).
]] .. user .. [[


# The journal's disk work (SQLite, in PREFIX/journal) runs in these threads, never on a worker's
# event loop: a request waits for its write without holding the requests beside it.
thread_pool jicoo_journal threads=4;

# nginx hands its workers only the variables named here (receiver.lua says what each does).
env JICOO_WEBHOOK_SECRET;
env JICOO_WEBHOOK_SECRET_OLD;
env JICOO_WEBHOOK_TOLERANCE;
env JICOO_HANDLERS;
env JICOO_OUTPUT_DIR;
env JICOO_JOURNAL_DIR;
env JICOO_JOURNAL;
env JICOO_JOURNAL_DURABILITY;
env JICOO_JOURNAL_MAX_OPEN;
env JICOO_REDIS;
env JICOO_REDIS_PASSWORD;
env JICOO_REDIS_SENTINEL_PASSWORD;
env JICOO_LEASE;
env JICOO_RETRY_DELAYS;
env JICOO_ORDERED;
env JICOO_HANDLERS_CHECK;
# The example automations' settings (each script names what it reads).
env JICOO_API_KEY;
env JICOO_API_URL;
env JICOO_SLACK_WEBHOOK_URL;
env JICOO_NOTIFY_CHANNEL;
env JICOO_BLOCKED_DOMAINS;
env JICOO_RULES_DRY_RUN;
env JICOO_ANSWER_FIRST;

# Room for many connections, so that a client holding some open cannot use them all (each takes
# a file descriptor; nginx raises its own limit to this when started by root).
worker_rlimit_nofile 8192;
events {
    worker_connections 4096;
}

http {
    access_log logs/access.log;
    # A sender sends a delivery at once: a client that trickles its request is cut off in
    # seconds, not after nginx's default minute, and cannot hold connections for long.
    client_header_timeout 5s;
    client_body_timeout 5s;
    send_timeout 10s;
    keepalive_timeout 15s;
    reset_timedout_connection on;
    # Requests in progress from one address, at most (see the webhook's location).
    limit_conn_zone $binary_remote_addr zone=jicoo_per_address:1m;
    limit_conn_log_level warn;
    # Debian's nginx keeps its temp folders under /var/lib/nginx; an nginx of its own prefix
    # keeps its own.
    client_body_temp_path tmp/body;
    proxy_temp_path tmp/proxy;
    fastcgi_temp_path tmp/fastcgi;
    uwsgi_temp_path tmp/uwsgi;
    scgi_temp_path tmp/scgi;

    # The Lua modules and the C core built for LuaJIT; ";;" keeps the default path, where
    # Debian's resty.core and cjson live.
    lua_package_path "]] .. opts.lua_dir .. "/?.lua;" .. opts.lua_dir .. [[/?/init.lua;;";
    lua_package_cpath "]] .. opts.core_dir .. [[/?.so;;";
    # Trusted CAs for the handlers' HTTPS requests (ctx.http): Debian's bundle.
    lua_ssl_trusted_certificate /etc/ssl/certs/ca-certificates.crt;
    lua_ssl_verify_depth 5;
    # The DNS servers ctx.http asks for host names (cosockets do not read /etc/hosts;
    # "localhost" needs none).
    ]] .. resolver .. [[


    # Claims shared by every worker when JICOO_JOURNAL=memory (about 200 bytes a claim: 10m holds
    # ~50000). The default journal, SQLite in PREFIX/journal, and Redis's need no dict.
    lua_shared_dict jicoo_claims 10m;
    # Counts kept by examples/openresty/handlers/any.lua, shown at /jicoo/stats.
    lua_shared_dict jicoo_stats 1m;
    # The receiver's metrics, every worker's counts in one place (GET /jicoo/metrics): about
    # 120 bytes a series; 1m holds thousands, far more than events x results x handlers.
    lua_shared_dict jicoo_metrics 1m;

    # The handler folders (JICOO_HANDLERS overrides them); nginx refuses to start without a
    # secret. Then one router per worker, with the journal's scheduler. `nginx -t` runs no
    # Lua: it passes without a secret, which only the start checks. nginx's master reads the
    # JICOO_* variables once: after changing one, restart nginx (a reload keeps the old value).
    init_by_lua_block {
        require("jicoo.webhook.receiver").configure({ handlers = {
            ]] .. table_concat(handlers, ",\n            ") .. [[,
        } })
    }
    init_worker_by_lua_block {
        require("jicoo.webhook.receiver").init_worker()
    }

    server {
        listen ]] .. (opts.listen or "127.0.0.1:8080") .. [[;

        location = ]] .. _M.WEBHOOK_PATH .. [[ {
            # One address may have 16 deliveries in progress; more get 503, which a sender
            # retries. Behind a proxy every delivery comes from the proxy's address: raise it,
            # or name the proxy with set_real_ip_from and real_ip_header.
            limit_conn jicoo_per_address 16;
            # Only Jicoo's senders need to reach this location: once you know their addresses
            # (from Jicoo, or from access.log), allow them alone.
            #   allow 203.0.113.0/24;
            #   deny all;
            # The router refuses bodies over its max_size (1 MiB) with a JSON 413 and a log
            # line. nginx refuses bodies over client_max_body_size before any Lua runs, so keep
            # it above max_size: only absurd sizes meet nginx's own 413 (answered below).
            client_max_body_size 2m;
            # Bodies up to this size stay in memory; larger ones go to a temp file, which the
            # adapter reads too.
            client_body_buffer_size 128k;
            error_page 413 = @too_large;
            content_by_lua_block {
                require("jicoo.webhook.receiver").serve()
            }
        }

        # Prometheus's scrape (text format 0.0.4) and the health check (200, or 503 naming
        # what is wrong), for this machine only: add your Prometheus's and load balancer's
        # addresses above `deny all` to let them in.
        location = /jicoo/metrics {
            allow 127.0.0.1;
            deny all;
            content_by_lua_block {
                require("jicoo.webhook.receiver").metrics()
            }
        }

        location = /jicoo/health {
            allow 127.0.0.1;
            deny all;
            content_by_lua_block {
                require("jicoo.webhook.receiver").health()
            }
        }

        location = /jicoo/stats {
            allow 127.0.0.1;
            deny all;
            content_by_lua_block {
                require("jicoo.webhook.receiver").stats()
            }
        }

        location @too_large {
            default_type application/json;
            return 413 '{"error":"too_large","ok":false}';
        }
    }
}
]],
  })
end

-- The handler folders of a checkout whose examples/ folder is examples_dir.
function _M.example_handlers(examples_dir)
  return { examples_dir .. "/openresty/handlers", examples_dir .. "/ledger",
    examples_dir .. "/notify", examples_dir .. "/cancellations", examples_dir .. "/campaigns" }
end

return _M
