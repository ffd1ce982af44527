-- The nginx benchmark's targets (docs/performance.md "Targets"), each printed with its figure
-- and met or not, from the medians of nginx_bench.lua's rounds: worker CPU per request (µs),
-- requests/s, and redis-server's CPU per delivery.
local median = require("nginx_tools").median

local _M = {}

local function line(met, what, figure, goal)
  local verdict = met == nil and "beside" or met and "met" or "NOT MET"
  print(string.format("  %-8s %-66s %s%s", verdict, what, figure, goal and ("  (" .. goal .. ")")
    or ""))
end

function _M.print(results, quick)
  local function cpu(name)
    return results[name] and median(results[name].cpu)
  end
  local function rate(name)
    return results[name] and median(results[name].rates)
  end
  local bare = cpu("bare") or 0
  print(string.format("\nTargets%s:", quick and " (quick run: not meaningful)" or ""))
  local receiver = cpu("receiver")
  if receiver then
    line(receiver - bare <= 5, "receiver (memory journal, shared-dict claims): µs beyond bare",
      string.format("%.1f", receiver - bare), "at most 5.0")
  end
  -- The router's share: what the receiver adds to verifying and parsing (construct), in bare
  -- requests; with the example's handler (its counters and log line) and with an empty one.
  local construct = cpu("construct")
  for _, case in ipairs({ { "minimal", "one empty handler" }, { "receiver", "the example's handler" } }) do
    local total = cpu(case[1])
    if total and construct and bare > 0 then
      local share = (total - construct) / bare
      line(share <= 0.45, "router's share, " .. case[2] .. ": (" .. case[1] .. " - construct) / bare",
        string.format("%.2f (%.1f µs)", share, total - construct), "at most 0.45")
    end
  end
  local handwritten = rate("handwritten")
  for _, name in ipairs({ "minimal", "receiver" }) do
    local r = rate(name)
    if r and handwritten then
      line(r / handwritten >= 1.6, name .. " / hand-written receiver, requests/s",
        string.format("%.2fx", r / handwritten), "at least 1.6x")
    end
  end
  local sqlite, memory = rate("sqlite"), rate("receiver")
  if sqlite and memory then
    line(sqlite / memory >= 0.5, "SQLite journal / memory journal, requests/s",
      string.format("%.2f", sqlite / memory), "at least 0.50")
  end
  local redis_cpu = results.redis and median(results.redis.redis_cpu)
  if redis_cpu then
    line(redis_cpu <= 40, "Redis journal: redis-server CPU per delivery, µs",
      string.format("%.1f (the worker's %.1f)", redis_cpu, cpu("redis") or 0),
      "at most 40: half of the 70-100 before")
  end
  -- Its floor: two round trips that run no script (redis_floor's two PINGs a request).
  local floor = results.redis_floor and median(results.redis_floor.redis_cpu)
  if redis_cpu and floor then
    line(nil, "Redis journal: redis-server CPU for two PINGs a request, µs",
      string.format("%.1f (the journal %.2fx that)", floor, redis_cpu / floor))
  end
  local client, raw = cpu("redis_floor"), cpu("raw_floor")
  if client and raw then
    line(nil, "Redis client, two PINGs a request: worker µs, client / cosockets",
      string.format("%.1f / %.1f", client, raw))
  end
  for _, name in ipairs({ "sqlite", "redis" }) do
    local c = cpu(name)
    if c then
      line(nil, name .. " journal: worker µs beyond bare", string.format("%.1f", c - bare))
    end
  end
  local uncounted = cpu("nometrics")
  if receiver and uncounted then
    line(nil, "metrics: receiver minus receiver without metrics, µs",
      string.format("%.1f (%.3f of a bare request)", receiver - uncounted,
        bare > 0 and (receiver - uncounted) / bare or 0))
  end
end

return _M
