-- jicoo.webhook: receive Jicoo webhook deliveries. The C core verifies, parses and validates
-- (through payload/init.lua, which picks the fastest way on this runtime); this facade gathers the
-- public API (docs/api.md).
local engine = require "jicoo.webhook.payload"
local router = require "jicoo.webhook.router"

local pairs = pairs

local _M = {
  _VERSION = require("jicoo.webhook.version"),
  parse = engine.parse,
  decode = engine.decode,
  time = engine.time,
  null = engine.null,
  EVENTS = engine.EVENTS,
  verify = engine.verify,
  sign = engine.sign,
  -- verify, then parse only what verified: one call for a receiver of its own (the router
  -- verifies and parses apart, to answer each failure as it should)
  construct = engine.construct,
  router = router.new,
}

-- Every limit with its default (docs/api.md, "Limits"); a copy, so changing it changes nothing.
_M.limits = {}
for name, value in pairs(engine.limits) do
  _M.limits[name] = value
end

return _M
