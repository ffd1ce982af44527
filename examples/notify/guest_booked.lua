-- A guest booked: tell the team who, when, and what they answered on the booking form.
local cjson = require "cjson.safe"

-- Writes the chat message to <output_dir>/outbox.jsonl (a Slack-style {channel, text} payload)
-- instead of posting it; a sender process or a reviewer takes it from there.
local function post(ctx, text)
  local channel = ctx.config.channel or os.getenv("JICOO_NOTIFY_CHANNEL") or "#bookings"
  local dir = ctx.config.output_dir or os.getenv("JICOO_OUTPUT_DIR") or "."
  local file = assert(io.open(dir .. "/outbox.jsonl", "a"))
  assert(file:write(assert(cjson.encode({ channel = channel, text = text })) .. "\n"))
  assert(file:close())
  ctx.log("would post to %s: %s", channel, text)
end

local function utc(seconds)
  return os.date("!%Y-%m-%d %H:%M UTC", math.floor(seconds))
end

return function(ev)
  local booking = ev.object
  local lines = {
    string.format("New booking: %s <%s>, %s for %d min (guest's zone %s)",
      booking.contact.name, booking.contact.email, utc(booking:starts_at()),
      math.floor(booking:duration() / 60), booking.timeZone),
  }
  for _, answer in ipairs(booking.answers) do
    lines[#lines + 1] = string.format("> %s %s", answer.question, table.concat(answer.content, ", "))
  end
  return post(select(2, ...) or ev.ctx, table.concat(lines, "\n"))
end
