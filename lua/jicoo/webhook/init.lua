-- jicoo.webhook: receive Jicoo webhook deliveries. The C core verifies, parses and validates;
-- this facade gathers the public API (README "API").
local core = require "jicoo.webhook.core"
local types = require "jicoo.webhook.types"

local verify = core.verify
local parse_signed = core.parse_signed
local require = require

local _M = {
  _VERSION = "0.1.0",
  parse = core.parse,
  decode = core.decode,
  time = core.time,
  null = core.null,
  EVENTS = types.EVENTS,
  verify = verify,
  sign = core.sign,
}

-- Every limit with its default (README "Limits"); a copy, so changing it changes nothing.
_M.limits = {}
for name, value in pairs(core.limits) do
  _M.limits[name] = value
end

-- The receiver's one call: verify, and parse only what verified.
function _M.construct(body, header, secrets, opts)
  local verify_opts
  if opts and (opts.tolerance ~= nil or opts.now ~= nil) then
    verify_opts = { tolerance = opts.tolerance, now = opts.now }
  end
  local ok, msg, code = verify(body, header, secrets, verify_opts)
  if not ok then
    return nil, msg, { code = code }
  end
  return parse_signed(body, opts)
end

function _M.router(opts)
  return require("jicoo.webhook.router").new(opts)
end

return _M
