-- Holds a slot (a room, a consultant's calendar) for every live booking and moves it when the
-- booking is rescheduled; guest_cancelled.lua and host_cancelled.lua free it.
-- luacheck: read globals SCRIPT_DIR
local slots_file = dofile(SCRIPT_DIR .. "_slots.lua")

return function(ev, ctx)
  local booking = ev.object
  if booking.status ~= "open" then
    return
  end
  if ctx.out_of_order then
    -- The router runs a booking's changes in order; this one came after a later one ran.
    ctx.log("not changing %s: a later change of it came first", booking.uid)
    return
  end
  local slots = slots_file.load(ctx)
  local slot = slots[booking.uid]
  if slot and slot.state == "freed" then
    -- With the order off (or a journal that forgot the cancellation): it came first.
    ctx.log("not holding %s: already cancelled", booking.uid)
    return
  end
  slots[booking.uid] = {
    state = "held",
    starts_at = booking.startedAt,
    ends_at = booking.endedAt,
    event_type = booking.eventTypeUid,
    guest_email = booking.contact.email,
  }
  slots_file.save(ctx, slots)
  ctx.log("holding %s from %s to %s", booking.uid, booking.startedAt, booking.endedAt)
end
