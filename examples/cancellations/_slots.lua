-- Shared by the cancellation scripts (the loader skips files starting with "_"): the slot
-- table, kept in <output_dir>/slots.json as { [booking uid] = slot }, and the cancellation log.
-- Loaded with dofile(SCRIPT_DIR .. "_slots.lua"); keep it free of globals.
local cjson = require "cjson.safe"

local _M = {}

local function output_dir(ctx)
  return ctx:setting("output_dir", "JICOO_OUTPUT_DIR", ".")
end

function _M.load(ctx)
  local file = io.open(output_dir(ctx) .. "/slots.json", "rb")
  if not file then
    return {}
  end
  local text = file:read("*a")
  file:close()
  return assert(cjson.decode(text), "slots.json is not valid JSON")
end

-- Writes a new file and renames it over the old one, so a crash never leaves half a table.
function _M.save(ctx, slots)
  local path = output_dir(ctx) .. "/slots.json"
  local file = assert(io.open(path .. ".tmp", "wb"))
  assert(file:write(assert(cjson.encode(slots))))
  assert(file:close())
  assert(os.rename(path .. ".tmp", path))
end

-- Whether cancellations.jsonl already has the record of this delivery key.
local function recorded(ctx, key)
  local file = io.open(output_dir(ctx) .. "/cancellations.jsonl", "rb")
  if not file then
    return false
  end
  local text = file:read("*a")
  file:close()
  return text:find('"key":' .. assert(cjson.encode(key)), 1, true) ~= nil
end

-- Frees the booking's slot and records who cancelled and why in cancellations.jsonl.
-- `extra` adds fields to the record (e.g. a follow-up for host cancellations). Run again for
-- the same delivery (a crash before the journal recorded it), it changes nothing: the freed
-- slot remembers the delivery that freed it and whether it was held.
function _M.cancel(ev, ctx, extra)
  local booking = ev.object
  local slots = _M.load(ctx)
  local slot = slots[booking.uid]
  local was_held
  if slot and slot.freed_key == ctx.key then
    was_held = slot.was_held
  else
    was_held = slot ~= nil and slot.state == "held"
    -- A cancellation that overtakes its booking leaves a "freed" slot behind, so the late
    -- booking delivery does not hold it again.
    slots[booking.uid] = {
      state = "freed",
      starts_at = booking.startedAt,
      ends_at = booking.endedAt,
      freed_by = ev.event,
      freed_key = ctx.key,
      was_held = was_held,
    }
    _M.save(ctx, slots)
  end
  if recorded(ctx, ctx.key) then
    ctx.log("the cancellation %s is already recorded", ctx.key)
    return
  end

  local record = {
    key = ctx.key,
    uid = booking.uid,
    event = ev.event,
    cancelled_by = booking.cancelledBy or ev:actor(),
    reason = booking.cancelReason,
    cancelled_at = booking.cancelledAt or ev.createdAt,
    starts_at = booking.startedAt,
    guest_email = booking.contact.email,
    slot_was_held = was_held,
  }
  for name, value in pairs(extra or {}) do
    record[name] = value
  end
  local file = assert(io.open(output_dir(ctx) .. "/cancellations.jsonl", "a"))
  assert(file:write(assert(cjson.encode(record)) .. "\n"))
  assert(file:close())
  ctx.log("freed the slot of %s (%s, cancelled by %s: %s)", booking.uid,
    was_held and "was held" or "was not held", tostring(record.cancelled_by),
    tostring(record.reason or "no reason given"))
end

return _M
