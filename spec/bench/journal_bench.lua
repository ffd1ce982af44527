-- The embedded journal's benchmark behind spec/bench/journal.sh (which passes its temporary
-- folders first). Prints figures and the targets met or not; never fails on a figure.
--
--   nginx: the receiver on the memory journal and on the SQLite journal, one nginx each with the
--     same number of workers (1, then 2), wrk -c16 sending distinct signed deliveries in
--     interleaved rounds, and a second wrk asking /ping (return 200) on the same nginx meanwhile:
--     deliveries/s, their ratio, /ping's p99 and its ratio; then the syncs a delivery costs at
--     c1 and at c16 (strace counting fsync and fdatasync in the workers and their threads).
--   plain Lua: bytes a delivery takes on disk (open, with its body; done, without), one
--     scheduler pass over 100,000 open deliveries not yet due, `deliveries list --state dead`
--     over 100,000 dead letters.
local support = require "support"
local servers = require "servers"
local tools = require "nginx_tools"

local quote = support.quote
local sh, trim, median, percentile = tools.sh, tools.trim, tools.median, tools.percentile
local SECRET = "whsec_journal_bench"

local dir, sign_dir = arg[1], arg[2]
local opts = { rounds = 3, seconds = 5, records = 100000, workers = { 1, 2 }, quick = false }
for i = 3, #arg do
  if arg[i] == "--quick" then
    opts = { rounds = 1, seconds = 1, records = 2000, workers = { 1 }, quick = true }
  else
    io.stderr:write("usage: spec/bench/journal.sh [--quick]\n")
    os.exit(2)
  end
end
assert(dir and dir:match("^/tmp/jicoo%-it%.") and sign_dir, "run it through spec/bench/journal.sh")

