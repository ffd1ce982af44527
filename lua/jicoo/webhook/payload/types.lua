-- The typed tables' methods. The C core gives every parsed table its metatable (named after its
-- type, e.g. jicoo.webhook.Booking); payload/init.lua makes these the metatables' __index (and
-- the core's stand-in __index does, for code that loaded only the core).
local core = require "jicoo.webhook.core"

local time = core.time
local type = type
local ipairs = ipairs
local concat = table.concat
local gsub = string.gsub
local find = string.find
local match = string.match

local _M = {}

-- The known event names, in the schema's order, and what each one says.
local EVENTS = {}
local event_parts = {}
for _, field in ipairs(core.schema.Event.fields) do
  if field.name == "event" then
    for i, name in ipairs(field.values) do
      EVENTS[i] = name
      local actor, kind = match(name, "^(%a+)_(%a+)$")
      event_parts[name] = { actor = actor, kind = kind }
    end
  end
end
_M.EVENTS = EVENTS

local function epoch(value)
  if type(value) == "string" then
    return time(value)
  end
  return nil
end

-- "/" separates the key's parts and "%" escapes, so both are escaped inside a part. Plain
-- searches first: LuaJIT compiles them, not gsub, and most parts have neither.
local function key_part(s)
  if not find(s, "%", 1, true) and not find(s, "/", 1, true) then
    return s
  end
  return (gsub(s, "[%%/]", { ["%"] = "%25", ["/"] = "%2F" }))
end

local Event = {}

-- "booked", "rescheduled" or "cancelled"; nil for an event this version does not know.
function Event:kind()
  local parts = event_parts[self.event]
  return parts and parts.kind
end

-- "guest" or "host"; nil for an unknown event.
function Event:actor()
  local parts = event_parts[self.event]
  return parts and parts.actor
end

function Event:is_known()
  return event_parts[self.event] ~= nil
end

function Event:created_at()
  return epoch(self.createdAt)
end

-- The idempotency key. Jicoo sends no delivery id: a retry repeats the event name, the booking
-- and the envelope's createdAt, while two real changes of one booking differ in one of them.
function Event:key()
  return key_part(self.event) .. "/" .. key_part(self.object.uid) .. "/" .. self.createdAt
end

local Booking = {}

function Booking:starts_at()
  return epoch(self.startedAt)
end

function Booking:ends_at()
  return epoch(self.endedAt)
end

-- Seconds from start to end.
function Booking:duration()
  return epoch(self.endedAt) - epoch(self.startedAt)
end

function Booking:is_cancelled()
  return self.status == "cancel"
end

-- Epoch seconds of the cancellation, or nil.
function Booking:cancelled_at()
  return epoch(self.cancelledAt)
end

-- The content list the guest gave for `question`, or nil.
function Booking:answer(question)
  for _, answer in ipairs(self.answers) do
    if answer.question == question then
      return answer.content
    end
  end
  return nil
end

local Answer = {}

-- The content as one string, items joined by `separator` (default ", ").
function Answer:text(separator)
  return concat(self.content, separator or ", ")
end

local Contact = {}

-- "Name <email>", or whichever of the two is present.
function Contact:display()
  local name = type(self.name) == "string" and self.name ~= "" and self.name or nil
  local email = type(self.email) == "string" and self.email ~= "" and self.email or nil
  if name and email then
    return name .. " <" .. email .. ">"
  end
  return name or email
end

local Tracking = {}

-- The schema's UTM fields (every Tracking field named utm_*).
local UTM_FIELDS = {}
for _, field in ipairs(core.schema.Tracking.fields) do
  if find(field.name, "^utm_") then
    UTM_FIELDS[#UTM_FIELDS + 1] = field.name
  end
end

-- Whether the booking page visit carried any UTM parameter.
function Tracking:has_utm()
  for _, name in ipairs(UTM_FIELDS) do
    if type(self[name]) == "string" then
      return true
    end
  end
  return false
end

-- By type name; they become the typed tables' __index (payload/init.lua).
_M.methods = {
  Event = Event, Booking = Booking, Answer = Answer, Contact = Contact, Tracking = Tracking,
}

return _M
