-- The guest cancelled: tell the team, with the reason the guest gave.
-- luacheck: read globals SCRIPT_DIR
local slack = dofile(SCRIPT_DIR .. "_slack.lua")
local post, utc = slack.post, slack.utc

return function(ev, ctx)
  local booking = ev.object
  post(ctx, string.format("Cancelled by the guest: %s <%s> cancelled %s. Reason: %s",
    booking.contact.name, booking.contact.email, utc(booking:starts_at()),
    booking.cancelReason or "(none given)"))
end
