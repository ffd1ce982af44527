-- Run by spec/jit_spec.lua in a process of its own: `luajit spec/jit_probe.lua NAME BODY` loads
-- `function(t) BODY end` as the chunk NAME, calls it 3,000 times from a caller LuaJIT cannot
-- compile (it makes a closure), each call in a coroutine of its own, as nginx enters the router
-- from C, and prints what spec/jit_trace.lua reports for traces of that chunk, a line each.
--
-- Why a process of its own: run inside the whole busted suite, the probe's outcome depended on
-- what the specs before it had left in the process, and now and then it saw no trace of the chunk
-- at all. One way that happens: an object with a finalizer, collected while LuaJIT records a
-- trace, makes LuaJIT give up that trace for another reason ("error thrown or hook called during
-- recording"). Here nothing is left over, and the collector is stopped while the probe runs.
local name, body = assert(arg[1], "a chunk name"), assert(arg[2], "a function body")
package.path = (arg[0]:match("^(.*)/[^/]*$") or ".") .. "/?.lua;" .. package.path
local jit_trace = require "jit_trace"

collectgarbage()
collectgarbage("stop")
local stop = jit_trace.collect({ "^" .. name .. ":" })
local probed = assert(loadstring("local mt = {} return function(t) " .. body .. " end", "=" .. name))()
local caller = assert(loadstring("local f = ... return function(i) local g = function()"
  .. " return i end local t = f({ g }) return t end", "=caller"))(probed)
for i = 1, 3000 do
  coroutine.wrap(caller)(i)
end
local report = jit_trace.describe(stop())
collectgarbage("restart")
io.write(report, report ~= "" and "\n" or "")
