-- Deliveries this program built rather than received: `jicoo-webhook reconcile --deliver` makes
-- one from Jicoo's API for each booking change the receiver never got. router:deliver takes
-- its body past the signature check (nobody signed it) but through everything else a webhook
-- meets: the size limit, the router's own parse (its level), the journal's claim (exactly
-- once), the handlers; the scheduler retries it like any other.
--
-- Its key is "reconcile/" .. ev:key(). A received delivery's key, event/uid/createdAt, has
-- exactly two "/" (ev:key() escapes them in the event and uid, and createdAt is an RFC 3339
-- date-time), this one three: no signed delivery can take or answer for a reconciled one's
-- record, nor the reverse. The HTTP path (router:accept) only ever makes the two-"/" form.
local type = type
local error = error
local select = select
local tostring = tostring
local string_gsub = string.gsub
local string_sub = string.sub

local answer = require "jicoo.webhook.router.answer"
local engine = require "jicoo.webhook.payload"

local _M = {}

_M.SOURCE = "reconcile"
_M.KEY_PREFIX = "reconcile/"

-- Whether a journal's key is a reconciled delivery's (scheduler.lua sets ctx.source by it).
function _M.is_key(key)
  return type(key) == "string" and string_sub(key, 1, #_M.KEY_PREFIX) == _M.KEY_PREFIX
    and select(2, string_gsub(key, "/", "")) == 3
end

-- The router's own helpers (router/init.lua), found once both modules are loaded.
local internals
local function router_internals()
  internals = internals or require("jicoo.webhook.router").internals
  return internals
end

-- router:deliver(body): a delivery built by this program (a reconciled booking change), never
-- one received. Gives the result router:handle gives ({ status, body, event, errors, key,
-- handlers, duplicate }): a copy already journaled is a duplicate and runs nothing.
function _M.deliver(self, body)
  if type(body) ~= "string" then
    error("router:deliver: body must be a string, got " .. type(body), 2)
  end
  if #body > self.max_size then
    return answer.too_large(#body, self.max_size)
  end
  local ev, msg, info = engine.parse(body, self.parse_opts)
  if not ev then
    return answer.invalid_payload(msg, info)
  end
  local helpers = router_internals()
  local now = helpers.current_time(self)
  local key = _M.KEY_PREFIX .. ev:key()
  local outcome, record, code = helpers.acquire(self, key, now, {
    key = key, event = ev.event, uid = ev.object.uid, body = body, received_at = now,
  }, not self.journal.durable)
  local res
  if outcome == "new" or outcome == "taken" then
    local ctx = helpers.new_context(self, key, body, {}, record.received_at, record.attempts)
    ctx.source = _M.SOURCE
    return self:dispatch({ event = ev, key = key, record = record, ctx = ctx, alone = code })
  elseif outcome == nil then
    local message = "journal: cannot record " .. key .. ": " .. tostring(record)
    self.log("error", message)
    res = code == "full" and answer.journal_full(ev, tostring(record), 60)
      or answer.journal_failed(ev, message)
  else
    local state = outcome == "busy" and "running" or outcome == "waiting" and "failed" or outcome
    self.log("info", "duplicate delivery " .. key .. " (" .. state .. "): handlers not run")
    res = answer.duplicate(ev, state)
  end
  res.key = key
  return res
end

return _M
