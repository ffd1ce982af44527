-- A guest booked: tell the team who, when, and what they answered on the booking form.
-- luacheck: read globals SCRIPT_DIR
local slack = dofile(SCRIPT_DIR .. "_slack.lua")
local post, utc = slack.post, slack.utc

return function(ev, ctx)
  local booking = ev.object
  local lines = {
    string.format("New booking: %s <%s>, %s, %d min (guest's time zone: %s)",
      booking.contact.name, booking.contact.email, utc(booking:starts_at()),
      math.floor(booking:duration() / 60), booking.timeZone),
  }
  for _, answer in ipairs(booking.answers) do
    lines[#lines + 1] = string.format("> %s %s", answer.question, table.concat(answer.content, ", "))
  end
  post(ctx, table.concat(lines, "\n"))
end
