-- The scheduler's pass over a router's journal: what is due now (a failed delivery whose retry
-- time came, a running one whose lease ran out: its worker died) taken under a fresh lease and
-- dispatched, once per outage logging that the journal cannot be asked. The router's receive
-- path is router/init.lua; this runs beside it, from the nginx adapter's timer or a plain-Lua
-- program's loop.
local ipairs = ipairs
local tostring = tostring

local alarm = require "jicoo.webhook.router.alarm"
local engine = require "jicoo.webhook.payload"
local reconcile = require "jicoo.webhook.router.reconcile"

local _M = {}

local DUE_PER_RUN = 100

-- The router's own helpers (router/init.lua), found once both modules are loaded.
local internals
local function router_internals()
  internals = internals or require("jicoo.webhook.router").internals
  return internals
end

local function record_outcome(self, delivery, changes, now)
  return router_internals().record_outcome(self, delivery, changes, now)
end

local function new_context(self, key, body, headers, received_at, attempt)
  return router_internals().new_context(self, key, body, headers, received_at, attempt)
end

-- A journaled delivery taken for another attempt, ready for dispatch; or nil when its body no
-- longer parses (the router's parse options changed), which ends it as dead.
local function journaled_delivery(self, key, record, now)
  local ev, msg = engine.parse(record.body or "", self.parse_opts)
  local delivery = { event = ev, key = key, record = record }
  if not ev then
    self.log("error", "dead letter " .. key .. ": its journaled body no longer parses: " .. msg)
    local errors = { { handler = "(parse)", message = msg } }
    record_outcome(self, delivery, { state = "dead", finished_at = now, errors = errors }, now)
    self.meter:dead_letter(record.event)
    if #self.dead_handlers > 0 then
      alarm.raise(self, alarm.summary(key, record, errors, now),
        new_context(self, key, record.body, {}, record.received_at, record.attempts))
    end
    return nil
  end
  delivery.ctx = new_context(self, key, record.body, {}, record.received_at, record.attempts)
  if reconcile.is_key(key) then
    delivery.ctx.source = reconcile.SOURCE
  end
  return delivery
end

-- One pass of the scheduler: every delivery the journal has due now (a failed one whose retry
-- time came, a running one whose lease ran out: its worker died) is taken, under a fresh lease,
-- and its remaining handlers run. Returns how many ran, and their results. The nginx adapter
-- calls it from a timer in every worker; a plain-Lua program calls it when it likes.
local function run_pass(self)
  local now = router_internals().current_time(self)
  local keys, err = self.journal:due(now, DUE_PER_RUN)
  if not keys then
    -- once per outage, not once a second
    if not self.due_failing then
      self.log("error", "journal: cannot list the deliveries due (retries wait until it can): "
        .. tostring(err))
    end
    self.due_failing = true
    return 0, {}
  end
  if self.due_failing then
    self.log("info", "journal: the deliveries due can be listed again")
    self.due_failing = nil
  end
  local results = {}
  for _, key in ipairs(keys) do
    local outcome, record, alone = router_internals().acquire(self, key, now, nil, false)
    if outcome == "taken" then
      local delivery = journaled_delivery(self, key, record, now)
      if delivery then
        delivery.alone = alone
        local res = self:dispatch(delivery)
        self.meter:retry(delivery.event.event, res.waiting and "waiting"
          or res.status == 200 and "handled" or "handler_failed")
        self.log(res.status == 200 and "info" or "warn", "attempt " .. record.attempts .. " of "
          .. key .. ": " .. (res.status == 200 and "handled" or "failed"))
        results[#results + 1] = res
      end
    elseif outcome == nil then
      self.log("error", "journal: cannot take " .. key .. ": " .. tostring(record))
    end
  end
  return #results, results
end

_M.journaled_delivery = journaled_delivery

-- The pass, timed for the metrics (router/metrics.lua: its duration, and when it ended).
function _M.run_due(self)
  local elapsed_clock = router_internals().elapsed_clock
  local started = elapsed_clock()
  local count, results = run_pass(self)
  local ended = elapsed_clock()
  self.meter:scheduler_pass(ended - started, ended)
  return count, results
end

return _M
