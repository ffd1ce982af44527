-- The router's handlers: their order, ctx (settings, headers, body, time, key, log, config),
-- the answer's JSON whatever it holds, the misuse that raises; and handler scripts loaded from a
-- folder (<event>.lua, any.lua, helpers), each with globals of its own, broken ones reported by
-- file. What it answers: router_answers_spec.lua; exactly once and failures: router_once_spec.lua;
-- on a journal: router_journal_spec.lua.
local webhook = require "jicoo.webhook"
local support = require "support"
local shared = require "router_shared"

local NOW, fixture, signed = shared.NOW, shared.fixture, shared.signed
local new_router, recorder, decode = shared.new_router, shared.recorder, shared.decode
local BOOKED = shared.BOOKED

describe("router: handlers and ctx", function()
  it("runs handlers in registration order, named and '*' alike", function()
    local r = new_router()
    local calls = recorder(r, { "*", "guest_booked", "host_cancelled", "*", "guest_booked",
      "host_cancelled", "*" })
    r:handle(BOOKED, signed(BOOKED))
    assert.are.same({ "*:guest_booked", "guest_booked:guest_booked", "*:guest_booked",
      "guest_booked:guest_booked", "*:guest_booked" }, calls)
  end)

  it("reads a handler's setting from ctx.config, else the environment, else the default", function()
    local r = new_router({ config = { channel = "#team", empty = "" } })
    local got
    r:on("guest_booked", function(_, ctx)
      got = {
        ctx:setting("channel", "HOME", "#default"),        -- config wins over the environment
        ctx:setting("empty", "HOME", "#default"),          -- an empty value counts as unset
        ctx:setting("missing", "JICOO_SURELY_UNSET_VARIABLE", "#default"),
        ctx:setting("missing", nil, "#default"),
      }
    end)
    assert.are.equal(200, r:handle(BOOKED, signed(BOOKED)).status)
    assert.are.same({ "#team", os.getenv("HOME"), "#default", "#default" }, got)
  end)

  it("gives handlers the parsed event and a ctx with headers, body, time, key, log, config", function()
    local r, lines = new_router({ config = { channel = "#team" } })
    local got
    r:on("guest_booked", function(ev, ctx)
      got = { ev = ev, ctx = ctx }
      ctx.log("booked %s", ev.object.uid)
      ctx.log.warn("careful")
      ctx.log("100% literal")
    end)
    local headers = signed(BOOKED)
    r:handle(BOOKED, headers)
    assert.are.equal("ACDADADASS", got.ev.object.uid)
    assert.are.equal("John Doe", got.ev.object.contact.name)
    assert.are.equal(headers, got.ctx.headers)
    assert.are.equal(BOOKED, got.ctx.body)
    assert.are.equal(NOW, got.ctx.received_at)
    assert.are.equal(got.ev:key(), got.ctx.key)
    assert.are.equal("#team", got.ctx.config.channel)
    assert.are.equal(3, #lines)
    assert.truthy(lines[1]:match("^info: guest_booked handler at .*router_spec%.lua:%d+: booked ACDADADASS$"),
      lines[1])
    assert.truthy(lines[2]:match("^warn: .*: careful$"), lines[2])
    assert.truthy(lines[3]:match(": 100%% literal$"), lines[3])
  end)

  it("gives ctx.log a function for each level, the same one each time, and nothing else", function()
    local r, lines = new_router()
    local same, other
    r:on("guest_booked", function(_, ctx)
      for _, level in ipairs({ "debug", "info", "warn", "error" }) do
        ctx.log[level]("at %s", level)
      end
      same = ctx.log.warn == ctx.log.warn
      other = ctx.log.notice
    end)
    r:handle(BOOKED, signed(BOOKED))
    assert.are.equal(4, #lines)
    for i, level in ipairs({ "debug", "info", "warn", "error" }) do
      assert.truthy(lines[i]:match("^" .. level .. ": .*: at " .. level .. "$"), lines[i])
    end
    assert.is_true(same)
    assert.is_nil(other)
  end)

  it("takes now from a function", function()
    local t = NOW + 5
    local r = new_router({ now = function() return t end })
    local seen
    r:on("*", function(_, ctx) seen = ctx.received_at end)
    r:handle(BOOKED, signed(BOOKED))
    assert.are.equal(NOW + 5, seen)
  end)

  it("writes valid JSON response bodies whatever the message holds", function()
    -- An undocumented key with a control character, a quote and a slash, rejected by name.
    local body = BOOKED:gsub("^{", '{"we\\u0001ird\\"/key\\u00e9": 1,', 1)
    local res = new_router({ verify = false, unknown_keys = "reject" }):handle(body)
    assert.are.equal(400, res.status)
    local doc = decode(res)
    assert.are.equal("unknown_key", doc.code)
    assert.are.equal("/we\1ird\"~1key\195\169", doc.path)
  end)

  local misuse = {
    { "an unknown option", function() webhook.router({ verify = false, secret = "s" }) end,
      "unknown option 'secret'" },
    { "no secrets", function() webhook.router({}) end, "secrets" },
    { "an empty secret list", function() webhook.router({ secrets = {} }) end, "secrets" },
    { "a bad parse level", function() webhook.router({ verify = false, level = "loose" }) end,
      "level" },
    { "a store without delete", function()
      webhook.router({ verify = false, store = { add = function() end } })
    end, "store" },
    { "a negative ttl", function() webhook.router({ verify = false, ttl = -5 }) end, "ttl" },
    { "on with a non-function", function() new_router():on("guest_booked", "nope") end,
      "handler must be a function" },
    { "on with an empty name", function() new_router():on("", function() end) end, "event name" },
    { "on_error with a non-function", function() new_router():on_error(42) end, "on_error" },
    { "handle with a non-string body", function() new_router():handle(nil, {}) end,
      "body must be a string" },
    { "handle with non-table headers", function() new_router():handle(BOOKED, "h") end,
      "headers must be a table" },
    { "load with a non-string dir", function() new_router():load(7) end, "dir" },
  }
  for _, case in ipairs(misuse) do
    it("raises on " .. case[1], function()
      local ok, err = pcall(case[2])
      assert.is_false(ok)
      assert.truthy(tostring(err):find(case[3], 1, true), tostring(err))
    end)
  end
end)

describe("router: handler scripts", function()
  local dir

  local function write_script(name, source)
    support.write(dir .. "/" .. name, source)
  end

  before_each(function()
    dir = os.tmpname()
    os.remove(dir)
    assert(support.run("mkdir -p " .. support.quote(dir)))
  end)

  after_each(function()
    support.run("rm -rf " .. support.quote(dir))
    rawset(_G, "jicoo_spec_calls", nil)
  end)

  -- Scripts report to the spec through ctx.config, the one table they share on purpose.
  local function run_scripts(body)
    local calls = {}
    local r, lines = new_router({ verify = false, config = { calls = calls } })
    local loaded, err, failures = r:load(dir)
    local res = body and r:handle(body)
    return { loaded = loaded, err = err, failures = failures, res = res, calls = calls,
      lines = lines }
  end

  it("loads <event>.lua and any.lua (a function or a list of functions), any.lua first", function()
    write_script("guest_booked.lua", [[
      return function(ev, ctx) table.insert(ctx.config.calls, "booked " .. ev.object.uid) end]])
    write_script("any.lua", [[
      return {
        function(ev, ctx) table.insert(ctx.config.calls, "any1 " .. ev.event) end,
        function(ev, ctx) table.insert(ctx.config.calls, "any2 " .. ev.event) end,
      }]])
    write_script("host_cancelled.lua", [[
      return function(_, ctx) table.insert(ctx.config.calls, "host_cancelled") end]])
    local out = run_scripts(BOOKED)
    assert.are.equal(4, out.loaded)
    assert.is_nil(out.err)
    assert.are.equal(200, out.res.status)
    assert.are.same({ "any1 guest_booked", "any2 guest_booked", "booked ACDADADASS" }, out.calls)
    assert.are.equal(dir .. "/any.lua#1", out.res.handlers[1].handler)
    assert.are.equal(dir .. "/guest_booked.lua", out.res.handlers[3].handler)
  end)

  it("keeps each script's globals to itself", function()
    write_script("guest_booked.lua", [[
      counter = 1
      _G.leaked_through_G = true
      return function(_, ctx)
        counter = counter + 1
        handler_global = "set in a handler"
        table.insert(ctx.config.calls, "booked counter=" .. counter)
      end]])
    write_script("any.lua", [[
      return function(_, ctx)
        table.insert(ctx.config.calls, "any sees counter=" .. tostring(counter)
          .. " handler_global=" .. tostring(handler_global)
          .. " leaked=" .. tostring(leaked_through_G))
      end]])
    write_script("guest_cancelled.lua", [[
      string_backup = string
      return function() end]])
    local out = run_scripts(BOOKED)
    assert.are.equal(200, out.res.status)
    assert.are.same({ "any sees counter=nil handler_global=nil leaked=nil", "booked counter=2" },
      out.calls)
    for _, name in ipairs({ "counter", "handler_global", "leaked_through_G", "string_backup" }) do
      assert.is_nil(rawget(_G, name), name)
    end
  end)

  it("reports every broken script naming its file, and still loads the others", function()
    write_script("guest_booked.lua", [[
      return function(_, ctx) table.insert(ctx.config.calls, "booked") end]])
    write_script("host_cancelled.lua", "return function(ev, ctx)\n  if then\nend\n")
    write_script("guest_cancelled.lua", "error('cannot connect to the room service')\n")
    write_script("guest_rescheduled.lua", "return 42\n")
    write_script("host_rescheduled.lua", "return { function() end, 'two' }\n")
    local out = run_scripts(BOOKED)
    assert.is_nil(out.loaded)
    assert.are.equal(4, #out.failures)
    local by_file = {}
    for _, failure in ipairs(out.failures) do
      by_file[failure.file:match("[^/]+$")] = failure.message
    end
    assert.truthy(by_file["host_cancelled.lua"]:find(dir .. "/host_cancelled.lua:2:", 1, true))
    assert.truthy(by_file["guest_cancelled.lua"]:find("cannot connect to the room service", 1, true))
    assert.truthy(by_file["guest_cancelled.lua"]:find(dir .. "/guest_cancelled.lua:1:", 1, true))
    assert.truthy(by_file["guest_rescheduled.lua"]:find("returns number, expected a function", 1, true))
    assert.truthy(by_file["host_rescheduled.lua"]:find("item 2", 1, true))
    for name in pairs(by_file) do
      assert.truthy(out.err:find(name, 1, true), name)
    end
    assert.are.equal(200, out.res.status)
    assert.are.same({ "booked" }, out.calls)
  end)

  it("leaves helpers (_name.lua), hidden files and other files alone; SCRIPT_DIR finds helpers", function()
    write_script("_helper.lua", "error('a helper must not be loaded as a script')\n")
    write_script(".hidden.lua", "error('hidden files are not scripts')\n")
    write_script("notes.txt", "not lua")
    write_script("_format.lua", "return { shout = function(s) return s:upper() end }\n")
    write_script("guest_booked.lua", [[
      local format = dofile(SCRIPT_DIR .. "_format.lua")
      return function(ev, ctx) table.insert(ctx.config.calls, format.shout(ev.object.contact.name)) end]])
    local out = run_scripts(BOOKED)
    assert.are.equal(1, out.loaded)
    assert.are.same({ "JOHN DOE" }, out.calls)
  end)

  it("loads a script for an event name it does not know, with a warning", function()
    write_script("guest_assigned.lua", [[
      return function(_, ctx) table.insert(ctx.config.calls, "assigned") end]])
    local out = run_scripts(fixture("lenient", "drift.json"))
    assert.are.equal(1, out.loaded)
    assert.are.same({ "assigned" }, out.calls)
    assert.truthy(out.lines[1]:find("^warn: .*guest_assigned.lua: 'guest_assigned' is not a known"))
  end)

  it("reports a folder that does not exist", function()
    local r = new_router({ verify = false })
    local loaded, err = r:load(dir .. "/nope")
    assert.is_nil(loaded)
    assert.truthy(err:find(dir .. "/nope", 1, true))
  end)

  it("a script error at dispatch time is a failing handler like any other", function()
    write_script("guest_booked.lua", "return function() local t = nil; return t.x end\n")
    write_script("any.lua", "return function(_, ctx) table.insert(ctx.config.calls, 'any') end\n")
    local out = run_scripts(BOOKED)
    assert.are.equal(500, out.res.status)
    assert.are.same({ "any" }, out.calls)
    assert.truthy(out.res.errors[1].message:find("guest_booked.lua:1:", 1, true))
  end)
end)
