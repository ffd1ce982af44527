-- The guest moved the meeting: tell the team the new time.
-- luacheck: read globals SCRIPT_DIR
local slack = dofile(SCRIPT_DIR .. "_slack.lua")
local post, utc = slack.post, slack.utc

return function(ev, ctx)
  local booking = ev.object
  post(ctx, string.format("Rescheduled by the guest: %s <%s> moved their meeting to %s",
    booking.contact.name, booking.contact.email, utc(booking:starts_at())))
end
