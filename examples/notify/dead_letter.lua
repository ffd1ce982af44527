-- A delivery ran out of attempts: tell the team which booking, what failed, and the command
-- that retries it once the cause is fixed. Called once per dead letter; a failure here is
-- logged, not retried.
-- luacheck: read globals SCRIPT_DIR
local slack = dofile(SCRIPT_DIR .. "_slack.lua")

return function(dead, ctx)
  local reasons = {}
  for _, e in ipairs(dead.errors) do
    reasons[#reasons + 1] = string.format("> %s: %s", e.handler, e.message)
  end
  slack.post(ctx, string.format("Dead letter: %s for booking %s gave up after %d attempts.\n%s\n"
    .. "Once fixed: jicoo-webhook deliveries retry '%s'", dead.event, dead.uid, dead.attempts,
    table.concat(reasons, "\n"), dead.key))
end
