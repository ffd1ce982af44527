-- jicoo.webhook: receive Jicoo webhook deliveries. The C core verifies, parses and validates;
-- this facade gathers the public API (README "API").
local core = require "jicoo.webhook.core"
local types = require "jicoo.webhook.types"

local require = require

-- On LuaJIT the common calls go through the FFI and the tables are built by JIT-compiled Lua
-- (luajit.lua); the classic C API serves everywhere else. Both give the same results.
local parse, verify, construct = core.parse, core.verify, core.construct
if rawget(_G, "jit") and pcall(require, "ffi") then
  local luajit = require "jicoo.webhook.luajit"
  parse, verify, construct = luajit.parse, luajit.verify, luajit.construct
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
  -- the receiver's one call: verify, and parse only what verified
  construct = construct,
}

-- Every limit with its default (README "Limits"); a copy, so changing it changes nothing.
_M.limits = {}
for name, value in pairs(core.limits) do
  _M.limits[name] = value
end

function _M.router(opts)
  return require("jicoo.webhook.router").new(opts)
end

return _M
