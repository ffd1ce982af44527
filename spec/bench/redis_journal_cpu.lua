-- What the Redis journal costs redis-server per delivery: N cycles of acquire (a new delivery)
-- and update (done) against a redis-server of its own on 127.0.0.1, read from INFO's
-- used_cpu_sys + used_cpu_user before and after. With the file of another version of
-- journal/redis.lua (one that needs no other module than this checkout has), both run in
-- interleaved rounds, on an emptied server each, and the medians and their ratio are printed.
--
--   git show REV:lua/jicoo/webhook/journal/redis.lua > /tmp/old_journal_redis.lua
--   LUA_PATH="lua/?.lua;lua/?/init.lua;spec/?.lua;;" LUA_CPATH="build/luajit/?.so;;" \
--     luajit spec/bench/redis_journal_cpu.lua [--old /tmp/old_journal_redis.lua] [N] [ROUNDS]
--
-- Needs redis-server and LuaSocket. Prints figures, never fails because of one.
local support = require "support"
local servers = require "servers"
local redis = require "jicoo.net.redis"

local old_path
local rest = {}
do
  local i = 1
  while arg[i] do
    if arg[i] == "--old" then
      old_path = arg[i + 1]
      i = i + 2
    else
      rest[#rest + 1] = arg[i]
      i = i + 1
    end
  end
end
local N = tonumber(rest[1]) or 2000
local ROUNDS = tonumber(rest[2]) or 5
local NOW = 1700000000
local LEASE = 300

local variants = { { name = "this", module = require "jicoo.webhook.journal.redis" } }
if old_path then
  local chunk = assert(loadfile(old_path))
  variants[2] = { name = "old", module = chunk() }
end

local dir = (support.run("mktemp -d /tmp/jicoo-bench.XXXXXX")):gsub("%s+$", "")
local server = assert(servers.redis(dir))
local admin = redis.new({ port = server.port })

local function cpu()
  local info = assert(admin:call("INFO", "cpu"))
  return tonumber(info:match("used_cpu_sys:([%d%.]+)")) + tonumber(info:match("used_cpu_user:([%d%.]+)"))
end

-- The commands the server ran, all told (scripts' own calls included).
local function commands()
  local info = assert(admin:call("INFO", "commandstats"))
  local total = 0
  for calls in info:gmatch("calls=(%d+)") do
    total = total + tonumber(calls)
  end
  return total
end

-- One run: N deliveries acquired and done; the server's CPU seconds and the commands it ran.
local function run(variant, round)
  assert(admin:call("FLUSHALL"))
  assert(admin:call("CONFIG", "RESETSTAT"))
  local j = variant.module.new({ port = server.port, prefix = "bench:" })
  local warm_key = "warm/" .. round
  local _, warm = assert(j:acquire(warm_key, NOW, LEASE, { key = warm_key, event = "guest_booked",
    uid = "warm", body = "{}", received_at = NOW }, false))
  assert(j:update(warm_key, warm.token, { state = "done", finished_at = NOW }, NOW))
  local body = string.rep("x", 1024)
  local before, calls = cpu(), commands()
  for i = 1, N do
    local key = "guest_booked/bk_" .. i .. "/2024-03-01T10:00:05+09:00"
    local at = NOW + i / 1000
    local outcome, record = j:acquire(key, at, LEASE, { key = key, event = "guest_booked",
      uid = "bk_" .. i, body = body, received_at = at }, false)
    assert(outcome == "new", tostring(record))
    assert(j:update(key, record.token, { state = "done", handlers = { ["a.lua"] = true },
      finished_at = at }, at) == true)
  end
  local used = cpu() - before
  -- INFO itself is two commands of the count
  return used, commands() - calls - 2
end

local results = {}
for _, variant in ipairs(variants) do
  results[variant.name] = { cpu = {}, commands = 0 }
end
for round = 1, ROUNDS do
  for _, variant in ipairs(variants) do
    local used, ran = run(variant, round)
    table.insert(results[variant.name].cpu, used)
    results[variant.name].commands = ran
  end
end

local function median(list)
  table.sort(list)
  return list[math.ceil(#list / 2)]
end

print(string.format("redis-server CPU for %d deliveries (acquire new + update done), median of %d rounds:",
  N, ROUNDS))
for _, variant in ipairs(variants) do
  local r = results[variant.name]
  local m = median(r.cpu)
  local rounds = {}
  for i, used in ipairs(r.cpu) do
    rounds[i] = string.format("%.3f", used)
  end
  print(string.format("  %-5s %.3f s  (%.1f us a delivery; %.1f commands a delivery; rounds %s)",
    variant.name, m, m / N * 1e6, r.commands / N, table.concat(rounds, " ")))
  r.median = m
end
if results.old then
  print(string.format("  ratio this/old: %.2f", results.this.median / results.old.median))
end

admin:close()
server:stop()
support.run("rm -rf " .. support.quote(dir))
