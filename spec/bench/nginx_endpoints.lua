-- The bench-only locations of spec/bench/nginx.sh, loaded by its nginx (never by the example):
-- /bench/reset forgets every claim between rounds (the rounds reuse the same deliveries), and,
-- with --variants, endpoints that each do a part of the receiver's work, to split its cost:
--
--   adapter          read the body and the headers as the adapter does, answer a JSON body
--   verify           adapter + webhook.verify
--   construct        adapter + webhook.construct (verify + parse)
--   router_noverify  the full receiver with opts.verify = false (no HMAC)
--   router_nostore   the full receiver with a store that claims without touching a shared dict
--
-- and, always, the receiver without its metrics (a dict that keeps nothing), whose difference
-- from the receiver is what counting costs a delivery, the receiver with one handler that does
-- nothing in place of the example's (its counters and log line), and what a user might write
-- by hand instead of the library:
--
--   receiver_nometrics
--   receiver_minimal     the receiver (memory journal, shared-dict claims), one empty handler
--   handwritten          HMAC-SHA256 through LuaJIT's FFI to nginx's own libcrypto, cjson and a
--                        Lua validator of the same contract (spec/bench/validator.lua), a
--                        shared-dict add for duplicates, one empty handler, a cjson answer
-- and, always, the receiver on the two durable journals (the example receiver itself runs on
-- the memory journal with its claims in the shared dict, JICOO_JOURNAL=memory):
--
--   receiver_sqlite  the SQLite journal in $JICOO_BENCH_JOURNAL_DIR (through the thread pool)
--   receiver_redis   the Redis journal on 127.0.0.1:$JICOO_BENCH_REDIS_PORT, when it is set
--
-- and, beside the Redis journal, what its two round trips a delivery cost redis-server before
-- any script runs:
--
--   redis_floor      adapter + two PINGs to that Redis through the journal's own client (its
--                    connection pool), one after the other, as the journal's acquire and update
--   raw_floor        the same two PINGs on nginx's cosockets alone: what the client adds to them
local openresty = require "jicoo.webhook.openresty"
local journal = require "jicoo.webhook.journal"
local store = require "jicoo.webhook.store"
local webhook = require "jicoo.webhook"

local ngx = ngx
local ngx_req = ngx.req
local tonumber = tonumber

local _M = {}

local HERE = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
local HANDLERS = HERE .. "../../examples/openresty/handlers"
local MINIMAL_HANDLERS = HERE .. "minimal_handlers"
local SECRET = os.getenv("JICOO_WEBHOOK_SECRET")

local routers = {}
local redis_port = tonumber(os.getenv("JICOO_BENCH_REDIS_PORT") or "")
local redis_client   -- redis_floor's, on the Redis journal's server
-- the receiver's tolerance (nginx.sh raises it: a long run outlives the default 300 s)
local TOLERANCE = tonumber(os.getenv("JICOO_WEBHOOK_TOLERANCE") or "")
local CHECK = { tolerance = TOLERANCE }

-- A store that always claims: the router's path without the shared dict.
local no_store = {
  add = function() return true end,
  delete = function() return true end,
}

-- A metrics dict that keeps nothing: the router's path without counting.
local no_metrics = {
  incr = function() return 0 end,
  set = function() return true end,
  get = function() return nil end,
  get_keys = function() return {} end,
}

function _M.init_worker()
  local function router(opts, handlers)
    opts.tolerance = TOLERANCE
    local r = openresty.router(opts)
    assert(r:load(handlers or HANDLERS))
    return r
  end
  routers.noverify = router({ verify = false, store = store.shdict("bench_claims") })
  routers.minimal = router({ secrets = SECRET, store = store.shdict("bench_claims") },
    MINIMAL_HANDLERS)
  routers.nostore = router({ secrets = SECRET, store = no_store })
  routers.nometrics = router({ secrets = SECRET, store = store.shdict("bench_claims"),
    metrics = no_metrics })
  routers.sqlite = router({ secrets = SECRET,
    journal = journal.sqlite({ dir = os.getenv("JICOO_BENCH_JOURNAL_DIR") }) })
  if redis_port then
    routers.redis = router({ secrets = SECRET, journal = journal.redis({ port = redis_port }) })
    redis_client = require("jicoo.net.redis").new({ port = redis_port })
  end
end

function _M.reset()
  for _, name in ipairs({ "jicoo_claims", "bench_claims" }) do
    ngx.shared[name]:flush_all()
    ngx.shared[name]:flush_expired()
  end
  ngx.say("reset")
end

-- The adapter's reading (headers, Content-Length check, body) and a JSON answer like its own.
local function read()
  local headers = ngx_req.get_headers(100)
  local length = tonumber(headers["content-length"])
  if length and length > 1048576 then
    return ngx.exit(413)
  end
  ngx_req.read_body()
  return ngx_req.get_body_data(), headers
end

local function answer(ok)
  local body = ok and '{"ok":true,"result":"handled"}' or '{"ok":false}'
  ngx.status = ok and 200 or 400
  ngx.header["Content-Type"] = "application/json"
  ngx.header["Content-Length"] = #body
  ngx.header["Cache-Control"] = "no-store"
  ngx.print(body)
end

function _M.adapter()
  local body = read()
  answer(body ~= nil)
end

function _M.verify()
  local body, headers = read()
  answer(webhook.verify(body, headers["jicoo-webhook-signature"], SECRET, CHECK))
end

function _M.construct()
  local body, headers = read()
  answer(webhook.construct(body, headers["jicoo-webhook-signature"], SECRET, CHECK) ~= nil)
end

function _M.router_noverify()
  return openresty.serve(routers.noverify)
end

function _M.router_nostore()
  return openresty.serve(routers.nostore)
end

function _M.receiver_nometrics()
  return openresty.serve(routers.nometrics)
end

function _M.receiver_minimal()
  return openresty.serve(routers.minimal)
end

function _M.handwritten()
  return require("handwritten").serve(SECRET)
end

function _M.receiver_sqlite()
  return openresty.serve(routers.sqlite)
end

function _M.receiver_redis()
  return openresty.serve(routers.redis)
end

local function raw_ping()
  local sock = ngx.socket.tcp()
  sock:settimeout(1000)
  local ok = sock:connect("127.0.0.1", redis_port) and sock:send("*1\r\n$4\r\nPING\r\n")
  local line = ok and sock:receive("*l")
  if line ~= "+PONG" then
    sock:close()
    return false
  end
  sock:setkeepalive(60000, 32)
  return true
end

function _M.raw_floor()
  local body = read()
  answer(body ~= nil and raw_ping() and raw_ping())
end

function _M.redis_floor()
  local body = read()
  answer(body ~= nil and redis_client:call("PING") == "PONG" and redis_client:call("PING") == "PONG")
end

return _M
