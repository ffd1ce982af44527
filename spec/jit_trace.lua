-- What LuaJIT's trace compiler gives up on, for the specs that guard the request path's shape:
-- trace aborts whose reason is NYI (not yet implemented: a bytecode or a built-in it cannot
-- compile), located by file and line, but for "return to lower frame" (a side trace that follows
-- the request's returns out towards nginx's C frames, which is where every request ends, and which
-- LuaJIT gives up on by chance of where the side trace began); traces of ours given up because they
-- ran into code LuaJIT has blacklisted (after it gave up on it too often): one blacklisted
-- function, such as resty.core's ngx.var getter, takes every trace through it down, and the request
-- path with them; and traces begun at the entry of one of our functions that LuaJIT gives up when
-- the function ends in a tail call of a built-in (`return setmetatable(...)`, `return xpcall(...)`:
-- "leaving loop in root trace"): inside nginx each request enters the router from C, with no loop
-- of ours around it, so its functions are compiled from their own entries, and after a few such
-- aborts LuaJIT blacklists the function, which then runs in the interpreter for the worker's life.
-- (A loop of a few turns met from a function's entry, "inner loop in root trace", costs the same,
-- but LuaJIT also gives up on it at random while a loop warms up: the request path keeps none, and
-- this does not look for them.) With `too_long`, also traces of ours given up as too long: inside
-- nginx a trace that runs on from the parse or the dispatch through the whole request is more than
-- LuaJIT takes in one, and that path goes back to the interpreter (the router ends its traces after
-- the parse and around the handlers). In a plain loop the traces run on through the loop's own
-- code, whose length is the loop's. The unrolled route calls, counted options and callable-table
-- loggers of the request path exist because such aborts cost it its speed.
local jit_trace = {}

-- Starts collecting; returns a function that stops and gives the list of
-- { reason = text, where = "file:line" } for aborts at a source matching one of `sources`
-- (Lua patterns); `too_long`: traces given up as too long are aborts too.
function jit_trace.collect(sources, too_long)
  local jit = require "jit"
  local jutil = require "jit.util"
  local vmdef = require "jit.vmdef"
  local aborts, starts = {}, {}
  -- "path/file.lua:line" (funcinfo's own `loc` has the file's name only, which the patterns
  -- by folder never matched), a built-in's name, or the chunk's name.
  local function location(func, pc)
    local info = jutil.funcinfo(func, pc)
    if info.source and info.currentline then
      return info.source:gsub("^[@=]", "") .. ":" .. info.currentline
    end
    return info.ffid and vmdef.ffnames[info.ffid] or tostring(info.loc or info.source)
  end
  local function on_trace(what, tr, func, pc, otr, oex)
    if what == "start" then
      starts[tr] = { where = location(func, pc), entry = pc == 0 }
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
    local start = starts[tr]
    if reason:find("^NYI") and reason ~= "NYI: return to lower frame" then
      where = location(func, pc)
    elseif start and (reason == "blacklisted" or (too_long and reason == "trace too long")
        or (start.entry and reason == "leaving loop in root trace")) then
      where = start.where
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
