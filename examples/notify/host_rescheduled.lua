-- The host moved the meeting: tell the team, and remind them the guest was told by Jicoo.
-- luacheck: read globals SCRIPT_DIR
local slack = dofile(SCRIPT_DIR .. "_slack.lua")
local post, utc = slack.post, slack.utc

return function(ev, ctx)
  local booking = ev.object
  post(ctx, string.format("Rescheduled by the host: the meeting with %s <%s> is now at %s",
    booking.contact.name, booking.contact.email, utc(booking:starts_at())))
end
