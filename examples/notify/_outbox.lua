-- Shared by the notify scripts (the loader skips files starting with "_"): the outbox writer
-- and time formatting. Loaded with dofile(SCRIPT_DIR .. "_outbox.lua"); keep it free of globals.
local cjson = require "cjson.safe"

local _M = {}

-- Writes the chat message to <output_dir>/outbox.jsonl (a Slack-style {channel, text} payload)
-- instead of posting it; a sender process, or a person reviewing, takes it from there.
function _M.post(ctx, text)
  local channel = ctx:setting("channel", "JICOO_NOTIFY_CHANNEL", "#bookings")
  local dir = ctx:setting("output_dir", "JICOO_OUTPUT_DIR", ".")
  local file = assert(io.open(dir .. "/outbox.jsonl", "a"))
  assert(file:write(assert(cjson.encode({ channel = channel, text = text })) .. "\n"))
  assert(file:close())
  ctx.log("would post to %s: %s", channel, text)
end

function _M.utc(seconds)
  return os.date("!%Y-%m-%d %H:%M UTC", math.floor(seconds))
end

return _M
