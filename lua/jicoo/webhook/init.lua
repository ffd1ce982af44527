-- jicoo.webhook: receive Jicoo webhook deliveries. The C core verifies, parses and validates;
-- this facade gathers the public API (README "API").
local core = require "jicoo.webhook.core"
local types = require "jicoo.webhook.types"

local core_verify = core.verify
local require = require

-- On LuaJIT the common calls go through the FFI and the tables are built by JIT-compiled Lua
-- (luajit.lua); the classic C API serves everywhere else. Both give the same results.
local parse, verify, parse_signed, construct_fast = core.parse, core_verify, core.parse_signed, nil
if rawget(_G, "jit") and pcall(require, "ffi") then
  local luajit = require "jicoo.webhook.luajit"
  parse, verify, construct_fast = luajit.parse, luajit.verify, luajit.construct_fast
end

local _M = {
  _VERSION = "0.1.0",
  parse = parse,
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
  if construct_fast then
    local event, failed = construct_fast(body, header, secrets, opts)
    if event then
      return event
    elseif failed == "parse" then
      return parse_signed(body, opts)
    end -- not verified, or not for the fast path: below says why
  end
  local verify_opts
  if opts and (opts.tolerance ~= nil or opts.now ~= nil) then
    verify_opts = { tolerance = opts.tolerance, now = opts.now }
  end
  local ok, msg, code = core_verify(body, header, secrets, verify_opts)
  if not ok then
    return nil, msg, { code = code }
  end
  return parse_signed(body, opts)
end

function _M.router(opts)
  return require("jicoo.webhook.router").new(opts)
end

return _M
