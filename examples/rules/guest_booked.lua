-- A booking rule enforced through Jicoo's API: a booking made from an e-mail domain on the
-- blocked list is cancelled, with a reason the guest sees. Dry run by default: it only logs
-- what it would cancel until the setting dry_run is "0".
-- Settings: blocked_domains (comma-separated, else $JICOO_BLOCKED_DOMAINS), dry_run (else
-- $JICOO_RULES_DRY_RUN, default "1"), cancel_reason, jicoo_api_key / $JICOO_API_KEY,
-- jicoo_api_url / $JICOO_API_URL.
local api = require "jicoo.api"

local function blocked_domains(ctx)
  local list = {}
  for domain in (ctx:setting("blocked_domains", "JICOO_BLOCKED_DOMAINS") or ""):gmatch("[^,%s]+") do
    list[domain:lower()] = true
  end
  return list
end

return function(ev, ctx)
  local email = ev.object.contact.email or ""
  local domain = (email:match("@([^@]+)$") or ""):lower()
  if not blocked_domains(ctx)[domain] then
    return
  end
  local uid = ev.object.uid
  local reason = ctx:setting("cancel_reason", nil,
    "Bookings from this address are not accepted. Please contact us by e-mail.")
  if ctx:setting("dry_run", "JICOO_RULES_DRY_RUN", "1") ~= "0" then
    ctx.log("dry run: would cancel %s (%s is blocked)", uid, domain)
    return
  end
  local jicoo = api.client({
    http = ctx.http,
    key = ctx:setting("jicoo_api_key", "JICOO_API_KEY"),
    base_url = ctx:setting("jicoo_api_url", "JICOO_API_URL"),
    log = ctx.log.warn,
  })
  -- Already cancelled (a retry after the cancel went through, or someone was quicker): done.
  local booking = assert(jicoo:booking(uid))
  if booking.status == "cancel" then
    ctx.log("%s is already cancelled", uid)
    return
  end
  assert(jicoo:cancel(uid, reason))
  ctx.log("cancelled %s: %s is blocked", uid, domain)
end
