-- The guest moved the meeting: tell the team the new time.
-- luacheck: read globals SCRIPT_DIR
local outbox = dofile(SCRIPT_DIR .. "_outbox.lua")
local post, utc = outbox.post, outbox.utc

return function(ev, ctx)
  local booking = ev.object
  post(ctx, string.format("Rescheduled by the guest: %s <%s> moved their meeting to %s",
    booking.contact.name, booking.contact.email, utc(booking:starts_at())))
end
