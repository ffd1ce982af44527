-- The request path stays compiled by LuaJIT: router:handle on the memory journal (handlers that
-- log, a duplicate, an unknown key kept), parse through the FFI builders, and the answers, run
-- long enough for every trace to be recorded, must meet no trace abort for a construct LuaJIT
-- does not compile (NYI) in the router, the answers, the context, the memory journal or the
-- builders. (The nginx adapter's own check runs inside nginx: spec/openresty_spec.lua.)
if not rawget(_G, "jit") then
  describe("LuaJIT traces", function()
    pending("LuaJIT only")
  end)
  return
end

local webhook = require "jicoo.webhook"
local support = require "support"
local runner = require "cli_runner"
local jit_trace = require "jit_trace"

local SOURCES = { "router/init%.lua", "router/answer%.lua", "router/context%.lua",
  "payload/init%.lua", "payload/tape%.lua", "journal/memory%.lua", "journal/init%.lua",
  "journal/claims/memory%.lua", "payload/json%.lua", "payload/types%.lua", "journal/token%.lua",
  "^jicoo%.webhook%.payload%.tape builders" }

local function fixture(folder, name)
  return support.read(support.fixtures .. "/" .. folder .. "/" .. name)
end

describe("LuaJIT traces of the request path", function()
  it("meet no NYI abort in the router, the answers, the journal or the builders", function()
    local bodies = {}
    for _, entry in ipairs({ { "valid", "guest_cancelled.json" }, { "valid", "host_cancelled.json" },
        { "lenient", "drift.json" }, { "lenient", "portal_guest_booked.json" } }) do
      bodies[#bodies + 1] = fixture(entry[1], entry[2])
    end
    local r = webhook.router({ verify = false, log = function() end })
    local handled = 0
    r:on("*", function(ev, ctx)
      handled = handled + 1
      ctx.log("%s %s", ev.event, ev.object.uid)
    end)
    local kinds = {}
    r:on("guest_cancelled", function(ev)
      -- not a tail call: a function LuaJIT traces cannot return straight into xpcall's frame
      local kind = ev:kind()
      kinds[kind] = true
    end)

    local stop = jit_trace.collect(SOURCES)
    for i = 1, 3000 do
      -- a delivery of its own: its booking uid made unique
      local body = bodies[i % #bodies + 1]:gsub('"uid":%s*"([^"]*)"', '"uid":"%1-' .. i .. '"', 1)
      local res = r:handle(body, { ["content-type"] = "application/json" })
      assert(res.status == 200, res.body)
      local copy = r:handle(body)    -- a copy of the one just handled: a duplicate
      assert(copy.status == 200 and copy.duplicate, copy.body)
      assert(webhook.parse(body))
    end
    local aborts = stop()
    assert.is_true(handled >= 3000)
    assert.is_true(kinds.cancelled)
    assert.are.same({}, aborts, jit_trace.describe(aborts))
  end)

  -- What the check above and the one inside nginx would see if the request path ran into code
  -- LuaJIT has given up on (as it did through resty.core's ngx.var getter): a helper it cannot
  -- compile (a closure made inside), hot enough to be blacklisted, then called from a loop.
  it("would report a trace of ours that runs into blacklisted code", function()
    local stop = jit_trace.collect({ "^ours:" })
    local helper = assert(loadstring("local n = 0 return function(x) local f = function() return x end"
      .. " n = n + f() return n end", "=helper"))()
    local warm = assert(loadstring("local h = ... return function() return h(1) end", "=warm"))(helper)
    for _ = 1, 200000 do
      warm()
    end
    local ours = assert(loadstring("local h = ... return function() local s = 0 for i = 1, 100000 do"
      .. " s = s + h(i) end return s end", "=ours"))(helper)
    ours()
    local aborts = stop()
    assert.is_true(#aborts > 0, "no abort reported")
    assert.matches("^ours:1: blacklisted at helper:1$", jit_trace.describe({ aborts[1] }))
  end)

  -- As inside nginx, where the router is entered from C: a function of ours called from code
  -- LuaJIT does not compile (here a caller that makes a closure) is compiled from its own
  -- entry, and a tail call of a built-in at its end is a return LuaJIT gives up on. The same
  -- function keeping the result in a local first is compiled.
  it("would report a trace from a function's entry given up at a tail call of a built-in", function()
    local function run(name, body)
      local out, ok = support.run(support.quote(runner.interpreter()) .. " "
        .. support.quote(support.root .. "/spec/jit_probe.lua") .. " " .. support.quote(name) .. " "
        .. support.quote(body) .. " 2>&1")
      assert(ok, out)
      return out
    end
    local reported = run("tailcalled", "return setmetatable(t, mt)")
    local expected = "tailcalled:1: leaving loop in root trace at setmetatable"
    local found = false
    for line in reported:gmatch("[^\n]+") do
      found = found or line == expected
    end
    assert.is_true(found, "expected " .. expected .. ", got: " .. reported)
    assert.are.equal("", run("kept", "local r = setmetatable(t, mt) return r"))
  end)
end)
