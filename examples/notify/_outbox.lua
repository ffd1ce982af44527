-- Shared by the notify scripts (the loader skips files starting with "_"): the outbox writer
-- and time formatting. Loaded with dofile(SCRIPT_DIR .. "_outbox.lua"); keep it free of globals.
local cjson = require "cjson.safe"

local _M = {}

-- A setting from ctx.config (jicoo-webhook run --set NAME=VALUE), else the environment;
-- empty counts as unset.
local function setting(ctx, name, env_name, default)
  local value = ctx.config[name]
  if value == nil or value == "" then
    value = os.getenv(env_name)
  end
  if value == nil or value == "" then
    value = default
  end
  return value
end

-- Writes the chat message to <output_dir>/outbox.jsonl (a Slack-style {channel, text} payload)
-- instead of posting it; a sender process, or a person reviewing, takes it from there.
function _M.post(ctx, text)
  local channel = setting(ctx, "channel", "JICOO_NOTIFY_CHANNEL", "#bookings")
  local dir = setting(ctx, "output_dir", "JICOO_OUTPUT_DIR", ".")
  local file = assert(io.open(dir .. "/outbox.jsonl", "a"))
  assert(file:write(assert(cjson.encode({ channel = channel, text = text })) .. "\n"))
  assert(file:close())
  ctx.log("would post to %s: %s", channel, text)
end

function _M.utc(seconds)
  return os.date("!%Y-%m-%d %H:%M UTC", math.floor(seconds))
end

return _M
