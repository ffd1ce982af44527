-- The host cancelled: tell the team, and ask someone to follow up with the guest.
-- luacheck: read globals SCRIPT_DIR
local slack = dofile(SCRIPT_DIR .. "_slack.lua")
local post, utc = slack.post, slack.utc

return function(ev, ctx)
  local booking = ev.object
  post(ctx, string.format("Cancelled by the host: the meeting with %s <%s> at %s is off"
    .. " (reason: %s). Please follow up with the guest.",
    booking.contact.name, booking.contact.email, utc(booking:starts_at()),
    booking.cancelReason or "(none given)"))
end
