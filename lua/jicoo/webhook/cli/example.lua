-- jicoo-webhook example EVENT: a realistic delivery of each of Jicoo's five events, valid at the
-- strict level (every key present; the cancellation fields null but on cancelled ones), to try a
-- receiver without waiting for Jicoo. Written in Jicoo's key order, as its examples show them.
local string_format = string.format
local os_date = os.date
local math_floor = math.floor

local json = require "jicoo.webhook.payload.json"

local _M = {}

local HOUR, DAY = 3600, 86400
-- The time the deliveries are stamped with unless --now asks for the clock: a fixed one, so the
-- same command prints the same bytes (a signature made of them stays valid).
local FIXED = 1772409600   -- 2026-03-02T00:00:00Z

local EVENTS = {
  guest_booked = { status = "open" },
  guest_rescheduled = { status = "open", moved = true },
  host_rescheduled = { status = "open", moved = true },
  guest_cancelled = { status = "cancel", by = "guest",
    reason = "Something came up at work, sorry. I will book again next week." },
  host_cancelled = { status = "cancel", by = "host",
    reason = "The consultant is ill; please pick a new time." },
}

_M.EVENTS = { "guest_booked", "guest_rescheduled", "host_rescheduled", "guest_cancelled",
  "host_cancelled" }

local function time_text(t)
  return os_date("!%Y-%m-%dT%H:%M:%S", math_floor(t)) .. ".000Z"
end

local function text(value)
  if value == nil then
    return "null"
  end
  return json.encode_string(value)
end

-- The delivery of `event` (one of _M.EVENTS) as JSON text, stamped at `now` (Unix seconds;
-- default: a fixed time), or nil when Jicoo sends no such event.
function _M.delivery(event, now)
  local kind = EVENTS[event]
  if not kind then
    return nil
  end
  now = now or FIXED
  local booked_at = now - 2 * DAY
  local starts = booked_at + 7 * DAY + 10 * HOUR - (booked_at % HOUR)
  if kind.moved then
    starts = starts + DAY
  end
  local cancelled_at = kind.by and now - 1 or nil
  return string_format([[
{
  "createdAt": %s,
  "event": %s,
  "object": {
    "status": %s,
    "timeZone": "Asia/Tokyo",
    "startedAt": %s,
    "endedAt": %s,
    "createdAt": %s,
    "updatedAt": %s,
    "uid": %s,
    "eventTypeUid": "et_intro30",
    "contact": {
      "email": "hanako.sato@example.jp",
      "name": "Hanako Sato"
    },
    "answers": [
      {
        "question": "What would you like to discuss?",
        "content": [
          "Pricing",
          "A demo"
        ]
      }
    ],
    "tracking": {
      "utm_campaign": "spring_webinar",
      "utm_source": "newsletter",
      "utm_medium": "email",
      "utm_content": null,
      "utm_term": null
    },
    "cancelReason": %s,
    "cancelledAt": %s,
    "cancelledBy": %s
  }
}
]], text(time_text(now)), text(event), text(kind.status), text(time_text(starts)),
    text(time_text(starts + HOUR / 2)), text(time_text(booked_at)),
    text(time_text(kind.status == "open" and not kind.moved and booked_at or now - 1)),
    text(string_format("bk_example_%d", booked_at)), text(kind.reason),
    text(cancelled_at and time_text(cancelled_at)), text(kind.by))
end

return _M