local missing = servers.missing(false)
if not servers.wrk then
  missing[#missing + 1] = "wrk"
end
if not io.open(servers.core_dir .. "/jicoo/webhook/sqlite3.so") then
  missing[#missing + 1] = servers.core_dir .. "/jicoo/webhook/sqlite3.so (build first)"
end
if #missing > 0 then
  io.stderr:write("journal.sh: missing: " .. table.concat(missing, ", ") .. "\n")
  os.exit(2)
end

local function target(met, text, figure)
  print(string.format("  %-8s %-66s %s", met and "met" or "NOT MET", text, figure))
end

---------------------------------------------------------------------------------------------
-- nginx

local function start(name, workers, env)
  local server, log = servers.nginx_server(dir, name, function(port)
    return servers.config(port, { workers = workers, log_level = "notice", server = {
      "    location = /ping { return 200 'pong'; }",
      "    location = /bench/reset { content_by_lua_block {",
      "      ngx.shared.jicoo_claims:flush_all() ngx.shared.jicoo_claims:flush_expired()",
      "      ngx.say('reset') } }",
    } })
  end, env)
  assert(server, "nginx did not start:\n" .. tostring(log))
  server.workers = {}
  for pid in sh("pgrep -P " .. server.pid):gmatch("%d+") do
    server.workers[#server.workers + 1] = tonumber(pid)
  end
  return server
end

local function stats_all(server)
  local out = sh("curl -s --max-time 5 " .. quote(server:url("/jicoo/stats")))
  return tonumber(out:match('"all":(%d+)') or "0")
end

-- Each round sends the same deliveries: every journal starts it empty.
local function empty(server)
  if server.journal then
    sh("sqlite3 " .. quote(server.journal .. "/journal.db") .. " 'DELETE FROM deliveries'")
  else
    sh("curl -s --max-time 5 " .. quote(server:url("/bench/reset")))
  end
end

-- One round: deliveries at c16 and pings at c1, at once, for opts.seconds.
local function round(server, data)
  empty(server)
  local before = stats_all(server)
  local ping_file = dir .. "/ping.out"
  local ping = "timeout -k 5 " .. (opts.seconds + 60) .. " " .. quote(servers.wrk) .. " -t1 -c1 -d"
    .. opts.seconds .. "s --timeout 5s --latency " .. quote(server:url("/ping"))
  sh("(" .. ping .. " >" .. quote(ping_file) .. " 2>&1 &)")
  local r = tools.wrk(dir, server:url(), opts.seconds, data, 1, 16)
  servers.wait_for(function() return support.read(ping_file):find("Requests/sec", 1, true) end, 10)
  local ping_out = support.read(ping_file)
  r.handled = stats_all(server) - before
  r.ping_p99 = tools.latency(ping_out, 99)
  r.ping_p50 = tools.latency(ping_out, 50)
  return r
end

-- strace's count (-c) of fsync and fdatasync by nginx's workers and every thread of theirs (the
-- thread pool's among them) while `fn` runs.
local function syncs_during(server, fn)
  local out_file = dir .. "/strace.out"
  local pids = {}
  for _, pid in ipairs(server.workers) do
    for task in sh("ls /proc/" .. pid .. "/task"):gmatch("%d+") do
      pids[#pids + 1] = "-p " .. task
    end
  end
  sh("(strace -f -c -e trace=fsync,fdatasync -o " .. quote(out_file) .. " "
    .. table.concat(pids, " ") .. " >/dev/null 2>&1 & echo $! > " .. quote(dir .. "/strace.pid")
    .. ")")
  servers.sleep(1)
  fn()
  local pid = tonumber(support.read(dir .. "/strace.pid"))
  sh("kill -INT " .. pid)
  servers.wait_for(function() return not servers.is_alive(pid) end, 10)
  local calls = 0
  for line in support.read(out_file):gmatch("[^\n]+") do
    -- "% time  seconds  usecs/call  calls  errors  syscall"
    local n, name = line:match("^%s*[%d%.]+%s+[%d%.]+%s+%d+%s+(%d+)%s+%d*%s*(%a+)$")
    if n and (name == "fsync" or name == "fdatasync") then
      calls = calls + tonumber(n)
    end
  end
  return calls
end

local function nginx_part()
  local count = math.max(20000, opts.seconds * 25000)
  local data = tools.make_deliveries(sign_dir, SECRET, count)
  print(string.format("journal bench: %d distinct signed deliveries, wrk -t1 -c16 (deliveries)"
    .. " and -t1 -c1 (/ping) at once, %d round(s) x %d s, interleaved", count, opts.rounds,
    opts.seconds))
  for _, workers in ipairs(opts.workers) do
    local memory = start("memory-" .. workers, workers, { JICOO_WEBHOOK_SECRET = SECRET,
      JICOO_HANDLERS = servers.root .. "/examples/openresty/handlers", JICOO_JOURNAL = "memory" })
    local journal_dir = dir .. "/journal-" .. workers
    local sqlite = start("sqlite-" .. workers, workers, { JICOO_WEBHOOK_SECRET = SECRET,
      JICOO_HANDLERS = servers.root .. "/examples/openresty/handlers",
      JICOO_JOURNAL_DIR = journal_dir })
    sqlite.journal = journal_dir
    local results = { memory = { rates = {}, p99 = {} }, sqlite = { rates = {}, p99 = {} } }
    for n = 1, opts.rounds do
      local order = n % 2 == 1 and { "memory", "sqlite" } or { "sqlite", "memory" }
      for _, name in ipairs(order) do
        local server = name == "memory" and memory or sqlite
        local r = round(server, data)
        local acc = results[name]
        acc.rates[#acc.rates + 1] = r.handled / opts.seconds
        acc.p99[#acc.p99 + 1] = r.ping_p99
        print(string.format("  %d worker(s) round %d %-7s %7.0f deliveries/s (%d answered,"
          .. " non-2xx %d)  /ping p50 %.2f ms p99 %.2f ms", workers, n, name,
          r.handled / opts.seconds, r.requests or 0, r.non2xx or 0, r.ping_p50 or -1,
          r.ping_p99 or -1))
      end
    end
    local m, s = median(results.memory.rates), median(results.sqlite.rates)
    local pm, ps = median(results.memory.p99), median(results.sqlite.p99)
    print(string.format("%d worker(s): memory %.0f, SQLite %.0f deliveries/s (%.3f of memory);"
      .. " /ping p99 memory %.2f ms, SQLite %.2f ms (%.2fx)", workers, m, s, s / m, pm, ps, ps / pm))
    results.workers = workers
    opts["nginx_" .. workers] = { ratio = s / m, ping = ps / pm, memory = m, sqlite = s, pm = pm,
      ps = ps }

    -- Syncs a delivery: c1 and c16, on the SQLite nginx.
    if sh("command -v strace"):match("strace") then
      for _, c in ipairs({ 1, 16 }) do
        empty(sqlite)
        local before = stats_all(sqlite)
        local calls = syncs_during(sqlite, function()
          tools.wrk(dir, sqlite:url(), opts.seconds, data, 1, c)
        end)
        local handled = stats_all(sqlite) - before
        print(string.format("%d worker(s), c%d: %d deliveries, %d fsync/fdatasync calls: %.3f a"
          .. " delivery", workers, c, handled, calls, handled > 0 and calls / handled or 0))
        opts["syncs_" .. workers .. "_" .. c] = handled > 0 and calls / handled or nil
      end
    else
      print("strace is not installed: no syncs a delivery")
    end
    memory:stop()
    sqlite:stop()
  end
end

---------------------------------------------------------------------------------------------
-- plain Lua

local journal = require "jicoo.webhook.journal"
local sqlite_db = require "jicoo.webhook.journal.sqlite_db"
local core = require "jicoo.webhook.core"

local BODY = support.read(servers.root .. "/examples/openresty/deliveries/1-guest_booked.json")
local NOW = os.time()

-- n records in one transaction (the import op), each as make(i) says.
local function fill(journal_dir, n, make)
  local records = {}
  for i = 1, n do
    records[i] = make(i)
  end
  local result = sqlite_db.batch(journal_dir, { durability = "normal", busy_timeout = 5000 },
    { { "import", records, n = 2 } })[1]
  assert(not result.failure, result[2])
end

local function file_size(path)
  local info = core.file_info(path)
  return info and info.size or 0
end

-- Bytes on disk once the WAL is folded in.
local function database_bytes(journal_dir)
  local db = assert(require("jicoo.webhook.sqlite3").open(journal_dir .. "/journal.db"))
  assert(db:exec("PRAGMA wal_checkpoint(TRUNCATE)"))
  db:close()
  return file_size(journal_dir .. "/journal.db") + file_size(journal_dir .. "/journal.db-wal")
end

local function plain_part()
  local n = opts.records
  print(string.format("\nplain Lua (%s), %d records", _VERSION, n))
  -- bytes a delivery: open (the body kept) and done (without it)
  local open_dir, done_dir = dir .. "/bytes-open", dir .. "/bytes-done"
  local function record(i, state)
    return { key = "guest_booked/bytes_" .. i .. "/2025-04-01T09:00:02.120Z", event = "guest_booked",
      uid = "bytes_" .. i, state = state, version = 2, attempts = 1, received_at = NOW + i,
      handlers = state == "done" and { ["any.lua"] = true, ["guest_booked.lua"] = true } or {},
      errors = state == "failed" and { { handler = "guest_booked.lua", message = "crm: down" } } or {},
      body = BODY, next_at = state == "failed" and NOW + 86400 or nil,
      finished_at = state == "done" and NOW or nil, expires_at = state == "done" and NOW + 86400 or nil }
  end
  fill(open_dir, n, function(i) return record(i, "failed") end)
  fill(done_dir, n, function(i) return record(i, "done") end)
  local open_bytes, done_bytes = database_bytes(open_dir) / n, database_bytes(done_dir) / n
  print(string.format("bytes on disk a delivery: %.0f open (a %d-byte body kept), %.0f done",
    open_bytes, #BODY, done_bytes))

  -- one scheduler pass over n open deliveries not yet due
  local j = journal.sqlite({ dir = open_dir })
  local times = {}
  for _ = 1, 21 do
    local started = core.now()
    local keys = assert(j:due(NOW, 100))
    times[#times + 1] = (core.now() - started) * 1000
    assert(#keys == 0)
  end
  local pass = median(times)
  print(string.format("a scheduler pass over %d open, none due: median %.3f ms, p95 %.3f ms",
    n, pass, percentile(times, 0.95)))

  -- deliveries list --state dead over n dead letters
  local dead_dir = dir .. "/dead"
  fill(dead_dir, n, function(i)
    local r = record(i, "dead")
    r.finished_at = NOW
    return r
  end)
  local interpreter = rawget(_G, "jit") and "luajit" or "lua" .. _VERSION:match("%d+%.%d+")
  local list_times = {}
  for _ = 1, 3 do
    local started = core.now()
    local out, ok = sh(interpreter .. " " .. quote(servers.root .. "/lua/bin/jicoo-webhook")
      .. " deliveries list --state dead --journal " .. quote(dead_dir) .. " | wc -l")
    list_times[#list_times + 1] = core.now() - started
    -- a line a delivery, then the count line
    assert(ok and tonumber(trim(out)) == n + 1, "deliveries list printed " .. trim(out) .. " lines")
  end
  local list = median(list_times)
  print(string.format("deliveries list --state dead over %d dead letters: median %.2f s", n, list))
  opts.pass, opts.list = pass, list
end

local ok, err = pcall(function()
  nginx_part()
  plain_part()
end)
if not ok then
  print("PROBLEM: " .. tostring(err))
  os.exit(1)
end

print(string.format("\nTargets%s:", opts.quick and " (quick run: not meaningful)" or ""))
for _, workers in ipairs(opts.workers) do
  local r = opts["nginx_" .. workers]
  target(r.ratio >= 0.25, string.format("SQLite deliveries/s at least 1/4 of memory's, %d worker(s)",
    workers), string.format("%.3f", r.ratio))
  target(r.ping <= 2, string.format("/ping p99 while deliveries flow at most 2x memory's, %d"
    .. " worker(s)", workers), string.format("%.2fx (%.2f ms / %.2f ms)", r.ping, r.ps, r.pm))
end
target(opts.pass < 10, "one scheduler pass over " .. opts.records .. " open, not due: under 10 ms",
  string.format("%.3f ms", opts.pass))
target(opts.list < 1, "deliveries list --state dead over " .. opts.records .. ": under 1 s",
  string.format("%.2f s", opts.list))
