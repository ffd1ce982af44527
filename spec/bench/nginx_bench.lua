-- The nginx benchmark behind spec/bench/nginx.sh (which passes the temporary folder first):
-- one nginx (one worker, 127.0.0.1, a free port) serving a bare endpoint and the example
-- receiver side by side, wrk against each in interleaved rounds; prints requests/s, medians,
-- the ratio receiver/bare. Exits non-zero on a non-2xx answer, a socket error, an [error] line
-- in nginx's log or a delivery taken for a duplicate; never because of a ratio.
local support = require "support"
local servers = require "servers"

local quote = support.quote
local SECRET = "whsec_nginx_bench"

local function usage(message)
  io.stderr:write("nginx.sh: " .. message .. "\n", [[
usage: spec/bench/nginx.sh [--quick] [--variants] [--rounds N] [--seconds S]
                           [--threads T] [--connections C] [--deliveries N] [--log-level L]
  --quick        1 round of 1 s per endpoint, no warm-up (CI smoke)
  --variants     also the partial receivers (adapter, verify, construct, router without
                 verify, router without the shared dict), to split the receiver's cost
  --log-level L  nginx's error_log level (default notice; the example's is info)
  --only A,B     only these endpoints (names as the table prints them), e.g. to profile one
]])
  os.exit(2)
end

local dir, sign_dir = arg[1], arg[2]
local opts = {
  rounds = 3, seconds = 5, threads = 1, connections = 16, deliveries = nil, warmup = 1,
  variants = false, log_level = "notice", quick = false, only = nil,
}
do
  local i = 3
  local numeric = { ["--rounds"] = "rounds", ["--seconds"] = "seconds", ["--threads"] = "threads",
    ["--connections"] = "connections", ["--deliveries"] = "deliveries" }
  while arg[i] do
    local a = arg[i]
    if a == "--quick" then
      opts.rounds, opts.seconds, opts.warmup, opts.quick = 1, 1, 0, true
    elseif a == "--variants" then
      opts.variants = true
    elseif a == "--only" then
      i = i + 1
      opts.only = {}
      for name in (arg[i] or usage("--only needs a list of endpoints")):gmatch("[^,]+") do
        opts.only[name] = true
      end
    elseif a == "--log-level" then
      i = i + 1
      opts.log_level = arg[i] or usage("--log-level needs a value")
    elseif numeric[a] then
      i = i + 1
      local n = tonumber(arg[i] or "")
      if not n or n < 1 or n % 1 ~= 0 then
        usage(a .. " needs a positive whole number")
      end
      opts[numeric[a]] = n
    else
      usage("unknown option " .. a)
    end
    i = i + 1
  end
end
assert(dir and dir:match("^/tmp/jicoo%-it%.") and sign_dir and sign_dir:match("/jicoo%-it%."),
  "nginx_bench.lua: run it through spec/bench/nginx.sh")

