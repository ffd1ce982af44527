-- Booking ledger: one JSON line per booking state Jicoo tells us about, appended to
-- <output_dir>/ledger.jsonl. Deliveries may arrive out of order: sort by event_at to rebuild a
-- booking's history. Run again for a delivery it already wrote (a crash after the write, before
-- the journal recorded it), it writes nothing.
local cjson = require "cjson.safe"

local function ledger_path(ctx)
  local dir = ctx:setting("output_dir", "JICOO_OUTPUT_DIR", ".")
  return dir .. "/ledger.jsonl"
end

-- Whether the ledger already has a line for this delivery key.
local function recorded(path, key)
  local file = io.open(path, "rb")
  if not file then
    return false
  end
  local text = file:read("*a")
  file:close()
  return text:find('"key":' .. assert(cjson.encode(key)), 1, true) ~= nil
end

return function(ev, ctx)
  local booking = ev.object
  local line = assert(cjson.encode({
    key = ctx.key,                -- the delivery's idempotency key
    event = ev.event,
    kind = ev:kind(),             -- nil (left out) for an event this library does not know
    actor = ev:actor(),
    event_at = ev.createdAt,
    received_at = ctx.received_at,
    uid = booking.uid,
    event_type = booking.eventTypeUid,
    status = booking.status,
    starts_at = booking.startedAt,
    ends_at = booking.endedAt,
    time_zone = booking.timeZone,
    guest_name = booking.contact.name,
    guest_email = booking.contact.email,
    cancelled_by = booking.cancelledBy,
    cancel_reason = booking.cancelReason,
  }))
  local path = ledger_path(ctx)
  if recorded(path, ctx.key) then
    ctx.log("ledger: %s already recorded", ctx.key)
    return
  end
  local file = assert(io.open(path, "a"))
  -- One write per line: concurrent writers append whole lines.
  assert(file:write(line .. "\n"))
  assert(file:close())
  ctx.log("ledger: %s %s (%s)", booking.uid, booking.status, ev.event)
end
