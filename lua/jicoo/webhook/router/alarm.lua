-- The dead-letter alarm: the functions registered with router:on_dead (or a handler folder's
-- dead_letter.lua), called once when a delivery runs out of attempts, with what an operator
-- needs to act on it and the delivery's ctx (ctx.http to post the alarm). An alarm that raises
-- or returns nil, err is logged, never retried: it cannot turn into a loop of its own.
local ipairs = ipairs
local tostring = tostring
local xpcall = xpcall
local string_match = string.match

local scripts = require "jicoo.webhook.router.scripts"

local _M = {}

-- What an alarm is handed: the record's key, event, uid, attempts, errors ({ handler, message }
-- of the last attempt), received_at and finished_at; no body.
function _M.summary(key, record, errors, finished_at)
  local list = {}
  for i, e in ipairs(errors or {}) do
    list[i] = { handler = e.handler, message = e.message }
  end
  return {
    key = key,
    event = record.event,
    uid = record.uid,
    attempts = record.attempts,
    errors = list,
    received_at = record.received_at,
    finished_at = finished_at,
  }
end

-- Calls every alarm of the router for one dead letter (dead: as summary made it).
function _M.raise(self, dead, ctx)
  for _, alarm in ipairs(self.dead_handlers) do
    ctx.handler = alarm.label
    -- a closure: Lua 5.1's xpcall passes no arguments on (alarms are rare)
    local ok, result = scripts.outcome(xpcall(function() return alarm.fn(dead, ctx) end,
      scripts.message_handler))
    if not ok then
      self.log("error", "dead-letter alarm " .. alarm.label .. " failed for " .. dead.key .. ": "
        .. (string_match(tostring(result), "^[^\n]*")) .. " (not retried)")
    end
  end
  ctx.handler = nil
end

return _M