local missing = servers.missing(false)
if not servers.wrk then
  missing[#missing + 1] = "wrk"
end
local core = servers.core_dir .. "/jicoo/webhook/core.so"
if not io.open(core) then
  missing[#missing + 1] = core .. " (build first: cmake -S . -B build && cmake --build build)"
end
if #missing > 0 then
  io.stderr:write("nginx.sh: missing: " .. table.concat(missing, ", ") .. "\n")
  os.exit(2)
end

local tools = require "nginx_tools"
local sh, trim, median = tools.sh, tools.trim, tools.median

---------------------------------------------------------------------------------------------
-- The endpoints, in the order of the first round.

local journal_dir = dir .. "/journal"
local redis
if servers.redis_server and servers.redis_cli then
  redis = servers.redis(dir)
end
-- Each journal starts a round empty: the rounds send the same deliveries again.
local function empty_sqlite_journal()
  sh("sqlite3 " .. quote(journal_dir .. "/journal.db") .. " 'DELETE FROM deliveries' 2>/dev/null")
end
local function empty_redis()
  redis:cli("flushall")
end
local endpoints = {
  { name = "bare", path = "/bare" },
  { name = "construct", path = "/v/construct" },
  { name = "receiver", path = "/jicoo/webhook", handles = true },
  { name = "minimal", path = "/v/receiver_minimal" },
  { name = "handwritten", path = "/v/handwritten" },
  { name = "nometrics", path = "/v/receiver_nometrics", handles = true },
  { name = "sqlite", path = "/v/receiver_sqlite", handles = true, before = empty_sqlite_journal },
  redis and { name = "redis", path = "/v/receiver_redis", handles = true, before = empty_redis,
    redis = redis } or nil,
  redis and { name = "redis_floor", path = "/v/redis_floor", redis = redis } or nil,
  redis and { name = "raw_floor", path = "/v/raw_floor", redis = redis } or nil,
}
if opts.variants then
  table.insert(endpoints, 2, { name = "adapter", path = "/v/adapter" })
  table.insert(endpoints, 3, { name = "verify", path = "/v/verify" })
  table.insert(endpoints, 4, { name = "router_noverify", path = "/v/router_noverify", handles = true })
  table.insert(endpoints, 5, { name = "router_nostore", path = "/v/router_nostore", handles = true })
end

if opts.only then
  local kept = {}
  for _, ep in ipairs(endpoints) do
    if opts.only[ep.name] then
      kept[#kept + 1] = ep
    end
  end
  if #kept == 0 then
    usage("--only names no endpoint")
  end
  endpoints = kept
end

-- One exact location per partial receiver (no regex capture: a read of ngx.var is a trace LuaJIT
-- gives up on, and it would take the endpoint's own code down with it).
local function variant_locations()
  local lines = {}
  for _, name in ipairs({ "adapter", "verify", "construct", "router_noverify", "router_nostore",
    "receiver_nometrics", "receiver_minimal", "handwritten", "receiver_sqlite", "receiver_redis",
    "redis_floor", "raw_floor" }) do
    lines[#lines + 1] = "    location = /v/" .. name .. " {\n      client_max_body_size 2m;"
      .. " client_body_buffer_size 128k;\n      content_by_lua_block { require('nginx_endpoints')."
      .. name .. "() }\n    }"
  end
  return table.concat(lines, "\n")
end

-- The receiver as the specs serve it (spec/servers.lua), one worker, and the benchmark's own
-- endpoints (spec/bench/nginx_endpoints.lua).
local function render(port)
  return servers.config(port, {
    workers = 1,
    log_level = opts.log_level,
    lua_path = servers.root .. "/spec/bench/?.lua;",
    -- Big enough that no claim of a run is evicted; /bench/reset empties them between rounds.
    claims_size = "64m",
    http = { "  lua_shared_dict bench_claims 64m;" },
    env = { "env JICOO_BENCH_JOURNAL_DIR; env JICOO_BENCH_REDIS_PORT;" },
    init_worker = "require('nginx_endpoints').init_worker()",
    server = {
      -- (a) the bare endpoint: read the body, answer 200.
      "    location = /bare {",
      "      client_max_body_size 2m; client_body_buffer_size 128k;",
      "      content_by_lua_block { ngx.req.read_body() ngx.say('ok') }",
      "    }",
      "    location = /bench/reset { content_by_lua_block { require('nginx_endpoints').reset() } }",
      variant_locations(),
    },
  })
end

local function make_deliveries(count)
  return tools.make_deliveries(sign_dir, SECRET, count)
end

local function wrk(server, path, seconds, data)
  return tools.wrk(dir, server:url(path), seconds, data, opts.threads, opts.connections)
end

local function stats_all(server)
  local out = sh("curl -s --max-time 5 " .. quote(server:url("/jicoo/stats")))
  return tonumber(out:match('"all":(%d+)') or "0")
end

local function reset(server)
  local out = sh("curl -s --max-time 5 " .. quote(server:url("/bench/reset")))
  assert(trim(out) == "reset", "/bench/reset answered: " .. out)
end

local worker_pid

local function worker_cpu()
  return tools.process_cpu(worker_pid)
end

---------------------------------------------------------------------------------------------

local function main()
  local load_before = trim(sh("uptime"))
  -- Enough distinct deliveries for a receiver round (up to 73,000 requests/s seen here) with
  -- room to spare; a round that sends more fails the run (it would have measured duplicates).
  local count = opts.deliveries or math.max(20000, opts.seconds * 100000)
  local started = os.time()
  local data, body_size = make_deliveries(count)
  print(string.format("nginx bench: %d distinct signed deliveries (%d bytes a body on average),"
    .. " made and signed by openssl in %d s", count, body_size, os.time() - started))

  local server, log = servers.nginx_server(dir, "nginx", render,
    { JICOO_WEBHOOK_SECRET = SECRET,
      JICOO_HANDLERS = servers.root .. "/examples/openresty/handlers",
      JICOO_JOURNAL = "memory",
      -- a long run outlives the default 300 s: the deliveries are signed once, at the start
      JICOO_WEBHOOK_TOLERANCE = "86400",
      JICOO_BENCH_JOURNAL_DIR = journal_dir,
      JICOO_BENCH_REDIS_PORT = redis and tostring(redis.port) or nil })
  if not server then
    io.stderr:write("nginx.sh: nginx did not start:\n" .. tostring(log) .. "\n")
    return 1
  end
  print(string.format("nginx pid %d on 127.0.0.1:%d, 1 worker, error_log %s; wrk -t%d -c%d,"
    .. " %d round(s) x %d s per endpoint", server.pid, server.port, opts.log_level, opts.threads,
    opts.connections, opts.rounds, opts.seconds))
  print("load before: " .. load_before)
  worker_pid = tonumber(trim(sh("pgrep -P " .. server.pid)):match("^%d+") or "")

  local status = 0
  local function problem(message)
    print("PROBLEM: " .. message)
    status = 1
  end

  local ok, err = pcall(function()
    -- The journal's round trips to Redis so far: its success path sends only EVALSHA (one
    -- script a round trip; the commands a script runs are counted apart in INFO, not here).
    local function redis_commands(r)
      return tonumber(r:cli("info commandstats"):match("cmdstat_evalsha:calls=(%d+)") or "0")
    end
    local function run(ep, seconds, label)
      reset(server)
      if ep.before then
        ep.before()
      end
      local before = ep.handles and stats_all(server)
      local commands_before = ep.redis and redis_commands(ep.redis)
      local redis_before = ep.redis and tools.process_cpu(ep.redis.pid)
      local cpu_before = worker_cpu()
      local r = wrk(server, ep.path, seconds, data)
      local cpu_after = worker_cpu()
      local redis_after = ep.redis and tools.process_cpu(ep.redis.pid)
      local commands_after = ep.redis and redis_commands(ep.redis)
      if r.failed then
        problem(ep.name .. " " .. label .. ": wrk failed:\n" .. r.out)
        return r
      end
      -- The worker's CPU time per answered request, and how busy it was (100%: nginx is the
      -- bottleneck; less: wrk, sharing the machine's cores, is).
      if cpu_before and cpu_after and r.requests > 0 then
        r.cpu_us = (cpu_after - cpu_before) * 1e6 / r.requests
        r.busy = (cpu_after - cpu_before) / seconds
      end
      local note = r.cpu_us and string.format("  worker %.1f us/req, %3.0f%% busy", r.cpu_us,
        100 * r.busy) or ""
      if ep.handles then
        r.handled = stats_all(server) - before
        note = note .. string.format("  handled %d", r.handled)
        -- Every answered request ran its handler: none was taken for a duplicate.
        if commands_before and commands_after and r.handled > 0 then
          r.redis_per_delivery = (commands_after - commands_before) / r.handled
          note = note .. string.format("  redis %.2f round trips/delivery", r.redis_per_delivery)
        end
        if redis_before and redis_after and r.handled > 0 then
          r.redis_cpu_us = (redis_after - redis_before) * 1e6 / r.handled
          note = note .. string.format("  redis-server %.1f us/delivery", r.redis_cpu_us)
        end
        if r.handled < r.requests - r.non2xx then
          problem(string.format("%s %s: %d requests, only %d handled (duplicates: raise"
            .. " --deliveries)", ep.name, label, r.requests, r.handled))
        end
      end
      if ep.redis and not ep.handles and redis_before and redis_after and r.requests > 0 then
        r.redis_cpu_us = (redis_after - redis_before) * 1e6 / r.requests
        note = note .. string.format("  redis-server %.1f us/request", r.redis_cpu_us)
      end
      if ep.handles and r.requests > count then
        problem(string.format("%s %s: %d requests for %d distinct deliveries (raise --deliveries)",
          ep.name, label, r.requests, count))
      end
      print(string.format("  %-8s %-16s %7.0f req/s %7d requests  non-2xx %d  socket errors %d%s",
        label, ep.name, r.rate, r.requests, r.non2xx, r.errors, note))
      if r.non2xx > 0 or r.errors > 0 then
        problem(ep.name .. " " .. label .. ": non-2xx answers or socket errors:\n" .. r.out)
      end
      return r
    end

    if opts.warmup > 0 then
      for _, ep in ipairs(endpoints) do
        run(ep, opts.warmup, "warm-up")
      end
    end
    local results = {}
    for _, ep in ipairs(endpoints) do
      results[ep.name] = { rates = {}, cpu = {}, trips = {}, redis_cpu = {}, non2xx = 0, errors = 0,
        requests = 0 }
    end
    for round = 1, opts.rounds do
      -- Alternate the order, so neither endpoint always runs first in a round.
      local first, last, step = 1, #endpoints, 1
      if round % 2 == 0 then
        first, last, step = #endpoints, 1, -1
      end
      for k = first, last, step do
        local ep = endpoints[k]
        local r = run(ep, opts.seconds, "round " .. round)
        local acc = results[ep.name]
        if r.rate then
          acc.rates[#acc.rates + 1] = r.rate
          acc.requests = acc.requests + r.requests
          acc.cpu[#acc.cpu + 1] = r.cpu_us
          acc.trips[#acc.trips + 1] = r.redis_per_delivery
          acc.redis_cpu[#acc.redis_cpu + 1] = r.redis_cpu_us
        end
        acc.non2xx = acc.non2xx + (r.non2xx or 0)
        acc.errors = acc.errors + (r.errors or 0)
      end
    end

    local errors = server:error_lines()
    if #errors > 0 then
      problem(#errors .. " [error] line(s) in nginx's error log, the first: " .. errors[1])
    end

    local bare = results.bare and median(results.bare.rates)
    print("")
    print(string.format("nginx, 1 worker, wrk -t%d -c%d, %d x %d s per endpoint, medians"
      .. " (load after: %s)", opts.threads, opts.connections, opts.rounds, opts.seconds,
      trim(sh("uptime")):match("load average.*$") or "?"))
    print(string.format("| %-16s | %8s | %7s | %13s | %7s | %6s | %s", "endpoint", "req/s",
      "of bare", "worker us/req", "non-2xx", "errors", "rounds (req/s)"))
    print("|" .. string.rep("-", 18) .. "|" .. string.rep("-", 10) .. "|" .. string.rep("-", 9)
      .. "|" .. string.rep("-", 15) .. "|" .. string.rep("-", 9) .. "|" .. string.rep("-", 8)
      .. "|" .. string.rep("-", 20))
    for _, ep in ipairs(endpoints) do
      local acc = results[ep.name]
      local m = median(acc.rates)
      local rounds = {}
      for i, rate in ipairs(acc.rates) do
        rounds[i] = string.format("%.0f", rate)
      end
      local cpu = median(acc.cpu)
      print(string.format("| %-16s | %8.0f | %6.1f%% | %13s | %7d | %6d | %s", ep.name, m or 0,
        (m and bare) and 100 * m / bare or 0, cpu and string.format("%.1f", cpu) or "?",
        acc.non2xx, acc.errors, table.concat(rounds, " ")))
    end
    for _, ep in ipairs(endpoints) do
      local trips = median(results[ep.name].trips)
      if trips then
        print(string.format("%s: %.2f round trips to Redis per delivery (EVALSHA calls / handled)",
          ep.name, trips))
      end
    end
    local receiver = results.receiver and median(results.receiver.rates)
    if receiver and bare then
      print(string.format("\nratio receiver/bare: %.3f; worker CPU a request beyond bare's:"
        .. " %.1f us; nginx error log: %d [error] line(s)", receiver / bare,
        (median(results.receiver.cpu) or 0) - (median(results.bare.cpu) or 0), #errors))
      require("nginx_targets").print(results, opts.quick)
    end
  end)
  if not ok then
    problem("the bench raised: " .. tostring(err))
  end
  server:stop()
  if redis then
    redis:stop()
  end
  return status
end

os.exit(main())
