-- The payload's calls: the C core's, as this runtime runs them best, on typed tables. On LuaJIT
-- the parse goes through the FFI (tape.lua), elsewhere through the classic C API; both give the
-- same results. The facade and the router take their calls from here. The typed tables' methods
-- (types.lua's) are put in place here, at once, so that the request path never meets the
-- core's stand-in __index (which puts them in place for code that loaded only the core).
local core = require "jicoo.webhook.core"
local types = require "jicoo.webhook.payload.types"

local pairs = pairs
local pcall = pcall
local rawget = rawget
local require = require

for name, methods in pairs(types.methods) do
  core.metatables[name].__index = methods
end

-- verify is the C API's everywhere: through the FFI it saved 0.05 us a call.
local parse, construct = core.parse, core.construct
if rawget(_G, "jit") and pcall(require, "ffi") then
  local luajit = require "jicoo.webhook.payload.tape"
  parse = luajit.parse
  construct = luajit.construct
end

return {
  parse = parse,
  verify = core.verify,
  construct = construct,
  decode = core.decode,
  time = core.time,
  sign = core.sign,
  null = core.null,
  limits = core.limits,
  EVENTS = types.EVENTS,
}
