-- The dead-letter alarm: router:on_dead and a handler folder's dead_letter.lua, called once when
-- a delivery runs out of attempts, with what an operator needs; an alarm that fails is logged
-- and never retried. And on_error, which sees the failing handler's label in ctx.handler.
local shared = require "router_shared"
local support = require "support"
local journal = require "jicoo.webhook.journal"
local journal_shared = require "journal_shared"

local NOW, signed = shared.NOW, shared.signed
local BODY = shared.fixture("lenient", "portal_guest_booked.json")

describe("the dead-letter alarm", function()
  local dir
  before_each(function()
    dir = journal_shared.temp_dir()
  end)
  after_each(function()
    journal_shared.remove_dir(dir)
  end)

  local function new_router(opts)
    opts.journal = journal.sqlite({ dir = dir .. "/journal" })
    return shared.new_router(opts)
  end

  it("is called once, when the last attempt fails, with the key, attempts and errors", function()
    local now = NOW
    local router, lines = new_router({ now = function() return now end, retry_delays = { 10 } })
    router:on("guest_booked", function() error("CRM down", 0) end)
    local alarms = {}
    router:on_dead(function(dead, ctx)
      alarms[#alarms + 1] = { dead = dead, handler = ctx.handler, http = type(ctx.http) }
    end)
    assert.are.equal(500, router:handle(BODY, signed(BODY)).status)
    assert.are.equal(0, #alarms)   -- a retry is left
    now = NOW + 20
    assert.are.equal(1, (router:run_due()))
    assert.are.equal(1, #alarms)
    local dead = alarms[1].dead
    assert.are.equal("guest_booked", dead.event)
    assert.are.equal("ACDADADASS", dead.uid)
    assert.are.equal(2, dead.attempts)
    assert.are.equal(router.journal:find({ state = "dead" })[1].key, dead.key)
    assert.are.equal("CRM down", dead.errors[1].message)
    assert.truthy(dead.errors[1].handler:find("guest_booked handler at", 1, true))
    assert.is_nil(dead.body)
    assert.truthy(alarms[1].handler:find("^dead%-letter alarm at "), alarms[1].handler)
    assert.are.equal("function", alarms[1].http)
    now = NOW + 1000
    router:run_due()
    router:handle(BODY, signed(BODY))   -- a copy of a dead letter: a duplicate, no alarm
    assert.are.equal(1, #alarms)
    assert.truthy(table.concat(lines, "\n"):find("dead letter", 1, true))
  end)

  it("logs an alarm that raises or returns nil, err, runs the others, and never retries it", function()
    local router, lines = new_router({ retry_delays = {} })
    router:on("guest_booked", function() error("down", 0) end)
    local calls = 0
    router:on_dead(function() calls = calls + 1; error("Slack down too") end)
    router:on_dead(function() calls = calls + 1; return nil, "no channel" end)
    router:on_dead(function() calls = calls + 1 end)
    assert.are.equal(500, router:handle(BODY, signed(BODY)).status)
    assert.are.equal(3, calls)
    local log = table.concat(lines, "\n")
    assert.truthy(log:find("dead%-letter alarm at [^\n]* failed for [^\n]*: [^\n]*Slack down too %(not retried%)"), log)
    assert.truthy(log:find("failed for [^\n]*: no channel %(not retried%)"), log)
    router:run_due()
    assert.are.equal(3, calls)
    assert.are.equal("dead", router.journal:find({})[1].state)
  end)

  it("is a handler folder's dead_letter.lua, and a broken one is named when the folder loads", function()
    local folder = dir .. "/handlers"
    assert(support.run("mkdir -p " .. support.quote(folder)))
    support.write(folder .. "/guest_booked.lua", "return function() error('down', 0) end\n")
    support.write(folder .. "/dead_letter.lua", "return function(dead, ctx)\n"
      .. "  ctx.log('alarm for %s after %d', dead.key, dead.attempts)\nend\n")
    local router, lines = new_router({ retry_delays = {} })
    assert.are.equal(1, router:load(folder))   -- one handler; the alarm is not one
    router:handle(BODY, signed(BODY))
    local log = table.concat(lines, "\n")
    assert.truthy(log:find("alarm for guest_booked/ACDADADASS/[^\n]* after 1"), log)
    assert.is_nil(log:find("not a known Jicoo event", 1, true), log)

    support.write(folder .. "/dead_letter.lua", "return 42\n")
    local broken = new_router({ retry_delays = {} })
    local count, err, failures = broken:load(folder)
    assert.is_nil(count)
    assert.truthy(err:find("dead_letter.lua: returns number", 1, true), err)
    assert.are.equal(folder .. "/dead_letter.lua", failures[1].file)
  end)

  it("refuses what is not a function", function()
    local router = new_router({})
    assert.has_error(function() router:on_dead("x") end,
      "router:on_dead: alarm must be a function, got string")
  end)
end)

describe("on_error", function()
  it("sees the failing handler's label in ctx.handler", function()
    local router = shared.new_router({})
    router:on("guest_booked", function() error("down", 0) end)
    local seen
    router:on_error(function(_, _, ctx) seen = ctx.handler end)
    router:handle(BODY, signed(BODY))
    assert.truthy(seen and seen:find("^guest_booked handler at "), tostring(seen))
  end)
end)
