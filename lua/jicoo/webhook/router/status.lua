-- What a router tells its operators: router:metrics(), the Prometheus exposition of its counts
-- (router/metrics.lua) with the journal's gauges read now, and router:health(), whether it can
-- take deliveries: the journal takes a write and the scheduler has passed lately.
local type = type
local tostring = tostring
local tonumber = tonumber
local string_format = string.format
local string_match = string.match
local ipairs = ipairs
local math_max = math.max

local json = require "jicoo.webhook.payload.json"

local _M = {}

-- Seconds without a scheduler's pass after which health says so: the nginx adapter passes every
-- second, and a pass that outlives its interval is not started twice.
_M.DEFAULT_SCHEDULER_WITHIN = 30

local internals
local function router_internals()
  internals = internals or require("jicoo.webhook.router").internals
  return internals
end

-- The journal's gauges: its records by state, and how late the longest-waiting due one is (the
-- first of due's answer is the soonest due: a failed one's next attempt, a running one's lease).
local function journal_gauges(self, now)
  local journal = self.journal
  local counts = journal.counts and journal:counts()
  if not counts then
    return { up = false }
  end
  local gauges = { up = true, states = counts.states or {}, oldest_due_age = 0 }
  local keys = journal:due(now, 1)
  local record = keys and keys[1] and journal:get(keys[1])
  if type(record) == "table" then
    local due_at = record.state == "running" and record.lease_until or record.next_at
    if type(due_at) == "number" then
      gauges.oldest_due_age = math_max(0, now - due_at)
    end
  end
  return gauges
end

-- The metrics in Prometheus's text format (0.0.4; metrics.CONTENT_TYPE names it).
function _M.metrics(self)
  local now = router_internals().current_time(self)
  return self.meter:render(journal_gauges(self, now))
end

-- { status = 200 | 503, body = JSON, ok = boolean, problems = { text, ... } }: 200 when the
-- journal takes a write (journal:check; a journal without one is asked its counts) and a
-- scheduler's pass ended within opts.scheduler_within seconds (30), in any worker; else 503,
-- naming what is wrong.
function _M.health(self, opts)
  local within = opts and opts.scheduler_within or _M.DEFAULT_SCHEDULER_WITHIN
  local now = router_internals().elapsed_clock()
  local problems = {}
  local journal = self.journal
  local ok, err
  if journal.check then
    ok, err = journal:check(now)
  else
    ok, err = journal:counts()
  end
  local journal_state = "ok"
  if not ok then
    journal_state = "cannot be written: " .. tostring(err)
    problems[#problems + 1] = "journal " .. journal_state
  end
  local last = self.meter:last_pass()
  local scheduler_state = "ok"
  local age = last and math_max(0, now - last)
  if not last then
    scheduler_state = "has not passed yet"
  elseif age > within then
    scheduler_state = string_format("last passed %.0f s ago (more than %g s)", age, within)
  end
  if scheduler_state ~= "ok" then
    problems[#problems + 1] = "scheduler " .. scheduler_state
  end
  -- Broken handler scripts are named, but keep health at 200: the receiver still takes every
  -- delivery (each broken script's are journaled as failed until it is fixed), and the same
  -- broken edit on every node would otherwise take them all out of the load balancer at once.
  local broken
  for _, failure in ipairs(self.script_failures or {}) do
    broken = broken or {}
    broken[#broken + 1] = tostring(failure.file) .. ": "
      .. string_match(tostring(failure.message), "^[^\n]*")
  end
  local healthy = #problems == 0
  local body = json.encode({
    ok = healthy,
    journal = journal_state,
    scheduler = scheduler_state,
    scripts = broken or "ok",
    last_pass_age = age and tonumber(string_format("%.3f", age)) or nil,
  })
  return { status = healthy and 200 or 503, body = body, ok = healthy, problems = problems,
    broken_scripts = broken }
end

return _M
