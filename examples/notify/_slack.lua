-- Shared by the notify scripts (the loader skips files starting with "_"): posting to a
-- Slack-compatible incoming webhook, and time formatting. Loaded with
-- dofile(SCRIPT_DIR .. "_slack.lua"); keep it free of globals.
local cjson = require "cjson.safe"

local _M = {}

-- Posts {"text": ...} (and "channel" when one is configured) to the incoming webhook at
-- ctx.config.slack_webhook_url or $JICOO_SLACK_WEBHOOK_URL, through ctx.http. An answer that
-- is not a 2xx raises, so the router retries this handler alone, later. Without a URL it only
-- logs what it would post (a dry run).
function _M.post(ctx, text)
  local url = ctx:setting("slack_webhook_url", "JICOO_SLACK_WEBHOOK_URL")
  local channel = ctx:setting("channel", "JICOO_NOTIFY_CHANNEL")
  if not url then
    ctx.log("would post to %s: %s", channel or "#bookings", text)
    return
  end
  local res, err = ctx.http({
    method = "POST",
    url = url,
    headers = { ["Content-Type"] = "application/json" },
    body = assert(cjson.encode({ text = text, channel = channel })),
    timeout = 5000,
  })
  if not res then
    error("posting to Slack: " .. err, 0)
  elseif res.status < 200 or res.status > 299 then
    error("posting to Slack: answered " .. res.status .. " " .. res.body:sub(1, 200), 0)
  end
  ctx.log("posted to %s: %s", channel or "Slack", text:match("^[^\n]*"))
end

function _M.utc(seconds)
  return os.date("!%Y-%m-%d %H:%M UTC", math.floor(seconds))
end

return _M
