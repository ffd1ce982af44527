-- A booking's deliveries in order: a delivery waits while an earlier one of its booking (the same
-- uid, an earlier envelope createdAt) is neither done nor dead, and runs right after it; one
-- that comes after a later one of its booking already ran still runs, with ctx.out_of_order.
-- The journal is what every worker and node shares, so the order holds across them: the
-- booking's records are asked of it (find by uid), and a waiting delivery is a failed record
-- whose error says what it waits for, taken again by whoever finishes the earlier one (or by
-- the scheduler, at the earlier one's time).
local type = type
local next = next
local ipairs = ipairs
local string_match = string.match
local math_max = math.max

local core = require "jicoo.webhook.core"

local _M = {}

_M.WAITING = "(order)"   -- the handler named by a waiting delivery's error
local RECHECK = 60       -- seconds a waiting delivery rests when the earlier one has no time set
local SIBLINGS = 100     -- a booking's deliveries looked at, at most

-- The envelope's createdAt of a delivery, from its key (event/uid/createdAt), as Unix seconds.
local function created_at(key)
  local text = type(key) == "string" and string_match(key, "/([^/]*)$")
  return text and core.time(text) or nil
end
_M.created_at = created_at

local function is_waiting(record)
  local errors = record.errors
  return record.state == "failed" and type(errors) == "table" and errors[1] ~= nil
    and errors[1].handler == _M.WAITING
end
_M.is_waiting = is_waiting

local function ran(record)
  if record.state == "done" or record.state == "dead" then
    return true
  end
  return type(record.handlers) == "table" and next(record.handlers) ~= nil
end

-- The booking's other deliveries (without bodies), or nil when the journal cannot say.
local function siblings(self, delivery)
  local journal = self.journal
  local uid = delivery.record.uid or delivery.event.object.uid
  if not journal.find or uid == nil then
    return nil
  end
  return (journal:find({ uid = uid, limit = SIBLINGS }))
end

-- Before the handlers run: nil when the delivery may run now (ctx.out_of_order set when a
-- later delivery of its booking already ran), or the earlier record it waits for.
function _M.earlier_open(self, delivery)
  local records = siblings(self, delivery)
  if not records or #records < 2 then
    return nil   -- the booking's only delivery (the common case): nothing to order
  end
  local mine = created_at(delivery.key)
  if not mine then
    return nil
  end
  local blocking
  for _, record in ipairs(records) do
    if record.key ~= delivery.key then
      local theirs = created_at(record.key)
      if theirs and theirs < mine then
        -- an earlier one that is not finished (running, failed, waiting itself) comes first
        if record.state ~= "done" and record.state ~= "dead"
          and (not blocking or theirs < created_at(blocking.key)) then
          blocking = record
        end
      elseif theirs and theirs > mine and ran(record) then
        delivery.ctx.out_of_order = true
      end
    end
  end
  return blocking
end

-- The changes that make a taken delivery wait for `earlier`: failed, its attempt not counted,
-- due again when the earlier one is (or in a minute), its error saying what it waits for.
function _M.waiting_changes(delivery, earlier, now)
  local due = earlier.state == "running" and earlier.lease_until or earlier.next_at
  return {
    state = "failed",
    attempts = delivery.record.attempts - 1,
    next_at = math_max(now + 1, type(due) == "number" and due + 1 or now + RECHECK),
    errors = { { handler = _M.WAITING, message = "waits for " .. earlier.key } },
  }
end

-- After a delivery ended done or dead: the earliest waiting delivery of its booking that came
-- after it (its key; it runs the next one when it ends), and how many wait in all; nil, 0 when
-- none does.
function _M.next_follower(self, delivery)
  -- (its own record may be gone already: the memory journal keeps no done ones)
  local records = siblings(self, delivery)
  if not records or #records == 0 then
    return nil, 0
  end
  local mine = created_at(delivery.key)
  local first, first_at, waiting = nil, nil, 0
  for _, record in ipairs(records) do
    if is_waiting(record) then
      local theirs = created_at(record.key)
      if theirs and mine and theirs > mine then
        waiting = waiting + 1
        if not first_at or theirs < first_at then
          first, first_at = record.key, theirs
        end
      end
    end
  end
  return first, waiting
end

return _M
