-- What LuaJIT's trace compiler gives up on, for the specs that guard the request path's shape:
-- trace aborts whose reason is NYI (not yet implemented: a bytecode, a built-in or a return it
-- cannot compile), located by file and line, and traces of ours given up because they ran into
-- code LuaJIT has blacklisted (after it gave up on it too often): one blacklisted function, such
-- as resty.core's ngx.var getter, takes every trace through it down, and the request path with
-- them. The unrolled route calls, counted options and
-- callable-table loggers of the request path exist because such aborts cost it its speed.
local jit_trace = {}

-- Starts collecting; returns a function that stops and gives the list of
-- { reason = text, where = "file:line" } for aborts at a source matching one of `sources`
-- (Lua patterns).
function jit_trace.collect(sources)
  local jit = require "jit"
  local jutil = require "jit.util"
  local vmdef = require "jit.vmdef"
  local aborts, starts = {}, {}
  local function location(func, pc)
    local info = jutil.funcinfo(func, pc)
    return info.loc or tostring(info.source)
  end
  local function on_trace(what, tr, func, pc, otr, oex)
    if what == "start" then
      starts[tr] = location(func, pc)
      return
    elseif what ~= "abort" then
      return
    end
    local reason = vmdef.traceerr[otr] or tostring(otr)
    if type(oex) == "number" and reason:find("%%d") then
      reason = reason:format(oex)
    elseif oex ~= nil and reason:find("%%s") then
      if type(oex) == "number" then
        oex = vmdef.ffnames[oex] or tostring(oex)
      end
      reason = reason:format(tostring(oex))
    end
    local where
    if reason:find("^NYI") then
      where = location(func, pc)
    elseif reason == "blacklisted" and starts[tr] then
      where = starts[tr]
      reason = reason .. " at " .. location(func, pc)
    else
      return
    end
    for _, pattern in ipairs(sources) do
      if where:find(pattern) then
        aborts[#aborts + 1] = { reason = reason, where = where }
        break
      end
    end
  end
  jit.attach(on_trace, "trace")
  jit_trace.aborts = aborts   -- so far (what an nginx location reads)
  return function()
    jit.attach(on_trace)
    return aborts
  end
end

function jit_trace.describe(aborts)
  local lines = {}
  for i, abort in ipairs(aborts) do
    lines[i] = abort.where .. ": " .. abort.reason
  end
  return table.concat(lines, "\n")
end

return jit_trace
